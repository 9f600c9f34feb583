"""The single-token decode step (actiba.models.decode) against Hugging Face's own cached generation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

MODELS = ("random:tiny-mamba2", "random:tiny-mamba")


@pytest.fixture(scope="module", params=MODELS)
def lm(request):
    from actiba.evaluate.build import load_model

    return load_model(request.param)


@pytest.fixture(scope="module")
def proto(lm):
    from actiba.models.decode import export_decode_onnx

    return export_decode_onnx(lm.model)


def _prefix(n: int = 21, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (1, n), generator=torch.Generator().manual_seed(seed))


def _hf_cached_next_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """HF's path: prefill ids[:-1] with a cache, then one cached step on the last token."""
    with torch.inference_mode():
        out = model(input_ids=ids[:, :-1], use_cache=True)
        step = model(input_ids=ids[:, -1:], cache=out.cache, use_cache=True)  # `cache_params` before 5.x
    return step.logits[0, -1].float()


def test_step_matches_hf_cached_generation(lm):
    from actiba.models.decode import step_logits

    ids = _prefix()
    cached = _hf_cached_next_logits(lm.model, ids)
    with torch.inference_mode():
        full = lm.model(input_ids=ids, use_cache=False).logits[0, -1].float()
    mine = step_logits(lm.model, ids[0].tolist())  # the whole prefix through our step, from zero state
    scale = float(full.abs().max())
    assert float((mine - cached).abs().max()) <= 1e-4 * scale
    assert float((mine - full).abs().max()) <= 1e-4 * scale
    assert int(mine.argmax()) == int(cached.argmax())


def test_exported_step_in_openvino_matches_hf(lm, proto):
    """The exported graph, run by OpenVINO token by token with its state outputs fed back, gives HF's
    next-token logits after the prefix."""
    ov = pytest.importorskip("openvino")
    from actiba.models.decode import state_shapes

    names = [i.name for i in proto.graph.input]
    assert names[0] == "input_ids" and names[1:] == [n for n, _ in state_shapes(lm.model)]
    assert [o.name for o in proto.graph.output][1:] == [f"{n}_out" for n in names[1:]]
    import os
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "d.onnx")
        onnx.save_model(proto, p)
        compiled = ov.Core().compile_model(ov.convert_model(p), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    req = compiled.create_infer_request()
    states = {n: np.zeros(s, np.float32) for n, s in state_shapes(lm.model)}
    ids = _prefix()
    for t in ids[0].tolist():
        res = req.infer({"input_ids": np.array([[t]], np.int64), **states})
        outs = [np.array(res[o]) for o in compiled.outputs]
        logits = outs[0]
        states = dict(zip(states, outs[1:], strict=True))
    cached = _hf_cached_next_logits(lm.model, ids).numpy()
    assert np.abs(logits[0] - cached).max() <= 1e-4 * np.abs(cached).max()


def test_tables_on_the_decode_graph(lm, proto, monkeypatch):
    """ActiBA finds every SiLU / Softplus of the step under the prefill graph's site ids, and the rewritten
    step equals the torch step with Softplus replaced by ReLU (XAMBA's table), computed independently."""
    ort = pytest.importorskip("onnxruntime")
    from actiba.evaluate.tables import relu_table
    from actiba.models.decode import DecodeStep, random_feed
    from actiba.rewrite import onnx_rw

    n_layers = len(lm.model.backbone.layers)
    sites = onnx_rw.find_sites(proto, "actiba", {"softplus": relu_table()})
    soft = [s for s in sites if s.detail.get("function") == "softplus"]
    assert len(soft) == n_layers and all(s.ok for s in soft)
    assert [s.detail["site_id"] for s in soft] == [f"backbone.layers.{i}.mixer:softplus#0" for i in range(n_layers)]
    silu_ids = {s.detail["site_id"] for s in sites if s.detail.get("function") == "silu"}
    assert "backbone.layers.0.mixer:silu#0" in silu_ids
    rewritten, done = onnx_rw.apply(proto, ["actiba"], tables={"softplus": relu_table()})
    assert sum(s.ok for s in done) == n_layers
    feed = random_feed(proto, seed=3)
    got = ort.InferenceSession(rewritten.SerializeToString()).run(None, feed)
    monkeypatch.setattr(torch.nn.functional, "softplus", torch.relu)
    with torch.inference_mode():
        ref = DecodeStep(lm.model)(*(torch.from_numpy(v) for v in feed.values()))
    for a, b in zip(got, ref, strict=True):
        assert np.abs(a - b.numpy()).max() <= 1e-4 * (1 + np.abs(b.numpy()).max())
    exact = ort.InferenceSession(proto.SerializeToString()).run(None, feed)
    assert np.abs(exact[0] - got[0]).max() > 1e-4  # the table did change the step


def test_not_a_mamba_model():
    from actiba.errors import InputError
    from actiba.models.decode import DecodeStep

    with pytest.raises(InputError):
        DecodeStep(torch.nn.Linear(2, 2))
