"""`actiba rewrite MODEL --cumba --reduba --act silu=FILE -o OUT` (ONNX `.onnx` or OpenVINO IR `.xml`).

Per-site tables: `--act-set SET.json` (ONNX graphs exported by actiba, whose nodes carry site ids).

`--ssd-d1` (Mamba-2 segment sum as the outer difference of one CumSum; refused for `--precision
bf16|f16`) and `--ssd-d2` (C·Bᵀ once per layer from the un-repeated B/C, the SSD einsums as MatMuls)
run first, each verifying itself (whole model before/after, offending sites skipped). Then two
verified stages: the exact rewrites (CumBA, ReduBA, contraction) must match the original within
`--tolerance` × s; ActiBA is then checked against that result within `--act-tolerance` × s, because its
difference is the tables' approximation error, not a bug (s = max(1, max |output|): both tolerances are
relative to the output scale). Nothing is written if a check fails (unless `--force`), if a requested
rewrite changed nothing (unless `--allow-noop`), or on `--dry-run`. The staging, tolerances and
refusals are `actiba.rewrite.pipeline.rewrite_model`'s; this module parses and prints.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import activations
from ..errors import InputError
from . import nonneg_float


def add_parser(sub) -> None:
    p = sub.add_parser("rewrite", help="CumBA / ReduBA / ActiBA graph rewrites of an ONNX or OpenVINO model",
                       description=__doc__.splitlines()[0])
    p.add_argument("model", metavar="MODEL", help=".onnx, or OpenVINO .xml (with its .bin)")
    p.add_argument("--ssd-d1", action="store_true",
                   help="Mamba-2 SSD segment sum -> outer difference of one CumSum (refused for bf16/f16)")
    p.add_argument("--ssd-d2", action="store_true",
                   help="Mamba-2 SSD: C·B^T once per layer and B/C group, einsums as MatMuls (needs a fixed length)")
    p.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32",
                   help="the inference precision the model will run at (rewrites unsafe there are refused)")
    p.add_argument("--cumba", action="store_true", help="CumSum -> MatMul with a triangular constant")
    p.add_argument("--cumba-axis", type=int, action="append", metavar="AXIS",
                   help="only CumSums on this (negative) axis, e.g. -2; repeatable")
    p.add_argument("--reduba", action="store_true", help="ReduceSum/ReduceMean -> MatMul with ones")
    p.add_argument("--contract", action="store_true",
                   help="broadcast Mul -> ReduceSum -> one Einsum (ONNX only)")
    p.add_argument("--rewrite", action="append", default=[], metavar="RULE", dest="rules",
                   help="any rewrite rule by name (actiba.rewrite.rules), e.g. --rewrite cumba; repeatable")
    p.add_argument("--act", action="append", default=[], metavar="FUNC=FILE",
                   help=f"ActiBA table per function: {activations.help_names()}")
    p.add_argument("--act-site", action="append", default=[], metavar="PATTERN=FILE",
                   help="ActiBA table for the sites whose name matches the glob (wins over --act)")
    p.add_argument("--act-set", metavar="SET.json",
                   help="per-site tables (actiba-pwl-set/1, e.g. from `actiba fit --per-site`), picked by site "
                        "id from the graph's namespace metadata (ONNX; OpenVINO IR takes only shared '*:FUNC#*' keys); "
                        "--act-site wins, --act fills in")
    p.add_argument("--sites", action="append", default=[], metavar="GLOB",
                   help="rewrite only sites whose node name matches; repeatable")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="never rewrite these sites")
    p.add_argument("--lowering", default="auto", help="table lowering (auto, relu-sum, select, ...)")
    p.add_argument("--dry-run", action="store_true", help="list the sites and decisions; write nothing")
    p.add_argument("--tolerance", type=nonneg_float, metavar="T",
                   help="max |output diff| of the exact rewrites, relative to s = max(1, max|output|) (default 1e-4)")
    p.add_argument("--act-tolerance", type=nonneg_float, metavar="T",
                   help="max |output diff| ActiBA may add, relative to s = max(1, max|output|) "
                        "(default 50 x the largest table max_abs error)")
    p.add_argument("--inputs", metavar="NPZ", help="real inputs (name -> array) checked besides random ones")
    p.add_argument("--force", action="store_true", help="save even if a check exceeds its tolerance, or over an input")
    p.add_argument("--allow-noop", action="store_true",
                   help="write the copy even if a requested rewrite changed nothing (otherwise exit 2)")
    p.add_argument("-o", "--output", metavar="OUT")
    p.set_defaults(run=run)


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise InputError(f"{what} expects KEY=FILE, got {item!r}")
        out.append((key.strip(), path.strip()))
    return out


def _load_tables(args) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    from ..table import load

    tables = {}
    for fn, path in _pairs(args.act, "--act"):
        tables[activations.get(fn, "--act").name] = load(path)
    site_tables = [(pat, load(path)) for pat, path in _pairs(args.act_site, "--act-site")]
    if getattr(args, "act_set", None):
        from ..tableset import load_set

        # site keys (with ':') and function keys side by side: the set picks by site id, --act fills in
        tables = {**load_set(args.act_set).tables, **tables}
    return tables, site_tables


def _backend(path: str, what: str = "model"):
    if path.endswith(".onnx"):
        from ..rewrite import onnx_rw

        return onnx_rw, "onnx"
    if path.endswith(".xml"):
        from ..rewrite import openvino_rw

        return openvino_rw, "openvino"
    raise InputError(f"{what} {path} must end in .onnx (ONNX) or .xml (OpenVINO IR)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def run(args) -> int:
    from ..rewrite import pipeline
    from ..rewrite._inputs import load_inputs
    from ..rewrite.rules import RULES

    backend, kind = _backend(args.model)
    flagged = [n for n in RULES.names() if getattr(args, n.replace("-", "_"), False)]
    flagged += [RULES.get(n).name for n in args.rules if n not in flagged]
    if args.contract and kind == "openvino":
        raise InputError("--contract is implemented for ONNX models only")
    tables, site_tables = _load_tables(args)
    if not flagged and not tables and not site_tables:
        raise InputError("nothing to do: give --ssd-d1, --ssd-d2, --cumba, --reduba, --contract, --act, --act-site "
                         "or --act-set")
    if not args.dry_run:
        if not args.output:
            raise InputError("-o OUT is required (or use --dry-run)")
        if _backend(args.output, "output")[1] != kind:
            raise InputError(f"output {args.output} must be the same kind of model as the input ({kind})")
        from .._atomic import refuse_inputs

        ins = [args.model, args.model[:-4] + ".bin" if kind == "openvino" else None, args.act_set, args.inputs]
        refuse_inputs([args.output, args.output[:-4] + ".bin" if kind == "openvino" else None],
                      ins + [f for _, f in _pairs(args.act + args.act_site, "--act")], args.force)
    request = pipeline.Request(
        rewrites=flagged, tables=tables, site_tables=site_tables, precision=args.precision, include=args.sites,
        exclude=args.exclude, cumba_axes=args.cumba_axis, lowering=args.lowering, tolerance=args.tolerance,
        act_tolerance=args.act_tolerance, inputs=load_inputs(args.inputs), force=args.force,
        allow_noop=args.allow_noop or args.dry_run, dry_run=args.dry_run)
    original = backend.load_model(args.model)
    result = pipeline.rewrite_model(original, request, log=_report)
    if args.dry_run:
        return 0
    backend.save_model(result.model, args.output)
    warn = result.failures + ([pipeline.noop_message(result)] if result.noop else [])
    _log(f"actiba: wrote {args.output}" + (" despite: " + "; ".join(warn) if warn else ""))
    return 0


def _report(event: str, result) -> None:
    """Print the pipeline's progress: sites after rewriting, then the inventory and each verified stage."""
    if event == "sites":
        for s in result.sites:
            if s.rewrite.startswith("ssd") and s.ok and "max_diff_real" in s.detail:
                _log(f"actiba: {s.rewrite} {s.name}: verified, max |output diff| {s.detail['max_diff_real']:.3g} "
                     f"(real), {s.detail.get('max_diff_random', float('nan')):.3g} (random)")
        for s in result.sites:
            _log("  " + s.line())
        _log(f"actiba: {result.rewritten} of {len(result.sites)} sites rewritten")
        if result.noop:
            _log("actiba: " + "; ".join(f"{n} changed nothing" for n in result.noop))
    elif event == "inventory":
        _log("op inventory (changed types):\n" + result.inventory_diff())
    elif event == "stage":
        st = result.stages[-1]
        tol = "tolerance" if st.name == "exact rewrites" else "act tolerance"
        _log(f"actiba: {st.name}: max |output diff| = {st.max_diff:.3g} ({tol} {st.tolerance:.3g} = "
             f"{st.tolerance / st.scale:.3g} x output scale {st.scale:.3g}" + (f"; {st.note}" if st.note else "") + ")")
