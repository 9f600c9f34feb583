"""The Mamba-2 hybrids and Mamba-1 relatives at the models layer: decode step vs HF's cached generation,
the Mamba-1 compact scan with its B/C/dt norms vs HF's slow path, and (slow) torch vs ONNX / OpenVINO.

Tiny random models come from the registry's `tiny` configs, re-initialised so the scan matters: HF's
default ``dt_bias = 1`` / ``A = 1..heads`` in some hybrids leaves the SSD term negligible, which would let a
wrong state update pass. Slow ones: ``python -m pytest tests/test_hybrids.py -q -m slow``.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from actiba.errors import InputError  # noqa: E402
from actiba.models import arch  # noqa: E402

HYBRIDS = tuple(t for t in arch.ARCHITECTURES if t not in ("mamba", "mamba2"))
MAMBA1 = tuple(t for t, a in arch.ARCHITECTURES.items() if a.ssm == arch.SELECTIVE_SCAN and a.scan_norms)


def _exercise_scan(model, entry, seed: int = 0) -> None:
    """dt of order 0.1-1 and decays spread over heads / channels, so the state carries real signal."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, mx in entry.mixers(model):
            mx.A_log.copy_(torch.log(0.5 + 4 * torch.rand(mx.A_log.shape, generator=g)))
            mx.D.copy_(torch.randn(mx.D.shape, generator=g))
            if hasattr(mx, "dt_bias"):
                mx.dt_bias.copy_(-1.5 + torch.randn(mx.dt_bias.shape, generator=g))
            if getattr(getattr(mx, "dt_proj", None), "bias", None) is not None:
                mx.dt_proj.bias.copy_(-1.5 + torch.randn(mx.dt_proj.bias.shape, generator=g))
            for name in entry.scan_norms:  # weighted norms: not all ones
                w = getattr(getattr(mx, name), "weight", None)
                if isinstance(w, torch.nn.Parameter):
                    w.copy_(1 + 0.3 * torch.randn(w.shape, generator=g))


def _tiny(model_type: str, **config):
    """The registry's tiny model of `model_type` (`config` overrides its config kwargs), scan exercised."""
    entry = arch.ARCHITECTURES[model_type]
    cfg = transformers.AutoConfig.for_model(model_type, **{**entry.tiny, **config})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    _exercise_scan(model, entry)
    return entry, model


@pytest.fixture(scope="module", params=HYBRIDS)
def tiny(request):
    return _tiny(request.param)


def _ids(n: int = 13, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 300, (1, n), generator=torch.Generator().manual_seed(seed))


def test_decode_step_matches_hf_cached_generation(tiny):
    """Greedy tokens and logits of our step (whole prefix fed token by token from zero state) equal HF's
    generate with its own cache."""
    from actiba.models.decode import decode_module, zero_states

    entry, model = tiny
    prompt = _ids()
    with torch.inference_mode():
        hf = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=4,
                            do_sample=False, output_logits=True, return_dict_in_generate=True, pad_token_id=0)
    step = decode_module(model).eval()
    states, mine, seq = zero_states(model), [], prompt[0].tolist()
    with torch.inference_mode():
        for t in range(len(seq) + 3):
            logits, *states = step(torch.tensor([[seq[t]]]), *states)
            if t >= len(prompt[0]) - 1:
                mine.append(logits[0])
                if t + 1 == len(seq):
                    seq.append(int(logits[0].argmax()))
    assert seq == hf.sequences[0].tolist()
    for a, b in zip(mine, hf.logits, strict=True):
        assert float((a - b[0]).abs().max()) <= 1e-4 * float(b.abs().max())


def test_decode_states_name_every_layer(tiny):
    """SSM layers give conv_i / ssm_i, attention layers key_i / value_i; module paths are HF's own."""
    from actiba.models.decode import HybridStep

    entry, model = tiny
    step = HybridStep(model)
    names = [n for n, _ in step.state_shapes()]
    mixer_layers = sorted(int(m.layer_idx) for _, m in entry.mixers(model))
    assert [n for n in names if n.startswith("ssm_")] == [f"ssm_{i}" for i in mixer_layers]
    assert any(n.startswith("key_") for n in names) == bool(entry.attention_paths)
    own = {p for p, _ in step.named_modules()}
    assert {p for p, _ in entry.mixers(model)} <= own


def test_decode_refuses_other_models():
    from actiba.models.decode import HybridStep, decode_module

    with pytest.raises(InputError):
        decode_module(torch.nn.Linear(2, 2))
    with pytest.raises(InputError):
        HybridStep(transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model("mamba", **arch.ARCHITECTURES["mamba"].tiny)))


