"""`actiba pareto --backend ray`: the same bits/byte as the local backend, timing on the declared node only,
resume from the row cache, a worker dying mid-row, Ctrl-C, and the one-line errors.

The tests start their own two-node cluster on this machine (a head offering the timing resource and a
worker without it, loopback address, one CPU each) once per module and stop it by process id afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("openvino")
pytest.importorskip("torch")

RAY_BIN = Path(sys.executable).parent / "ray"
RESOURCE = "actiba_timing"


def _main(argv, capsys):
    from actiba.cli import main

    rc = main(argv)
    err = capsys.readouterr().err
    return rc, "".join(line + "\n" for line in err.splitlines() if line.startswith("actiba:"))


def test_ray_backend_without_ray_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    rc, err = _main(["pareto", "embedded:mamba2", "--quick", "--backend", "ray", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "actiba[ray]" in err
    assert not (tmp_path / "o").exists()  # nothing written


def test_address_needs_the_ray_backend(tmp_path, capsys):
    rc, err = _main(["pareto", "--quick", "--address", "127.0.0.1:1", "--out", str(tmp_path)], capsys)
    assert rc == 2 and "--backend ray" in err


def test_unreachable_address_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    rc, err = _main(["pareto", "embedded:mamba2", "--quick", "--backend", "ray", "--address", f"127.0.0.1:{port}",
                     "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "no Ray cluster reachable" in err
    assert time.monotonic() - t0 < 30 and not (tmp_path / "o").exists()


# --- a local two-node cluster ----------------------------------------------------------------------------

def _pids_of(tag: str) -> set[int]:
    """Processes whose command line names `tag` (the cluster's own temp folder), with their descendants."""
    procs = {}
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(p)] = (cmd, ppid)
    mine = {p for p, (cmd, _) in procs.items() if tag in cmd}
    grown = True
    while grown:
        grown = False
        for p, (_, ppid) in procs.items():
            if ppid in mine and p not in mine:
                mine.add(p)
                grown = True
    return mine


