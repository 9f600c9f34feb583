"""The sweep's result row, typed: `Row`, its timings (`Timing`, `Ratio`) and what a run derives from its rows.

Why a dataclass and not the dict it replaces: the row is the product's main output, written by the
measuring phases, cached, read back, ranked by `pareto`, printed by the CLI and laid out by `report`;
with ~40 string keys a typo was a silent ``None``. Modelled on scipy's `OptimizeResult` (named fields,
everything a caller may want kept) and DESIGN §4: `Row.to_dict()` IS the report schema, and
`Row.from_dict()` reads a cached row or a committed ``results.json`` row back, so the JSON keys are the
field names, unchanged since before the type existed (old caches and results stay readable and
comparable). A key this version does not know is kept in `extra` and written back as it came.

Presence rules, so a round trip gives the same JSON: the configuration's description, `metric`,
`latency_ms` and `error` are always written (DESIGN §4 keys, None included); any other field is written
only when it holds something; the run-relative fields (`metric_delta_rel`, `speedup`, ...) are written
once `finish_run` has set them (it sets `pareto`, a bool, on every row).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .pareto import mark_pareto


def _compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class _Record:
    """A small record written as a JSON object without its unset keys, read back ignoring unknown ones."""

    def to_dict(self) -> dict[str, Any]:
        return _compact(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Any:
        if not d:
            return None
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})  # type: ignore[arg-type]


@dataclass
class Timing(_Record):
    """Latency in ms of one graph: median and 10th / 90th percentiles (+ the length and count timed)."""

    median: float
    p10: float | None = None
    p90: float | None = None
    seq_len: int | None = None
    repeats: int | None = None


@dataclass
class Ratio(_Record):
    """The paired per-inference time ratio (configuration / baseline, timed interleaved on one node)."""

    median: float | None
    halfwidth_rel: float | None = None  # ~95 % relative half-width of the median
    pairs: int | None = None
    stopped_early: bool | None = None

    @property
    def halfwidth(self) -> float:
        """The relative half-width, 0 where missing or not finite (an interval that says nothing)."""
        hw = self.halfwidth_rel
        return float(hw) if isinstance(hw, (int, float)) and math.isfinite(hw) else 0.0


_TIMINGS = ("latency_ms", "baseline_latency_ms", "decode_latency_ms", "baseline_decode_latency_ms")
_RATIOS = ("latency_ratio", "decode_latency_ratio")
# always written: what the row says of its configuration and DESIGN §4's metric / latency / error
_ALWAYS = ("name", "rewrites", "cumba", "reduba", "ssd_d1", "ssd_d2", "ssd_chunk", "activations", "metric",
           "latency_ms", "error")
# set on every row by `finish_run` (relative to the run's baseline); written once it ran
_FINISHED = ("metric_delta_rel", "metric_delta_halfwidth_rel", "speedup", "decode_speedup", "pareto")
_CACHE_ONLY = ("metric_windows",)  # per-window nats: kept in the row cache for the paired test, not reported


@dataclass
class Row:
    """One configuration measured in one run (model × precision × length)."""

    # the configuration
    name: str
    rewrites: list[str] = field(default_factory=list)
    cumba: bool = False
    reduba: bool = False
    ssd_d1: bool = False
    ssd_d2: bool = False
    ssd_chunk: int | None = None
    activations: dict[str, Any] = field(default_factory=dict)
    # accuracy (bits/byte of the all-positions graph at `metric_precision`)
    metric: float | None = None
    metric_windows: list[float] | None = None  # nats per window (cache only: the paired uncertainty)
    metric_halfwidth: float | None = None  # the row's own ~95 % half-width (unpaired)
    metric_precision: str | None = None
    metric_graph_sha: str | None = None  # the scoring graph, when it is not the timed one ("last" mode)
    metric_reused_from: str | None = None  # rows from before every run scored natively: the precision that did
    metric_torch: float | None = None
    # prefill timing (interleaved with the run's baseline)
    latency_ms: Timing | None = None
    baseline_latency_ms: Timing | None = None
    latency_ratio: Ratio | None = None
    latency_by_seq_len: dict[str, Timing] | None = None
    profile_ms: dict[str, float] | None = None
    # the graph and how it was built
    sites_rewritten: dict[str, int] | None = None
    refused: dict[str, str] | None = None  # requested torch-level rewrites this precision refuses: left out
    compile: dict[str, Any] | None = None
    error: str | None = None
    graph_sha: str | None = None
    same_graph_as: str | None = None
    site_measurements: list[dict[str, Any]] | None = None
    sites_chosen: dict[str, Any] | None = None
    seconds: dict[str, float] | None = None
    timed_on: str | None = None  # the node that timed the row (distributed backends only)
    # decode step
    decode_latency_ms: Timing | None = None
    baseline_decode_latency_ms: Timing | None = None
    decode_latency_ratio: Ratio | None = None
    decode_sites_rewritten: int | None = None
    decode_graph_sha: str | None = None
    decode_same_graph_as: str | None = None
    decode_note: str | None = None
    decode_error: str | None = None
    # relative to the run's baseline (`finish_run`)
    metric_delta_rel: float | None = None
    metric_delta_halfwidth_rel: float | None = None
    speedup: float | None = None
    decode_speedup: float | None = None
    pareto: bool | None = None
    # emulated precisions (the front only)
    metric_emulated: dict[str, float] | None = None
    metric_emulated_delta_rel: dict[str, float] | None = None
    emulate_error: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as read

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def scoring_sha(self) -> str | None:
        """Hash of the graph that scored the row: the all-positions graph in "last" mode, else the timed one."""
        return self.metric_graph_sha or self.graph_sha

    def to_dict(self, cache: bool = True) -> dict[str, Any]:
        """The row as JSON (the cache's and the report's schema); `cache=False` drops the per-window data."""
        finished = self.pareto is not None
        out: dict[str, Any] = {}
        for f in fields(self):
            k = f.name
            if k == "extra" or (not cache and k in _CACHE_ONLY):
                continue
            v = getattr(self, k)
            if v is None and k not in _ALWAYS and not (finished and k in _FINISHED):
                continue
            if isinstance(v, (Timing, Ratio)):
                v = v.to_dict()
            elif k == "latency_by_seq_len":
                v = {n: t.to_dict() for n, t in v.items()}
            out[k] = v
        out.update({k: v for k, v in self.extra.items() if cache or k not in _CACHE_ONLY})
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Row:
        known = {f.name for f in fields(cls)} - {"extra"}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in known}
        for k in _TIMINGS:
            kw[k] = Timing.from_dict(d.get(k))
        for k in _RATIOS:
            kw[k] = Ratio.from_dict(d.get(k))
        if d.get("latency_by_seq_len"):
            kw["latency_by_seq_len"] = {n: Timing.from_dict(t) for n, t in d["latency_by_seq_len"].items()}
        for k, default in (("rewrites", []), ("activations", {})):
            if kw.get(k) is None:
                kw[k] = default
        return cls(**kw, extra={k: v for k, v in d.items() if k not in known})

    def copy_measurement(self, src: Row, names: tuple[str, ...]) -> None:
        """Take fields `names` from `src` (a row whose graph this one shares)."""
        for k in names:
            setattr(self, k, getattr(src, k))


def error_text(exc: BaseException) -> str:
    """'Type: first line of the message', at most 300 characters: what a row says of a failure."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:300]


