"""Slopes and intercepts on fixed-point grids, power-of-two slopes: a lattice search around the float fit.

These constraints make the fit an integer program. Rounding the float table's lines loses up to half
a grid step per line and, for continuous tables, moves the breakpoints (they sit where consecutive
lines cross) anywhere. Instead each segment k gets a few candidate lines — slopes within ±R grid steps
(or the nearest allowed powers of two) of the float fit's, and for each slope the intercepts within
±R steps of the line through the float fit's value at the segment's anchor a_k (its midpoint) — and
dynamic programming picks one line per segment minimizing the table's max error *exactly over those
candidates*.

Why DP is exact here: each segment k is required to contain its anchor a_k, so the breakpoint between
segments k and k+1 lies in [a_k, a_{k+1}] and the table on that stretch depends only on those two lines
(continuous: the breakpoint is their crossing, which must fall inside; discontinuous: the best split
between samples). The table's error is the max over stretches: a bottleneck shortest path through the
candidate layers, O(N·C²) pair costs on m samples. The search is then re-centred on the chosen lines
(with new anchors, so the previous answer stays a candidate and the error never rises) until it stops
improving.

What may be claimed: *the best table on the searched lattice* (candidates as above, breakpoints between
consecutive anchors, errors on the samples; re-measured independently by `verify`), not the optimum
over all grid tables. The unconstrained certificate still bounds it from below, and the summary says so.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
from ..table import Table
from .constraints import Constraints
from .problem import Problem

R = 2  # candidate steps either side of the float fit's slope and intercept
FREE = np.array([-1.0, -0.25, -1 / 16, 0.0, 1 / 16, 0.25, 1.0])  # offsets (× error) for unconstrained values
ROUNDS = 6  # re-centrings; each costs one DP and the error is non-increasing across them


def samples(prob: Problem) -> int:
    return int(min(max(4001, 256 * prob.segments + 1), 200_001))


def allowed_slopes(con: Constraints) -> np.ndarray | None:
    """Every slope the power-of-two constraint admits (0 and ±2^e), or None for a grid/free slope."""
    if con.pow2_slopes is None:
        return None
    emin, emax = con.pow2_slopes
    mags = [2.0 ** e for e in range(emin, emax + 1)]
    return np.array(sorted([0.0, *mags, *(-m for m in mags)]))


def _slope_candidates(con: Constraints, s0: float, step: float) -> np.ndarray:
    pool = allowed_slopes(con)
    if pool is not None:
        out = pool[np.argsort(np.abs(pool - s0), kind="stable")[: 2 * R + 3]]
    elif con.slope_grid is not None:
        q = con.slope_grid
        out = (round(s0 / q) + np.arange(-R, R + 1)) * q
    else:  # free slopes: steps on several scales (a line moves by ±step·width/2 at the ends)
        out = s0 + FREE * step
    lo = -math.inf if con.slope_min is None else con.slope_min
    hi = math.inf if con.slope_max is None else con.slope_max
    return np.unique(out[(out >= lo) & (out <= hi)])


def _candidates(prob: Problem, con: Constraints, k: int, s0: float, c0: float, a: float, err: float,
                width: float) -> tuple[np.ndarray, np.ndarray]:
    """(slopes, intercepts) of segment k's candidate lines around the line (s0, c0), anchor a."""
    n = prob.segments
    if k == 0 and prob.left_line is not None:
        return np.array([prob.left_line[0]]), np.array([prob.left_line[1]])
    if k == n - 1 and prob.right_line is not None:
        return np.array([prob.right_line[0]]), np.array([prob.right_line[1]])
    clamp = prob.tails == "clamp" and n > 1 and k in (0, n - 1)
    slopes = np.array([0.0]) if clamp else _slope_candidates(con, s0, err / max(width, 1e-300))
    y = s0 * a + c0
    ss, cc = [], []
    for s in slopes:
        center = y - s * a
        if con.intercept_grid is not None:
            q = con.intercept_grid
            ics = (round(center / q) + np.arange(-R - 1, R + 2)) * q
        else:
            ics = center + FREE * err
        ss.append(np.full(ics.size, s))
        cc.append(ics)
    if not ss:
        return np.empty(0), np.empty(0)
    return np.concatenate(ss), np.concatenate(cc)


