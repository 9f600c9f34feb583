"""One fully specified problem → one verified table: the solver each request takes, and `_finish`.

Continuous free-tail max-abs tables come from the tube (`tubefit`, numpy only); everything else from
the greedy seed and the LP / Gauss–Newton refiner (`refine`, which imports scipy, loaded only then);
slope/intercept lattices from `lattice` on top of the float fit. `_finish` measures the result
independently (`verify`), attaches the certificate and re-verifies the constraints.
"""

from __future__ import annotations

import builtins
import math
import time
from typing import Any

import numpy as np

from ..table import Table
from .bound import DISC_METHOD, ContinuousBound
from .greedy import Greedy
from .init import estimate_error, initial_knots
from .problem import MAX_SEGMENTS, Problem
from .report import FitReport
from .tubefit import TubeFit
from .verify import measure, monotone_signs, violation

LATTICE_METHOD = ("exact discontinuous optimum under the slope/intercept constraints on {m} samples "
                  "(greedy farthest reach, bisection on ε)")


CERTIFY_MAX = 256  # continuous certificates above this cost more than the fit; the table still says so


def _lp():
    """The LP/Gauss–Newton refiner and its parametrization, imported when a request needs them:
    scipy.optimize alone costs ~0.3 s to import, more than a whole 16-segment tube fit."""
    from .param import layout, to_table
    from .refine import refine

    return layout, to_table, refine


def _free(prob: Problem) -> bool:
    return not (prob.left_pinned or prob.right_pinned)


def _solve(prob: Problem) -> tuple[Table, int, float | None, str | None]:
    """Fit one problem; returns (table, iterations, lower bound or None, how the bound was found)."""
    n = prob.segments
    lower = method = None
    con = prob.constraints if prob.constraints is not None and prob.constraints.any else None
    if con is not None and con.lattice:  # fit the float table with the other constraints, then search
        from dataclasses import replace

        from .cover import Covering
        from .lattice import search

        if Covering.fits(con, prob):  # discontinuous, finite slope set: exact on the samples
            cov = Covering(prob, con)
            table, _, lower = cov.solve(estimate_error(prob))
            table = _split(table, prob.lo, prob.hi, n)
            table.error = {"search": f"exact discontinuous optimum under these constraints on {cov.m} samples "
                                     "(greedy farthest reach over the allowed lines, bisection on the error)"}
            return table, 0, lower, LATTICE_METHOD.format(m=cov.m)
        seed, iters, lower, method = _solve(replace(prob, constraints=con.without_lattice()))
        table, _ = search(prob, seed, con)
        table.error = {"search": "best on the searched lattice (candidate lines within a few grid steps of the "
                                 "float fit, breakpoints between its segment midpoints, dynamic programming), "
                                 "not a proven optimum"}
        return table, iters, lower, method  # a bound for looser tables bounds this one too
    if prob.metric == "max-abs" and prob.continuous and _free(prob) and con is None:
        tf = TubeFit(prob)
        table, a, _ = tf.solve()
        if table is not None:  # else the windows overlapped in x: the LP refiner below decides
            return _split(table, prob.lo, prob.hi, n), 0, a, tf.method()
    layout, to_table, refine = _lp()
    if prob.metric == "max-abs" or prob.metric == "rms":
        exact = prob.metric == "max-abs" and not prob.continuous
        # the sampled relaxation leaves each breakpoint's gap free: its bound is ~30/m·N relative
        # low, so 2000 samples per segment keep it within ~0.15 % (SiLU N = 32: 8001 gave 1.1 %)
        pts = int(min(max(8001, 2000 * n), 128_001)) if exact else max(2001, 60 * n)
        g = Greedy(prob, points=pts)
        eps, plan = g.solve(hint=estimate_error(prob), rtol=1e-6 if exact else 2e-3)
        if prob.metric == "max-abs":
            lower, method = g.infeasible, DISC_METHOD.format(m=pts)
        p0, _, _ = g.lines(plan)
        if len(plan) < n:  # the function needs fewer segments than asked: split the longest ones
            p0 = _pad(prob, p0, n)
    else:
        p0 = initial_knots(prob)
    lay = layout(prob)
    if con is not None and con.min_width is not None:
        p0 = _spread(prob, p0, con.min_width)
    if con is not None and con.monotone_auto:
        p0 = _off_turns(prob, p0)
    if con is not None and con.uniform:  # knots fixed: the values LP (or least squares) is the whole fit
        p0 = prob.lo + (prob.hi - prob.lo) * np.arange(1, n) / n
        res = refine(prob, lay, p0, move_knots=False)
    else:
        res = refine(prob, lay, p0)
    if prob.metric == "rms" and not (con is not None and con.uniform):
        alt = refine(prob, lay, initial_knots(prob))
        res = alt if alt.objective < res.objective else res
    if con is not None and con.grid is not None:
        res = _on_grid(prob, lay, res.p, con.grid)
    return to_table(prob, lay, res.z, res.p), res.iterations, lower, method


