"""OpenVINO compile, timed inference and per-op profiles.

Why medians and p10/p90 of many repeats after a warm-up: the machines are shared, so single timings
are noise; the spread is reported so a reader can tell a real speed-up from jitter. The inference
precision is always set explicitly (OpenVINO's CPU plugin silently picks bf16 where it can) and the
precision OpenVINO reports back is recorded next to the number.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError

PRECISIONS = ("f32", "bf16")


@dataclass
class LatencyStats:
    """Milliseconds per inference at one input length."""

    median: float
    p10: float
    p90: float
    seq_len: int
    repeats: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stats(times_ms: list[float] | np.ndarray, seq_len: int) -> LatencyStats:
    """Median / 10th / 90th percentile of a list of timings (at least one)."""
    a = np.asarray(times_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no timings")
    p10, med, p90 = np.percentile(a, [10, 50, 90])
    return LatencyStats(float(med), float(p10), float(p90), int(seq_len), int(a.size))


def core() -> Any:
    import openvino as ov

    return ov.Core()


def check_device(device: str) -> str:
    """`device` if OpenVINO has it here (CPU, GPU, NPU, GPU.0 ...), else InputError listing what exists."""
    devices = core().available_devices
    if device not in devices and device.split(".")[0] not in {d.split(".")[0] for d in devices}:
        raise InputError(f"unknown device {device!r}; available here: {', '.join(devices)}")
    return device


def supported_precisions(device: str = "CPU") -> list[str]:
    """Inference precisions this device can run natively (bf16 only where OPTIMIZATION_CAPABILITIES says)."""
    try:
        caps = [str(c).upper() for c in core().get_property(device, "OPTIMIZATION_CAPABILITIES")]
    except Exception:
        caps = ["FP32"]
    out = ["f32"] if "FP32" in caps or device.startswith("CPU") else []
    if "BF16" in caps:
        out.append("bf16")
    if "FP16" in caps and not device.startswith("CPU"):
        out.append("f16")
    return out or ["f32"]


def check_precision(precision: str, device: str = "CPU") -> str:
    if precision not in supported_precisions(device):
        raise InputError(f"{device} here cannot run {precision} (supported: {', '.join(supported_precisions(device))})")
    return precision


def compile_model(model: Any, device: str = "CPU", precision: str = "f32", threads: int | None = 1,
                  profile: bool = False, extra: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Compile with an explicit INFERENCE_PRECISION_HINT; returns (compiled, what was set and used).

    `extra`: further CPU properties a graph needs (`models.decode.openvino_decode_config`); ignored on
    other devices.

    If the CPU plugin's snippets code generator fails on a graph (it runs out of registers on some
    fused table lowerings), compile again with snippets disabled and say so in the returned notes.
    """
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if threads and device.startswith("CPU"):
        config["INFERENCE_NUM_THREADS"] = int(threads)
    if profile:
        config["PERF_COUNT"] = True
    notes: dict[str, Any] = {"precision_hint": precision}
    if extra and device.startswith("CPU"):
        config.update(extra)
        notes.update({k.lower(): str(v).lower() for k, v in extra.items()})
    c = core()
    try:
        compiled = c.compile_model(model, device, config)
    except RuntimeError as exc:
        if "snippet" not in str(exc).lower() or not device.startswith("CPU"):
            raise
        compiled = c.compile_model(model, device, {**config, "SNIPPETS_MODE": "DISABLE"})
        notes["snippets"] = "disabled (snippets compile failed)"
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")
    notes["precision_used"] = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    if threads and device.startswith("CPU"):
        notes["threads"] = int(threads)
    return compiled, notes


def random_ids(seq_len: int, vocab: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, min(vocab, 256), size=(1, seq_len), dtype=np.int64)


def time_compiled(compiled: Any, feed: Any, warmup: int = 3, repeats: int = 20,
                  max_seconds: float | None = None) -> LatencyStats:
    """Time synchronous inferences of one request on `feed` (after `warmup` untimed runs)."""
    req = compiled.create_infer_request()
    inputs = _as_feed(feed)
    for _ in range(max(0, warmup)):
        req.infer(inputs)
    times = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        req.infer(inputs)
        times.append((time.perf_counter() - t0) * 1e3)
        if max_seconds is not None and time.perf_counter() - start > max_seconds and len(times) >= 3:
            break
    return stats(times, _seq_len(feed))


def _as_feed(feed: Any) -> dict[Any, Any]:
    """A request's inputs: a dict by input name/index as is, a single array as input 0."""
    return feed if isinstance(feed, dict) else {0: feed}


def _seq_len(feed: Any) -> int:
    if isinstance(feed, dict):
        ids = feed.get("input_ids", feed.get(0))
        return int(ids.shape[-1]) if ids is not None else 1
    return int(feed.shape[-1])


