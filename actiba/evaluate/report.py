"""Write DIR/results.json, results.csv, pareto.png and report.html (DESIGN §4).

Why `results.json` carries one run at the top level plus a `runs` list: DESIGN §4 fixes the shape of
one (model, device, precision) result, and `actiba pareto` without a model measures two models (and
every precision the device has); the first run is the primary one, every run has the same shape.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import platform
from pathlib import Path
from typing import Any

from .._atomic import write_bytes, write_text

CSV_COLUMNS = ("model", "random_weights", "device", "precision", "name", "cumba", "reduba", "ssd_d1", "ssd_d2",
               "silu", "softplus", "metric", "metric_delta_rel", "latency_median_ms", "latency_p10_ms",
               "latency_p90_ms", "seq_len", "speedup", "pareto", "error", "decode_latency_median_ms", "decode_speedup",
               "same_graph_as", "prefill_logits", "ssd_chunk", "metric_delta_rel_bf16_emulated",
               "metric_delta_rel_f16_emulated", "metric_delta_halfwidth_rel", "speedup_halfwidth_rel",
               "metric_precision")

LOGITS_WORDS = {
    "last": "last-position logits only ([1, 1, V], what a generator's prefill computes)",
    "all": "logits at every position ([1, L, V], what perplexity scoring computes)",
}


def prefill_logits(run: dict[str, Any]) -> str:
    """The run's timed prefill output mode; runs written before the mode existed timed all positions."""
    return str(run.get("prefill_logits") or (run.get("settings") or {}).get("prefill_logits") or "all")


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows; every benchmark names its machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "?"


