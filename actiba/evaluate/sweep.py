"""Evaluate configurations (accuracy + latency) and assemble one run per (model, precision).

Why each configuration is measured on the same exported OpenVINO graph for both numbers: the loss and
the speed-up then describe one deployable artifact at one inference precision. Finished rows are cached
in ``DIR/cache`` keyed by everything that changes them, so an interrupted sweep resumes; a failing
configuration becomes a row carrying its error and the sweep goes on.

Where the time goes and how it is kept short without changing what is measured: a configuration whose
rewritten graph is byte-identical to one already measured reuses that measurement (the row says
`same_graph_as`); timing stops once the paired ratio to the baseline is known to ±`rel_tol`; a model
too large to score in full scores fewer whole windows (chosen from its size, at least
`min_eval_windows`; the bytes scored are in the run's settings); the baseline is compiled once and
serves as the timing reference; "last" graphs are sliced from the "all" export rather than exported
again, and scoring graphs run on every core.

Null control: every run also times the baseline graph compiled a second time against the reference
(`null_control`); what two compiles of one graph differ by is the floor a speed-up must clear before a
per-site choice keeps a rewrite or `pareto.choose` recommends a configuration.

Prefill output (`prefill_logits`): "last" times graphs that return only the last position's logits
([1, 1, V]) — what a generator's prefill runs (HF generate passes ``logits_to_keep=1``) and the default;
"all" times graphs that return every position ([1, L, V]) — what perplexity scoring runs. Accuracy
always needs every position, so in "last" mode it is scored on the all-positions graph of the same
configuration (same rewrites; only the slice before the LM head differs). Each mode's speed-up is
against the baseline of the same mode.

Decode: with `decode`, each row also gets the latency of one single-token step with the recurrent state
as graph inputs/outputs (`actiba.models.decode`), with the row's activation tables applied. The prefill
graph rewrites (CumBA, ReduBA, SSD d1/d2) are not applied to that graph — there is no CumSum over time
and no chunked scan in one step — so rows without tables share the baseline's decode graph.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import write_text
from ..errors import InputError
from . import latency
from .build import LoadedModel, rewritten_onnx, to_openvino
from .configs import Config, describe_activations, tables_for
from .pareto import mark_pareto, null_noise, null_usable

CACHE_VERSION = 5  # 2: interleaved timing; 3: adaptive timing, decode, graph sha; 4: graphs read by
# OpenVINO's ONNX frontend (not convert_model), "last" graphs derived from the "all" export; 5: per-window
# nats (`metric_windows`) for the paired accuracy uncertainty


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
    rel_tol: float | None = None  # adaptive timing: stop once the paired ratio is known to ±rel_tol (~95 %)
    min_repeats: int = 6  # adaptive timing: at least this many pairs
    timing_seconds: float | None = None  # adaptive timing: stop (after min_repeats) once this much time is spent
    accuracy_seconds: float | None = None  # scoring budget per configuration (None: all of eval_bytes)
    min_eval_windows: int = 32  # never fewer windows than this, whatever the budget
    decode: bool = False  # also time one decode step (state in/out) per configuration
    decode_repeats: int = 60  # decode steps timed (pairs, at most); adaptive with rel_tol
    prefill_logits: str = "last"  # timed prefill output: "last" position only ([1, 1, V]) or "all" ([1, L, V])
    emulate: list[str] = field(default_factory=list)  # also score the front at these precisions, emulated

    def key(self) -> str:
        d = asdict(self)
        d.pop("profile")
        d.pop("emulate")  # added after the rows, memoized on its own (`emulate_front`)
        return hashlib.sha256(json.dumps([CACHE_VERSION, d], sort_keys=True).encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


@dataclass
class RunState:
    """What one run shares between its rows: the compiled baseline (timing reference, compiled once),
    measured rows by graph hash (for reuse) and the decode graphs."""

    reference: Any = None
    reference_notes: dict[str, Any] = field(default_factory=dict)
    by_sha: dict[str, dict[str, Any]] = field(default_factory=dict)
    decode_base: Any = None
    decode_reference: Any = None
    decode_by_sha: dict[str, dict[str, Any]] = field(default_factory=dict)
    scorer: tuple[str, Any] | None = None  # (graph sha, compiled): the baseline's scoring graph, kept
    noise: float = 0.0  # the null control's floor (`pareto.null_noise`): speed-ups must exceed 1 + noise
    accuracy_from: dict[str, dict[str, Any]] = field(default_factory=dict)  # scoring-graph sha -> scored row


def graph_sha(onnx_model: Any) -> str:
    """Hash of the serialized graph: equal hashes mean the same deployable artifact."""
    return hashlib.sha256(onnx_model.SerializeToString(deterministic=True)).hexdigest()[:16]


_REUSED = ("metric", "metric_windows", "metric_halfwidth", "metric_precision", "latency_ms", "baseline_latency_ms",
           "latency_ratio", "metric_torch", "profile_ms", "latency_by_seq_len")


def evaluate_config(lm: LoadedModel, config: Config, settings: Settings, precision: str,
                    data: bytes | None, cache_dir: Path | None = None, profile: bool = False,
                    reference: Any = None, state: RunState | None = None,
                    step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One row: metric (bits/byte, OpenVINO at `precision`), latency, sites rewritten, compile notes.

    `step(name)` is told each step as it starts (export, compile, accuracy, timing, decode): progress.

    With `reference` (the compiled baseline), latency is timed interleaved with it and the row keeps
    the baseline's latency from the same window, so the speed-up does not depend on load drift. With
    `state`, a graph identical to one already measured in the run reuses that row's numbers.
    """
    step = step or (lambda _name: None)
    t0 = time.perf_counter()
    measured = None
    if config.measure_sites:
        step("timing sites")
        if reference is None:
            raise InputError(f"{config.name}: choosing sites by measurement needs the compiled baseline")
        config, measured = measured_sites(lm, config, settings, precision, cache_dir, reference,
                                          state.noise if state is not None else 0.0)
    step("export + rewrite")
    onnx_model, done = rewritten_onnx(lm, config, settings.seq_len, precision, cache_dir, settings.prefill_logits)
    sha = graph_sha(onnx_model)
    t1 = time.perf_counter()
    row: dict[str, Any] = {**_row_head(config, describe_activations(config)),
                           "sites_rewritten": done, "compile": {}, "error": None, "graph_sha": sha}
    if measured is not None:
        row["site_measurements"] = measured
        row["sites_chosen"] = {"cumba": config.cumba, "reduba": config.reduba, "sites": config.sites}
    same = state.by_sha.get(sha) if state is not None else None
    if same is not None:  # byte-identical graph: the measurement would repeat itself
        row.update({k: same[k] for k in _REUSED if k in same})
        row["compile"] = same.get("compile", {})
        row["same_graph_as"] = same["name"]
        _decode(lm, config, settings, precision, state, row)
        row["seconds"] = {"total": round(time.perf_counter() - t0, 2)}
        return row
    step("compile")
    ov_model = to_openvino(onnx_model)
    if config.is_baseline and state is not None and state.reference is not None:
        compiled, notes = state.reference, dict(state.reference_notes)  # compiled once per run
    else:
        compiled, notes = latency.compile_model(ov_model, settings.device, precision, settings.threads)
    row["compile"] = notes
    t2 = time.perf_counter()
    if not settings.latency_only:
        step("accuracy")
        if data is None:
            raise InputError("no evaluation data")
        from .accuracy import own_halfwidth
        from .perplexity import bits_per_byte_of, openvino_logits_fn, window_nats

        scorer, scoring_model, scoring_sha = compiled, None, sha
        if settings.prefill_logits != "all":  # scoring needs every position: the same config, all logits
            scoring_model, _ = rewritten_onnx(lm, config, settings.seq_len, precision, cache_dir, "all")
            scoring_sha = row["metric_graph_sha"] = graph_sha(scoring_model)
        src = state.accuracy_from.get(scoring_sha) if state is not None else None
        if src is not None and len(src.get("metric_windows") or ()) == len(data) // settings.seq_len:
            # this graph was scored in an earlier run (another precision): time it, do not score it again
            row.update({k: src[k] for k in ("metric", "metric_windows", "metric_halfwidth") if k in src})
            row["metric_precision"] = src.get("metric_precision")
            row["metric_reused_from"] = src.get("metric_run")
        else:
            if scoring_model is not None:
                scorer = _scorer(scoring_model, scoring_sha, settings, precision, state)
            nats = window_nats(openvino_logits_fn(scorer), data, settings.seq_len)
            row["metric"] = bits_per_byte_of(nats, settings.seq_len)
            row["metric_windows"] = nats
            row["metric_halfwidth"] = own_halfwidth(nats, settings.seq_len)
            row["metric_precision"] = precision
        del scorer
        if state is not None and config.is_baseline:
            state.scorer = None  # no other row scores on the baseline's graph: free it
    t3 = time.perf_counter()
    step("timing")
    feed = latency.random_ids(settings.seq_len, lm.vocab_size)
    if reference is not None and reference is not compiled:
        paired = latency.time_paired_adaptive(compiled, reference, feed, settings.warmup, settings.repeats,
                                              settings.min_repeats, settings.rel_tol, settings.timing_seconds)
        lat, ref = paired.a, paired.b
        row["baseline_latency_ms"] = {k: v for k, v in ref.as_dict().items() if k != "repeats"}
        row["latency_ratio"] = paired.ratio_dict()
    else:
        lat = latency.time_compiled(compiled, feed, settings.warmup, settings.repeats)
    row["latency_ms"] = {k: v for k, v in lat.as_dict().items() if k != "repeats"} | {"repeats": lat.repeats}
    del compiled
    if settings.torch_metric and not settings.latency_only and data is not None:
        from .perplexity import torch_bits_per_byte

        row["metric_torch"] = torch_bits_per_byte(lm.model, data, settings.seq_len, tables_for(config, lm))
    if profile or settings.profile:
        compiled_p, _ = latency.compile_model(ov_model, settings.device, precision, settings.threads, profile=True)
        row["profile_ms"] = latency.profile_by_type(compiled_p, feed)
    extra = {}
    for n in settings.extra_seq_lens:
        m, _ = rewritten_onnx(lm, config, n, precision, cache_dir, settings.prefill_logits)
        c, _ = latency.compile_model(to_openvino(m), settings.device, precision, settings.threads)
        extra[str(n)] = latency.time_compiled(c, latency.random_ids(n, lm.vocab_size), settings.warmup,
                                              settings.repeats).as_dict()
    if extra:
        row["latency_by_seq_len"] = extra
    t4 = time.perf_counter()
    step("decode timing")
    _decode(lm, config, settings, precision, state, row)
    row["seconds"] = {"build": round(t1 - t0, 2), "compile": round(t2 - t1, 2), "accuracy": round(t3 - t2, 2),
                      "timing": round(t4 - t3, 2), "total": round(time.perf_counter() - t0, 2)}
    if state is not None:
        state.by_sha.setdefault(sha, row)
    return row


