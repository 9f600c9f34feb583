"""torch lowering: `pwl(x, table)` and the module `PWL`, differentiable almost everywhere.

The plan (`actiba.lower.plan`) is interpreted with torch ops, so autograd gives d/dx = the slope of
x's segment (0 at a flat segment, undefined only on the breakpoints themselves). Constants are
buffers kept in float64 and cast to x's dtype at each call, so breakpoints are compared in x's dtype
exactly as the reference assumes. torch is imported only here: the CLI starts without it.

Saved artefacts (`actiba export --to torch`) are `torch.export` programs (`.pt2`); load with
``torch.export.load(path).module()(x)`` — no actiba needed. (TorchScript is deprecated in torch 2.x.)
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor, nn

from .. import _atomic
from ..errors import InputError
from ..table import Table
from .plan import Const, Plan, make_plan, resolve

_BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "less": torch.lt, "greater": torch.gt,
           "greater_equal": torch.ge, "equal": torch.eq}
_NARY = {"sum": torch.add, "max": torch.maximum, "min": torch.minimum}


def _execute(plan: Plan, consts: list[Tensor], x: Tensor) -> Tensor:
    """Run `plan` on x; `consts[i]` is the i-th Const of the plan (in op order), in any float dtype."""
    vals: list[Tensor] = [x]
    it = iter(consts)  # consumed in plan order: ops in turn, each op's args left to right

    def arg(a: int | Const) -> Tensor:
        return next(it).to(x.dtype) if isinstance(a, Const) else vals[a]

    for op in plan.ops:
        k, a = op.kind, op.args
        if k in _BINARY:
            r = _BINARY[k](arg(a[0]), arg(a[1]))
        elif k in _NARY:
            r = _NARY[k](arg(a[0]), arg(a[1]))
            for extra in a[2:]:
                r = _NARY[k](r, arg(extra))
        elif k == "relu":
            r = torch.relu(arg(a[0]))
        elif k == "abs":
            r = torch.abs(arg(a[0]))
        elif k == "isnan":
            r = torch.isnan(arg(a[0]))
        elif k == "clip":
            v, lo, hi = arg(a[0]), arg(a[1]), arg(a[2])
            r = torch.minimum(torch.maximum(v, lo), hi)
        elif k == "where":
            r = torch.where(arg(a[0]), arg(a[1]), arg(a[2]))
        else:  # pragma: no cover - plan and interpreter are kept in step by the tests
            raise AssertionError(f"no torch translation for plan op {k!r}")
        vals.append(r)
    return vals[-1].expand_as(x) if vals[-1].shape != x.shape else vals[-1]


def _plan_consts(plan: Plan) -> list[np.ndarray]:
    return [a.value for op in plan.ops for a in op.args if isinstance(a, Const)]


# plans are built per dtype (a slope may round to 0 in float16); bfloat16 uses the float32 plan
_PLAN_DTYPES = {torch.float64: "float64", torch.float32: "float32", torch.float16: "float16",
                torch.bfloat16: "float32"}


class PWL(nn.Module):
    """`y = table(x)` elementwise, as the lowering chosen for the table (buffers hold the constants
    of the plan for each float dtype, so `.to(device)` moves them and `state_dict` saves them)."""

    def __init__(self, table: Table, lowering: str = "auto") -> None:
        super().__init__()
        self.lowering = resolve(table, lowering)
        self.segments = table.segments
        self._plans: dict[str, Plan] = {}
        self._names: dict[str, list[str]] = {}
        for key in dict.fromkeys(_PLAN_DTYPES.values()):
            plan = make_plan(table, self.lowering, dtype=key)
            self._plans[key] = plan
            self._names[key] = []
            for i, v in enumerate(_plan_consts(plan)):
                name = f"{key}_c{i}"
                self.register_buffer(name, torch.as_tensor(np.asarray(v, dtype=np.float64)))
                self._names[key].append(name)

    def forward(self, x: Tensor) -> Tensor:
        key = _PLAN_DTYPES.get(x.dtype)
        if key is None:
            raise TypeError(f"PWL needs a floating-point input, got {x.dtype}")
        return _execute(self._plans[key], [getattr(self, n) for n in self._names[key]], x)

    def extra_repr(self) -> str:
        return f"segments={self.segments}, lowering={self.lowering!r}"


def pwl(x: Tensor, table: Table, lowering: str = "auto") -> Tensor:
    """Functional form of `PWL` (builds the plan on every call; keep a `PWL` in hot loops)."""
    key = _PLAN_DTYPES.get(x.dtype)
    if key is None:
        raise TypeError(f"pwl needs a floating-point input, got {x.dtype}")
    plan = make_plan(table, lowering, dtype=key)
    consts = [torch.as_tensor(np.asarray(v, dtype=np.float64), device=x.device) for v in _plan_consts(plan)]
    return _execute(plan, consts, x)


def export_program(table: Table, lowering: str = "auto", dtype: torch.dtype = torch.float32, rank: int = 1):
    """A `torch.export.ExportedProgram` of `PWL(table)` with every input dimension dynamic."""
    if not 1 <= rank <= 8:
        raise InputError(f"rank must be between 1 and 8, got {rank}")
    example = torch.zeros((2,) * rank, dtype=dtype)
    dims = {i: torch.export.Dim.DYNAMIC for i in range(rank)}
    return torch.export.export(PWL(table, lowering).eval(), (example,), dynamic_shapes=({**dims},))


def export_onnx(table: Table, path: str | os.PathLike, lowering: str = "auto",
                dtype: torch.dtype = torch.float32, rank: int = 1, dynamo: bool = True, opset: int = 18) -> None:
    """`torch.onnx.export` of `PWL(table)` (graph = the chosen lowering, every dimension dynamic),
    written atomically. `dynamo=False` uses the older TorchScript exporter: ~40x faster, deprecated."""
    if not 1 <= rank <= 8:
        raise InputError(f"rank must be between 1 and 8, got {rank}")
    module = PWL(table, lowering).eval()
    example = (torch.zeros((2,) * rank, dtype=dtype),)
    with _atomic.atomic_path(path, suffix=".onnx") as tmp:
        if dynamo:
            from .._quiet import quiet_torch_export

            dims = {i: torch.export.Dim.DYNAMIC for i in range(rank)}
            with quiet_torch_export():
                prog = torch.onnx.export(module, example, dynamo=True, dynamic_shapes=({**dims},),
                                         input_names=["x"], output_names=["y"], opset_version=opset,
                                         verbose=False)
            prog.save(str(tmp))
        else:
            axes = {i: f"d{i}" for i in range(rank)}
            from .._quiet import legacy_onnx_export

            legacy_onnx_export(module, example, str(tmp), input_names=["x"], output_names=["y"],
                               dynamic_axes={"x": axes, "y": axes}, opset_version=opset)


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "float64": torch.float64}


def export_cli(table: Table, out_path: str, params: dict[str, str]) -> str:
    """`actiba export T.json --to torch -o OUT.pt2 [--param lowering=..|dtype=..|rank=..]`."""
    unknown = set(params) - {"lowering", "dtype", "rank"}
    if unknown:
        raise InputError(f"unknown torch export parameter(s) {', '.join(sorted(unknown))}; "
                         "known: lowering, dtype, rank")
    dtype = params.get("dtype", "float32")
    if dtype not in _DTYPES:
        raise InputError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    try:
        rank = int(params.get("rank", "1"))
    except ValueError:
        raise InputError(f"rank must be an integer, got {params['rank']!r}") from None
    prog = export_program(table, params.get("lowering", "auto"), _DTYPES[dtype], rank)
    with _atomic.atomic_path(out_path, suffix=".pt2") as tmp:
        torch.export.save(prog, str(tmp))
    lowering = resolve(table, params.get("lowering", "auto"))
    return (f"wrote {out_path}: torch.export program ({dtype}, lowering {lowering}, {table.segments} "
            "segments); load with torch.export.load(path).module()")
