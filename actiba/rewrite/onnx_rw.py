"""CumBA / ReduBA / contraction / ActiBA on ONNX graphs, inside If / Loop / Scan bodies too.

    sites = find_sites(model, "cumba")                 # every CumSum, with decision and reason
    new, done = apply(model, ["cumba"], sites=[s.name for s in sites if s.axis == -2])

Each replacement writes the original output tensor name, so consumers and graph outputs are untouched;
pattern nodes left without consumers are removed (a name read only inside a body still counts as used).
Anything the rewrite cannot do exactly (dynamic length, non-constant axis, integer type, ...) is left
as it was, with the reason on its `Site`.

Control flow: every graph attribute (If `then_branch`/`else_branch`, Loop/Scan `body`, nested to any
depth) is a scope of its own (`_Graph.scopes()`), searched like the top level. A site inside one is
named by the path to it, `<container site>/<attribute>/<node site>`, e.g. `If_3/then_branch/CumSum_7`
or `Loop_0/body/If_2/else_branch/Softplus_1` (top-level names are unchanged). Shapes come from ONNX
shape inference, which types bodies but drops Loop-carried shapes (they may change per iteration), so
CumBA/ReduBA there are skipped with a reason unless the body input declares a static shape. New
constants of a body replacement are Constant nodes inside that body; fresh names avoid every scope.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from .. import activations
from ..errors import InputError
from ..tableset import TableSet
from . import onnx_subgraphs, spec
from ._inputs import max_abs_diff, random_array
from .spec import Site

FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}
_ACT_OPS = activations.ONNX_OPS  # single ops that mean one function (the activation registry)


# --- per-site tables (shared with torch_rw / openvino_rw: pure Python, no heavy imports) ------------------

# --- loading and inventory ---------------------------------------------------------------------------

def load_model(path: str | os.PathLike) -> Any:
    """Read and check an ONNX model; any problem is one InputError line."""
    import onnx

    p = os.fspath(path)
    if not os.path.exists(p):
        raise InputError(f"model {p} does not exist")
    if os.path.isdir(p):
        raise InputError(f"model {p} is a folder, not an .onnx file")
    try:
        model = onnx.load(p)
    except Exception as exc:  # onnx raises DecodeError, OSError ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read ONNX model {p}: {first[:200]}") from None
    if not model.graph.node and not model.graph.output:
        raise InputError(f"cannot read ONNX model {p}: no graph in the file")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # lenient: onnxruntime runs many models the checker dislikes
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"actiba: warning: ONNX checker: {first[:200]}", file=sys.stderr)
    return model


def inventory(model: Any, subgraphs: bool = True) -> dict[str, int]:
    """Node counts by op type, inside If / Loop / Scan bodies too unless `subgraphs=False`."""
    nodes = onnx_subgraphs.walk(model.graph) if subgraphs else model.graph.node
    return dict(Counter(n.op_type for n in nodes))


def save_model(model: Any, path: str | os.PathLike) -> None:
    """Write atomically (temp file + rename)."""
    import onnx

    from .._atomic import atomic_path

    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save_model(model, str(tmp))


# --- graph view --------------------------------------------------------------------------------------

class _Graph:
    """Producers, consumers, constants and inferred shapes of one graph scope.

    `_Graph(model)` is the top-level graph; `scopes()` adds one `_Graph` per control-flow body (If
    branches, Loop / Scan bodies, nested ones too), whose `parent` answers for outer-scope names.
    `consumers` counts a node whose bodies read a name as a consumer of it; `fresh` avoids every name
    in every scope, because outer names are visible inside bodies.
    """

    def __init__(self, model: Any, *, graph: Any = None, parent: _Graph | None = None,
                 inferred: Any = None, prefix: str = "") -> None:
        import onnx

        self.model = model
        self.parent = parent
        self.graph = model.graph if graph is None else graph
        self.prefix = prefix
        self.depth = 0 if parent is None else parent.depth + 1
        if parent is None:
            try:
                inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
            except Exception:
                inferred = model.graph
        self._inferred = inferred if inferred is not None else self.graph
        g = self._inferred
        self.types: dict[str, Any] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            if vi.type.HasField("tensor_type"):
                self.types[vi.name] = vi.type.tensor_type
        self.inits = {t.name: t for t in self.graph.initializer}
        for t in self.graph.initializer:
            self.types.setdefault(t.name, None)
        self._inputs = {i.name for i in self.graph.input}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for o in node.output:
                self.producer[o] = node
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)
            for i in sorted(onnx_subgraphs.outer_refs(node) - set(node.input)):
                self.consumers.setdefault(i, []).append(node)
        self.outputs = {o.name for o in self.graph.output}
        if parent is None:
            self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
            self._names = onnx_subgraphs.all_names(self.graph)
            self._counter = 0
        else:
            self.opset = parent.opset
        self._scopes: list[_Graph] | None = None

    def site(self, node: Any) -> str:
        """Site name: `If_3/then_branch/CumSum_7` inside bodies (container/attribute/node), bare at top level."""
        return self.prefix + _site_name(node)

    def scopes(self) -> list[_Graph]:
        """This scope, then every nested body scope, depth first in graph order."""
        if self._scopes is None:
            self._scopes = [self]
            inf = self._inferred
            paired = len(inf.node) == len(self.graph.node) and all(
                a.op_type == b.op_type for a, b in zip(inf.node, self.graph.node, strict=True))
            for k, node in enumerate(self.graph.node):
                inf_subs = dict(onnx_subgraphs.subgraphs(inf.node[k])) if paired else {}
                for label, sub in onnx_subgraphs.subgraphs(node):
                    child = _Graph(self.model, graph=sub, parent=self, inferred=inf_subs.get(label),
                                   prefix=f"{self.site(node)}/{label}/")
                    self._scopes.extend(child.scopes())
        return self._scopes

    def _local(self, name: str) -> bool:
        return self.parent is None or name in self.inits or name in self.producer or name in self._inputs

    # shapes / types (names a body does not define are looked up in the enclosing scope)
    def shape(self, name: str) -> tuple[Any, ...] | None:
        if not self._local(name):
            return self.parent.shape(name)
        if name in self.inits:
            return tuple(int(d) for d in self.inits[name].dims)
        tt = self.types.get(name)
        if tt is None or not tt.HasField("shape"):
            return None
        out: list[Any] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                out.append(int(d.dim_value))
            else:
                out.append(d.dim_param or "?")
        return tuple(out)

    def elem_type(self, name: str) -> int | None:
        if not self._local(name):
            return self.parent.elem_type(name)
        if name in self.inits:
            return int(self.inits[name].data_type)
        tt = self.types.get(name)
        return int(tt.elem_type) if tt is not None and tt.elem_type else None

    def const(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor (initializer or Constant node, here or outside), else None."""
        from onnx import numpy_helper

        if not name:
            return None
        if not self._local(name):
            return self.parent.const(name)
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_ints", "value_int"):
                    return np.array(a.ints if a.name == "value_ints" else a.i, dtype=np.int64)
                if a.name in ("value_floats", "value_float"):
                    return np.array(a.floats if a.name == "value_floats" else a.f, dtype=np.float32)
        return None

    def fresh(self, stem: str) -> str:
        """A name used nowhere in the model (all scopes)."""
        if self.parent is not None:
            return self.parent.fresh(stem)
        while True:
            self._counter += 1
            name = f"{stem}__rw{self._counter}"
            if name not in self._names:
                self._names.add(name)
                return name