def _off_turns(prob: Problem, p: np.ndarray) -> np.ndarray:
    """Move knots off f's turning points (by 2μ) so the segment across each one straddles it."""
    from .constraints import margin, turning_points

    p = np.array(p, dtype=np.float64)
    mu = margin(prob.lo, prob.hi)
    for t in turning_points(prob.act, prob.lo, prob.hi):
        near = np.abs(p - t) < 2 * mu
        p[near] = np.where(p[near] <= t, t - 2 * mu, t + 2 * mu)
    return p


def _spread(prob: Problem, p: np.ndarray, w: float) -> np.ndarray:
    """Nearest knots (forward then backward pass) with every segment at least w wide."""
    k = np.concatenate(([prob.lo], np.asarray(p, dtype=np.float64), [prob.hi]))
    for i in builtins.range(1, k.size - 1):
        k[i] = max(k[i], k[i - 1] + w)
    for i in builtins.range(k.size - 2, 0, -1):
        k[i] = min(k[i], k[i + 1] - w)
    return k[1:-1]


def _on_grid(prob: Problem, lay, p: np.ndarray, grid: float):
    """Knots on multiples of `grid`: round, then move single knots by one step while that helps.

    Each candidate is scored by the best values for its knots (the LP with the knots held), so the
    values are always optimal for the grid knots, never just rounded."""
    _, _, refine = _lp()
    q = np.round(np.asarray(p) / grid).astype(np.int64)
    lo_i, hi_i = int(math.ceil(prob.lo / grid + 1e-9)), int(math.floor(prob.hi / grid - 1e-9))
    q = np.clip(q, lo_i, hi_i)
    for i in builtins.range(1, q.size):  # distinct and increasing, staying inside the range
        q[i] = max(q[i], q[i - 1] + 1)
    for i in builtins.range(q.size - 1, -1, -1):
        q[i] = min(q[i], (q[i + 1] - 1) if i + 1 < q.size else hi_i)

    def score(qq: np.ndarray):
        return refine(prob, lay, (qq * grid).astype(np.float64), move_knots=False)

    best = score(q)
    for _ in builtins.range(2):
        improved = False
        for i in builtins.range(q.size):
            for d in (-1, 1):
                c = q.copy()
                c[i] += d
                if c[i] < lo_i or c[i] > hi_i or (i > 0 and c[i] <= c[i - 1]) or (i + 1 < q.size and c[i] >= c[i + 1]):
                    continue
                got = score(c)
                if got.objective < best.objective * (1 - 1e-9):
                    q, best, improved = c, got, True
        if not improved:
            break
    best.p = q * grid
    return best


def _split(table: Table, lo: float, hi: float, n: int) -> Table:
    """Pad a table that needs fewer than n segments (tanh: the 16th buys nothing over 15) by splitting
    its longest segment on [lo, hi] in two with the same line: the error is unchanged, the count is n."""
    bp, sl, ic = list(table.breakpoints), list(table.slopes), list(table.intercepts)
    while len(sl) < n:
        knots = [lo, *bp, hi]
        k = int(np.argmax(np.diff(knots)))  # segment k spans knots[k]..knots[k + 1]
        bp.insert(k, 0.5 * (knots[k] + knots[k + 1]))
        sl.insert(k, sl[k])
        ic.insert(k, ic[k])
    return Table(breakpoints=np.asarray(bp), slopes=np.asarray(sl), intercepts=np.asarray(ic),
                 continuous=table.continuous)


def _tube_table(prob: Problem, eps: float | None = None, points: int | None = None,
                limit: int = MAX_SEGMENTS) -> Table | None:
    """Continuous free-tail table from the minimum-link path: the optimum (bisection) or, for `eps`,
    the fewest links whose error is ≤ eps everywhere; None if the path's windows overlapped."""
    tf = TubeFit(prob, points)
    if eps is not None:
        return tf.within(eps, limit)
    table, _, _ = tf.solve()
    return None if table is None else _split(table, prob.lo, prob.hi, prob.segments)


def _pad(prob: Problem, p: np.ndarray, n: int) -> np.ndarray:
    pts = list(np.concatenate(([prob.lo], p, [prob.hi])))
    while len(pts) - 1 < n:
        gaps = np.diff(pts)
        k = int(np.argmax(gaps[1:-1])) + 1 if len(gaps) > 2 and (prob.left_pinned or prob.right_pinned) \
            else int(np.argmax(gaps))
        pts.insert(k + 1, 0.5 * (pts[k] + pts[k + 1]))
    return np.asarray(pts[1:-1])


