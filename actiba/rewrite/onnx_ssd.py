"""SSD rewrites d1 / d2 on ONNX graphs, each verified on the whole model.

The matching and the replacements are the rules `rules.ssd_d1` (HF's Mamba-2 `segment_sum` as the outer
difference of one CumSum) and `rules.ssd_d2` (C·Bᵀ once per layer, the chunk-scan einsums as MatMuls),
driven by `onnx_rw`; this module adds what makes them a stage of their own: verification of the whole
model before/after on random and held-out inputs, and site-by-site fallback that skips the offenders.
d1 is refused for f16/bf16 graphs and for `precision` bf16/f16 (its differences cancel; `rules.ssd_d1.SPEC`).

    sites = find_sites(model, precision="f32")
    new, done = apply(model, sites=None, verify_mode="model")   # done[i].detail["max_diff_random" / "_real"]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import onnx_rw, spec
from .rules import RULES
from .spec import Site

REWRITE = "ssd-d1"


def find_sites(model: Any, precision: str = "f32", _g: Any = None, rewrite: str = REWRITE) -> list[Site]:
    """ssd-d1: every CumSum of the top-level graph (segment sums 'rewrite', others 'skip');
    ssd-d2: every C·Bᵀ einsum of HF's chunk scan."""
    if rewrite not in ("ssd-d1", "ssd-d2"):
        from ..errors import InputError

        raise InputError(f"unknown SSD rewrite {rewrite!r}; use ssd-d1 or ssd-d2")
    return onnx_rw.find_sites(model, rewrite, precision=precision)


# --- verification ----------------------------------------------------------------------------------------

def real_inputs(model: Any, seq_len: int = 128) -> dict[str, np.ndarray] | None:
    """Held-out corpus bytes as token ids for a single int64 [1, L] input (L from the graph if fixed)."""
    import onnx

    inits = {t.name for t in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    if len(ins) != 1 or ins[0].type.tensor_type.elem_type != onnx.TensorProto.INT64:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in ins[0].type.tensor_type.shape.dim]
    if len(dims) != 2:
        return None
    length = dims[1] or seq_len
    from ..data import heldout_bytes

    data = np.frombuffer(heldout_bytes(4096 + length), dtype=np.uint8)[4096:4096 + length]
    return {ins[0].name: data.astype(np.int64).reshape(1, length)}


def verify(original: Any, rewritten: Any, seed: int = 0, real: bool = True) -> dict[str, float]:
    """Max |output difference| (onnxruntime) on random inputs and, for token-id models, held-out bytes."""
    from ._inputs import max_abs_diff
    from .onnx_rw import random_inputs, run

    feeds = random_inputs(original, seed)
    out = {"random": max_abs_diff(run(original, feeds), run(rewritten, feeds))}
    feeds_real = real_inputs(original) if real else None
    if feeds_real is not None:
        out["real"] = max_abs_diff(run(original, feeds_real), run(rewritten, feeds_real))
    return out


def apply(model: Any, sites: Iterable[Site | str] | None = None, precision: str = "f32",
          verify_mode: str = "model", tolerance: float | None = None,
          rewrite: str = REWRITE) -> tuple[Any, list[Site]]:
    """Return (rewritten copy of `model`, every site of `rewrite` ("ssd-d1" / "ssd-d2") with its decision).

    `sites` restricts to those names (None: all eligible). `verify_mode` "model" runs the full model once
    before/after (random and held-out inputs) and, if that exceeds `tolerance` (default the spec's),
    re-checks site by site and skips the offenders; "each" always checks site by site; "none" skips it.
    """
    tol = RULES.get(rewrite).spec.tolerance if tolerance is None else tolerance
    found = find_sites(model, precision, rewrite=rewrite)
    chosen = spec.keep_selected(found, sites, rewrite)

    def _rewrite(model: Any, chosen: list[Site]) -> Any:
        return onnx_rw.apply(model, [rewrite], sites=[s.name for s in chosen], precision=precision)[0]

    if not chosen:
        return _copy(model), found
    if verify_mode == "none":
        return _rewrite(model, chosen), found
    if verify_mode == "model":
        diffs = verify(model, new := _rewrite(model, chosen))
        if max(diffs.values()) <= tol:
            for s in chosen:
                s.detail.update({f"max_diff_{k}": v for k, v in diffs.items()}, verified="model")
            return new, found
    for s in chosen:
        diffs = verify(model, _rewrite(model, [s]))
        s.detail.update({f"max_diff_{k}": v for k, v in diffs.items()}, verified="site")
        if max(diffs.values()) > tol:
            s.skip(f"verification failed: max output diff {max(diffs.values()):.3g} > {tol:g}")
    chosen = [s for s in chosen if s.ok]
    return (_rewrite(model, chosen) if chosen else _copy(model)), found


def _copy(model: Any) -> Any:
    import onnx

    return onnx.ModelProto.FromString(model.SerializeToString())
