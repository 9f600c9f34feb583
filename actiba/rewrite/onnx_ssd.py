"""SSD rewrite d1 on ONNX graphs: HF's Mamba-2 `segment_sum` as the outer difference of one CumSum.

HF builds the T×T segment sum of a chunk's log-decays x (last axis, length T) as

    e = Expand(Unsqueeze(x, -1), [..., T, T])           # e[..., i, j] = x_i   (or Tile)
    m = Where(~tril(-1), 0, e)                           # keep x_i only for j < i   (or Mul by a 0/1 mask)
    c = CumSum(m, axis=-2)                               # c[i, j] = sum_{j<k<=i} x_k
    s = Where(~tril(0), -inf, c)                         # (or Add of a 0/-inf mask)

i.e. a T-times larger CumSum of mostly zeros. For j <= i, c[i, j] = cs_i − cs_j with cs = CumSum(x, -1), so
d1 rewires the final Where to ``Sub(Unsqueeze(cs, -1), Unsqueeze(cs, -2))`` — reusing a CumSum(x, -1)
the graph already holds (HF computes one per chunk) — and the Expand / Where / T×T CumSum die. The masks
are matched by *value* (constant-folded: initializers, Constant, Not, Trilu, Cast, comparisons), so
exporter variants (Trilu vs constant masks, Where vs Mul, Expand vs Tile) all match.

Numerics: cs_i − cs_j cancels when |cs| is large, so the rewrite is refused for f16/bf16 graphs and when
the caller says the graph will run at bf16/f16 (`precision`); see `spec.SSD_D1`.

    sites = find_sites(model, precision="f32")
    new, done = apply(model, sites=None, verify="model")   # done[i].detail["max_diff_random" / "_real"]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InputError
from . import spec, ssd_d2
from .onnx_rw import _attr, _Builder, _Graph, _site_name
from .spec import Site

REWRITE = "ssd-d1"
_FOLDABLE = {"Not", "Trilu", "Cast", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or",
             "Xor", "Neg", "Add", "Sub", "Mul", "Where", "Expand", "Reshape", "Unsqueeze", "Squeeze",
             "ConstantOfShape", "Range", "Identity", "Transpose", "Shape", "Concat"}
_REFUSED_TYPES = {10: "float16", 16: "bfloat16"}
_OK_TYPES = {1: "float32", 11: "float64"}


# --- constant folding of small mask subgraphs ------------------------------------------------------------

def _fold(g: _Graph, name: str, cache: dict[str, Any], depth: int = 0) -> np.ndarray | None:
    """The value of `name` if it is computed from constants only (masks are often Not/Trilu of constants)."""
    if name in cache:
        return cache[name]
    value = g.const(name)
    node = g.producer.get(name)
    if value is None and node is not None and node.op_type in _FOLDABLE and depth < 8:
        args = [_fold(g, i, cache, depth + 1) if i else None for i in node.input]
        if all(a is not None or not i for a, i in zip(args, node.input, strict=True)):
            try:
                from onnx.reference import ReferenceEvaluator

                feeds = {i: a for i, a in zip(node.input, args, strict=True) if i}
                outs = ReferenceEvaluator(node).run(None, feeds)
                value = np.asarray(outs[list(node.output).index(name)])
            except Exception:
                value = None
    cache[name] = value
    return value


def _square(mask: np.ndarray) -> np.ndarray | None:
    """`mask` as a T×T array if it varies only over its last two axes (leading axes of size 1)."""
    m = np.asarray(mask)
    if m.ndim < 2 or any(d != 1 for d in m.shape[:-2]) or m.shape[-1] != m.shape[-2] or m.shape[-1] < 2:
        return None
    return m.reshape(m.shape[-2:])


def _is_zero(v: np.ndarray | None) -> bool:
    return v is not None and v.size > 0 and bool(np.all(v == 0))


def _tri(t: int, strict: bool) -> np.ndarray:
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    return (j < i) if strict else (j <= i)


# --- matching --------------------------------------------------------------------------------------------

def _cumsum_axis(g: _Graph, node: Any, rank: int | None) -> int | None:
    """The CumSum's axis normalized to [0, rank), or None if not constant / reversed / exclusive."""
    if _attr(node, "exclusive", 0) or _attr(node, "reverse", 0) or rank is None:
        return None
    a = g.const(node.input[1]) if len(node.input) > 1 else None
    if a is None or a.size != 1:
        return None
    a = int(a.reshape(-1)[0])
    return a % rank if -rank <= a < rank else None


