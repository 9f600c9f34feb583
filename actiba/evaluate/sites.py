"""Per-site choice by measurement: which CumBA / ReduBA sites pay off on this device.

Why by measurement: what a rewrite saves depends on the device's kernels, so the sweep times each class
of sites rather than predicting it. It is timing, so it runs where the run's baseline is compiled.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import latency
from .build import LoadedModel, to_openvino
from .configs import Config
from .row import Ratio, Row
from .settings import Settings


def measured_sites(lm: LoadedModel, config: Config, settings: Settings, precision: str, cache_dir: Path | None,
                   reference: Any, noise: float = 0.0,
                   timed: Callable[[Any], dict[str, Any] | None] | None = None) -> tuple[Config, list[dict[str, Any]]]:
    """Choose CumBA / ReduBA sites by measurement on this device.

    Eligible sites are grouped into classes of equal (axis, shape) — sites of a class compile to the
    same kernels, so one timing speaks for all of them. For each class, the graph with only that class
    rewritten is timed interleaved with the graph it is added to (the baseline, or the config's SSD
    variant); a class is kept only if it is faster even at the pessimistic end of its interval, by more
    than the run's null-control `noise`.
    Returns the config with explicit site lists (a rewrite with
    no kept class is switched off) and one record per class for the report.

    `timed(model)`: the paired ratio (`Ratio` dict) this run already measured for a byte-identical graph
    against the same reference, or None. A class holding every site of its rewrite is, on a model without
    SSD, the rewrite's own row (`cumba`, `reduba`): the embedded Mamba's per-site row spent 11 of its 11 s
    compiling and timing those same two graphs again. A reused record says `"reused": true`.
    """
    import glob as _glob

    from ..rewrite import onnx_rw
    from .build import _onnx_base
    from .pareto import faster_than

    base = _onnx_base(lm, config, settings.seq_len, precision, cache_dir, settings.prefill_logits)
    feed = latency.random_ids(settings.seq_len, lm.vocab_size)
    ssd = bool(config.ssd_d1 or config.ssd_d2 or config.ssd_chunk)
    if ssd:  # a class must beat the graph it is added to
        reference, _ = latency.compile_model(to_openvino(base), settings.device, precision, settings.threads)
    kept: dict[str, list[str]] = {}
    records: list[dict[str, Any]] = []
    for rw in [r for r, on in (("cumba", config.cumba), ("reduba", config.reduba)) if on]:
        classes: dict[tuple[Any, ...], list[str]] = {}
        for s in onnx_rw.find_sites(base, rw):
            if s.ok:
                classes.setdefault((str(s.axis), str(s.shape)), []).append(s.name)
        for (axis, shape), names in classes.items():
            model, _ = onnx_rw.apply(base, [rw], sites=names)
            ratio = timed(model) if timed is not None and not ssd else None
            reused = ratio is not None
            if ratio is None:
                compiled, _ = latency.compile_model(to_openvino(model), settings.device, precision,
                                                    settings.threads)
                paired = latency.time_paired_adaptive(compiled, reference, feed, settings.warmup, settings.repeats,
                                                      settings.min_repeats, settings.rel_tol,
                                                      settings.timing_seconds)
                del compiled
                ratio = paired.ratio_dict()
            rec = {"rewrite": rw, "axis": axis, "shape": shape, "sites": len(names),
                   "speedup": 1.0 / ratio["median"], "latency_ratio": ratio}
            if reused:
                rec["reused"] = True
            rec["kept"] = faster_than(rec["speedup"], Ratio.from_dict(rec["latency_ratio"]).halfwidth, noise)
            records.append(rec)
            if rec["kept"]:
                kept.setdefault(rw, []).extend(_glob.escape(n) for n in names)
    chosen = dataclasses.replace(config, cumba=bool(kept.get("cumba")), reduba=bool(kept.get("reduba")),
                                 sites={**config.sites, **kept}, measure_sites=False)
    return chosen, records


def config_of(row: Row, config: Config) -> Config:
    """The configuration a row measured: a per-site choice replaced by the sites it kept."""
    chosen = row.sites_chosen
    if not config.measure_sites or not chosen:
        return config
    return dataclasses.replace(config, cumba=bool(chosen["cumba"]), reduba=bool(chosen["reduba"]),
                               sites=dict(chosen.get("sites") or {}), measure_sites=False)