def machine() -> dict[str, Any]:
    """What the numbers were measured on and with (DESIGN §5: every number names its machine)."""
    import importlib.metadata as md

    cpu = cpu_name()
    versions = {}
    for pkg in ("actiba", "torch", "transformers", "openvino", "onnx", "onnxruntime", "lm_eval", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version(), "versions": versions}
    try:
        info["load_average_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        import openvino as ov

        core = ov.Core()
        info["openvino_devices"] = {d: str(core.get_property(d, "FULL_DEVICE_NAME")) for d in core.available_devices}
        info["cpu_capabilities"] = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception:
        pass
    return info


def null_control_words(null: dict[str, Any] | None) -> str:
    """One sentence on the run's null control (the baseline against itself compiled again)."""
    if not null:
        return "Null control: not measured (a speed-up only has to clear its own timing interval)."
    if null.get("error"):
        return f"Null control failed ({null['error']}); speed-ups only have to clear their own interval."
    again = f", after {null['attempts']} attempts (re-compiled, more pairs)" if null.get("attempts", 1) > 1 else ""
    return (f"Null control: the baseline graph compiled a second time measured {null['speedup']:.3f}× "
            f"(±{100 * float(null.get('halfwidth_rel') or 0):.1f}%, {null.get('pairs')} pairs{again}), so a "
            f"configuration is recommended only if it is faster than {1 + float(null.get('noise') or 0):.3f}× "
            "even at the pessimistic end of its own interval.")


def emulated_words(run: dict[str, Any]) -> str:
    """One sentence per emulated precision: what the baseline and the front lose there (empty if none)."""
    out = []
    precs = sorted({p for r in run.get("configs", []) for p in (r.get("metric_emulated_delta_rel") or {})})
    for p in precs:
        rows = [(r["name"], r["metric_emulated_delta_rel"][p]) for r in run["configs"]
                if p in (r.get("metric_emulated_delta_rel") or {})]
        listed = ", ".join(f"{n} {100 * d:+.3f}%" for n, d in rows)
        out.append(f"{p}, emulated (every float tensor rounded to {p}; onnxruntime; accuracy only, no latency "
                   f"is claimed): bits/byte vs the f32 baseline — {listed}.")
    return " ".join(out)


_CACHE_ONLY = ("metric_windows",)  # per-window nats: kept in the row cache for the paired test, not reported


def _schema_row(r: dict[str, Any]) -> dict[str, Any]:
    """A config row with the DESIGN §4 keys first (extras kept after them, cache-only ones dropped)."""
    keys = ("name", "cumba", "reduba", "activations", "metric", "metric_delta_rel", "metric_delta_halfwidth_rel",
            "latency_ms", "speedup", "pareto")
    out = {k: r.get(k) for k in keys}
    out.update({k: v for k, v in r.items() if k not in out and k not in _CACHE_ONLY})
    return out


def results_document(runs: list[dict[str, Any]], info: dict[str, Any], extra: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """The results.json object: the primary run's fields, then `runs` (all of them), machine, extras."""
    def run_doc(run: dict[str, Any]) -> dict[str, Any]:
        doc = {k: run.get(k) for k in ("model", "device", "precision", "metric")}
        doc["baseline"] = _schema_row(run["baseline"]) if run.get("baseline") else None
        doc["configs"] = [_schema_row(r) for r in run["configs"]]
        doc.update({k: v for k, v in run.items() if k not in doc})
        return doc

    docs = [run_doc(r) for r in runs]
    out = dict(docs[0]) if docs else {"model": None, "device": None, "precision": None, "metric": None,
                                      "baseline": None, "configs": []}
    out["runs"] = docs
    out["machine"] = info
    if extra:
        out.update(extra)
    return out


def _fmt(v: Any, nd: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{nd}g}"
    return str(v)


def csv_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for r in run["configs"]:
            acts = r.get("activations") or {}
            lat = r.get("latency_ms") or {}
            rows.append({
                "model": run["model"], "random_weights": run.get("random_weights"), "device": run["device"],
                "precision": run["precision"], "name": r["name"], "cumba": r.get("cumba"), "reduba": r.get("reduba"),
                "ssd_d1": r.get("ssd_d1"), "ssd_d2": r.get("ssd_d2"),
                "silu": (acts.get("silu") or {}).get("table", "exact"),
                "softplus": (acts.get("softplus") or {}).get("table", "exact"),
                "metric": r.get("metric"), "metric_delta_rel": r.get("metric_delta_rel"),
                "latency_median_ms": lat.get("median"), "latency_p10_ms": lat.get("p10"),
                "latency_p90_ms": lat.get("p90"), "seq_len": lat.get("seq_len"), "speedup": r.get("speedup"),
                "pareto": r.get("pareto"), "error": r.get("error") or "",
                "decode_latency_median_ms": (r.get("decode_latency_ms") or {}).get("median"),
                "decode_speedup": r.get("decode_speedup"), "same_graph_as": r.get("same_graph_as") or "",
                "prefill_logits": prefill_logits(run), "ssd_chunk": r.get("ssd_chunk") or "",
                **{f"metric_delta_rel_{p}_emulated": (r.get("metric_emulated_delta_rel") or {}).get(p)
                   for p in ("bf16", "f16")},
                "metric_delta_halfwidth_rel": r.get("metric_delta_halfwidth_rel"),
                "speedup_halfwidth_rel": (r.get("latency_ratio") or {}).get("halfwidth_rel"),
                "metric_precision": r.get("metric_precision"),
            })
    return rows


def write_csv(path: Path, runs: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in csv_rows(runs):
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


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
    heights = [max(4.8, 0.22 * len((r or {}).get("configs", [])) + 1.5) if r.get("metric") is None else 4.8
               for r in runs]
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.8 * ncols, max(heights) * nrows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(runs):]:
        ax.set_visible(False)
    for ax, run in zip(flat, runs, strict=False):
        rows = [r for r in run.get("configs", []) if r.get("speedup") is not None]
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
            rows = [r for r in run.get("configs", []) if r.get("speedup") is not None]
            named = [r for r in rows if r.get("pareto") or r["name"] in ("baseline", run.get("choice_name"))]
            place_labels(ax, [(r["speedup"], _loss_pct(r), r["name"]) for r in named])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _loss_pct(r: dict[str, Any]) -> float:
    return 100.0 * (r.get("metric_delta_rel") or 0.0)


def _xerr(r: dict[str, Any]) -> tuple[float, float]:
    """(left, right) error of the speed-up from the paired ratio's relative half-width."""
    h = (r.get("latency_ratio") or {}).get("halfwidth_rel")
    if not isinstance(h, (int, float)) or not h == h or h == float("inf"):
        return 0.0, 0.0
    s = r["speedup"]
    return s - s / (1.0 + h), s * (1.0 + h) - s


def _scatter(ax: Any, rows: list[dict[str, Any]], choice: str | None) -> None:
    y = _loss_pct
    other = [r for r in rows if not r.get("pareto")]
    front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["speedup"])
    for group, color in ((other, "0.6"), (front, "tab:red")):
        if group:
            xe = list(zip(*[_xerr(r) for r in group], strict=True))
            ye = [100.0 * (r.get("metric_delta_halfwidth_rel") or 0.0) for r in group]
            ax.errorbar([r["speedup"] for r in group], [y(r) for r in group], xerr=xe, yerr=ye, fmt="none",
                        ecolor=color, elinewidth=0.8, capsize=2, zorder=1)
    ax.scatter([r["speedup"] for r in other], [y(r) for r in other], s=22, c="tab:gray", zorder=2,
               label="other configurations (see table)")
    ax.scatter([r["speedup"] for r in front], [y(r) for r in front], s=45, c="tab:red", edgecolors="black",
               zorder=3, label="Pareto set (losses within their paired interval tie)")
    if front:
        ax.plot([r["speedup"] for r in front], [y(r) for r in front], "r--", lw=1)
    pick = next((r for r in rows if r["name"] == choice), None)
    if pick is not None:
        ax.scatter([pick["speedup"]], [y(pick)], s=220, marker="*", c="gold", edgecolors="black", zorder=4,
                   label=f"recommended: {choice}")
    ax.axvline(1.0, color="black", lw=0.5)
    ax.axhline(0.0, color="black", lw=0.5)
    xs = [r["speedup"] for r in rows] or [1.0]
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


def _bars(ax: Any, rows: list[dict[str, Any]], choice: str | None) -> None:
    rows = sorted(rows, key=lambda r: r["speedup"])
    ys = list(range(len(rows)))
    colors = ["gold" if r["name"] == choice else "tab:red" if r.get("pareto") else
              "black" if r["name"] == "baseline" else "tab:gray" for r in rows]
    from matplotlib.patches import Patch

    ax.barh(ys, [r["speedup"] for r in rows], color=colors, height=0.6)
    handles = [Patch(color="gold", label=f"prefill speed-up, fastest: {choice}"),
               Patch(color="black", label="baseline"), Patch(color="tab:gray", label="prefill speed-up")]
    dec = [(i, r["decode_speedup"]) for i, r in enumerate(rows) if r.get("decode_speedup") is not None]
    if dec:
        handles.append(ax.scatter([d for _, d in dec], [i for i, _ in dec], marker="D", s=18, c="tab:blue",
                                  zorder=3, label="decode-step speed-up"))
    ax.set_yticks(ys)
    ax.set_yticklabels([r["name"] for r in rows], fontsize=7)
    ax.axvline(1.0, color="black", lw=0.5)
    ax.set_xlabel("speed-up vs baseline (latency only)")
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.grid(alpha=0.3, axis="x")


def _note(r: dict[str, Any]) -> str:
    snip = (r.get("compile") or {}).get("snippets")
    parts = [r.get("error") or "", f"OpenVINO snippets {snip}" if snip else ""]
    if r.get("same_graph_as"):
        parts.append(f"graph identical to {r['same_graph_as']}: its measurement is reused")
    if r.get("metric_reused_from"):
        parts.append(f"accuracy scored once for this graph, at {r.get('metric_precision')} "
                     f"(the {r['metric_reused_from']} run)")
    ratio = r.get("latency_ratio") or {}
    if ratio.get("pairs"):
        parts.append(f"{ratio['pairs']} pairs")
    if r.get("decode_error"):
        parts.append(f"decode: {r['decode_error']}")
    for p, delta in (r.get("metric_emulated_delta_rel") or {}).items():
        parts.append(f"{p} (emulated): bits/byte {100 * delta:+.3f}% vs the f32 baseline")
    for p, err in (r.get("emulate_error") or {}).items():
        parts.append(f"{p} emulation failed: {err}")
    return "; ".join(p for p in parts if p)


def delta_text(r: dict[str, Any]) -> str:
    """'+0.012% ±0.004%': the bits/byte change and its paired ~95 % interval ('<0.0001%' at the floor)."""
    delta = r.get("metric_delta_rel")
    if delta is None:
        return ""
    hw = r.get("metric_delta_halfwidth_rel")
    if not hw:
        return f"{100 * delta:+.3f}%"
    return f"{100 * delta:+.3f}% ±{'<0.0001' if hw <= 1e-6 else f'{100 * hw:.3f}'}%"


def speedup_text(r: dict[str, Any]) -> str:
    """'1.58× ±1.2%': the speed-up and its timing interval."""
    s = r.get("speedup")
    if s is None:
        return ""
    hw = (r.get("latency_ratio") or {}).get("halfwidth_rel")
    return f"{s:.3g}×" + (f" ±{100 * hw:.1f}%" if isinstance(hw, (int, float)) and hw == hw and hw < 10 else "")


def _table_html(run: dict[str, Any]) -> str:
    head = ("config", "CumBA", "ReduBA", "SSD", "SiLU", "Softplus", "bits/byte", "Δ rel ± paired 95 %",
            "median ms", "p10", "p90", "speed-up ± 95 %", "decode ms", "decode speed-up", "Pareto", "note")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in run["configs"]:
        acts = r.get("activations") or {}
        lat = r.get("latency_ms") or {}
        ssd = "+".join(k for k, on in (("d1", r.get("ssd_d1")), ("d2", r.get("ssd_d2"))) if on)
        ssd += f" (chunk {r['ssd_chunk']})" if r.get("ssd_chunk") else ""
        cells = (r["name"], "yes" if r.get("cumba") else "", "yes" if r.get("reduba") else "", ssd,
                 (acts.get("silu") or {}).get("table", "exact"), (acts.get("softplus") or {}).get("table", "exact"),
                 _fmt(r.get("metric"), 6), delta_text(r), _fmt(lat.get("median")),
                 _fmt(lat.get("p10")), _fmt(lat.get("p90")), speedup_text(r),
                 _fmt((r.get("decode_latency_ms") or {}).get("median")), _fmt(r.get("decode_speedup"), 3),
                 "★" if r.get("pareto") else "", _note(r))
        cls = ' class="err"' if r.get("error") else (' class="front"' if r.get("pareto") else "")
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _profile_html(row: dict[str, Any] | None, title: str) -> str:
    prof = (row or {}).get("profile_ms")
    if not prof:
        return ""
    total = sum(prof.values()) or 1.0
    items = list(prof.items())[:12]
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td><td>{100 * v / total:.1f}%</td></tr>"
                   for k, v in items)
    return (f"<p><b>{html.escape(title)}</b> — time by OpenVINO node type (PERF_COUNT, ms per inference)</p>"
            f"<table><tr><th>node type</th><th>ms</th><th>share</th></tr>{body}</table>")