def _rank(g: _Graph, name: str) -> int | None:
    s = g.shape(name)
    return None if s is None else len(s)


def _is_ones(g: _Graph, name: str, cache: dict[str, Any]) -> bool:
    """True if `name` is all non-zero: a constant, Expand of one, or ConstantOfShape (any runtime shape)."""
    v = _fold(g, name, cache)
    if v is not None:
        return v.size > 0 and bool(np.all(v != 0))
    p = g.producer.get(name)
    if p is not None and p.op_type == "Expand":
        return _is_ones(g, p.input[0], cache)
    if p is not None and p.op_type == "ConstantOfShape":
        val = _attr(p, "value")
        if val is None:
            return False
        from onnx import numpy_helper

        return bool(np.all(numpy_helper.to_array(val) != 0))
    return False


def _mask_at(g: _Graph, name: str, t: int, cache: dict[str, Any], depth: int = 0) -> np.ndarray | None:
    """The mask `name` as a T×T array: folded if constant, else by structure (Not / Cast / Trilu of ones,
    as HF builds masks whose size follows a dynamic chunk count)."""
    v = _fold(g, name, cache)
    if v is not None:
        sq = _square(v)
        return sq if sq is not None and sq.shape[0] == t else None
    p = g.producer.get(name)
    if p is None or depth > 6:
        return None
    if p.op_type in ("Not", "Cast", "Identity"):
        inner = _mask_at(g, p.input[0], t, cache, depth + 1)
        if inner is None:
            return None
        return ~inner.astype(bool) if p.op_type == "Not" else inner
    if p.op_type == "Trilu" and _is_ones(g, p.input[0], cache):
        k = g.const(p.input[1]) if len(p.input) > 1 and p.input[1] else np.array(0)
        if k is None:
            return None
        ones = np.ones((t, t), dtype=bool)
        k = int(np.ravel(k)[0])
        return np.triu(ones, k) if _attr(p, "upper", 1) else np.tril(ones, k)
    return None


def _masked_input(g: _Graph, name: str, cache: dict[str, Any]) -> tuple[str, str, bool, Any] | str:
    """(data, mask, invert, node) of ``Where(cond, 0, data)`` / ``Where(cond, data, 0)`` / ``Mul(data, 0/1)``;
    the kept entries are ``mask != 0`` (negated if `invert`)."""
    p = g.producer.get(name)
    if p is None or p.op_type not in ("Where", "Mul"):
        return f"CumSum input is {'a graph input' if p is None else 'a ' + p.op_type}, not a masked expansion"
    if p.op_type == "Where":
        a, b = _fold(g, p.input[1], cache), _fold(g, p.input[2], cache)
        if _is_zero(a) and b is None:
            return p.input[2], p.input[0], True, p
        if _is_zero(b) and a is None:
            return p.input[1], p.input[0], False, p
        return "Where does not select between the data and 0"
    for k in (0, 1):
        m = _fold(g, p.input[1 - k], cache)
        if m is not None and _fold(g, p.input[k], cache) is None:
            if not np.all((m == 0) | (m == 1)):
                return "Mul mask is not 0/1"
            return p.input[k], p.input[1 - k], False, p
    return "Mul has no constant mask operand"


def _expanded_from(g: _Graph, name: str) -> tuple[str, list[Any]] | str:
    """x such that `name` repeats x along a new last axis (Expand/Tile of Unsqueeze(x, -1), or just it)."""
    nodes = []
    p = g.producer.get(name)
    while p is not None and p.op_type == "Identity":
        nodes.append(p)
        name, p = p.input[0], g.producer.get(p.input[0])
    if p is not None and p.op_type in ("Expand", "Tile"):
        nodes.append(p)
        name, p = p.input[0], g.producer.get(p.input[0])
    if p is None or p.op_type not in ("Unsqueeze", "Reshape"):
        return "the masked tensor is not an expansion of Unsqueeze(x, -1)"
    x = p.input[0]
    rx, ru = _rank(g, x), _rank(g, name)
    if rx is None or ru != rx + 1:
        return "ranks unknown around the Unsqueeze"
    if p.op_type == "Unsqueeze":
        axes = g.const(p.input[1]) if len(p.input) > 1 else np.array(_attr(p, "axes", []))
        if axes is None or [int(a) % ru for a in np.ravel(axes)] != [ru - 1]:
            return "Unsqueeze is not on the last axis"
    else:
        sx, su = g.shape(x), g.shape(name)
        if sx is None or su is None or tuple(su) != tuple(sx) + (1,) or not all(isinstance(d, int) for d in su):
            return "Reshape does not append a unit axis"
    nodes.append(p)
    return x, nodes


