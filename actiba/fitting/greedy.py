"""Exact discontinuous max-abs fitting: greedy farthest reach with minimax lines, bisection on ε.

For a fixed ε, starting each segment where the previous one stopped and extending it as far as a
single line can stay within ε needs the fewest segments (any solution can be shifted to the greedy
one without adding segments). Bisection on ε then gives the least ε reachable with N segments: the
exact optimum, up to the sample grid. Pinned tails (asymptote lines or constants) are placed first.
"""

from __future__ import annotations

import numpy as np

from .problem import Problem


def gallop(covers, lo: int, stop: int, step: int = 1) -> int:
    """Largest j in [lo, stop] with covers(j), given covers(lo) and that covers is monotone (true, then
    false): steps doubling from `step`, then bisection, so no call looks far beyond the answer (a line
    over the full range costs O(samples) per call)."""
    while True:
        cand = min(lo + step, stop)
        if not covers(cand):
            hi = cand
            break
        lo = cand
        if cand == stop:
            return stop
        step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if covers(mid):
            lo = mid
        else:
            hi = mid
    return lo


class Greedy:
    """Precomputed samples of f and the minimax-line error of any run of them."""

    def __init__(self, prob: Problem, points: int | None = None):
        self.prob = prob
        m = points or max(20001, 400 * prob.segments)
        self.x = np.linspace(prob.lo, prob.hi, m)
        self.f = prob.act.f(self.x)
        self.df = prob.act.df(self.x)
        infl = prob.act.inflections(prob.lo, prob.hi)
        self.region = np.searchsorted(np.asarray(infl), self.x)  # convexity region of each sample
        self._memo: dict[tuple[int, int], tuple[float, float, float]] = {}
        self._last = 1  # length of the previous segment: where the next reach search starts

    def line(self, i: int, j: int) -> tuple[float, float, float]:
        """Minimax line (slope, intercept, error) through samples i..j inclusive (memoized)."""
        key = (i, j)
        if key not in self._memo:
            self._memo[key] = self._line(i, j)
        return self._memo[key]

    def _line(self, i: int, j: int) -> tuple[float, float, float]:
        x, f = self.x[i:j + 1], self.f[i:j + 1]
        if j == i:
            return 0.0, float(f[0]), 0.0
        if self.region[i] == self.region[j]:  # convex or concave run: the secant slope is optimal
            m = (f[-1] - f[0]) / (x[-1] - x[0])
            r = f - m * x
            hi, lo = r.max(), r.min()
            return float(m), float(0.5 * (hi + lo)), float(0.5 * (hi - lo))

        def width(m: float) -> float:
            r = f - m * x
            return float(r.max() - r.min())

        a, b = float(self.df[i:j + 1].min()), float(self.df[i:j + 1].max())
        g = 0.5 * (np.sqrt(5.0) - 1.0)
        c, d = b - g * (b - a), a + g * (b - a)
        wc, wd = width(c), width(d)
        tol = 1e-9 * (b - a) + 1e-15
        for _ in range(60):
            if wc < wd:
                b, d, wd = d, c, wc
                c = b - g * (b - a)
                wc = width(c)
            else:
                a, c, wc = c, d, wd
                d = a + g * (b - a)
                wd = width(d)
            if b - a <= tol:
                break
        m = 0.5 * (a + b)
        r = f - m * x
        return float(m), float(0.5 * (r.max() + r.min())), float(0.5 * (r.max() - r.min()))

    def _fixed_dev(self, side: str) -> np.ndarray:
        """Deviation of a pinned outer segment from f at each sample (asymptote or best constant)."""
        line = self.prob.left_line if side == "left" else self.prob.right_line
        if line is not None:
            return np.abs(self.f - (line[0] * self.x + line[1]))
        return np.zeros_like(self.x)

    def reach(self, i: int, eps: float, stop: int) -> int:
        """Last sample index a single minimax line starting at i can cover within eps.

        Galloping search from the previous segment's length, then bisection: never evaluates a
        line over far more samples than the answer (a full-range line costs O(samples) per call).
        """
        lo = gallop(lambda j: self.line(i, j)[2] <= eps, i, stop, max(1, self._last // 2))
        self._last = max(1, lo - i)
        return lo

    def _clamp_reach(self, eps: float, side: str) -> int:
        f = self.f if side == "left" else self.f[::-1]
        run = 0.5 * (np.maximum.accumulate(f) - np.minimum.accumulate(f))
        k = int(np.searchsorted(run > eps, True))  # first index that breaks eps
        k = max(k - 1, 0)
        return k if side == "left" else self.x.size - 1 - k

    def plan(self, eps: float, limit: int) -> list[tuple[int, int]] | None:
        """Segments (first, last sample index) covering all samples within eps, or None if > limit."""
        n = self.x.size
        segs: list[tuple[int, int]] = []
        start, end = 0, n - 1
        p = self.prob
        if p.left_pinned:
            if p.left_line is not None:
                bad = np.nonzero(self._fixed_dev("left") > eps)[0]
                k = (bad[0] - 1) if bad.size else n - 1
            else:
                k = self._clamp_reach(eps, "left")
            if k < 0:
                return None
            segs.append((0, int(k)))
            start = int(k) + 1
        right_first = n
        if p.right_pinned:
            if p.right_line is not None:
                bad = np.nonzero(self._fixed_dev("right") > eps)[0]
                right_first = (bad[-1] + 1) if bad.size else 0
            else:
                right_first = self._clamp_reach(eps, "right")
            if right_first > n - 1:
                return None
            end = max(int(right_first) - 1, start - 1)
        budget = limit - len(segs) - (1 if p.right_pinned else 0)
        while start <= end:
            if budget <= 0:
                return None
            k = self.reach(start, eps, end)
            segs.append((start, k))
            start, budget = k + 1, budget - 1
        if p.right_pinned:
            first = max(start, right_first)
            if first > n - 1:  # the left tail reached the end: give the right tail the last sample
                if not segs or segs[-1][0] > n - 2:
                    return None
                segs[-1] = (segs[-1][0], n - 2)
                first = n - 1
            segs.append((first, n - 1))
        return segs

    def solve(self, hint: float | None = None, rtol: float = 1e-5) -> tuple[float, list[tuple[int, int]]]:
        """Least eps reachable with prob.segments segments, and the segment plan for it.

        `self.infeasible` keeps the largest eps proven unreachable: since the samples relax the
        continuum problem, no table with these tails and segment count can have a smaller error.
        """
        n = self.prob.segments
        hi = hint if hint else max(float(np.ptp(self.f)), 1e-300)
        while self.plan(hi, n) is None:
            hi *= 2
        plan = self.plan(hi, n)
        lo = 0.0
        if hint:  # bracket from below near the hint instead of bisecting down from zero
            probe = hi / 3
            while probe > 1e-300 and (got := self.plan(probe, n)) is not None:
                hi, plan, probe = probe, got, probe / 3
            lo = probe
        while hi - lo > rtol * hi:
            mid = 0.5 * (lo + hi) if lo > 0 or hi < 1e-300 else hi / 8
            got = self.plan(mid, n)
            if got is None:
                lo = mid
            else:
                hi, plan = mid, got
        self.infeasible = lo
        return hi, plan  # type: ignore[return-value]

    def lines(self, plan: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Breakpoints, slopes and intercepts of a plan (pinned segments use their exact lines)."""
        p = self.prob
        slopes, intercepts = [], []
        for k, (i, j) in enumerate(plan):
            if k == 0 and p.left_pinned and p.left_line is not None:
                m, c = p.left_line
            elif k == len(plan) - 1 and p.right_pinned and p.right_line is not None:
                m, c = p.right_line
            elif (k == 0 and p.left_pinned) or (k == len(plan) - 1 and p.right_pinned):
                m, c = 0.0, 0.5 * float(self.f[i:j + 1].max() + self.f[i:j + 1].min())
            else:
                m, c, _ = self.line(i, j)
            slopes.append(m)
            intercepts.append(c)
        # a breakpoint sits halfway between the last sample of one segment and the first of the next
        bps = np.array([0.5 * (self.x[plan[k][1]] + self.x[plan[k + 1][0]]) for k in range(len(plan) - 1)])
        return bps, np.array(slopes), np.array(intercepts)
