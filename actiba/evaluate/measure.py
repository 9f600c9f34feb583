"""One configuration's measurement, in phases a scheduler can place: build, score, time, decode.

Why phases: they need different things. (a) `build` (export + rewrite → the timed graph and its hash)
and (b) `score` (bits/byte of the all-positions graph at the run's precision) need only the model, the
data and the precision, so any node may run them; (c) `time_prefill` must run where the run's baseline
reference is compiled, because a speed-up is a ratio of two graphs timed interleaved on one node; (d)
`decode` times the single-token step against the baseline's step, on that same node. `evaluate_config`
composes them for one process (the local backend); `actiba.evaluate.ray_backend` places them on a
cluster. Both call these functions, so a row's numbers do not depend on who ran it.

Why each configuration is measured on the same exported OpenVINO graph for both numbers: the loss and
the speed-up then describe one deployable artifact at one inference precision. Where the time goes and
how it is kept short without changing what is measured: a configuration whose rewritten graph is
byte-identical to one already measured reuses that measurement (the row says `same_graph_as`); timing
stops once the paired ratio to the baseline is known to ±`rel_tol`; the baseline is compiled once and
serves as the timing reference; "last" graphs are sliced from the "all" export rather than exported
again, and scoring graphs run on every core.

Prefill output (`prefill_logits`): "last" times graphs that return only the last position's logits
([1, 1, V]) — what a generator's prefill runs and the default; "all" times graphs that return every
position ([1, L, V]). Accuracy always needs every position, so in "last" mode it is scored on the
all-positions graph of the same configuration (same rewrites; only the slice before the LM head differs).

Decode: with `decode`, each row also gets the latency of one single-token step with the recurrent state
as graph inputs/outputs (`actiba.models.decode`), with the row's activation tables applied. The prefill
graph rewrites (CumBA, ReduBA, SSD d1/d2) are not applied to that graph — there is no CumSum over time
and no chunked scan in one step — so rows without tables share the baseline's decode graph.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from . import latency
from .build import LoadedModel, rewritten_onnx, to_openvino, torch_level_refusals
from .configs import Config
from .row import Ratio, Row, Timing, error_text
from .settings import Settings
from .tables import describe_activations, tables_for

if TYPE_CHECKING:
    from .scoring_text import ScoringText


@dataclass
class RunState:
    """What one run shares between its rows on one node: the compiled baseline (timing reference,
    compiled once), measured rows by graph hash (for reuse) and the decode graphs."""

    reference: Any = None
    reference_notes: dict[str, Any] = field(default_factory=dict)
    by_sha: dict[str, Row] = field(default_factory=dict)
    decode_base: Any = None
    decode_reference: Any = None
    decode_by_sha: dict[str, Row] = field(default_factory=dict)
    noise: float = 0.0  # the null control's floor (`pareto.null_noise`): speed-ups must exceed 1 + noise


def graph_sha(onnx_model: Any) -> str:
    """Hash of the serialized graph: equal hashes mean the same deployable artifact."""
    return hashlib.sha256(onnx_model.SerializeToString(deterministic=True)).hexdigest()[:16]


def head(config: Config, activations: Any) -> Row:
    """What a row says of its configuration, the same for a measured row and a failed one."""
    return Row(name=config.name, rewrites=list(config.rewrites), cumba=config.cumba, reduba=config.reduba,
               ssd_d1=config.ssd_d1, ssd_d2=config.ssd_d2, ssd_chunk=config.ssd_chunk, activations=activations)


def error_row(config: Config, exc: BaseException) -> Row:
    row = head(config, _safe_acts(config))
    row.error = error_text(exc)
    return row


def _safe_acts(config: Config) -> dict[str, Any]:
    try:
        return describe_activations(config)
    except Exception:
        return {k: dict(v) for k, v in config.activations.items()}


REUSED = ("metric", "metric_windows", "metric_halfwidth", "metric_precision", "latency_ms", "baseline_latency_ms",
          "latency_ratio", "metric_torch", "profile_ms", "latency_by_seq_len")  # what a byte-identical graph shares


# (a) build ------------------------------------------------------------------------------------------------

@dataclass
class Built:
    """Phase (a)'s product: the configuration's timed graph, its hash, and (when asked) its scoring graph."""

    config: Config  # as measured (a per-site choice replaced by the sites it kept)
    row: Row  # the row so far: configuration, sites rewritten, graph hash
    model: Any  # the timed ONNX graph
    scoring_model: Any = None  # the all-positions graph when the timed one is "last" (else the timed one scores)
    scoring_sha: str | None = None


def build(lm: LoadedModel, config: Config, settings: Settings, precision: str, cache_dir: Path | None,
          scoring: bool = False) -> Built:
    """Export + rewrite (any node). With `scoring`, also the graph accuracy is scored on."""
    model, done = rewritten_onnx(lm, config, settings.seq_len, precision, cache_dir, settings.prefill_logits)
    row = head(config, describe_activations(config))
    row.sites_rewritten, row.compile, row.graph_sha = done, {}, graph_sha(model)
    row.refused = torch_level_refusals(config, precision) or None  # left out of this precision's export
    built = Built(config, row, model)
    if scoring:
        add_scoring_graph(lm, built, settings, precision, cache_dir)
    return built


def add_scoring_graph(lm: LoadedModel, built: Built, settings: Settings, precision: str,
                      cache_dir: Path | None) -> None:
    """The graph accuracy is scored on: every position's logits, the same rewrites as the timed graph."""
    if settings.prefill_logits == "all":
        built.scoring_sha = built.row.graph_sha
        return
    built.scoring_model, _ = rewritten_onnx(lm, built.config, settings.seq_len, precision, cache_dir, "all")
    built.scoring_sha = built.row.metric_graph_sha = graph_sha(built.scoring_model)


