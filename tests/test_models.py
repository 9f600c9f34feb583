"""Embedded models, loading errors, scoring, export fidelity and the chunked Mamba scan."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from actiba import models  # noqa: E402
from actiba.errors import InputError  # noqa: E402
from actiba.models import mamba_scan  # noqa: E402

torch.set_num_threads(1)
EMBEDDED = ["embedded:mamba2", "embedded:mamba"]


@pytest.fixture(scope="module", params=EMBEDDED)
def embedded(request):
    return request.param, models.load(request.param)


def _tiny(kind: str):
    """A random 1-layer model: exporting it is quick, and it exercises the same code paths."""
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=258, hidden_size=32, num_hidden_layers=1, expand=2, use_cache=False)
    if kind == "mamba2":
        cfg = Mamba2Config(head_dim=16, num_heads=4, n_groups=1, state_size=16, chunk_size=16, **common)
        return Mamba2ForCausalLM(cfg).eval()
    return MambaForCausalLM(MambaConfig(state_size=8, **common)).eval()


# --- embedded models -------------------------------------------------------------------------------

def test_embedded_models_load_and_generate(embedded):
    name, model = embedded
    assert model.config.vocab_size == 258
    text = models.generate(model, "KING.\n", 24)
    assert isinstance(text, str) and len(text) > 0
    assert text == models.generate(model, "KING.\n", 24)  # greedy is deterministic


def test_tokenizer_is_byte_level_and_round_trips(embedded):
    from transformers import AutoTokenizer

    name, _ = embedded
    for tok in (models.tokenizer(name), AutoTokenizer.from_pretrained(str(models.embedded_path(name[9:])))):
        text = "Thou art — naïve, 日本!\n\t\x00"
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert ids == list(text.encode("utf-8"))
        assert tok.decode(ids) == text
        assert tok.eos_token_id == 256 and tok.pad_token_id == 257


def test_heldout_bits_per_byte_beat_unigram(embedded):
    from actiba import data

    try:
        held = data.heldout_bytes(4096)
        train = data.load_split("train")
    except InputError as exc:
        pytest.skip(f"corpus not available: {exc}")
    _, model = embedded
    bpb = models.score_bits_per_byte(model, held, seq_len=512)
    unigram = models.unigram_bits_per_byte(train, held)
    assert bpb < unigram - 1.0, (bpb, unigram)


def test_score_matches_manual_computation():
    model = _tiny("mamba2")
    data = b"To be, or not to be"
    ids = torch.tensor([[256, *data[:-1]]])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
    nats = -logp[torch.arange(len(data)), torch.tensor(list(data))].sum().item()
    expected = nats / len(data) / 0.6931471805599453
    assert models.score_bits_per_byte(model, data, seq_len=64) == pytest.approx(expected)
    # two windows: the second starts from a fresh start token
    assert models.score_bits_per_byte(model, data, seq_len=10) > 0


# --- bad input ----------------------------------------------------------------------------------------

def test_unknown_embedded_name():
    with pytest.raises(InputError, match="embedded:mamba2"):
        models.load("embedded:transformer")


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        models.load(str(tmp_path / "nope"))
    with pytest.raises(InputError, match="config.json"):
        models.load(str(tmp_path))


def test_uncached_hub_id(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(InputError, match="cache"):
        models.load("no-such-org/no-such-model")


def test_corrupt_safetensors(tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(models.embedded_path("mamba2"), folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(InputError, match="weights") as info:
        models.load(str(folder))
    assert "\n" not in str(info.value)


def test_weights_missing_a_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial"
    shutil.copytree(models.embedded_path("mamba"), folder)
    tensors = load_file(folder / "model.safetensors")
    del tensors[sorted(tensors)[0]]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match="missing"):
        models.load(str(folder))


def test_wrong_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "opt"}))
    with pytest.raises(InputError, match="supports"):
        models.load(str(tmp_path))


# --- the chunked Mamba scan ---------------------------------------------------------------------------

@pytest.mark.parametrize("length,chunk", [(1, 32), (31, 8), (64, 16), (100, 32)])
def test_chunked_scan_equals_reference(length, chunk):
    g = torch.Generator().manual_seed(length)
    b, d, n = 2, 6, 4
    x = torch.randn(b, d, length, generator=g, dtype=torch.float64)
    dt = torch.rand(b, d, length, generator=g, dtype=torch.float64) * 2
    A = -torch.rand(d, n, generator=g, dtype=torch.float64) * 8
    B = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    C = torch.randn(b, length, n, generator=g, dtype=torch.float64)
    ref = mamba_scan.selective_scan_reference(x, dt, A, B, C)
    assert torch.allclose(mamba_scan.selective_scan_chunked(x, dt, A, B, C, chunk), ref, atol=1e-10)
    assert torch.allclose(mamba_scan.selective_scan_recurrent(x, dt, A, B, C), ref, atol=1e-10)


def test_recurrent_scan_gradient():
    g = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 3, 4, 6
    args = [torch.randn(b, d, length, generator=g, dtype=torch.float64),
            torch.rand(b, d, length, generator=g, dtype=torch.float64),
            -torch.rand(d, n, generator=g, dtype=torch.float64) * 3,
            torch.randn(b, length, n, generator=g, dtype=torch.float64),
            torch.randn(b, length, n, generator=g, dtype=torch.float64)]
    assert torch.autograd.gradcheck(mamba_scan.selective_scan_recurrent, [a.requires_grad_() for a in args])


def test_chunked_scan_matches_hf_slow_path_on_embedded_mamba():
    model = models.load("embedded:mamba")
    ids = torch.randint(0, 256, (1, 200), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        slow = model(input_ids=ids, use_cache=False).logits
        with mamba_scan.chunked_scan(model, 32):
            fast = model(input_ids=ids, use_cache=False).logits
        again = model(input_ids=ids, use_cache=False).logits
    diff = (fast - slow).abs().max().item()
    print(f"chunked vs HF slow scan, max |logit diff| = {diff:.2e}")
    assert diff < 1e-4
    assert torch.equal(again, slow)  # the patch is undone


def test_patch_rejects_non_mamba():
    with pytest.raises(TypeError):
        mamba_scan.patch_scan(_tiny("mamba2"))


# --- export ------------------------------------------------------------------------------------------

@pytest.mark.slow  # embedded-model exports (15-35 s each); the tiny exports in test_prefill_logits / test_decode
@pytest.mark.parametrize("kind", ["mamba2", "mamba"])  # cover export in the fast suite
def test_export_onnx_and_openvino_match_torch(kind, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from actiba.models.export import check_onnx, check_openvino, export_onnx, export_openvino

    model = _tiny(kind)
    res = export_onnx(model, tmp_path / "m.onnx", seq_len=None, check_seq_len=40)
    assert res.max_abs_diff < 1e-4
    assert check_onnx(model, res.path, 7) < 1e-4  # the dynamic length really is dynamic
    ov_res = export_openvino(model, tmp_path / "m.xml", from_onnx=res.path, check_seq_len=33)
    assert ov_res.max_abs_diff < 1e-4
    assert check_openvino(model, ov_res.path, 70) < 1e-4
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert sidecar["inference_precision_hint"] == "f32" and sidecar["inference_precision"] == "f32"
    # no temporary or external-data files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.json", "m.onnx", "m.xml"]


def test_export_bad_output(tmp_path):
    from actiba.models.export import export_openvino

    with pytest.raises(InputError):
        export_openvino(_tiny("mamba2"), tmp_path / "m.onnx")
    with pytest.raises(InputError):
        export_openvino(_tiny("mamba2"), tmp_path / "missing" / "m.xml", seq_len=16)


@pytest.mark.slow
@pytest.mark.parametrize("name", EMBEDDED)
def test_export_embedded_models(name, tmp_path):
    from actiba.models.export import export_onnx, export_openvino

    model = models.load(name)
    assert export_onnx(model, tmp_path / "m.onnx", seq_len=None).max_abs_diff < 1e-3
    assert export_openvino(model, tmp_path / "m.xml", seq_len=128).max_abs_diff < 1e-3


@pytest.mark.slow
def test_lm_eval_loads_embedded_folder():
    hf = pytest.importorskip("lm_eval.models.huggingface")
    lm = hf.HFLM(pretrained=str(models.embedded_path("mamba2")), device="cpu", batch_size=1)
    from lm_eval.api.instance import Instance

    req = Instance(request_type="loglikelihood_rolling", doc={}, arguments=("Thou art a villain.",), idx=0)
    (logprob,) = lm.loglikelihood_rolling([req])
    assert logprob < 0
