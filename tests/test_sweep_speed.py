"""What keeps `actiba pareto` short without changing what it measures: adaptive paired timing, reuse of
byte-identical graphs, fewer accuracy windows for slow graphs; decode rows; labels that do not overlap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actiba.evaluate import latency

# --- the stopping rule --------------------------------------------------------------------------------


def test_ratio_halfwidth_matches_the_sampling_spread_of_the_median():
    """Over many simulated runs, the true ratio lies inside median·(1 ± halfwidth) about 95 % of the time."""
    rng = np.random.default_rng(0)
    hits, n_runs = 0, 2000
    for _ in range(n_runs):
        r = np.exp(rng.normal(np.log(1.3), 0.05, size=15))
        med, hw = float(np.median(r)), latency.ratio_halfwidth(r)
        hits += med / (1 + hw) <= 1.3 <= med * (1 + hw)
    assert 0.90 <= hits / n_runs <= 0.99


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.2, 5.0), min_size=3, max_size=30), st.floats(0.1, 10.0))
def test_ratio_halfwidth_is_scale_free_and_zero_for_constant(ratios, c):
    hw = latency.ratio_halfwidth(ratios)
    assert hw >= 0
    assert latency.ratio_halfwidth(np.multiply(ratios, c)) == pytest.approx(hw, rel=1e-9, abs=1e-12)
    assert latency.ratio_halfwidth([ratios[0]] * len(ratios)) == 0.0
    assert latency.ratio_halfwidth(ratios[:2]) == float("inf")


@pytest.fixture(scope="module")
def tiny_compiled():
    ov = pytest.importorskip("openvino")
    p = ov.opset13.parameter([1, 64], ov.Type.f32)
    model = ov.Model([ov.opset13.relu(p)], [p])
    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def test_adaptive_timing_stops_early_only_when_asked(tiny_compiled):
    feed = np.zeros((1, 64), np.float32)
    fixed = latency.time_paired_adaptive(tiny_compiled, tiny_compiled, feed, warmup=1, repeats=30)
    assert fixed.a.repeats == fixed.b.repeats == 30 and not fixed.stopped_early
    loose = latency.time_paired_adaptive(tiny_compiled, tiny_compiled, feed, warmup=1, repeats=30,
                                         min_repeats=5, rel_tol=10.0)  # any spread is tight enough
    assert loose.a.repeats == 5 and loose.stopped_early
    strict = latency.time_paired_adaptive(tiny_compiled, tiny_compiled, feed, warmup=1, repeats=8,
                                          min_repeats=5, rel_tol=0.0)  # never tight enough
    assert strict.a.repeats == 8 and not strict.stopped_early
    capped = latency.time_paired_adaptive(tiny_compiled, tiny_compiled, feed, warmup=1, repeats=30,
                                          min_repeats=4, rel_tol=0.0, max_seconds=0.0)  # out of time at once
    assert capped.a.repeats == 4 and capped.stopped_early


# --- a sweep on a tiny model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from actiba.evaluate.build import load_model
    from actiba.evaluate.configs import Config
    from actiba.evaluate.sweep import Settings, run_one

    out = tmp_path_factory.mktemp("speed")
    lm = load_model("random:tiny-mamba2")
    configs = [Config("baseline"), Config("reduba", reduba=True),
               Config("reduba-all-sites", reduba=True, sites={"reduba": ["*"]}),  # the same graph
               Config("softplus-relu", activations={"softplus": {"table": "relu"}})]
    data = bytes(range(32, 127)) * 8  # 760 bytes: 23 windows of 32
    s = Settings(seq_len=32, eval_bytes=len(data), warmup=1, repeats=6, min_repeats=3, rel_tol=0.05,
                 accuracy_seconds=1e-6, min_eval_windows=4, decode=True, decode_repeats=20, emulate=["bf16"])
    result = run_one(lm, configs, s, "f32", out, data=data)
    return lm, configs, s, out, data, result


def _rows(run: dict) -> dict:
    """The run's rows as results.json gives them (the cache's JSON, per-window data included), by name."""
    return {r.name: r.to_dict() for r in run["configs"]}


def test_fewer_windows_for_a_slow_graph_and_the_same_bytes_on_resume(run):
    from actiba.evaluate.sweep import run_one

    lm, configs, s, out, data, result = run
    assert result["settings"]["eval_bytes_scored"] == 4 * 32  # the floor: the budget allows < 1 window
    assert "4 of 23 windows" in result["settings"]["eval_bytes_reason"]
    again = run_one(lm, configs, s, "f32", out, data=data)
    assert again["resumed"] == 4 and again["settings"]["eval_bytes_scored"] == 4 * 32


def test_scored_prefix_is_what_the_metric_says(run):
    """The baseline metric equals bits/byte of the first 4 windows scored independently with torch."""
    import math

    import torch

    lm, _, _, _, data, result = run
    nats = 0.0
    with torch.inference_mode():
        for i in range(4):
            window = data[32 * i:32 * (i + 1)]
            ids = torch.tensor([[256, *window[:-1]]])
            logp = torch.log_softmax(lm.model(input_ids=ids, use_cache=False).logits[0].float(), -1)
            nats -= logp.gather(-1, torch.tensor(list(window))[:, None]).sum().item()
    assert result["configs"][0].metric == pytest.approx(nats / math.log(2) / 128, rel=1e-4)


def test_identical_graph_reuses_the_measurement(run):
    rows = _rows(run[-1])
    a, b = rows["reduba"], rows["reduba-all-sites"]
    assert a["error"] is None and b["error"] is None
    assert b["same_graph_as"] == "reduba" and b["graph_sha"] == a["graph_sha"]
    assert b["latency_ms"] == a["latency_ms"] and b["metric"] == a["metric"] and b["speedup"] == a["speedup"]
    assert "same_graph_as" not in a and rows["softplus-relu"]["graph_sha"] != a["graph_sha"]


def test_null_control_is_measured_remembered_and_reported(run, tmp_path):
    """Every run times the baseline against itself compiled again; the floor it gives is kept on resume."""
    import json

    from actiba.evaluate.pareto import null_noise
    from actiba.evaluate.report import write_report
    from actiba.evaluate.sweep import run_one

    lm, configs, s, out, data, result = run
    null = result["null_control"]
    assert "error" not in null and null["pairs"] >= 3
    # the same graph: the ratio is near 1 on any machine that times at all consistently
    assert 0.5 < null["speedup"] < 2.0 and null["noise"] == pytest.approx(null_noise(null))
    assert null["noise"] >= abs(null["speedup"] - 1.0)
    again = run_one(lm, configs, s, "f32", out, data=data)
    assert again["null_control"] == null  # remembered, not timed again
    write_report(tmp_path, [result], {"max_loss": 0.01})
    html = (tmp_path / "report.html").read_text()
    assert "compiled a second time" in html and f"{null['speedup']:.3f}" in html
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["runs"][0]["null_control"]["speedup"] == pytest.approx(null["speedup"])


def test_front_is_scored_at_emulated_bf16(run):
    """The baseline and the Pareto rows get a bf16-emulated metric of their own all-positions graph on the
    scored prefix; the delta is against the f32 baseline; other rows get none; a resume reuses it."""
    from actiba.evaluate.build import rewritten_onnx
    from actiba.evaluate.emulate import bits_per_byte_onnx, emulate_precision
    from actiba.evaluate.front import EMULATED_FRONT
    from actiba.evaluate.sweep import run_one

    lm, configs, s, out, data, result = run
    rows = _rows(result)
    base = rows["baseline"]
    scored = data[:result["settings"]["eval_bytes_scored"]]
    with_emulation = [n for n, r in rows.items() if "metric_emulated" in r]
    assert "baseline" in with_emulation
    front = sorted((r for r in rows.values() if r.get("pareto") and r["name"] != "baseline"),
                   key=lambda r: -r["speedup"])
    graphs = list(dict.fromkeys(r.get("metric_graph_sha") or r["graph_sha"] for r in front))[:EMULATED_FRONT]
    want_rows = {r["name"] for r in front if (r.get("metric_graph_sha") or r["graph_sha"]) in graphs}
    assert set(with_emulation) == want_rows | {"baseline"}
    for name in with_emulation:
        config = next(c for c in configs if c.name == name)
        graph, _ = rewritten_onnx(lm, config, s.seq_len, "f32", None, "all")
        want = bits_per_byte_onnx(emulate_precision(graph, "bf16"), scored, s.seq_len)
        got = rows[name]["metric_emulated"]["bf16"]
        assert got == pytest.approx(want, rel=1e-9)
        assert rows[name]["metric_emulated_delta_rel"]["bf16"] == pytest.approx((got - base["metric"]) / base["metric"])
    memos = sorted((out / "cache").rglob("emulated-bf16-*.json"))
    assert memos
    again = run_one(lm, configs, s, "f32", out, data=data)
    assert {r.name: r.metric_emulated for r in again["configs"]} == \
        {n: r.get("metric_emulated") for n, r in rows.items()}
    assert sorted((out / "cache").rglob("emulated-bf16-*.json")) == memos


def test_emulation_targets_are_the_fastest_distinct_front_graphs():
    from actiba.evaluate.front import EMULATED_FRONT, emulation_targets
    from actiba.evaluate.row import Row

    base = {"name": "baseline", "metric": 1.0, "speedup": 1.0, "graph_sha": "b", "pareto": False}
    rows = [base] + [{"name": f"r{i}", "metric": 1.0, "speedup": 1.0 + i, "graph_sha": f"g{i}", "pareto": True}
                     for i in range(EMULATED_FRONT + 2)]
    rows.append({"name": "twin", "metric": 1.0, "speedup": 1.0 + EMULATED_FRONT + 1,
                 "graph_sha": f"g{EMULATED_FRONT + 1}", "pareto": True})
    rows.append({"name": "off-front", "metric": 1.0, "speedup": 99.0, "graph_sha": "x", "pareto": False})
    rows.append({"name": "failed", "metric": None, "speedup": None, "graph_sha": "y", "pareto": True,
                 "error": "boom"})
    rows = [Row.from_dict(r) for r in rows]
    got = [r.name for r in emulation_targets(rows, rows[0])]
    fastest = [f"r{i}" for i in range(EMULATED_FRONT + 1, 1, -1)]
    assert got[0] == "baseline" and set(got[1:]) == set(fastest) | {"twin"}


def test_decode_rows(run):
    rows = _rows(run[-1])
    base, red, relu = rows["baseline"], rows["reduba"], rows["softplus-relu"]
    assert base["decode_latency_ms"]["median"] > 0 and base["decode_speedup"] == 1.0
    # a prefill-only rewrite leaves the decode step as it is: the baseline's graph and number
    assert red["decode_latency_ms"] == base["decode_latency_ms"] and red["decode_speedup"] == 1.0
    assert "prefill rewrites do not apply" in red["decode_note"]
    # a table changes the step: its own graph, timed next to the baseline step
    assert relu["decode_sites_rewritten"] == 1 and relu["decode_graph_sha"] != base["decode_graph_sha"]
    assert relu["decode_speedup"] == pytest.approx(1.0 / relu["decode_latency_ratio"]["median"])
    assert relu["decode_latency_ratio"]["pairs"] <= 20


def test_report_shows_decode_and_reuse(run, tmp_path):
    from actiba.evaluate.report import write_report

    result = run[-1]
    result["choice_name"] = "reduba"
    write_report(tmp_path, [result])
    html = (tmp_path / "report.html").read_text()
    assert "decode speed-up" in html and "graph identical to reduba" in html and "4 of 23 windows" in html
    doc = json.loads((tmp_path / "results.json").read_text())
    assert all("decode_speedup" in r for r in doc["configs"])


# --- labels -------------------------------------------------------------------------------------------

def test_plot_labels_do_not_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from actiba.evaluate.report_plot import place_labels

    rng = np.random.default_rng(1)
    pts = [(1.0 + 0.01 * rng.random(), 0.01 * rng.random(), f"configuration-{i}") for i in range(12)]
    pts += [(1.5, 0.0, "ssd-d1+d2"), (1.51, 0.001, "ssd-d1+d2+act")]
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    ax.set_xlim(0.8, 1.8)
    ax.set_ylim(-0.5, 1.0)
    texts = place_labels(ax, pts)
    fig.canvas.draw()
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(t) for t in texts]  # the label itself, without its leader line
    assert len(boxes) == len(pts)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    plt.close(fig)


@pytest.mark.parametrize("argv", [["--seq-len", "1"], ["--seq-len", "abc"], ["--rel-tol", "-1"],
                                  ["--accuracy-seconds", "nan"]])
def test_cli_rejects_bad_timing_options(argv, tmp_path, capsys):
    from actiba.cli import main

    try:
        rc = main(["pareto", "--out", str(tmp_path), *argv])
    except SystemExit as exc:  # argparse's own type errors
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


def test_cli_several_lengths():
    from actiba.cli.pareto_cmd import _lengths

    assert _lengths("256,1024") == [256, 1024] and _lengths("64") == [64]