@pytest.mark.parametrize("model_type", MAMBA1)
def test_compact_scan_applies_the_norms(model_type):
    """Every compact scan equals HF's slow path on FalconMamba / Jamba (mixer output and logits); without
    the B/C/dt norms it does not. Compared at the mixer: in tiny Jamba the mixer is a small part of the logits."""
    from actiba.models import mamba_scan

    entry, model = _tiny(model_type)
    ids = _ids(40)
    path, mixer = entry.mixers(model)[0]
    hidden = torch.randn(1, 40, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref, ref_logits = mixer(hidden), model(input_ids=ids, use_cache=False).logits
        scale = float(ref.abs().max())
        for mode in ("chunked", "stepped", "doubling"):
            with mamba_scan.chunked_scan(model, 16, mode=mode):
                got, logits = mixer(hidden), model(input_ids=ids, use_cache=False).logits
            assert float((got - ref).abs().max()) <= 1e-4 * scale, mode
            assert float((logits - ref_logits).abs().max()) <= 1e-4 * float(ref_logits.abs().max()), mode
        original = mamba_scan._norms
        try:
            mamba_scan._norms = lambda *a: None
            with mamba_scan.chunked_scan(model, 16, mode="chunked"):
                skipped = mixer(hidden)
        finally:
            mamba_scan._norms = original
    assert float((skipped - ref).abs().max()) > 0.1 * scale


def _scaled_head_graph(op: str, scale_shape: tuple[int, ...] = ()):
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4) / 10, "w")
    s = numpy_helper.from_array(np.full(scale_shape, 2.0, dtype=np.float32), "s")
    nodes = [helper.make_node("MatMul", ["h", "w"], ["z"]), helper.make_node(op, ["z", "s"], ["logits"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 5, 3])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5, 4])], [w, s])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("op", ["Mul", "Div"])
def test_last_logits_keeps_the_logit_scaling(op):
    """Falcon-H1's Mul and Granite's Div after the LM head: the last-position graph keeps the scaling."""
    ort = pytest.importorskip("onnxruntime")
    from actiba.models.export import last_logits_graph

    full = _scaled_head_graph(op)
    last = last_logits_graph(full)
    h = np.random.default_rng(0).standard_normal((1, 5, 3)).astype(np.float32)
    want = ort.InferenceSession(full.SerializeToString()).run(None, {"h": h})[0][:, -1:]
    got = ort.InferenceSession(last.SerializeToString()).run(None, {"h": h})[0]
    assert got.shape == (1, 1, 4) and np.allclose(got, want)


def test_last_logits_refuses_a_non_scalar_scale():
    from actiba.models.export import last_logits_graph

    with pytest.raises(InputError, match="not an LM-head MatMul"):
        last_logits_graph(_scaled_head_graph("Mul", (1, 5, 4)))


def test_export_refuses_a_model_too_large_for_memory(monkeypatch, tmp_path):
    from actiba.models import export

    monkeypatch.setattr(export, "_available_memory", lambda: 1000)
    with pytest.raises(InputError, match=r"too large to export here.*GiB"):
        export.export_onnx(torch.nn.Linear(64, 64), tmp_path / "m.onnx", seq_len=8)
    assert not (tmp_path / "m.onnx").exists()


def test_chunk_size_through_the_entry():
    from actiba.models.export import ssd_chunk_size

    for t in ("bamba", "zamba2", "falcon_mamba"):
        entry, model = _tiny(t)
        want = entry.tiny.get("mamba_chunk_size", entry.tiny.get("chunk_size"))
        assert ssd_chunk_size(model) == (want if entry.ssm == arch.SSD else None)


# --- slow: exported graphs against torch -----------------------------------------------------------------------


