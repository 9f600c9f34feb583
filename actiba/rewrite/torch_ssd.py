"""torch-level SSD-aware Mamba-2 rewrites d1/d2 (and the SSD chunk length), patched onto HF's mixers.

`ssd_rewrites` / `patch_ssd` install, on each selected SSD mixer instance (Mamba-2 and the HF hybrids
that carry its `mamba2_chunk_scan`), a forward that runs `ssd_chunk_scan` instead of HF's
`mamba2_chunk_scan`; export the model while patched. Why apart from `torch_rw` (scoped ActiBA and site
ids): these replace one HF function per mixer by a whole SSD computation, they do not intercept calls.

    with ssd_rewrites(model, d1=True, d2=True, chunk=128) as sites:
        torch.onnx.export(model, ...)
"""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from . import spec
from .rules import RULES
from .spec import Site


def segsum_from_cumsum(cs: torch.Tensor) -> torch.Tensor:
    """d1: segsum[..., i, j] = cs_i − cs_j for j <= i, −inf above the diagonal (no T×T Expand/CumSum)."""
    n = cs.shape[-1]
    diff = cs[..., :, None] - cs[..., None, :]
    mask = torch.tril(torch.ones(n, n, dtype=torch.bool, device=cs.device))
    return diff.masked_fill(~mask, -torch.inf)


def _pad_seq(x: torch.Tensor, pad: int) -> torch.Tensor:
    if pad == 0:
        return x
    shape = list(x.shape)
    shape[1] = pad
    return torch.cat([x, x.new_zeros(shape)], dim=1)


