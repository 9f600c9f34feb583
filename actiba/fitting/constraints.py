"""Constraints hardware people ask for, as linear rows the refiner keeps at every step.

Slopes and segment widths are linear in the parametrization's values and knots together
(slope_k · h_k = u_right − u_left, h_k = P_{k+1} − P_k), so "slope ≥ s" and "width ≥ w" are exact
linear constraints c(z, p) = G·[z; p] + g ≥ 0, not linearizations: every accepted LP step satisfies
them. Breakpoint grids are integer constraints: the refiner's knots are rounded to the grid, the
values re-solved for them, and single-knot moves of one grid step tried while they help.
Monotone means slope ≥ 0 (or ≤ 0) where f is monotone on the range (refused where it is not).
"Monotone auto" follows f piece by piece: each segment lying where f' keeps one sign gets that slope
sign, the segment across each turning point t of f is free, and the knots are held on their side of
t (P_k ≤ t − μ ≤ t + μ ≤ P_{k+1}: linear rows too), so the rule holds for every accepted step.
Uniform spacing fixes the knots at lo + i·(hi − lo)/N; only the values are optimized (an LP or a
least-squares problem for fixed knots, so that table is optimal for those knots on the samples).
Slopes and intercepts on fixed-point grids, and power-of-two slopes, are discrete: `lattice.py`
searches candidate lines around the float fit by dynamic programming.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
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
    slope_grid: float | None = None  # every slope a multiple of this
    intercept_grid: float | None = None  # every intercept a multiple of this
    pow2_slopes: tuple[int, int] | None = None  # every slope 0 or ±2^e, emin <= e <= emax
    uniform: bool = False  # breakpoints at lo + i (hi - lo) / N
    monotone_auto: bool = False  # each segment's slope has f's sign where f is monotone on it
    fixed_slopes: tuple[float, ...] | None = None  # internal: the lattice polish holds every slope

    @property
    def any(self) -> bool:
        return bool(self.describe())

    @property
    def linear(self) -> bool:
        return (any(v is not None for v in (self.slope_min, self.slope_max, self.min_width, self.fixed_slopes))
                or self.monotone_auto)

    @property
    def lattice(self) -> bool:
        """Slopes or intercepts restricted to a discrete set (searched by `lattice.py`)."""
        return any(v is not None for v in (self.slope_grid, self.intercept_grid, self.pow2_slopes))

    def without_lattice(self) -> Constraints | None:
        """The continuous part, which the float fit the lattice search starts from keeps."""
        c = replace(self, slope_grid=None, intercept_grid=None, pow2_slopes=None)
        return c if c.any else None

    def allows_slope(self, s: float) -> bool:
        """Is s a slope the discrete constraints admit (grid or power of two)?"""
        if self.slope_grid is not None and not on_grid(s, self.slope_grid):
            return False
        return self.pow2_slopes is None or is_pow2(s, *self.pow2_slopes)

    def describe(self) -> dict:
        out = {k: v for k, v in (("slope_min", self.slope_min), ("slope_max", self.slope_max),
                                 ("min_width", self.min_width), ("breakpoint_grid", self.grid),
                                 ("slope_grid", self.slope_grid), ("intercept_grid", self.intercept_grid))
               if v is not None}
        if self.pow2_slopes is not None:
            out["pow2_slopes"] = list(self.pow2_slopes)
        if self.uniform:
            out["uniform"] = True
        if self.monotone_auto:
            out["monotone"] = "auto"
        return out


def on_grid(v: float, q: float) -> bool:
    """v is k·q for an integer k, as float64 holds it (exact for power-of-two q)."""
    k = round(v / q)
    return float(k * q) == float(v)


def is_pow2(s: float, emin: int, emax: int) -> bool:
    """s is 0 or ±2^e with emin <= e <= emax, exactly."""
    if s == 0.0:
        return True
    m, e = math.frexp(abs(s))  # |s| = m · 2^e with 0.5 <= m < 1
    return m == 0.5 and emin <= e - 1 <= emax


def turning_points(act, lo: float, hi: float) -> list[float]:
    """Sign changes of f' inside (lo, hi): where f turns from falling to rising or back."""
    xs = np.linspace(lo, hi, 20001)
    d = act.df(xs)
    out = []
    for i in np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)[0]:
        a, b = float(xs[i]), float(xs[i + 1])
        for _ in range(80):  # bisection on f' (no scipy on the fit path)
            m = 0.5 * (a + b)
            if not a < m < b:
                break
            if np.sign(act.df(np.array([m]))[0]) == np.sign(d[i]):
                a = m
            else:
                b = m
        out.append(0.5 * (a + b))
    return out


