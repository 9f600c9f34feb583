"""Every run scores its own graphs at its own precision: a bf16 run's bits/byte come from OpenVINO running
bf16 natively (on a CPU that offers it), never from the f32 run; the report says which precisions were
measured natively and which emulated, and what the precision itself costs against f32."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("openvino")


@pytest.mark.parametrize("text, native, want", [
    ("auto", ["f32"], ["bf16"]),            # an f32-only CPU: bf16 can only be emulated
    ("auto", ["f32", "bf16"], []),          # measured natively: emulating it would repeat it
    ("auto", ["bf16"], []),
    ("bf16", ["f32", "bf16"], ["bf16"]),    # asked for: both, to compare them
    ("none", ["f32"], []),
])
def test_emulate_auto_follows_the_native_precisions(text, native, want):
    from actiba.cli.pareto_cmd import _emulate

    assert _emulate(text, native) == want


def _run(precision, metric, windows, model="m", seq_len=32):
    from actiba.evaluate.row import Row

    return {"model": model, "precision": precision, "settings": {"seq_len": seq_len},
            "baseline": Row("baseline", metric=metric, metric_windows=windows)}


def test_precision_cost_is_paired_against_the_f32_baseline():
    from actiba.cli.pareto_cmd import _precision_cost
    from actiba.evaluate.accuracy import paired_halfwidth

    rng = np.random.default_rng(0)
    w32 = list(rng.uniform(50, 60, 16))
    w16 = [x + d for x, d in zip(w32, rng.normal(0.05, 0.01, 16), strict=True)]
    f32, bf16 = _run("f32", 2.0, w32), _run("bf16", 2.01, w16)
    _precision_cost(f32, [])
    assert "baseline_vs_f32" not in f32
    _precision_cost(bf16, [f32])
    cost = bf16["baseline_vs_f32"]
    assert cost["delta_rel"] == pytest.approx(0.005)
    assert cost["halfwidth_rel"] == paired_halfwidth(w16, w32) and cost["f32_metric"] == 2.0
    other = _run("bf16", 2.01, w16, model="other")  # another model's f32 run is not a reference
    _precision_cost(other, [f32])
    assert "baseline_vs_f32" not in other


def test_report_words_name_native_and_emulated_precisions():
    from actiba.evaluate.report_text import precision_cost_words, precisions_words

    text = precisions_words({"precisions": {"native": ["f32", "bf16"], "emulated": [], "device": "CPU"}})
    assert "natively (OpenVINO on CPU" in text and "f32, bf16" in text and "Emulated" in text and "none" in text
    run = {"precision": "bf16", "baseline_vs_f32": {"delta_rel": 0.00083, "halfwidth_rel": 0.0002,
                                                    "f32_metric": 2.3331}}
    assert "+0.083% ±0.020%" in precision_cost_words(run) and precision_cost_words({"precision": "f32"}) == ""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(the tiny random Mamba-2, a sweep folder whose export cache both tests share)."""
    from actiba.evaluate.build import load_model

    return load_model("random:tiny-mamba2"), tmp_path_factory.mktemp("sweep")


def _bf16_cpu() -> bool:
    from actiba.evaluate import latency

    return "bf16" in latency.supported_precisions("CPU")


@pytest.mark.skipif(not _bf16_cpu(), reason="this CPU's OpenVINO offers no bf16 (OPTIMIZATION_CAPABILITIES)")
def test_bf16_run_scores_natively(tiny):
    """On a bf16 CPU: the bf16 run's baseline bits/byte is what OpenVINO computes with the bf16 hint set
    directly on the same graph (independent of actiba's compile and scoring helpers), not the f32 figure."""
    import openvino as ov

    from actiba.evaluate.build import rewritten_onnx, to_openvino
    from actiba.evaluate.configs import Config
    from actiba.evaluate.sweep import Settings, run_one

    lm, out = tiny
    data = bytes(range(32, 127)) * 4  # 11 windows of 32
    s = Settings(seq_len=32, eval_bytes=len(data), warmup=1, repeats=4, min_repeats=3, rel_tol=0.5, decode=False)
    b16 = run_one(lm, [Config("baseline")], s, "bf16", out, data=data)["baseline"]
    assert b16.metric_precision == "bf16" and b16.compile["precision_used"] == "bf16"
    assert b16.metric_reused_from is None
    graph, _ = rewritten_onnx(lm, Config("baseline"), 32, "bf16", out / "cache", "all")

    def bits_per_byte(precision):
        compiled = ov.Core().compile_model(to_openvino(graph), "CPU", {"INFERENCE_PRECISION_HINT": precision})
        req = compiled.create_infer_request()
        nats = 0.0
        for w in range(len(data) // 32):
            target = np.frombuffer(data[w * 32:(w + 1) * 32], np.uint8)
            ids = np.concatenate([[256], target[:-1]]).astype(np.int64)
            logits = np.asarray(req.infer({0: ids[None]})[compiled.output(0)], np.float64)[0]
            top = logits.max(-1, keepdims=True)
            logz = np.log(np.exp(logits - top).sum(-1)) + top[:, 0]
            nats -= float(np.sum(logits[np.arange(32), target] - logz))
        return nats / math.log(2) / (len(data) // 32 * 32)

    assert b16.metric == pytest.approx(bits_per_byte("bf16"), rel=2e-5)
    f32 = bits_per_byte("f32")
    assert b16.metric != f32 and b16.metric == pytest.approx(f32, rel=0.05)


def test_a_refused_d1_is_left_out_of_the_export_and_said(tiny, tmp_path):
    """At bf16 the d1+d2 export is d2 only (d1 refused), under its own cache file — a bf16 run must not load
    the f32 run's d1 graph from the disk cache — and the row names what was left out and why."""
    import onnx

    from actiba.evaluate.build import _onnx_base, onnx_cache_name, torch_level_refusals
    from actiba.evaluate.configs import Config

    lm, _ = tiny
    both, d2 = Config("d1+d2", rewrites=("ssd-d1", "ssd-d2")), Config("d2", rewrites=("ssd-d2",))
    assert torch_level_refusals(both, "f32") == {}
    refused = torch_level_refusals(both, "bf16")
    assert set(refused) == {"ssd-d1"} and "refused" in refused["ssd-d1"]
    assert onnx_cache_name(lm, both, 32, "bf16") == onnx_cache_name(lm, d2, 32, "f32")
    assert onnx_cache_name(lm, both, 32, "bf16") != onnx_cache_name(lm, both, 32, "f32")
    f32 = _onnx_base(lm, both, 32, "f32", tmp_path)
    bf16 = _onnx_base(lm, both, 32, "bf16", tmp_path)
    only_d2 = _onnx_base(lm, d2, 32, "f32", tmp_path)

    def ops(m):
        return sorted(n.op_type for n in m.graph.node)

    assert ops(bf16) == ops(only_d2) and ops(bf16) != ops(f32)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2
    assert isinstance(onnx.load(str(tmp_path / "onnx" / onnx_cache_name(lm, both, 32, "f32"))), onnx.ModelProto)