def _scorer(model: Any, sha: str, settings: Settings, precision: str, state: RunState | None) -> Any:
    """The compiled all-positions graph that scores accuracy in "last" mode (reused if it is the kept one).

    Why all threads: nothing is timed on it, and on 2 cores scoring takes ~40 % less time; the number
    does not depend on it beyond float summation order (same precision hint).
    """
    if state is not None and state.scorer is not None and state.scorer[0] == sha:
        return state.scorer[1]
    compiled, _ = latency.compile_model(to_openvino(model), settings.device, precision, threads=None)
    return compiled


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


def _decode(lm: LoadedModel, config: Config, settings: Settings, precision: str, state: RunState | None,
            row: dict[str, Any]) -> None:
    """Add decode_latency_ms (+ baseline_decode_latency_ms from the same window) to `row`.

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
            row["decode_note"] = "no tables: the decode step is the baseline's (prefill rewrites do not apply)"
        same = state.decode_by_sha.get(sha)
        if same is not None:
            row.update({k: same[k] for k in ("decode_latency_ms", "baseline_decode_latency_ms",
                                             "decode_latency_ratio") if k in same})
            if not config.is_baseline and "baseline_decode_latency_ms" not in same:  # same graph as baseline
                row["baseline_decode_latency_ms"] = same["decode_latency_ms"]
            if same["name"] != row["name"]:
                row["decode_same_graph_as"] = same["name"]
            row["decode_graph_sha"] = sha
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
            row["baseline_decode_latency_ms"] = {k: v for k, v in paired.b.as_dict().items() if k != "repeats"}
            row["decode_latency_ratio"] = paired.ratio_dict()
        row["decode_latency_ms"] = {k: v for k, v in st.as_dict().items() if k != "seq_len"}
        row["decode_sites_rewritten"] = n_sites
        row["decode_graph_sha"] = sha
        state.decode_by_sha[sha] = dict(row)
    except Exception as exc:  # decode is an extra: keep the prefill row
        row["decode_error"] = _error_text(exc)


def measured_sites(lm: LoadedModel, config: Config, settings: Settings, precision: str, cache_dir: Path | None,
                   reference: Any, noise: float = 0.0) -> tuple[Config, list[dict[str, Any]]]:
    """Choose CumBA / ReduBA sites by measurement on this device (what pays off depends on its kernels).

    Eligible sites are grouped into classes of equal (axis, shape) — sites of a class compile to the
    same kernels, so one timing speaks for all of them. For each class, the graph with only that class
    rewritten is timed interleaved with the graph it is added to (the baseline, or the config's SSD
    variant); a class is kept only if it is faster even at the pessimistic end of its interval, by more
    than the run's null-control `noise`.
    Returns the config with explicit site lists (a rewrite with
    no kept class is switched off) and one record per class for the report.
    """
    import dataclasses
    import glob as _glob

    from ..rewrite import onnx_rw
    from .build import _onnx_base
    from .pareto import surely_faster

    base = _onnx_base(lm, config, settings.seq_len, precision, cache_dir, settings.prefill_logits)
    feed = latency.random_ids(settings.seq_len, lm.vocab_size)
    if config.ssd_d1 or config.ssd_d2 or config.ssd_chunk:  # a class must beat the graph it is added to
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
            compiled, _ = latency.compile_model(to_openvino(model), settings.device, precision, settings.threads)
            paired = latency.time_paired_adaptive(compiled, reference, feed, settings.warmup, settings.repeats,
                                                  settings.min_repeats, settings.rel_tol, settings.timing_seconds)
            del compiled
            rec = {"rewrite": rw, "axis": axis, "shape": shape, "sites": len(names),
                   "speedup": 1.0 / paired.ratio_median, "latency_ratio": paired.ratio_dict()}
            rec["kept"] = surely_faster(rec, noise)
            records.append(rec)
            if rec["kept"]:
                kept.setdefault(rw, []).extend(_glob.escape(n) for n in names)
    chosen = dataclasses.replace(config, cumba=bool(kept.get("cumba")), reduba=bool(kept.get("reduba")),
                                 sites={**config.sites, **kept}, measure_sites=False)
    return chosen, records


def _config_of(row: dict[str, Any], config: Config) -> Config:
    """The configuration a row measured: a per-site choice replaced by the sites it kept."""
    import dataclasses

    chosen = row.get("sites_chosen")
    if not config.measure_sites or not chosen:
        return config
    return dataclasses.replace(config, cumba=bool(chosen["cumba"]), reduba=bool(chosen["reduba"]),
                               sites=dict(chosen.get("sites") or {}), measure_sites=False)


NULL_ATTEMPTS = 3  # null-control timings before a run's latency is declared not usable
EMULATED_FRONT = 3  # Pareto graphs scored at each emulated precision (the fastest ones), besides the baseline


def _scoring_sha(row: dict[str, Any]) -> str | None:
    """Hash of the graph that scored the row: the all-positions graph in "last" mode, else the timed one."""
    return row.get("metric_graph_sha") or row.get("graph_sha")


def _emulation_targets(rows: list[dict[str, Any]], base: dict[str, Any]) -> list[dict[str, Any]]:
    """The baseline and the rows of the EMULATED_FRONT fastest distinct Pareto scoring graphs (rows that
    share a graph share its number)."""
    front = [r for r in rows if r.get("pareto") and r is not base and not r.get("error")
             and r.get("metric") is not None and r.get("speedup") is not None]
    front.sort(key=lambda r: -r["speedup"])
    shas: list[str] = []
    for r in front:
        sha = _scoring_sha(r)
        if sha not in shas and len(shas) < EMULATED_FRONT:
            shas.append(sha)
    return [base] + [r for r in front if _scoring_sha(r) in shas]


def emulate_front(lm: LoadedModel, configs: list[Config], rows: list[dict[str, Any]], settings: Settings,
                  precision: str, data: bytes, cache: Path, row_dir: Path, base: dict[str, Any]) -> None:
    """Score the baseline and the fastest Pareto rows again at each `settings.emulate` precision, emulated.

    Why: a device that runs bf16/f16 changes every configuration's accuracy, and this CPU cannot show
    it (OpenVINO here runs f32 only). `evaluate.emulate` rounds every float tensor of the all-positions
    graph to that precision (onnxruntime), so the front's accuracy can be read at the precision an NPU
    would run; latency is not emulated. Only the baseline and the EMULATED_FRONT fastest Pareto graphs,
    because that is what a user picks from and each emulated graph costs ~5-15 s here. Deltas are
    against the f32-graph baseline metric, so they include what the precision itself costs. Memoized
    by scoring-graph hash next to the rows.
    """
    import os

    from .emulate import bits_per_byte_onnx, emulate_precision

    by_name = {c.name: c for c in configs}
    for row in _emulation_targets(rows, base):
        sha = _scoring_sha(row)
        got, errors = {}, {}
        for p in settings.emulate:
            memo = row_dir / f"emulated-{p}-{sha}-{settings.key()}.json"
            try:
                got[p] = float(json.loads(memo.read_text())["metric"])
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
            try:
                config = _config_of(row, by_name[row["name"]])
                model, _ = rewritten_onnx(lm, config, settings.seq_len, precision, cache, "all")
                value = bits_per_byte_onnx(emulate_precision(model, p), data, settings.seq_len,
                                           threads=os.cpu_count() or 1)
            except Exception as exc:  # an extra: the row stands without it
                errors[p] = _error_text(exc)
                continue
            got[p] = value
            write_text(memo, json.dumps({"metric": value, "graph_sha": sha}))
        if got:
            row["metric_emulated"] = got
            row["metric_emulated_delta_rel"] = {p: (v - base["metric"]) / base["metric"] for p, v in got.items()}
        if errors:
            row["emulate_error"] = errors


def _error_text(exc: BaseException) -> str:
    """'Type: first line of the message', at most 300 characters: what a row says of a failure."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}"[:300]


