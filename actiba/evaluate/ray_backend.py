"""`actiba pareto --backend ray`: a run's rows measured on a Ray cluster, with latency kept honest.

Placement (the phases of `measure`):
- build (export + rewrite, and the all-positions scoring graph) and score (bits/byte) are Ray tasks on
  any node: they need only the model, the data and the precision, and they are where a large model's
  time goes. Scoring compiles exactly as the local backend does (`measure.compile_scorer`), so the same
  graph on the same windows gives the same bits/byte, bit for bit.
- timing runs in one actor pinned to a node that offers the declared resource (`--timing-resource`,
  `ray start --resources '{"actiba_timing": 1}'`): the run's baseline reference is compiled there and
  every configuration is timed interleaved with it on that node, so no ratio mixes two machines. The
  null control, per-site choices (`measure_sites`, which are timings) and decode steps run there too.
  The actor takes no CPU slot (`num_cpus=0`): start the timing node with `--num-cpus 0` and no task
  lands beside the timings; on a one-node cluster scoring shares the node (the numbers stay exact; the
  timings get the noise the null control then reports).

The driver (`sweep.run_one`) owns the row cache: it alone reads it, hands this backend the rows that
remain and writes each row as it arrives, so a row is assigned once and an interrupted run resumes
(locally or on a cluster) from what was written. A task whose worker dies is retried by Ray
(`TASK_RETRIES`); if it keeps dying the row is recorded as failed (and measured again by the next run),
never lost. Ctrl-C cancels every outstanding task and kills the timing actor before propagating.

Graphs travel through Ray's object store (a few MB for the embedded models). Workers run the driver's
own `actiba` (shipped as a `py_modules` runtime environment), so code never differs between nodes;
the models, the data and the cache folder (DIR/cache) must be readable on every node (a shared file
system), as must anything a configuration names (table files, statistics).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from .configs import Config
    from .measure import Built
    from .row import Row
    from .settings import Settings
    from .sweep import RunJob

DEFAULT_RESOURCE = "actiba_timing"
TASK_RETRIES = 2  # a build/score task whose worker died is run again this often (elsewhere if it can)
TIMER_WAIT = 120.0  # seconds the timing actor may wait for its node before the run gives up
CRASH_DIR_ENV = "ACTIBA_RAY_CRASH_DIR"  # tests only: a file crash-once-NAME / crash-always-NAME kills that build


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs ray, which is not installed; install actiba[ray]") from None
    return ray


@dataclass(frozen=True)
class Spec:
    """What a worker needs to know of a run (picklable: names and values, no model, no progress)."""

    model: str
    configs: tuple[Config, ...]
    settings: Settings
    precision: str
    cache: str
    row_dir: str

    @property
    def key(self) -> tuple[str, ...]:
        return (self.model, self.precision, self.settings.key(), self.cache)

    @property
    def baseline(self) -> Config:
        return next(c for c in self.configs if c.is_baseline)


_MODELS: dict[str, Any] = {}  # per worker process: a model is loaded once, whatever the tasks


def _model(name: str) -> Any:
    from .build import load_model

    if name not in _MODELS:
        _MODELS[name] = load_model(name)
    return _MODELS[name]


def node_info() -> dict[str, Any]:
    """This worker's node: Ray id, host, address and CPU name (what the report says timed and scored)."""
    import ray

    from .report import cpu_name

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "host": socket.gethostname(), "ip": ray.util.get_node_ip_address(),
            "cpu": cpu_name()}


def _crash_for_tests(name: str) -> None:
    """Kill this worker when the tests ask (`CRASH_DIR_ENV`): the way to test a worker dying mid-row."""
    folder = os.environ.get(CRASH_DIR_ENV)
    if not folder:
        return
    once, always = Path(folder) / f"crash-once-{name}", Path(folder) / f"crash-always-{name}"
    if always.exists():
        os._exit(3)
    try:
        once.unlink()
    except OSError:
        return
    os._exit(3)


def _build(spec: Spec, i: int) -> tuple[Built, dict[str, Any]]:
    from .measure import build

    config = spec.configs[i]
    _crash_for_tests(config.name)
    t0 = time.perf_counter()
    built = build(_model(spec.model), config, spec.settings, spec.precision, Path(spec.cache),
                  scoring=not spec.settings.latency_only)
    built.row.seconds = {"build": round(time.perf_counter() - t0, 2)}
    return built, node_info()


