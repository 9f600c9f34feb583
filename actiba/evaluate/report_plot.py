"""The report's figure: one panel per run (loss vs speed-up with both intervals, or latency bars).

Why its own module: the figure is matplotlib (imported only when a report is written), and label
placement is a small algorithm of its own (`place_labels`, tested for overlaps).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import write_bytes
from .report_text import prefill_logits

if TYPE_CHECKING:
    from .row import Row


def place_labels(ax: Any, points: list[tuple[float, float, str]], fontsize: float = 7.0) -> list[Any]:
    """Annotate each (x, y, text) so that no two labels overlap: greedy, nearest free spot first.

    Candidate spots step away from the point above/below, right then left; a label that had to move
    gets a leader line back to its point. Returns the annotation artists (their boxes are disjoint).
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed: list[tuple[float, float, float, float]] = []
    out = []
    style = dict(fontsize=fontsize, zorder=5, textcoords="offset pixels", va="bottom", ha="left",
                 bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.8))
    for i in sorted(range(len(points)), key=lambda i: (-points[i][1], points[i][0])):
        x, y, text = points[i]
        px, py = ax.transData.transform((x, y))
        probe = ax.annotate(text, (x, y), xytext=(0, 0), **style)
        bb = probe.get_window_extent(renderer)
        probe.remove()
        w, h = bb.width + 4, bb.height + 3
        best = None
        for k in range(80):
            for dy in ((0.0,) if k == 0 else (k * h, -k * h)):
                for dx in (6.0, -w - 6.0):
                    box = (px + dx, py + 3 + dy, px + dx + w, py + 3 + dy + h)
                    inside = frame.x0 <= box[0] and box[2] <= frame.x1 and frame.y0 <= box[1] and box[3] <= frame.y1
                    if inside and not any(_overlap(box, q) for q in placed):
                        best = (dx, 3 + dy, box)
                        break
                if best:
                    break
            if best:
                break
        if best is None:  # no free spot inside the axes: stack above everything placed
            top = max((q[3] for q in placed), default=py)
            best = (6.0, top + 2 - py, (px + 6, top + 2, px + 6 + w, top + 2 + h))
        dx, dy, box = best
        moved = abs(dy) > h or dx < 0
        arrow = dict(arrowstyle="-", lw=0.5, color="0.45", shrinkA=0, shrinkB=3) if moved else None
        out.append(ax.annotate(text, (x, y), xytext=(dx + 2, dy + 1.5), arrowprops=arrow, **style))
        placed.append(box)
    return out


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _grid(n: int) -> tuple[int, int]:
    """(rows, columns) for `n` panels: at most 2 columns, so four runs are a 2 x 2 grid, not one wide row."""
    cols = 1 if n <= 1 else 2
    return (n + cols - 1) // cols, cols


LINTHRESH = 0.1  # % loss: linear below, logarithmic above, so 0-1 % is as readable as 1-20 %


def write_plot(path: Path, runs: list[dict[str, Any]]) -> None:
    """One panel per run in a grid (at most 2 columns). With a metric: loss (%, symlog) vs speed-up with
    error bars on both (the paired accuracy interval, the timing interval), only the Pareto set, the
    baseline and the recommended configuration named (others grey, listed in the report's table).
    Latency only: a bar per configuration (prefill speed-up; decode speed-up as a marker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = runs or [{}]
    nrows, ncols = _grid(len(runs))
    heights = [max(4.8, 0.22 * len(run.get("configs", [])) + 1.5) if run.get("metric") is None else 4.8
               for run in runs]
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.8 * ncols, max(heights) * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(runs):]:
        ax.set_visible(False)
    for ax, run in zip(flat, runs, strict=False):
        rows = [r for r in run.get("configs", []) if r.speedup is not None]
        label = " (RANDOM weights)" if run.get("random_weights") else ""
        seq = (run.get("settings") or {}).get("seq_len")
        ax.set_title(f"{run.get('model')}{label}\n{run.get('device')} {run.get('precision')}"
                     f"{f', {seq} tokens' if seq else ''}, {prefill_logits(run)} logits", fontsize=9)
        if run.get("metric") is None:
            _bars(ax, rows, run.get("choice_name"))
        else:
            _scatter(ax, rows, run.get("choice_name"))
        if (run.get("null_control") or {}).get("usable") is False:
            ax.text(0.98, 0.02, "latency NOT usable (null control too wide):\nno recommendation", ha="right",
                    va="bottom", transform=ax.transAxes, color="darkred", fontsize=8, zorder=6,
                    bbox=dict(fc="white", ec="darkred", alpha=0.9))
    fig.tight_layout()
    for ax, run in zip(flat, runs, strict=False):
        if run.get("metric") is not None:
            rows = [r for r in run.get("configs", []) if r.speedup is not None]
            named = [r for r in rows if r.pareto or r.name in ("baseline", run.get("choice_name"))]
            place_labels(ax, [(r.speedup, _loss_pct(r), r.name) for r in named])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _loss_pct(r: Row) -> float:
    return 100.0 * (r.metric_delta_rel or 0.0)


def _xerr(r: Row) -> tuple[float, float]:
    """(left, right) error of the speed-up from the paired ratio's relative half-width."""
    h = r.latency_ratio.halfwidth_rel if r.latency_ratio else None
    if not isinstance(h, (int, float)) or not h == h or h == float("inf"):
        return 0.0, 0.0
    s = r.speedup
    return s - s / (1.0 + h), s * (1.0 + h) - s


