"""The OpenVINO side of the rules: `OvView` (a `rules.base.View`) and `OvBuilder` (a `rules.base.Builder`)
over an `openvino.Model`.

Tensors are node outputs, nodes are ops; op names are mapped to ONNX's (Multiply → Mul, Select →
Where, Broadcast → Expand, SoftPlus → Softplus, ...) so the rules are written once. A replacement takes
over the original output with `Output.replace`; matches made before earlier replacements still hold the
old outputs, so the builder resolves every input through the replacements made so far.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import activations

# OpenVINO names -> the ONNX names the rules speak (activation ops from the registry)
_OPS = {"Multiply": "Mul", "Select": "Where", "Broadcast": "Expand", "Subtract": "Sub", "Divide": "Div", "Power": "Pow",
        "LogicalNot": "Not", "Convert": "Cast", "Result": "<graph output>",
        **{a.openvino_op: a.onnx_op for a in activations.ACTIVATIONS if a.openvino_op and a.onnx_op}}
_ATTRS = {"keepdims": "keep_dims", "approximate": "approximation_mode"}
_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "bf16": "bfloat16"}


def _ops() -> Any:
    from openvino import opset13

    return opset13


def const_of(out: Any) -> np.ndarray | None:
    node = out.get_node()
    if node.get_type_name() == "Constant":
        return np.asarray(node.get_data())
    return None


def shape_of(out: Any) -> tuple[Any, ...] | None:
    ps = out.get_partial_shape()
    if ps.rank.is_dynamic:
        return None
    return tuple(d.get_length() if d.is_static else "?" for d in ps)


class OvView:
    """`rules.base.View` over an OpenVINO model."""

    level = "openvino"

    def __init__(self, model: Any) -> None:
        self.model = model

    def nodes(self) -> list[Any]:
        return list(self.model.get_ordered_ops())

    def op(self, node: Any) -> str:
        t = node.get_type_name()
        return _OPS.get(t, t)

    def native(self, node: Any) -> str:
        return node.get_type_name()

    def ins(self, node: Any) -> list[Any]:
        return [node.input(k).get_source_output() for k in range(node.get_input_size())]

    def out(self, node: Any) -> Any:
        return node.output(0)

    def producer(self, t: Any) -> Any | None:
        return t.get_node()

    def users(self, t: Any) -> list[Any]:
        return [i.get_node() for i in t.get_target_inputs()]

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        v = node.get_attributes().get(_ATTRS.get(name, name), default)
        return str(v).lower() if name == "approximate" and v is not None else v

    def const(self, t: Any) -> np.ndarray | None:
        return None if t is None else const_of(t)

    fold = const

    def shape(self, t: Any) -> tuple[Any, ...] | None:
        return shape_of(t)

    def dtype(self, t: Any) -> str | None:
        name = t.get_element_type().get_type_name()
        return _DTYPES.get(name, name)

    def type_name(self, t: Any) -> str:
        return t.get_element_type().get_type_name()

    def key(self, t: Any) -> tuple[str, int]:
        return t.get_node().get_name(), t.get_index()

    def site(self, node: Any) -> str:
        return node.get_friendly_name()

    def reduce_axes(self, node: Any) -> list[int] | None | str:
        axes = const_of(self.ins(node)[1])
        if axes is None:
            return "axes input is not a constant"
        return [int(a) for a in axes.reshape(-1)]

    def rank_unknown(self) -> str:
        return "rank unknown"

    def opset(self) -> int:
        return 13


class OvBuilder:
    """`rules.base.Builder` emitting OpenVINO ops; `replaced` maps an output's key to what took it over."""

    def __init__(self, replaced: dict[Any, Any]) -> None:
        self.ops = _ops()
        self.replaced = replaced
        self.made: set[Any] = set()

    def _in(self, t: Any) -> Any:
        seen = 0
        while (t.get_node().get_name(), t.get_index()) in self.replaced and seen < 1000:
            t, seen = self.replaced[(t.get_node().get_name(), t.get_index())], seen + 1
        return t

    def _out(self, node: Any) -> Any:
        out = node.output(0)
        self.made.add(out.get_node().get_name())
        return out

    def const(self, values: np.ndarray, like: Any, tag: str = "const") -> Any:
        """A constant of `like`'s element type (bf16 via an f32 constant and a Convert)."""
        et = like.get_element_type()
        if et.get_type_name() == "bf16":
            return self._out(self.ops.convert(self.ops.constant(values.astype(np.float32)), "bf16"))
        return self._out(self.ops.constant(values.astype(et.to_dtype())))

    def ints(self, values: list[int], tag: str = "ints") -> Any:
        return self._out(self.ops.constant(np.array(values, dtype=np.int64)))

    def matmul(self, a: Any, b: Any) -> Any:
        return self._out(self.ops.matmul(self._in(a), self._in(b), False, False))

    def mul(self, a: Any, b: Any) -> Any:
        return self._out(self.ops.multiply(self._in(a), self._in(b)))

    def add(self, a: Any, b: Any) -> Any:
        return self._out(self.ops.add(self._in(a), self._in(b)))

    def sub(self, a: Any, b: Any) -> Any:
        return self._out(self.ops.subtract(self._in(a), self._in(b)))

    def transpose(self, t: Any, perm: list[int]) -> Any:
        return self._out(self.ops.transpose(self._in(t), self.ints(perm)))

    def unsqueeze(self, t: Any, axes: list[int]) -> Any:
        return self._out(self.ops.unsqueeze(self._in(t), self.ints(axes)))

    def squeeze(self, t: Any, axes: list[int]) -> Any:
        return self._out(self.ops.squeeze(self._in(t), self.ints(axes)))

    def reshape(self, t: Any, shape: list[int]) -> Any:
        return self._out(self.ops.reshape(self._in(t), self.ints(shape), special_zero=True))

    def reshape_as(self, t: Any, like: Any) -> Any:
        return self._out(self.ops.reshape(self._in(t), self.ops.shape_of(self._in(like)), special_zero=False))

    def identity(self, t: Any) -> Any:
        return self._in(t)

    def cumsum(self, t: Any, axis: int) -> Any:
        return self._out(self.ops.cumsum(self._in(t), self.ops.constant(np.array(axis, dtype=np.int64))))

    def einsum(self, equation: str, operands: list[Any]) -> Any:
        return self._out(self.ops.einsum([self._in(o) for o in operands], equation))

    def pad_like(self, t: Any, pad: Any) -> Any:
        src = [pad.input(k).get_source_output() for k in range(pad.get_input_size())]
        value = src[3] if len(src) > 3 else None
        mode = pad.get_attributes().get("pad_mode", "constant")
        return self._out(self.ops.pad(self._in(t), src[1], src[2], mode, value))

    def table(self, table: Any, x: Any, lowering: str) -> Any:
        from ..lower.openvino_lower import table_subgraph

        out = table_subgraph(table, self._in(x), lowering=lowering)
        if out.get_node().get_type_name() != "Parameter":
            self.made.add(out.get_node().get_name())
        return out