def _score(spec: Spec, built: Built, data: bytes) -> tuple[Built, dict[str, Any]]:
    from .measure import compile_scorer, score, torch_metric

    t0 = time.perf_counter()
    score(compile_scorer(built, spec.settings, spec.precision), built.row, spec.settings, spec.precision, data)
    if spec.settings.torch_metric:
        torch_metric(_model(spec.model), built.config, built.row, spec.settings, data)
    built.row.seconds = dict(built.row.seconds or {}, accuracy=round(time.perf_counter() - t0, 2))
    return built, node_info()


class Timer:
    """The timing actor: one per backend, on a node with the timing resource; one RunState per run."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, ...], tuple[Any, Any]] = {}
        self.node = node_info()

    def _run(self, spec: Spec, noise: float = 0.0) -> tuple[Any, Any]:
        from .measure import RunState

        if spec.key not in self.runs:
            self.runs[spec.key] = (_model(spec.model), RunState())
        lm, state = self.runs[spec.key]
        state.noise = noise
        return lm, state

    def info(self) -> dict[str, Any]:
        return self.node

    def null_control(self, spec: Spec) -> dict[str, Any] | None:
        from .null import null_control

        lm, state = self._run(spec)
        return null_control(lm, list(spec.configs), spec.settings, spec.precision, state, Path(spec.cache),
                            Path(spec.row_dir))

    def time(self, spec: Spec, built: Built, noise: float) -> Row:
        """Phase (c) and (d) for a built (and scored) configuration, against this node's baseline."""
        from .measure import compile_timed, decode, reference, time_extras, time_prefill

        lm, state = self._run(spec, noise)
        t0 = time.perf_counter()
        ref = reference(lm, spec.baseline, spec.settings, spec.precision, state, Path(spec.cache))
        compiled = compile_timed(built, spec.settings, spec.precision, state)
        t1 = time.perf_counter()
        row = built.row
        time_prefill(compiled, None if built.config.is_baseline else ref, row, spec.settings, lm.vocab_size)
        del compiled
        time_extras(lm, built, spec.settings, spec.precision, Path(spec.cache), profile=built.config.is_baseline)
        t2 = time.perf_counter()
        decode(lm, built.config, spec.settings, spec.precision, state, row)
        secs = dict(row.seconds or {}, compile=round(t1 - t0, 2), timing=round(t2 - t1, 2))
        secs["total"] = round(sum(v for k, v in secs.items() if k != "total") + time.perf_counter() - t2, 2)
        row.seconds, row.timed_on = secs, self.label()
        return row

    def decode_only(self, spec: Spec, row: Row, config: Config, noise: float) -> Row:
        """The decode step of a row whose prefill graph repeats an earlier one's (as the local sweep does)."""
        from .measure import decode

        lm, state = self._run(spec, noise)
        decode(lm, config, spec.settings, spec.precision, state, row)
        row.timed_on = self.label()
        return row

    def evaluate(self, spec: Spec, i: int, noise: float, data: bytes | None) -> Row:
        """A whole configuration here: choosing sites by measurement is timing, so it cannot be split off."""
        from .measure import evaluate_config, reference

        lm, state = self._run(spec, noise)
        ref = reference(lm, spec.baseline, spec.settings, spec.precision, state, Path(spec.cache))
        row = evaluate_config(lm, spec.configs[i], spec.settings, spec.precision, data, Path(spec.cache),
                              reference=ref, state=state)
        row.timed_on = self.label()
        return row

    def label(self) -> str:
        return f"{self.node['host']} ({self.node['node_id'][:8]})"


def _cause(exc: BaseException) -> BaseException:
    """The configuration's own exception inside Ray's wrapper (so the row says what the local one says)."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _check_reachable(address: str) -> None:
    """Fail in a second, with one line, when nothing listens at HOST:PORT (ray.init would retry for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5.0):
            pass
    except OSError as exc:
        raise InputError(f"--address {address}: no Ray cluster reachable there ({exc.strerror or exc})") from None