def _stop(tag: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in _pids_of(tag):
            try:
                os.kill(p, sig)
            except OSError:
                pass
        time.sleep(1.0)


class _Cluster:
    """A head (timing resource) started in the background, so the local reference run overlaps its start-up;
    `address` waits for it and then joins the worker node (no timing resource)."""

    def __init__(self, tmp: str, env: dict, common: list[str]) -> None:
        self.tmp, self.env, self.common, self._address = tmp, env, common, None
        self.crash = Path(tmp) / "crash"
        self.head = subprocess.Popen([str(RAY_BIN), "start", "--head", "--port", "0", "--temp-dir", tmp,
                                      "--include-dashboard", "false", "--object-store-memory", "200000000",
                                      "--resources", json.dumps({RESOURCE: 1}), *common],
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @property
    def address(self) -> str:
        if self._address is None:
            text, _ = self.head.communicate(timeout=120)
            port = re.search(r"--address='[^':]+:(\d+)'", text)
            assert self.head.returncode == 0 and port, text
            address = f"127.0.0.1:{port.group(1)}"
            out = subprocess.run([str(RAY_BIN), "start", "--address", address, "--object-store-memory",
                                  "200000000", *self.common], env=self.env, capture_output=True, text=True,
                                 timeout=120)
            assert out.returncode == 0, out.stdout + out.stderr
            self._address = address
        return self._address


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    if not RAY_BIN.exists():
        pytest.skip("no ray command next to this python")
    tmp = tempfile.mkdtemp(prefix="actiba-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    (Path(tmp) / "crash").mkdir()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", ACTIBA_RAY_CRASH_DIR=str(Path(tmp) / "crash"))
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    c = _Cluster(tmp, env, common)
    try:
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if c.head.poll() is None:
            c.head.wait(timeout=120)
        _stop(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


def _settings():
    from actiba.evaluate.sweep import Settings

    return Settings(seq_len=32, eval_bytes=256, warmup=1, repeats=3, min_repeats=3, rel_tol=0.5, decode=False)


CONFIGS = (("baseline", {}), ("softplus-relu", {"activations": {"softplus": {"table": "relu"}}}),
           ("softplus-relu-again", {"activations": {"softplus": {"table": "relu"}}}))  # the same graph


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local backend's run: the reference every cluster run must reproduce."""
    from actiba.evaluate.build import load_model
    from actiba.evaluate.configs import Config
    from actiba.evaluate.sweep import run_one

    lm = load_model("embedded:mamba2")
    configs = [Config(n, **kw) for n, kw in CONFIGS]
    out = tmp_path_factory.mktemp("local")
    return lm, configs, out, run_one(lm, configs, _settings(), "f32", out)


def _fresh(local, tmp_path) -> Path:
    """An output folder without rows but with the local run's exports and null control (inputs and a
    timing floor, not what is compared), so workers neither export the model nor time the null control."""
    shutil.copytree(local[2] / "cache" / "onnx", tmp_path / "cache" / "onnx")
    for memo in (local[2] / "cache" / "rows").rglob("null-control-*.json"):
        to = tmp_path / memo.relative_to(local[2])
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(memo, to)
    return tmp_path


def _ray_run(cluster, local, out, progress=None):
    from actiba.evaluate.ray_backend import RayBackend
    from actiba.evaluate.sweep import run_one

    lm, configs, _, _ = local
    backend = RayBackend(cluster.address, RESOURCE)
    try:
        return backend, run_one(lm, configs, _settings(), "f32", out, progress=progress, backend=backend)
    finally:
        backend.close()  # the timing node is free for the next test's backend


def _row_files(out: Path, name: str) -> list[Path]:
    """The cached row files of configuration `name` (NAME-CONFIGKEY-SETTINGSKEY.json)."""
    return [p for p in (out / "cache" / "rows").rglob("*.json")
            if re.fullmatch(re.escape(name) + r"-[0-9a-f]{16}-[0-9a-f]{12}\.json", p.name)]


def _timing_node(run) -> dict:
    (node,) = [n for n in run["backend"]["nodes"] if n["timing"]]
    return node


def test_ray_gives_the_local_bits_per_byte_and_times_on_the_declared_node(cluster, local, tmp_path):
    _, configs, _, want = local
    _, got = _ray_run(cluster, local, _fresh(local, tmp_path))
    assert [r.name for r in got["configs"]] == [c.name for c in configs]
    for a, b in zip(want["configs"], got["configs"], strict=True):
        assert a.error is None and b.error is None
        assert b.metric == a.metric and b.metric_windows == a.metric_windows  # bit for bit
        assert b.graph_sha == a.graph_sha and b.metric_graph_sha == a.metric_graph_sha
    again = got["configs"][2]
    assert again.same_graph_as == "softplus-relu" and again.latency_ratio == got["configs"][1].latency_ratio
    timing = _timing_node(got)
    assert sorted(timing["timed"]) == sorted(c.name for c in configs)
    assert {r.timed_on for r in got["configs"]} == {f"{timing['host']} ({timing['node_id'][:8]})"}
    assert all(not n["timed"] for n in got["backend"]["nodes"] if not n["timing"])
    assert got["backend"]["address"] == cluster.address and timing["cpu"]
    assert all(r.speedup is not None for r in got["configs"])


@pytest.mark.slow
def test_resume_from_the_cache_measures_only_what_is_missing(cluster, local, tmp_path):
    _, configs, out, want = local
    _, resumed = _ray_run(cluster, local, out)  # the local run's folder: every row is cached
    assert resumed["resumed"] == len(configs)
    assert not any(n["built"] or n["scored"] for n in resumed["backend"]["nodes"])
    (victim,) = _row_files(out, "softplus-relu")
    victim.unlink()
    _, again = _ray_run(cluster, local, out)
    assert again["resumed"] == len(configs) - 1
    assert [n for b in again["backend"]["nodes"] for n in b["built"]] == ["softplus-relu"]
    assert again["configs"][1].metric == want["configs"][1].metric and victim.is_file()


@pytest.mark.slow
def test_a_worker_dying_mid_row_is_retried(cluster, local, tmp_path):
    _, _, _, want = local
    flag = cluster.crash / "crash-once-softplus-relu"
    flag.touch()
    _, got = _ray_run(cluster, local, _fresh(local, tmp_path))
    assert not flag.exists()  # the worker building the row died ...
    row = got["configs"][1]
    assert row.error is None and row.metric == want["configs"][1].metric  # ... and the row was measured anyway


@pytest.mark.slow
def test_a_worker_that_keeps_dying_is_a_failed_row_not_a_lost_one(cluster, local, tmp_path):
    out = _fresh(local, tmp_path)
    flag = cluster.crash / "crash-always-softplus-relu"
    flag.touch()
    try:
        _, got = _ray_run(cluster, local, out)
    finally:
        flag.unlink()
    failed = got["configs"][1]
    assert failed.error and "softplus-relu" == failed.name and failed.pareto is False
    assert got["configs"][0].error is None
    assert not _row_files(out, "softplus-relu")  # a failed row is not cached ...
    assert got["configs"][2].error is None and _row_files(out, "softplus-relu-again")  # its repeat is measured
    _, again = _ray_run(cluster, local, out)
    assert again["configs"][1].error is None and again["configs"][1].metric == local[3]["configs"][1].metric


@pytest.mark.slow
def test_ctrl_c_cancels_the_cluster_work_and_leaves_a_consistent_cache(cluster, local, tmp_path):
    out = _fresh(local, tmp_path)

    class CtrlC:
        def begin(self, what):
            pass

        def step(self, what):
            pass

        def advance(self, text="", n=1):
            raise KeyboardInterrupt  # the user, as the first row arrives

    with pytest.raises(KeyboardInterrupt):
        _ray_run(cluster, local, out, progress=CtrlC())
    rows = list((out / "cache" / "rows").rglob("*-*-*.json"))
    assert len([p for p in rows if not p.name.startswith("null-control")]) == 1
    for p in rows:
        json.loads(p.read_text())  # every file in the cache is whole
    _, again = _ray_run(cluster, local, out)
    assert again["resumed"] == 1 and all(r.error is None for r in again["configs"])
    assert [r.metric for r in again["configs"]] == [r.metric for r in local[3]["configs"]]


@pytest.mark.slow
def test_cli_quick_on_both_backends_gives_the_same_bits_per_byte(cluster, tmp_path, capsys):
    from actiba.cli import main

    base = ["pareto", "embedded:mamba2", "--quick", "--precision", "f32", "--no-decode", "--emulate", "none"]
    assert main([*base, "--out", str(tmp_path / "l")]) == 0
    assert main([*base, "--backend", "ray", "--address", cluster.address, "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("l", "r"))
    assert [r["metric"] for r in a["configs"]] == [r["metric"] for r in b["configs"]]
    assert a["backend"] == {"name": "local"} and b["backend"]["name"] == "ray"
    assert "Backend: ray at" in (tmp_path / "r" / "report.html").read_text()
