"""Write DIR/results.json, results.csv, pareto.png and report.html (DESIGN §4); the figure and the page
are `report_plot` and `report_html`.

Why `results.json` carries one run at the top level plus a `runs` list: DESIGN §4 fixes the shape of
one (model, device, precision) result, and `actiba pareto` without a model measures two models (and
every precision the device has); the first run is the primary one, every run has the same shape.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import write_text
from .report_html import write_html
from .report_plot import write_plot
from .report_text import prefill_logits

if TYPE_CHECKING:
    from .row import Row

CSV_COLUMNS = ("model", "random_weights", "device", "precision", "name", "cumba", "reduba", "ssd_d1", "ssd_d2",
               "silu", "softplus", "metric", "metric_delta_rel", "latency_median_ms", "latency_p10_ms",
               "latency_p90_ms", "seq_len", "speedup", "pareto", "error", "decode_latency_median_ms", "decode_speedup",
               "same_graph_as", "prefill_logits", "ssd_chunk", "metric_delta_rel_bf16_emulated",
               "metric_delta_rel_f16_emulated", "metric_delta_halfwidth_rel", "speedup_halfwidth_rel",
               "metric_precision")

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


def _schema_row(r: Row) -> dict[str, Any]:
    """A config row with the DESIGN §4 keys first (extras kept after them, cache-only ones dropped)."""
    keys = ("name", "cumba", "reduba", "activations", "metric", "metric_delta_rel", "metric_delta_halfwidth_rel",
            "latency_ms", "speedup", "pareto")
    d = r.to_dict(cache=False)
    out = {k: d.get(k) for k in keys}
    out.update({k: v for k, v in d.items() if k not in out})
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


def csv_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        for r in run["configs"]:
            acts = r.activations or {}
            lat = r.latency_ms.to_dict() if r.latency_ms else {}
            rows.append({
                "model": run["model"], "random_weights": run.get("random_weights"), "device": run["device"],
                "precision": run["precision"], "name": r.name, "cumba": r.cumba, "reduba": r.reduba,
                "ssd_d1": r.ssd_d1, "ssd_d2": r.ssd_d2,
                "silu": (acts.get("silu") or {}).get("table", "exact"),
                "softplus": (acts.get("softplus") or {}).get("table", "exact"),
                "metric": r.metric, "metric_delta_rel": r.metric_delta_rel,
                "latency_median_ms": lat.get("median"), "latency_p10_ms": lat.get("p10"),
                "latency_p90_ms": lat.get("p90"), "seq_len": lat.get("seq_len"), "speedup": r.speedup,
                "pareto": r.pareto, "error": r.error or "",
                "decode_latency_median_ms": r.decode_latency_ms.median if r.decode_latency_ms else None,
                "decode_speedup": r.decode_speedup, "same_graph_as": r.same_graph_as or "",
                "prefill_logits": prefill_logits(run), "ssd_chunk": r.ssd_chunk or "",
                **{f"metric_delta_rel_{p}_emulated": (r.metric_emulated_delta_rel or {}).get(p)
                   for p in ("bf16", "f16")},
                "metric_delta_halfwidth_rel": r.metric_delta_halfwidth_rel,
                "speedup_halfwidth_rel": r.latency_ratio.halfwidth_rel if r.latency_ratio else None,
                "metric_precision": r.metric_precision,
            })
    return rows


def write_csv(path: Path, runs: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in csv_rows(runs):
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def write_report(out_dir: Path, runs: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the four report files into `out_dir`; returns the results.json document."""
    doc = results_document(runs, machine(), extra)
    write_text(out_dir / "results.json", json.dumps(doc, indent=1, default=str) + "\n")
    write_csv(out_dir / "results.csv", runs)
    write_plot(out_dir / "pareto.png", runs)
    title = "actiba Pareto report"
    if runs and all(r.get("random_weights") for r in runs):
        title += " — RANDOM weights (latency only)"
    write_html(out_dir / "report.html", runs, doc["machine"], title, doc.get("precisions"))
    return doc
