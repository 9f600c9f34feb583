"""torch-level rewrites: scoped ActiBA (accuracy without export) and the SSD-aware Mamba-2 rewrites d1/d2.

ActiBA here is *scoped*: a TorchFunctionMode replaces F.silu / F.softplus / F.gelu / torch.sigmoid /
torch.tanh / torch.exp by the table's `pwl` only while a module selected by module-path glob is running
(and no excluded one), so norms, losses and everything outside the selection keep the exact function.

    with actiba_scope(model, {"silu": table}, include=["backbone.layers.*.mixer"], exclude=["*.norm"]):
        logits = model(ids).logits

SSD rewrites (`ssd_rewrites` / `patch_ssd`) install, on each selected HF `Mamba2Mixer` instance, a
forward that runs `ssd_chunk_scan` instead of HF's `mamba2_chunk_scan`; export the model while patched.
"""

from __future__ import annotations

import contextlib
import sys
import types
import warnings
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .. import activations
from ..errors import InputError
from . import site_ids, spec
from .rules import RULES
from .spec import Site

# --- ActiBA ------------------------------------------------------------------------------------------------


def _function_of(func: Any, args: tuple, kwargs: dict) -> tuple[str, float | None] | None:
    """(table function, beta) that a torch call computes, or None if it is not an ActiBA target.

    A call on a weight (an `nn.Parameter`, e.g. Mamba's ``exp(A_log)``) is not a site: it depends on no
    input, exporters fold it into a constant and a device computes it once offline, so it is neither
    numbered nor replaced (this keeps torch and ONNX site ids equal).
    """
    if args and isinstance(args[0], torch.nn.Parameter):
        return None
    for act in activations.torch_callables().get(func, ()):
        if act.torch_select is not None:
            key, pos, value = act.torch_select
            if kwargs.get(key, args[pos] if len(args) > pos else "none") != value:
                continue
        if act.torch_beta is not None:
            key, pos = act.torch_beta
            return act.name, float(kwargs.get(key, args[pos] if len(args) > pos else 1.0))
        return act.name, (1.0 if act.beta else None)
    return None


def _default_pwl(x: torch.Tensor, table: Any) -> torch.Tensor:
    from ..lower.torch_lower import pwl

    return pwl(x, table)


class _ScopedActiba(TorchFunctionMode):
    """Swap activation calls for table lookups while the innermost scope on the stack is 'in'.

    With a per-site `chooser` (TableSet or site-keyed mapping), each call's table is picked by its site
    id from a `SiteTracker`, which counts every call (in scope or not) so ids match `observe_activations`
    and the exported ONNX graph; a call whose site has no table keeps the exact function.
    """

    def __init__(self, tables: dict[str, Any], pwl: Any, record: list[Site] | None,
                 chooser: Any = None, tracker: SiteTracker | None = None) -> None:
        super().__init__()
        self.tables = tables
        self.pwl = pwl
        self.stack: list[tuple[str, bool, bool]] = []
        self.record = record
        self.calls = 0
        self.chooser = chooser
        self.tracker = tracker
        self.seen: set[str] = set()  # every site id met (for keys that match nothing)
        self.set_functions = {spec.canonical_function(getattr(t, "function", "") or "")
                              for t in (chooser.tables.values() if chooser is not None else ())}

    def _choose(self, function: str, site_id: str | None) -> tuple[Any, str]:
        if self.chooser is not None and site_id is not None:
            key = self.chooser.key_for(site_id)
            if key is not None:
                return self.chooser.table_for(site_id), f"set key {key}"
        return self.tables.get(function), f"{function} table"

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        fn = _function_of(func, args, kwargs)
        if fn is None or not args or not isinstance(args[0], torch.Tensor):
            return func(*args, **kwargs)
        site_id = self.tracker.site(fn[0]) if self.tracker is not None else None
        if site_id is not None:
            self.seen.add(site_id)
        if self.stack and self.stack[-1][1]:
            table, source = self._choose(fn[0], site_id)
            if table is None:
                if self.record is not None and fn[0] in self.set_functions:
                    site = Site("actiba", self.stack[-1][0], fn[0], tuple(args[0].shape),
                                dtype=str(args[0].dtype).replace("torch.", ""), detail={"site_id": site_id})
                    self.record.append(site.skip("no table for this site (exact function kept)"))
                return func(*args, **kwargs)
            why = spec.table_mismatch(table, fn[0], fn[1] if fn[0] in ("silu", "softplus") else None)
            if kwargs.get("inplace") or (len(args) > 1 and fn[0] == "silu" and args[1] is True):
                why = why or "in-place call"
            if self.record is not None:
                site = Site("actiba", self.stack[-1][0], fn[0], tuple(args[0].shape),
                            dtype=str(args[0].dtype).replace("torch.", ""))
                if site_id is not None:
                    site.detail["site_id"] = site_id
                    site.detail["table_source"] = source
                site.reason = why or (f"{fn[0]} table ({table.segments} segments, {source})"
                                      + (f"; site {site_id}" if site_id is not None else ""))
                if why:
                    site.skip(why)
                self.record.append(site)
            if why is None:
                self.calls += 1
                return self.pwl(args[0], table).to(args[0].dtype)
        return func(*args, **kwargs)