@pytest.mark.slow
def test_exported_decode_step_in_openvino_matches_hf(tiny):
    """The exported step, run by OpenVINO (f32 hint) token by token with its state outputs fed back and the
    attention caches growing, gives HF's next-token logits after the prefix."""
    ov = pytest.importorskip("openvino")
    import os
    import tempfile

    import onnx

    from actiba.models.decode import compile_decode_openvino, export_decode_onnx, state_shapes

    entry, model = tiny
    proto = export_decode_onnx(model)
    # site ids are the HF module paths, as in the prefill graph: every mixer's Softplus (dt) is found
    from actiba.evaluate.tables import relu_table
    from actiba.rewrite import onnx_rw

    sites = onnx_rw.find_sites(proto, "actiba", {"softplus": relu_table()})
    soft = {s.detail["site_id"] for s in sites if s.detail.get("function") == "softplus"}
    assert {f"{p}:softplus#0" for p, _ in entry.mixers(model)} <= soft, soft
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "d.onnx")
        onnx.save_model(proto, p)
        compiled = compile_decode_openvino(ov.convert_model(p), "f32", threads=1)
    req = compiled.create_infer_request()
    states = {n: np.zeros(s, np.float32) for n, s in state_shapes(model)}
    ids = _ids()
    for t in ids[0].tolist():
        res = req.infer({"input_ids": np.array([[t]], np.int64), **states})
        outs = [np.array(res[o]) for o in compiled.outputs]
        states = dict(zip(states, outs[1:], strict=True))
    with torch.inference_mode():
        want = model(input_ids=ids, use_cache=False).logits[0, -1].numpy()
    assert np.abs(outs[0][0] - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.slow
def test_prefill_export_matches_torch(tiny, tmp_path):
    """ONNX and OpenVINO IR (f32 hint) logits vs torch at fixed length, all positions and the last one
    (logit scaling and MoE experts included: Granite's Div, Falcon-H1's Mul, batched_mm experts)."""
    pytest.importorskip("openvino")
    import onnx

    from actiba.models.export import check_onnx, check_openvino, export_onnx, export_openvino, last_logits_graph

    entry, model = tiny
    res = export_onnx(model, tmp_path / "m.onnx", seq_len=32, verbose=False)
    with torch.inference_mode():
        scale = float(model(input_ids=_ids(32), use_cache=False).logits.abs().max())
    assert res.max_abs_diff <= 1e-4 * scale
    last = tmp_path / "last.onnx"
    onnx.save_model(last_logits_graph(onnx.load(str(tmp_path / "m.onnx"))), str(last))
    assert check_onnx(model, last, 32, logits="last") <= 1e-4 * scale
    ir = export_openvino(model, tmp_path / "m.xml", seq_len=32, from_onnx=tmp_path / "m.onnx", verbose=False)
    assert ir.max_abs_diff <= 1e-4 * scale
    assert check_openvino(model, tmp_path / "m.xml", 32, "f32") <= 1e-4 * scale


@pytest.mark.parametrize("model_type", MAMBA1)
def test_mamba1_relatives_export_through_the_compact_scan(model_type):
    """FalconMamba / Jamba are exported with the compact scan patched in (not HF's per-token loop), and
    the patch is undone afterwards."""
    from actiba.models.export import export_view

    entry, model = _tiny(model_type)
    mixers = [m for _, m in entry.mixers(model)]
    with export_view(model, "stepped", 16):
        assert all("_actiba_original_forward" in vars(m) for m in mixers)
    assert not any("_actiba_original_forward" in vars(m) for m in mixers)


def test_moe_exports_in_the_registry_experts_implementation():
    from actiba.models.export import experts_view

    entry, model = _tiny("granitemoehybrid")
    before = model.config._experts_implementation
    assert before != entry.experts_implementation  # transformers' default (grouped_mm) does not export
    with experts_view(model):
        assert model.config._experts_implementation == entry.experts_implementation == "batched_mm"
    assert model.config._experts_implementation == before


def test_decode_config_disables_snippets_only_with_attention_caches(monkeypatch):
    """The sweep compiles decode steps with attention caches the way `compile_decode_openvino` does (the
    OpenVINO CPU snippets bug), and pure SSM steps as before."""
    from onnx import TensorProto, helper

    from actiba.evaluate import latency
    from actiba.models.decode import OPENVINO_DECODE_CONFIG, openvino_decode_config

    def step(*names):
        ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in names]
        nodes = [helper.make_node("Relu", [names[-1]], ["logits"])]
        g = helper.make_graph(nodes, "g", ins, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])

    assert openvino_decode_config(step("input_ids", "conv_0", "ssm_0")) == {}
    kv = step("input_ids", "ssm_0", "key_1", "value_1")
    assert openvino_decode_config(kv) == OPENVINO_DECODE_CONFIG
    seen = []

    class Core:  # the properties compile_model hands to OpenVINO (the CPU plugin cannot read this one back)
        def compile_model(self, model, device, config):
            seen.append(dict(config))
            return type("C", (), {"get_property": lambda self, k: "f32"})()

    monkeypatch.setattr(latency, "core", Core)
    latency.compile_model(None, "CPU", "f32", 1, extra=openvino_decode_config(kv))
    latency.compile_model(None, "CPU", "f32", 1)
    assert seen[0]["SNIPPETS_MODE"] == "DISABLE" and "SNIPPETS_MODE" not in seen[1]
    assert seen[0]["INFERENCE_PRECISION_HINT"] == "f32"
