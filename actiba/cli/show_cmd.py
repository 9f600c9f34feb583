"""`actiba show FILE [--plot PNG]`: what a table is, how good it is (re-measured), and a picture."""

from __future__ import annotations

import sys

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="summarize a table and optionally plot it")
    p.add_argument("table", metavar="FILE")
    p.add_argument("--plot", metavar="PNG", help="write a plot: f, the table, breakpoints, error curve")
    p.add_argument("--force", action="store_true", help="overwrite even when an output is one of the inputs")
    p.add_argument("--log-y", action="store_true",
                   help="log scale for f and |error| (e.g. exp on a wide range)")
    p.set_defaults(run=run)


def describe(table, measured: dict | None) -> str:
    lines = [f"table     {table.function} {table.params or ''}".rstrip(),
             f"segments  {table.segments} ({'continuous' if table.continuous else 'discontinuous'}, "
             f"max jump {table.max_jump():.3g})"]
    if table.domain:
        lines.append(f"domain    [{table.domain[0]:g}, {table.domain[1]:g}]")
    if table.target:
        lines.append(f"target    {table.target}")
    if table.error:
        e = table.error
        lines.append(f"stored    max_abs {e.get('max_abs')}  rms {e.get('rms')}  over {e.get('over')}")
        if e.get("lower_bound") is not None:
            lines.append(f"bound     no table of this kind beats {e['lower_bound']:.6g} "
                         f"({e.get('lower_bound_method', '?')})")
    if measured:
        lines.append(f"measured  max_abs {measured['max_abs']:.6g} at x = {measured['where']:.6g}, "
                     f"rms {measured['rms']:.4g}, float32 {measured['float32_max_abs']:.4g}, "
                     f"float16 {measured['float16_max_abs']:.4g} (dense grid, {measured['grid_points']} points)")
    bp = table.breakpoints
    if bp.size:
        lines.append(f"breaks    {np.array2string(bp, precision=4, max_line_width=100, threshold=20)}")
    return "\n".join(lines)


MAX_BREAK_LINES = 64  # beyond this, per-breakpoint lines hide the curve: a rug of ticks instead


def _metric(table) -> str:
    opts = (table.provenance or {}).get("options", {}) if isinstance(table.provenance, dict) else {}
    return str(opts.get("metric", "max-abs"))