def profile_summary(run: dict[str, Any], top: int = 8) -> tuple[list[str], list[tuple[str, dict[str, float]]]]:
    """(node types, [(config, {type: share of that config's profiled time})]) for every profiled row.

    Node types are the baseline's `top` largest plus CumSum / ReduceSum / MatMul when present, so the
    shares the rewrites move are always visible.
    """
    rows = [r for r in run.get("configs", []) if r.get("profile_ms")]
    if not rows:
        return [], []
    base = next((r for r in rows if r["name"] == "baseline"), rows[0])
    types = list(base["profile_ms"])[:top]
    for t in ("CumSum", "ReduceSum", "MatMul"):
        if t not in types and any(t in r["profile_ms"] for r in rows):
            types.append(t)
    out = []
    for r in rows:
        total = sum(r["profile_ms"].values()) or 1.0
        out.append((r["name"], {t: r["profile_ms"].get(t, 0.0) / total for t in types}))
    return types, out


def _profile_summary_html(run: dict[str, Any]) -> str:
    types, rows = profile_summary(run)
    if len(rows) < 2:
        return ""
    head = "".join(f"<th>{html.escape(t)}</th>" for t in types)
    body = "".join(f"<tr><td>{html.escape(n)}</td>" + "".join(f"<td>{100 * v[t]:.1f}%</td>" for t in types)
                   + "</tr>" for n, v in rows)
    return ("<p><b>Per-op profile summary</b> — share of each configuration's profiled time by OpenVINO node "
            f"type (PERF_COUNT)</p><table><tr><th>config</th>{head}</tr>{body}</table>")