def _row_head(config: Config, activations: Any) -> dict[str, Any]:
    """What a row says of its configuration, the same for a measured row and a failed one."""
    return {"name": config.name, "rewrites": list(config.rewrites), "cumba": config.cumba, "reduba": config.reduba,
            "ssd_d1": config.ssd_d1, "ssd_d2": config.ssd_d2, "ssd_chunk": config.ssd_chunk,
            "activations": activations, "metric": None, "latency_ms": None}


def error_row(config: Config, exc: BaseException) -> dict[str, Any]:
    return {**_row_head(config, _safe_acts(config)), "error": _error_text(exc)}


def _safe_acts(config: Config) -> dict[str, Any]:
    try:
        return describe_activations(config)
    except Exception:
        return {k: dict(v) for k, v in config.activations.items()}


def finish_run(rows: list[dict[str, Any]], baseline_name: str = "baseline") -> dict[str, Any] | None:
    """Add metric_delta_rel, speedup and pareto to every row (relative to the baseline row); return it."""
    from .accuracy import paired_halfwidth

    base = next((r for r in rows if r["name"] == baseline_name), None)
    ok_base = base is not None and not base.get("error")
    for r in rows:
        r["metric_delta_rel"] = None
        r["metric_delta_halfwidth_rel"] = None
        r["speedup"] = None
        r["decode_speedup"] = None
        if not ok_base or r.get("error"):
            continue
        if r.get("metric") is not None and base.get("metric"):
            r["metric_delta_rel"] = (r["metric"] - base["metric"]) / base["metric"]
            if r.get("metric_windows") and base.get("metric_windows"):
                r["metric_delta_halfwidth_rel"] = paired_halfwidth(r["metric_windows"], base["metric_windows"])
        elif r.get("metric") is None and base.get("metric") is None:
            r["metric_delta_rel"] = None
        if (r.get("latency_ratio") or {}).get("median"):  # per-pair ratios, timed interleaved (robust to drift)
            r["speedup"] = 1.0 / r["latency_ratio"]["median"]
        elif r.get("latency_ms") and r.get("baseline_latency_ms"):  # timed interleaved with the baseline
            r["speedup"] = r["baseline_latency_ms"]["median"] / r["latency_ms"]["median"]
        elif r.get("latency_ms") and base.get("latency_ms"):
            r["speedup"] = base["latency_ms"]["median"] / r["latency_ms"]["median"]
        dec, dref = r.get("decode_latency_ms"), r.get("baseline_decode_latency_ms") or base.get("decode_latency_ms")
        if (r.get("decode_latency_ratio") or {}).get("median"):
            r["decode_speedup"] = 1.0 / r["decode_latency_ratio"]["median"]
        elif dec and dref:
            r["decode_speedup"] = dref["median"] / dec["median"]
    if ok_base and base.get("metric") is None:  # latency only: the front is the fastest rows
        tmp = [dict(r, metric_delta_rel=0.0 if r["speedup"] is not None else None) for r in rows]
        mark_pareto(tmp)
        for r, t in zip(rows, tmp, strict=True):
            r["pareto"] = t["pareto"]
    else:
        mark_pareto(rows, base)
    return base


