"""Exact discontinuous fits under a finite slope set: powers of two, or a slope grid's points, with
intercepts free or on a grid (the case of `lattice.py` that admits an exact answer on the samples)."""

from __future__ import annotations

import math

import numpy as np

from ..table import Table
from .constraints import Constraints, allowed_slopes
from .greedy import gallop
from .problem import Problem


class Covering:
    """Exact discontinuous fits with slopes from a finite set (powers of two, or a grid's points in the
    range of f') and intercepts free or on a grid: greedy farthest reach and bisection on ε.

    A run of samples i..j is coverable within ε iff some allowed slope s leaves a non-empty
    intersection of the intercept intervals [f − s·x − ε/w, f − s·x + ε/w] (holding a grid point if
    intercepts are gridded). That property is inherited by sub-runs, so the greedy cover (each segment
    as long as it can be) needs the fewest segments, and bisection on ε gives the least ε reachable
    with N: the optimum on the samples, as `greedy.py` has it for free lines. Only slopes within
    2ε/(x_j − x_i) of the run's secant can cover it (f − s·x spans at least that at the run's ends),
    which keeps each test to a few slopes.
    """

    def __init__(self, prob: Problem, con: Constraints, points: int | None = None):
        self.prob, self.con = prob, con
        m = points or int(min(max(8001, 1000 * prob.segments + 1), 64_001))
        self.x = np.linspace(prob.lo, prob.hi, m)
        self.f, self.w = prob.act.f(self.x), prob.w(self.x)
        self.flat = bool(np.all(self.w == 1.0))
        self.slopes = self._pool()
        self.m = m

    def _pool(self) -> np.ndarray:
        con = self.con
        pool = allowed_slopes(con)
        if pool is None:  # a slope grid: its points over the range f' takes, a few steps beyond
            d = self.prob.act.df(self.x)
            q = con.slope_grid
            pool = np.arange(math.floor(d.min() / q) - 4, math.ceil(d.max() / q) + 5) * q
        lo = -math.inf if con.slope_min is None else con.slope_min
        hi = math.inf if con.slope_max is None else con.slope_max
        return np.sort(pool[(pool >= lo) & (pool <= hi)])

    @staticmethod
    def fits(con: Constraints, prob: Problem) -> bool:
        """Can this class solve the request (discontinuous, a finite slope set of modest size)?"""
        if prob.continuous or con.uniform or not (con.pow2_slopes is not None or con.slope_grid is not None):
            return False
        if con.slope_grid is None:
            return True
        d = prob.act.df(np.linspace(prob.lo, prob.hi, 2001))
        return (d.max() - d.min()) / con.slope_grid <= 20_000

    def _line(self, i: int, j: int, eps: float, slopes: np.ndarray | None = None):
        """Best (error, slope, intercept) over allowed lines on samples i..j, or None if none is
        within eps; `slopes` overrides the candidate set (pinned tails)."""
        x, f, w = self.x[i:j + 1], self.f[i:j + 1], self.w[i:j + 1]
        if slopes is None:
            span = x[-1] - x[0]
            if span > 0:
                sec = (f[-1] - f[0]) / span
                reach = 2 * eps / span / max(float(w.min()), 1e-300)
                a, b = np.searchsorted(self.slopes, [sec - reach, sec + reach])
                slopes = self.slopes[max(a - 1, 0): b + 1]
            else:
                slopes = self.slopes
        if slopes.size == 0:
            return None
        r = f[None, :] - slopes[:, None] * x[None, :]
        tol = eps / w
        lo = np.max(r - tol, axis=1)
        hi = np.min(r + tol, axis=1)
        q = self.con.intercept_grid
        ok = lo <= hi if q is None else np.floor(hi / q) * q >= lo
        if not ok.any():
            return None
        if self.flat:  # max-abs: the minimax intercept is the mid-range, all slopes at once
            rk, rlo, rhi = slopes[ok], r[ok].min(axis=1), r[ok].max(axis=1)
            mid = 0.5 * (rlo + rhi)
            cs = [mid] if q is None else [np.floor(mid / q) * q, np.ceil(mid / q) * q]
            errs = [np.maximum(rhi - c, c - rlo) for c in cs]
            which = int(np.argmin([e.min() for e in errs]))
            k = int(np.argmin(errs[which]))
            e = float(errs[which][k])
            return (e, float(rk[k]), float(cs[which][k])) if e <= eps * (1 + 1e-12) else None
        best = None
        for k in np.nonzero(ok)[0]:
            # max w·|r − c| is convex in c: its minimizer, or on a grid one of the two grid points around it
            c = balance(r[k], w)
            for cc in ((c,) if q is None else (math.floor(c / q) * q, math.ceil(c / q) * q)):
                e = float(np.max(w * np.abs(r[k] - cc)))
                if best is None or e < best[0]:
                    best = (e, float(slopes[k]), float(cc))
        return best if best is not None and best[0] <= eps * (1 + 1e-12) else None

    def _reach(self, i: int, eps: float, stop: int, slopes=None) -> int:
        """Last index a single allowed line from i covers within eps (i - 1 if not even sample i)."""
        if self._line(i, i, eps, slopes) is None:
            return i - 1
        return gallop(lambda j: self._line(i, j, eps, slopes) is not None, i, stop)

    def plan(self, eps: float, limit: int) -> list[tuple[int, int, float, float]] | None:
        """Segments (first, last sample, slope, intercept) covering every sample within eps, or None."""
        p, m = self.prob, self.x.size
        segs: list[tuple[int, int, float, float]] = []
        start, end = 0, m - 1
        if p.left_pinned:
            if p.left_line is not None:
                s, c = p.left_line
                bad = np.nonzero(self.w * np.abs(s * self.x + c - self.f) > eps)[0]
                k = int(bad[0]) - 1 if bad.size else m - 1
            else:
                k = self._reach(0, eps, m - 1, np.array([0.0]))
            if k < 0:
                return None
            line = self._fixed(0, k, "left", eps)
            segs.append((0, k, *line))
            start = k + 1
        right = None
        if p.right_pinned:
            if p.right_line is not None:
                s, c = p.right_line
                bad = np.nonzero(self.w * np.abs(s * self.x + c - self.f) > eps)[0]
                first = int(bad[-1]) + 1 if bad.size else 0
            else:  # clamp: the longest constant run ending at the last sample
                first = m - 1
                if self._line(m - 1, m - 1, eps, np.array([0.0])) is None:
                    return None
                lo_i = 0
                while first - lo_i > 0:  # bisection on the start (coverability shrinks as it moves left)
                    mid = (lo_i + first) // 2
                    if self._line(mid, m - 1, eps, np.array([0.0])) is not None:
                        first = mid
                    else:
                        lo_i = mid + 1
            first = max(first, start)
            if first > m - 1:
                return None
            right = first
            end = first - 1
        budget = limit - len(segs) - (1 if right is not None else 0)
        while start <= end:
            if budget <= 0:
                return None
            k = self._reach(start, eps, end)
            if k < start:
                return None
            line = self._line(start, k, eps)
            segs.append((start, k, line[1], line[2]))
            start, budget = k + 1, budget - 1
        if right is not None:
            segs.append((right, m - 1, *self._fixed(right, m - 1, "right", eps)))
        return segs

    def _fixed(self, i: int, j: int, side: str, eps: float) -> tuple[float, float]:
        line = self.prob.left_line if side == "left" else self.prob.right_line
        if line is not None:
            return float(line[0]), float(line[1])
        got = self._line(i, j, eps, np.array([0.0]))
        return (got[1], got[2]) if got is not None else (0.0, float(self.f[i]))

    def _split(self, i: int, s1: float, c1: float, s2: float, c2: float) -> float:
        """Breakpoint between samples i and i + 1 where the two lines' worse error is least: between
        samples a line drifts by |s − f'|·h, so the midpoint alone cost SiLU + powers of two 0.6 %."""
        t = np.linspace(self.x[i], self.x[i + 1], 67)[1:-1]
        f, w = self.prob.act.f(t), self.prob.w(t)
        e1 = np.maximum.accumulate(w * np.abs(s1 * t + c1 - f))
        e2 = np.maximum.accumulate((w * np.abs(s2 * t + c2 - f))[::-1])[::-1]
        k = int(np.argmin(np.maximum(np.concatenate(([0.0], e1)), np.concatenate((e2, [0.0])))))
        return float(t[k]) if k < t.size else float(t[-1])

    def solve(self, hint: float) -> tuple[Table, float, float]:
        """(table, its sampled error, the largest eps proven unreachable on the samples)."""
        n = self.prob.segments
        hi = max(hint, 1e-12)
        while (plan := self.plan(hi, n)) is None:
            hi *= 2
        lo = 0.0
        while hi - lo > 1e-5 * hi:  # 1e-5 is far below the ~0.5 % the samples' spacing leaves
            mid = 0.5 * (lo + hi)
            got = self.plan(mid, n)
            if got is None:
                lo = mid
            else:
                hi, plan = mid, got
        sl = np.array([s for *_, s, _ in plan])
        ic = np.array([c for *_, c in plan])
        bps = np.array([self._split(plan[k][1], sl[k], ic[k], sl[k + 1], ic[k + 1]) for k in range(len(plan) - 1)])
        table = Table(breakpoints=bps, slopes=sl, intercepts=ic, continuous=False)
        return table, hi, lo


def balance(r: np.ndarray, w: np.ndarray) -> float:
    """c minimizing max w·|r − c| (bisection: max w·(c − r) rises with c, max w·(r − c) falls)."""
    a, b = float(r.min()), float(r.max())
    if np.all(w == w[0]):
        return 0.5 * (a + b)
    for _ in range(60):
        c = 0.5 * (a + b)
        if np.max(w * (c - r)) < np.max(w * (r - c)):
            a = c
        else:
            b = c
    return 0.5 * (a + b)