@dataclass
class _Track:
    """Where one run's work went, for results.json."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, node: dict[str, Any], what: str, name: str, timing: bool = False) -> None:
        rec = self.nodes.setdefault(node["node_id"], dict(node, timing=False, built=[], scored=[], timed=[]))
        rec["timing"] = rec["timing"] or timing
        if name and name not in rec[what]:
            rec[what].append(name)


class RayBackend:
    """Rows on a Ray cluster: builds and scores as tasks anywhere, timings in one actor on the timing node."""

    name = "ray"

    def __init__(self, address: str | None = None, timing_resource: str = DEFAULT_RESOURCE) -> None:
        ray = _ray()
        self.ray, self.address, self.resource = ray, address, timing_resource
        self._connect()
        offered = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(timing_resource)]
        if not offered:
            raise InputError(f"no node of the Ray cluster at {self.address} offers the timing resource "
                             f"{timing_resource!r}; start one with ray start ... --resources "
                             f"'{{\"{timing_resource}\": 1}}' (or name another with --timing-resource)")
        self._timer_actor: Any = None
        self.track = _Track()
        self.noise = 0.0  # the run's null-control floor (`pareto.null_noise`), set by `null_control`
        self.build_task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_build).options(num_returns=2)
        self.score_task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_score).options(num_returns=2)

    def _connect(self) -> None:
        import actiba

        ray = self.ray
        env = {"py_modules": [str(Path(actiba.__file__).parent)]}
        if ray.is_initialized():  # one connection per process (the tests reuse theirs)
            self.address = self.address or ray.get_runtime_context().gcs_address
            return
        try:
            if self.address is None:  # a one-node cluster of this machine, offering the timing resource
                ray.init(resources={self.resource: 1}, include_dashboard=False, runtime_env=env,
                         log_to_driver=False, logging_level=logging.WARNING)
                self.address = ray.get_runtime_context().gcs_address
            else:
                _check_reachable(self.address)
                ray.init(address=self.address, runtime_env=env, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, TimeoutError, ValueError) as exc:
            raise InputError(f"--address {self.address}: cannot connect to a Ray cluster ({exc})") from None

    def _timer(self) -> Any:
        """The timing actor, holding the whole timing resource: a second sweep waits for the node rather
        than timing beside this one (after TIMER_WAIT seconds it gives up, with one line)."""
        if self._timer_actor is None:
            cls = self.ray.remote(Timer)
            actor = cls.options(num_cpus=0, resources={self.resource: 1}, max_restarts=1,
                                max_task_retries=1).remote()
            ready, _ = self.ray.wait([info := actor.info.remote()], timeout=TIMER_WAIT)
            if not ready:
                self.ray.kill(actor)
                raise InputError(f"the timing node ({self.resource!r}) stayed busy for {TIMER_WAIT:g} s: another "
                                 "sweep holds it; wait for it, or give another node the resource")
            self._timer_actor, self.timer_node = actor, self.ray.get(info)
        return self._timer_actor

    def close(self) -> None:
        """Release the timing node (the actor); the connection stays for the process."""
        if self._timer_actor is not None:
            self.ray.kill(self._timer_actor)
            self._timer_actor = None

    def _spec(self, job: RunJob) -> Spec:
        return Spec(job.lm.name, tuple(job.configs), job.settings, job.precision, str(job.cache), str(job.row_dir))

    def null_control(self, job: RunJob) -> dict[str, Any] | None:
        """Starts a run: the null control on the timing node (and a fresh record of where work went)."""
        from .pareto import null_noise

        self.track = _Track()
        timer = self._timer()
        self.track.add(self.timer_node, "timed", "", timing=True)
        try:
            null = self.ray.get(timer.null_control.remote(self._spec(job)))
        except Exception as exc:  # the actor died even after its restart: the floor is an extra, as locally
            from .row import error_text

            null = {"error": error_text(_cause(exc))}
        self.noise = null_noise(null)
        return null

    def measure(self, job: RunJob, todo: list[int], cached: dict[int, Row],
                done: Callable[[int, Row], None]) -> None:
        """Builds for every row at once; each build, in the driver's order, is then deduplicated by graph
        hash (as the local sweep does), scored as a task (or its score reused) and timed on the actor."""
        from .measure import error_row, reuse_measurement

        ray, spec, timer = self.ray, self._spec(job), self._timer()
        noise = self.noise
        data_ref = ray.put(job.data)
        by_sha: dict[str, Row | int] = {}
        for row in cached.values():
            if row.graph_sha and not row.same_graph_as:
                by_sha.setdefault(row.graph_sha, row)
        waiting: dict[Any, tuple[str, int, Any]] = {}  # ref -> (phase, row index, node ref)
        builds: dict[int, Any] = {}
        order = [i for i in todo if not job.configs[i].measure_sites]
        for i in todo:
            if job.configs[i].measure_sites:
                waiting[timer.evaluate.remote(spec, i, noise, data_ref)] = ("row", i, None)
            else:
                builds[i] = self.build_task.remote(spec, i)
                waiting[builds[i][0]] = ("build", i, builds[i][1])
        built_ok: dict[int, Any] = {}  # finished builds not yet handled (they are handled in `order`)
        dups: dict[int, list[tuple[int, Any]]] = {}  # source row index -> rows repeating its graph
        job.begin(f"{len(todo)} rows on the Ray cluster")

        def finish(i: int, row: Row) -> None:
            done(i, row)
            for j, built in dups.pop(i, []):
                if row.error:  # the source failed: measure the repeat itself
                    submit(j, built)
                else:
                    take(j, built, row)

        def take(j: int, built: Any, src: Row) -> None:
            reuse_measurement(built.row, src)
            built.row.metric_graph_sha = None  # as a local repeat says it: not scored, so no scoring graph
            built.row.seconds = {"total": (built.row.seconds or {}).get("build", 0.0)}
            waiting[timer.decode_only.remote(spec, built.row, built.config, noise)] = ("row", j, None)

        def submit(i: int, built: Any) -> None:
            """Score and time; graphs go by reference, not again."""
            if not job.settings.latency_only:
                if job.data is None:
                    finish(i, error_row(job.configs[i], InputError("no evaluation data")))
                    return
                ref, node_ref = self.score_task.remote(spec, builds[i][0], data_ref)
                waiting[ref] = ("score", i, node_ref)
                return
            waiting[timer.time.remote(spec, builds[i][0], noise)] = ("row", i, None)

        def handle_builds() -> None:
            while order and order[0] in built_ok:
                i = order.pop(0)
                built = built_ok.pop(i)
                if isinstance(built, BaseException):
                    finish(i, error_row(job.configs[i], _cause(built)))
                    continue
                src = by_sha.get(built.row.graph_sha)
                if src is None:
                    by_sha[built.row.graph_sha] = i
                    submit(i, built)
                elif isinstance(src, int):
                    dups.setdefault(src, []).append((i, built))
                else:
                    take(i, built, src)

        try:
            while waiting:
                ready, _ = ray.wait(list(waiting), num_returns=1, timeout=1.0)
                for ref in ready:
                    phase, i, node_ref = waiting.pop(ref)
                    name = job.configs[i].name
                    try:
                        value = ray.get(ref)
                    except Exception as exc:  # the task failed (its own error, or its worker kept dying)
                        if node_ref is not None:  # failed with it: read it, so Ray does not log it as unhandled
                            try:
                                ray.get(node_ref)
                            except Exception:
                                pass
                        if phase == "build":
                            built_ok[i] = exc
                            handle_builds()
                        else:
                            finish(i, error_row(job.configs[i], _cause(exc)))
                        continue
                    if node_ref is not None:
                        self.track.add(ray.get(node_ref), "built" if phase == "build" else "scored", name)
                    if phase == "build":
                        built_ok[i] = value
                        handle_builds()
                    elif phase == "score":
                        waiting[timer.time.remote(spec, ref, noise)] = ("row", i, None)
                    else:
                        self.track.add(self.timer_node, "timed", name, timing=True)
                        if value.ok and value.graph_sha and by_sha.get(value.graph_sha) == i:
                            by_sha[value.graph_sha] = value
                        finish(i, value)
        except BaseException:  # Ctrl-C (or a driver failure): stop the cluster's work for this run
            for ref in waiting:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # actor tasks cannot be force-cancelled: the actor is killed below
                    ray.cancel(ref)
            ray.kill(timer)
            self._timer_actor = None
            raise

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "timing_resource": self.resource,
                "nodes": list(self.track.nodes.values())}