def _attr(node: Any, name: str, default: Any = None) -> Any:
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _site_name(node: Any) -> str:
    return node.name or node.output[0]


# --- builder --------------------------------------------------------------------------------------------

class _Builder:
    """Collects the replacement nodes and initializers of one site."""

    def __init__(self, g: _Graph, stem: str) -> None:
        self.g, self.stem = g, stem
        self.nodes: list[Any] = []
        self.inits: list[Any] = []

    def const(self, value: np.ndarray, elem_type: int, tag: str) -> str:
        import onnx
        from onnx import numpy_helper

        name = self.g.fresh(f"{self.stem}/{tag}")
        if elem_type == onnx.TensorProto.BFLOAT16:
            flat = value.astype(np.float32).ravel().tolist()
            t = onnx.helper.make_tensor(name, elem_type, value.shape, flat)
        else:
            t = numpy_helper.from_array(value.astype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)), name)
        self.inits.append(t)
        return name

    def ints(self, values: list[int], tag: str) -> str:
        import onnx

        return self.const(np.array(values, dtype=np.int64), onnx.TensorProto.INT64, tag)

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        import onnx

        out = out or self.g.fresh(f"{self.stem}/{op_type}")
        node_name = self.g.fresh(f"{self.stem}/{op_type}")
        self.nodes.append(onnx.helper.make_node(op_type, inputs, [out], name=node_name, **attrs))
        return out

    def unsqueeze(self, x: str, axes: list[int], out: str | None = None) -> str:
        if self.g.opset >= 13:
            return self.op("Unsqueeze", [x, self.ints(axes, "axes")], out)
        return self.op("Unsqueeze", [x], out, axes=axes)

    def squeeze(self, x: str, axes: list[int]) -> str:
        if self.g.opset >= 13:
            return self.op("Squeeze", [x, self.ints(axes, "axes")])
        return self.op("Squeeze", [x], axes=axes)


