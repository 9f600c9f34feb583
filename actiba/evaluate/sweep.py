"""A run's driver: every configuration of one (model, precision, length), resumable, on a backend.

Why a driver and backends: the row cache (``DIR/cache/rows/MODEL/PRECISION/NAME-CONFIGKEY-SETTINGSKEY.json``)
is the single source of truth, so the driver alone reads it, decides which rows remain, writes each
finished row (atomically, as it arrives) and assembles the run; a backend only measures the rows it is
handed (`Backend.measure`) and the run's null control. `LocalBackend` measures them one after another in
this process (`measure.evaluate_config`); `ray_backend.RayBackend` places the same phases on a cluster.
A failing configuration becomes a row carrying its error and the sweep goes on; a failed row is not
cached, so a resumed run tries it again.

Null control (`null.null_control`): every run also times the baseline graph compiled a second time
against the reference; what two compiles of one graph differ by is the floor a speed-up must clear
before a per-site choice keeps a rewrite or `pareto.choose` recommends a configuration.

A model too large to score in full scores fewer whole windows (`eval_data`: chosen from its size, at
least `min_eval_windows`; the bytes scored are in the run's settings).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from .._atomic import write_text
from .build import LoadedModel
from .configs import Config
from .front import emulate_front
from .measure import RunState, error_row, evaluate_config, reference
from .null import null_control
from .pareto import null_noise
from .row import Row, finish_run, row_summary
from .settings import Settings, slug

__all__ = ["Backend", "LocalBackend", "RunJob", "Settings", "eval_data", "run_one"]


@dataclass
class RunJob:
    """What a backend needs to measure one run's rows, and how it reports them."""

    lm: LoadedModel
    configs: list[Config]
    settings: Settings
    precision: str
    cache: Path  # DIR/cache: exported graphs, row files
    row_dir: Path  # this run's row files
    data: bytes | None  # the scored held-out bytes (None: latency only)
    progress: Any = None  # `actiba.cli._progress.Progress` or None

    @property
    def baseline(self) -> Config:
        return next(c for c in self.configs if c.is_baseline)

    def row_path(self, i: int) -> Path:
        c = self.configs[i]
        return self.row_dir / f"{slug(c.name)}-{c.key()}-{self.settings.key()}.json"

    def begin(self, name: str) -> None:
        if self.progress is not None:
            self.progress.begin(name)

    def step(self, name: str) -> None:
        if self.progress is not None:
            self.progress.step(name)


class Backend(Protocol):
    """Where a run's rows are measured. The driver owns the cache; a backend owns only the measuring.

    `measure(job, todo, cached, done)`: measure `job.configs[i]` for each i in `todo` (the baseline
    first when it is there) and call `done(i, row)` once per index as its row is known — a failed
    configuration is an error row (`measure.error_row`), never a missing call; `cached` (index → row)
    are the rows already in the cache, whose graphs a new row may share. KeyboardInterrupt propagates
    after the backend has stopped its work. `null_control(job)`, called first for every run, times the
    baseline against itself where the rows are timed. `describe()` is what results.json says of the
    backend (for the run measured last); `close()` releases what the backend holds (a cluster's nodes).
    """

    name: str

    def null_control(self, job: RunJob) -> dict[str, Any] | None: ...

    def measure(self, job: RunJob, todo: list[int], cached: dict[int, Row],
                done: Callable[[int, Row], None]) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class LocalBackend:
    """Every row in this process, one after another (the baseline first): what a sweep always did."""

    name = "local"

    def __init__(self) -> None:
        self.state = RunState()
        self._job: RunJob | None = None

    def _state(self, job: RunJob) -> RunState:
        if self._job is not job:  # one state per run: the reference is that run's baseline
            self.state, self._job = RunState(), job
        return self.state

    def null_control(self, job: RunJob) -> dict[str, Any] | None:
        state = self._state(job)
        null = null_control(job.lm, job.configs, job.settings, job.precision, state, job.cache, job.row_dir)
        state.noise = null_noise(null)
        return null

    def measure(self, job: RunJob, todo: list[int], cached: dict[int, Row],
                done: Callable[[int, Row], None]) -> None:
        state = self._state(job)
        seed(state, cached.values())
        for i in todo:
            c = job.configs[i]
            job.begin(c.name)
            try:
                ref = reference(job.lm, job.baseline, job.settings, job.precision, state, job.cache)  # once
                row = evaluate_config(job.lm, c, job.settings, job.precision, job.data, job.cache,
                                      profile=c.is_baseline, reference=None if c.is_baseline else ref,
                                      state=state, step=job.step)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # a failing configuration is a row; the sweep goes on
                row = error_row(c, exc)
            done(i, row)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def close(self) -> None:
        self.state = RunState()  # the compiled graphs


def seed(state: RunState, rows: Any) -> None:
    """Let new rows share the graphs of rows read from the cache (prefill and decode)."""
    for row in rows:
        if row.graph_sha and not row.same_graph_as:
            state.by_sha.setdefault(row.graph_sha, row)
        if row.decode_graph_sha and row.decode_latency_ms:
            state.decode_by_sha.setdefault(row.decode_graph_sha, row)