def ssd_chunk_scan(hidden_states: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                   C: torch.Tensor, chunk_size: int, D: torch.Tensor | None = None,
                   dt_bias: torch.Tensor | None = None, initial_states: torch.Tensor | None = None,
                   dt_softplus: bool = False, dt_limit: tuple[float, float] = (0.0, float("inf")),
                   return_final_states: bool = False, *, d1: bool = True, d2: bool = True,
                   chunk: int | None = None, **_: Any):
    """HF `mamba2_chunk_scan` (same arguments and result) with the d1 / d2 rewrites.

    d1 builds both segment sums as outer differences of a cumulative sum; d2 contracts C·Bᵀ once per
    B/C group from the un-repeated B/C and runs the SSD einsums as MatMuls in (batch, chunk, head, ...)
    order (with g > 1 groups, head k reads group k // (heads/g), HF's repeat_interleave, so the heads are
    viewed as (group, heads of the group)). With both False this is HF's computation. `chunk` overrides the
    model's chunk length: the chunked SSD is exact for any chunk length (only the rounding changes),
    and shorter chunks do less quadratic intra-chunk work (L·Q per head instead of L·256) and give d1
    smaller sums to cancel.
    """
    from transformers.models.mamba2 import modeling_mamba2 as hf

    chunk_size = chunk or chunk_size

    bsz, seqlen, nheads, hdim = hidden_states.shape
    ngroups = B.shape[2]
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    dt = torch.clamp(dt, min=dt_limit[0], max=dt_limit[1])
    x = hidden_states.float()
    B, C = B.float(), C.float()
    if not d2:
        B = B.repeat_interleave(nheads // ngroups, dim=2, output_size=nheads)
        C = C.repeat_interleave(nheads // ngroups, dim=2, output_size=nheads)
    pad = (chunk_size - seqlen % chunk_size) % chunk_size
    d_res = D[..., None] * _pad_seq(x, pad) if D is not None else None
    x = x * dt[..., None].float()
    A = A.to(x.dtype) * dt.float()
    x, A, B, C = (hf.reshape_into_chunks(t, pad, chunk_size) for t in (x, A, B, C))
    A = A.permute(0, 3, 1, 2)  # (b, h, c, l)
    A_cs = torch.cumsum(A, dim=-1)
    segsum = segsum_from_cumsum if d1 else hf.segment_sum
    Lmat = torch.exp(segsum_from_cumsum(A_cs) if d1 else hf.segment_sum(A))  # (b, h, c, l, s)
    decay_states = torch.exp(A_cs[..., -1:] - A_cs)  # (b, h, c, l)
    chunk_tot = F.pad(A_cs[..., -1], (1, 0))  # (b, h, c+1)
    decay_chunk = torch.exp(segsum(torch.cumsum(chunk_tot, -1)) if d1 else hf.segment_sum(chunk_tot))
    if initial_states is not None:
        prev = initial_states[:, None].to(dtype=x.dtype, device=x.device)
    else:
        prev = None

    if d2:
        y, final_state = _d2_products(x, A_cs, Lmat, decay_states, decay_chunk, B, C, prev)
    else:  # HF's einsums, verbatim in effect
        G = torch.einsum("bclhn,bcshn->bclsh", C, B)
        M = G * Lmat.permute(0, 2, 3, 4, 1)
        y_diag = torch.einsum("bclsh,bcshp->bclhp", M, x)
        B_decay = B * decay_states.permute(0, -2, -1, 1)[..., None]
        states = torch.einsum("bclhn,bclhp->bchpn", B_decay, x)
        if prev is None:
            prev = torch.zeros_like(states[:, :1])
        states = torch.cat([prev, states], dim=1)
        new_states = torch.einsum("bzch,bzhpn->bchpn", decay_chunk.transpose(1, 3), states)
        states, final_state = new_states[:, :-1], new_states[:, -1]
        c_states = torch.einsum("bclhn,bchpn->bclhp", C, states)
        y = y_diag + c_states * torch.exp(A_cs).permute(0, 2, 3, 1)[..., None]
    out = y.contiguous().reshape(bsz, -1, nheads, hdim)
    if d_res is not None:
        out = out + d_res
    if pad > 0:
        out = out[:, :seqlen]
    return (out, final_state) if return_final_states else out


def _d2_products(x: torch.Tensor, A_cs: torch.Tensor, Lmat: torch.Tensor, decay_states: torch.Tensor,
                 decay_chunk: torch.Tensor, B: torch.Tensor, C: torch.Tensor, prev: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(y (b, c, l, h, p), final state) of d2 from chunked x (b, c, l, h, p) and un-repeated B / C
    (b, c, l, g, n). One group: C·Bᵀ once per layer, broadcast over the heads. g > 1 groups: head k reads
    group k // q (q = h/g, HF's repeat_interleave), so the heads are viewed as (g, q): C·Bᵀ is formed g
    times (not h) and broadcast over a group's q heads, and the state and off-diagonal products take a
    group's q heads as one MatMul against its B / C."""
    bsz, nc, cl, nheads, hdim = x.shape
    g, n = B.shape[3], B.shape[4]
    q = nheads // g
    xh = x.permute(0, 1, 3, 2, 4)  # (b, c, h, l, p)
    xd = xh * decay_states.permute(0, 2, 1, 3)[..., None]
    if g == 1:
        Bg, Cg = B[:, :, :, 0], C[:, :, :, 0]  # (b, c, l, n)
        G = Cg @ Bg.transpose(-1, -2)  # (b, c, l, s): once per layer, not per head
        M = G[:, :, None] * Lmat.permute(0, 2, 1, 3, 4)  # (b, c, h, l, s)
        states = xd.transpose(-1, -2) @ Bg[:, :, None]  # (b, c, h, p, n)
    else:
        Bg, Cg = B.permute(0, 1, 3, 2, 4), C.permute(0, 1, 3, 2, 4)  # (b, c, g, l, n)
        G = (Cg @ Bg.transpose(-1, -2))[:, :, :, None]  # (b, c, g, 1, l, s): once per group
        Lg = Lmat.permute(0, 2, 1, 3, 4).reshape(bsz, nc, g, q, cl, cl)
        M = (G * Lg).reshape(bsz, nc, nheads, cl, cl)
        states = (xd.transpose(-1, -2).reshape(bsz, nc, g, q * hdim, cl) @ Bg).reshape(bsz, nc, nheads, hdim, n)
    y_diag = M @ xh
    if prev is None:
        prev = torch.zeros_like(states[:, :1])
    states = torch.cat([prev, states], dim=1)  # (b, c+1, h, p, n)
    nc1 = states.shape[1]
    flat = states.permute(0, 2, 1, 3, 4).reshape(bsz, nheads, nc1, hdim * n)
    new_states = (decay_chunk @ flat).reshape(bsz, nheads, nc1, hdim, n).permute(0, 2, 1, 3, 4)
    states, final_state = new_states[:, :-1], new_states[:, -1]
    if g == 1:
        y_off = Cg[:, :, None] @ states.transpose(-1, -2)
    else:
        s_g = states.transpose(-1, -2).reshape(bsz, nc, g, q, n, hdim)
        y_off = (Cg[:, :, :, None] @ s_g).reshape(bsz, nc, nheads, cl, hdim)
    y_off = y_off * torch.exp(A_cs).permute(0, 2, 1, 3)[..., None]
    return (y_diag + y_off).permute(0, 1, 3, 2, 4), final_state


def _is_mamba2_mixer(mod: torch.nn.Module) -> bool:
    """An SSD mixer of any family: Mamba-2 and the HF hybrids (Bamba, GraniteMoeHybrid, FalconH1, Zamba2,
    NemotronH) carry the same `mamba2_chunk_scan`, with the same arguments, in their own modeling module,
    which `_patched_forward` swaps. Recognised by that structure, not by class name, because the
    architecture registry sits above this layer (`models.arch` lists the classes; its test checks them)."""
    return (hasattr(mod, "chunk_size") and hasattr(mod, "n_groups") and hasattr(mod, "A_log")
            and hasattr(sys.modules.get(type(mod).__module__), "mamba2_chunk_scan"))


def find_ssd_sites(model: torch.nn.Module, rewrite: str, precision: str = "f32",
                   include: Iterable[str] = ()) -> list[Site]:
    """One site per Mamba-2 mixer for 'ssd-d1' or 'ssd-d2', with the decision and why."""
    if rewrite not in ("ssd-d1", "ssd-d2"):
        raise InputError(f"unknown SSD rewrite {rewrite!r}; use ssd-d1 or ssd-d2")
    include = list(include)
    sites = []
    for path, mod in model.named_modules():
        if not _is_mamba2_mixer(mod):
            continue
        site = Site(rewrite, path, f"{type(mod).__name__}.ssd", (mod.num_heads, mod.head_dim, mod.ssm_state_size),
                    detail={"chunk_size": mod.chunk_size, "n_groups": mod.n_groups})
        sites.append(site)
        if include and not spec.matches_any(path, include):
            site.skip("not selected")
        elif (why := spec.check_precision(RULES.get(rewrite).spec, precision)) is not None:
            site.skip(why)
        elif rewrite == "ssd-d2" and mod.num_heads % mod.n_groups:
            site.skip(f"{mod.num_heads} heads are not a multiple of n_groups={mod.n_groups}")
        else:
            site.reason = RULES.get(rewrite).spec.math.split(";")[0]
    return sites


def _patched_forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    module = sys.modules[type(self).__module__]
    original = module.mamba2_chunk_scan
    module.mamba2_chunk_scan = self._actiba_ssd
    try:
        return type(self).forward(self, *args, **kwargs)
    finally:
        module.mamba2_chunk_scan = original


def patch_ssd(model: torch.nn.Module, d1: bool = True, d2: bool = True, precision: str = "f32",
              include: Iterable[str] = (), chunk: int | None = None) -> list[Site]:
    """Install d1/d2 (and a chunk length `chunk`, see `ssd_chunk_scan`) on the selected Mamba-2 mixers
    (refusing d1 for bf16/f16); returns all sites."""
    if chunk is not None and chunk < 1:
        raise InputError(f"SSD chunk length must be >= 1, got {chunk}")
    sites = (find_ssd_sites(model, "ssd-d1", precision, include) if d1 else []) + (
        find_ssd_sites(model, "ssd-d2", precision, include) if d2 else [])
    ok = {(s.rewrite, s.name) for s in sites if s.ok}
    for path, mod in model.named_modules():
        if not _is_mamba2_mixer(mod):
            continue
        use1, use2 = ("ssd-d1", path) in ok, ("ssd-d2", path) in ok
        rechunk = bool(chunk) and chunk != mod.chunk_size and (not include or spec.matches_any(path, include))
        if not (use1 or use2 or rechunk):
            continue
        mod._actiba_ssd = partial(ssd_chunk_scan, d1=use1, d2=use2, chunk=chunk if rechunk else None)
        mod.forward = types.MethodType(_patched_forward, mod)
    return sites


def unpatch_ssd(model: torch.nn.Module) -> None:
    for mod in model.modules():
        if "_actiba_ssd" in vars(mod):
            del mod._actiba_ssd
            vars(mod).pop("forward", None)


@contextlib.contextmanager
def ssd_rewrites(model: torch.nn.Module, d1: bool = True, d2: bool = True, precision: str = "f32",
                 include: Iterable[str] = (), chunk: int | None = None) -> Iterator[list[Site]]:
    """Context manager form of `patch_ssd` (restores HF's forward on exit)."""
    sites = patch_ssd(model, d1, d2, precision, include, chunk)
    try:
        yield sites
    finally:
        unpatch_ssd(model)
