"""Evaluate configurations (accuracy + latency) and assemble one run per (model, precision).

Why each configuration is measured on the same exported OpenVINO graph for both numbers: the loss and
the speed-up then describe one deployable artifact at one inference precision. Finished rows are cached
in ``DIR/cache`` keyed by everything that changes them, so an interrupted sweep resumes; a failing
configuration becomes a row carrying its error and the sweep goes on.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import latency
from .build import LoadedModel, rewritten_onnx, to_openvino
from .configs import Config, describe_activations, tables_for
from .pareto import mark_pareto

CACHE_VERSION = 2  # 2: latency timed interleaved with the baseline


@dataclass
class Settings:
    """How every configuration is measured (part of the cache key)."""

    device: str = "CPU"
    seq_len: int = 256  # accuracy windows and the reported latency length
    eval_bytes: int = 32768  # held-out prefix scored (whole windows only)
    warmup: int = 3
    repeats: int = 20
    threads: int | None = 1
    latency_only: bool = False
    torch_metric: bool = False  # also score with torch + scoped tables (the approximation alone)
    extra_seq_lens: list[int] = field(default_factory=list)  # more prefill lengths (latency only)
    profile: bool = False  # per-op-type profile of every row (baseline is always profiled)

    def key(self) -> str:
        d = asdict(self)
        d.pop("profile")
        return hashlib.sha256(json.dumps([CACHE_VERSION, d], sort_keys=True).encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def evaluate_config(lm: LoadedModel, config: Config, settings: Settings, precision: str,
                    data: bytes | None, cache_dir: Path | None = None, profile: bool = False,
                    reference: Any = None) -> dict[str, Any]:
    """One row: metric (bits/byte, OpenVINO at `precision`), latency, sites rewritten, compile notes.

    With `reference` (the compiled baseline), latency is timed interleaved with it and the row keeps
    the baseline's latency from the same window, so the speed-up does not depend on load drift.
    """
    t0 = time.perf_counter()
    onnx_model, done = rewritten_onnx(lm, config, settings.seq_len, precision, cache_dir)
    t1 = time.perf_counter()
    ov_model = to_openvino(onnx_model)
    compiled, notes = latency.compile_model(ov_model, settings.device, precision, settings.threads)
    t2 = time.perf_counter()
    metric = None
    if not settings.latency_only:
        if data is None:
            raise InputError("no evaluation data")
        from .perplexity import openvino_logits_fn, windows_bits_per_byte

        metric = windows_bits_per_byte(openvino_logits_fn(compiled), data, settings.seq_len)
    t3 = time.perf_counter()
    feed = latency.random_ids(settings.seq_len, lm.vocab_size)
    ref = None
    if reference is not None:
        lat, ref = latency.time_paired(compiled, reference, feed, settings.warmup, settings.repeats)
    else:
        lat = latency.time_compiled(compiled, feed, settings.warmup, settings.repeats)
    del compiled
    row: dict[str, Any] = {
        "name": config.name, "cumba": config.cumba, "reduba": config.reduba,
        "ssd_d1": config.ssd_d1, "ssd_d2": config.ssd_d2,
        "activations": describe_activations(config), "metric": metric,
        "latency_ms": {k: v for k, v in lat.as_dict().items() if k != "repeats"} | {"repeats": lat.repeats},
        "sites_rewritten": done, "compile": notes, "error": None,
    }
    if ref is not None:
        row["baseline_latency_ms"] = {k: v for k, v in ref.as_dict().items() if k != "repeats"}
    if settings.torch_metric and not settings.latency_only and data is not None:
        from .perplexity import torch_bits_per_byte

        row["metric_torch"] = torch_bits_per_byte(lm.model, data, settings.seq_len, tables_for(config, lm))
    if profile or settings.profile:
        compiled_p, _ = latency.compile_model(ov_model, settings.device, precision, settings.threads, profile=True)
        row["profile_ms"] = latency.profile_by_type(compiled_p, feed)
    extra = {}
    for n in settings.extra_seq_lens:
        m, _ = rewritten_onnx(lm, config, n, precision, cache_dir)
        c, _ = latency.compile_model(to_openvino(m), settings.device, precision, settings.threads)
        extra[str(n)] = latency.time_compiled(c, latency.random_ids(n, lm.vocab_size), settings.warmup,
                                              settings.repeats).as_dict()
    if extra:
        row["latency_by_seq_len"] = extra
    row["seconds"] = {"build": round(t1 - t0, 2), "compile": round(t2 - t1, 2), "accuracy": round(t3 - t2, 2),
                      "total": round(time.perf_counter() - t0, 2)}
    return row


def error_row(config: Config, exc: BaseException) -> dict[str, Any]:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return {"name": config.name, "cumba": config.cumba, "reduba": config.reduba, "ssd_d1": config.ssd_d1,
            "ssd_d2": config.ssd_d2, "activations": _safe_acts(config), "metric": None, "latency_ms": None,
            "error": f"{type(exc).__name__}: {msg}"[:300]}


def _safe_acts(config: Config) -> dict[str, Any]:
    try:
        return describe_activations(config)
    except Exception:
        return {k: dict(v) for k, v in config.activations.items()}


def finish_run(rows: list[dict[str, Any]], baseline_name: str = "baseline") -> dict[str, Any] | None:
    """Add metric_delta_rel, speedup and pareto to every row (relative to the baseline row); return it."""
    base = next((r for r in rows if r["name"] == baseline_name), None)
    ok_base = base is not None and not base.get("error")
    for r in rows:
        r["metric_delta_rel"] = None
        r["speedup"] = None
        if not ok_base or r.get("error"):
            continue
        if r.get("metric") is not None and base.get("metric"):
            r["metric_delta_rel"] = (r["metric"] - base["metric"]) / base["metric"]
        elif r.get("metric") is None and base.get("metric") is None:
            r["metric_delta_rel"] = None
        if r.get("latency_ms") and r.get("baseline_latency_ms"):  # timed interleaved with the baseline
            r["speedup"] = r["baseline_latency_ms"]["median"] / r["latency_ms"]["median"]
        elif r.get("latency_ms") and base.get("latency_ms"):
            r["speedup"] = base["latency_ms"]["median"] / r["latency_ms"]["median"]
    if ok_base and base.get("metric") is None:  # latency only: the front is the fastest rows
        tmp = [dict(r, metric_delta_rel=0.0 if r["speedup"] is not None else None) for r in rows]
        mark_pareto(tmp)
        for r, t in zip(rows, tmp, strict=True):
            r["pareto"] = t["pareto"]
    else:
        mark_pareto(rows)
    return base


def run_one(lm: LoadedModel, configs: list[Config], settings: Settings, precision: str, out_dir: Path,
            step: Callable[[str], None] | None = None, data: bytes | None = None) -> dict[str, Any]:
    """Every configuration of one (model, precision) run, resumable from ``out_dir/cache``."""
    if not any(c.is_baseline for c in configs):
        configs = [Config("baseline"), *configs]
    base_name = next(c.name for c in configs if c.is_baseline)
    cache = out_dir / "cache"
    row_dir = cache / "rows" / _slug(lm.name) / precision
    row_dir.mkdir(parents=True, exist_ok=True)
    if data is None and not settings.latency_only:
        from .perplexity import heldout

        data = heldout(settings.eval_bytes)
    rows, resumed = [], 0
    reference: list[Any] = []  # the compiled baseline, built on first need

    def baseline_compiled() -> Any:
        if not reference:
            base_cfg = next(c for c in configs if c.is_baseline)
            m, _ = rewritten_onnx(lm, base_cfg, settings.seq_len, precision, cache)
            reference.append(latency.compile_model(to_openvino(m), settings.device, precision,
                                                   settings.threads)[0])
        return reference[0]

    for c in configs:
        path = row_dir / f"{_slug(c.name)}-{c.key()}-{settings.key()}.json"
        if step:
            step(f"{lm.name.split(':')[-1]} {precision} {c.name}")
        if path.is_file():
            try:
                rows.append(json.loads(path.read_text()))
                resumed += 1
                continue
            except (OSError, ValueError):
                pass
        try:
            row = evaluate_config(lm, c, settings, precision, data, cache, profile=c.is_baseline,
                                  reference=None if c.is_baseline else baseline_compiled())
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing configuration is a row; the sweep goes on
            rows.append(error_row(c, exc))
            continue
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(row, indent=1))
        tmp.replace(path)
        rows.append(row)
    base = finish_run(rows, base_name)
    return {
        "model": lm.name, "model_type": lm.model_type, "random_weights": lm.random_weights,
        "device": settings.device, "precision": precision,
        "precision_used": (base or {}).get("compile", {}).get("precision_used") if base else None,
        "metric": None if settings.latency_only else "bits_per_byte",
        "baseline": base, "configs": rows, "resumed": resumed,
        "settings": asdict(settings) | {"eval_bytes_scored": None if data is None else
                                        len(data) - len(data) % settings.seq_len},
    }


def progress_bar(total: int) -> Any:
    """tqdm on a terminal, silent otherwise (DESIGN §3)."""
    from tqdm import tqdm

    return tqdm(total=total, disable=not sys.stderr.isatty(), unit="config", leave=False)
