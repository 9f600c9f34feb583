"""ActiBA: an activation op or pattern replaced by a piecewise-linear table's lowering (its `SPEC` below).

Patterns, from the activation registry (`actiba.activations`): the single ops whose only meaning is one
function (Softplus, Sigmoid, Tanh, Exp), Swish(alpha) as SiLU with beta = alpha, Gelu(approximate),
x·Sigmoid(x) as SiLU, x·0.5·(1+Erf(x/√2)) as erf-GELU and x·0.5·(1+Tanh(√(2/π)(x+0.044715·x³))) as
tanh-GELU (GPT-2's ``gelu_new``, Gemma's ``gelu_pytorch_tanh`` below opset 20), in any association
order. SiLU and erf-GELU are matched in a first pass, so the Sigmoid inside a SiLU is not a site of its
own; a Tanh is taken as tanh-GELU when the pattern is around it, else as tanh. Which table a site
gets is decided afterwards (`pick_table`: node-name globs, then the per-site set by site id, then the
function's table) and checked against the site's function and beta.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ... import activations
from .. import spec
from ..spec import RewriteSpec
from .base import (
    Builder,
    Context,
    Head,
    Match,
    Result,
    Rule,
    View,
    float_check,
    handle,
    only_user,
    other_input,
    scalar_const,
)

NAME = "actiba"


@dataclass(kw_only=True)
class ActibaMatch(Match):
    x: Any = handle()
    function: str
    beta: float | None
    nodes: tuple[Any, ...]        # every pattern node, the root last
    not_float: str | None         # why x is no float tensor (decided after site ids are numbered)
    table: Any = None
    table_source: str = ""
    site_id: str | None = None
    lowering: str = "auto"


def _close(v: View, t: Any, value: float, rel: float = 1e-3) -> bool:
    c = scalar_const(v, t)
    return c is not None and abs(c - value) <= rel * abs(value)


def _silu_x(v: View, mul: Any) -> tuple[Any, Any] | None:
    """(x, the Sigmoid) if `mul` is x·Sigmoid(x)."""
    ins = v.ins(mul)
    if len(ins) != 2:
        return None
    for xi, si in ((0, 1), (1, 0)):
        s = v.producer(ins[si])
        if s is not None and v.op(s) == "Sigmoid" and v.key(v.ins(s)[0]) == v.key(ins[xi]):
            return ins[xi], s
    return None


def _erf_gelu(v: View, erf: Any) -> tuple[Any, Any, list[Any]] | None:
    """x·0.5·(1+Erf(x/√2)) in any association order -> (x, final node, pattern nodes)."""
    scale = v.producer(v.ins(erf)[0])
    if scale is None:
        return None
    si = v.ins(scale)
    if v.op(scale) == "Div" and _close(v, si[1], math.sqrt(2.0)):
        x = si[0]
    elif v.op(scale) == "Mul":
        if _close(v, si[1], 1 / math.sqrt(2.0)):
            x = si[0]
        elif _close(v, si[0], 1 / math.sqrt(2.0)):
            x = si[1]
        else:
            return None
    else:
        return None
    return _half_x_times_one_plus(v, erf, x, [scale, erf])


def _const_times(v: View, node: Any, value: float) -> Any:
    """The other input of `node` if it is a Mul by a scalar constant close to `value`, else None."""
    if node is None or v.op(node) != "Mul":
        return None
    a, b = v.ins(node)[:2]
    return b if _close(v, a, value) else a if _close(v, b, value) else None


def _tanh_gelu(v: View, tanh: Any) -> tuple[Any, Any, list[Any]] | None:
    """x·0.5·(1+Tanh(√(2/π)·(x+0.044715·x³))) in any association order, x³ as Pow(x, 3) (how GPT-2's
    ``gelu_new`` and F.gelu(approximate="tanh") export below opset 20) -> (x, final node, pattern nodes)."""
    scale = v.producer(v.ins(tanh)[0])
    inner = _const_times(v, scale, math.sqrt(2.0 / math.pi))
    add = None if inner is None else v.producer(inner)
    if add is None or v.op(add) != "Add":
        return None
    for x, cubic in (v.ins(add)[:2], v.ins(add)[1::-1]):
        mul = v.producer(cubic)
        cube = _const_times(v, mul, 0.044715)
        pow_ = None if cube is None else v.producer(cube)
        if (pow_ is not None and v.op(pow_) == "Pow" and v.key(v.ins(pow_)[0]) == v.key(x)
                and _close(v, v.ins(pow_)[1], 3.0, rel=1e-6)):
            return _half_x_times_one_plus(v, tanh, x, [pow_, mul, add, scale, tanh])
    return None


def _half_x_times_one_plus(v: View, core: Any, x: Any, nodes: list[Any]) -> tuple[Any, Any, list[Any]] | None:
    """The common tail of both GELUs: x·0.5·(1 + core) in any association order -> (x, final node, nodes)."""
    add = only_user(v, v.out(core), "Add")
    if add is None or not _close(v, other_input(v, add, v.out(core)), 1.0):
        return None
    nodes, cur, need = [*nodes, add], v.out(add), {"x", "half"}
    for _ in range(2):
        mul = only_user(v, cur, "Mul")
        if mul is None:
            return None
        o = other_input(v, mul, cur)
        if o is None:
            return None
        if v.key(o) == v.key(x):
            need.discard("x")
        elif _close(v, o, 0.5):
            need.discard("half")
        else:
            p = v.producer(o)
            pi = [] if p is None else v.ins(p)
            if p is not None and v.op(p) == "Mul" and any(v.key(i) == v.key(x) for i in pi) and any(
                    _close(v, i, 0.5) for i in pi if v.key(i) != v.key(x)):
                need.clear()
                nodes.append(p)
            else:
                return None
        nodes.append(mul)
        cur = v.out(mul)
        if not need:
            return x, mul, nodes
    return None


def _site(v: View, root: Any, x: Any, op: str, fn: str, beta: float | None, nodes: list[Any]) -> ActibaMatch:
    h = Head(root, op, v.shape(x), v.type_name(x))
    return ActibaMatch(head=h, reason="", replaces=(v.out(root),), dead=tuple(n for n in nodes if n is not root),
                       x=x, function=fn, beta=beta, nodes=tuple(nodes), not_float=float_check(v, x))


def match(v: View, node: Any, ctx: Context) -> Result:
    op = v.op(node)
    if op == "Mul":
        found = _silu_x(v, node)
        if found is None:
            return None
        x, s = found
        return _site(v, node, x, f"{v.native(node)}(x,Sigmoid(x))", "silu", 1.0, [s, node])
    if op == "Erf":
        m = _erf_gelu(v, node)
        if m is None:
            return None
        x, root, nodes = m
        return _site(v, root, x, "Erf-GELU", "gelu", None, nodes)
    if op == "Tanh" and (m := _tanh_gelu(v, node)) is not None:
        x, root, nodes = m
        return _site(v, root, x, "Tanh-GELU", "gelu-tanh", None, nodes)
    x = v.ins(node)[0]
    if op == "Sigmoid" and any(v.op(u) == "Mul" and _silu_x(v, u) is not None for u in v.users(v.out(node))):
        return None  # part of a SiLU (matched in the first pass)
    fn, beta = activations.ONNX_OPS.get(op), None
    if fn is not None:
        beta = 1.0 if activations.BY_NAME[fn].beta else None
    elif op == "Swish":
        fn = "silu"
        if v.level == "onnx":
            beta = float(v.attr(node, "alpha", 1.0))
        else:
            ins = v.ins(node)
            beta = scalar_const(v, ins[1]) if len(ins) > 1 else 1.0
            if beta is None:
                return _site(v, node, x, v.native(node), fn, None, [node]).head.skip("Swish beta is not a constant")
    elif op == "Gelu":
        fn = "gelu-tanh" if str(v.attr(node, "approximate", "none")).lower() == "tanh" else "gelu"
    else:
        return None
    return _site(v, node, x, v.native(node), fn, beta, [node])


def build(b: Builder, m: ActibaMatch) -> tuple[Any, ...]:
    return (b.table(m.table, m.x, m.lowering),)


def pick_table(site: spec.Site, tables: dict[str, Any], site_tables: list[tuple[str, Any]],
               chooser: Any = None) -> None:
    """Node-name globs (`site_tables`) first, then the per-site set by site id, then `tables[function]`;
    the choice is recorded on the match, the reason on the site (which is skipped if none fits)."""
    m: ActibaMatch = site.match
    fn, sid = m.function, m.site_id
    if m.not_float is not None:
        site.skip(m.not_float)
        return
    table = next((t for pat, t in site_tables if spec.matches_any(site.name, [pat])), None)
    source = "by site pattern"
    if table is None and chooser is not None and sid is not None:
        key = chooser.key_for(sid)
        if key is not None:
            table, source = chooser.table_for(sid), f"set key {key}"
    if table is None:
        table, source = tables.get(fn), f"--act {fn}"
    if table is None:
        site.skip(f"no table for {fn}" if chooser is None or sid is not None
                  else f"no table for {fn} (no site id: node has no namespace metadata)")
        return
    if (why := spec.table_mismatch(table, fn, m.beta)) is not None:
        site.skip(why)
        return
    m.table, m.table_source = table, source
    site.detail["table_source"] = source
    err = spec.table_error(table)
    site.reason = f"{fn} table ({table.segments} segments, {source})" + (
        f", max_abs {err:.3g}" if err is not None else "") + (f"; site {sid}" if sid is not None else "")


SPEC = RewriteSpec(
    name="actiba",
    matches=("Softplus", "Mul(x, Sigmoid(x)) [SiLU]", "Swish (opset 24 / OpenVINO, alpha=beta)",
             "Gelu (approximate none|tanh), x·0.5·(1+Erf(x/√2)) and x·0.5·(1+Tanh(√(2/π)(x+0.044715x³)))",
             "Sigmoid", "Tanh", "Exp",
             "torch: F.silu/F.softplus/F.gelu/torch.sigmoid/tanh/exp inside the selected modules"),
    conditions=(
        "a table for the site's function (by op type, or by site-name pattern)",
        "the table's function and beta agree with the op (a silu table for Swish(alpha) needs beta=alpha)",
    ),
    math="y = slopes[i]·x + intercepts[i], i = #breakpoints <= x (the table's lowering: relu-sum or select)",
    limits={
        "f32": "the table's own approximation error (its error.max_abs over its domain); see --act-tolerance",
        "bf16": "table error plus bf16 rounding of slopes/intercepts and of x (~2^-8 relative)",
        "f16": "table error plus f16 rounding (~2^-11 relative)",
    },
    tolerance=float("inf"),  # judged against the table's stated error instead, see verify
)


RULE = Rule(NAME, "approx", (("Mul", "Erf"), tuple(activations.ONNX_OPS) + ("Swish", "Gelu")), match, build,
            spec=SPEC, order=60)