# The scoring budget is converted to windows at this nominal throughput, from the model's size, not
# from a timing: a timed budget made the bytes scored depend on the machine's load (a run at load 7-11
# scored 32 of 64 windows of the embedded Mamba-2), so the same command gave different bits/byte.
NOMINAL_FLOPS = 20e9


def _eval_data(lm: LoadedModel, settings: Settings, data: bytes) -> tuple[bytes, str]:
    """The scored prefix of `data`: all of it, or fewer whole windows for a large model.

    The window count follows from the model's size alone (≈ 2 FLOP per parameter per token at
    `NOMINAL_FLOPS`, budget `accuracy_seconds` per configuration, never under `min_eval_windows`), so
    the same model and settings score the same bytes on every machine and at any load: the embedded
    models (1.8 M parameters) score all windows, a 130M model 32 windows of 256 bytes. Being a function of
    the settings and the model, a resumed run scores the same bytes without a memo.
    """
    n_all = len(data) // settings.seq_len
    if settings.accuracy_seconds is None or n_all <= settings.min_eval_windows:
        return data, "all windows"
    params = sum(int(p.numel()) for p in lm.model.parameters())
    window_s = 2.0 * params * settings.seq_len / NOMINAL_FLOPS
    n = max(settings.min_eval_windows, min(n_all, int(settings.accuracy_seconds / window_s)))
    reason = "all windows" if n >= n_all else (
        f"{n} of {n_all} windows: {params / 1e6:.1f} M parameters x {settings.seq_len} tokens is "
        f"~{window_s:.2g} s per window at a nominal {NOMINAL_FLOPS / 1e9:g} GFLOP/s, budget "
        f"{settings.accuracy_seconds:g} s per configuration (at least {settings.min_eval_windows})")
    return data[:n * settings.seq_len], reason