# (b) score ------------------------------------------------------------------------------------------------

def compile_scorer(built: Built, settings: Settings, precision: str) -> Any:
    """The compiled graph that scores accuracy, compiled as the local sweep compiles it.

    "all" mode scores on the timed graph (compiled with the run's threads, as it is for timing); "last"
    mode on the all-positions graph with all threads — nothing is timed on it, and on 2 cores scoring
    takes ~40 % less time; the number does not depend on it beyond float summation order.
    """
    if built.scoring_model is None:
        return latency.compile_model(to_openvino(built.model), settings.device, precision, settings.threads)[0]
    return latency.compile_model(to_openvino(built.scoring_model), settings.device, precision, threads=None)[0]


def score(compiled: Any, row: Row, settings: Settings, precision: str, data: bytes | ScoringText) -> None:
    """Bits/byte of `compiled` on `data` (whole windows of the model's tokens: `scoring_text`), with the
    per-window nats for the paired test."""
    from .accuracy import own_halfwidth
    from .perplexity import as_scoring_text, bits_per_byte_of, openvino_logits_fn, window_nats

    text = as_scoring_text(data)
    nats = window_nats(openvino_logits_fn(compiled), text, settings.seq_len)
    n_bytes = text.n_bytes(settings.seq_len)
    row.metric = bits_per_byte_of(nats, settings.seq_len, n_bytes)
    row.metric_windows = nats
    # per window, bits/byte over the mean bytes a window covers (exactly seq_len for the byte tokenizer)
    row.metric_halfwidth = own_halfwidth(nats, settings.seq_len if text.is_bytes else n_bytes / len(nats))
    row.metric_precision = precision


def torch_metric(lm: LoadedModel, config: Config, row: Row, settings: Settings, data: bytes | ScoringText) -> None:
    """Bits/byte with torch and the tables in scope: the approximation alone, without the graph."""
    from .perplexity import torch_bits_per_byte

    row.metric_torch = torch_bits_per_byte(lm.model, data, settings.seq_len, tables_for(config, lm))


# (c) time -------------------------------------------------------------------------------------------------

def reference(lm: LoadedModel, baseline: Config, settings: Settings, precision: str, state: RunState,
              cache: Path | None) -> Any:
    """The compiled baseline in the timed logits mode (built on first need, once per run and node)."""
    if state.reference is None:
        m, _ = rewritten_onnx(lm, baseline, settings.seq_len, precision, cache, settings.prefill_logits)
        state.reference, state.reference_notes = latency.compile_model(
            to_openvino(m), settings.device, precision, settings.threads)
    return state.reference


def compile_timed(built: Built, settings: Settings, precision: str, state: RunState | None) -> Any:
    """The timed graph compiled (the run's reference itself for the baseline); sets the row's notes."""
    if built.config.is_baseline and state is not None and state.reference is not None:
        compiled, notes = state.reference, dict(state.reference_notes)  # compiled once per run
    else:
        compiled, notes = latency.compile_model(to_openvino(built.model), settings.device, precision,
                                                settings.threads)
    built.row.compile = notes
    return compiled


