"""`actiba fit FUNC --segments N | --max-error EPS [...]`: fit, write the table, summarize on stderr."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit a piecewise-linear table to an activation function")
    p.add_argument("func", metavar="FUNC",
                   help="silu|swish|softplus|gelu|gelu-tanh|sigmoid|tanh|exp|expr:<numpy expression in x>")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--segments", type=int, metavar="N", help="segment count (least error)")
    how.add_argument("--max-error", type=float, metavar="EPS", help="error budget (fewest segments)")
    p.add_argument("--range", type=float, nargs=2, metavar=("LO", "HI"), help="fitting range")
    p.add_argument("--metric", choices=["max-abs", "max-rel", "rms"], help="error metric (default max-abs)")
    p.add_argument("--discontinuous", action="store_true", help="allow jumps at breakpoints")
    p.add_argument("--tails", choices=["free", "asymptote", "clamp", "auto"],
                   help="outer segments (default free; with --calibration asymptote, or auto: free if cheaper)")
    p.add_argument("--beta", type=float, help="beta of silu/swish/softplus")
    p.add_argument("--weight", metavar="EXPR", help="weight w(x) for --metric rms, a numpy expression in x")
    p.add_argument("--target", metavar="NAME", help="hardware format to fit under (e.g. npu-ppe)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="target parameter")
    p.add_argument("-o", "--output", metavar="FILE", help="output table (default, or '-': stdout)")
    p.add_argument("--force", action="store_true", help="overwrite even when an output is one of the inputs")
    con = p.add_argument_group("constraints (kept by the optimizer, re-verified, stated in error.constraints)")
    con.add_argument("--monotone", nargs="?", const="all", choices=["all", "auto"],
                     help="slopes of f's sign (f monotone on the range); 'auto': each segment's slope has "
                          "f's sign wherever f is monotone on it")
    con.add_argument("--slope-min", type=float, metavar="S", help="every free segment's slope >= S")
    con.add_argument("--slope-max", type=float, metavar="S", help="every free segment's slope <= S")
    con.add_argument("--min-width", type=float, metavar="W", help="every segment at least W long")
    con.add_argument("--breakpoint-grid", type=_grid_step, metavar="STEP",
                     help="breakpoints on multiples of STEP (a number, or 2^-K)")
    con.add_argument("--uniform", action="store_true",
                     help="equal-width segments: breakpoints at LO + i*(HI-LO)/N (index-by-shift units)")
    con.add_argument("--slope-grid", type=_grid_step, metavar="STEP",
                     help="every slope a multiple of STEP, e.g. 2^-8 (lattice search: best found, not proven)")
    con.add_argument("--intercept-grid", type=_grid_step, metavar="STEP", help="every intercept a multiple of STEP")
    con.add_argument("--pow2-slopes", type=int, nargs=2, metavar=("EMIN", "EMAX"),
                     help="every slope 0 or ±2^e with EMIN <= e <= EMAX")
    cal = p.add_argument_group("calibrated fitting (statistics from `actiba calibrate`)")
    cal.add_argument("--calibration", metavar="STATS", help="fit to the inputs recorded in this statistics file")
    cal.add_argument("--site", default="*", metavar="GLOB", help="sites to use (default: every site of FUNC)")
    cal.add_argument("--percentiles", type=float, nargs=2, default=(0.1, 99.9), metavar=("LO", "HI"),
                     help="fitting range as percentiles of the inputs (default 0.1 99.9)")
    cal.add_argument("--weighting", choices=["density", "range"], default="density",
                     help="range: max-abs on the percentile range; density: rms weighted by the input density")
    cal.add_argument("--per-site", action="store_true",
                     help="one table per matching site, written as a table set (actiba-pwl-set/1)")
    p.set_defaults(run=run)


def _grid_step(text: str) -> float:
    """A grid step: a decimal number or a power of two written 2^K / 2**K (e.g. 2^-3 = 0.125)."""
    import argparse

    t = text.strip().replace("**", "^")
    try:
        if t.startswith("2^"):
            return 2.0 ** int(t[2:])
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a grid step: {text!r} (use e.g. 0.25 or 2^-3)") from None


def run(args) -> int:
    from .. import _atomic, fit
    from ..errors import InputError

    if args.output:  # fail on an unwritable path before spending time fitting
        _atomic.refuse_inputs([args.output], [args.calibration], args.force)
        _atomic.check_writable(args.output)
    if args.calibration:
        return run_calibrated(args)
    for flag, given in (("--site", args.site != "*"), ("--per-site", args.per_site),
                        ("--percentiles", tuple(args.percentiles) != (0.1, 99.9)),
                        ("--weighting", args.weighting != "density")):
        if given:
            raise InputError(f"{flag} applies to calibrated fits only (add --calibration STATS)")
    if args.tails == "auto":
        raise InputError("--tails auto applies to calibrated fits only (add --calibration STATS)")
    args.metric = args.metric or "max-abs"
    args.tails = args.tails or "free"
    weight = None
    if args.weight:  # the expression compiler imports scipy.special (~0.2 s): only when asked
        from ..expr import compile_expr

        weight = compile_expr(args.weight)
    if args.target is None and args.param:
        raise InputError("--param applies to --target fits only")
    params: dict[str, str] = {}
    if args.param:
        from ..exporters import parse_params  # loads the target registry

        params = parse_params(args.param)
    table = fit(args.func, args.segments, max_error=args.max_error,
                range=tuple(args.range) if args.range else None, metric=args.metric,
                continuous=not args.discontinuous, tails=args.tails, beta=args.beta, weight=weight,
                target=args.target, target_params=params,
                monotone={"all": True, "auto": "auto"}.get(args.monotone, False),
                slope_min=args.slope_min, slope_max=args.slope_max, min_width=args.min_width,
                breakpoint_grid=args.breakpoint_grid, slope_grid=args.slope_grid, intercept_grid=args.intercept_grid,
                pow2_slopes=tuple(args.pow2_slopes) if args.pow2_slopes else None, uniform=args.uniform)
    if args.output:
        table.save(args.output)
    else:
        sys.stdout.write(table.to_json())
    if table.report is not None and hasattr(table.report, "summary"):
        print(table.report.summary(table.function), file=sys.stderr)
    elif isinstance(table.target, dict):
        from ..targets import summary
        print(summary(table), file=sys.stderr)
    return 0


def run_calibrated(args) -> int:
    """`fit FUNC --segments N --calibration STATS`: a table (pooled sites) or a table set (--per-site)."""
    from ..calibrate import load_stats
    from ..errors import InputError
    from ..fitting.calibrated import fit_sites

    for flag, given in (("--max-error", args.max_error is not None), ("--range", args.range is not None),
                        ("--monotone", args.monotone is not None), ("--slope-min", args.slope_min is not None),
                        ("--slope-max", args.slope_max is not None), ("--min-width", args.min_width is not None),
                        ("--breakpoint-grid", args.breakpoint_grid is not None), ("--uniform", args.uniform),
                        ("--slope-grid", args.slope_grid is not None),
                        ("--intercept-grid", args.intercept_grid is not None),
                        ("--pow2-slopes", args.pow2_slopes is not None),
                        ("--metric", args.metric is not None), ("--weight", args.weight is not None),
                        ("--target", args.target is not None), ("--param", bool(args.param))):
        if given:
            raise InputError(f"{flag} does not combine with --calibration (the statistics set the range; "
                             "--weighting sets the metric)")
    stats = load_stats(args.calibration)
    ts = fit_sites(stats, args.func, args.segments, per_site=args.per_site, pattern=args.site,
                   weighting=args.weighting, percentiles=tuple(args.percentiles), tails=args.tails or "asymptote",
                   continuous=not args.discontinuous, beta=args.beta)
    if args.per_site:
        if args.output:
            ts.save(args.output)
        else:
            ts.validate()
            sys.stdout.write(ts.to_json())
    else:
        table = next(iter(ts.tables.values()))
        if args.output:
            table.save(args.output)
        else:
            sys.stdout.write(table.to_json())
    for key, table in ts.tables.items():
        cal = table.provenance.get("calibration", {})
        lo, hi = cal.get("range", (float("nan"),) * 2)
        line = (f"{key}: {table.segments} segments on [{lo:.4g}, {hi:.4g}] (p{cal['percentiles'][0]:g}–"
                f"p{cal['percentiles'][1]:g}, {cal['mass_in_range']:.2%} of inputs, {cal['weighting']} weighting, "
                f"{cal['tails']} tails): max-abs {table.error['max_abs']:.4g} over {table.error['over']}, "
                f"rms {table.error['rms']:.4g}")
        if cal.get("note"):
            line += f". Note: {cal['note']}"
        print(line, file=sys.stderr)
    return 0
