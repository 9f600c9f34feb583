"""`actiba export FILE --to FORMAT -o OUT [--param KEY=VALUE ...]`."""

from __future__ import annotations

import sys


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
    from ..table import load

    table = load(args.table)
    outputs = [args.output]
    if args.output.endswith(".xml"):
        outputs.append(args.output[:-4] + ".bin")
    _atomic.refuse_inputs(outputs, [args.table], args.force)
    _atomic.check_writable(args.output)
    summary = exporters.get(args.to)(table, args.output, exporters.parse_params(args.param))
    print(summary, file=sys.stderr)
    return 0
