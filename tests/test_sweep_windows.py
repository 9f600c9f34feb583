"""A row keeps its per-window scores: they sum to its bits/byte and give the paired interval against the baseline."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from actiba.evaluate.build import load_model
    from actiba.evaluate.configs import Config
    from actiba.evaluate.row import run_as_json
    from actiba.evaluate.sweep import Settings, run_one

    lm = load_model("random:tiny-mamba2")
    configs = [Config("baseline"), Config("softplus-relu", activations={"softplus": {"table": "relu"}})]
    data = bytes(range(32, 127)) * 4  # 380 bytes: 11 windows of 32
    s = Settings(seq_len=32, eval_bytes=len(data), warmup=1, repeats=4, min_repeats=3, rel_tol=0.5,
                 decode=False)
    return run_as_json(run_one(lm, configs, s, "f32", tmp_path_factory.mktemp("a"), data=data))


def test_per_window_scores_sum_to_the_metric(run):
    first = run
    for r in first["configs"]:
        assert len(r["metric_windows"]) == 11
        assert r["metric"] == pytest.approx(math.fsum(r["metric_windows"]) / math.log(2) / (11 * 32), rel=1e-12)
        assert r["metric_precision"] == "f32" and r["metric_halfwidth"] > 0
    relu = first["configs"][1]
    assert relu["metric_delta_halfwidth_rel"] is not None and relu["metric_delta_halfwidth_rel"] > 0