def time_prefill(compiled: Any, reference_: Any, row: Row, settings: Settings, vocab_size: int) -> None:
    """Latency of `compiled`, interleaved with the reference when there is one (the row keeps both)."""
    feed = latency.random_ids(settings.seq_len, vocab_size)
    if reference_ is not None and reference_ is not compiled:
        paired = latency.time_paired_adaptive(compiled, reference_, feed, settings.warmup, settings.repeats,
                                              settings.min_repeats, settings.rel_tol, settings.timing_seconds)
        lat = paired.a
        row.baseline_latency_ms = Timing.from_dict({k: v for k, v in paired.b.as_dict().items() if k != "repeats"})
        row.latency_ratio = Ratio.from_dict(paired.ratio_dict())
    else:
        lat = latency.time_compiled(compiled, feed, settings.warmup, settings.repeats)
    row.latency_ms = Timing.from_dict(lat.as_dict())


def time_extras(lm: LoadedModel, built: Built, settings: Settings, precision: str, cache_dir: Path | None,
                profile: bool) -> None:
    """The per-op profile (when asked) and the latency at the run's extra prefill lengths."""
    row = built.row
    if profile or settings.profile:
        compiled_p, _ = latency.compile_model(to_openvino(built.model), settings.device, precision,
                                              settings.threads, profile=True)
        row.profile_ms = latency.profile_by_type(compiled_p, latency.random_ids(settings.seq_len, lm.vocab_size))
    extra = {}
    for n in settings.extra_seq_lens:
        m, _ = rewritten_onnx(lm, built.config, n, precision, cache_dir, settings.prefill_logits)
        c, _ = latency.compile_model(to_openvino(m), settings.device, precision, settings.threads)
        extra[str(n)] = Timing.from_dict(latency.time_compiled(c, latency.random_ids(n, lm.vocab_size),
                                                               settings.warmup, settings.repeats).as_dict())
    if extra:
        row.latency_by_seq_len = extra


def timed_before(state: RunState, model: Any) -> dict[str, Any] | None:
    """The paired ratio (against the run's reference) of a byte-identical graph this run already timed."""
    same = state.by_sha.get(graph_sha(model))
    ratio = None if same is None else same.latency_ratio
    return ratio.to_dict() if ratio is not None and ratio.median else None


def reuse_measurement(row: Row, same: Row) -> None:
    """A byte-identical graph was measured already: its numbers are this row's."""
    row.copy_measurement(same, REUSED)
    row.compile = same.compile or {}
    row.same_graph_as = same.name


# (d) decode -----------------------------------------------------------------------------------------------

def decode_graph(lm: LoadedModel, config: Config, base: Any) -> tuple[Any, int]:
    """(decode-step ONNX for `config`, number of activation sites given a table): only the tables apply."""
    if not config.activations:
        return base, 0
    from ..models import mixer_scope
    from ..rewrite import onnx_rw
    from ..rewrite.pipeline import skip_outside_scope

    model, sites = onnx_rw.apply(base, ["actiba"], tables=tables_for(config, lm),
                                 choose=lambda found: skip_outside_scope(found, mixer_scope(lm.model)))
    n = sum(1 for s in sites if s.ok)
    if not n:
        raise InputError("actiba: no activation site of the decode step was rewritten")
    return model, n


