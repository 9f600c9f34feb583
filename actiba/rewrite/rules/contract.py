"""Contraction: ReduceSum(Mul(a, b)) over a broadcasting Mul as one Einsum (its `SPEC` below).

The broadcast product is never materialized. Needs static shapes, a Mul read only by the ReduceSum,
and a product larger than both operands (otherwise nothing is saved). ONNX only (OpenVINO's CPU plugin
fuses the pattern itself).
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Any

from .. import spec
from ..spec import RewriteSpec
from .base import Builder, Context, Head, Match, Result, Rule, View, float_check, handle

NAME = "contract"


@dataclass(kw_only=True)
class ContractMatch(Match):
    a: Any = handle()
    b: Any = handle()
    axes: list[int]
    keepdims: bool
    shapes: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def match(v: View, node: Any, ctx: Context) -> Result:
    if v.op(node) != "ReduceSum":
        return None
    prod = v.ins(node)[0]
    mul = v.producer(prod)
    if mul is None or v.op(mul) != "Mul":
        return None
    a, b = v.ins(mul)
    sa, sb, so = v.shape(a), v.shape(b), v.shape(prod)
    h = Head(node, "Mul+ReduceSum", so, v.type_name(a))
    axes = v.reduce_axes(node)
    why = axes if isinstance(axes, str) else float_check(v, a)
    if why is None and len(v.users(prod)) != 1:
        why = "the product has other consumers"
    static = all(s is not None and all(isinstance(d, int) for d in s) for s in (sa, sb, so))
    if why is None and not static:
        why = "operand shapes not static"
    if why is None and v.opset() < 12:
        why = "Einsum needs opset >= 12"
    if why is not None:
        return h.skip(why)
    rank = len(so)
    if axes == []:
        return h.skip("no-op reduction")
    norm = spec.normalize_axes(range(rank) if axes is None else axes, rank)
    if norm is None or rank > 26:
        return h.skip("axes invalid")
    h.axis = [x - rank for x in norm]
    size = math.prod(so)
    if size <= max(math.prod(sa), math.prod(sb)):
        return h.skip("the Mul does not broadcast: no intermediate saved")
    return ContractMatch(head=h, reason=f"product of {size} elements never materialized", replaces=(v.out(node),),
                         dead=(mul,), a=a, b=b, axes=norm, keepdims=bool(v.attr(node, "keepdims", 1)),
                         shapes=(tuple(sa), tuple(sb), tuple(so)))


def build(bld: Builder, m: ContractMatch) -> tuple[Any, ...]:
    sa, sb, so = m.shapes
    rank = len(so)
    letters = string.ascii_lowercase
    operands, subs = [], []
    for t, s in ((m.a, sa), (m.b, sb)):
        off = rank - len(s)
        squeeze, sub = [], ""
        for i, dim in enumerate(s):
            if dim == 1 and so[i + off] != 1:
                squeeze.append(i)
            else:
                sub += letters[i + off]
        operands.append(bld.squeeze(t, squeeze) if squeeze else t)
        subs.append(sub)
    out_letters = "".join(letters[i] for i in range(rank) if i not in m.axes)
    out = bld.einsum(f"{subs[0]},{subs[1]}->{out_letters}", operands)
    return (bld.unsqueeze(out, m.axes) if m.keepdims else bld.identity(out),)


SPEC = RewriteSpec(
    name="contract",
    matches=("ReduceSum(Mul(a, b), axes) where the Mul broadcasts (ONNX)",),
    conditions=(
        "a, b and axes static; the Mul has no other consumer",
        "the broadcast product is larger than both inputs (otherwise nothing is saved)",
    ),
    math="one Einsum over the un-broadcast operands: the product is never materialized",
    limits={"f32": "exact up to summation order", "bf16": "as MatMul", "f16": "as MatMul"},
    tolerance=1e-4,
)


RULE = Rule(NAME, "exact", (("ReduceSum",),), match, build, levels=("onnx",), spec=SPEC, order=30)
