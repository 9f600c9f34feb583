"""Mamba v1 scan forms (`actiba.models.mamba_scan`) against the per-step reference and HF's own forward."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from actiba.models.mamba_scan import (  # noqa: E402
    chunked_scan,
    selective_scan_chunked,
    selective_scan_doubling,
    selective_scan_reference,
    selective_scan_stepped,
)


def _inputs(b: int, d: int, n: int, length: int, seed: int, dt_scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, length, generator=g)
    dt = dt_scale * torch.nn.functional.softplus(torch.randn(b, d, length, generator=g))
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C = torch.randn(b, length, n, generator=g), torch.randn(b, length, n, generator=g)
    return x, dt, A, B, C


SCANS = [selective_scan_chunked, selective_scan_doubling, selective_scan_stepped]


@pytest.mark.parametrize("scan", SCANS)
@settings(max_examples=10, deadline=None)
@given(length=st.integers(1, 70), q=st.sampled_from([2, 4, 8, 16]), seed=st.integers(0, 1000))
def test_scan_equals_reference(scan, length: int, q: int, seed: int) -> None:
    x, dt, A, B, C = _inputs(2, 3, 4, length, seed)
    ref = selective_scan_reference(x, dt, A, B, C)
    got = scan(x, dt, A, B, C, chunk_size=q)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-4 * (1 + ref.abs().max().item()), rtol=1e-4)


@pytest.mark.parametrize("scan", SCANS)
def test_strong_decay_stays_finite(scan) -> None:
    """dt·A down to about -1e3 per step: decays underflow to 0 but nothing becomes inf or NaN."""
    x, dt, A, B, C = _inputs(1, 4, 4, 40, 3, dt_scale=60.0)
    ref = selective_scan_reference(x, dt, A, B, C)
    got = scan(x, dt, A, B, C, chunk_size=8)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, atol=1e-3, rtol=1e-4)


def test_doubling_needs_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        selective_scan_doubling(*_inputs(1, 2, 2, 8, 0), chunk_size=12)


@pytest.mark.parametrize("mode,q", [("chunked", 8), ("doubling", 16), ("doubling", 4), ("stepped", 16), ("stepped", 4)])
def test_patched_model_equals_hf(mode: str, q: int) -> None:
    from actiba.evaluate.build import load_model

    model = load_model("random:tiny-mamba").model
    ids = torch.randint(0, 258, (2, 37), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model(input_ids=ids, use_cache=False).logits  # HF's own sequential scan
        with chunked_scan(model, q, mode=mode):  # type: ignore[arg-type]
            got = model(input_ids=ids, use_cache=False).logits
        again = model(input_ids=ids, use_cache=False).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(again, want)  # unpatched on exit


def test_patched_mixer_keeps_the_cached_path():
    """transformers 5.x passes the mixer's cache as `cache=` (`cache_params` is deprecated): the patched
    forward must hand it to HF's cached path. Reading only `cache_params`, a cached step ran the
    no-cache scan on one token and its logits were off by 0.3 on the random tiny Mamba."""
    from actiba.evaluate.build import load_model
    from actiba.models.mamba_scan import patch_scan, unpatch_scan

    model = load_model("random:tiny-mamba").model
    ids = torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = model(input_ids=ids, use_cache=False).logits[0, -1]
        patch_scan(model, "chunked", 4)
        try:
            prefix = model(input_ids=ids[:, :-1], use_cache=True)
            cache = getattr(prefix, "cache", None) or prefix.cache_params
            step = model(input_ids=ids[:, -1:], cache=cache, use_cache=True).logits[0, -1]
        finally:
            unpatch_scan(model)
    torch.testing.assert_close(step, full, rtol=1e-4, atol=1e-4)
