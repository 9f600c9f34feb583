"""One rewrite pipeline for `actiba rewrite`, the evaluator (`evaluate.build`) and the Python API.

    from actiba.rewrite.pipeline import Request, rewrite_model
    result = rewrite_model(model, Request(rewrites=("cumba", "actiba"), tables={"silu": table}))
    result.model, result.sites, result.stages, result.inventory_diff()

Stages follow the rule order (`rules.RULES`): each SSD rule first, verifying itself on the whole model
(offending sites skipped); then the exact rules (contraction, CumBA, ReduBA), verified against the
SSD result; then ActiBA, verified against the exactly rewritten model, because its difference is the
tables' approximation error, not a bug. Both tolerances are relative to the output scale
s = max(1, max |reference output|): exact rewrites may differ by `tolerance`·s (default 1e-4: float32
summation order), ActiBA by `act_tolerance`·s (default 50 × the largest table max_abs error — the error
of one activation, amplified through the network, scales with the outputs as the exact one does).

Refusals are one `InputError` line: a stage over its tolerance (unless `force`), or a requested rewrite
that rewrote no site (unless `allow_noop`: an unchanged copy is rarely what was meant — CumBA on a
model without CumSum, an axis filter that matches nothing, a table for the wrong function).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from . import site_ids, spec
from .rules import RULES
from .spec import Site

EXACT_TOLERANCE = 1e-4   # relative to the output scale: float32 summation-order differences
ACT_TOLERANCE_X = 50.0   # ActiBA default: this many times the largest table error, relative to the scale


@dataclass
class Request:
    """What to rewrite and how to judge it.

    `rewrites`: rule names (any order; they run in `rules.RULES` order; "actiba" is implied by tables).
    `include` / `exclude`: site-name globs for every rule; `site_globs`: {rule: globs} for one rule;
    `cumba_axes`: only CumSums on these (negative) axes; `cumba_min_n`: only CumSums at least this long.
    `verify`: run the verification stages (the evaluator measures accuracy itself and turns it off).
    `inputs`: real inputs (name -> array) checked besides random ones.
    `act_scope`: module-path globs ActiBA sites must lie in, by their site id (see `skip_outside_scope`).
    """

    rewrites: Sequence[str] = ()
    tables: Mapping[str, Any] | Any = None
    site_tables: Sequence[tuple[str, Any]] = ()
    precision: str = "f32"
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    site_globs: Mapping[str, Sequence[str]] = field(default_factory=dict)
    cumba_axes: Sequence[int] | None = None
    cumba_min_n: int = 0
    lowering: str = "auto"
    tolerance: float | None = None
    act_tolerance: float | None = None
    inputs: dict[str, np.ndarray] | None = None
    verify: bool = True
    force: bool = False
    allow_noop: bool = False
    dry_run: bool = False
    act_scope: Sequence[str] = ()

    def rule_names(self) -> list[str]:
        names = list(self.rewrites)
        if (self.tables or self.site_tables) and "actiba" not in names:
            names.append("actiba")
        return [r.name for r in RULES.ordered(names)]


@dataclass
class Stage:
    """One verified stage: the largest output difference, the tolerance it was held to, and the scale."""

    name: str
    max_diff: float
    tolerance: float
    scale: float
    note: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.max_diff <= self.tolerance)


@dataclass
class Result:
    """The rewritten model, every site considered, the verified stages and the op inventories."""

    model: Any
    original: Any
    level: str
    sites: list[Site]
    stages: list[Stage] = field(default_factory=list)
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    noop: list[str] = field(default_factory=list)

    @property
    def rewritten(self) -> int:
        return sum(s.ok for s in self.sites)

    def counts(self) -> dict[str, int]:
        """{rule: sites rewritten}."""
        out: dict[str, int] = {}
        for s in self.sites:
            if s.ok:
                out[s.rewrite] = out.get(s.rewrite, 0) + 1
        return out

    def inventory_diff(self) -> str:
        return spec.inventory_diff(self.before, self.after)


def _backends(model: Any) -> tuple[str, Any, Any]:
    from . import _level

    level = _level(model)
    if level == "onnx":
        from . import onnx_rw, onnx_ssd

        return level, onnx_rw, onnx_ssd
    if level == "openvino":
        from . import openvino_rw, openvino_ssd

        return level, openvino_rw, openvino_ssd
    raise InputError("rewrite_model takes an ONNX or OpenVINO model (torch: rewrite.apply / torch_rw.actiba_scope)")


def skip_outside_scope(sites: list[Site], modules: Sequence[str]) -> None:
    """Skip (in place) the ActiBA sites whose site id lies outside the `modules` path globs and their
    submodules, so a graph approximates the calls torch's `actiba_scope(include=modules)` does (a hybrid's
    MLP and expert SiLUs stay exact when the scope is its SSM mixers). No-op for an empty scope."""
    if not modules:
        return
    for s in sites:
        if not s.ok or s.rewrite != "actiba":
            continue
        sid = s.detail.get("site_id")
        if sid is None:
            s.skip("outside the activation scope: the node has no site id (no namespace metadata)")
        elif not site_ids.in_scope(sid, modules):
            s.skip(f"outside the activation scope (site {sid})")


def chooser(req: Request) -> Callable[[list[Site]], None]:
    """The request's site selection, applied in place (skipped sites get the reason)."""

    def choose(sites: list[Site]) -> None:
        spec.select(sites, req.include, req.exclude)
        skip_outside_scope(sites, req.act_scope)
        for s in sites:
            if not s.ok:
                continue
            globs = req.site_globs.get(s.rewrite)
            if globs is not None and not any(fnmatch.fnmatchcase(s.name, g) for g in globs):
                s.skip(f"not selected (name matches none of the {s.rewrite} sites {list(globs)})")
            elif s.rewrite == "cumba" and req.cumba_axes and s.axis not in req.cumba_axes:
                s.skip(f"axis {s.axis} not in --cumba-axis {list(req.cumba_axes)}")
            elif s.rewrite == "cumba" and req.cumba_min_n and int(s.detail.get("n", 0)) < req.cumba_min_n:
                s.skip(f"n={s.detail.get('n')} below the minimum length {req.cumba_min_n}")

    return choose


