"""SSD rewrite d1 on OpenVINO models: HF's Mamba-2 segment sum as the outer difference of one CumSum.

Same math and limits as `onnx_ssd` (read its docstring): after ONNX conversion HF's segment sum reads

    Unsqueeze(x, -1) → Broadcast/Tile → Select(mask, 0, ·) (or Multiply by 0/1) → CumSum(axis -2)
    → Select(mask, -inf, ·) (or Add of a 0/-inf mask)

and the final Select's data input is rewired to ``Unsqueeze(cs, -1) − Unsqueeze(cs, -2)`` with cs the
CumSum(x, -1) the graph already has (or a new one); the Broadcast / Select / T×T CumSum become
unreachable and vanish. Masks are checked by value, so they must be Constants — which they are once the
length is static (OpenVINO decomposes ONNX's dynamic Trilu into ShapeOf/Range arithmetic, not matched:
such sites are skipped with the reason). Refused for f16/bf16 element types or `precision`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InputError
from . import spec, ssd_d2
from .openvino_rw import _const, _shape
from .spec import Site

REWRITE = "ssd-d1"
_OK = ("f32", "f64")
_REFUSED = ("f16", "bf16")


def _square(m: np.ndarray | None) -> np.ndarray | None:
    if m is None:
        return None
    m = np.asarray(m)
    if m.ndim < 2 or any(d != 1 for d in m.shape[:-2]) or m.shape[-1] != m.shape[-2] or m.shape[-1] < 2:
        return None
    return m.reshape(m.shape[-2:])


def _tri(t: int, strict: bool) -> np.ndarray:
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    return (j < i) if strict else (j <= i)


def _is_zero(v: np.ndarray | None) -> bool:
    return v is not None and v.size > 0 and bool(np.all(v == 0))


def _src(op: Any, k: int) -> Any:
    return op.input(k).get_source_output()


def _users(out: Any) -> list[Any]:
    return [i.get_node() for i in out.get_target_inputs()]


def _cumsum_axis(op: Any) -> int | None:
    """Normalized axis of a forward, inclusive CumSum with a constant axis, else None."""
    attrs = op.get_attributes()
    if attrs.get("exclusive") or attrs.get("reverse"):
        return None
    a = _const(_src(op, 1))
    shape = _shape(_src(op, 0))
    if a is None or a.size != 1 or shape is None:
        return None
    a, rank = int(a.reshape(-1)[0]), len(shape)
    return a % rank if -rank <= a < rank else None


def _masked(out: Any) -> tuple[Any, np.ndarray, Any] | str:
    """(data, keep mask, op) of Select(c, 0, data) / Select(c, data, 0) / Multiply(data, 0/1)."""
    p = out.get_node()
    kind = p.get_type_name()
    if kind == "Select":
        cond = _const(_src(p, 0))
        if cond is None:
            return "Select condition is not constant"
        a, b = _const(_src(p, 1)), _const(_src(p, 2))
        if _is_zero(a) and b is None:
            return _src(p, 2), ~cond.astype(bool), p
        if _is_zero(b) and a is None:
            return _src(p, 1), cond.astype(bool), p
        return "Select does not choose between the data and 0"
    if kind == "Multiply":
        for k in (0, 1):
            m = _const(_src(p, 1 - k))
            if m is not None and _const(_src(p, k)) is None:
                if not np.all((m == 0) | (m == 1)):
                    return "Multiply mask is not 0/1"
                return _src(p, k), m != 0, p
        return "Multiply has no constant mask operand"
    return f"CumSum input is a {kind}, not a masked expansion"


def _expanded_from(out: Any) -> Any | str:
    """x such that `out` repeats x along a new last axis."""
    p = out.get_node()
    if p.get_type_name() in ("Broadcast", "Tile"):
        out = _src(p, 0)
        p = out.get_node()
    if p.get_type_name() not in ("Unsqueeze", "Reshape"):
        return "the masked tensor is not an expansion of Unsqueeze(x, -1)"
    x = _src(p, 0)
    sx, su = _shape(x), _shape(out)
    if sx is None or su is None or len(su) != len(sx) + 1:
        return "ranks unknown around the Unsqueeze"
    if p.get_type_name() == "Unsqueeze":
        axes = _const(_src(p, 1))
        if axes is None or [int(a) % len(su) for a in np.ravel(axes)] != [len(su) - 1]:
            return "Unsqueeze is not on the last axis"
    elif tuple(su) != tuple(sx) + (1,) or "?" in su:
        return "Reshape does not append a unit axis"
    return x


def _final(out: Any, t: int) -> tuple[Any, int] | str:
    users = _users(out)
    if len(users) != 1:
        return "the T×T cumulative sum has other consumers (nothing would be saved)"
    f = users[0]
    lower = _tri(t, strict=False)
    kind = f.get_type_name()
    mine = [k for k in range(f.get_input_size()) if _src(f, k) == out]
    if kind == "Select" and len(mine) == 1 and mine[0] in (1, 2):
        cond = _square(_const(_src(f, 0)))
        if cond is None or cond.shape[0] != t:
            return "final Select has no T×T constant condition"
        keep = cond.astype(bool) if mine[0] == 1 else ~cond.astype(bool)
        if np.any(keep & ~lower):
            return "final mask keeps entries above the diagonal"
        return f, mine[0]
    if kind == "Add" and len(mine) == 1:
        m = _square(_const(_src(f, 1 - mine[0])))
        if m is None or m.shape[0] != t or not np.all(np.isneginf(m[~lower])):
            return "final Add is not a 0/-inf causal mask"
        return f, mine[0]
    return f"the T×T cumulative sum feeds a {kind}, not the -inf mask"


def _existing_cumsum(x: Any) -> Any | None:
    shape = _shape(x)
    for op in _users(x):
        if op.get_type_name() == "CumSum" and _src(op, 0) == x and shape is not None \
                and _cumsum_axis(op) == len(shape) - 1:
            return op.output(0)
    return None


def _match(op: Any, precision: str) -> Site:
    out = op.output(0)
    site = Site(REWRITE, op.get_friendly_name(), "SegmentSum", _shape(out), axis=-2)
    shape = _shape(_src(op, 0))
    axis = _cumsum_axis(op)
    if axis is None or shape is None or axis != len(shape) - 2:
        where = "axis unknown" if axis is None or shape is None else f"axis {axis - len(shape)}"
        return site.skip(f"not a segment sum (CumSum {where}, reversed or exclusive; d1 needs axis -2)")
    m = _masked(_src(op, 0))
    if isinstance(m, str):
        return site.skip(f"not a segment sum ({m})")
    e, keep, mop = m
    x = _expanded_from(e)
    if isinstance(x, str):
        return site.skip(f"not a segment sum ({x})")
    sq = _square(keep)
    if sq is None:
        return site.skip("not a segment sum (first mask is not T×T)")
    t = sq.shape[0]
    sx = _shape(x)
    if sx is not None and isinstance(sx[-1], int) and sx[-1] != t:
        return site.skip(f"not a segment sum (x has {sx[-1]} steps, mask is {t}×{t})")
    if not np.array_equal(sq, _tri(t, strict=True)):
        return site.skip("not a segment sum (first mask is not strictly lower-triangular)")
    fin = _final(out, t)
    if isinstance(fin, str):
        return site.skip(fin)
    et = x.get_element_type().get_type_name()
    site.dtype = et
    site.detail.update(T=t, x=x, op=op, final=fin[0], final_index=fin[1],
                       reuse_cumsum=_existing_cumsum(x) is not None)
    if et in _REFUSED:
        return site.skip(spec.check_precision(spec.SSD_D1, et) or "")
    if et not in _OK:
        return site.skip(f"element type {et} is not a float type")
    why = spec.check_precision(spec.SSD_D1, precision)
    if why:
        return site.skip(why)
    site.reason = f"T={t}: {'existing' if site.detail['reuse_cumsum'] else 'new'} CumSum(x,-1), outer difference"
    return site


def find_sites(model: Any, precision: str = "f32", rewrite: str = REWRITE) -> list[Site]:
    """ssd-d1: every CumSum of `model` (HF segment sums 'rewrite', the others 'skip');
    ssd-d2: every C·Bᵀ einsum of HF's chunk scan (see `ssd_d2`)."""
    if rewrite == ssd_d2.REWRITE:
        found = (ssd_d2.match(_View(), op) for op in model.get_ordered_ops() if op.get_type_name() == "Einsum")
        return [ssd_d2.check_precision(s, precision) for s in found if s is not None]
    if rewrite != REWRITE:
        raise InputError(f"unknown SSD rewrite {rewrite!r}; use ssd-d1 or ssd-d2")
    return [_match(op, precision) for op in model.get_ordered_ops() if op.get_type_name() == "CumSum"]


