"""What a rewrite rule is, and the two protocols it reads and writes a graph through.

A rule (one module per rewrite in this package) is modelled on onnxscript's rewriter (pattern, check,
replacement): `match(view, node, ctx)` returns typed match data (a `Match` subclass: the tensors and
nodes the replacement needs), a `Skip` with the reason, or None when `node` is not the rule's pattern
at all; `build(builder, match)` returns one new tensor per entry of `match.replaces`. Rules see a
graph only through `View` and write only through `Builder`, so each condition and each replacement is
written once for every backend: ONNX (`onnx_view`, any If / Loop / Scan scope) and OpenVINO
(`openvino_view`) each supply both. What is reported is a `spec.Site` made from the match's plain
fields (`Match.report`); live nodes stay on `Site.match`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

FLOATS = ("float32", "float16", "bfloat16", "float64")


class View(Protocol):
    """Read access to one graph scope. Op names are ONNX's (OpenVINO's are mapped: Multiply → Mul,
    Select → Where, Broadcast → Expand, SoftPlus → Softplus); tensors are opaque handles, `key` makes
    them comparable; `users` includes a pseudo-node "<graph output>" for a graph output."""

    level: str                                    # "onnx" or "openvino"

    def nodes(self) -> list[Any]: ...             # this scope's nodes in graph order
    def op(self, node: Any) -> str: ...           # "" domain ONNX op name, "domain:Op" otherwise
    def native(self, node: Any) -> str: ...       # the backend's own op name (for reports)
    def ins(self, node: Any) -> list[Any]: ...    # absent optional inputs are None
    def out(self, node: Any) -> Any: ...
    def producer(self, t: Any) -> Any | None: ...
    def users(self, t: Any) -> list[Any]: ...
    def attr(self, node: Any, name: str, default: Any = None) -> Any: ...  # ONNX attribute names
    def const(self, t: Any) -> np.ndarray | None: ...
    def fold(self, t: Any) -> np.ndarray | None: ...  # the value if computable from constants alone
    def shape(self, t: Any) -> tuple[Any, ...] | None: ...
    def dtype(self, t: Any) -> str | None: ...   # "float32", "float16", "bfloat16", "float64", other, None
    def type_name(self, t: Any) -> str: ...      # the backend's own element type name (for reports)
    def key(self, t: Any) -> Any: ...
    def site(self, node: Any) -> str: ...        # the site name of a root node
    def reduce_axes(self, node: Any) -> list[int] | None | str: ...  # [] identity, None all, str: why not
    def rank_unknown(self) -> str: ...           # the reason text when a rank is not known here
    def opset(self) -> int: ...


class Builder(Protocol):
    """The ops replacements are made of (each returns a tensor handle; `like` gives the element type)."""

    def const(self, values: np.ndarray, like: Any, tag: str = "const") -> Any: ...
    def ints(self, values: list[int], tag: str = "ints") -> Any: ...
    def matmul(self, a: Any, b: Any) -> Any: ...
    def mul(self, a: Any, b: Any) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def sub(self, a: Any, b: Any) -> Any: ...
    def transpose(self, t: Any, perm: list[int]) -> Any: ...
    def unsqueeze(self, t: Any, axes: list[int]) -> Any: ...
    def squeeze(self, t: Any, axes: list[int]) -> Any: ...
    def reshape(self, t: Any, shape: list[int]) -> Any: ...   # 0 copies the input's dim
    def reshape_as(self, t: Any, like: Any) -> Any: ...       # Reshape(t, Shape(like))
    def identity(self, t: Any) -> Any: ...
    def cumsum(self, t: Any, axis: int) -> Any: ...
    def einsum(self, equation: str, operands: list[Any]) -> Any: ...
    def pad_like(self, t: Any, pad: Any) -> Any: ...          # `pad`'s pads / value / mode applied to t
    def table(self, table: Any, x: Any, lowering: str) -> Any: ...  # the table's lowering of x


@dataclass
class Head:
    """What every site reports, known before the rule decides: root node, op label, shape, element type."""

    root: Any
    op: str
    shape: tuple[Any, ...] | None
    dtype: str | None
    axis: Any = None

    def skip(self, reason: str) -> Skip:
        return Skip(self, reason)


@dataclass
class Skip:
    """The node is the rule's pattern but cannot be rewritten exactly; `reason` says why."""

    head: Head
    reason: str


