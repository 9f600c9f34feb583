"""`actiba show FILE [--plot PNG]`: what a table is, how good it is (re-measured), and a picture."""

from __future__ import annotations

import sys

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="summarize a table and optionally plot it")
    p.add_argument("table", metavar="FILE")
    p.add_argument("--plot", metavar="PNG", help="write a plot: f, the table, breakpoints, error curve")
    p.add_argument("--force", action="store_true", help="overwrite even when an output is one of the inputs")
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
    if measured:
        lines.append(f"measured  max_abs {measured['max_abs']:.6g} at x = {measured['where']:.6g}, "
                     f"rms {measured['rms']:.4g}, float32 {measured['float32_max_abs']:.4g}, "
                     f"float16 {measured['float16_max_abs']:.4g} (dense grid, {measured['grid_points']} points)")
    bp = table.breakpoints
    if bp.size:
        lines.append(f"breaks    {np.array2string(bp, precision=4, max_line_width=100, threshold=20)}")
    return "\n".join(lines)


def plot(table, act, lo: float, hi: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._atomic import atomic_path

    pad = 0.05 * (hi - lo)
    xs = np.linspace(lo - pad, hi + pad, 4001)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    y = table(xs)
    if act is not None:
        top.plot(xs, act.f(xs), color="0.3", lw=2.5, label=f"{table.function} (exact)")
    top.plot(xs, y, color="C1", lw=1.2, label=f"table ({table.segments} segments)")
    inside = table.breakpoints[(table.breakpoints >= xs[0]) & (table.breakpoints <= xs[-1])]
    top.plot(inside, table(inside), "o", color="C3", ms=4, label="breakpoints")
    top.set_ylabel("y")
    top.legend(loc="best", fontsize=8)
    top.grid(alpha=0.3)
    top.set_title(f"{table.function}: {table.segments}-segment piecewise-linear table")
    if act is not None:
        err = y - act.f(xs)
        bottom.plot(xs, err, color="C0", lw=1)
        bottom.axhline(0, color="0.5", lw=0.6)
        for b in inside:
            bottom.axvline(b, color="C3", lw=0.4, alpha=0.5)
        dom = (xs >= lo) & (xs <= hi)
        i = int(np.argmax(np.where(dom, np.abs(err), -1.0)))
        bottom.plot([xs[i]], [err[i]], "x", color="C3", label=f"max |error| on range: {abs(err[i]):.3g}")
        bottom.legend(loc="best", fontsize=8)
        bottom.set_ylabel("table − f")
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
    lo, hi = table.domain or _default_range(table)
    measured = measure(table, act, lo, hi) if act is not None else None
    print(describe(table, measured))
    if args.plot:
        plot(table, act, lo, hi, args.plot)
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
