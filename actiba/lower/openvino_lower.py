"""OpenVINO lowering, built directly from opset13 nodes (no ONNX round trip).

`plan.make_plan` translated op by op; n-ary sums and max/min become chains of binary nodes. Run on
CPU with an explicit inference precision (`{"INFERENCE_PRECISION_HINT": "f32"}`): OpenVINO CPU
otherwise defaults to bf16 where it can. Give the input static dimensions where you can: the CPU
plug-in fuses the elementwise chain into one JIT kernel only then (dynamic: one kernel per op).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from ..errors import InputError
from ..table import Table
from .plan import Const, make_plan, resolve

ELEMENT_TYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64}
_BINARY = {"add": ops.add, "sub": ops.subtract, "mul": ops.multiply, "less": ops.less,
           "greater": ops.greater, "greater_equal": ops.greater_equal, "equal": ops.equal}
_NARY = {"sum": ops.add, "max": ops.maximum, "min": ops.minimum}


def _np_type(x: ov.Output) -> type:
    et = x.get_element_type()
    for t in ELEMENT_TYPES.values():
        if et == ov.Type(t):
            return t
    raise InputError(f"OpenVINO lowering needs an f32, f16 or f64 input, got {et} ({sorted(ELEMENT_TYPES)})")


# OpenVINO CPU fuses elementwise chains into JIT "snippets" and keeps every scalar constant of one
# snippet in a vector register; with too many, compilation fails with "Can't allocate registers for
# a snippet" (2026.4, AVX2: ~27 scalars in a relu chain, ~16 in a Select chain, whose blends need
# registers too). So the emitter counts a region's cost (distinct scalars + WHERE_COST per Select)
# and, past REGION_BUDGET, moves the live values through an Unsqueeze(0)/Squeeze(0): snippets do
# not fuse those, so the chain is split there. Each split costs a pass over memory: the budget is
# as large as compiles (eval/bench_lowering.py checks N up to 32 for every lowering).
REGION_BUDGET = 25
WHERE_COST = 2
_AXIS0 = np.int64(0)


def _last_uses(plan_ops) -> dict[int, int]:
    last: dict[int, int] = {}
    for k, op in enumerate(plan_ops):
        for a in op.args:
            if isinstance(a, int):
                last[a] = k
    return last


def _scalars(op) -> set[bytes]:
    return {np.float64(a.value).tobytes() for a in op.args if isinstance(a, Const) and a.value.size == 1}


def table_subgraph(table: Table, x: ov.Output, lowering: str = "auto") -> ov.Output:
    """The output of a subgraph computing `table(x)` elementwise, in x's element type."""
    dt = _np_type(x)
    plan = make_plan(table, lowering, dtype=dt)
    vals: list[ov.Output] = [x]
    consts: dict[tuple, ov.Output] = {}
    last_use = _last_uses(plan.ops)
    lifted = False  # True while values carry an extra leading axis (between barriers)
    region: set[bytes] = set()
    wheres = 0

    def const(v: np.ndarray) -> ov.Output:
        arr = np.asarray(v).astype(dt)
        key = (arr.shape, arr.tobytes())
        if key not in consts:
            consts[key] = ops.constant(arr).output(0)
        return consts[key]

    def arg(a: int | Const) -> ov.Output:
        return const(a.value) if isinstance(a, Const) else vals[a]

    def barrier(k: int) -> None:
        nonlocal lifted
        move = ops.squeeze if lifted else ops.unsqueeze
        for v in range(len(vals)):
            if last_use.get(v, -1) >= k:
                vals[v] = move(vals[v], ops.constant(_AXIS0)).output(0)
        lifted = not lifted

    for k, op in enumerate(plan.ops):
        need = _scalars(op) | ({b"clip-lo", b"clip-hi"} if op.kind == "clip" else set())
        w = int(op.kind == "where")
        if len(region | need) + WHERE_COST * (wheres + w) > REGION_BUDGET:
            barrier(k)
            region, wheres = set(), 0
        region |= need
        wheres += w
        kind, a = op.kind, op.args
        if kind in _BINARY:
            node = _BINARY[kind](arg(a[0]), arg(a[1]))
        elif kind in _NARY:
            node = _NARY[kind](arg(a[0]), arg(a[1]))
            for extra in a[2:]:
                node = _NARY[kind](node, arg(extra))
        elif kind == "relu":
            node = ops.relu(arg(a[0]))
        elif kind == "abs":
            node = ops.abs(arg(a[0]))
        elif kind == "isnan":
            node = ops.is_nan(arg(a[0]))
        elif kind == "clip":
            lo, hi = (float(np.asarray(c.value).astype(dt)) for c in a[1:])  # type: ignore[union-attr]
            node = ops.clamp(arg(a[0]), lo, hi)
        elif kind == "where":
            node = ops.select(arg(a[0]), arg(a[1]), arg(a[2]))
        else:  # pragma: no cover - plan and emitter are kept in step by the tests
            raise AssertionError(f"no OpenVINO translation for plan op {kind!r}")
        vals.append(node.output(0))
    y = vals[-1]
    return ops.squeeze(y, ops.constant(_AXIS0)).output(0) if lifted else y