def finish_run(rows: list[Row], baseline_name: str = "baseline", noise: float = 0.0) -> Row | None:
    """Set metric_delta_rel, speedup and pareto on every row (relative to the baseline row); return it.

    `noise`: the run's null-control floor (`pareto.null_noise`), below which speed-ups tie on the front."""
    from .accuracy import paired_halfwidth

    base = next((r for r in rows if r.name == baseline_name), None)
    ok_base = base is not None and base.ok
    for r in rows:
        r.metric_delta_rel = r.metric_delta_halfwidth_rel = r.speedup = r.decode_speedup = None
        if not ok_base or not r.ok:
            continue
        if r.metric is not None and base.metric:
            r.metric_delta_rel = (r.metric - base.metric) / base.metric
            if r.metric_windows and base.metric_windows:
                r.metric_delta_halfwidth_rel = paired_halfwidth(r.metric_windows, base.metric_windows)
        if r.latency_ratio is not None and r.latency_ratio.median:  # per-pair ratios, interleaved (robust to drift)
            r.speedup = 1.0 / r.latency_ratio.median
        elif r.latency_ms and r.baseline_latency_ms:  # timed interleaved with the baseline
            r.speedup = r.baseline_latency_ms.median / r.latency_ms.median
        elif r.latency_ms and base.latency_ms:
            r.speedup = base.latency_ms.median / r.latency_ms.median
        dec, dref = r.decode_latency_ms, r.baseline_decode_latency_ms or base.decode_latency_ms
        if r.decode_latency_ratio is not None and r.decode_latency_ratio.median:
            r.decode_speedup = 1.0 / r.decode_latency_ratio.median
        elif dec and dref:
            r.decode_speedup = dref.median / dec.median
    if ok_base and base.metric is None:  # latency only: the front is the fastest rows
        saved = [r.metric_delta_rel for r in rows]
        for r in rows:
            r.metric_delta_rel = 0.0 if r.speedup is not None else None
        mark_pareto(rows, base, noise)
        for r, d in zip(rows, saved, strict=True):
            r.metric_delta_rel = d
    else:
        mark_pareto(rows, base, noise)
    for r in rows:
        r.pareto = bool(r.pareto)
    return base


def row_summary(row: Row, base: Row | None) -> str:
    """One line on a finished row: speed-up ± its interval, bits/byte change ± its paired interval, time."""
    from .accuracy import paired_halfwidth

    if row.error:
        return f"{row.name}: FAILED {row.error}"
    parts = []
    ratio = row.latency_ratio
    if ratio is not None and ratio.median:
        parts.append(f"{1 / ratio.median:.3f}x ±{100 * (ratio.halfwidth_rel or 0):.1f}%")
    elif base is None or row is base or row.name == base.name:
        parts.append("1x (reference)")
    if base and base.metric and row.metric is not None:
        delta = (row.metric - base.metric) / base.metric
        hw = paired_halfwidth(row.metric_windows or [], base.metric_windows or [])
        parts.append(f"bits/byte {100 * delta:+.3f}%" + (f" ±{100 * hw:.3f}%" if hw and hw > 1e-6 else
                                                           " ±<0.0001%" if hw else ""))
    if row.same_graph_as:
        parts.append(f"same graph as {row.same_graph_as}")
    secs = (row.seconds or {}).get("total")
    parts.append("resumed" if secs is None else f"{secs:.1f} s")
    return f"{row.name}: " + ", ".join(parts)


def run_as_json(run: dict[str, Any], cache: bool = True) -> dict[str, Any]:
    """A run (`sweep.run_one`'s dict) with its rows as JSON objects."""
    out = dict(run)
    out["baseline"] = run["baseline"].to_dict(cache) if run.get("baseline") is not None else None
    out["configs"] = [r.to_dict(cache) for r in run["configs"]]
    return out
