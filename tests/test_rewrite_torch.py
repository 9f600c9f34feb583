"""torch level: ActiBA scoping (only the selected modules change) and the SSD d1/d2 rewrites."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from actiba.errors import InputError  # noqa: E402
from actiba.rewrite import torch_rw, torch_ssd  # noqa: E402
from actiba.table import Table  # noqa: E402


def _chord(f, function, n=32):
    b = np.linspace(-8, 8, n + 1)
    y = f(b)
    s = np.diff(y) / np.diff(b)
    c = y[:-1] - s * b[:-1]
    t = Table(b, np.r_[s[0], s, s[-1]], np.r_[c[0], c, c[-1]], function=function)
    xs = np.linspace(-8, 8, 20001)
    t.error = {"max_abs": float(np.abs(t(xs) - f(xs)).max()), "max_rel": None, "rms": None, "over": "domain"}
    return t


SILU = _chord(lambda v: v / (1 + np.exp(-v)), "silu")
SOFTPLUS = _chord(lambda v: np.logaddexp(0, v), "softplus")


def _pwl(x, table):
    """The canonical evaluator in torch (independent of actiba.lower, so this file tests scoping only)."""
    bp = torch.as_tensor(table.breakpoints, dtype=x.dtype)
    i = torch.searchsorted(bp, x.contiguous(), right=True)
    return torch.as_tensor(table.slopes, dtype=x.dtype)[i] * x + torch.as_tensor(table.intercepts, dtype=x.dtype)[i]


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)
        self.act = torch.nn.SiLU()

    def forward(self, x):
        return self.act(self.lin(x)) + F.softplus(x)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([Block(), Block()])
        self.norm = torch.nn.Module()

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return F.silu(x)  # outside every block: must stay exact


def test_scope_changes_only_selected_modules():
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(4, 8)
    with torch.no_grad():
        ref = net(x)
        h0 = net.layers[0](x)
        with torch_rw.actiba_scope(net, {"silu": SILU}, include=["layers.1"], pwl=_pwl) as mode:
            got = net(x)
            assert torch.equal(net.layers[0](x), h0)  # layer 0 untouched inside the scope
        assert mode.calls == 1  # only layers.1's SiLU; the final F.silu is outside the selection
        expect = F.silu(net.layers[1].act.__class__()(net.layers[1].lin(h0)) * 0 + _pwl(net.layers[1].lin(h0), SILU)
                        + F.softplus(h0))
        torch.testing.assert_close(got, expect, rtol=0, atol=1e-6)
        assert (got - ref).abs().max() <= 2 * SILU.error["max_abs"] + 1e-6
        assert torch.equal(net(x), ref)  # restored after the block


def test_scope_exclude_records_and_mismatch():
    net = Net().eval()
    x = torch.randn(2, 8)
    sites = torch_rw.find_actiba_sites(net, {"silu": SILU, "softplus": SOFTPLUS}, x, include=["layers.*"],
                                       exclude=["layers.0"], pwl=_pwl)
    assert [(s.name, s.op) for s in sites] == [("layers.1.act", "silu"), ("layers.1", "softplus")]
    # a softplus table with another beta must not stand in for beta=1
    wrong = _chord(lambda v: np.logaddexp(0, 2 * v) / 2, "softplus")
    wrong.params = {"beta": 2.0}
    sites = torch_rw.find_actiba_sites(net, {"softplus": wrong}, x, pwl=_pwl)
    assert sites and all(not s.ok and "beta" in s.reason for s in sites)
    with pytest.raises(InputError, match="no module path"):
        with torch_rw.actiba_scope(net, {"silu": SILU}, include=["nothing.*"]):
            pass


def _mamba2(n_groups=1, layers=2):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Mamba2Config(vocab_size=64, hidden_size=32, num_hidden_layers=layers, state_size=16,
                                    num_heads=8, head_dim=8, expand=2, n_groups=n_groups, chunk_size=8)
    return transformers.Mamba2ForCausalLM(cfg).eval()


@pytest.mark.parametrize("n_groups", [1, 2])
def test_ssd_rewrites_equal_outputs(n_groups):
    model = _mamba2(n_groups)
    ids = torch.randint(0, 64, (2, 21))  # 21 tokens: not a multiple of the chunk, so padding is exercised
    with torch.no_grad():
        ref = model(ids, use_cache=False).logits
        for d1, d2 in ((True, False), (False, True), (True, True)):
            with torch_ssd.ssd_rewrites(model, d1=d1, d2=d2) as sites:
                got = model(ids, use_cache=False).logits
            d2_sites = [s for s in sites if s.rewrite == "ssd-d2"]
            assert bool(d2_sites) == d2 and all(s.ok for s in d2_sites)  # d2 for any group count
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)
        assert torch.equal(model(ids, use_cache=False).logits, ref)  # unpatched again


@pytest.mark.parametrize("chunk", [1, 3, 5, 8, 16, 64])
@pytest.mark.parametrize("n_groups", [1, 2])
def test_ssd_chunk_length_is_exact(chunk, n_groups):
    """Any chunk length gives HF's output (the model's own is 8; 21 tokens: padding for most)."""
    model = _mamba2(n_groups)
    ids = torch.randint(0, 64, (2, 21), generator=torch.Generator().manual_seed(chunk))
    with torch.no_grad():
        ref = model(ids, use_cache=False).logits
        for d1, d2 in ((False, False), (True, True)):
            with torch_ssd.ssd_rewrites(model, d1=d1, d2=d2, chunk=chunk):
                got = model(ids, use_cache=False).logits
                # the override reaches the scan: a wrong chunk would change the padded length's reshape
                assert all(m._actiba_ssd.keywords["chunk"] == (None if chunk == 8 else chunk)
                           for m in model.modules() if "_actiba_ssd" in vars(m))
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)
    with pytest.raises(InputError, match="chunk"):
        torch_ssd.patch_ssd(model, chunk=0)


def test_ssd_final_state_and_initial_state():
    from transformers.models.mamba2.modeling_mamba2 import mamba2_chunk_scan

    torch.manual_seed(1)
    b, t, h, p, n = 1, 19, 4, 8, 16
    args = dict(hidden_states=torch.randn(b, t, h, p), dt=torch.randn(b, t, h), A=-torch.rand(h) - 0.5,
                B=torch.randn(b, t, 1, n), C=torch.randn(b, t, 1, n), chunk_size=8, D=torch.randn(h),
                dt_bias=torch.randn(h), initial_states=torch.randn(b, h, p, n), dt_softplus=True,
                return_final_states=True)
    ref_y, ref_s = mamba2_chunk_scan(**args)
    got_y, got_s = torch_ssd.ssd_chunk_scan(**args, d1=True, d2=True)
    torch.testing.assert_close(got_y, ref_y, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_s, ref_s, rtol=1e-4, atol=1e-4)


def test_ssd_d1_refused_in_low_precision():
    model = _mamba2(1, layers=1)
    sites = torch_ssd.patch_ssd(model, d1=True, d2=True, precision="bf16")
    try:
        d1 = [s for s in sites if s.rewrite == "ssd-d1"]
        d2 = [s for s in sites if s.rewrite == "ssd-d2"]
        assert d1 and all(not s.ok and "bf16" in s.reason for s in d1)
        assert d2 and all(s.ok for s in d2)
    finally:
        torch_ssd.unpatch_ssd(model)


def test_actiba_on_small_mamba2_within_table_error():
    pytest.importorskip("actiba.lower.torch_lower")
    model = _mamba2(1)
    ids = torch.randint(0, 64, (1, 16))
    with torch.no_grad():
        ref = model(ids, use_cache=False).logits
        with torch_rw.actiba_scope(model, {"silu": SILU}, include=["backbone.layers.*.mixer"],
                                   exclude=["*.norm"]) as mode:
            got = model(ids, use_cache=False).logits
    assert mode.calls == 2  # the conv activation of each of the two mixers; the gated norm is excluded
    diff = (got - ref).abs().max().item()
    assert 0 < diff < 50 * SILU.error["max_abs"]


def test_dispatching_api_on_torch():
    from actiba import rewrite

    model = _mamba2(1, layers=1)
    sites = rewrite.find_sites(model, "ssd-d1", precision="f16")
    assert len(sites) == 1 and not sites[0].ok
    _, done = rewrite.apply(model, ["ssd-d2"], sites=[])
    assert not any(s.ok for s in done) and "_actiba_ssd" not in vars(model.backbone.layers[0].mixer)
    _, done = rewrite.apply(model, ["ssd-d2"])
    assert all(s.ok for s in done) and "_actiba_ssd" in vars(model.backbone.layers[0].mixer)
    torch_ssd.unpatch_ssd(model)
