"""What a rewrite is described by, and what every level reports: `RewriteSpec`, `Site`, shared constants.

Each rule module (`rewrite.rules.*`) holds its `SPEC`: what it matches, when it applies (and when it
must refuse), the math of the replacement and its numerical limits per precision; `rewrite.SPECS`
(by name) is gathered from the rules. Tolerances and refused precisions are read by the verification, so
`actiba rewrite --dry-run` and the docs cannot drift from what the code does.

Also here: `Site` (one place a rewrite could apply, with the decision and the reason) and the
triangular / ones constants every level builds its replacement from.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import activations


@dataclass(frozen=True)
class RewriteSpec:
    """A rewrite: pattern, conditions, replacement math, and numerical limits."""

    name: str
    matches: tuple[str, ...]
    conditions: tuple[str, ...]
    math: str
    limits: dict[str, str]  # precision -> what to expect / whether it is refused
    tolerance: float  # default max |difference| accepted by the verification (f32 run)
    refused_precisions: tuple[str, ...] = ()


def check_precision(spec: RewriteSpec, precision: str) -> str | None:
    """Why `spec` must not be applied for `precision`, or None if it may."""
    if precision in spec.refused_precisions:
        return f"{spec.name} refused for {precision}: {spec.limits.get(precision, '')}"
    return None


# --- activations -----------------------------------------------------------------------------------

# the functions ActiBA can replace, and their aliases: one registry entry each (`actiba.activations`)
ACT_FUNCTIONS = activations.NAMES


def canonical_function(name: str) -> str:
    return activations.canonical(name)


def table_mismatch(table: Any, function: str, beta: float | None = None) -> str | None:
    """Why `table` cannot stand for `function` (with `beta`), or None if it can.

    Tables of unknown/custom functions are trusted (the user chose them explicitly).
    """
    tf = canonical_function(getattr(table, "function", "custom") or "custom")
    if tf in ACT_FUNCTIONS and tf != function:
        return f"table approximates {tf}, site computes {function}"
    if beta is not None and tf in activations.BY_NAME and activations.BY_NAME[tf].beta:
        tb = float((getattr(table, "params", None) or {}).get("beta", 1.0))
        if abs(tb - beta) > 1e-6 * max(1.0, abs(beta)):
            return f"table has beta={tb:g}, site has beta={beta:g}"
    return None


def table_error(table: Any) -> float | None:
    """The table's stated max-abs error, or None if it states none."""
    err = getattr(table, "error", None) or {}
    v = err.get("max_abs") if isinstance(err, dict) else None
    return float(v) if v is not None else None


# --- sites -----------------------------------------------------------------------------------------

class _Detail(dict):
    """`Site.detail`: the match's plain fields; a key it lacks falls back to the typed match data
    (`Site.match`), so ``detail["root"]`` / ``detail["table"]`` keep working for older callers."""

    def __init__(self, data: Any = (), site: Site | None = None) -> None:
        super().__init__(data)
        self._site = site

    def __missing__(self, key: str) -> Any:
        m = None if self._site is None else self._site.match
        if m is not None and hasattr(m, key):
            return getattr(m, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


@dataclass
class Site:
    """One place a rewrite could apply: where, what, and whether it will (and why not).

    `detail` holds plain reported values (str / numbers / bools); the rule's typed match data, with
    the live nodes and tensors its replacement needs, is `match` (None for a skip), and `scope` the
    graph scope it was found in. Neither is part of `as_dict`.
    """

    rewrite: str
    name: str
    op: str
    shape: tuple[Any, ...] | None = None
    axis: Any = None
    dtype: str | None = None
    decision: str = "rewrite"  # "rewrite" or "skip"
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    match: Any = field(default=None, repr=False, compare=False)
    scope: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.detail = _Detail(self.detail, self)

    @property
    def ok(self) -> bool:
        return self.decision == "rewrite"

    def skip(self, reason: str) -> Site:
        self.decision, self.reason = "skip", reason
        return self

    def as_dict(self) -> dict[str, Any]:
        plain = (str, int, float, bool)
        return {
            "rewrite": self.rewrite, "name": self.name, "op": self.op,
            "shape": None if self.shape is None else [v if isinstance(v, int) else str(v)
                                                      for v in self.shape],
            "axis": self.axis, "dtype": self.dtype, "decision": self.decision, "reason": self.reason,
            "detail": {k: v for k, v in self.detail.items() if isinstance(v, plain)},
        }

    def line(self) -> str:
        shape = "?" if self.shape is None else "[" + ",".join(str(s) for s in self.shape) + "]"
        axis = "" if self.axis is None else f" axis={self.axis}"
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.rewrite:8s} {self.op:12s} {self.name} {shape}{axis} -> {self.decision}{why}"


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def select(sites: list[Site], include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[Site]:
    """Mark sites outside the include globs, or inside an exclude glob, as skipped (in place)."""
    include, exclude = list(include), list(exclude)
    for s in sites:
        if not s.ok:
            continue
        if include and not matches_any(s.name, include):
            s.skip("not selected (name matches no --sites pattern)")
        elif exclude and matches_any(s.name, exclude):
            s.skip("excluded by --exclude pattern")
    return sites


def keep_selected(found: list[Site], sites: Iterable[Site | str] | None, rewrite: str) -> list[Site]:
    """Skip the eligible sites of `found` not named in `sites` (None: keep all); return those kept.

    `sites` may mix names and Site objects; Site objects of other rewrites are ignored."""
    if sites is not None:
        wanted = {s.name if isinstance(s, Site) else s for s in sites
                  if not isinstance(s, Site) or s.rewrite == rewrite}
        for s in found:
            if s.ok and s.name not in wanted:
                s.skip("not selected")
    return [s for s in found if s.ok]


def inventory_diff(before: dict[str, int], after: dict[str, int]) -> str:
    """`op: before -> after` lines for the op types whose count changed."""
    rows = []
    for op in sorted(set(before) | set(after)):
        b, a = before.get(op, 0), after.get(op, 0)
        if a != b:
            rows.append(f"  {op:16s} {b:5d} -> {a:5d}")
    total = f"  {'(all)':16s} {sum(before.values()):5d} -> {sum(after.values()):5d}"
    return "\n".join(rows + [total])


# --- constants ---------------------------------------------------------------------------------------

def cumsum_matrix(n: int, exclusive: bool = False, reverse: bool = False,
                  dtype: Any = np.float32) -> np.ndarray:
    """M (n×n) with M[i, j] = 1 iff x_j contributes to y_i, so y = M @ x along the summed axis.

    inclusive forward j<=i, exclusive j<i, reverse j>=i, reverse+exclusive j>i. For the last axis use
    x @ M.T (the transposed constant), never a Transpose of x.
    """
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    if reverse:
        m = (j > i) if exclusive else (j >= i)
    else:
        m = (j < i) if exclusive else (j <= i)
    return m.astype(dtype)


def normalize_axes(axes: Iterable[int], rank: int) -> list[int] | None:
    """Sorted non-negative axes, or None if one is out of range or repeated."""
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < rank:
            return None
        out.append(a % rank)
    return sorted(out) if len(set(out)) == len(out) else None


def reduce_plan(axes: list[int], rank: int) -> str:
    """How ReduBA lays the reduction out: 'last', 'second', 'trailing', 'block' or 'transpose'."""
    if axes == [rank - 1]:
        return "last"
    if axes == [rank - 2]:
        return "second"
    contiguous = axes == list(range(axes[0], axes[-1] + 1))
    if contiguous and axes[-1] == rank - 1:
        return "trailing"
    if contiguous:
        return "block"
    return "transpose"