# --- site discovery --------------------------------------------------------------------------------------

def _float_check(g: _Graph, x: str) -> str | None:
    et = g.elem_type(x)
    if et is None:
        return "element type unknown"
    if et not in FLOAT_TYPES:
        return f"element type {_type_name(et)} is not floating point"
    return None


def _type_name(et: int | None) -> str:
    import onnx

    return "?" if et is None else onnx.TensorProto.DataType.Name(et).lower()


def _rank_unknown(g: _Graph) -> str:
    if g.parent is None:
        return "rank unknown"
    return (f"rank unknown inside {g.prefix.rstrip('/')} (no inferred shape there, e.g. a Loop-carried "
            "value; declare the body input's shape)")


def _per_scope(g: _Graph, find: Any) -> list[Site]:
    """`find(scope)` over the top-level graph and every body; each site remembers its scope."""
    out = []
    for scope in g.scopes():
        for site in find(scope):
            site.detail["scope"] = scope
            out.append(site)
    return out


def _cumba_sites(g: _Graph) -> list[Site]:
    sites = []
    for node in g.graph.node:
        if node.op_type != "CumSum" or node.domain not in ("", "ai.onnx"):
            continue
        x = node.input[0]
        shape = g.shape(x)
        site = Site("cumba", g.site(node), "CumSum", shape, dtype=_type_name(g.elem_type(x)))
        site.detail.update(node=node, exclusive=int(_attr(node, "exclusive", 0)),
                           reverse=int(_attr(node, "reverse", 0)))
        sites.append(site)
        ax = g.const(node.input[1])
        if ax is None or ax.size != 1:
            site.skip("axis is not a constant")
            continue
        if (why := _float_check(g, x)) is not None:
            site.skip(why)
            continue
        if shape is None:
            site.skip(_rank_unknown(g))
            continue
        rank = len(shape)
        a = int(ax.reshape(-1)[0])
        if not -rank <= a < rank:
            site.skip(f"axis {a} out of range for rank {rank}")
            continue
        a %= rank
        site.axis = a - rank  # negative: -1 last, -2 the MatMul row axis
        n = shape[a]
        if not isinstance(n, int):
            site.skip(f"length along axis {a - rank} is dynamic ({n}); the triangular constant "
                      "needs it static")
            continue
        site.detail.update(a=a, rank=rank, n=n)
        how = ("x @ Uᵀ (last axis)" if a == rank - 1 else "L @ x" if a == rank - 2
               else "reshape, L @ x, reshape")
        site.reason = f"n={n}: {how}"
    return sites


def _reduce_axes(g: _Graph, node: Any) -> tuple[list[int] | None, str | None]:
    """The node's axes (None = all), or an error reason."""
    takes_input = g.opset >= (13 if node.op_type == "ReduceSum" else 18)
    if takes_input:
        if len(node.input) < 2 or not node.input[1]:
            return [], None
        v = g.const(node.input[1])
        if v is None:
            return None, "axes input is not a constant"
        return [int(a) for a in v.reshape(-1)], None
    return [int(a) for a in (_attr(node, "axes", None) or [])], None


