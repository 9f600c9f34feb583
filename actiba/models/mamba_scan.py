"""Mamba (v1) selective scan in chunked parallel form, patched into Hugging Face `MambaMixer`s.

Why: HF's torch path runs the scan ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t`` as a Python loop, so an
exported graph holds one copy of the step per token (and its autograd is quadratic in length). The
chunked form follows Mamba-2's SSD: inside a chunk of Q steps, a CumSum of the log-decays ``dt A`` gives
every pairwise decay ``exp(L_t - L_s)`` (masked to s <= t, so every exponent is <= 0 and nothing
overflows), a masked matrix product applies them, and a short loop over chunks carries the state. The
graph then has CumSum / MatMul / ReduceSum nodes that the CumBA / ReduBA rewrites target.

Two scans are offered, both exact (f32): ``"chunked"`` (for export and fast inference) and
``"recurrent"`` (a loop with a hand-written backward pass, linear in length, used for training).
"""

from __future__ import annotations

import contextlib
import inspect
import types
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F

ScanMode = Literal["chunked", "doubling", "stepped", "recurrent", "reference"]


def selective_scan_reference(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor) -> torch.Tensor:
    """Plain per-step scan (the ground truth). x, dt: (b, d, l); A: (d, n); B, C: (b, l, n) -> y (b, d, l)."""
    b, d, length = x.shape
    h = x.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(length):
        h = torch.exp(dt[:, :, t, None] * A) * h + (dt[:, :, t] * x[:, :, t])[..., None] * B[:, None, t]
        ys.append((h * C[:, None, t]).sum(-1))
    return torch.stack(ys, dim=-1)


class _RecurrentScan(torch.autograd.Function):
    """The selective scan as one autograd node: a time-major loop whose every step works on small
    (b, d, n) tensors, with a hand-written reverse loop for the backward pass. Why: autograd through a
    Python loop of slices costs O(length^2) memory traffic; this keeps training linear in length."""

    @staticmethod
    def forward(ctx, dt, x, A, B, C):  # dt, x: (l, b, d); A: (d, n); B, C: (l, b, n)
        length, b, d = x.shape
        states = x.new_empty(length, b, d, A.shape[1])
        y = x.new_empty(length, b, d)
        h = x.new_zeros(b, d, A.shape[1])
        for t in range(length):
            h = torch.exp(dt[t, :, :, None] * A) * h + (dt[t] * x[t])[:, :, None] * B[t, :, None, :]
            states[t] = h
            y[t] = torch.bmm(h, C[t, :, :, None])[..., 0]
        ctx.save_for_backward(dt, x, A, B, C, states)
        return y

    @staticmethod
    def backward(ctx, gy):
        dt, x, A, B, C, states = ctx.saved_tensors
        gy = gy.contiguous()
        g_dt, g_x = torch.empty_like(dt), torch.empty_like(x)
        g_B, g_C = torch.empty_like(B), torch.empty_like(C)
        g_A = torch.zeros_like(states[0])
        gh = torch.zeros_like(states[0])
        for t in range(x.shape[0] - 1, -1, -1):
            g_C[t] = torch.bmm(gy[t, :, None, :], states[t])[:, 0]
            gh = gh + gy[t, :, :, None] * C[t, :, None, :]
            a = torch.exp(dt[t, :, :, None] * A)
            g_log_a = gh * states[t - 1] * a if t > 0 else torch.zeros_like(gh)
            gh_b = torch.bmm(gh, B[t, :, :, None])[..., 0]  # (b, d)
            g_dt[t] = (g_log_a * A).sum(-1) + gh_b * x[t]
            g_A += g_log_a * dt[t, :, :, None]
            g_x[t] = gh_b * dt[t]
            g_B[t] = torch.bmm((dt[t] * x[t])[:, None, :], gh)[:, 0]
            gh = gh * a
        return g_dt, g_x, g_A.sum(0), g_B, g_C


def selective_scan_recurrent(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor) -> torch.Tensor:
    """Same result as `selective_scan_reference`; fast to train through (custom backward)."""
    y = _RecurrentScan.apply(dt.permute(2, 0, 1).contiguous(), x.permute(2, 0, 1).contiguous(), A,
                             B.transpose(0, 1).contiguous(), C.transpose(0, 1).contiguous())
    return y.permute(1, 2, 0)