def _final_mask(g: _Graph, c: str, t: int, cache: dict[str, Any]) -> tuple[Any, int] | str:
    """(node, input index of c) of the -inf masking that consumes the T×T cumsum `c`, checked by value."""
    users = g.consumers.get(c, [])
    if len(users) != 1 or c in g.outputs:
        return "the T×T cumulative sum has other consumers (nothing would be saved)"
    f = users[0]
    lower = _tri(t, strict=False)
    if f.op_type == "Where":
        idx = [k for k in (1, 2) if f.input[k] == c]
        cond = _mask_at(g, f.input[0], t, cache)
        if cond is None or len(idx) != 1:
            return "final Where has no T×T constant (or triangular) condition"
        keep = cond.astype(bool) if idx[0] == 1 else ~cond.astype(bool)
        if np.any(keep & ~lower):
            return "final mask keeps entries above the diagonal (they are 0 there, not cs_i - cs_j)"
        return f, idx[0]
    if f.op_type == "Add":
        k = 1 if f.input[0] == c else 0
        m = _fold(g, f.input[k], cache)
        sq = None if m is None else _square(m)
        if sq is None or sq.shape[0] != t or not np.all(np.isneginf(sq[~lower])):
            return "final Add is not a 0/-inf causal mask"
        return f, 1 - k
    return f"the T×T cumulative sum feeds a {f.op_type}, not the -inf mask"


_PROBE_T = 7  # size at which a mask of symbolic size is checked (its structure does not depend on it)


def _match(g: _Graph, node: Any, precision: str, cache: dict[str, Any]) -> Site:
    """A Site for the CumSum `node`: a segment sum to rewrite, or a skip saying why not."""
    shape = g.shape(node.output[0])
    site = Site(REWRITE, _site_name(node), "SegmentSum", shape, axis=-2)
    rank = _rank(g, node.input[0])
    axis = _cumsum_axis(g, node, rank)
    if axis is None or rank is None or axis != rank - 2:
        where = "axis unknown" if axis is None or rank is None else f"axis {axis - rank}"
        return site.skip(f"not a segment sum (CumSum {where}, reversed or exclusive; d1 needs axis -2)")
    masked = _masked_input(g, node.input[0], cache)
    if isinstance(masked, str):
        return site.skip(f"not a segment sum ({masked})")
    e, mask, invert, mnode = masked
    src = _expanded_from(g, e)
    if isinstance(src, str):
        return site.skip(f"not a segment sum ({src})")
    x, enodes = src
    sx, sm = g.shape(x), g.shape(node.input[0])
    folded = _fold(g, mask, cache)
    if folded is not None:
        sq = _square(folded)
        if sq is None:
            return site.skip("not a segment sum (first mask is not T×T)")
        t = sq.shape[0]
        if sx is not None and isinstance(sx[-1], int) and sx[-1] != t:
            return site.skip(f"not a segment sum (x has {sx[-1]} steps, mask is {t}×{t})")
    else:  # a mask built at run time: its size must be the cumsum input's last two (symbolic) dims
        scond = g.shape(mask)
        if scond is None or sm is None or len(scond) < 2 or tuple(scond[-2:]) != tuple(sm[-2:]) or \
                sm[-1] != sm[-2] or (sx is not None and sx[-1] != sm[-1]):
            return site.skip("not a segment sum (mask size is not the chunk length)")
        t = sm[-1] if isinstance(sm[-1], int) else _PROBE_T
    keep = _mask_at(g, mask, t, cache)
    if keep is None:
        return site.skip("not a segment sum (first mask is neither constant nor Trilu of ones)")
    keep = keep.astype(bool) if folded is None or folded.dtype == bool else keep != 0
    if invert:
        keep = ~keep
    if not np.array_equal(keep, _tri(t, strict=True)):
        return site.skip("not a segment sum (first mask is not strictly lower-triangular)")
    fin = _final_mask(g, node.output[0], t, cache)
    if isinstance(fin, str):
        return site.skip(fin)
    et = g.elem_type(x)
    site.dtype = _REFUSED_TYPES.get(et or 0) or _OK_TYPES.get(et or 0) or str(et)
    site.detail.update(T=t if folded is not None or isinstance(sm[-1], int) else str(sm[-1]), x=x, node=node,
                       final=fin[0], final_index=fin[1], pattern=[*enodes, mnode, node],
                       reuse_cumsum=_existing_cumsum(g, x) is not None)
    if et in _REFUSED_TYPES:
        return site.skip(spec.check_precision(spec.SSD_D1, "bf16" if et == 16 else "f16") or "")
    if et not in _OK_TYPES:
        return site.skip(f"element type {et} is not a float type")
    why = spec.check_precision(spec.SSD_D1, precision)
    if why:
        return site.skip(why)
    how = "existing" if site.detail["reuse_cumsum"] else "new"
    site.reason = f"T={site.detail['T']}: {how} CumSum(x,-1), outer difference"
    return site


