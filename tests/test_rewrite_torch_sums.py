"""torch-level CumBA / ReduBA (`actiba.rewrite.torch_sums`) against torch's own cumsum / sum / mean."""

from __future__ import annotations

import collections

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from actiba.errors import InputError  # noqa: E402
from actiba.rewrite.torch_sums import (  # noqa: E402
    cumsum_as_matmul,
    find_sum_sites,
    reduce_as_matmul,
    sums_scope,
)

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4)


def _ref_cumsum(x: torch.Tensor, dim: int) -> np.ndarray:
    return np.cumsum(x.double().numpy(), axis=dim)  # independent: numpy in float64


@settings(max_examples=60, deadline=None)
@given(shapes, st.data())
def test_cumsum_matches_numpy_on_every_axis(shape, data):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = torch.from_numpy(np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32))
    got = cumsum_as_matmul(x, dim)
    assert got.shape == x.shape
    np.testing.assert_allclose(got.double().numpy(), _ref_cumsum(x, dim), rtol=1e-5, atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(shapes, st.data(), st.booleans(), st.booleans())
def test_reduce_matches_numpy_for_any_axes(shape, data, keepdim, mean):
    rank = len(shape)
    axes = data.draw(st.one_of(st.none(), st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank,
                                                    unique_by=lambda a: a % rank)))
    x = torch.from_numpy(np.random.default_rng(rank).standard_normal(shape).astype(np.float32))
    got = reduce_as_matmul(x, axes, keepdim, mean)
    ax = None if axes is None else tuple(a % rank for a in axes)
    ref = (np.mean if mean else np.sum)(x.double().numpy(), axis=ax, keepdims=keepdim)
    assert tuple(got.shape) == np.shape(ref)
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=1e-5, atol=1e-5)


class _Toy(torch.nn.Module):
    """Sums in two submodules so scoping can be checked."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = torch.nn.Identity()
        self.norm = torch.nn.LayerNorm(6)

    def forward(self, x):
        a = torch.cumsum(x, dim=-2)
        b = x.sum(dim=-1, keepdim=True)
        c = torch.mean(x, 1)
        d = torch.cumsum(x.long(), dim=-1).float()  # integer: must stay CumSum
        return a, b, c, d


def _run(model, x, **kw):
    sites = []
    with torch.no_grad(), sums_scope(model, record=sites, **kw) as mode:
        out = model(x)
    return out, sites, mode


def test_scope_rewrites_only_floats_and_is_exact():
    m, x = _Toy(), torch.randn(2, 7, 6)
    ref = m(x)
    out, sites, mode = _run(m, x)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    decisions = collections.Counter((s.rewrite, s.ok) for s in sites)
    assert decisions[("cumba", True)] == 1 and decisions[("cumba", False)] == 1
    assert decisions[("reduba", True)] == 2
    assert mode.calls == 3
    assert any("not a floating-point" in s.reason for s in sites if not s.ok)


def test_scope_outside_include_and_min_n_keep_torch_ops():
    m, x = _Toy(), torch.randn(2, 7, 6)
    _, sites, mode = _run(m, x, include=["inner"])  # the sums run in the root, not in `inner`
    assert mode.calls == 0 and sites == []
    _, sites, mode = _run(m, x, rewrites=["cumba"], min_n=8)  # n = 7 along dim -2
    assert mode.calls == 0 and [s.ok for s in sites] == [False, False]
    assert "min_n" in sites[0].reason


def test_scope_bad_requests():
    m = _Toy()
    with pytest.raises(InputError):
        with sums_scope(m, ["actiba"]):
            pass
    with pytest.raises(InputError):
        with sums_scope(m, include=["no.such.module"]):
            pass


def test_mamba2_logits_unchanged_and_sites_listed():
    from actiba.evaluate.build import load_model

    m = load_model("random:tiny-mamba2").model
    ids = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(0))
    sites = find_sum_sites(m, ids, include=["backbone.layers.*.mixer"], exclude=["*.norm"])
    assert any(s.rewrite == "cumba" and s.ok for s in sites)
    with torch.no_grad():
        ref = m(ids).logits
        with sums_scope(m, include=["backbone.layers.*.mixer"]) as mode:
            out = m(ids).logits
    assert mode.calls >= 2
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_export_under_scope_bakes_matmuls(tmp_path):
    onnx = pytest.importorskip("onnx")
    from actiba.evaluate.build import load_model
    from actiba.models.export import export_onnx

    m = load_model("random:tiny-mamba2").model
    export_onnx(m, tmp_path / "a.onnx", seq_len=32, verbose=False)
    with sums_scope(m, ["cumba"], include=["backbone.layers.*.mixer"]):
        export_onnx(m, tmp_path / "b.onnx", seq_len=32, verbose=False)  # verifies against torch itself
    count = [collections.Counter(n.op_type for n in onnx.load(str(tmp_path / f)).graph.node)
             for f in ("a.onnx", "b.onnx")]
    assert count[0]["CumSum"] > 0 and count[1]["CumSum"] == 0
    assert count[1]["MatMul"] > count[0]["MatMul"]
