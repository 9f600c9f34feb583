"""The ONNX side of the rules: `OnnxView` (a `rules.base.View`) and `OnnxBuilder` (a `rules.base.Builder`)
over one graph scope — the top level or any If / Loop / Scan body.

`_Graph` holds a scope's producers, consumers, constants and inferred shapes; `scopes()` adds one per
control-flow body (nested too), whose `parent` answers for outer-scope names. A site inside a body is
named by the path to it, `<container site>/<attribute>/<node site>` (e.g. `If_3/then_branch/CumSum_7`).
Shapes come from ONNX shape inference, which types bodies but drops Loop-carried shapes (they may
change per iteration), so rules needing a rank there skip with `rank_unknown()`'s reason unless the
body input declares a static shape. Builders make names fresh across every scope, because outer
names are visible inside bodies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import onnx_subgraphs

FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


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


def _type_name(et: int | None) -> str:
    import onnx

    return "?" if et is None else onnx.TensorProto.DataType.Name(et).lower()


def _rank_unknown(g: _Graph) -> str:
    if g.parent is None:
        return "rank unknown"
    return (f"rank unknown inside {g.prefix.rstrip('/')} (no inferred shape there, e.g. a Loop-carried "
            "value; declare the body input's shape)")


_FOLDABLE = {"Not", "Trilu", "Cast", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or",
             "Xor", "Neg", "Add", "Sub", "Mul", "Where", "Expand", "Reshape", "Unsqueeze", "Squeeze",
             "ConstantOfShape", "Range", "Identity", "Transpose", "Shape", "Concat"}


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


class _GraphOutput:
    """Stands for "read by the graph's outputs" among a tensor's users (matches no op)."""

    op_type = "<graph output>"
    domain = ""
    input: tuple[str, ...] = ()
    output: tuple[str, ...] = ("",)


class OnnxView:
    """`rules.base.View` over one ONNX scope: tensors are names, nodes are NodeProtos."""

    level = "onnx"

    def __init__(self, g: _Graph) -> None:
        self.g = g
        self._folded: dict[str, Any] = {}

    def nodes(self) -> list[Any]:
        return list(self.g.graph.node)

    def op(self, node: Any) -> str:
        return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"

    def native(self, node: Any) -> str:
        return node.op_type

    def ins(self, node: Any) -> list[str | None]:
        return [i or None for i in node.input]

    def out(self, node: Any) -> str:
        return node.output[0]

    def producer(self, t: str) -> Any | None:
        return self.g.producer.get(t)

    def users(self, t: str) -> list[Any]:
        return list(self.g.consumers.get(t, [])) + ([_GraphOutput()] if t in self.g.outputs else [])

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        v = _attr(node, name, default)
        if isinstance(v, bytes):
            return v.decode()
        if hasattr(v, "data_type") and hasattr(v, "dims"):  # a TensorProto attribute (ConstantOfShape value)
            from onnx import numpy_helper

            return numpy_helper.to_array(v)
        return v

    def const(self, t: str | None) -> np.ndarray | None:
        return None if not t else self.g.const(t)

    def fold(self, t: str | None) -> np.ndarray | None:
        return None if not t else _fold(self.g, t, self._folded)

    def shape(self, t: str) -> tuple[Any, ...] | None:
        return self.g.shape(t)

    def dtype(self, t: str) -> str | None:
        et = self.g.elem_type(t)
        return None if et is None else FLOAT_TYPES.get(et, _type_name(et))

    def type_name(self, t: str) -> str:
        return _type_name(self.g.elem_type(t))

    def key(self, t: str) -> str:
        return t

    def site(self, node: Any) -> str:
        return self.g.site(node)

    def reduce_axes(self, node: Any) -> list[int] | None | str:
        takes_input = self.g.opset >= (13 if node.op_type == "ReduceSum" else 18)
        if takes_input:
            if len(node.input) < 2 or not node.input[1]:
                axes: list[int] = []
            else:
                v = self.g.const(node.input[1])
                if v is None:
                    return "axes input is not a constant"
                axes = [int(a) for a in v.reshape(-1)]
        else:
            axes = [int(a) for a in (_attr(node, "axes", None) or [])]
        if axes:
            return axes
        return [] if int(_attr(node, "noop_with_empty_axes", 0)) else None

    def rank_unknown(self) -> str:
        return _rank_unknown(self.g)

    def opset(self) -> int:
        return self.g.opset


class OnnxBuilder:
    """`rules.base.Builder` collecting one site's replacement nodes and initializers in scope `g`."""

    def __init__(self, g: _Graph, stem: str) -> None:
        self.b = _Builder(g, stem)

    @property
    def nodes(self) -> list[Any]:
        return self.b.nodes

    @property
    def inits(self) -> list[Any]:
        return self.b.inits

    def const(self, values: np.ndarray, like: str, tag: str = "const") -> str:
        return self.b.const(values, self.b.g.elem_type(like), tag)

    def ints(self, values: list[int], tag: str = "ints") -> str:
        return self.b.ints(values, tag)

    def matmul(self, a: str, b: str) -> str:
        return self.b.op("MatMul", [a, b])

    def mul(self, a: str, b: str) -> str:
        return self.b.op("Mul", [a, b])

    def add(self, a: str, b: str) -> str:
        return self.b.op("Add", [a, b])

    def sub(self, a: str, b: str) -> str:
        return self.b.op("Sub", [a, b])

    def transpose(self, t: str, perm: list[int]) -> str:
        return self.b.op("Transpose", [t], perm=perm)

    def unsqueeze(self, t: str, axes: list[int]) -> str:
        return self.b.unsqueeze(t, axes)

    def squeeze(self, t: str, axes: list[int]) -> str:
        return self.b.squeeze(t, axes)

    def reshape(self, t: str, shape: list[int]) -> str:
        return self.b.op("Reshape", [t, self.b.ints(shape, "shape")])

    def reshape_as(self, t: str, like: str) -> str:
        return self.b.op("Reshape", [t, self.b.op("Shape", [like])])

    def identity(self, t: str) -> str:
        return self.b.op("Identity", [t])

    def cumsum(self, t: str, axis: int) -> str:
        import onnx

        return self.b.op("CumSum", [t, self.b.const(np.array(axis, dtype=np.int64), onnx.TensorProto.INT64, "axis")])

    def einsum(self, equation: str, operands: list[str]) -> str:
        return self.b.op("Einsum", operands, equation=equation)

    def pad_like(self, t: str, pad: Any) -> str:
        attrs = {a.name: _attr(pad, a.name) for a in pad.attribute}
        return self.b.op("Pad", [t, *pad.input[1:]], **attrs)

    def table(self, table: Any, x: str, lowering: str) -> str:
        from ..lower.onnx_lower import table_nodes

        g = self.b.g
        y = g.fresh(f"{self.b.stem}/pwl")
        nodes, inits = table_nodes(table, x, y, g.fresh(self.b.stem), elem_type=g.elem_type(x), lowering=lowering)
        self.b.nodes.extend(nodes)
        self.b.inits.extend(inits)
        return y