def margin(lo: float, hi: float) -> float:
    """How far a knot stays from a turning point (so the segment across it really straddles it)."""
    return 1e-6 * (hi - lo)


def rows(con: Constraints, prob, lay: Layout, p0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(G, g) with c = G·[z; p] + g >= 0 required, for the free (unpinned) segments; `p0` (the
    starting knots) decides which segment crosses each turning point for monotone auto."""
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
        if con.fixed_slopes is not None:  # du = s_k * h, as two rows
            sk = con.fixed_slopes[k]
            G.extend([du - sk * wr, sk * wr - du])
            g.extend([dd - sk * wc, sk * wc - dd])
    if con.min_width is not None:
        for k in range(n):
            wr, wc = width_row(k)
            G.append(wr)
            g.append(wc - con.min_width)
    if con.monotone_auto and p0 is not None:
        _monotone_rows(prob, lay, p0, G, g, first, last)
    if not G:
        return np.zeros((0, nz + npar)), np.zeros(0)
    return np.asarray(G), np.asarray(g)


def _monotone_rows(prob, lay: Layout, p0: np.ndarray, G: list, g: list, first: int, last: int) -> None:
    """Slope-sign rows for segments inside a monotone stretch of f, knot rows keeping each turning
    point inside the segment that starts across it (chosen from the starting knots p0)."""
    n, nz = prob.segments, lay.nz
    if prob.constraints is not None and prob.constraints.uniform:  # knots fixed: each segment's own sign
        knots = np.concatenate(([prob.lo], p0, [prob.hi]))
        for k in range(first, last + 1):
            d = prob.act.df(np.linspace(knots[k], knots[k + 1], 257))
            sign = 1.0 if np.all(d >= 0) else -1.0 if np.all(d <= 0) else 0.0
            if sign:
                L, R = lay.left_slot[k], lay.right_slot[k]
                G.append(sign * np.concatenate([lay.B[R] - lay.B[L], lay.C[R] - lay.C[L]]))
                g.append(sign * float(lay.d[R] - lay.d[L]))
        return
    turns = turning_points(prob.act, prob.lo, prob.hi)
    mu = margin(prob.lo, prob.hi)
    knots = np.concatenate(([prob.lo], p0, [prob.hi]))
    across = {}  # segment index -> turning point it must contain
    for t in turns:
        k = int(np.clip(np.searchsorted(knots, t, side="right") - 1, 0, n - 1))
        across.setdefault(k, t)
    cuts = [prob.lo, *turns, prob.hi]
    for k in range(n):
        if k in across:
            t = across[k]
            if k >= 1:  # P_k <= t - mu
                r = np.zeros(nz + n - 1)
                r[nz + k - 1] = -1.0
                G.append(r)
                g.append(t - mu)
            if k + 1 <= n - 1:  # P_{k+1} >= t + mu
                r = np.zeros(nz + n - 1)
                r[nz + k] = 1.0
                G.append(r)
                g.append(-(t + mu))
            continue
        if not first <= k <= last:
            continue
        mid = 0.5 * (knots[k] + knots[k + 1])
        j = int(np.searchsorted(cuts, mid) - 1)
        sign = float(np.sign(prob.act.df(np.array([0.5 * (cuts[j] + cuts[j + 1])]))[0]))
        L, R = lay.left_slot[k], lay.right_slot[k]
        G.append(sign * np.concatenate([lay.B[R] - lay.B[L], lay.C[R] - lay.C[L]]))
        g.append(sign * float(lay.d[R] - lay.d[L]))
        # keep the segment inside its stretch: P_k >= cuts[j] + mu, P_{k+1} <= cuts[j+1] - mu
        if k >= 1 and j >= 1:
            r = np.zeros(nz + n - 1)
            r[nz + k - 1] = 1.0
            G.append(r)
            g.append(-(cuts[j] + mu))
        if k + 1 <= n - 1 and j + 1 < len(cuts) - 1:
            r = np.zeros(nz + n - 1)
            r[nz + k] = -1.0
            G.append(r)
            g.append(cuts[j + 1] - mu)


def allowed_slopes(con: Constraints) -> np.ndarray | None:
    """Every slope the power-of-two constraint admits (0 and ±2^e), or None for a grid/free slope."""
    if con.pow2_slopes is None:
        return None
    emin, emax = con.pow2_slopes
    mags = [2.0 ** e for e in range(emin, emax + 1)]
    return np.array(sorted([0.0, *mags, *(-m for m in mags)]))