def _existing_cumsum(g: _Graph, x: str) -> str | None:
    """Output of a forward inclusive CumSum(x, last axis) already in the graph, if any."""
    rank = _rank(g, x)
    for n in g.consumers.get(x, []):
        if n.op_type == "CumSum" and n.input[0] == x and rank is not None and _cumsum_axis(g, n, rank) == rank - 1:
            return n.output[0]
    return None


def find_sites(model: Any, precision: str = "f32", _g: _Graph | None = None,
               rewrite: str = REWRITE) -> list[Site]:
    """ssd-d1: every CumSum of the top-level graph (segment sums 'rewrite', others 'skip');
    ssd-d2: every C·Bᵀ einsum of HF's chunk scan (see `ssd_d2`)."""
    g = _g or _Graph(model)
    if rewrite == ssd_d2.REWRITE:
        view = _View(g)
        found = (ssd_d2.match(view, n) for n in model.graph.node if n.op_type == "Einsum")
        return [ssd_d2.check_precision(s, precision) for s in found if s is not None]
    if rewrite != REWRITE:
        raise InputError(f"unknown SSD rewrite {rewrite!r}; use ssd-d1 or ssd-d2")
    cache: dict[str, Any] = {}
    return [_match(g, n, precision, cache) for n in model.graph.node if n.op_type == "CumSum"]


# --- d2: the graph view and builder `ssd_d2` works through ---------------------------------------------------

_DTYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


class _GraphOutput:
    """Stands for "read by the graph's outputs" among a tensor's users (matches no op)."""

    op_type = "<graph output>"


class _View:
    """`ssd_d2.View` over an ONNX graph: tensors are names."""

    def __init__(self, g: _Graph) -> None:
        self.g = g

    def op(self, node: Any) -> str:
        return node.op_type

    def ins(self, node: Any) -> list[str]:
        return list(node.input)

    def out(self, node: Any) -> str:
        return node.output[0]

    def producer(self, t: str) -> Any | None:
        return self.g.producer.get(t)

    def users(self, t: str) -> list[Any]:
        return list(self.g.consumers.get(t, [])) + ([_GraphOutput()] if t in self.g.outputs else [])

    def equation(self, node: Any) -> str | None:
        eq = _attr(node, "equation")
        return eq.decode() if isinstance(eq, bytes) else eq

    def shape(self, t: str) -> tuple[Any, ...] | None:
        return self.g.shape(t)

    def dtype(self, t: str) -> str:
        et = self.g.elem_type(t)
        return _DTYPES.get(et or 0, str(et))

    def key(self, t: str) -> str:
        return t

    def name(self, node: Any) -> str:
        return _site_name(node)


class _D2Builder:
    """`ssd_d2.Builder` emitting ONNX nodes through `_Builder`."""

    def __init__(self, b: _Builder) -> None:
        self.b = b

    def transpose(self, t: str, perm: list[int]) -> str:
        return self.b.op("Transpose", [t], perm=perm)

    def matmul(self, a: str, b: str) -> str:
        return self.b.op("MatMul", [a, b])

    def mul(self, a: str, b: str) -> str:
        return self.b.op("Mul", [a, b])

    def add(self, a: str, b: str) -> str:
        return self.b.op("Add", [a, b])

    def unsqueeze(self, t: str, axis: int) -> str:
        return self.b.unsqueeze(t, [axis])

    def chunks(self, src: str, pad: Any | None, shape: list[int]) -> str:
        if pad is not None:  # HF's own Pad (same pads / value / mode), applied to the un-repeated tensor
            attrs = {a.name: _attr(pad, a.name) for a in pad.attribute}
            src = self.b.op("Pad", [src, *pad.input[1:]], **attrs)
        return self.b.op("Reshape", [src, self.b.ints(shape, "chunks")])