_PLAIN = (str, int, float, bool)


def handle(default: Any = dataclasses.MISSING) -> Any:
    """A match field holding a graph tensor or node (never reported, even when it is an ONNX name)."""
    return field(default=default, metadata={"handle": True})


@dataclass(kw_only=True)
class Match:
    """Base of each rule's typed match data. `replaces`: the tensors the build returns replacements for
    (in order); `dead`: pattern nodes that die with it (dropped if nothing else reads them)."""

    head: Head
    reason: str
    replaces: tuple[Any, ...]
    dead: tuple[Any, ...] = ()

    @property
    def root(self) -> Any:
        """The node the site is named after (whose output the replacement takes over)."""
        return self.head.root

    node = root

    def report(self) -> dict[str, Any]:
        """The plain (str / number / bool / list of those) fields that are set, for `Site.detail`."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("head", "reason", "replaces", "dead") or f.metadata.get("handle"):
                continue
            v = getattr(self, f.name)
            if isinstance(v, _PLAIN) or (isinstance(v, (list, tuple)) and all(isinstance(i, _PLAIN) for i in v)):
                out[f.name] = v
        return out


@dataclass
class Context:
    """What a match may depend on besides the graph: the target precision and the rule's options."""

    precision: str = "f32"
    options: dict[str, Any] = field(default_factory=dict)


Result = Match | Skip | None


@dataclass(frozen=True)
class Rule:
    """One rewrite: its name, when it runs, how it matches and builds, its description and its place.

    `passes`: root op names offered to `match`, one tuple per pass over the scope (ActiBA matches the
    x·Sigmoid(x) and erf-GELU patterns before single ops). `stage`: "ssd" rules run first, each verified
    on its own; "exact" rules are verified against the original; "approx" (ActiBA) against the exact
    result. `levels`: the backends it is implemented for; `scopes`: whether it reaches control-flow bodies.
    """

    name: str
    stage: str
    passes: tuple[tuple[str, ...], ...]
    match: Callable[[View, Any, Context], Result]
    build: Callable[[Builder, Any], tuple[Any, ...]]
    levels: tuple[str, ...] = ("onnx", "openvino")
    scopes: bool = True
    spec: Any = None          # its `spec.RewriteSpec`
    order: int = 100          # place in the rewrite order (see `rules/__init__.py`)


def make_site(rule: Rule, view: View, found: Any) -> Any:
    """The reported `spec.Site` of what `rule.match` returned (a `Match` or a `Skip`), on any backend:
    the typed match rides on `site.match`, its plain values in `site.detail`."""
    from ..spec import Site

    h = found.head
    site = Site(rule.name, view.site(h.root), h.op, h.shape, axis=h.axis, dtype=h.dtype)
    if isinstance(found, Match):
        site.reason, site.match = found.reason, found
        site.detail.update(found.report())
    else:
        site.skip(found.reason)
    return site


def select(found: list, wanted: set[str] | None, choose: Callable[[list], None] | None) -> list:
    """The sites of `found` to rewrite: those still ok after the name filter `wanted` (others are marked
    "not selected") and the caller's own `choose` (which marks sites skipped, with its reason)."""
    for s in found:
        if s.ok and wanted is not None and s.name not in wanted:
            s.skip("not selected")
    if choose is not None:
        choose(found)
    return [s for s in found if s.ok]


def other_input(v: View, node: Any, t: Any) -> Any | None:
    """The other input of a binary node, given one of them."""
    ins = v.ins(node)
    if len(ins) != 2 or ins[0] is None or ins[1] is None:
        return None
    if v.key(ins[0]) == v.key(t):
        return ins[1]
    if v.key(ins[1]) == v.key(t):
        return ins[0]
    return None


def only_user(v: View, t: Any, op: str) -> Any | None:
    users = v.users(t)
    return users[0] if len(users) == 1 and v.op(users[0]) == op else None


def float_check(v: View, t: Any) -> str | None:
    """Why `t` is not a float tensor a MatMul rewrite may take, or None."""
    dt = v.dtype(t)
    if dt is None:
        return "element type unknown"
    if dt not in FLOATS:
        return f"element type {v.type_name(t)} is not floating point"
    return None


def scalar_const(v: View, t: Any) -> float | None:
    c = v.const(t) if t is not None else None
    return None if c is None or c.size != 1 else float(c.reshape(-1)[0])
