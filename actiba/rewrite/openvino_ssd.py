"""SSD rewrites d1 / d2 on OpenVINO models, each verified on the whole model (as `onnx_ssd` for ONNX).

The rules `rules.ssd_d1` / `rules.ssd_d2` do the matching and the replacement through `openvino_view`.
After ONNX conversion HF's segment sum reads Unsqueeze → Broadcast/Tile → Select (or Multiply by 0/1)
→ CumSum(axis -2) → Select/Add; masks are checked by value, so they must be Constants — which they are
once the length is static (OpenVINO decomposes ONNX's dynamic Trilu into ShapeOf/Range arithmetic, not
matched: such sites are skipped with the reason). d1 is refused for f16/bf16 element types or `precision`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import openvino_rw, spec
from .rules import RULES
from .spec import Site

REWRITE = "ssd-d1"


def find_sites(model: Any, precision: str = "f32", rewrite: str = REWRITE) -> list[Site]:
    """ssd-d1: every CumSum of `model` (HF segment sums 'rewrite', the others 'skip');
    ssd-d2: every C·Bᵀ einsum of HF's chunk scan."""
    if rewrite not in ("ssd-d1", "ssd-d2"):
        from ..errors import InputError

        raise InputError(f"unknown SSD rewrite {rewrite!r}; use ssd-d1 or ssd-d2")
    return openvino_rw.find_sites(model, rewrite, precision=precision)


def real_inputs(model: Any, seq_len: int = 128) -> list[np.ndarray] | None:
    """Held-out corpus bytes as token ids for a single integer [1, L] input."""
    params = model.get_parameters()
    if len(params) != 1 or not params[0].get_output_element_type(0).is_integral():
        return None
    ps = params[0].get_output_partial_shape(0)
    if ps.rank.is_dynamic or ps.rank.get_length() != 2:
        return None
    length = ps[1].get_length() if ps[1].is_static else seq_len
    from ..data import heldout_bytes

    data = np.frombuffer(heldout_bytes(4096 + length), dtype=np.uint8)[4096:4096 + length]
    return [data.astype(params[0].get_output_element_type(0).to_dtype()).reshape(1, length)]


def verify(original: Any, rewritten: Any, seed: int = 0) -> dict[str, float]:
    """Max |output difference| (OpenVINO CPU f32) on random inputs and, for token-id models, held-out bytes."""
    from ._inputs import max_abs_diff
    from .openvino_rw import random_inputs, run

    feeds = random_inputs(original, seed)
    out = {"random": max_abs_diff(run(original, feeds), run(rewritten, feeds))}
    real = real_inputs(original)
    if real is not None:
        out["real"] = max_abs_diff(run(original, real), run(rewritten, real))
    return out


def apply(model: Any, sites: Iterable[Site | str] | None = None, precision: str = "f32",
          verify_mode: str = "model", tolerance: float | None = None,
          rewrite: str = REWRITE) -> tuple[Any, list[Site]]:
    """Return (rewritten clone of `model`, every site of `rewrite` considered); verification as in
    `onnx_ssd.apply`."""
    tol = RULES.get(rewrite).spec.tolerance if tolerance is None else tolerance
    found = find_sites(model, precision, rewrite)
    chosen = spec.keep_selected(found, sites, rewrite)

    def _rewritten(model: Any, names: set[str], precision: str, rewrite: str) -> Any:
        return openvino_rw.apply(model, [rewrite], sites=names, precision=precision)[0]

    if not chosen:
        return model.clone(), found
    names = {s.name for s in chosen}
    if verify_mode == "none":
        return _rewritten(model, names, precision, rewrite), found
    if verify_mode == "model":
        diffs = verify(model, new := _rewritten(model, names, precision, rewrite))
        if max(diffs.values()) <= tol:
            for s in chosen:
                s.detail.update({f"max_diff_{k}": v for k, v in diffs.items()}, verified="model")
            return new, found
    for s in chosen:
        diffs = verify(model, _rewritten(model, {s.name}, precision, rewrite))
        s.detail.update({f"max_diff_{k}": v for k, v in diffs.items()}, verified="site")
        if max(diffs.values()) > tol:
            s.skip(f"verification failed: max output diff {max(diffs.values()):.3g} > {tol:g}")
    names = {s.name for s in chosen if s.ok}
    return (_rewritten(model, names, precision, rewrite) if names else model.clone()), found
