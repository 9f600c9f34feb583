"""Slopes and intercepts on fixed-point grids, power-of-two slopes: a lattice search around the float fit.

(Discontinuous tables with a finite slope set have an exact answer on the samples: `cover.py`. This
module handles the rest: continuous tables, intercept grids alone, uniform spacing with grids.)

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
from .constraints import Constraints, allowed_slopes
from .cover import balance
from .problem import Problem

R = 2  # candidate steps either side of the float fit's slope and intercept
FREE = np.array([-1.0, -0.25, -1 / 16, 0.0, 1 / 16, 0.25, 1.0])  # offsets (× error) for unconstrained values
COORD_MAX = 32  # continuous powers of two: one-segment slope moves up to this many segments (~N² cost)
ROUNDS = 6  # re-centrings; each costs one DP and the error is non-increasing across them


def samples(prob: Problem) -> int:
    return int(min(max(4001, 256 * prob.segments + 1), 200_001))


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

    def held(slopes: np.ndarray, p0: np.ndarray) -> tuple[Table | None, float]:
        sub = replace(prob, constraints=replace(con, slope_grid=None, intercept_grid=None, pow2_slopes=None,
                                                fixed_slopes=tuple(slopes)))
        res = refine(sub, lay, p0.astype(np.float64).copy())
        if not np.all(np.isfinite(res.z)):
            return None, math.inf
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
                return None, math.inf
            bp[-1] = (ic[-1] - ic[-2]) / (slopes[-2] - slopes[-1])
            if not (bp.size < 2 or bp[-1] > bp[-2]):
                return None, math.inf
        return Table(breakpoints=bp, slopes=slopes, intercepts=ic, continuous=True), res.objective

    best, best_obj = table, (math.inf if table is None else _objective(prob, lay, *_zp(prob, lay, table)))
    starts = [(seed, snap(seed.slopes))] if table is None else [(table, table.slopes), (seed, snap(seed.slopes))]
    for start, slopes in starts:
        cand, obj = held(slopes, start.breakpoints)
        if cand is not None and obj < best_obj:
            best, best_obj = cand, obj
    if best is None or pool is None or prob.segments > COORD_MAX:
        return best
    # powers of two are coarse: moving one segment to a neighbouring power and re-solving helps
    # (SiLU 16: 0.059 -> 0.041 in one round of ~2.5 s); on slope grids it found nothing, so not there
    for _ in range(2):
        improved = False
        for k in range(a, b):
            i = int(np.argmin(np.abs(pool - best.slopes[k])))
            for j in (i - 1, i + 1):
                if not 0 <= j < pool.size:
                    continue
                slopes = best.slopes.copy()
                slopes[k] = pool[j]
                cand, obj = held(slopes, best.breakpoints)
                if cand is not None and obj < best_obj * (1 - 1e-9):
                    best, best_obj, improved = cand, obj, True
        if not improved:
            break
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
    """Each free segment's intercept minimizing its weighted max error for its slope and interval."""
    out = ic.copy()
    n = prob.segments
    seg = np.searchsorted(knots[1:-1], pcs.x, side="right")
    for k in range(n):
        if (k == 0 and prob.left_pinned) or (k == n - 1 and prob.right_pinned):
            continue
        sel = seg == k
        if not sel.any():
            continue
        out[k] = balance(pcs.f[sel] - sl[k] * pcs.x[sel], pcs.w[sel])
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