def _reduba_sites(g: _Graph, claimed: set[str]) -> list[Site]:
    sites = []
    for node in g.graph.node:
        if node.op_type not in ("ReduceSum", "ReduceMean") or node.domain not in ("", "ai.onnx"):
            continue
        if g.site(node) in claimed:
            continue
        x = node.input[0]
        shape = g.shape(x)
        keep = int(_attr(node, "keepdims", 1))
        noop = int(_attr(node, "noop_with_empty_axes", 0))
        site = Site("reduba", g.site(node), node.op_type, shape, dtype=_type_name(g.elem_type(x)))
        site.detail.update(node=node, keepdims=keep, mean=node.op_type == "ReduceMean")
        sites.append(site)
        axes, why = _reduce_axes(g, node)
        if why is None:
            why = _float_check(g, x)
        if why is None and shape is None:
            why = _rank_unknown(g)
        if why is not None:
            site.skip(why)
            continue
        rank = len(shape)
        if not axes and noop:
            site.axis = []
            site.detail.update(plan="identity")
            site.reason = "empty axes with noop_with_empty_axes=1: Identity"
            continue
        if rank == 0:
            site.skip("scalar input")
            continue
        norm = spec.normalize_axes(axes or range(rank), rank)
        if norm is None:
            site.skip(f"axes {axes} invalid for rank {rank}")
            continue
        site.axis = [a - rank for a in norm]
        dyn = [a - rank for a in norm if not isinstance(shape[a], int)]
        if dyn:
            site.skip(f"reduced axes {dyn} have dynamic length; the ones vector needs it static")
            continue
        plan = spec.reduce_plan(norm, rank)
        tail_static = all(isinstance(d, int) for d in shape[norm[-1] + 1:])
        if plan == "block" and not tail_static and rank - norm[-1] > 2:
            plan = "transpose"
        k = math.prod(shape[a] for a in norm)
        site.detail.update(axes=norm, rank=rank, k=k, plan=plan)
        site.reason = f"K={k}: {plan}"
    return sites


def _contract_sites(g: _Graph) -> list[Site]:
    sites = []
    for node in g.graph.node:
        if node.op_type != "ReduceSum" or node.domain not in ("", "ai.onnx"):
            continue
        mul = g.producer.get(node.input[0])
        if mul is None or mul.op_type != "Mul":
            continue
        a, b = mul.input[0], mul.input[1]
        sa, sb, so = g.shape(a), g.shape(b), g.shape(node.input[0])
        site = Site("contract", g.site(node), "Mul+ReduceSum", so, dtype=_type_name(g.elem_type(a)))
        site.detail.update(node=node, mul=mul, keepdims=int(_attr(node, "keepdims", 1)))
        sites.append(site)
        axes, why = _reduce_axes(g, node)
        if why is None:
            why = _float_check(g, a)
        if why is None and (len(g.consumers.get(mul.output[0], [])) != 1 or mul.output[0] in g.outputs):
            why = "the product has other consumers"
        static = all(s is not None and all(isinstance(d, int) for d in s) for s in (sa, sb, so))
        if why is None and not static:
            why = "operand shapes not static"
        if why is None and g.opset < 12:
            why = "Einsum needs opset >= 12"
        if why is not None:
            site.skip(why)
            continue
        rank = len(so)
        if not axes and int(_attr(node, "noop_with_empty_axes", 0)):
            site.skip("no-op reduction")
            continue
        norm = spec.normalize_axes(axes or range(rank), rank)
        if norm is None or rank > 26:
            site.skip("axes invalid")
            continue
        site.axis = [x - rank for x in norm]
        size = math.prod(so)
        if size <= max(math.prod(sa), math.prod(sb)):
            site.skip("the Mul does not broadcast: no intermediate saved")
            continue
        site.detail.update(axes=norm, shapes=(sa, sb, so))
        site.reason = f"product of {size} elements never materialized"
    return sites


def _is_const_close(g: _Graph, name: str, value: float, rel: float = 1e-3) -> bool:
    v = g.const(name)
    return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) <= rel * abs(value)


def _match_erf_gelu(g: _Graph, erf: Any) -> tuple[str, Any, list[Any]] | None:
    """x·0.5·(1+Erf(x/√2)) in any association order -> (x, final node, pattern nodes)."""
    scale = g.producer.get(erf.input[0])
    if scale is None:
        return None
    if scale.op_type == "Div" and _is_const_close(g, scale.input[1], math.sqrt(2.0)):
        x = scale.input[0]
    elif scale.op_type == "Mul":
        if _is_const_close(g, scale.input[1], 1 / math.sqrt(2.0)):
            x = scale.input[0]
        elif _is_const_close(g, scale.input[0], 1 / math.sqrt(2.0)):
            x = scale.input[1]
        else:
            return None
    else:
        return None
    cons = g.consumers.get(erf.output[0], [])
    if len(cons) != 1 or cons[0].op_type != "Add":
        return None
    add = cons[0]
    other = add.input[1] if add.input[0] == erf.output[0] else add.input[0]
    if not _is_const_close(g, other, 1.0):
        return None
    nodes, cur, need = [scale, erf, add], add.output[0], {"x", "half"}
    for _ in range(2):
        cons = g.consumers.get(cur, [])
        if len(cons) != 1 or cons[0].op_type != "Mul" or cur in g.outputs:
            return None
        mul = cons[0]
        o = mul.input[1] if mul.input[0] == cur else mul.input[0]
        if o == x:
            need.discard("x")
        elif _is_const_close(g, o, 0.5):
            need.discard("half")
        else:
            p = g.producer.get(o)
            if p is not None and p.op_type == "Mul" and x in p.input and any(
                    _is_const_close(g, i, 0.5) for i in p.input if i != x):
                need.clear()
                nodes.append(p)
            else:
                return None
        nodes.append(mul)
        cur = mul.output[0]
        if not need:
            return x, mul, nodes
    return None


