"""SSD rewrites (d1, d2 for any group count, chunk length) on every Mamba-2 hybrid's own mixer class, at
torch level and on the exported graphs, checked against HF's logits on initialisations that make the SSD
term matter (`exercise_ssd`: without it the D·x skip term dwarfs C·Bᵀ·x by ~1e5 in these tiny models, and
a wrong scan would pass). Slow ones: ``python -m pytest tests/test_hybrids_ssd.py -m slow``.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_hybrids import _exercise_scan, _tiny  # noqa: E402

from actiba.models import arch  # noqa: E402
from actiba.rewrite import torch_ssd  # noqa: E402

SSD_HYBRIDS = [t for t, a in arch.ARCHITECTURES.items() if a.ssm == arch.SSD and t != "mamba2"]


def exercise_ssd(model, entry) -> None:
    """`_exercise_scan` plus B, C and x of order 1 (in_proj ×10) and a smaller skip term (D ×0.1): the
    SSD term then moves the logits by 0.2-8 % of their scale (HF's init leaves it at ~1e-6)."""
    _exercise_scan(model, entry)
    with torch.no_grad():
        for _, mx in entry.mixers(model):
            mx.in_proj.weight.mul_(10.0)
            mx.D.mul_(0.1)


def ssd_model(model_type: str, **config):
    entry, model = _tiny(model_type, **config)
    exercise_ssd(model, entry)
    return entry, model


def _ids(n: int = 40):
    return torch.randint(0, 200, (1, n), generator=torch.Generator().manual_seed(2))


def _grouped_mamba2():
    return ssd_model("mamba2", n_groups=2)


def _without_ssd_term(model, ids, monkeypatch):
    """Logits with C zeroed inside the scan: only the D·x skip term is left."""
    real = torch_ssd.ssd_chunk_scan
    with monkeypatch.context() as m:
        m.setattr(torch_ssd, "ssd_chunk_scan", lambda x, dt, A, B, C, *a, **k: real(x, dt, A, B, C * 0, *a, **k))
        with torch_ssd.ssd_rewrites(model, d1=False, d2=False, chunk=8):
            return model(input_ids=ids).logits


@pytest.mark.parametrize("model_type", ["mamba2-g2", *SSD_HYBRIDS])
def test_ssd_rewrites_keep_the_logits(model_type, monkeypatch):
    entry, model = _grouped_mamba2() if model_type == "mamba2-g2" else ssd_model(model_type)
    ids = _ids()
    mixers = [p for p, _ in entry.mixers(model)]
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        scale = float(ref.abs().max())
        # the SSD term matters here, so a wrong scan cannot pass
        assert float((_without_ssd_term(model, ids, monkeypatch) - ref).abs().max()) > 1e-3 * scale
        for d1, d2, chunk in ((False, True, None), (True, True, None), (True, True, 8)):
            with torch_ssd.ssd_rewrites(model, d1=d1, d2=d2, chunk=chunk) as sites:
                got = model(input_ids=ids).logits
            assert sorted({s.name for s in sites}) == sorted(mixers)  # every mixer is a site, nothing else
            assert all(s.ok for s in sites), [s.reason for s in sites if not s.ok]  # d2 for any n_groups
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * scale)


def test_grouped_d2_is_not_the_ungrouped_one(monkeypatch):
    """With two groups, heads must read their own group: d2 fed the first group to every head is wrong."""
    entry, model = _grouped_mamba2()
    ids = _ids()
    real = torch_ssd.ssd_chunk_scan
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        monkeypatch.setattr(torch_ssd, "ssd_chunk_scan", lambda x, dt, A, B, C, *a, **k: real(
            x, dt, A, B[:, :, :1].expand_as(B), C[:, :, :1].expand_as(C), *a, **k))
        with torch_ssd.ssd_rewrites(model, d1=False, d2=True):
            wrong = model(input_ids=ids).logits
    assert float((wrong - ref).abs().max()) > 1e-3 * float(ref.abs().max())


def _graph_d2(model, tmp_path, seq_len: int = 40):
    """(the exported ONNX with HF's scan rewritten by the graph rules d1+d2, its sites)."""
    import onnx

    from actiba.models.export import export_onnx
    from actiba.rewrite import apply

    export_onnx(model, tmp_path / "m.onnx", seq_len=seq_len, verbose=False, check_seq_len=seq_len)
    new, done = apply(onnx.load(str(tmp_path / "m.onnx")), ["ssd-d1", "ssd-d2"])
    return new, done


def _check_graph(entry, model, tmp_path):
    ov = pytest.importorskip("openvino")
    from actiba.rewrite.onnx_rw import run

    new, done = _graph_d2(model, tmp_path)
    d2 = [s for s in done if s.rewrite == "ssd-d2"]
    assert len(d2) == len(entry.mixers(model)) and all(s.ok for s in d2), [s.line() for s in d2]
    ids = _ids().numpy()
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(ids), use_cache=False).logits.numpy()
    scale = float(np.abs(want).max())
    assert np.abs(run(new, {"input_ids": ids})[0] - want).max() <= 1e-4 * scale
    import onnx

    onnx.save(new, str(tmp_path / "d2.onnx"))
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(tmp_path / "d2.onnx")), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    got = compiled({0: ids})[compiled.output(0)]
    assert np.abs(got - want).max() <= 1e-4 * scale


def test_graph_d2_on_grouped_mamba2_matches_hf(tmp_path):  # ~6 s at load 4; the hybrids: -m slow
    """Graph-level d1+d2 on an exported two-group Mamba-2, in ONNX Runtime and OpenVINO (f32)."""
    _check_graph(*_grouped_mamba2(), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", SSD_HYBRIDS)
def test_graph_d2_on_hybrids_matches_hf(model_type, tmp_path):
    _check_graph(*ssd_model(model_type), tmp_path)
