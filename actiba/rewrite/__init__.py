"""Model graph rewrites for state-space models on NPUs: CumBA, ReduBA, ActiBA (XAMBA), plus SSD-aware ones.

One rule per rewrite lives in `rules` (match / build on the View / Builder protocols, in the one order
`rules.RULES`), its description and limits in `spec`; `onnx_rw` / `openvino_rw` drive the rules over
ONNX / OpenVINO graphs and `torch_rw` / `torch_ssd` hold the torch-level forms. `find_sites` / `apply` here dispatch
on the model's type, so a caller that measures per site (CumSum on axis −2 is faster as MatMul on CPU,
on the last axis slower) can pick sites:

    sites = find_sites(model, "cumba")                       # onnx.ModelProto or openvino.Model
    new, done = apply(model, ["cumba"], sites=[s for s in sites if s.ok and s.axis == -2])

The SSD rewrites "ssd-d1" / "ssd-d2" work on ONNX / OpenVINO graphs (`onnx_ssd`, `openvino_ssd`; d1's
segment sum is matched by value, d2's einsums by equation through the backend-neutral `ssd_d2`) and on
a torch `nn.Module` (patched in place; undo with `torch_ssd.unpatch_ssd`); torch ActiBA is the
`torch_rw.actiba_scope` context manager.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import InputError
from .rules import RULES
from .spec import Site

__all__ = ["RULES", "SPECS", "Site", "apply", "find_sites", "rewrite_model"]


def __getattr__(name: str) -> Any:
    if name == "SPECS":  # {rule name: RewriteSpec}, each held by its rule module
        return {r.name: r.spec for r in RULES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rewrite_model(model: Any, request: Any) -> Any:
    """The verified rewrite pipeline (`pipeline.rewrite_model`): staging, tolerances, refusal, inventory."""
    from .pipeline import rewrite_model as run

    return run(model, request)


def _level(model: Any) -> str:
    kind = type(model).__module__ + "." + type(model).__name__
    if kind.startswith("onnx") and type(model).__name__ == "ModelProto":
        return "onnx"
    if type(model).__name__ == "Model" and "openvino" in kind:
        return "openvino"
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return "torch"
    except ImportError:
        pass
    raise InputError(f"cannot rewrite a {kind}; expected onnx.ModelProto, openvino.Model or torch.nn.Module")


def find_sites(model: Any, rewrite: str, tables: dict[str, Any] | None = None,
               site_tables: list[tuple[str, Any]] | None = None, precision: str = "f32") -> list[Site]:
    """Every place `rewrite` could apply in `model`, each with decision ('rewrite'/'skip') and reason."""
    level = _level(model)
    if level == "torch":
        from . import torch_ssd

        return torch_ssd.find_ssd_sites(model, rewrite, precision)
    return _backend(level).find_sites(model, rewrite, tables, site_tables, precision=precision)


def _backend(level: str) -> Any:
    if level == "onnx":
        from . import onnx_rw

        return onnx_rw
    from . import openvino_rw

    return openvino_rw


def apply(model: Any, rewrites: Iterable[str], sites: Iterable[Site | str] | None = None,
          tables: dict[str, Any] | None = None, site_tables: list[tuple[str, Any]] | None = None,
          lowering: str = "auto", precision: str = "f32") -> tuple[Any, list[Site]]:
    """Apply `rewrites` at `sites` (all eligible if None); returns (model, every site considered).

    ONNX / OpenVINO: a rewritten copy; the rules run in `rules.RULES` order, each SSD rule as a stage of
    its own verified on the whole model (d1 is refused for bf16/f16 graphs or `precision`). torch: the
    same module, patched in place. Verified, tolerance-checked rewriting is `pipeline.rewrite_model`.
    """
    level = _level(model)
    rules = RULES.ordered(rewrites)
    if level == "torch":
        return _apply_torch(model, [r.name for r in rules], sites, precision)
    sites = None if sites is None else list(sites)
    done: list[Site] = []
    rest, ran = [], False
    for rule in rules:
        if rule.stage == "ssd":
            ran = True
            if level == "onnx":
                from . import onnx_ssd as ssd
            else:
                from . import openvino_ssd as ssd  # type: ignore[no-redef]
            model, found = ssd.apply(model, sites, precision, rewrite=rule.name)
            done += found
        else:
            rest.append(rule.name)
    if not rest:
        return (model if ran else _backend(level).apply(model, [])[0]), done
    model, more = _backend(level).apply(model, rest, sites, tables, site_tables, lowering, precision)
    return model, done + more


def _apply_torch(model: Any, rewrites: list[str], sites: Iterable[Site | str] | None,
                 precision: str) -> tuple[Any, list[Site]]:
    from . import torch_ssd

    bad = set(rewrites) - {"ssd-d1", "ssd-d2"}
    if bad:
        raise InputError(f"torch models take ssd-d1 / ssd-d2 here (ActiBA: torch_rw.actiba_scope), not {bad}")
    include = None if sites is None else [s.name if isinstance(s, Site) else s for s in sites]
    if include == []:  # nothing selected: report the sites, patch nothing
        done = [s.skip("not selected") if s.ok else s for rw in rewrites
                for s in torch_ssd.find_ssd_sites(model, rw, precision)]
        return model, done
    return model, torch_ssd.patch_ssd(model, "ssd-d1" in rewrites, "ssd-d2" in rewrites, precision,
                                      include or ())
