"""torch-level ActiBA (scoped: accuracy without export) and activation site ids (`SiteTracker`, `observe_activations`).

ActiBA here is *scoped*: a TorchFunctionMode replaces F.silu / F.softplus / F.gelu / torch.sigmoid /
torch.tanh / torch.exp by the table's `pwl` only while a module selected by module-path glob is running
(and no excluded one), so norms, losses and everything outside the selection keep the exact function.

    with actiba_scope(model, {"silu": table}, include=["backbone.layers.*.mixer"], exclude=["*.norm"]):
        logits = model(ids).logits

The SSD-aware Mamba-2 rewrites d1/d2 are patches of HF's mixers, in `torch_ssd`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .. import activations
from ..errors import InputError
from . import site_ids, spec
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