def fit_problem(prob: Problem, certify: bool = True) -> Table:
    """Fit a fully specified problem and attach verified error, lower bound and report."""
    t0 = time.perf_counter()
    table, iters, lower, method = _solve(prob)
    if not certify and prob.continuous:
        lower = method = None  # the discontinuous figure is not what a continuous table is judged by
    out = _finish(prob, table, iters, lower, method, t0, certify)
    lb = out.error.get("lower_bound")
    if (certify and lb and prob.continuous and prob.metric == "max-abs" and _free(prob)
            and (prob.constraints is None or not prob.constraints.any) and out.error["max_abs"] > 1.003 * lb
            and not str(method).startswith("minimum-link")):  # a tube table's gap is its sampling's, not a basin
        # the certificate says the refiner stopped short (exp at N = 64: 2.3 %): restart it from the
        # optimal tube path, which lands in the right basin
        seed = _tube_table(prob, points=int(min(200 * prob.segments + 1, 60_001)))
        if seed is not None and seed.segments == prob.segments:
            layout, to_table, refine = _lp()
            lay = layout(prob)
            res = refine(prob, lay, seed.breakpoints.copy())
            alt = _finish(prob, to_table(prob, lay, res.z, res.p), res.iterations, lower, method, t0, certify)
            if alt.error["max_abs"] < out.error["max_abs"]:
                out = alt
    return out


def _continuous_bound(prob: Problem, err: dict[str, Any], floor: float | None) -> tuple[float, str]:
    cb = ContinuousBound(prob)
    return cb.bound(float(err.get("domain_max_abs", err["max_abs"])), floor=floor or 0.0), cb.method()


def _finish(prob: Problem, table: Table, iters: int, lower: float | None, method: str | None,
            t0: float, certify: bool = False) -> Table:
    note = (table.error or {}).get("search")  # how a lattice solver searched, stated with the constraints
    err = measure(table, prob.act, prob.lo, prob.hi, prob.tails)
    tube_certified = method is not None and method.startswith("minimum-link")  # tubefit's own bound
    if (certify and prob.metric == "max-abs" and prob.continuous and prob.segments <= CERTIFY_MAX
            and not tube_certified):
        lower, method = _continuous_bound(prob, err, lower)
    seconds = time.perf_counter() - t0
    ident = prob.act.to_json()
    table.function, table.params = ident["function"], ident["params"]
    table.domain = (prob.lo, prob.hi)
    table.error = {k: err[k] for k in ("max_abs", "max_rel", "rms", "over")}
    table.error.update({k: v for k, v in err.items() if k not in table.error})
    if lower is not None and prob.metric == "max-abs":
        table.error["lower_bound"] = float(lower)
        table.error["lower_bound_method"] = method
    con = prob.constraints
    if con is not None and con.any:
        if con.slope_min is not None or con.slope_max is not None:  # slopes as stated, not re-derived
            lo_s = -np.inf if con.slope_min is None else con.slope_min
            hi_s = np.inf if con.slope_max is None else con.slope_max
            a, b = int(prob.left_pinned), table.slopes.size - int(prob.right_pinned)
            table.slopes[a:b] = np.clip(table.slopes[a:b], lo_s, hi_s)
        if con.monotone_auto:  # the LP keeps signs to ~1e-12: state them exactly (0, not +5e-13)
            sg = monotone_signs(table, prob.act, prob.lo, prob.hi)
            for k in builtins.range(int(prob.left_pinned), table.slopes.size - int(prob.right_pinned)):
                if sg[k] * table.slopes[k] < 0 and abs(table.slopes[k]) <= 1e-9:
                    table.slopes[k] = 0.0
        bad = violation(con, table, prob.lo, prob.hi, prob.left_pinned, prob.right_pinned, prob.act)
        table.error["constraints"] = err["constraints"] = {"requested": con.describe(), "violation": bad}
        if note:
            table.error["constraints"]["search"] = note
        exact = {"slope_grid", "intercept_grid", "pow2_slopes"}  # discrete: met exactly or not at all
        if any(v > (0.0 if k in exact else 1e-9 * max(1.0, abs(prob.hi - prob.lo))) for k, v in bad.items()):
            raise RuntimeError(f"fitted table violates its constraints: {bad}")
    # JSON has no inf: an error that cannot be measured (no input of the range fits in float16) is null
    table.error = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in table.error.items()}
    table.report = FitReport(prob.segments, err, (prob.lo, prob.hi), prob.tails, prob.metric,
                             prob.continuous, seconds, iters, lower, method, function=ident["function"])
    return table