# --- d2: the graph view and builder `ssd_d2` works through ---------------------------------------------------

_OPS = {"Multiply": "Mul", "Broadcast": "Expand"}  # OpenVINO names -> the ONNX names ssd_d2 speaks
_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "bf16": "bfloat16"}


class _View:
    """`ssd_d2.View` over an OpenVINO model: tensors are node outputs."""

    def op(self, node: Any) -> str:
        t = node.get_type_name()
        return _OPS.get(t, t)

    def ins(self, node: Any) -> list[Any]:
        return [_src(node, k) for k in range(node.get_input_size())]

    def out(self, node: Any) -> Any:
        return node.output(0)

    def producer(self, t: Any) -> Any | None:
        return t.get_node()

    def users(self, t: Any) -> list[Any]:
        return _users(t)

    def equation(self, node: Any) -> str | None:
        return node.get_attributes().get("equation")

    def shape(self, t: Any) -> tuple[Any, ...] | None:
        return _shape(t)

    def dtype(self, t: Any) -> str:
        name = t.get_element_type().get_type_name()
        return _DTYPES.get(name, name)

    def key(self, t: Any) -> tuple[str, int]:
        return t.get_node().get_name(), t.get_index()

    def name(self, node: Any) -> str:
        return node.get_friendly_name()


