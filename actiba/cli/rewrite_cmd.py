"""`actiba rewrite MODEL --cumba --reduba --act silu=FILE -o OUT` (ONNX `.onnx` or OpenVINO IR `.xml`).

Per-site tables: `--act-set SET.json` (ONNX graphs exported by actiba, whose nodes carry site ids).

`--ssd-d1` (Mamba-2 segment sum as the outer difference of one CumSum; refused for `--precision
bf16|f16`) and `--ssd-d2` (C·Bᵀ once per layer from the un-repeated B/C, the SSD einsums as MatMuls)
run first, each verifying itself (whole model before/after, offending sites skipped). Then two
verified stages: the exact rewrites (CumBA, ReduBA, contraction) must match the original within
`--tolerance`; ActiBA is then checked against that result within `--act-tolerance`, because its
difference is the tables' approximation error, not a bug. Nothing is written if a check fails
(unless `--force`) or on `--dry-run`.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import InputError
from . import nonneg_float


def add_parser(sub) -> None:
    p = sub.add_parser("rewrite", help="CumBA / ReduBA / ActiBA graph rewrites of an ONNX or OpenVINO model",
                       description=__doc__.splitlines()[0])
    p.add_argument("model", metavar="MODEL", help=".onnx, or OpenVINO .xml (with its .bin)")
    p.add_argument("--ssd-d1", action="store_true",
                   help="Mamba-2 SSD segment sum -> outer difference of one CumSum (refused for bf16/f16)")
    p.add_argument("--ssd-d2", action="store_true",
                   help="Mamba-2 SSD: C·B^T once per layer (n_groups=1), einsums as MatMuls (needs a fixed length)")
    p.add_argument("--precision", choices=["f32", "bf16", "f16"], default="f32",
                   help="the inference precision the model will run at (rewrites unsafe there are refused)")
    p.add_argument("--cumba", action="store_true", help="CumSum -> MatMul with a triangular constant")
    p.add_argument("--cumba-axis", type=int, action="append", metavar="AXIS",
                   help="only CumSums on this (negative) axis, e.g. -2; repeatable")
    p.add_argument("--reduba", action="store_true", help="ReduceSum/ReduceMean -> MatMul with ones")
    p.add_argument("--contract", action="store_true",
                   help="broadcast Mul -> ReduceSum -> one Einsum (ONNX only)")
    p.add_argument("--act", action="append", default=[], metavar="FUNC=FILE",
                   help="ActiBA table per function: silu, softplus, gelu, gelu-tanh, sigmoid, tanh, exp")
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
                   help="max |output diff| of the exact rewrites (default 1e-4 x max(1, max|output|))")
    p.add_argument("--act-tolerance", type=nonneg_float, metavar="T",
                   help="max |output diff| ActiBA may add (default 50 x the largest table max_abs error)")
    p.add_argument("--inputs", metavar="NPZ", help="real inputs (name -> array) checked besides random ones")
    p.add_argument("--force", action="store_true", help="save even if a check exceeds its tolerance, or over an input")
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
    from ..rewrite import spec
    from ..table import load

    tables = {}
    for fn, path in _pairs(args.act, "--act"):
        key = spec.canonical_function(fn)
        if key not in spec.ACT_FUNCTIONS:
            raise InputError(f"--act {fn}: unknown function; known: {', '.join(spec.ACT_FUNCTIONS)}")
        tables[key] = load(path)
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


def _selected(sites, args, rewrite: str) -> list[str]:
    from ..rewrite import spec

    spec.select(sites, args.sites, args.exclude)
    if rewrite == "cumba" and args.cumba_axis:
        for s in sites:
            if s.ok and s.axis not in args.cumba_axis:
                s.skip(f"axis {s.axis} not in --cumba-axis {args.cumba_axis}")
    return [s.name for s in sites if s.ok]


def _with_reasons(done: list, found: list) -> list:
    """Sites from `apply`, with the selection's reason for the ones it was told to leave."""
    why = {s.name: s.reason for s in found if not s.ok}
    for s in done:
        if not s.ok and s.reason == "not selected" and s.name in why:
            s.reason = why[s.name]
    return done


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def run(args) -> int:
    import numpy as np

    from ..rewrite import spec
    from ..rewrite._inputs import load_inputs

    backend, kind = _backend(args.model)
    exact = [r for r in ("cumba", "reduba", "contract") if getattr(args, r)]
    if args.contract and kind == "openvino":
        raise InputError("--contract is implemented for ONNX models only")
    tables, site_tables = _load_tables(args)
    ssd = [r for r in ("ssd-d1", "ssd-d2") if getattr(args, r.replace("-", "_"))]
    if not exact and not tables and not site_tables and not ssd:
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
    inputs = load_inputs(args.inputs)
    original = backend.load_model(args.model)

    stage0, sites = original, []
    for rw in ssd:  # first: d1 removes the T×T CumSums CumBA would otherwise turn into MatMuls
        from .. import rewrite

        found = rewrite.find_sites(stage0, rw, precision=args.precision)
        names = _selected(found, args, rw)
        stage0, done = rewrite.apply(stage0, [rw], sites=names, precision=args.precision)
        done = _with_reasons([d for d in done if d.rewrite == rw], found)
        sites += done
        for s in done:
            if s.ok and "max_diff_real" in s.detail:
                _log(f"actiba: {rw} {s.name}: verified, max |output diff| {s.detail['max_diff_real']:.3g} (real), "
                     f"{s.detail.get('max_diff_random', float('nan')):.3g} (random)")
                break
    stage1 = stage0
    for rw in exact:
        found = backend.find_sites(stage1, rw)
        names = _selected(found, args, rw)
        stage1, done = backend.apply(stage1, [rw], sites=names)
        sites += _with_reasons([d for d in done if d.rewrite == rw], found)
    final, act_sites = stage1, []
    if tables or site_tables:
        found = backend.find_sites(stage1, "actiba", tables, site_tables)
        names = _selected(found, args, "actiba")
        final, act_sites = backend.apply(stage1, ["actiba"], sites=names, tables=tables,
                                         site_tables=site_tables, lowering=args.lowering)
        act_sites = _with_reasons(act_sites, found)
    everything = sites + act_sites
    for s in everything:
        _log("  " + s.line())
    n_ok = sum(s.ok for s in everything)
    _log(f"actiba: {n_ok} of {len(everything)} sites rewritten")
    if args.dry_run:
        return 0

    _log("op inventory (changed types):\n" + spec.inventory_diff(backend.inventory(original),
                                                                  backend.inventory(final)))
    failures = []
    if stage1 is not stage0 and any(s.ok for s in sites if s.rewrite not in ssd):
        ref = backend.run(stage0, backend.random_inputs(stage0))
        scale = max(1.0, max(float(np.max(np.abs(r))) if np.size(r) else 0.0 for r in ref))
        tol = args.tolerance if args.tolerance is not None else 1e-4 * scale
        diff = backend.compare(stage0, stage1, inputs)
        _log(f"actiba: exact rewrites: max |output diff| = {diff:.3g} (tolerance {tol:.3g})")
        if not diff <= tol:
            failures.append(f"exact rewrites differ by {diff:.3g} > --tolerance {tol:.3g}")
    if any(s.ok for s in act_sites):
        errs = [spec.table_error(s.detail["table"]) for s in act_sites if s.ok]
        known = [e for e in errs if e is not None]
        tol = args.act_tolerance if args.act_tolerance is not None else (50 * max(known) if known else 0.5)
        diff = backend.compare(stage1, final, inputs)
        _log(f"actiba: ActiBA: max |output diff| = {diff:.3g} (act tolerance {tol:.3g}; largest table "
             f"error {max(known) if known else float('nan'):.3g})")
        if not diff <= tol:
            failures.append(f"ActiBA differs by {diff:.3g} > --act-tolerance {tol:.3g}")
    if failures and not args.force:
        raise InputError("; ".join(failures) + "; nothing written (use --force to save anyway)")
    if n_ok == 0:
        _log("actiba: no site was rewritten; writing an unchanged copy")
    backend.save_model(final, args.output)
    _log(f"actiba: wrote {args.output}" + (" despite: " + "; ".join(failures) if failures else ""))
    return 0
