"""CumBA: CumSum(x, axis) as a MatMul with a triangular 0/1 constant (its `SPEC` below).

Axis −2: L @ x; last axis: x @ Lᵀ; any other axis a: Reshape to (d0..d(a−1), n, Q), L @ ·, Reshape
back — no Transpose anywhere. Needs a constant axis, a static length n (the constant is n×n) and a
float element type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import spec
from ..spec import RewriteSpec
from .base import Builder, Context, Head, Match, Result, Rule, View, float_check, handle

NAME = "cumba"


@dataclass(kw_only=True)
class CumbaMatch(Match):
    x: Any = handle()
    a: int            # normalized axis
    rank: int
    n: int
    exclusive: bool
    reverse: bool


def match(v: View, node: Any, ctx: Context) -> Result:
    ins = v.ins(node)
    x = ins[0]
    h = Head(node, v.native(node), v.shape(x), v.type_name(x))
    ax = v.const(ins[1]) if len(ins) > 1 and ins[1] is not None else (np.array(0) if v.level == "openvino" else None)
    if ax is None or ax.size != 1:
        return h.skip("axis is not a constant")
    if (why := float_check(v, x)) is not None:
        return h.skip(why)
    if h.shape is None:
        return h.skip(v.rank_unknown())
    rank = len(h.shape)
    a = int(ax.reshape(-1)[0])
    if not -rank <= a < rank:
        return h.skip(f"axis {a} out of range for rank {rank}")
    a %= rank
    h.axis = a - rank  # negative: -1 last, -2 the MatMul row axis
    n = h.shape[a]
    if not isinstance(n, int):
        return h.skip(f"length along axis {a - rank} is dynamic ({n}); the triangular constant needs it static")
    how = "x @ Uᵀ (last axis)" if a == rank - 1 else "L @ x" if a == rank - 2 else "reshape, L @ x, reshape"
    return CumbaMatch(head=h, reason=f"n={n}: {how}", replaces=(v.out(node),), x=x, a=a, rank=rank, n=n,
                      exclusive=bool(v.attr(node, "exclusive", 0)), reverse=bool(v.attr(node, "reverse", 0)))


def build(b: Builder, m: CumbaMatch) -> tuple[Any, ...]:
    tri = spec.cumsum_matrix(m.n, m.exclusive, m.reverse, np.float64)
    x = m.x
    if m.a == m.rank - 1:
        return (b.matmul(x, b.const(tri.T, x, "tri")),)
    if m.a == m.rank - 2:
        return (b.matmul(b.const(tri, x, "tri"), x),)
    r = b.reshape(x, [0] * m.a + [m.n, -1])
    return (b.reshape_as(b.matmul(b.const(tri, x, "tri"), r), x),)


SPEC = RewriteSpec(
    name="cumba",
    matches=("CumSum(x, axis) [ONNX; OpenVINO CumSum]",
             "torch.cumsum / Tensor.cumsum inside selected modules (torch_sums.sums_scope)"),
    conditions=(
        "axis is a constant",
        "the length n along the axis is static (the constant is n×n)",
        "floating-point element type (integer MatMul is not what NPUs accelerate)",
    ),
    math=("y = L @ x on axis −2 (L[i,j]=1 iff j contributes to i: j<=i, j<i exclusive, j>=i reverse, "
          "j>i both); y = x @ Lᵀ on the last axis; any other axis a: reshape to (d0..d(a−1), n, Q) "
          "with Q = prod of the later dims, L @ ·, reshape back — no Transpose anywhere"),
    limits={
        "f32": "exact up to summation order: |err| <= n·eps·sum|x| (~1e-6 relative)",
        "bf16": "0/1 constants are exact; accumulation happens in the MatMul's accumulator (f32 on CPU/NPU)",
        "f16": "as bf16; partial sums beyond 65504 overflow as CumSum would",
    },
    tolerance=1e-4,
)


RULE = Rule(NAME, "exact", (("CumSum",),), match, build, spec=SPEC, order=40)