class _D2Builder:
    """`ssd_d2.Builder` emitting OpenVINO ops."""

    def __init__(self) -> None:
        from openvino import opset13

        self.ops = opset13

    def _ints(self, values: list[int]) -> Any:
        return self.ops.constant(np.array(values, dtype=np.int64))

    def transpose(self, t: Any, perm: list[int]) -> Any:
        return self.ops.transpose(t, self._ints(perm)).output(0)

    def matmul(self, a: Any, b: Any) -> Any:
        return self.ops.matmul(a, b, False, False).output(0)

    def mul(self, a: Any, b: Any) -> Any:
        return self.ops.multiply(a, b).output(0)

    def add(self, a: Any, b: Any) -> Any:
        return self.ops.add(a, b).output(0)

    def unsqueeze(self, t: Any, axis: int) -> Any:
        return self.ops.unsqueeze(t, self._ints([axis])).output(0)

    def chunks(self, src: Any, pad: Any | None, shape: list[int]) -> Any:
        if pad is not None:  # HF's own Pad (same pads / value / mode), applied to the un-repeated tensor
            value = _src(pad, 3) if pad.get_input_size() > 3 else None
            mode = pad.get_attributes().get("pad_mode", "constant")
            src = self.ops.pad(src, _src(pad, 1), _src(pad, 2), mode, value).output(0)
        return self.ops.reshape(src, self._ints(shape), special_zero=False).output(0)


def _rewrite_site(site: Site) -> None:
    """Rewire the site's final mask to the outer difference (in place, on the model the site came from)."""
    from openvino import opset13 as ops

    x = site.detail["x"]
    cs = _existing_cumsum(x)
    if cs is None:
        cs = ops.cumsum(x, ops.constant(np.array(-1, dtype=np.int64))).output(0)
    col = ops.unsqueeze(cs, ops.constant(np.array([-1], dtype=np.int64)))
    row = ops.unsqueeze(cs, ops.constant(np.array([-2], dtype=np.int64)))
    diff = ops.subtract(col, row)
    diff.set_friendly_name(f"{site.name}/ssd_d1_outer_difference")
    site.detail["final"].input(site.detail["final_index"]).replace_source_output(diff.output(0))


def _rewrite_site_d2(site: Site) -> None:
    """Re-point the users of the site's per-chunk states and output to the d2 computation (in place)."""
    r: ssd_d2.Roles = site.detail["roles"]
    states, y = ssd_d2.build(_D2Builder(), r)
    r.states.replace(states)
    r.y.replace(y)


def _rewritten(model: Any, names: set[str], precision: str, rewrite: str = REWRITE) -> Any:
    new = model.clone()
    how = _rewrite_site_d2 if rewrite == ssd_d2.REWRITE else _rewrite_site
    for s in find_sites(new, precision, rewrite):
        if s.ok and s.name in names:
            how(s)
    new.validate_nodes_and_infer_types()
    return new


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
    tol = spec.SPECS[rewrite].tolerance if tolerance is None else tolerance
    found = find_sites(model, precision, rewrite)
    chosen = spec.keep_selected(found, sites, rewrite)
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
