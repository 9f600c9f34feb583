"""Torch-level SSD rewrites (d1, d2, chunk length) on every Mamba-2 hybrid's own mixer class, checked
against HF's logits on initialisations that make the SSD term matter (`_exercise_scan`)."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_hybrids import _tiny  # noqa: E402

from actiba.models import arch  # noqa: E402
from actiba.rewrite import torch_rw  # noqa: E402

SSD_HYBRIDS = [t for t, a in arch.ARCHITECTURES.items() if a.ssm == arch.SSD and t != "mamba2"]


@pytest.mark.parametrize("model_type", SSD_HYBRIDS)
def test_ssd_rewrites_keep_the_logits(model_type, monkeypatch):
    entry, model = _tiny(model_type)
    ids = torch.randint(0, 200, (1, 40), generator=torch.Generator().manual_seed(2))
    mixers = [p for p, _ in entry.mixers(model)]
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        for chunk in (None, 8):
            with torch_rw.ssd_rewrites(model, d1=True, d2=True, chunk=chunk) as sites:
                got = model(input_ids=ids).logits
            assert sorted({s.name for s in sites}) == sorted(mixers)  # every mixer is a site, nothing else
            for s in sites:
                if s.rewrite == "ssd-d2" and entry.n_groups(model.config) > 1:
                    assert not s.ok and "needs 1" in s.reason
                else:
                    assert s.ok, s.reason
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        # the patched scan is the one that runs: breaking it changes the logits
        real = torch_rw.ssd_chunk_scan
        monkeypatch.setattr(torch_rw, "ssd_chunk_scan", lambda *a, **k: (lambda o: (o[0] * 0, o[1]) if isinstance(
            o, tuple) else o * 0)(real(*a, **k)))
        with torch_rw.ssd_rewrites(model, d1=True, d2=False):
            broken = model(input_ids=ids).logits
    assert (broken - ref).abs().max() > 1e-3