class _Pieces:
    """Samples of the weighted error and the windows between anchors."""

    def __init__(self, prob: Problem, anchors: np.ndarray):
        self.prob = prob
        x = np.unique(np.concatenate([np.linspace(prob.lo, prob.hi, samples(prob)), anchors]))
        self.x, self.f, self.w = x, prob.act.f(x), prob.w(x)
        self.idx = np.searchsorted(x, anchors)  # anchors are samples

    def err(self, sl: np.ndarray, ic: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """|weighted error| of each candidate line on samples lo..hi-1: shape (C, hi - lo)."""
        x, f, w = self.x[lo:hi], self.f[lo:hi], self.w[lo:hi]
        return np.abs(w * (sl[:, None] * x + ic[:, None] - f))

    def pair(self, k: int, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
             continuous: bool, fixed: float | None) -> tuple[np.ndarray, np.ndarray]:
        """(cost, breakpoint) of every candidate pair on the stretch between anchors k and k+1."""
        i0, i1 = int(self.idx[k]), int(self.idx[k + 1]) + 1
        xs = self.x[i0:i1]
        ea, eb = self.err(*a, i0, i1), self.err(*b, i0, i1)
        pre = np.maximum.accumulate(ea, axis=1)
        suf = np.maximum.accumulate(eb[:, ::-1], axis=1)[:, ::-1]
        S = xs.size
        (sa, ca), (sb, cb) = a, b
        if continuous:
            with np.errstate(all="ignore"):
                bp = (cb[None, :] - ca[:, None]) / (sa[:, None] - sb[None, :])
            same = (sa[:, None] == sb[None, :]) & (ca[:, None] == cb[None, :])
            bp = np.where(same, 0.5 * (xs[0] + xs[-1]), bp)
            ok = np.isfinite(bp) & (bp > xs[0]) & (bp < xs[-1])
            t = np.clip(np.searchsorted(xs, np.where(ok, bp, xs[0])), 1, S - 1)  # samples < bp use line a
            rows, cols = np.nonzero(ok)
            cost = np.full(bp.shape, np.inf)
            if rows.size:
                tb = t[rows, cols]
                at = bp[rows, cols]
                with np.errstate(all="ignore"):
                    e_at = np.abs(self.prob.w(at) * (sa[rows] * at + ca[rows] - self.prob.act.f(at)))
                cost[rows, cols] = np.maximum(np.maximum(pre[rows, tb - 1], suf[cols, tb]), e_at)
            return cost, bp
        if fixed is not None:  # uniform discontinuous: the split is given
            t = int(np.clip(np.searchsorted(xs, fixed), 1, S - 1))
            cost = np.maximum(pre[:, t - 1][:, None], suf[:, t][None, :])
            return cost, np.full(cost.shape, fixed)
        both = np.maximum(pre[:, None, : S - 1], suf[None, :, 1:])  # split after sample t-1, t = 1..S-1
        t = np.argmin(both, axis=2)
        cost = np.take_along_axis(both, t[..., None], axis=2)[..., 0]
        return cost, 0.5 * (xs[t] + xs[t + 1])


def search(prob: Problem, seed: Table, con: Constraints) -> tuple[Table, float]:
    """The best table on the lattice around `seed`, and its sampled weighted max error."""
    n = prob.segments
    fixed = prob.lo + (prob.hi - prob.lo) * np.arange(1, n) / n if con.uniform else None
    sl, ic = seed.slopes.astype(np.float64), seed.intercepts.astype(np.float64)
    knots = np.concatenate(([prob.lo], seed.breakpoints, [prob.hi]))
    xs = np.linspace(prob.lo, prob.hi, 20001)
    err0 = max(float(np.max(np.abs(seed(xs) - prob.act.f(xs)))), 1e-12)  # sets the free value steps
    best: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None
    for _ in range(ROUNDS):
        anchors = 0.5 * (knots[:-1] + knots[1:])
        pcs = _Pieces(prob, anchors)
        cands = [_candidates(prob, con, k, sl[k], ic[k], anchors[k], err0, knots[k + 1] - knots[k])
                 for k in range(n)]
        if any(c[0].size == 0 for c in cands):
            raise InputError("no slope the constraints allow lies within --slope-min/--slope-max")
        if prob.continuous:  # a segment may continue its left neighbour's line: consecutive lines with
            # equal powers of two (or grid slopes) cannot cross, so without this many chains are empty
            cands = [cands[0]] + [c if (k == n - 1 and prob.right_pinned) else
                                  (np.concatenate([c[0], cands[k - 1][0]]), np.concatenate([c[1], cands[k - 1][1]]))
                                  for k, c in enumerate(cands[1:], start=1)]
        got = _dp(pcs, cands, prob.continuous, fixed)
        if got is None:
            break
        total, choice, bps = got
        if best is not None and not total < best[0] * (1 - 1e-12):
            break
        sl = np.array([cands[k][0][j] for k, j in enumerate(choice)])
        ic = np.array([cands[k][1][j] for k, j in enumerate(choice)])
        knots = np.concatenate(([prob.lo], bps, [prob.hi]))
        if not prob.continuous and con.intercept_grid is None:
            ic = _centre(prob, pcs, sl, ic, knots)  # exact best intercepts for these slopes and breakpoints
            total = _table_error(pcs, sl, ic, bps)
        best = (total, sl, ic, bps)
        err0 *= 0.7  # free slopes/intercepts: finer steps each round around the better table
    if best is None and prob.continuous and con.intercept_grid is None:
        held = _hold_slopes(prob, con, None, seed)
        if held is not None:
            return held, math.nan
    if best is None:
        what = "continuous " if prob.continuous else ""
        raise InputError(f"no {what}table with these slope/intercept constraints was found near the float fit "
                         "(consecutive lines must cross between segment midpoints); try a finer grid"
                         + (" or --discontinuous" if prob.continuous else ""))
    total, sl, ic, bps = best
    table = Table(breakpoints=bps, slopes=sl, intercepts=ic, continuous=prob.continuous)
    if prob.continuous and con.intercept_grid is None:
        table = _hold_slopes(prob, con, table, seed)
    return table, total


def _hold_slopes(prob: Problem, con: Constraints, table: Table | None, seed: Table) -> Table | None:
    """Continuous tables with free intercepts: keep the chosen slopes (and, as a second start, the
    float fit's slopes snapped to the allowed set) and optimize knots and values jointly by the SLP
    with "slope_k = s_k" as exact linear rows; intercepts then follow from continuity."""
    from dataclasses import replace

    from .param import layout
    from .refine import _objective, refine

    lay = layout(prob)
    pool = allowed_slopes(con)
    a, b = int(prob.left_pinned), prob.segments - int(prob.right_pinned)

    def snap(s: np.ndarray) -> np.ndarray:
        out = s.copy()
        for k in range(a, b):
            out[k] = _slope_candidates(con, float(s[k]), 0.0)[0] if pool is None and con.slope_grid is None \
                else _nearest(con, float(s[k]), pool)
        return out

    best, best_obj = table, (math.inf if table is None else _objective(prob, lay, *_zp(prob, lay, table)))
    starts = [(seed, snap(seed.slopes))] if table is None else [(table, table.slopes), (seed, snap(seed.slopes))]
    for start, slopes in starts:
        held = replace(con, slope_grid=None, intercept_grid=None, pow2_slopes=None, fixed_slopes=tuple(slopes))
        sub = replace(prob, constraints=held)
        res = refine(sub, lay, start.breakpoints.astype(np.float64).copy())
        if not np.all(np.isfinite(res.z)) or not res.objective < best_obj:
            continue
        knots = np.concatenate(([prob.lo], res.p, [prob.hi]))
        u = lay.values(res.z, res.p)
        slopes = np.asarray(slopes, dtype=np.float64)
        ic = np.empty(slopes.size)  # continuity carried knot to knot, exact up to rounding (the LP's
        ic[0] = prob.left_line[1] if prob.left_line is not None else u[lay.left_slot[0]] - slopes[0] * knots[0]
        for k in range(1, slopes.size):  # slope rows hold to ~1e-12, which would open jumps)
            ic[k] = ic[k - 1] + (slopes[k - 1] - slopes[k]) * knots[k]
        bp = res.p.copy()
        if prob.right_line is not None:  # meet the pinned asymptote where it crosses the last free line
            ic[-1] = prob.right_line[1]
            if slopes[-2] == slopes[-1]:
                continue
            bp[-1] = (ic[-1] - ic[-2]) / (slopes[-2] - slopes[-1])
            if not (bp.size < 2 or bp[-1] > bp[-2]):
                continue
        cand = Table(breakpoints=bp, slopes=slopes, intercepts=ic, continuous=True)
        best, best_obj = cand, res.objective
    return best


def _nearest(con: Constraints, s: float, pool: np.ndarray | None) -> float:
    if pool is not None:
        return float(pool[int(np.argmin(np.abs(pool - s)))])
    q = con.slope_grid
    return float(round(s / q) * q)


def _zp(prob: Problem, lay, table: Table) -> tuple[np.ndarray, np.ndarray]:
    """Free values z and knots p of a continuous table (for scoring it with the refiner's objective)."""
    p = table.breakpoints.astype(np.float64)
    knots = np.concatenate(([prob.lo], p, [prob.hi]))
    u = np.empty(knots.size)
    u[:-1] = table.slopes * knots[:-1] + table.intercepts
    u[-1] = table.slopes[-1] * knots[-1] + table.intercepts[-1]
    z, *_ = np.linalg.lstsq(lay.B, u - lay.C @ p - lay.d, rcond=None)
    return z, p


def _table_error(pcs: _Pieces, sl: np.ndarray, ic: np.ndarray, bps: np.ndarray) -> float:
    seg = np.searchsorted(bps, pcs.x, side="right")
    return float(np.max(np.abs(pcs.w * (sl[seg] * pcs.x + ic[seg] - pcs.f))))


def _centre(prob: Problem, pcs: _Pieces, sl: np.ndarray, ic: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Each free segment's intercept minimizing its weighted max error for its slope and interval:
    max_x w(x)·|s·x + c − f(x)| is convex in c, so bisection on the sign of its two sides finds it."""
    out = ic.copy()
    n = prob.segments
    seg = np.searchsorted(knots[1:-1], pcs.x, side="right")
    for k in range(n):
        if (k == 0 and prob.left_pinned) or (k == n - 1 and prob.right_pinned):
            continue
        sel = seg == k
        if not sel.any():
            continue
        r = pcs.f[sel] - sl[k] * pcs.x[sel]
        w = pcs.w[sel]
        a, b = float(r.min()), float(r.max())
        for _ in range(60):  # up(c) = max w (c - r) rises, down(c) = max w (r - c) falls: balance them
            c = 0.5 * (a + b)
            if np.max(w * (c - r)) < np.max(w * (r - c)):
                a = c
            else:
                b = c
        out[k] = 0.5 * (a + b)
    return out


def _dp(pcs: _Pieces, cands: list, continuous: bool, fixed: np.ndarray | None):
    """Bottleneck shortest path through the candidate layers: (error, choice per segment, breakpoints)."""
    n = len(cands)
    x = pcs.x
    first = pcs.err(*cands[0], 0, int(pcs.idx[0]) + 1).max(axis=1)
    value = first
    back, bpk = [], []
    for k in range(n - 1):
        cost, bp = pcs.pair(k, cands[k], cands[k + 1], continuous, None if fixed is None else float(fixed[k]))
        m = np.maximum(value[:, None], cost)
        arg = np.argmin(m, axis=0)
        value = m[arg, np.arange(m.shape[1])]
        back.append(arg)
        bpk.append(bp)
    last = pcs.err(*cands[-1], int(pcs.idx[-1]), x.size).max(axis=1)
    value = np.maximum(value, last)
    j = int(np.argmin(value))
    if not np.isfinite(value[j]):
        return None
    choice = [j]
    for arg in reversed(back):
        choice.append(int(arg[choice[-1]]))
    choice.reverse()
    bps = np.array([bpk[k][choice[k], choice[k + 1]] for k in range(n - 1)])
    return float(value[j]), choice, bps


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
            c = _balance(r[k], w)
            for cc in ((c,) if q is None else (math.floor(c / q) * q, math.ceil(c / q) * q)):
                e = float(np.max(w * np.abs(r[k] - cc)))
                if best is None or e < best[0]:
                    best = (e, float(slopes[k]), float(cc))
        return best if best is not None and best[0] <= eps * (1 + 1e-12) else None

    def _reach(self, i: int, eps: float, stop: int, slopes=None) -> int:
        """Last index a single allowed line from i covers within eps (i - 1 if not even sample i)."""
        if self._line(i, i, eps, slopes) is None:
            return i - 1
        lo, step = i, 1
        while True:
            cand = min(lo + step, stop)
            if self._line(i, cand, eps, slopes) is not None:
                lo = cand
                if cand == stop:
                    return stop
                step *= 2
            else:
                hi = cand
                break
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._line(i, mid, eps, slopes) is not None:
                lo = mid
            else:
                hi = mid
        return lo

    def _tail(self, side: str) -> np.ndarray | None:
        p = self.prob
        line = p.left_line if side == "left" else p.right_line
        if line is not None:
            return None  # handled as a fixed line
        return np.array([0.0]) if p.tails == "clamp" and p.segments > 1 else None

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


def _balance(r: np.ndarray, w: np.ndarray) -> float:
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