def null_control(lm: LoadedModel, configs: list[Config], settings: Settings, precision: str, state: RunState,
                 cache: Path, row_dir: Path) -> dict[str, Any] | None:
    """The baseline graph compiled a second time, timed against the run's compiled baseline.

    Why: two compiles of one graph can time a few per cent apart (1.026× on Mamba-130M here), which
    no single pairing's interval shows; a configuration must beat that floor to be recommended
    (`pareto.null_noise`). A null control further from 1 than `pareto.NULL_MAX_NOISE` means the timing
    itself failed (another job took the cores): it is compiled and timed again with more pairs, up to
    NULL_ATTEMPTS times; if it stays wide, `usable` is false and the run recommends nothing. Remembered
    next to the rows, so a resumed run keeps its floor. A failure is returned as {"error": ...} and
    leaves the floor at 0.
    """
    memo = row_dir / f"null-control-{settings.key()}.json"
    try:
        return json.loads(memo.read_text())
    except (OSError, ValueError):
        pass
    attempts: list[dict[str, Any]] = []
    try:
        ref = _reference(lm, configs, settings, precision, state, cache)
        base_cfg = next(c for c in configs if c.is_baseline)
        m, _ = rewritten_onnx(lm, base_cfg, settings.seq_len, precision, cache, settings.prefill_logits)
        feed = latency.random_ids(settings.seq_len, lm.vocab_size)
        for k in range(NULL_ATTEMPTS):  # too wide: compile both afresh, time with more pairs, no time limit
            if k:  # the reference may be the odd compile: every row is timed against it, so replace it
                state.reference = None
                ref = _reference(lm, configs, settings, precision, state, cache)
            again, _ = latency.compile_model(to_openvino(m), settings.device, precision, settings.threads)
            paired = latency.time_paired_adaptive(
                again, ref, feed, settings.warmup, settings.repeats * (1 + 2 * k), settings.min_repeats * (1 + k),
                settings.rel_tol, settings.timing_seconds if k == 0 else None)
            del again
            got = {"speedup": 1.0 / paired.ratio_median, "halfwidth_rel": paired.ratio_halfwidth,
                   "pairs": paired.a.repeats}
            got["noise"] = null_noise(got)
            attempts.append(got)
            if null_usable(got):
                break
    except Exception as exc:  # the floor is an extra: the sweep goes on without it
        return {"error": _error_text(exc)}
    out: dict[str, Any] = dict(attempts[-1])
    out["attempts"] = len(attempts)
    out["usable"] = null_usable(out)
    if len(attempts) > 1:
        out["earlier"] = attempts[:-1]
    write_text(memo, json.dumps(out))
    return out


