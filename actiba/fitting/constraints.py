"""Constraints hardware people ask for, as linear rows the refiner keeps at every step.

Slopes and segment widths are linear in the parametrization's values and knots together
(slope_k · h_k = u_right − u_left, h_k = P_{k+1} − P_k), so "slope ≥ s" and "width ≥ w" are exact
linear constraints c(z, p) = G·[z; p] + g ≥ 0, not linearizations: every accepted LP step satisfies
them. Breakpoint grids are integer constraints: the refiner's knots are rounded to the grid, the
values re-solved for them, and single-knot moves of one grid step tried while they help.
Monotone means slope ≥ 0 (or ≤ 0) where f is monotone on the range (refused where it is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .param import Layout


@dataclass(frozen=True)
class Constraints:
    slope_min: float | None = None
    slope_max: float | None = None
    min_width: float | None = None
    grid: float | None = None  # breakpoints on multiples of this

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.slope_min, self.slope_max, self.min_width, self.grid))

    @property
    def linear(self) -> bool:
        return any(v is not None for v in (self.slope_min, self.slope_max, self.min_width))

    def describe(self) -> dict:
        return {k: v for k, v in (("slope_min", self.slope_min), ("slope_max", self.slope_max),
                                  ("min_width", self.min_width), ("breakpoint_grid", self.grid)) if v is not None}


def rows(con: Constraints, prob, lay: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(G, g) with c = G·[z; p] + g >= 0 required, for the free (unpinned) segments."""
    n = prob.segments
    nz, npar = lay.nz, n - 1
    G, g = [], []

    def width_row(k: int) -> tuple[np.ndarray, float]:
        r = np.zeros(nz + npar)
        const = 0.0
        if k + 1 <= n - 1:
            r[nz + k] += 1.0
        else:
            const += prob.hi
        if k >= 1:
            r[nz + k - 1] -= 1.0
        else:
            const -= prob.lo
        return r, const

    first = 1 if prob.left_pinned else 0
    last = n - 2 if prob.right_pinned else n - 1
    for k in range(first, last + 1):
        L, R = lay.left_slot[k], lay.right_slot[k]
        du = np.concatenate([lay.B[R] - lay.B[L], lay.C[R] - lay.C[L]])
        dd = float(lay.d[R] - lay.d[L])
        wr, wc = width_row(k)
        if con.slope_min is not None:  # du - s_min * h >= 0
            G.append(du - con.slope_min * wr)
            g.append(dd - con.slope_min * wc)
        if con.slope_max is not None:  # s_max * h - du >= 0
            G.append(con.slope_max * wr - du)
            g.append(con.slope_max * wc - dd)
    if con.min_width is not None:
        for k in range(n):
            wr, wc = width_row(k)
            G.append(wr)
            g.append(wc - con.min_width)
    if not G:
        return np.zeros((0, nz + npar)), np.zeros(0)
    return np.asarray(G), np.asarray(g)


def violation(con: Constraints, table, lo: float, hi: float, skip_left: bool, skip_right: bool) -> dict:
    """Re-verify a finished table; returns the worst violation of each constraint (0 when met)."""
    out = {}
    s = table.slopes[int(skip_left): table.slopes.size - int(skip_right)]
    if con.slope_min is not None:
        out["slope_min"] = float(max(0.0, con.slope_min - float(s.min()))) if s.size else 0.0
    if con.slope_max is not None:
        out["slope_max"] = float(max(0.0, float(s.max()) - con.slope_max)) if s.size else 0.0
    knots = np.concatenate(([lo], table.breakpoints, [hi]))
    if con.min_width is not None:
        out["min_width"] = float(max(0.0, con.min_width - float(np.diff(knots).min())))
    if con.grid is not None:
        q = table.breakpoints / con.grid
        out["breakpoint_grid"] = float(np.max(np.abs(q - np.round(q)))) * con.grid if q.size else 0.0
    return out