def _carry(hlast: torch.Tensor, chunk_dt: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """State entering each chunk from the chunks before it (zero for the first).

    hlast: (b, chunks, d, n), each chunk's final state from its own inputs; chunk_dt: (b, chunks, d), the
    sum of dt over each chunk. entering_c = sum_{c' < c} exp(A (P_{c-1} - P_{c'})) hlast_{c'} with P the
    prefix sum of chunk_dt: the pairwise differences are taken on the (b, d, c, c') tensor of *dt* sums
    (n times smaller) and masked with +inf, which A < 0 turns into exp(-inf) = 0.
    """
    prefix = torch.cumsum(chunk_dt, dim=1).transpose(1, 2)  # (b, d, chunks)
    start = prefix - chunk_dt.transpose(1, 2)  # P_{c-1}
    ids = torch.arange(prefix.shape[-1], device=prefix.device)
    before = ids[:, None] > ids[None, :]
    gap = (start[..., :, None] - prefix[..., None, :]).masked_fill(~before, float("inf"))  # (b, d, c, c')
    weight = torch.exp(gap[..., None] * A[None, :, None, None, :])  # (b, d, c, c', n)
    return torch.einsum("bdcen,bedn->bcdn", weight, hlast)


def _pad_to_chunks(x: torch.Tensor, dt: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   q: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-pad the time axis to a multiple of q. dt = 0 on the padding means decay 1 and no input, so
    the real positions are untouched (callers drop the padded outputs)."""
    pad = (q - x.shape[-1] % q) % q
    x, dt = F.pad(x, (0, pad)), F.pad(dt, (0, pad))
    B, C = F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
    return x, dt, B, C


def selective_scan_chunked(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """SSD-style chunked scan; same result as `selective_scan_reference` up to float rounding.

    No Python loop depends on the length, so one exported graph serves every sequence length. The
    log-decays are ``A * cumsum(dt)`` — one CumSum over dt alone, not over the (d, n)-times larger dt·A —
    and the causal mask is applied to the (q × q) dt differences before they are multiplied by A.
    """
    b, d, length = x.shape
    n = A.shape[1]
    q = chunk_size
    x, dt, B, C = _pad_to_chunks(x, dt, B, C, q)
    dtc = dt.reshape(b, d, -1, q)  # (b, d, chunks, q)
    cum = torch.cumsum(dtc, dim=-1)  # within each chunk
    steps = torch.arange(q, device=x.device)
    causal = steps[:, None] >= steps[None, :]
    gap = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("inf"))  # (b, d, chunks, q, q)
    decay = torch.exp(gap[..., None, :, :] * A[None, :, None, :, None, None])  # (b, d, chunks, n, q, q)
    u = ((dt * x)[..., None] * B[:, None]).reshape(b, d, -1, q, n).transpose(3, 4)  # (b, d, chunks, n, q)
    h_intra = torch.matmul(decay, u[..., None]).squeeze(-1)  # state from this chunk's inputs only
    entering = _carry(h_intra[..., -1].transpose(1, 2), cum[..., -1].transpose(1, 2), A)  # (b, chunks, d, n)
    h = h_intra + torch.exp(cum[..., None, :] * A[None, :, None, :, None]) * entering.permute(0, 2, 1, 3)[..., None]
    c_t = C.reshape(b, -1, q, n).permute(0, 1, 3, 2)[:, None]  # (b, 1, chunks, n, q)
    y = (h * c_t).sum(3).reshape(b, d, -1)
    return y[..., :length]


def selective_scan_doubling(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                            C: torch.Tensor, chunk_size: int = 32) -> torch.Tensor:
    """Chunked scan with a log-depth (Hillis–Steele) scan inside each chunk; same result as the reference.

    Why: the q × q form evaluates exp for every pair of steps in a chunk (q times the loop's work, since
    Mamba v1 decays per (channel, state)). Here the recurrence h_t = a_t h_{t-1} + u_t is combined by
    doubling: for k = 1, 2, 4, .. q/2, (a_t, u_t) <- (a_t a_{t-k}, u_t + a_t u_{t-k}) — log2(q) rounds of
    plain multiply-adds over the (b, chunks, q, d, n) tensor and one exp per element, like the loop. The
    decays are products of numbers in (0, 1], so nothing overflows or cancels. Chunks are then joined by
    `_carry` (quadratic only in the number of chunks). Time sits before (d, n), so every shift moves whole
    contiguous (d, n) blocks.
    """
    b, d, length = x.shape
    n = A.shape[1]
    q = chunk_size
    if q & (q - 1):
        raise ValueError(f"chunk_size must be a power of two for the doubling scan, got {q}")
    x, dt, B, C = _pad_to_chunks(x, dt, B, C, q)
    dtt = dt.transpose(1, 2).reshape(b, -1, q, d)  # (b, chunks, q, d)
    a = torch.exp(dtt[..., None] * A)  # (b, chunks, q, d, n)
    u = (dtt * x.transpose(1, 2).reshape(b, -1, q, d))[..., None] * B.reshape(b, -1, q, 1, n)
    k = 1
    while k < q:
        u = u + a * F.pad(u[:, :, :-k], (0, 0, 0, 0, k, 0))
        if 2 * k < q:  # the last round's decay products are not needed
            a = a * F.pad(a[:, :, :-k], (0, 0, 0, 0, k, 0), value=1.0)
        k *= 2
    # a no longer holds the decay since the chunk start after the last round; rebuild it from cumsum(dt)
    cum = torch.cumsum(dtt, dim=2)  # (b, chunks, q, d)
    entering = _carry(u[:, :, -1], cum[:, :, -1], A)  # (b, chunks, d, n)
    h = u + torch.exp(cum[..., None] * A) * entering[:, :, None]
    y = torch.matmul(h, C.reshape(b, -1, q, n, 1)).reshape(b, -1, d)  # (b, L, d)
    return y.transpose(1, 2)[..., :length]


def selective_scan_stepped(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                           C: torch.Tensor, chunk_size: int = 16) -> torch.Tensor:
    """Chunked scan stepping through the q positions of *all chunks at once*; same result as the reference.

    Why: HF's loop is one small op per token, the q × q form does q times the work. Here the recurrence
    runs step by step inside chunks, but each step updates every chunk together, so an exported graph
    has ~q steps per layer whatever the length (q·(2 + 3) ops), and the arithmetic is about twice the
    loop's: pass 1 finds each chunk's final state from its own inputs, `_carry` joins the chunks
    (quadratic only in their number), pass 2 reruns the steps from the true entering state and reads
    y_t = C_t · h_t. Only products of decays in (0, 1] and sums: nothing overflows or cancels.
    """
    b, d, length = x.shape
    n = A.shape[1]
    q = chunk_size
    x, dt, B, C = _pad_to_chunks(x, dt, B, C, q)
    dtq = dt.reshape(b, d, -1, q).permute(3, 0, 2, 1)  # (q, b, chunks, d)
    xq = x.reshape(b, d, -1, q).permute(3, 0, 2, 1)
    a = torch.exp(dtq[..., None] * A).unbind(0)  # q × (b, chunks, d, n)
    Bq = B.reshape(b, -1, q, n).permute(2, 0, 1, 3)[:, :, :, None, :]  # (q, b, chunks, 1, n)
    u = ((dtq * xq)[..., None] * Bq).unbind(0)  # q × (b, chunks, d, n)
    h = u[0]
    for t in range(1, q):  # pass 1: each chunk's own final state
        h = a[t] * h + u[t]
    entering = _carry(h, dtq.sum(0), A)  # (b, chunks, d, n)
    Cq = C.reshape(b, -1, q, n).permute(2, 0, 1, 3)[..., None].unbind(0)  # q × (b, chunks, n, 1)
    h, ys = entering, []
    for t in range(q):  # pass 2: the true states, read out by C_t
        h = a[t] * h + u[t]
        ys.append(torch.matmul(h, Cq[t]))  # (b, chunks, d, 1)
    y = torch.cat(ys, dim=-1)  # (b, chunks, d, q)
    return y.permute(0, 2, 1, 3).reshape(b, d, -1)[..., :length]


def mixer_forward(mixer: torch.nn.Module, hidden_states: torch.Tensor, scan: Callable[..., torch.Tensor],
                  attention_mask: torch.Tensor | None = None,
                  norms: dict[str, torch.nn.Module] | None = None) -> torch.Tensor:
    """HF `MambaMixer` full-sequence forward (no cache) using `scan` for the selective scan.

    `norms` maps "dt", "b", "c" to the modules FalconMamba and Jamba apply to the low-rank time step, B
    and C between `x_proj` and the scan (skipping them puts FalconMamba's logits off by 37 %)."""
    dtype = hidden_states.dtype
    if attention_mask is not None:
        hidden_states = hidden_states * attention_mask[:, :, None].to(dtype)
    projected = mixer.in_proj(hidden_states).transpose(1, 2)
    x, gate = projected.chunk(2, dim=1)
    length = x.shape[-1]
    x = mixer.act(mixer.conv1d(x)[..., :length])
    if attention_mask is not None:
        x = x * attention_mask[:, None, :].to(x.dtype)
    rank, n = mixer.time_step_rank, mixer.ssm_state_size
    time_step, B, C = torch.split(mixer.x_proj(x.transpose(1, 2)), [rank, n, n], dim=-1)
    if norms:
        time_step, B, C = norms["dt"](time_step), norms["b"](B), norms["c"](C)
    dt = F.softplus(mixer.dt_proj(time_step).transpose(1, 2).float())
    A = -torch.exp(mixer.A_log.float())
    y = scan(x.float(), dt, A, B.float(), C.float())
    y = (y + x.float() * mixer.D.float()[None, :, None]) * F.silu(gate.float())
    return mixer.out_proj(y.transpose(1, 2).to(dtype))


def _entry(model: torch.nn.Module):
    from . import arch

    entry = arch.of(model)
    return entry if entry is not None and entry.ssm == arch.SELECTIVE_SCAN else None


def _mixers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The selective-scan mixers of a Mamba-1 family model (the registry's paths and class; a bare
    `MambaMixer` stack without a known config counts too)."""
    entry = _entry(model)
    if entry is not None:
        found = [m for _, m in entry.mixers(model)]
    else:
        found = [m for m in model.modules() if type(m).__name__ == "MambaMixer"]
    if not found:
        raise TypeError(f"{type(model).__name__} has no Mamba-1 mixer layers (is it a Mamba v1 model?)")
    return found


def _norms(model: torch.nn.Module, mixer: torch.nn.Module) -> dict[str, torch.nn.Module] | None:
    """The mixer's B / C / dt norms named by the registry entry's `scan_norms` (``b_layernorm`` -> "b")."""
    entry = _entry(model)
    if entry is None or not entry.scan_norms:
        return None
    norms = {name.split("_", 1)[0]: getattr(mixer, name) for name in entry.scan_norms}
    if set(norms) != {"b", "c", "dt"}:
        raise TypeError(f"{entry.model_type}: scan_norms {entry.scan_norms} do not name the b, c and dt norms")
    return norms


def _scan_fn(mode: ScanMode, chunk_size: int) -> Callable[..., torch.Tensor]:
    if mode == "chunked":
        return lambda *a: selective_scan_chunked(*a, chunk_size=chunk_size)
    if mode == "stepped":
        return lambda *a: selective_scan_stepped(*a, chunk_size=chunk_size)
    if mode == "doubling":
        return lambda *a: selective_scan_doubling(*a, chunk_size=chunk_size)
    if mode == "recurrent":
        return selective_scan_recurrent
    if mode == "reference":
        return selective_scan_reference
    raise ValueError(f"unknown scan mode {mode!r}")


def patch_scan(model: torch.nn.Module, mode: ScanMode = "chunked", chunk_size: int = 32) -> None:
    """Replace every MambaMixer's no-cache forward with `mode`; cached (generation) calls keep HF's path."""
    scan = _scan_fn(mode, chunk_size)
    for mixer in _mixers(model):
        original = mixer.__dict__.get("_actiba_original_forward", mixer.forward)
        norms = _norms(model, mixer)

        # transformers >= 5.x names the mixer's cache `cache` (`cache_params` is deprecated, removed
        # in 5.40); take either, pass on the name the wrapped forward declares
        name = "cache" if "cache" in inspect.signature(original).parameters else "cache_params"

        def forward(self, hidden_states, cache=None, attention_mask=None, _orig=original, _name=name,
                    cache_params=None, _norms=norms, **kw):
            given = cache if cache is not None else cache_params
            if given is not None:
                return _orig(hidden_states, attention_mask=attention_mask, **{_name: given}, **kw)
            return mixer_forward(self, hidden_states, scan, attention_mask, _norms)

        mixer._actiba_original_forward = original
        mixer.forward = types.MethodType(forward, mixer)


def unpatch_scan(model: torch.nn.Module) -> None:
    """Undo `patch_scan`."""
    for mixer in _mixers(model):
        original = mixer.__dict__.pop("_actiba_original_forward", None)
        if original is not None:
            mixer.forward = original


@contextlib.contextmanager
def chunked_scan(model: torch.nn.Module, chunk_size: int = 32, mode: ScanMode = "chunked") -> Iterator[None]:
    """Context manager: run (or export) `model` with the chunked selective scan."""
    patch_scan(model, mode, chunk_size)
    try:
        yield
    finally:
        unpatch_scan(model)
