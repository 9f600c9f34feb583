"""Continuous free-tail max-abs tables straight from minimum-link paths, with their certificate.

Why not the LP refiner: a 16-segment SiLU table took ~18 HiGHS solves plus ~0.3 s of importing
scipy.optimize, and the certificate another ~11 tube sweeps; one bisection on the δ-widened tube
answers both questions in ~6–10 pure-Python sweeps and needs numpy only.

The samples equidistribute √|f''| (the density optimal knots follow, with a floor), so the margin
δ_i = h_i²/8·max|f''| that makes the sampled tube a relaxation is nearly uniform: δ/ε ≈ 2N²/m²
instead of (hi − lo)²·max|f''|/(8m²)/ε on a uniform grid (≈ 10× smaller for SiLU at the same m).
The bisection's two ends are then:

- infeasible end `a`: the widened tube needs more than N links, so no continuous N-segment table
  (knots anywhere) has error ≤ a — the certificate, as in `bound.py`;
- feasible end `b`: the window lines of a minimum-link path, a continuous table within b + δ_i of f
  at every sample and within b + 2·δ_max everywhere (f is within δ of its chords between samples).

So the gap is at most rtol + 2δ_max/a (≈ 0.05 % at m = 100 N), the table is verified independently
afterwards like every other, and nothing here rounds or guesses.
"""

from __future__ import annotations

import math

import numpy as np

from ..table import Table
from .init import estimate_error
from .minlink import Tube, polyline
from .problem import Problem

RTOL = 2e-4  # bisection tolerance on the half-width (relative); the gap adds 2δ/ε ≈ 4e-4
METHOD = ("minimum-link continuous path in the tube f ± (e + δ) on {m} curvature-equidistributed samples "
          "(Imai–Iri window propagation), bisection on e; δ = h²/8·max|f''| per strip (≤ {delta:.3g}) makes "
          "it hold between samples")


def points(n: int) -> int:
    """Samples for N segments: ~100 per segment keeps 2δ/ε near 4e-4 (capped: a sweep costs ~2 µs per
    sample, so N = 4096 gets ~24 per segment and a gap of ~1 %)."""
    return int(min(max(100 * n + 1, 1601), 100_001))


def adapted_grid(prob: Problem, m: int) -> np.ndarray:
    """m points on [lo, hi] with density ∝ √|f''| + 15 % of its mean (so flat stretches keep samples)."""
    u = np.linspace(prob.lo, prob.hi, max(20_001, 2 * m + 1))
    with np.errstate(all="ignore"):
        rho = np.sqrt(np.abs(prob.act.d2f(u)))
    rho = np.where(np.isfinite(rho), rho, 0.0)
    rho = rho + 0.15 * max(float(np.mean(rho)), 1e-300)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(u))))
    x = np.interp(np.linspace(0.0, cum[-1], m), cum, u)
    x[0], x[-1] = prob.lo, prob.hi
    return np.unique(x)


def strip_curvature(prob: Problem, x: np.ndarray) -> np.ndarray:
    """|f''| at 8 sub-points per strip (the layout `Tube` reads: 8 (m − 1) + 1 values)."""
    h = np.diff(x)
    sub = (x[:-1, None] + h[:, None] * (np.arange(8) / 8.0)).ravel()
    return np.abs(prob.act.d2f(np.concatenate((sub, x[-1:]))))


class TubeFit:
    """The δ-widened tube on an adapted grid, and the bisection that gives table and bound together."""

    def __init__(self, prob: Problem, m: int | None = None):
        self.prob = prob
        x = adapted_grid(prob, m or points(prob.segments))
        self.x = x
        self.tube = Tube(prob.act.f(x), x, strip_curvature(prob, x))
        self.m = x.size
        self.sweeps = 0

    @property
    def delta(self) -> float:
        return self.tube.delta_max

    def method(self) -> str:
        return METHOD.format(m=self.m, delta=self.delta)

    def _count(self, w: float, limit: int, build: bool = False, widen: bool = True):
        self.sweeps += 1
        return self.tube.count(w, limit, build=build, widen=widen)

    def solve(self) -> tuple[Table | None, float, float]:
        """(table or None if the path's windows overlapped, certified bound a, feasible half-width b).

        Link counts scale like 1/√w, which brackets the threshold in 2–3 sweeps; then bisection. (The
        reach of n links is no smoother signal to aim with: it jumps when the last link spans a flat
        tail, so secant steps on it did not save sweeps.)"""
        n = self.prob.segments
        w = estimate_error(self.prob)
        a, b, best = 0.0, math.inf, None
        for _ in range(12):
            got = self._count(w, 4 * n + 8, build=True)
            k = got[0] if got is not None else 4 * n + 9
            if k <= n:
                b, best = w, got
            else:
                a = max(a, w)
            if b < math.inf and a > 0:
                break
            w = w * ((k - 0.5) / n) ** 2  # count ≈ c/√w, and count = k puts c/√w in (k − 1, k]
        while b == math.inf:
            w *= 2
            got = self._count(w, n, build=True)
            if got is None:
                a = w
            else:
                b, best = w, got
        if a == 0.0:  # step down by 16x; below rounding level (a linear f) the table is exact: bound 0
            floor = 1e-14 * (float(np.max(np.abs(self.tube.f))) + 1e-300)
            a = b / 16
            while (got := self._count(a, n, build=True)) is not None:
                b, best, a = a, got, a / 16
                if a < floor:
                    a = 0.0
                    break
        while b - a > RTOL * b and b > 1e-14 * (float(np.max(np.abs(self.tube.f))) + 1e-300):
            mid = 0.5 * (a + b)
            got = self._count(mid, n, build=True)
            if got is None:
                a = mid
            else:
                b, best = mid, got
        if best is None:  # 40 sweeps without a feasible width cannot happen for a tube of width > range
            return None, a, b
        poly = polyline(best[1])
        if poly is None:
            return None, a, b
        bp, sl, ic = poly
        return Table(breakpoints=bp, slopes=sl, intercepts=ic, continuous=True), a, b

    def within(self, eps: float, limit: int) -> Table | None:
        """Table with the fewest links whose error is ≤ eps everywhere (None if more than `limit`):
        the plain tube at eps − δ_max keeps every point between samples within eps."""
        w = eps - self.delta
        if not w > 0:
            return None
        got = self._count(w, limit, build=True, widen=False)
        if got is None:
            return None
        poly = polyline(got[1])
        if poly is None:
            return None
        bp, sl, ic = poly
        return Table(breakpoints=bp, slopes=sl, intercepts=ic, continuous=True)
