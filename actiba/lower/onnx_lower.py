"""ONNX lowering: nodes to splice into any graph, a FunctionProto, or a standalone model.

The graph is `plan.make_plan` translated op by op (see `actiba.lower.plan` for why each lowering is
exact at NaN / ±inf). Constants are rounded to the graph's element type.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import FunctionProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper

from .. import _atomic
from ..errors import InputError
from ..table import Table
from .plan import Const, Plan, make_plan

DTYPES = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "float64": TensorProto.DOUBLE}
MIN_OPSET = 13
_SIMPLE = {"add": "Add", "sub": "Sub", "mul": "Mul", "relu": "Relu", "abs": "Abs", "clip": "Clip",
           "less": "Less", "greater": "Greater", "greater_equal": "GreaterOrEqual", "equal": "Equal",
           "isnan": "IsNaN", "where": "Where", "sum": "Sum", "max": "Max", "min": "Min"}


class _Emitter:
    def __init__(self, prefix: str, elem_type: int) -> None:
        self.prefix, self.elem_type = prefix, elem_type
        self.np_dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        self.nodes: list[NodeProto] = []
        self.inits: list[TensorProto] = []
        self._consts: dict[tuple, str] = {}

    def const(self, value: np.ndarray, dtype: np.dtype | None = None) -> str:
        arr = np.asarray(value).astype(dtype or self.np_dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            name = f"{self.prefix}c{len(self._consts)}"
            self.inits.append(numpy_helper.from_array(arr, name))
            self._consts[key] = name
        return self._consts[key]

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or f"{self.prefix}t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{self.prefix}n{len(self.nodes)}",
                                           **attrs))
        return out


def _emit(plan: Plan, x_name: str, y_name: str, prefix: str, elem_type: int) -> _Emitter:
    e = _Emitter(prefix, elem_type)
    names = [x_name]
    last = len(plan.ops) - 1
    for k, op in enumerate(plan.ops):
        out = y_name if k == last else None
        ins = [e.const(a.value) if isinstance(a, Const) else names[a] for a in op.args]
        names.append(e.node(_SIMPLE[op.kind], ins, out))
    return e


def table_nodes(table: Table, x_name: str, y_name: str, prefix: str,
                elem_type: int = TensorProto.FLOAT, lowering: str = "auto"
                ) -> tuple[list[NodeProto], list[TensorProto]]:
    """Nodes computing `y_name = table(x_name)` and the initializers they use, every name but x/y
    starting with `prefix` (so several tables can be spliced into one graph)."""
    if elem_type not in DTYPES.values():
        raise InputError(f"element type {helper.tensor_dtype_to_string(elem_type)} is not supported; "
                         "use FLOAT, FLOAT16 or DOUBLE")
    plan = make_plan(table, lowering, dtype=helper.tensor_dtype_to_np_dtype(elem_type))
    e = _emit(plan, x_name, y_name, prefix, elem_type)
    return e.nodes, e.inits


def _opsets(opset: int) -> list:
    if opset < MIN_OPSET:
        raise InputError(f"opset {opset} is too old: the lowerings need opset >= {MIN_OPSET}")
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise InputError(f"opset {opset} is newer than the installed onnx {onnx.__version__} knows (at most {newest})")
    return [helper.make_opsetid("", opset)]


def table_function(table: Table, domain: str = "actiba", name: str | None = None,
                   lowering: str = "auto", elem_type: int = TensorProto.FLOAT,
                   opset: int = 18) -> FunctionProto:
    """The table as a local function `domain.name(x) -> y` (constants become Constant nodes, since
    functions cannot hold initializers). Add it to `model.functions` and import `domain` in the model."""
    name = name or f"pwl_{table.function}_{table.segments}".replace("-", "_").replace(":", "_")
    nodes, inits = table_nodes(table, "x", "y", "", elem_type, lowering)
    consts = [helper.make_node("Constant", [], [t.name], value=t) for t in inits]
    return helper.make_function(domain, name, ["x"], ["y"], consts + nodes, _opsets(opset), [])


def table_model(table: Table, dtype: str = "float32", lowering: str = "auto", opset: int = 18,
                rank: int = 1) -> ModelProto:
    """A standalone model `y = table(x)`, checked with full_check.

    x has `rank` dimensions, every one dynamic (named d0, d1, ...): the ONNX checker requires graph
    inputs to declare a rank, the graph itself is elementwise and works for any.
    """
    if dtype not in DTYPES:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not 0 <= rank <= 8:
        raise InputError(f"rank must be between 0 and 8, got {rank}")
    elem = DTYPES[dtype]
    plan = make_plan(table, lowering, dtype=dtype)
    e = _emit(plan, "x", "y", "pwl_", elem)
    dims = [f"d{i}" for i in range(rank)]
    graph = helper.make_graph(e.nodes, f"actiba_{plan.lowering.replace('-', '_')}",
                              [helper.make_tensor_value_info("x", elem, dims)],
                              [helper.make_tensor_value_info("y", elem, dims)], e.inits)
    ops = _opsets(opset)
    model = helper.make_model(graph, opset_imports=ops, producer_name="actiba",
                              ir_version=helper.find_min_ir_version_for(ops))
    helper.set_model_props(model, {"actiba.lowering": plan.lowering, "actiba.function": table.function,
                                   "actiba.segments": str(table.segments)})
    onnx.checker.check_model(model, full_check=True)
    return model


def export_cli(table: Table, out_path: str, params: dict[str, str]) -> str:
    """`actiba export T.json --to onnx -o OUT [--param lowering=..|dtype=..|opset=..|rank=..]`."""
    unknown = set(params) - {"lowering", "dtype", "opset", "rank"}
    if unknown:
        raise InputError(f"unknown onnx export parameter(s) {', '.join(sorted(unknown))}; "
                         "known: lowering, dtype, opset, rank")
    ints = {}
    for key, default in (("opset", "18"), ("rank", "1")):
        try:
            ints[key] = int(params.get(key, default))
        except ValueError:
            raise InputError(f"{key} must be an integer, got {params[key]!r}") from None
    opset = ints["opset"]
    dtype = params.get("dtype", "float32")
    model = table_model(table, dtype, params.get("lowering", "auto"), opset, ints["rank"])
    _atomic.write_bytes(out_path, model.SerializeToString())
    lowering = {p.key: p.value for p in model.metadata_props}["actiba.lowering"]
    return (f"wrote {out_path}: ONNX opset {opset}, {dtype}, lowering {lowering}, "
            f"{len(model.graph.node)} nodes, {table.segments} segments")