def _reference(lm: LoadedModel, configs: list[Config], settings: Settings, precision: str, state: RunState,
               cache: Path) -> Any:
    """The compiled baseline in the timed logits mode (built on first need, once per run)."""
    if state.reference is None:
        base_cfg = next(c for c in configs if c.is_baseline)
        m, _ = rewritten_onnx(lm, base_cfg, settings.seq_len, precision, cache, settings.prefill_logits)
        state.reference, state.reference_notes = latency.compile_model(
            to_openvino(m), settings.device, precision, settings.threads)
    return state.reference


def row_summary(row: dict[str, Any], base: dict[str, Any] | None) -> str:
    """One line on a finished row: speed-up ± its interval, bits/byte change ± its paired interval, time."""
    from .accuracy import paired_halfwidth

    if row.get("error"):
        return f"{row['name']}: FAILED {row['error']}"
    parts = []
    ratio = row.get("latency_ratio") or {}
    if ratio.get("median"):
        parts.append(f"{1 / ratio['median']:.3f}x ±{100 * ratio.get('halfwidth_rel', 0):.1f}%")
    elif base is None or row is base or row.get("name") == (base or {}).get("name"):
        parts.append("1x (reference)")
    if base and base.get("metric") and row.get("metric") is not None:
        delta = (row["metric"] - base["metric"]) / base["metric"]
        hw = paired_halfwidth(row.get("metric_windows") or [], base.get("metric_windows") or [])
        parts.append(f"bits/byte {100 * delta:+.3f}%" + (f" ±{100 * hw:.3f}%" if hw and hw > 1e-6 else
                                                           " ±<0.0001%" if hw else ""))
    if row.get("same_graph_as"):
        parts.append(f"same graph as {row['same_graph_as']}")
    secs = (row.get("seconds") or {}).get("total")
    parts.append("resumed" if secs is None else f"{secs:.1f} s")
    return f"{row['name']}: " + ", ".join(parts)