def _pick_table(site: Site, function: str, tables: dict[str, Any], site_tables: list[tuple[str, Any]],
                beta: float | None = None, chooser: Any = None) -> None:
    """Node-name globs (`site_tables`) first, then the per-site set by site id, then `tables[function]`."""
    table = next((t for pat, t in site_tables if spec.matches_any(site.name, [pat])), None)
    source = "by site pattern"
    sid = site.detail.get("site_id")
    if table is None and chooser is not None and sid is not None:
        key = chooser.key_for(sid)
        if key is not None:
            table, source = chooser.table_for(sid), f"set key {key}"
    if table is None:
        table, source = tables.get(function), f"--act {function}"
    if table is None:
        site.skip(f"no table for {function}" if chooser is None or sid is not None
                  else f"no table for {function} (no site id: node has no namespace metadata)")
        return
    if (why := spec.table_mismatch(table, function, beta)) is not None:
        site.skip(why)
        return
    site.detail["table"] = table
    site.detail["table_source"] = source
    err = spec.table_error(table)
    site.reason = f"{function} table ({table.segments} segments, {source})" + (
        f", max_abs {err:.3g}" if err is not None else "") + (f"; site {sid}" if sid is not None else "")


def _namespace(node: Any) -> str:
    return next((p.value for p in node.metadata_props if p.key == "namespace"), "")


def _assign_site_ids(g: _Graph, sites: list[Site]) -> None:
    """detail["site_id"] = ``path:function#k`` from the root node's namespace metadata (see site_ids);
    k counts that function's sites per module in graph order, which is execution order."""
    from . import site_ids

    order = {id(n): i for i, n in enumerate(onnx_subgraphs.walk(g.graph))}
    counts: dict[tuple[str, str], int] = {}
    for site in sorted(sites, key=lambda s: min(order.get(id(n), 0) for n in s.detail["nodes"])):
        path = site_ids.onnx_module_path(_namespace(site.detail["root"]))
        if path is None:
            continue
        fn = site.detail["function"]
        k = counts.get((path, fn), 0)
        counts[(path, fn)] = k + 1
        site.detail["site_id"] = site_ids.format_site(path, fn, k)


def _actiba_match(g: _Graph) -> list[Site]:
    """Activation patterns of one scope (SiLU as x·Sigmoid(x) and erf-GELU before single ops)."""
    sites: list[Site] = []
    claimed: set[str] = set()  # first outputs of nodes consumed by a bigger pattern
    for node in g.graph.node:
        if node.op_type == "Mul" and node.domain in ("", "ai.onnx"):
            for xi, si in ((0, 1), (1, 0)):
                s = g.producer.get(node.input[si])
                if s is not None and s.op_type == "Sigmoid" and s.input[0] == node.input[xi]:
                    site = Site("actiba", g.site(node), "Mul(x,Sigmoid(x))", g.shape(node.input[xi]),
                                dtype=_type_name(g.elem_type(node.input[xi])))
                    site.detail.update(x=node.input[xi], root=node, nodes=[s, node], function="silu")
                    sites.append(site)
                    claimed.add(s.output[0])
                    break
        elif node.op_type == "Erf":
            m = _match_erf_gelu(g, node)
            if m is not None:
                x, root, nodes = m
                site = Site("actiba", g.site(root), "Erf-GELU", g.shape(x),
                            dtype=_type_name(g.elem_type(x)))
                site.detail.update(x=x, root=root, nodes=nodes, function="gelu")
                sites.append(site)
                claimed.update(n.output[0] for n in nodes)
    for node in g.graph.node:
        if node.output[0] in claimed or node.domain not in ("", "ai.onnx"):
            continue
        fn, beta = None, None
        if node.op_type in _ACT_OPS:
            fn = _ACT_OPS[node.op_type]
            beta = 1.0 if fn == "softplus" else None
        elif node.op_type == "Swish":
            fn, beta = "silu", float(_attr(node, "alpha", 1.0))
        elif node.op_type == "Gelu":
            fn = "gelu-tanh" if _attr(node, "approximate", b"none") in (b"tanh", "tanh") else "gelu"
        if fn is None:
            continue
        x = node.input[0]
        site = Site("actiba", g.site(node), node.op_type, g.shape(x), dtype=_type_name(g.elem_type(x)))
        site.detail.update(x=x, root=node, nodes=[node], function=fn, beta=beta)
        sites.append(site)
    return sites


