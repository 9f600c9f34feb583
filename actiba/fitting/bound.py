"""Certificates: errors no table with the problem's segment count, range and tails can beat.

- Discontinuous: the greedy's largest infeasible ε on its samples (a sampled relaxation).
- Continuous: bisection on the minimum-link count in the sampled tube widened by the
  between-samples margin δ (see `minlink`); pinned outer segments (asymptote lines, constants) are
  relaxed to "they cover at most the samples they fit", the middle must be covered by the rest.

Both are relaxations of the continuum problem, so the bound holds for tables with knots anywhere.
The achieved table's error is the feasible end of the bisection, so a near-optimal table needs only
one or two tube sweeps: if the tube at (1 − 2e-4) × error is already infeasible, that is the bound.
"""

from __future__ import annotations

import numpy as np

from .minlink import Tube
from .problem import Problem

CONT_METHOD = ("minimum-link continuous path in the tube f ± (e + δ) on {m} samples (Imai–Iri window "
               "propagation), bisection on e; δ = h²/8·max|f''| per strip (≤ {delta:.3g}) makes it hold "
               "between samples")
DISC_METHOD = "exact discontinuous optimum on {m} samples (greedy farthest reach, bisection on ε)"


def tube_points(n: int) -> int:
    """Samples for the certificate: δ/ε stays ≈ 1e-3 because both scale like 1/N² at m ∝ N."""
    return int(min(max(120 * n + 1, 2001), 60001))


class ContinuousBound:
    def __init__(self, prob: Problem, points: int | None = None):
        self.prob = prob
        m = points or tube_points(prob.segments)
        x = np.linspace(prob.lo, prob.hi, m)
        f = prob.act.f(x)
        d2 = np.abs(prob.act.d2f(np.linspace(prob.lo, prob.hi, 8 * (m - 1) + 1)))
        self.tube = Tube(f, x, d2)
        self.m = m
        self.x, self.f = x, f

    def _middle(self, w: float) -> tuple[int, int, int] | None:
        """(first, stop, free links) of the samples the pinned tails cannot cover at half-width w."""
        p, x, f = self.prob, self.x, self.f
        first, stop, free = 0, x.size, p.segments
        if p.left_pinned:
            free -= 1
            if p.left_line is not None:
                bad = np.nonzero(np.abs(f - (p.left_line[0] * x + p.left_line[1])) > w)[0]
            else:
                bad = np.nonzero(0.5 * (np.maximum.accumulate(f) - np.minimum.accumulate(f)) > w)[0]
            first = int(bad[0]) if bad.size else x.size
        if p.right_pinned:
            free -= 1
            if p.right_line is not None:
                bad = np.nonzero(np.abs(f - (p.right_line[0] * x + p.right_line[1])) > w)[0]
            else:
                r = f[::-1]
                run = (0.5 * (np.maximum.accumulate(r) - np.minimum.accumulate(r)))[::-1]
                bad = np.nonzero(run > w)[0]
            stop = int(bad[-1]) + 1 if bad.size else 0
        if free < 1:
            return None if stop > first else (0, 0, 0)
        return first, stop, free

    def feasible(self, w: float) -> bool:
        """Can a continuous polyline with the problem's segments stay in the widened tube at w?"""
        mid = self._middle(w)
        if mid is None:
            return False
        first, stop, free = mid
        if stop - first <= 1:
            return True
        return self.tube.count(w, free, start=first, stop=stop) is not None

    def bound(self, achieved: float, floor: float = 0.0, rtol: float = 1e-4) -> float:
        """Largest e (to rtol) that no continuous table can reach; `achieved` is any table's error
        (feasible by construction) and `floor` an already proven bound (the discontinuous one)."""
        probe = achieved * (1 - 2e-4)
        if not self.feasible(probe):
            return max(probe, floor)  # within 2e-4 of the table: one sweep settles it
        b, a = probe, floor
        if a <= 0 or self.feasible(a):
            return floor
        while b - a > rtol * b:
            mid = 0.5 * (a + b)
            if self.feasible(mid):
                b = mid
            else:
                a = mid
        return max(a, floor)

    def method(self) -> str:
        return CONT_METHOD.format(m=self.m, delta=self.tube.delta_max)
