"""`actiba export FILE --to FORMAT -o OUT [--param KEY=VALUE ...]`."""

from __future__ import annotations

import sys

# float lowerings and the dtype names their --param dtype takes
_FLOAT_FORMATS = ("onnx", "openvino", "torch")
_DTYPES = {"float32": "float32", "f32": "float32", "float16": "float16", "f16": "float16",
           "float64": "float64", "f64": "float64"}


def add_parser(sub) -> None:
    from ..exporters import EXPORTERS

    p = sub.add_parser("export", help="turn a table into an ONNX/OpenVINO/torch module or a hardware table")
    p.add_argument("table", metavar="FILE")
    p.add_argument("--to", required=True, choices=list(EXPORTERS), metavar="FORMAT",
                   help=f"one of: {', '.join(EXPORTERS)}")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file; '-' is stdout for text formats")
    p.add_argument("--force", action="store_true", help="overwrite even when an output is one of the inputs")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="format option, e.g. lowering=select, dtype=float16, input_scale=0.05")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import _atomic, exporters
    from ..errors import InputError
    from ..table import load

    table = load(args.table)
    params = exporters.parse_params(args.param)
    check_representable(table, args.to, params)
    outputs = [args.output]
    if args.output.endswith(".xml"):
        outputs.append(args.output[:-4] + ".bin")
    _atomic.refuse_inputs(outputs, [args.table], args.force)
    _atomic.check_writable(args.output)
    export = exporters.get(args.to)
    try:
        summary = export(table, args.output, params)
    except (OverflowError, FloatingPointError) as exc:  # float(1e300 * 2**15) and kin: the table's numbers
        raise InputError(f"{args.table}: its numbers overflow while converting to {args.to} ({exc}); "
                         "a table for this format needs coefficients the format can hold") from None
    print(summary, file=sys.stderr)
    return 0


def check_representable(table, fmt: str, params: dict[str, str]) -> None:
    """Refuse a float export whose numbers overflow its dtype: a table with 1e308 coefficients is valid
    JSON and a valid `actiba-pwl/1` table, but its float32 model computes inf - inf = NaN at every
    input. Checked: the coefficients, the breakpoints and domain, and the products slope*x and values
    at those points (the terms every lowering forms), with a factor 2 of headroom for their sums."""
    import numpy as np

    from ..errors import InputError

    if fmt not in _FLOAT_FORMATS or _DTYPES.get(params.get("dtype", "float32")) is None:
        return  # integer targets check their own grids; an unknown dtype is the exporter's error
    name = _DTYPES[params.get("dtype", "float32")]
    limit = float(np.finfo(name).max) / 2
    bp, sl, ic = table.breakpoints, table.slopes, table.intercepts
    xs = np.concatenate([bp, np.asarray(table.domain or (), dtype=np.float64)])
    with np.errstate(all="ignore"):
        idx = np.searchsorted(bp, xs, side="right")
        left = np.maximum(idx - 1, 0)
        terms = [sl, ic, xs, sl[idx] * xs, sl[left] * xs, table(xs)]
        worst = max((float(np.max(np.abs(t))) if np.size(t) else 0.0) for t in terms)
    if not worst <= limit:
        raise InputError(f"{table.function} table has numbers up to {worst:.3g} (coefficients or slope*x at "
                         f"its breakpoints), beyond what {name} holds with headroom ({limit:.3g}): the "
                         f"{fmt} model would compute inf/NaN; refit"
                         + ("" if name == "float64" else " or export with --param dtype=float64"))
