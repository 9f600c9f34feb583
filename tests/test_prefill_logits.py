"""Last-position prefill export (`logits="last"`): equal to torch's last position, [1, 1, V], its own cache
entries, and the sweep / report say which mode was timed while accuracy still scores every position."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from actiba.errors import InputError  # noqa: E402
from actiba.evaluate import build  # noqa: E402
from actiba.evaluate.configs import Config  # noqa: E402

SEQ = 40  # 2.5 chunks of 16 (tiny-mamba2): the padded tail is part of what is checked


@pytest.fixture(scope="module")
def tiny2():
    return build.load_model("random:tiny-mamba2")


def _ort(proto, ids: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: ids})[0]


def _torch_last(model, ids: np.ndarray) -> np.ndarray:
    """Independent reference: the unmodified HF forward over every position, last row taken here."""
    with torch.inference_mode():
        return model(input_ids=torch.from_numpy(ids), use_cache=False).logits[:, -1:, :].float().numpy()


def _ids(n: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(1, n), dtype=np.int64)


def _out_dims(proto) -> list:
    return [d.dim_param or d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]


@pytest.mark.parametrize("arch,ssd", [("tiny-mamba2", (False, False)), ("tiny-mamba2", (True, True)),
                                      ("tiny-mamba", (False, False))])
def test_last_export_equals_torch_last_position(arch, ssd, tiny2, tmp_path):
    lm = tiny2 if arch == "tiny-mamba2" else build.load_model(f"random:{arch}")
    cfg = Config("c", ssd_d1=ssd[0], ssd_d2=ssd[1])
    proto = build._onnx_base(lm, cfg, SEQ, "f32", tmp_path, logits="last")
    assert _out_dims(proto) == [1, 1, lm.vocab_size]
    ids = _ids(SEQ)
    got = _ort(proto, ids)
    assert got.shape == (1, 1, lm.vocab_size)
    np.testing.assert_allclose(got, _torch_last(lm.model, ids), atol=2e-4, rtol=0)
    # OpenVINO CPU f32 compiles it to the same one-row output
    from actiba.evaluate import latency

    compiled, _ = latency.compile_model(build.to_openvino(proto), "CPU", "f32", 1)
    ov_out = compiled({0: ids})[compiled.output(0)]
    assert tuple(ov_out.shape) == (1, 1, lm.vocab_size)
    np.testing.assert_allclose(ov_out, _torch_last(lm.model, ids), atol=2e-4, rtol=0)


@pytest.fixture(scope="module")
def dynamic_last(tiny2, tmp_path_factory):
    from actiba.models.export import export_onnx

    path = tmp_path_factory.mktemp("dyn") / "m.onnx"
    res = export_onnx(tiny2.model, path, seq_len=None, verbose=False, check_seq_len=SEQ, logits="last")
    import onnx

    return res, onnx.load(str(path))


@pytest.mark.slow  # a dynamic-length export (~10 s); fixed-length last exports are tested above
@settings(max_examples=8, deadline=None)
@given(n=st.integers(2, 70), seed=st.integers(0, 2**16))
def test_dynamic_last_export_any_length(dynamic_last, tiny2, n, seed):
    res, proto = dynamic_last
    assert res.logits == "last" and res.max_abs_diff < 1e-4
    ids = _ids(n, seed)
    np.testing.assert_allclose(_ort(proto, ids), _torch_last(tiny2.model, ids), atol=2e-4, rtol=0)


def test_check_and_modes_are_strict(dynamic_last, tiny2, tmp_path):
    from actiba.models.export import check_onnx, export_onnx

    res, _ = dynamic_last
    with pytest.raises(InputError, match="shape"):  # a last-only graph is no all-positions graph
        check_onnx(tiny2.model, res.path, 16, logits="all")
    with pytest.raises(InputError, match="logits mode"):
        export_onnx(tiny2.model, tmp_path / "x.onnx", logits="first")
    assert not (tmp_path / "x.onnx").exists()


def test_modes_share_one_export(tiny2, tmp_path):
    """Both modes come from one torch export on disk; the in-memory memo keeps one graph per mode."""
    from actiba.evaluate.sweep import Settings

    cfg = Config("baseline")
    lm = build.load_model("random:tiny-mamba2")  # a fresh in-memory memo
    b = build._onnx_base(lm, cfg, SEQ, "f32", tmp_path, logits="last")
    a = build._onnx_base(lm, cfg, SEQ, "f32", tmp_path, logits="all")
    assert [p.name for p in (tmp_path / "onnx").iterdir()] == [build.onnx_cache_name(lm, cfg, SEQ)]
    assert _out_dims(a) == [1, SEQ, lm.vocab_size] and _out_dims(b) == [1, 1, lm.vocab_size]
    assert len(lm.onnx_cache) == 2
    assert len(b.graph.node) == len(a.graph.node) + 1  # the body is the same graph, plus one Slice
    assert Settings(prefill_logits="all").key() != Settings(prefill_logits="last").key()


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_last_logits_graph_is_the_last_row(tiny2, tmp_path_factory, seed):
    """The derived graph equals the all-positions graph's last row (onnxruntime on both) and leaves its
    input untouched."""
    from actiba.models.export import last_logits_graph

    full = build._onnx_base(tiny2, Config("baseline"), SEQ, "f32", tmp_path_factory.mktemp("c"), logits="all")
    before = full.SerializeToString(deterministic=True)
    last = last_logits_graph(full)
    assert full.SerializeToString(deterministic=True) == before
    ids = _ids(SEQ, seed)
    np.testing.assert_allclose(_ort(last, ids), _ort(full, ids)[:, -1:, :], atol=1e-5, rtol=0)


def test_last_logits_graph_refuses_other_heads(tiny2, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from actiba.models.export import last_logits_graph

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4, 3])
    relu = onnx.helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["logits"])], "g", [x], [y]))
    with pytest.raises(InputError, match="not an LM-head MatMul"):
        last_logits_graph(relu)
    passthrough = onnx.helper.make_model(helper.make_graph([], "g", [x], [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 4, 3])]))
    with pytest.raises(InputError, match="graph input"):
        last_logits_graph(passthrough)
    full = build._onnx_base(tiny2, Config("baseline"), SEQ, "f32", tmp_path, logits="all")
    twice = last_logits_graph(last_logits_graph(full))  # names stay unique; slicing [1, 1] again is a no-op
    onnx.checker.check_model(twice)
    ids = _ids(SEQ)
    np.testing.assert_allclose(_ort(twice, ids), _ort(full, ids)[:, -1:, :], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def last_run(tiny2, tmp_path_factory):
    from actiba.evaluate.sweep import Settings, run_one

    out = tmp_path_factory.mktemp("lastrun")
    configs = [Config("baseline"), Config("softplus-relu", activations={"softplus": {"table": "relu"}})]
    data = bytes(range(32, 127)) * 2  # 190 bytes: 5 windows of 32
    s = Settings(seq_len=32, eval_bytes=len(data), warmup=1, repeats=3, prefill_logits="last")
    return run_one(tiny2, configs, s, "f32", out, data=data), data


def test_last_mode_scores_every_position(last_run, tiny2):
    """The metric in "last" mode is the all-positions bits/byte, computed here independently with torch."""
    run, data = last_run
    base, relu = (r.to_dict() for r in run["configs"])
    assert run["prefill_logits"] == "last" and run["settings"]["prefill_logits"] == "last"
    nats = 0.0
    with torch.inference_mode():
        for i in range(len(data) // 32):
            window = data[32 * i:32 * (i + 1)]
            ids = torch.tensor([[256, *window[:-1]]])
            logp = torch.log_softmax(tiny2.model(input_ids=ids, use_cache=False).logits[0].float(), -1)
            nats -= logp.gather(-1, torch.tensor(list(window))[:, None]).sum().item()
    assert base["metric"] == pytest.approx(nats / math.log(2) / (32 * (len(data) // 32)), rel=1e-4)
    # the table row is scored on its own all-positions graph (not the timed one, not the baseline's)
    assert relu["error"] is None and relu["metric"] != base["metric"]
    assert relu["metric_graph_sha"] not in (relu["graph_sha"], base["metric_graph_sha"])
    assert relu["latency_ms"]["seq_len"] == 32 and relu["speedup"] > 0


def test_report_states_the_mode(last_run, tmp_path):
    from actiba.evaluate.report import write_report

    run, _ = last_run
    write_report(tmp_path, [run])
    html = (tmp_path / "report.html").read_text()
    assert "last-position logits only" in html and "last logits" in html
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["prefill_logits"] == "last" and doc["runs"][0]["prefill_logits"] == "last"
    with open(tmp_path / "results.csv") as f:
        assert {r["prefill_logits"] for r in csv.DictReader(f)} == {"last"}
    # an older run without the field timed every position, and says so
    old = {k: v for k, v in run.items() if k != "prefill_logits"}
    old["settings"] = {k: v for k, v in run["settings"].items() if k != "prefill_logits"}
    write_report(tmp_path, [old])
    assert "logits at every position" in (tmp_path / "report.html").read_text()


def test_cli_rejects_unknown_mode(tmp_path, capsys):
    from actiba.cli import main

    try:
        rc = main(["pareto", "random:tiny-mamba2", "--out", str(tmp_path), "--prefill-logits", "middle"])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and "prefill-logits" in err and "Traceback" not in err