def _rewrite_d2(model: Any, sites: list[Site]) -> Any:
    """A copy of `model` with the given d2 sites replaced (their states and output tensors re-pointed)."""
    import onnx

    g = _Graph(model)
    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    rename: dict[str, str] = {}
    dead: set[str] = set()
    for s in sites:
        r: ssd_d2.Roles = s.detail["roles"]
        b = _Builder(g, s.name)
        states, y = ssd_d2.build(_D2Builder(b), r)
        rename.update({r.states: states, r.y: y})
        new_nodes.extend(b.nodes)
        new_inits.extend(b.inits)
        dead |= {n.output[0] for n in r.nodes}
    out = onnx.ModelProto.FromString(model.SerializeToString())
    for n in out.graph.node:
        for k, i in enumerate(n.input):
            if i in rename:
                n.input[k] = rename[i]
    kept_names = {o.name for o in out.graph.output} & set(rename)
    if kept_names:  # a replaced tensor that is a graph output keeps its name, via an Identity
        keep = [n for n in out.graph.node if n.output[0] not in kept_names]
        del out.graph.node[:]
        out.graph.node.extend(keep)
        new_nodes += [onnx.helper.make_node("Identity", [rename[t]], [t], name=g.fresh(t + "/ssd_d2"))
                      for t in sorted(kept_names)]
    return _finish(out, new_nodes, new_inits, dead)


# --- replacement -----------------------------------------------------------------------------------------

def _toposort(nodes: list[Any], ready: set[str]) -> list[Any]:
    """Nodes in an order where every input is produced before use (stable for already sorted graphs)."""
    done, out, pending = set(ready), [], list(nodes)
    while pending:
        rest = []
        for n in pending:
            if all(not i or i in done for i in n.input):
                out.append(n)
                done.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a missing input: keep the rest as they were
            return out + rest
        pending = rest
    return out


def _rewrite_d1(model: Any, sites: list[Site]) -> Any:
    """A copy of `model` with the given (ok) d1 sites rewritten; sites must come from `model` itself."""
    import onnx

    g = _Graph(model)
    new_nodes: list[Any] = []
    new_inits: list[Any] = []
    rewire: dict[str, tuple[int, str]] = {}  # final node's output -> (input index, new tensor)
    dead: list[Any] = []
    for s in sites:
        d = s.detail
        b = _Builder(g, s.name)
        cs = _existing_cumsum(g, d["x"])
        if cs is None:
            cs = b.op("CumSum", [d["x"], b.const(np.array(-1, dtype=np.int64), onnx.TensorProto.INT64, "axis")])
        diff = b.op("Sub", [b.unsqueeze(cs, [-1]), b.unsqueeze(cs, [-2])])
        new_nodes.extend(b.nodes)
        new_inits.extend(b.inits)
        rewire[d["final"].output[0]] = (d["final_index"], diff)
        dead.extend(d["pattern"])
    out = onnx.ModelProto.FromString(model.SerializeToString())
    for n in out.graph.node:
        if n.output and n.output[0] in rewire:
            k, name = rewire[n.output[0]]
            n.input[k] = name
    return _finish(out, new_nodes, new_inits, {n.output[0] for n in dead})


def _finish(out: Any, new_nodes: list[Any], new_inits: list[Any], dead: set[str]) -> Any:
    """Add the replacement nodes in topological order, then drop what the rewrite left unread."""
    ready = {i.name for i in out.graph.input} | {t.name for t in out.graph.initializer}
    ready |= {t.name for t in new_inits} | {""}
    nodes = _toposort(list(out.graph.node) + new_nodes, ready)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(new_inits)
    _prune(out, dead)
    return out


def _prune(model: Any, candidates: set[str]) -> None:
    """Drop the pattern nodes nobody reads any more, then the mask constants only they used."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {i for n in model.graph.node for i in n.input} | outputs
        keep = [n for n in model.graph.node
                if not (n.output[0] in candidates and not any(o in used for o in n.output))]
        if len(keep) == len(model.graph.node):
            break
        # the dead nodes' own inputs (Not / Trilu / Constant masks) become candidates too
        for n in model.graph.node:
            if n not in keep:
                for i in n.input:
                    candidates.add(i)
        del model.graph.node[:]
        model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input} | outputs
    inits = [t for t in model.graph.initializer if t.name in used or t.name not in candidates]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)


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
    tol = spec.SPECS[rewrite].tolerance if tolerance is None else tolerance
    g = _Graph(model)
    found = find_sites(model, precision, _g=g, rewrite=rewrite)
    chosen = spec.keep_selected(found, sites, rewrite)
    _rewrite = _rewrite_d2 if rewrite == ssd_d2.REWRITE else _rewrite_d1
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