def _hooks(model: torch.nn.Module, mode: _ScopedActiba, include: list[str], exclude: list[str]) -> list[Any]:
    """Push (path, active, excluded) on entry to every matched module; an excluded ancestor wins."""
    handles = []
    for path, mod in model.named_modules():
        inside = spec.matches_any(path, include) if include else path == ""
        outside = bool(exclude) and spec.matches_any(path, exclude)
        if not (inside or outside):
            continue

        def pre(_m, _a, path=path, inside=inside, outside=outside):
            _, active, excluded = mode.stack[-1] if mode.stack else ("", False, False)
            excluded = excluded or outside
            mode.stack.append((path, (inside or active) and not excluded, excluded))

        def post(_m, _a, _o):
            mode.stack.pop()

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post, always_call=True))
    return handles


@contextlib.contextmanager
def scoped(model: torch.nn.Module, mode: TorchFunctionMode, include: list[str],
           exclude: list[str]) -> Iterator[TorchFunctionMode]:
    """Enter `mode` (which keeps a `.stack`) with the module-path hooks that tell it when a selected
    module runs; shared by the ActiBA scope and the CumBA/ReduBA scope."""
    if include and not any(spec.matches_any(p, include) for p, _ in model.named_modules()):
        raise InputError(f"no module path matches {include}")
    handles = _hooks(model, mode, include, exclude)
    try:
        with mode:
            yield mode
    finally:
        for h in handles:
            h.remove()


def check_set_model(chooser: Any, model: torch.nn.Module) -> None:
    """InputError if a TableSet records a model fingerprint that is not `model`'s (tables calibrated on
    another model's activations would be applied silently otherwise)."""
    from ..fingerprint import check_fingerprint

    check_fingerprint(getattr(chooser, "model", None), model, "table set is for")


@contextlib.contextmanager
def as_activation_calls(model: torch.nn.Module) -> Iterator[int]:
    """Within the block, activation modules that write their function out (the registry's `torch_modules`,
    e.g. GPT-2's NewGELUActivation: tanh-GELU via torch.tanh / torch.pow) call the function's own torch
    callable instead (``F.gelu(x, approximate="tanh")``), so the scope and the site tracker see one call
    where the ONNX rule sees one pattern. Yields how many modules were rerouted; restored on exit.

    Why it is safe: the two forms are the same function and differ by float rounding (≤ 4.8e-7 absolute
    on N(0, 3²) inputs in f32, measured); inside a scope with a table the table replaces either.
    """
    classes = activations.torch_module_classes()
    changed = []
    for mod in model.modules():
        act = classes.get(type(mod))
        if act is None or "forward" in vars(mod):
            continue
        fn = activations.resolve(act.torch[0])
        kw = {act.torch_select[0]: act.torch_select[2]} if act.torch_select else {}
        mod.forward = partial(fn, **kw)
        changed.append(mod)
    try:
        yield len(changed)
    finally:
        for mod in changed:
            del mod.forward


@contextlib.contextmanager
def actiba_scope(model: torch.nn.Module, tables: Any, include: Iterable[str] = (),
                 exclude: Iterable[str] = (), pwl: Any = None, record: list[Site] | None = None
                 ) -> Iterator[_ScopedActiba]:
    """Within the block, activations inside `include` modules (all of `model` if empty) use the tables.

    `tables` maps function names (silu, softplus, gelu, gelu-tanh, sigmoid, tanh, exp) to tables, or is
    a TableSet / a mapping keyed by site ids or site globs (``backbone.layers.0.mixer:softplus#0``,
    ``*:silu#*``; function keys may be mixed in as fallback): each call then gets its site's table and
    calls without one stay exact. A set fingerprinted for another model is an InputError; set keys that
    match no call of the forward passes run in the block are warned about on exit.
    `record`, if given, collects one Site per intercepted call (for a dry run), with its site id.
    """
    from ..tableset import TableSet

    include, exclude = list(include), list(exclude)
    fn_tables, chooser = TableSet.split(tables)
    unknown = [k for k in fn_tables if spec.canonical_function(k) not in spec.ACT_FUNCTIONS]
    if unknown:
        raise InputError(f"no torch ActiBA target for {unknown}; known: {', '.join(spec.ACT_FUNCTIONS)}")
    if chooser is not None:
        check_set_model(chooser, model)
    fn_tables = {spec.canonical_function(k): v for k, v in fn_tables.items()}
    tracker = SiteTracker(model) if (chooser is not None or record is not None) else None
    mode = _ScopedActiba(fn_tables, pwl or _default_pwl, record, chooser, tracker)
    try:
        with as_activation_calls(model), scoped(model, mode, include, exclude):
            yield mode
    finally:
        if tracker is not None:
            tracker.remove()
    if chooser is not None and mode.seen and (bad := chooser.unmatched(mode.seen)):
        warnings.warn(f"actiba: table set key(s) {bad[:4]} matched no activation call of this model",
                      stacklevel=3)