@dataclass
class PairedTiming:
    """`time_paired_adaptive`'s result: both sides' stats and the per-pair ratio (config / reference)."""

    a: LatencyStats
    b: LatencyStats
    ratio_median: float  # median of per-pair time ratios a/b
    ratio_halfwidth: float  # relative half-width of the ~95 % interval of that median
    stopped_early: bool

    def ratio_dict(self) -> dict[str, Any]:
        return {"median": self.ratio_median, "halfwidth_rel": self.ratio_halfwidth,
                "pairs": self.a.repeats, "stopped_early": self.stopped_early}


def ratio_halfwidth(ratios: list[float] | np.ndarray) -> float:
    """Relative half-width of a ~95 % interval for the median of `ratios` (robust: MAD of log ratios).

    sigma = 1.4826·MAD; the median's standard error is ≈ 1.2533·sigma/√n; 1.96 of them, back on the
    ratio scale. Fewer than 3 ratios: inf (nothing is known yet).
    """
    r = np.log(np.asarray(ratios, dtype=np.float64))
    if r.size < 3:
        return float("inf")
    sigma = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    return float(np.expm1(1.96 * 1.2533 * sigma / np.sqrt(r.size)))


def time_paired_adaptive(compiled: Any, reference: Any, feed: Any, warmup: int = 3, repeats: int = 20,
                         min_repeats: int | None = None, rel_tol: float | None = None,
                         max_seconds: float | None = None) -> PairedTiming:
    """Time `compiled` and `reference` in alternating single inferences (ABBA order).

    On a shared machine the load changes between configurations; timing each one next to the
    baseline, interleaved, makes their ratio insensitive to that drift. With `rel_tol`, stop after
    `min_repeats` pairs as soon as the ~95 % interval of the median per-pair ratio is within ±rel_tol
    (`ratio_halfwidth`), else after `repeats` pairs: slow graphs with steady ratios stop early. With
    `max_seconds`, also stop (after `min_repeats` pairs) once that much time was spent timing; the
    reported half-width then says how precise the ratio is. `feed` is one array (input 0) or a dict.
    """
    inputs = _as_feed(feed)
    a, b = compiled.create_infer_request(), reference.create_infer_request()
    for _ in range(max(0, warmup)):
        a.infer(inputs)
        b.infer(inputs)
    ta: list[float] = []
    tb: list[float] = []
    n_max = max(1, repeats)
    adaptive = rel_tol is not None or max_seconds is not None
    n_min = max(3, min(n_max, min_repeats or 6)) if adaptive else n_max
    early = False
    start = time.perf_counter()
    for i in range(n_max):
        pairs = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for req, sink in pairs:
            t0 = time.perf_counter()
            req.infer(inputs)
            sink.append((time.perf_counter() - t0) * 1e3)
        if i + 1 < n_min or i + 1 >= n_max:
            continue
        if (rel_tol is not None and ratio_halfwidth(np.divide(ta, tb)) <= rel_tol) or (
                max_seconds is not None and time.perf_counter() - start > max_seconds):
            early = True
            break
    ratios = np.divide(ta, tb)
    n = _seq_len(feed)
    return PairedTiming(stats(ta, n), stats(tb, n), float(np.median(ratios)), ratio_halfwidth(ratios), early)


def time_paired(compiled: Any, reference: Any, feed: Any, warmup: int = 3,
                repeats: int = 20) -> tuple[LatencyStats, LatencyStats]:
    """Fixed-count ABBA timing (see `time_paired_adaptive`): (stats of `compiled`, stats of `reference`)."""
    t = time_paired_adaptive(compiled, reference, feed, warmup, repeats)
    return t.a, t.b


def profile_by_type(compiled: Any, feed: Any, runs: int = 3) -> dict[str, float]:
    """Mean real time in ms per node type (from PERF_COUNT; compile with profile=True), largest first."""
    req = compiled.create_infer_request()
    inputs = _as_feed(feed)
    req.infer(inputs)  # warm-up
    totals: dict[str, float] = {}
    for _ in range(runs):
        req.infer(inputs)
        for info in req.profiling_info:
            if str(info.status).endswith("NOT_RUN"):
                continue
            ms = info.real_time.total_seconds() * 1e3 if hasattr(info.real_time, "total_seconds") else float(
                info.real_time) / 1e3
            totals[info.node_type] = totals.get(info.node_type, 0.0) + ms / runs
    return dict(sorted(((k, round(v, 4)) for k, v in totals.items()), key=lambda kv: -kv[1]))


def measure(ov_model: Any, seq_len: int, vocab: int, device: str = "CPU", precision: str = "f32",
            threads: int | None = 1, warmup: int = 3, repeats: int = 20, profile: bool = True
            ) -> tuple[LatencyStats, dict[str, float], dict[str, Any]]:
    """(latency stats, per-op-type profile, compile notes) of an OpenVINO model at [1, seq_len]."""
    feed = random_ids(seq_len, vocab)
    compiled, notes = compile_model(ov_model, device, precision, threads)
    lat = time_compiled(compiled, feed, warmup, repeats)
    prof: dict[str, float] = {}
    if profile:
        del compiled
        compiled_p, _ = compile_model(ov_model, device, precision, threads, profile=True)
        prof = profile_by_type(compiled_p, feed)
    return lat, prof, notes