def _scatter(ax: Any, rows: list[Row], choice: str | None) -> None:
    y = _loss_pct
    other = [r for r in rows if not r.pareto]
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.speedup)
    for group, color in ((other, "0.6"), (front, "tab:red")):
        if group:
            xe = list(zip(*[_xerr(r) for r in group], strict=True))
            ye = [100.0 * (r.metric_delta_halfwidth_rel or 0.0) for r in group]
            ax.errorbar([r.speedup for r in group], [y(r) for r in group], xerr=xe, yerr=ye, fmt="none",
                        ecolor=color, elinewidth=0.8, capsize=2, zorder=1)
    ax.scatter([r.speedup for r in other], [y(r) for r in other], s=22, c="tab:gray", zorder=2,
               label="other configurations (see table)")
    ax.scatter([r.speedup for r in front], [y(r) for r in front], s=45, c="tab:red", edgecolors="black",
               zorder=3, label="Pareto set (losses and speed-ups within their intervals tie)")
    if front:
        ax.plot([r.speedup for r in front], [y(r) for r in front], "r--", lw=1)
    pick = next((r for r in rows if r.name == choice), None)
    if pick is not None:
        ax.scatter([pick.speedup], [y(pick)], s=220, marker="*", c="gold", edgecolors="black", zorder=4,
                   label=f"recommended: {choice}")
    ax.axvline(1.0, color="black", lw=0.5)
    ax.axhline(0.0, color="black", lw=0.5)
    xs = [r.speedup for r in rows] or [1.0]
    lo, hi = min(xs + [1.0]), max(xs + [1.0])
    ax.set_xlim(lo - 0.05, hi + 0.25 * (hi - lo + 0.2))
    ax.set_yscale("symlog", linthresh=LINTHRESH, linscale=1.0)
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ax.yaxis.set_major_locator(FixedLocator([-10, -1, -0.1, 0, 0.1, 1, 10, 100]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:+g}" if v else "0"))
    ys = [y(r) for r in rows] or [0.0]
    top = max(ys + [1.0])
    ax.set_ylim(min(ys + [0.0]) * 1.5 - 0.02, top * 6.0)  # headroom above for labels and the legend
    ax.set_xlabel("prefill speed-up vs baseline (interleaved timing; bars: ~95 % interval)")
    ax.set_ylabel(f"bits/byte change vs baseline (%, symlog: linear within ±{LINTHRESH:g} %)")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, which="both")


def _bars(ax: Any, rows: list[Row], choice: str | None) -> None:
    rows = sorted(rows, key=lambda r: r.speedup)
    ys = list(range(len(rows)))
    colors = ["gold" if r.name == choice else "tab:red" if r.pareto else
              "black" if r.name == "baseline" else "tab:gray" for r in rows]
    from matplotlib.patches import Patch

    ax.barh(ys, [r.speedup for r in rows], color=colors, height=0.6)
    handles = [Patch(color="gold", label=f"prefill speed-up, fastest: {choice}"),
               Patch(color="black", label="baseline"), Patch(color="tab:gray", label="prefill speed-up")]
    dec = [(i, r.decode_speedup) for i, r in enumerate(rows) if r.decode_speedup is not None]
    if dec:
        handles.append(ax.scatter([d for _, d in dec], [i for i, _ in dec], marker="D", s=18, c="tab:blue",
                                  zorder=3, label="decode-step speed-up"))
    ax.set_yticks(ys)
    ax.set_yticklabels([r.name for r in rows], fontsize=7)
    ax.axvline(1.0, color="black", lw=0.5)
    ax.set_xlabel("speed-up vs baseline (latency only)")
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")
