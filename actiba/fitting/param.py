"""Parametrization of a piecewise-linear function by knots and knot values, with its Jacobian.

Knots P = [lo, p_1 .. p_{N-1}, hi]; the p are free. Each segment k carries a left and a right value
(shared between neighbours when continuous). Tail constraints are folded in here, once: an
asymptote-pinned segment has its values fixed by the asymptote line at its knots, a clamped one has
equal values. Every full value is an affine function of the free values z and the knots p:
u = B z + C p + d. Samples sit at fixed *relative* positions s inside a segment, so moving a knot moves
the samples with it and the Jacobian is exact in the values and first-order in the knots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ..table import Table
from .problem import Problem


@dataclass
class Layout:
    """Affine map from (free values z, free knots p) to the full value slots."""

    B: np.ndarray  # (slots, nz)
    C: np.ndarray  # (slots, np)
    d: np.ndarray  # (slots,)
    left_slot: np.ndarray  # (N,) value slot used at segment k's left end
    right_slot: np.ndarray  # (N,)

    @property
    def nz(self) -> int:
        return self.B.shape[1]

    def __post_init__(self) -> None:
        # B and C have at most one non-zero per row: keep it as (column, value) for sparse Jacobians
        self.zcol, self.zval = _row_entry(self.B)
        self.pcol, self.pval = _row_entry(self.C)

    def values(self, z: np.ndarray, p: np.ndarray) -> np.ndarray:
        return self.B @ z + self.C @ p + self.d


def _row_entry(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    col = np.full(M.shape[0], -1)
    val = np.zeros(M.shape[0])
    for i in range(M.shape[0]):
        nz = np.nonzero(M[i])[0]
        if nz.size:
            col[i], val[i] = nz[0], M[i, nz[0]]
    return col, val


def layout(prob: Problem) -> Layout:
    n = prob.segments
    if prob.continuous:
        slots = n + 1
        left_slot, right_slot = np.arange(n), np.arange(1, n + 1)
    else:
        slots = 2 * n
        left_slot, right_slot = 2 * np.arange(n), 2 * np.arange(n) + 1
    npar = n - 1
    # which slots are determined by constraints: slot -> ("asym", (a, b), knot index) or ("copy", slot)
    fixed: dict[int, tuple] = {}
    if prob.left_line is not None:
        fixed[int(left_slot[0])] = ("line", prob.left_line, 0)
        fixed[int(right_slot[0])] = ("line", prob.left_line, 1)
    elif prob.left_pinned:  # clamp
        fixed[int(left_slot[0])] = ("copy", int(right_slot[0]))
    if prob.right_line is not None:
        fixed[int(right_slot[-1])] = ("line", prob.right_line, n)
        fixed[int(left_slot[-1])] = ("line", prob.right_line, n - 1)
    elif prob.right_pinned:
        fixed[int(right_slot[-1])] = ("copy", int(left_slot[-1]))
    free = [i for i in range(slots) if i not in fixed]
    col = {s: j for j, s in enumerate(free)}
    B = np.zeros((slots, len(free)))
    C = np.zeros((slots, npar))
    d = np.zeros(slots)
    for s, j in col.items():
        B[s, j] = 1.0
    for s, rule in fixed.items():
        if rule[0] == "line":
            (a, b), k = rule[1], rule[2]
            if k == 0:
                d[s] = a * prob.lo + b
            elif k == n:
                d[s] = a * prob.hi + b
            else:
                C[s, k - 1] = a
                d[s] = b
        else:
            B[s] = B[rule[1]]  # copies a free slot (the clamp partner is never itself fixed)
    return Layout(B, C, d, left_slot, right_slot)


def knots(prob: Problem, p: np.ndarray) -> np.ndarray:
    return np.concatenate(([prob.lo], p, [prob.hi]))


@dataclass
class Samples:
    """Sample points at relative positions s within segment seg, with the error and its Jacobian."""

    seg: np.ndarray
    s: np.ndarray
    x: np.ndarray
    e: np.ndarray  # weighted error w * (g - f)
    w: np.ndarray
    J: sparse.csr_matrix | None = None  # d e / d [z, p]


def sample(prob: Problem, lay: Layout, z: np.ndarray, p: np.ndarray, seg: np.ndarray, s: np.ndarray,
           jacobian: bool = True) -> Samples:
    P = knots(prob, p)
    u = lay.values(z, p)
    a, b = P[seg], P[seg + 1]
    x = a + s * (b - a)
    ul, ur = u[lay.left_slot[seg]], u[lay.right_slot[seg]]
    g = (1 - s) * ul + s * ur
    w = prob.w(x)
    e = w * (g - prob.act.f(x))
    out = Samples(seg, s, x, e, w)
    if jacobian:
        L, R = lay.left_slot[seg], lay.right_slot[seg]
        rows = np.arange(seg.size)
        fp = prob.act.df(x)
        nz = lay.nz
        parts_r, parts_c, parts_v = [], [], []

        def add(mask: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
            parts_r.append(rows[mask])
            parts_c.append(cols[mask])
            parts_v.append(vals[mask])

        for slot, wt in ((L, 1 - s), (R, s)):
            add(lay.zcol[slot] >= 0, lay.zcol[slot], wt * lay.zval[slot])
            add(lay.pcol[slot] >= 0, nz + lay.pcol[slot], wt * lay.pval[slot])
        add(seg >= 1, nz + seg - 1, -fp * (1 - s))
        add(seg < prob.segments - 1, nz + seg, -fp * s)
        r, c, v = (np.concatenate(a) for a in (parts_r, parts_c, parts_v))
        out.J = sparse.csr_matrix((v * w[r], (r, c)), shape=(seg.size, nz + prob.segments - 1))
    return out


def to_table(prob: Problem, lay: Layout, z: np.ndarray, p: np.ndarray) -> Table:
    """Slopes and intercepts of each segment, outer segments extended to ±∞."""
    P = knots(prob, p)
    u = lay.values(z, p)
    ul, ur = u[lay.left_slot], u[lay.right_slot]
    h = np.diff(P)
    slopes = (ur - ul) / h
    intercepts = ul - slopes * P[:-1]
    # pinned lines are stated exactly, not re-derived through rounding
    if prob.left_line is not None:
        slopes[0], intercepts[0] = prob.left_line
    if prob.right_line is not None:
        slopes[-1], intercepts[-1] = prob.right_line
    if prob.tails == "clamp" and prob.segments > 1:
        slopes[0], intercepts[0] = 0.0, ur[0]
        slopes[-1], intercepts[-1] = 0.0, ul[-1]
    return Table(breakpoints=p.copy(), slopes=slopes, intercepts=intercepts,
                 continuous=prob.continuous)