def _actiba_sites(g: _Graph, tables: Any, site_tables: list[tuple[str, Any]]) -> list[Site]:
    fn_tables, chooser = TableSet.split(tables)
    sites = _per_scope(g, _actiba_match)
    _assign_site_ids(g, sites)
    if chooser is not None:
        ids = [s.detail["site_id"] for s in sites if "site_id" in s.detail]
        if sites and not ids:
            raise InputError("per-site tables need node namespace metadata (an ONNX graph exported by "
                             "actiba.models.export / the torch dynamo exporter); this graph has none")
        chooser.check_unmatched(ids, "this ONNX graph")
    for site in sites:
        if (why := _float_check(site.detail["scope"], site.detail["x"])) is not None:
            site.skip(why)
            continue
        _pick_table(site, site.detail["function"], fn_tables, site_tables, site.detail.get("beta"), chooser)
    return sites


def find_sites(model: Any, rewrite: str, tables: Any = None,
               site_tables: list[tuple[str, Any]] | None = None, _g: _Graph | None = None) -> list[Site]:
    """Every place `rewrite` ('cumba', 'reduba', 'contract', 'actiba') could apply, with its decision,
    in the top-level graph and in every If / Loop / Scan body (site names as in the module docstring).

    ActiBA `tables`: {function: Table}, a TableSet, or a mapping keyed by site ids / site globs (mixed
    with function keys as fallback); every ActiBA site carries ``detail["site_id"]`` when the graph has
    namespace metadata. A per-site key that matches no site is an InputError.
    """
    g = _g or _Graph(model)
    if rewrite == "cumba":
        return _per_scope(g, _cumba_sites)
    if rewrite == "reduba":
        return _per_scope(g, lambda sc: _reduba_sites(sc, set()))
    if rewrite == "contract":
        return _per_scope(g, _contract_sites)
    if rewrite == "actiba":
        return _actiba_sites(g, tables, site_tables or [])
    raise InputError(f"unknown rewrite {rewrite!r}; known: {', '.join(spec.GRAPH_REWRITES)}")


# --- replacements --------------------------------------------------------------------------------

def _build_cumba(b: _Builder, site: Site, x: str, y: str) -> None:
    d = site.detail
    et = b.g.elem_type(x)
    m = spec.cumsum_matrix(d["n"], bool(d["exclusive"]), bool(d["reverse"]), np.float64)
    a, rank = d["a"], d["rank"]
    if a == rank - 1:
        b.op("MatMul", [x, b.const(m.T, et, "tri")], y)
    elif a == rank - 2:
        b.op("MatMul", [b.const(m, et, "tri"), x], y)
    else:  # (d0..d(a-1), n, Q): the constant multiplies from the left, no Transpose
        r = b.op("Reshape", [x, b.ints([0] * a + [d["n"], -1], "shape")])
        mm = b.op("MatMul", [b.const(m, et, "tri"), r])
        b.op("Reshape", [mm, b.op("Shape", [x])], y)