def _with_reasons(done: list[Site], found: list[Site]) -> list[Site]:
    """Sites from an apply, with the selection's reason for the ones it was told to leave."""
    why = {s.name: s.reason for s in found if not s.ok}
    for s in done:
        if not s.ok and s.reason == "not selected" and s.name in why:
            s.reason = why[s.name]
    return done


def _scale(backend: Any, model: Any) -> float:
    ref = backend.run(model, backend.random_inputs(model))
    return max(1.0, max((float(np.max(np.abs(r))) if np.size(r) else 0.0 for r in ref), default=0.0))


def _stage(backend: Any, name: str, ref: Any, new: Any, tolerance: float, inputs: Any, note: str = "") -> Stage:
    scale = _scale(backend, ref)
    return Stage(name, float(backend.compare(ref, new, inputs)), tolerance * scale, scale, note)


def rewrite_model(model: Any, request: Request, log: Callable[[str, Result], None] | None = None) -> Result:
    """Rewrite `model` (onnx.ModelProto or openvino.Model; never modified) as `request` says; verify each
    stage; refuse (InputError) over tolerance or when a requested rewrite changed nothing.

    `log(event, result)` is told "sites" (after rewriting), "inventory" and "stage" (after each verified
    stage), so a caller can print progress before a refusal."""
    log = log or (lambda event, result: None)
    level, backend, ssd = _backends(model)
    names = request.rule_names()
    if not names:
        raise InputError("nothing to do: no rewrite requested")
    for name in names:
        if level not in RULES.get(name).levels:
            raise InputError(f"{name} is implemented for {' / '.join(RULES.get(name).levels)} models only")
    choose = chooser(request)
    sites: list[Site] = []
    stage0 = model
    for name in (n for n in names if RULES.get(n).stage == "ssd"):
        found = backend.find_sites(stage0, name, precision=request.precision)
        choose(found)
        stage0, done = ssd.apply(stage0, [s.name for s in found if s.ok], request.precision,
                                 verify_mode="model" if request.verify else "none", rewrite=name)
        sites += _with_reasons([d for d in done if d.rewrite == name], found)
    exact = [n for n in names if RULES.get(n).stage == "exact"]
    stage1, exact_sites = _apply(backend, stage0, exact, request, choose)
    act = [n for n in names if RULES.get(n).stage == "approx"]
    final, act_sites = _apply(backend, stage1, act, request, choose)
    sites += exact_sites + act_sites
    result = Result(final, model, level, sites)
    result.noop = [n for n in names if not any(s.ok for s in sites if s.rewrite == n)]
    log("sites", result)
    if request.dry_run:
        return result
    result.before, result.after = backend.inventory(model), backend.inventory(final)
    log("inventory", result)
    if request.verify:
        if any(s.ok for s in exact_sites):
            tol = EXACT_TOLERANCE if request.tolerance is None else request.tolerance
            result.stages.append(_stage(backend, "exact rewrites", stage0, stage1, tol, request.inputs))
            log("stage", result)
        if any(s.ok for s in act_sites):
            errs = [e for s in act_sites if s.ok and (e := spec.table_error(s.match.table)) is not None]
            largest = max(errs) if errs else None
            tol = request.act_tolerance if request.act_tolerance is not None else (
                ACT_TOLERANCE_X * largest if largest is not None else 0.5)
            note = "" if largest is None else f"largest table error {largest:.3g}"
            result.stages.append(_stage(backend, "ActiBA", stage1, final, tol, request.inputs, note))
            log("stage", result)
    option = {"exact rewrites": "--tolerance", "ActiBA": "--act-tolerance"}
    result.failures = [f"{st.name}: output differs by {st.max_diff:.3g} > {option[st.name]} "
                       f"{st.tolerance / st.scale:g} × output scale {st.scale:.3g} = {st.tolerance:.3g}"
                       for st in result.stages if not st.ok]
    if result.failures and not request.force:
        raise InputError("; ".join(result.failures) + "; nothing written (use --force to save anyway)")
    if result.noop and not request.allow_noop:
        raise InputError(noop_message(result))
    return result


def noop_message(result: Result) -> str:
    parts = []
    for name in result.noop:
        reasons = sorted({s.reason for s in result.sites if s.rewrite == name and s.reason})
        seen = sum(s.rewrite == name for s in result.sites)
        why = f"{seen} site(s) found, none rewritten: {'; '.join(reasons)[:300]}" if seen else "no site found"
        parts.append(f"{name} changed nothing ({why})")
    return "; ".join(parts) + "; nothing written (use --allow-noop to write an unchanged copy)"


def _apply(backend: Any, model: Any, names: list[str], req: Request,
           choose: Callable[[list[Site]], None]) -> tuple[Any, list[Site]]:
    """Apply the rules `names` in order, each selected by `choose` on the model the one before left."""
    if not names:
        return model, []
    return backend.apply(model, names, tables=req.tables, site_tables=list(req.site_tables), lowering=req.lowering,
                         precision=req.precision, choose=choose)