def table_model(table: Table, element_type: str = "f32", lowering: str = "auto",
                shape: Sequence[int] | None = None) -> ov.Model:
    """A model `y = table(x)`; x has `shape` (-1 = dynamic dimension; default [-1]).

    The CPU plug-in needs a known rank, hence one here; `model.reshape(...)` changes it later, the
    graph is elementwise.
    """
    if element_type not in ELEMENT_TYPES:
        raise InputError(f"element_type must be one of {', '.join(ELEMENT_TYPES)}, got {element_type!r}")
    pshape = ov.PartialShape([-1] if shape is None else [int(d) for d in shape])
    x = ops.parameter(pshape, ov.Type(ELEMENT_TYPES[element_type]), name="x")
    y = table_subgraph(table, x.output(0), lowering)
    model = ov.Model([ops.result(y)], [x], f"actiba_pwl_{table.function}_{table.segments}")
    model.outputs[0].get_tensor().set_names({"y"})
    model.set_rt_info(resolve(table, lowering), ["actiba", "lowering"])
    return model


def save_model(model: ov.Model, xml_path: str | os.PathLike) -> None:
    """Save IR .xml + .bin through `_atomic.atomic_files` (links written through, devices in place,
    folders refused): the .bin is put in place before the .xml, so a reader that sees the new .xml
    finds its .bin."""
    from .. import _atomic

    xml = Path(xml_path)
    if xml.suffix != ".xml":
        raise InputError(f"OpenVINO IR output must end in .xml, got {xml}")
    with _atomic.atomic_files([xml.with_suffix(".bin"), xml]) as scratch:
        ov.save_model(model, str(scratch / xml.name), compress_to_fp16=False)


def export_cli(table: Table, out_path: str, params: dict[str, str]) -> str:
    """`actiba export T.json --to openvino -o OUT.xml [--param lowering=..|dtype=f32|f16|rank=..]`."""
    unknown = set(params) - {"lowering", "dtype", "rank"}
    if unknown:
        raise InputError(f"unknown openvino export parameter(s) {', '.join(sorted(unknown))}; "
                         "known: lowering, dtype, rank")
    dtype = {"float32": "f32", "float16": "f16", "float64": "f64"}.get(params.get("dtype", "f32"),
                                                                        params.get("dtype", "f32"))
    try:
        rank = int(params.get("rank", "1"))
    except ValueError:
        raise InputError(f"rank must be an integer, got {params['rank']!r}") from None
    if not 0 <= rank <= 8:
        raise InputError(f"rank must be between 0 and 8, got {rank}")
    model = table_model(table, dtype, params.get("lowering", "auto"), [-1] * rank)
    save_model(model, out_path)
    lowering = model.get_rt_info(["actiba", "lowering"]).astype(str)
    return (f"wrote {out_path} (+ .bin): OpenVINO IR, {dtype}, lowering {lowering}, "
            f"{len(model.get_ops())} nodes, {table.segments} segments")