def _build_reduba(b: _Builder, site: Site, x: str, y: str) -> None:
    d = site.detail
    if d["plan"] == "identity":
        b.op("Identity", [x], y)
        return
    et = b.g.elem_type(x)
    shape = site.shape
    axes, rank, k, keep, plan = d["axes"], d["rank"], d["k"], d["keepdims"], d["plan"]
    fill = 1.0 / k if d["mean"] else 1.0
    vec = np.full(k, fill)
    if plan == "last":
        b.op("MatMul", [x, b.const(vec.reshape(k, 1) if keep else vec, et, "ones")], y)
        return
    if plan == "second":
        b.op("MatMul", [b.const(vec.reshape(1, k) if keep else vec, et, "ones"), x], y)
        return
    if plan == "block":
        a0, a1 = axes[0], axes[-1]
        r = b.op("Reshape", [x, b.ints([0] * a0 + [k, -1], "shape")])
        out = b.op("MatMul", [b.const(vec, et, "ones"), r])
        if rank - a1 > 2:
            out = b.op("Reshape", [out, b.ints([0] * a0 + list(shape[a1 + 1:]), "shape")])
    else:
        src = x
        kept = [i for i in range(rank) if i not in axes]
        if plan == "transpose":
            src = b.op("Transpose", [x], perm=kept + axes)
        r = b.op("Reshape", [src, b.ints([0] * len(kept) + [k], "shape")])
        out = b.op("MatMul", [r, b.const(vec, et, "ones")])
    if keep:
        b.unsqueeze(out, axes, y)
    else:
        b.op("Identity", [out], y)


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _build_contract(b: _Builder, site: Site, y: str) -> None:
    d = site.detail
    mul, keep, axes = d["mul"], d["keepdims"], d["axes"]
    sa, sb, so = d["shapes"]
    rank = len(so)
    operands, subs = [], []
    for name, s in ((mul.input[0], sa), (mul.input[1], sb)):
        off = rank - len(s)
        squeeze, letters = [], ""
        for i, dim in enumerate(s):
            if dim == 1 and so[i + off] != 1:
                squeeze.append(i)
            else:
                letters += _LETTERS[i + off]
        operands.append(b.squeeze(name, squeeze) if squeeze else name)
        subs.append(letters)
    out_letters = "".join(_LETTERS[i] for i in range(rank) if i not in axes)
    eq = f"{subs[0]},{subs[1]}->{out_letters}"
    out = b.op("Einsum", operands, equation=eq)
    if keep:
        b.unsqueeze(out, axes, y)
    else:
        b.op("Identity", [out], y)


def _build_actiba(b: _Builder, site: Site, y: str, lowering: str) -> None:
    from ..lower.onnx_lower import table_nodes

    x = site.detail["x"]
    nodes, inits = table_nodes(site.detail["table"], x, y, b.g.fresh(b.stem), elem_type=b.g.elem_type(x),
                               lowering=lowering)
    b.nodes.extend(nodes)
    b.inits.extend(inits)