def find_actiba_sites(model: torch.nn.Module, tables: Any, example: Any,
                      include: Iterable[str] = (), exclude: Iterable[str] = (), pwl: Any = None) -> list[Site]:
    """Run `model(example)` once and list every activation call the scope would replace.

    Each Site carries ``detail["site_id"]``; with per-site tables, keys matching no call are an
    InputError here (the dry run sees every call), and calls without a table are listed as skipped.
    """
    from ..tableset import TableSet

    sites: list[Site] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.inference_mode(), actiba_scope(model, tables, include, exclude, pwl=pwl, record=sites) as mode:
            model(example) if not isinstance(example, dict) else model(**example)
    _, chooser = TableSet.split(tables)
    if chooser is not None:
        chooser.check_unmatched(mode.seen, "this model")
    return sites


# --- site ids (see site_ids.py) ------------------------------------------------------------------------


def _folded(mod: torch.nn.Module) -> bool:
    cls = type(mod)
    return site_ids.is_folded_class(f"{cls.__module__}.{cls.__qualname__}")


class SiteTracker:
    """Gives every activation call its site id ``path:function#k`` while hooks are installed.

    A stack of (module path, per-function call counters) follows module entry/exit; folded activation
    wrappers push nothing, so their calls count for the parent (as in the exported ONNX graph).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.stack: list[tuple[str, dict[str, int]]] = []
        self.handles: list[Any] = []
        for path, mod in model.named_modules():
            if path and _folded(mod):
                continue

            def pre(_m, _a, path=path):
                self.stack.append((path, {}))

            def post(_m, _a, _o):
                self.stack.pop()

            self.handles.append(mod.register_forward_pre_hook(pre))
            self.handles.append(mod.register_forward_hook(post, always_call=True))

    def site(self, function: str) -> str:
        """The id of the next `function` call in the current module (outside any module: the root)."""
        if not self.stack:
            self.stack.append(("", {}))
        path, counts = self.stack[-1]
        k = counts.get(function, 0)
        counts[function] = k + 1
        return site_ids.format_site(path, function, k)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


OnCall = Any  # Callable[[str, str, float | None, torch.Tensor], torch.Tensor | None]


class _Observer(TorchFunctionMode):
    def __init__(self, tracker: SiteTracker, on_call: OnCall, functions: set[str] | None) -> None:
        super().__init__()
        self.tracker, self.on_call, self.functions = tracker, on_call, functions

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        fn = _function_of(func, args, kwargs)
        if fn is not None and isinstance(args[0], torch.Tensor) and (self.functions is None or fn[0] in self.functions):
            site = self.tracker.site(fn[0])
            out = self.on_call(site, fn[0], fn[1], args[0])
            if out is not None:
                return out
        return func(*args, **kwargs)


@contextlib.contextmanager
def observe_activations(model: torch.nn.Module, on_call: OnCall,
                        functions: Iterable[str] | None = None) -> Iterator[SiteTracker]:
    """Within the block, call ``on_call(site_id, function, beta, x)`` for every activation call.

    `on_call` returns a tensor to replace the call's result, or None to run the exact function.
    `functions` limits which functions are observed (all ActiBA targets if None); calls of other
    functions are not counted, so k is per function and does not depend on this filter.
    """
    tracker = SiteTracker(model)
    mode = _Observer(tracker, on_call, None if functions is None else {spec.canonical_function(f) for f in functions})
    try:
        with as_activation_calls(model), mode:
            yield tracker
    finally:
        tracker.remove()


# --- SSD-aware Mamba-2 rewrites (d1, d2) ----------------------------------------------------------------------

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