def run_one(lm: LoadedModel, configs: list[Config], settings: Settings, precision: str, out_dir: Path,
            progress: Any = None, data: bytes | None = None,
            accuracy_from: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every configuration of one (model, precision) run, resumable from ``out_dir/cache``.

    `progress` (optional; `actiba.cli._progress.Progress`) is told each configuration as it starts
    (`begin`), its steps (`step`) and its end (`advance` with `row_summary`).
    """
    from ..models.export import check_logits_mode

    check_logits_mode(settings.prefill_logits)
    if not any(c.is_baseline for c in configs):
        configs = [Config("baseline"), *configs]
    base_name = next(c.name for c in configs if c.is_baseline)
    cache = out_dir / "cache"
    row_dir = cache / "rows" / _slug(lm.name) / precision
    row_dir.mkdir(parents=True, exist_ok=True)
    if data is None and not settings.latency_only:
        from .perplexity import heldout

        data = heldout(settings.eval_bytes)
    state = RunState(accuracy_from=dict(accuracy_from or {}))
    eval_reason = None
    tell = progress.step if progress is not None else (lambda _name: None)
    clock = {"start": time.perf_counter()}  # where the run's time goes besides its rows
    if progress is not None:
        progress.begin("setup")
    if data is not None and not settings.latency_only:
        tell("export + window budget")
        data, eval_reason = _eval_data(lm, settings, data)
    clock["setup"] = time.perf_counter()
    tell("null control (baseline vs itself)")
    null = null_control(lm, configs, settings, precision, state, cache, row_dir)
    clock["null_control"] = time.perf_counter()
    state.noise = null_noise(null)
    rows, resumed = [], 0
    # the baseline first: its graph and decode step are the ones later rows may share
    order = sorted(range(len(configs)), key=lambda i: not configs[i].is_baseline)
    by_index: dict[int, dict[str, Any]] = {}
    for i in order:
        c = configs[i]
        path = row_dir / f"{_slug(c.name)}-{c.key()}-{settings.key()}.json"
        if progress is not None:
            progress.begin(c.name)
        if path.is_file():
            try:
                row = json.loads(path.read_text())
                by_index[i] = row
                resumed += 1
                if progress is not None:
                    progress.advance(row_summary(row, by_index.get(order[0])) + " (cached)")
                if row.get("graph_sha") and not row.get("same_graph_as"):
                    state.by_sha.setdefault(row["graph_sha"], row)
                if row.get("decode_graph_sha") and row.get("decode_latency_ms"):
                    state.decode_by_sha.setdefault(row["decode_graph_sha"], row)
                continue
            except (OSError, ValueError):
                pass
        try:
            ref = _reference(lm, configs, settings, precision, state, cache)  # the baseline, compiled once
            ref = None if c.is_baseline else ref
            row = evaluate_config(lm, c, settings, precision, data, cache, profile=c.is_baseline,
                                  reference=ref, state=state, step=tell)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a failing configuration is a row; the sweep goes on
            by_index[i] = error_row(c, exc)
            if progress is not None:
                progress.advance(row_summary(by_index[i], None))
            continue
        write_text(path, json.dumps(row, indent=1))
        by_index[i] = row
        if progress is not None:
            progress.advance(row_summary(row, by_index.get(order[0])))
    rows = [by_index[i] for i in range(len(configs))]
    clock["rows"] = time.perf_counter()
    base = finish_run(rows, base_name)
    if state.accuracy_from and base and base.get("metric"):  # emulated like the run it reuses accuracy from
        for r in rows:
            src = state.accuracy_from.get(_scoring_sha(r) or "")
            if src is not None and src.get("metric_emulated"):
                r["metric_emulated"] = dict(src["metric_emulated"])
                r["metric_emulated_delta_rel"] = {p: (v - base["metric"]) / base["metric"]
                                                  for p, v in r["metric_emulated"].items()}
    elif settings.emulate and data is not None and not settings.latency_only and base and base.get("metric"):
        if progress is not None:
            progress.begin(f"front at emulated {', '.join(settings.emulate)}")
        emulate_front(lm, configs, rows, settings, precision, data, cache, row_dir, base)
    scored = None if data is None else len(data) - len(data) % settings.seq_len
    end = time.perf_counter()
    seconds = {"setup": clock["setup"] - clock["start"], "null_control": clock["null_control"] - clock["setup"],
               "rows": clock["rows"] - clock["null_control"], "emulate": end - clock["rows"],
               "total": end - clock["start"]}
    return {
        "model": lm.name, "model_type": lm.model_type, "random_weights": lm.random_weights,
        "device": settings.device, "precision": precision, "prefill_logits": settings.prefill_logits,
        "precision_used": (base or {}).get("compile", {}).get("precision_used") if base else None,
        "metric": None if settings.latency_only else "bits_per_byte",
        "baseline": base, "configs": rows, "resumed": resumed, "null_control": null,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "settings": asdict(settings) | {"eval_bytes_scored": scored, "eval_bytes_reason": eval_reason},
    }