# The scoring budget is converted to windows at this nominal throughput, from the model's size, not
# from a timing: a timed budget made the bytes scored depend on the machine's load (a run at load 7-11
# scored 32 of 64 windows of the embedded Mamba-2), so the same command gave different bits/byte.
NOMINAL_FLOPS = 20e9


def eval_data(lm: LoadedModel, settings: Settings, data: bytes) -> tuple[bytes, str]:
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


def read_cached(path: Path) -> Row | None:
    """The cached row at `path`, or None (absent or unreadable: it is measured again)."""
    try:
        return Row.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def run_one(lm: LoadedModel, configs: list[Config], settings: Settings, precision: str, out_dir: Path,
            progress: Any = None, data: bytes | None = None,
            backend: Backend | None = None) -> dict[str, Any]:
    """Every configuration of one (model, precision) run, resumable from ``out_dir/cache``.

    `progress` (optional; `actiba.cli._progress.Progress`) is told each configuration as it starts
    (`begin`), its steps (`step`) and its end (`advance` with `row_summary`). `backend` measures the
    rows (default: `LocalBackend`, this process).
    """
    from ..models.export import check_logits_mode
    from .perplexity import as_scoring_text

    backend = backend or LocalBackend()
    check_logits_mode(settings.prefill_logits)
    if not any(c.is_baseline for c in configs):
        configs = [Config("baseline"), *configs]
    base_name = next(c.name for c in configs if c.is_baseline)
    cache = out_dir / "cache"
    row_dir = cache / "rows" / slug(lm.name) / precision
    row_dir.mkdir(parents=True, exist_ok=True)
    if data is None and not settings.latency_only:
        from .scoring_text import load

        data = load(lm.name, settings.eval_bytes, settings.text, seq_len=settings.seq_len)  # the model's tokens
        settings = replace(settings, tokens=data.token_key())  # part of every cache key
    eval_reason = None
    clock = {"start": time.perf_counter()}  # where the run's time goes besides its rows
    job = RunJob(lm, configs, settings, precision, cache, row_dir, None, progress)
    job.begin("setup")
    if data is not None and not settings.latency_only:
        job.step("export + window budget")
        data, eval_reason = eval_data(lm, settings, data)
    job.data = data
    clock["setup"] = time.perf_counter()
    job.step("null control (baseline vs itself)")
    null = backend.null_control(job)
    clock["null_control"] = time.perf_counter()
    # the baseline first: its graph and decode step are the ones later rows may share
    order = sorted(range(len(configs)), key=lambda i: not configs[i].is_baseline)
    by_index: dict[int, Row] = {}
    todo = []
    for i in order:
        row = read_cached(job.row_path(i))
        if row is None:
            todo.append(i)
            continue
        by_index[i] = row
        job.begin(configs[i].name)
        if progress is not None:
            progress.advance(row_summary(row, by_index.get(order[0])) + " (cached)")
    cached = dict(by_index)

    def done(i: int, row: Row) -> None:
        if not row.error:  # a failed row is tried again by a resumed run
            write_text(job.row_path(i), json.dumps(row.to_dict(), indent=1))
        by_index[i] = row
        if progress is not None:
            progress.advance(row_summary(row, None if row.error else by_index.get(order[0])))

    backend.measure(job, todo, cached, done)
    missing = [configs[i].name for i in range(len(configs)) if i not in by_index]
    if missing:  # a backend bug, not a measurement: never report a run with rows silently dropped
        raise RuntimeError(f"backend {backend.name} returned no row for {', '.join(missing)}")
    rows = [by_index[i] for i in range(len(configs))]
    clock["rows"] = time.perf_counter()
    base = finish_run(rows, base_name, null_noise(null))
    if settings.emulate and data is not None and not settings.latency_only and base and base.metric:
        job.begin(f"front at emulated {', '.join(settings.emulate)}")
        emulate_front(lm, configs, rows, settings, precision, data, cache, row_dir, base)
    text = None if data is None else as_scoring_text(data).describe(settings.seq_len)
    scored = None if text is None else text["bytes"]
    end = time.perf_counter()
    seconds = {"setup": clock["setup"] - clock["start"], "null_control": clock["null_control"] - clock["setup"],
               "rows": clock["rows"] - clock["null_control"], "emulate": end - clock["rows"],
               "total": end - clock["start"]}
    return {
        "model": lm.name, "model_type": lm.model_type, "random_weights": lm.random_weights,
        "device": settings.device, "precision": precision, "prefill_logits": settings.prefill_logits,
        "precision_used": (base.compile or {}).get("precision_used") if base else None,
        "metric": None if settings.latency_only else "bits_per_byte",
        "baseline": base, "configs": rows, "resumed": len(cached), "null_control": null,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "settings": asdict(settings) | {"eval_bytes_scored": scored, "eval_bytes_reason": eval_reason},
        "scoring_text": text,  # which text, bytes and tokens scored, which tokenizer (`scoring_text`)
        "backend": backend.describe(),
    }
