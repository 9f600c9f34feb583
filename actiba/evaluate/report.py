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
               "latency_p90_ms", "seq_len", "speedup", "pareto", "error")


def machine() -> dict[str, Any]:
    """What the numbers were measured on and with (DESIGN §5: every number names its machine)."""
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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


def _schema_row(r: dict[str, Any]) -> dict[str, Any]:
    """A config row with the DESIGN §4 keys first (extras kept after them)."""
    keys = ("name", "cumba", "reduba", "activations", "metric", "metric_delta_rel", "latency_ms", "speedup", "pareto")
    out = {k: r.get(k) for k in keys}
    out.update({k: v for k, v in r.items() if k not in out})
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
            })
    return rows


def write_csv(path: Path, runs: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in csv_rows(runs):
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def write_plot(path: Path, runs: list[dict[str, Any]]) -> None:
    """Metric loss (%) vs speed-up, one panel per run, Pareto points highlighted and named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(runs))
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.8), squeeze=False)
    for ax, run in zip(axes[0], runs or [{}], strict=False):
        rows = [r for r in run.get("configs", []) if r.get("speedup") is not None]
        latency_only = run.get("metric") is None
        for r in rows:
            y = 0.0 if latency_only else 100.0 * (r.get("metric_delta_rel") or 0.0)
            on = bool(r.get("pareto")) or latency_only
            ax.scatter(r["speedup"], y, s=50 if on else 25, c="tab:red" if on else "tab:gray",
                       edgecolors="black" if on else "none", zorder=3 if on else 2)
            if on or r["name"] == "baseline":
                ax.annotate(r["name"], (r["speedup"], y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = sorted((r for r in rows if r.get("pareto")), key=lambda r: r["speedup"])
        if front and not latency_only:
            ax.plot([r["speedup"] for r in front], [100.0 * r["metric_delta_rel"] for r in front], "r--", lw=1)
        ax.axvline(1.0, color="black", lw=0.5)
        ax.axhline(0.0, color="black", lw=0.5)
        label = " (RANDOM weights)" if run.get("random_weights") else ""
        ax.set_title(f"{run.get('model')}{label}\n{run.get('device')} {run.get('precision')}", fontsize=9)
        ax.set_xlabel("speed-up vs baseline (median latency)")
        ax.set_ylabel("latency only" if latency_only else "bits/byte change vs baseline (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buf.getvalue())


def _table_html(run: dict[str, Any]) -> str:
    head = ("config", "CumBA", "ReduBA", "SSD", "SiLU", "Softplus", "bits/byte", "Δ rel", "median ms",
            "p10", "p90", "speed-up", "Pareto", "note")
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in run["configs"]:
        acts = r.get("activations") or {}
        lat = r.get("latency_ms") or {}
        ssd = "+".join(k for k, on in (("d1", r.get("ssd_d1")), ("d2", r.get("ssd_d2"))) if on)
        delta = r.get("metric_delta_rel")
        note = r.get("error") or (r.get("compile") or {}).get("snippets", "")
        cells = (r["name"], "yes" if r.get("cumba") else "", "yes" if r.get("reduba") else "", ssd,
                 (acts.get("silu") or {}).get("table", "exact"), (acts.get("softplus") or {}).get("table", "exact"),
                 _fmt(r.get("metric"), 6), "" if delta is None else f"{100 * delta:+.3f}%", _fmt(lat.get("median")),
                 _fmt(lat.get("p10")), _fmt(lat.get("p90")), _fmt(r.get("speedup"), 3),
                 "★" if r.get("pareto") else "", note)
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
             "windows), computed by the same OpenVINO graph that is timed, at the stated inference precision. "
             "Latency: median of repeated synchronous prefill inferences of one request on [1, seq_len]. "
             "Speed-up = baseline median / config median; baseline = the unmodified model at the same "
             "precision on the same device. No NPU figure is claimed from these CPU runs.</p>"]
    if doc.get("choice"):
        parts.append(f"<p><b>Choice:</b> {html.escape(doc['choice'])}</p>")
    parts.append("<img src='pareto.png' style='max-width:100%'>")
    for run in doc.get("runs", []):
        s = run.get("settings") or {}
        label = " — <span class='warn'>RANDOM weights: latency only, accuracy meaningless</span>" \
            if run.get("random_weights") else ""
        parts.append(f"<h2>{html.escape(str(run['model']))} · {html.escape(str(run['device']))} · precision hint "
                     f"{html.escape(str(run['precision']))} (used: {html.escape(str(run.get('precision_used')))})"
                     f"{label}</h2>")
        parts.append(f"<p>seq_len {s.get('seq_len')}, {s.get('eval_bytes_scored')} held-out bytes scored, "
                     f"{s.get('warmup')} warm-up + {s.get('repeats')} timed runs, threads {s.get('threads')}; "
                     f"{run.get('resumed', 0)} rows resumed from the cache.</p>")
        parts.append(_table_html(run))
        parts.append(_profile_html(run.get("baseline"), "Baseline profile"))
        chosen = next((r for r in run["configs"] if r.get("profile_ms") and r["name"] != "baseline"), None)
        if chosen:
            parts.append(_profile_html(chosen, f"Profile of {chosen['name']}"))
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
    write_html(out_dir / "report.html", doc)
    return doc