def decode(lm: LoadedModel, config: Config, settings: Settings, precision: str, state: RunState | None,
           row: Row) -> None:
    """Set decode_latency_ms (+ baseline_decode_latency_ms from the same window) on `row`.

    A failure here is noted in the row (`decode_error`) without failing the prefill measurement.
    """
    if not settings.decode or state is None:
        return
    try:
        if state.decode_base is None:
            from ..models.decode import export_decode_onnx

            state.decode_base = export_decode_onnx(lm.model)
        model, n_sites = decode_graph(lm, config, state.decode_base)
        sha = graph_sha(model)
        if n_sites == 0:
            row.decode_note = "no tables: the decode step is the baseline's (prefill rewrites do not apply)"
        same = state.decode_by_sha.get(sha)
        if same is not None:
            row.copy_measurement(same, ("decode_latency_ms", "baseline_decode_latency_ms", "decode_latency_ratio"))
            if not config.is_baseline and same.baseline_decode_latency_ms is None:  # same graph as baseline
                row.baseline_decode_latency_ms = same.decode_latency_ms
            if same.name != row.name:
                row.decode_same_graph_as = same.name
            row.decode_graph_sha = sha
            return
        from ..models.decode import openvino_decode_config, random_feed

        extra = openvino_decode_config(model)  # attention caches: snippets off, or the step is miscompiled
        compiled, _ = latency.compile_model(to_openvino(model), settings.device, precision, settings.threads,
                                            extra=extra)
        feed = random_feed(model, lm.vocab_size)
        if state.decode_reference is None:
            base_model = state.decode_base
            state.decode_reference = compiled if model is base_model else latency.compile_model(
                to_openvino(base_model), settings.device, precision, settings.threads, extra=extra)[0]
        warm = max(10, settings.warmup)
        if compiled is state.decode_reference:
            st = latency.time_compiled(compiled, feed, warm, settings.decode_repeats)
        else:
            paired = latency.time_paired_adaptive(compiled, state.decode_reference, feed, warm,
                                                  settings.decode_repeats, 2 * settings.min_repeats,
                                                  settings.rel_tol, settings.timing_seconds)
            st = paired.a
            row.baseline_decode_latency_ms = Timing.from_dict(
                {k: v for k, v in paired.b.as_dict().items() if k != "repeats"})
            row.decode_latency_ratio = Ratio.from_dict(paired.ratio_dict())
        row.decode_latency_ms = Timing.from_dict({k: v for k, v in st.as_dict().items() if k != "seq_len"})
        row.decode_sites_rewritten = n_sites
        row.decode_graph_sha = sha
        state.decode_by_sha[sha] = dataclasses.replace(row)
    except Exception as exc:  # decode is an extra: keep the prefill row
        row.decode_error = error_text(exc)


# all phases in one process ---------------------------------------------------------------------------------

def evaluate_config(lm: LoadedModel, config: Config, settings: Settings, precision: str,
                    data: bytes | None, cache_dir: Path | None = None, profile: bool = False,
                    reference: Any = None, state: RunState | None = None,
                    step: Callable[[str], None] | None = None) -> Row:
    """One row: metric (bits/byte, OpenVINO at `precision`), latency, sites rewritten, compile notes.

    `step(name)` is told each step as it starts (export, compile, accuracy, timing, decode): progress.

    With `reference` (the compiled baseline), latency is timed interleaved with it and the row keeps
    the baseline's latency from the same window, so the speed-up does not depend on load drift. With
    `state`, a graph identical to one already measured in the run reuses that row's numbers.
    """
    from .sites import measured_sites

    step = step or (lambda _name: None)
    t0 = time.perf_counter()
    measured = None
    if config.measure_sites:
        step("timing sites")
        if reference is None:
            raise InputError(f"{config.name}: choosing sites by measurement needs the compiled baseline")
        config, measured = measured_sites(lm, config, settings, precision, cache_dir, reference,
                                          state.noise if state is not None else 0.0,
                                          timed=None if state is None else lambda m: timed_before(state, m))
    step("export + rewrite")
    built = build(lm, config, settings, precision, cache_dir)
    row = built.row
    t1 = time.perf_counter()
    if measured is not None:
        row.site_measurements = measured
        row.sites_chosen = {"cumba": config.cumba, "reduba": config.reduba, "sites": config.sites}
    same = state.by_sha.get(row.graph_sha) if state is not None else None
    if same is not None:  # byte-identical graph: the measurement would repeat itself
        reuse_measurement(row, same)
        decode(lm, config, settings, precision, state, row)
        row.seconds = {"total": round(time.perf_counter() - t0, 2)}
        return row
    step("compile")
    compiled = compile_timed(built, settings, precision, state)
    t2 = time.perf_counter()
    if not settings.latency_only:
        step("accuracy")
        if data is None:
            raise InputError("no evaluation data")
        add_scoring_graph(lm, built, settings, precision, cache_dir)
        scorer = compiled if built.scoring_model is None else compile_scorer(built, settings, precision)
        score(scorer, row, settings, precision, data)
        del scorer
    t3 = time.perf_counter()
    step("timing")
    time_prefill(compiled, reference, row, settings, lm.vocab_size)
    del compiled
    if settings.torch_metric and not settings.latency_only and data is not None:
        torch_metric(lm, config, row, settings, data)
    time_extras(lm, built, settings, precision, cache_dir, profile)
    t4 = time.perf_counter()
    step("decode timing")
    decode(lm, config, settings, precision, state, row)
    row.seconds = {"build": round(t1 - t0, 2), "compile": round(t2 - t1, 2), "accuracy": round(t3 - t2, 2),
                   "timing": round(t4 - t3, 2), "total": round(time.perf_counter() - t0, 2)}
    if state is not None:
        state.by_sha.setdefault(row.graph_sha, row)
    return row
