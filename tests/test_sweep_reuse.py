"""A sweep scores every distinct graph once: a later precision's run times it and reuses the score."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from actiba.evaluate.build import load_model
    from actiba.evaluate.configs import Config
    from actiba.evaluate.row import run_as_json
    from actiba.evaluate.sweep import Settings, run_one

    lm = load_model("random:tiny-mamba2")
    configs = [Config("baseline"), Config("softplus-relu", activations={"softplus": {"table": "relu"}})]
    data = bytes(range(32, 127)) * 4  # 380 bytes: 11 windows of 32
    s = Settings(seq_len=32, eval_bytes=len(data), warmup=1, repeats=4, min_repeats=3, rel_tol=0.5,
                 decode=False)
    first = run_one(lm, configs, s, "f32", tmp_path_factory.mktemp("a"), data=data)
    scored = {r.scoring_sha: r for r in first["configs"]}
    lines = []

    class Spy:
        def begin(self, what):
            pass

        def step(self, what):
            lines.append(what)

        def advance(self, text="", n=1):
            pass

    # same precision name here (this CPU may have no bf16); what matters is that nothing is scored again
    second = run_one(lm, configs, s, "f32", tmp_path_factory.mktemp("b"), data=data, accuracy_from=scored,
                     progress=Spy())
    return run_as_json(first), run_as_json(second), lines


def test_per_window_scores_sum_to_the_metric(two_runs):
    first, _, _ = two_runs
    for r in first["configs"]:
        assert len(r["metric_windows"]) == 11
        assert r["metric"] == pytest.approx(math.fsum(r["metric_windows"]) / math.log(2) / (11 * 32), rel=1e-12)
        assert r["metric_precision"] == "f32" and r["metric_halfwidth"] > 0
    relu = first["configs"][1]
    assert relu["metric_delta_halfwidth_rel"] is not None and relu["metric_delta_halfwidth_rel"] > 0


def test_a_later_run_reuses_scores_and_still_times(two_runs):
    first, second, steps = two_runs
    for a, b in zip(first["configs"], second["configs"], strict=True):
        assert b["metric"] == a["metric"] and b["metric_reused_from"] == "f32"
        if a["name"] != "baseline":
            assert b["latency_ratio"]["pairs"] >= 3  # timed again
    assert "timing" in steps and "accuracy" in steps