def apply(model: Any, rewrites: Iterable[str], sites: Iterable[Site | str] | None = None,
          tables: Any = None, site_tables: list[tuple[str, Any]] | None = None,
          lowering: str = "auto") -> tuple[Any, list[Site]]:
    """Return (a rewritten copy of `model`, every site considered with its decision).

    `sites` restricts the rewrite to those site names (or Site objects); None means every eligible site.
    `tables` as in `find_sites` (function tables, a TableSet or a site-keyed mapping). Sites inside
    If / Loop / Scan bodies are rewritten in their body, with body-local Constant nodes.
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = _Graph(model)
    wanted = None if sites is None else {s.name if isinstance(s, Site) else s for s in sites}
    rewrites = list(rewrites)
    all_sites: list[Site] = []
    claimed: set[str] = set()
    for rw in ("contract", "cumba", "reduba", "actiba"):
        if rw not in rewrites:
            continue
        if rw == "reduba":
            found = _per_scope(g, lambda sc: _reduba_sites(sc, claimed))
        else:
            found = find_sites(model, rw, tables, site_tables, _g=g)
        for s in found:
            if s.ok and wanted is not None and s.name not in wanted:
                s.skip("not selected")
            if s.ok and rw == "contract":
                claimed.add(s.name)
        all_sites.extend(found)
    unknown = set(rewrites) - set(spec.GRAPH_REWRITES)
    if unknown:
        raise InputError(f"unknown rewrite(s) {sorted(unknown)}; known: {', '.join(spec.GRAPH_REWRITES)}")

    # per scope: replacement per root node (the node whose output the replacement writes), dead nodes
    plans: dict[int, tuple[_Graph, dict[str, list[Any]], list[Any], list[Any]]] = {}
    for s in all_sites:
        if not s.ok:
            continue
        scope = s.detail["scope"]
        _, replace, dead, new_inits = plans.setdefault(id(scope), (scope, {}, [], []))
        root = s.detail.get("root", s.detail.get("node"))
        y = root.output[0]
        b = _Builder(scope, s.name)
        try:
            if s.rewrite == "cumba":
                _build_cumba(b, s, root.input[0], y)
            elif s.rewrite == "reduba":
                _build_reduba(b, s, root.input[0], y)
            elif s.rewrite == "contract":
                _build_contract(b, s, y)
                dead.append(s.detail["mul"])
            else:
                _build_actiba(b, s, y, lowering)
                dead.extend(n for n in s.detail["nodes"] if n is not root)
        except ImportError as exc:
            s.skip(f"lowering unavailable ({exc})")
            continue
        for n in b.nodes:  # names made by lowerings outside the builder must stay unique too
            g._names.update(n.output)
            g._names.add(n.name)
        g._names.update(t.name for t in b.inits)
        if scope.parent is None:
            replace[y] = b.nodes
            new_inits.extend(b.inits)
        else:  # a body-local Constant, right before its users
            replace[y] = [onnx.helper.make_node("Constant", [], [t.name], name=g.fresh(f"{s.name}/Constant"),
                                                value=t) for t in b.inits] + b.nodes
    # deepest scopes first: rebuilding a scope copies its nodes, so its bodies must already be final
    for scope, replace, dead, new_inits in sorted(plans.values(), key=lambda p: -p[0].depth):
        out_nodes = []
        for node in scope.graph.node:
            out_nodes.extend(replace.get(node.output[0], [node]) if node.output else [node])
        del scope.graph.node[:]
        scope.graph.node.extend(out_nodes)
        scope.graph.initializer.extend(new_inits)
        _remove_dead(model, dead, graph=scope.graph)
    return model, all_sites


def _remove_dead(model: Any, candidates: list[Any], graph: Any = None) -> None:
    """Drop pattern nodes (e.g. a SiLU's Sigmoid) whose outputs nobody uses any more.

    `graph` is the scope the candidates live in (default the top level). A name read only inside a
    body (If / Loop / Scan, outer-scope reference) is still used.
    """
    if not candidates:
        return
    graph = model.graph if graph is None else graph
    ids = {n.output[0] for n in candidates}
    outputs = {o.name for o in graph.output}
    changed = True
    while changed:
        changed = False
        used = set(outputs)
        for n in graph.node:
            used.update(n.input)
            used |= onnx_subgraphs.outer_refs(n)
        keep = [n for n in graph.node
                if not (n.output and n.output[0] in ids and not any(o in used for o in n.output))]
        if len(keep) != len(graph.node):
            del graph.node[:]
            graph.node.extend(keep)
            changed = True


# --- verification --------------------------------------------------------------------------------

def random_inputs(model: Any, seed: int = 0) -> dict[str, np.ndarray]:
    """One random array per graph input (initializers that double as inputs are skipped)."""
    import onnx

    rng = np.random.default_rng(seed)
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        arr = random_array(dims, onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type), rng)
        feeds[vi.name] = np.asarray(arr)  # a 0-d input (an If condition) comes back as a numpy scalar
    return feeds


def run(model: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run with onnxruntime on CPU, one thread (the machine is shared)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})


def _mirrored(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Booleans flipped and floats negated: an If on `flag` or on `x.sum() > 0` takes its other branch."""
    out = {}
    for k, v in feeds.items():
        if v.dtype == np.bool_:
            v = np.asarray(~v)
        elif np.issubdtype(v.dtype, np.floating):
            v = np.asarray(-v)
        out[k] = v
    return out


def compare(original: Any, rewritten: Any, inputs: dict[str, np.ndarray] | None = None,
            seed: int = 0) -> float:
    """Max |output difference| of original vs rewritten on random inputs (and on `inputs` if given).

    Models with an If (or boolean inputs) also run on the mirrored inputs (`_mirrored`), so that a
    condition decided by the inputs is checked both ways.
    """
    feeds = random_inputs(original, seed)
    worst = max_abs_diff(run(original, feeds), run(rewritten, feeds))
    if any(v.dtype == np.bool_ for v in feeds.values()) or any(
            n.op_type == "If" for n in onnx_subgraphs.walk(original.graph)):
        mirror = _mirrored(feeds)
        worst = max(worst, max_abs_diff(run(original, mirror), run(rewritten, mirror)))
    if inputs:
        worst = max(worst, max_abs_diff(run(original, inputs), run(rewritten, inputs)))
    return worst