def plot(table, act, lo: float, hi: float, path: str, measured: dict | None = None, log_y: bool = False,
         note: str = "") -> None:
    """f, the table and the error curve.

    The error panel's y-range is set by the error *on the range* (the greyed extrapolation may leave
    the axes), its worst point is the verifier's (the stored, dense-grid figure, not this plot's 4001
    points), max-rel tables show relative error, and `log_y` puts f and |error| on log scales.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._atomic import atomic_path

    pad = 0.05 * (hi - lo)
    xs = np.linspace(lo - pad, hi + pad, 4001)
    dom = (xs >= lo) & (xs <= hi)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    y = table(xs)
    if act is not None:
        top.plot(xs, act.f(xs), color="0.3", lw=2.5, label=f"{table.function} (exact)")
    top.plot(xs, y, color="C1", lw=1.2, label=f"table ({table.segments} segments)")
    inside = table.breakpoints[(table.breakpoints >= xs[0]) & (table.breakpoints <= xs[-1])]
    many = inside.size > MAX_BREAK_LINES
    if not many:
        top.plot(inside, table(inside), "o", color="C3", ms=4, label="breakpoints")
    if log_y:
        top.set_yscale("log")
    top.set_ylabel("y")
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3)
    title = f"{table.function}: {table.segments}-segment piecewise-linear table"
    top.set_title(title + (f"\n{note}" if note else ""), fontsize=10 if note else None)
    relative = _metric(table) == "max-rel" and act is not None
    if act is not None:
        fx = act.f(xs)
        with np.errstate(all="ignore"):
            err = (y - fx) / np.abs(fx) if relative else y - fx
        shown = np.abs(err) if log_y else err
        bottom.plot(xs, shown, color="C0", lw=1)
        if not log_y:
            bottom.axhline(0, color="0.5", lw=0.6)
        if many:  # a rug along the bottom edge instead of thousands of lines
            bottom.plot(inside, np.zeros_like(inside), "|", color="C3", ms=6, alpha=0.6,
                        transform=bottom.get_xaxis_transform(), label=f"{inside.size} breakpoints")
        else:
            for b in inside:
                bottom.axvline(b, color="C3", lw=0.4, alpha=0.5)
        key = "max_rel" if relative else "max_abs"
        if measured is not None and measured.get(key) is not None:
            worst = float(measured[key])
            wx = float(measured["where"]) if not relative else float(xs[dom][np.nanargmax(np.abs(err[dom]))])
        else:
            j = int(np.nanargmax(np.where(dom, np.abs(err), -1.0)))
            worst, wx = float(abs(err[j])), float(xs[j])
        at = table(wx) - act.f(np.array([wx]))[0]
        if relative:
            at /= abs(act.f(np.array([wx]))[0])
        label = f"max |{'relative ' if relative else ''}error| on range: {worst:.4g}"
        bottom.plot([wx], [abs(at) if log_y else at], "x", color="C3", ms=8, label=label)
        inner = np.abs(err[dom])
        inner = inner[np.isfinite(inner)]
        top_e = max(float(inner.max()) if inner.size else 1.0, worst) * 1.15 or 1.0
        if log_y:
            floor = max(top_e * 1e-6, float(np.min(inner[inner > 0])) if np.any(inner > 0) else top_e * 1e-6)
            bottom.set_yscale("log")
            bottom.set_ylim(floor, top_e)
        else:
            bottom.set_ylim(-top_e, top_e)
        bottom.legend(loc="upper right", fontsize=8)
        what = "(table − f) / |f|" if relative else "table − f"
        bottom.set_ylabel(f"|{what}|" if log_y else what)
    else:
        bottom.text(0.5, 0.5, "no known function: error curve unavailable", ha="center",
                    transform=bottom.transAxes)
    for ax in (top, bottom):
        ax.axvspan(xs[0], lo, color="0.9")
        ax.axvspan(hi, xs[-1], color="0.9")
    bottom.set_xlabel("x  (grey: outside the fitted range)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_range(table, act) -> tuple[float, float, str]:
    """Where to measure and plot: the stored domain, else chosen (and said so) from what is known."""
    if table.domain:
        return float(table.domain[0]), float(table.domain[1]), ""
    bp = table.breakpoints
    if bp.size:
        span = float(bp[-1] - bp[0])
        w = max(0.25 * span, 1.0) if span > 0 else 1.0
        lo, hi = float(bp[0]) - w, float(bp[-1]) + w
        return lo, hi, f"no domain stored: shown on [{lo:.4g}, {hi:.4g}] around the breakpoints"
    if act is not None:
        lo, hi = act.default_range
        return lo, hi, f"no domain stored: shown on {table.function}'s default range [{lo:g}, {hi:g}]"
    return -1.0, 1.0, "no domain stored and no breakpoints: shown on [-1, 1]"


def run(args) -> int:
    from ..fitting.verify import measure
    from ..functions import from_table_json
    from ..table import load
    from ..tableset import is_tableset_file

    if is_tableset_file(args.table):
        return show_set(args)
    if args.plot:
        from .. import _atomic

        _atomic.refuse_inputs([args.plot], [args.table], args.force)
        _atomic.check_writable(args.plot)
    table = load(args.table)
    act = from_table_json(table.function, table.params)
    lo, hi, note = plot_range(table, act)
    measured = measure(table, act, lo, hi) if act is not None else None
    print(describe(table, measured))
    if note:
        print(f"note      {note}")
    if args.plot:
        plot(table, act, lo, hi, args.plot, measured=measured, log_y=args.log_y, note=note)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def show_set(args) -> int:
    """`show SET.json`: one summary per key of an `actiba-pwl-set/1` file (model and calibration first)."""
    from ..errors import InputError
    from ..fitting.verify import measure
    from ..functions import from_table_json
    from ..tableset import load_set

    ts = load_set(args.table)
    if args.plot:
        raise InputError(f"--plot draws one table; {args.table} is a table set of {len(ts.tables)} "
                         "(actiba-pwl-set/1)")
    head = [f"table set {args.table}: {len(ts.tables)} table(s) (actiba-pwl-set/1)"]
    if ts.model:
        head.append(f"model     {ts.model.get('name', ts.model)}")
    if ts.calibration:
        cal = ts.calibration
        head.append("calibrated " + ", ".join(f"{k} {cal[k]}" for k in ("stats", "percentiles", "weighting")
                                              if k in cal))
    blocks = ["\n".join(head)]
    for key, table in ts.tables.items():
        act = from_table_json(table.function, table.params)
        lo, hi = table.domain or _default_range(table)
        measured = measure(table, act, lo, hi) if act is not None else None
        blocks.append(f"[{key}]\n" + describe(table, measured))
    print("\n\n".join(blocks))
    return 0


def _default_range(table) -> tuple[float, float]:
    """Where to measure a table without a domain: one unit beyond its outer breakpoints."""
    bp = table.breakpoints
    return (float(bp[0]) - 1, float(bp[-1]) + 1) if bp.size else (-1.0, 1.0)
