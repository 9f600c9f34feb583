"""ReduBA: ReduceSum / ReduceMean as a MatMul with a ones (or 1/K) vector (its `SPEC` below).

Last axis: x @ 1_K; axis −2: 1_K @ x; several contiguous axes: Reshape with 0-copies, then the same;
non-contiguous: Transpose them last; keepdims restores the unit axes with Unsqueeze. Empty axes with
ONNX's noop_with_empty_axes (or OpenVINO's empty axes constant) are an Identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import spec
from ..spec import RewriteSpec
from .base import Builder, Context, Head, Match, Result, Rule, View, float_check, handle

NAME = "reduba"


@dataclass(kw_only=True)
class RedubaMatch(Match):
    x: Any = handle()
    plan: str                 # identity, last, second, trailing, block, transpose
    axes: list[int]
    rank: int
    k: int
    keepdims: bool
    mean: bool
    tail: list[int]           # the dims after the last reduced axis (block plan)


def match(v: View, node: Any, ctx: Context) -> Result:
    x = v.ins(node)[0]
    h = Head(node, v.native(node), v.shape(x), v.type_name(x))
    keep, mean = bool(v.attr(node, "keepdims", 1)), v.op(node) == "ReduceMean"
    axes = v.reduce_axes(node)
    why = axes if isinstance(axes, str) else float_check(v, x)
    if why is None and h.shape is None:
        why = v.rank_unknown()
    if why is not None:
        return h.skip(why)
    rank = len(h.shape)
    out = (v.out(node),)
    if axes == []:
        h.axis = []
        return RedubaMatch(head=h, reason="empty axes: Identity", replaces=out, x=x, plan="identity", axes=[],
                           rank=rank, k=1, keepdims=keep, mean=mean, tail=[])
    if rank == 0:
        return h.skip("scalar input")
    norm = spec.normalize_axes(range(rank) if axes is None else axes, rank)
    if norm is None:
        return h.skip(f"axes {axes} invalid for rank {rank}")
    h.axis = [a - rank for a in norm]
    dyn = [a - rank for a in norm if not isinstance(h.shape[a], int)]
    if dyn:
        return h.skip(f"reduced axes {dyn} have dynamic length; the ones vector needs it static")
    plan = spec.reduce_plan(norm, rank)
    tail = list(h.shape[norm[-1] + 1:])
    if plan == "block" and rank - norm[-1] > 2 and not all(isinstance(d, int) for d in tail):
        plan = "transpose"
    k = math.prod(h.shape[a] for a in norm)
    return RedubaMatch(head=h, reason=f"K={k}: {plan}", replaces=out, x=x, plan=plan, axes=norm, rank=rank, k=k,
                       keepdims=keep, mean=mean, tail=tail)


def build(b: Builder, m: RedubaMatch) -> tuple[Any, ...]:
    x = m.x
    if m.plan == "identity":
        return (b.identity(x),)
    k, keep = m.k, m.keepdims
    vec = np.full(k, 1.0 / k if m.mean else 1.0)
    if m.plan == "last":
        return (b.matmul(x, b.const(vec.reshape(k, 1) if keep else vec, x, "ones")),)
    if m.plan == "second":
        return (b.matmul(b.const(vec.reshape(1, k) if keep else vec, x, "ones"), x),)
    if m.plan == "block":
        a0, a1 = m.axes[0], m.axes[-1]
        out = b.matmul(b.const(vec, x, "ones"), b.reshape(x, [0] * a0 + [k, -1]))
        if m.rank - a1 > 2:
            out = b.reshape(out, [0] * a0 + m.tail)
    else:
        kept = [i for i in range(m.rank) if i not in m.axes]
        src = b.transpose(x, kept + m.axes) if m.plan == "transpose" else x
        out = b.matmul(b.reshape(src, [0] * len(kept) + [k]), b.const(vec, x, "ones"))
    return (b.unsqueeze(out, m.axes) if keep else b.identity(out),)


SPEC = RewriteSpec(
    name="reduba",
    matches=("ReduceSum(x, axes) opset<13 attr / >=13 input",
             "ReduceMean(x, axes) opset<18 attr / >=18 input", "OpenVINO ReduceSum / ReduceMean",
             "torch.sum / torch.mean (and Tensor methods) inside selected modules (torch_sums.sums_scope)"),
    conditions=(
        "axes constant (or absent: all axes unless noop_with_empty_axes=1, which becomes Identity)",
        "the reduced dims are static (K = their product sizes the ones vector)",
        "floating-point element type",
    ),
    math=("last axis: x @ 1_K (keepdims: 1_{K×1}); axis −2: 1_K @ x (keepdims: 1_{1×K}); several "
          "contiguous axes: Reshape with 0-copies then the same; non-contiguous: Transpose them last; "
          "ReduceMean uses (1/K)·1 instead of 1; keepdims=1 restores the unit axes with Unsqueeze"),
    limits={
        "f32": "exact up to summation order; ReduceMean's 1/K is rounded once (|rel err| <= eps)",
        "bf16": "1/K is rounded to bf16 when K is no power of two (rel err <= 2^-8) unless kept in f32",
        "f16": "1/K rounded to f16 (rel err <= 2^-11); sums beyond 65504 overflow",
    },
    tolerance=1e-4,
)


RULE = Rule(NAME, "exact", (("ReduceSum", "ReduceMean"),), match, build, spec=SPEC, order=50)