def run_label(run: dict[str, Any]) -> str:
    s = run.get("settings") or {}
    return f"{run.get('model')} · {run.get('device')} {run.get('precision')} · {s.get('seq_len')} tokens"


def choices_html(runs: list[dict[str, Any]]) -> str:
    """The report's head: the choice of every run (model × precision × length), one line each."""
    items = []
    for run in runs:
        choice = run.get("choice") or "no choice (the baseline failed)"
        cls = " class='warn'" if run.get("choice_name") is None and run.get("choice") else ""
        items.append(f"<li><b>{html.escape(run_label(run))}</b>: <span{cls}>{html.escape(choice)}</span></li>")
    return ("<p><b>Choices</b> (fastest configuration within the loss budget that is faster than the baseline "
            "beyond its timing interval and the null control; a loss change inside its paired per-window "
            "interval counts as no change):</p><ul>" + "".join(items) + "</ul>")


def write_html(path: Path, doc: dict[str, Any], title: str = "actiba Pareto report") -> None:
    info = doc.get("machine", {})
    vers = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
             "body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}tr.front{background:#fee}"
             "tr.err{color:#999}.warn{color:#a00;font-weight:bold}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p><b>Machine:</b> {html.escape(str(info.get('cpu')))}, {info.get('cores')} logical cores, "
             f"{html.escape(str(info.get('platform')))}; 1-min load average at the end: "
             f"{info.get('load_average_1m')} (a shared machine: timings are noisy, see p10/p90).<br>"
             f"<b>OpenVINO devices:</b> {html.escape(str(info.get('openvino_devices')))}; CPU capabilities: "
             f"{html.escape(str(info.get('cpu_capabilities')))}<br><b>Versions:</b> {html.escape(vers)}</p>",
             "<p>Metric: bits per byte of the held-out split (Macbeth + The Tempest, first N bytes in whole "
             "windows), computed by the OpenVINO graph of the same configuration at the stated inference precision "
             "(with every position's logits; when the timed prefill returns the last position only, scoring "
             "runs the all-positions graph with the same rewrites). "
             "Δ rel's interval is ~95 % from the per-window differences against the baseline on the same windows "
             "(paired: the text's own predictability cancels), never below 1e-6 (float summation order); a loss "
             "change inside it is no change, in the Pareto set and in the choice. "
             "Latency: median of repeated synchronous prefill inferences of one request on [1, seq_len] "
             "returning the logits stated per run below (last position or every position), each "
             "configuration timed interleaved (ABBA) with the compiled baseline; speed-up = 1 / median of the "
             "per-pair time ratios (config / baseline), timing stops once that ratio is known to the stated "
             "tolerance. Decode: one single-token step with the conv and SSM states of every layer as graph "
             "inputs/outputs, timed the same way; only activation tables apply to it (CumBA, ReduBA and the "
             "SSD rewrites act on the prefill scan, which a single step does not have), so rows without tables "
             "share the baseline's decode graph. Baseline = the unmodified model at the same precision on the "
             "same device and in the same logits mode. No NPU figure is claimed from these CPU runs.</p>"]
    parts.append(choices_html(doc.get("runs") or []))
    parts.append("<img src='pareto.png' style='max-width:100%'>")
    for run in doc.get("runs", []):
        s = run.get("settings") or {}
        label = " — <span class='warn'>RANDOM weights: latency only, accuracy meaningless</span>" \
            if run.get("random_weights") else ""
        parts.append(f"<h2>{html.escape(str(run['model']))} · {s.get('seq_len')} tokens · "
                     f"{html.escape(str(run['device']))} · precision hint "
                     f"{html.escape(str(run['precision']))} (used: {html.escape(str(run.get('precision_used')))})"
                     f" · {prefill_logits(run)} logits{label}</h2>")
        parts.append(f"<p><b>Prefill output timed:</b> {html.escape(LOGITS_WORDS.get(prefill_logits(run), '?'))}; "
                     "speed-ups are against the baseline in the same mode.</p>")
        timing = (f"{s.get('warmup')} warm-up + {s.get('min_repeats')}–{s.get('repeats')} timed pairs (stop at "
                  f"±{100 * s['rel_tol']:g}% on the speed-up)" if s.get("rel_tol") else
                  f"{s.get('warmup')} warm-up + {s.get('repeats')} timed runs")
        scored = ("latency only" if run.get("metric") is None else
                  f"{s.get('eval_bytes_scored')} held-out bytes scored ({s.get('eval_bytes_reason') or 'all'})")
        secs = run.get("seconds") or {}
        spent = ("; wall time " + ", ".join(f"{k.replace('_', ' ')} {v:.0f} s" for k, v in secs.items())
                 if secs else "")
        parts.append(f"<p>seq_len {s.get('seq_len')}, {scored}, {timing}, threads {s.get('threads')}; "
                     f"{run.get('resumed', 0)} rows resumed from the cache{spent} (each row's own split: "
                     "`seconds` in results.json).</p>")
        parts.append(f"<p>{html.escape(null_control_words(run.get('null_control')))}</p>")
        if (run.get("null_control") or {}).get("usable") is False:
            parts.append("<p class='warn'>This run's latency is not usable: the null control stayed wide after "
                         "re-timing, so nothing is recommended from it.</p>")
        emulated = emulated_words(run)
        if emulated:
            parts.append(f"<p>{html.escape(emulated)}</p>")
        parts.append(_table_html(run))
        parts.append(_profile_html(run.get("baseline"), "Baseline profile"))
        chosen = next((r for r in run["configs"] if r.get("profile_ms") and r["name"] == run.get("choice_name")),
                      None) or next((r for r in run["configs"] if r.get("profile_ms") and r["name"] != "baseline"),
                                    None)
        if chosen:
            parts.append(_profile_html(chosen, f"Profile of {chosen['name']}"))
        parts.append(_profile_summary_html(run))
        if run.get("choice"):
            parts.append(f"<p><b>Within the loss budget:</b> {html.escape(run['choice'])}</p>")
    parts.append("</body></html>")
    write_text(path, "\n".join(parts))


def write_report(out_dir: Path, runs: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the four report files into `out_dir`; returns the results.json document."""
    doc = results_document(runs, machine(), extra)
    write_text(out_dir / "results.json", json.dumps(doc, indent=1, default=str) + "\n")
    write_csv(out_dir / "results.csv", runs)
    write_plot(out_dir / "pareto.png", runs)
    title = "actiba Pareto report"
    if runs and all(r.get("random_weights") for r in runs):
        title += " — RANDOM weights (latency only)"
    write_html(out_dir / "report.html", doc, title)
    return doc
