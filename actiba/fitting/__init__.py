"""Fitters: the best piecewise-linear table for a function, by segment count or by error budget.

Pipeline (each step its own module): `problem` states what is asked; `solve` picks the solver —
`tubefit` (continuous free-tail max-abs, with its certificate), `greedy` (exact discontinuous max-abs,
and the seed of everything else), `init` (seeds for the other metrics), `refine` (sequential LP for
minimax, Gauss–Newton for L2), `lattice` (slope/intercept grids, powers of two); `verify` measures the
finished table independently on a dense grid; `report` summarizes. This module holds the API
(`fit`) and the budget search.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import math
import numbers
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation, get
from ..table import Table
from .constraints import Constraints
from .greedy import Greedy
from .init import estimate_error
from .problem import MAX_SEGMENTS, Problem
from .report import FitReport
from .solve import CERTIFY_MAX, _continuous_bound, _finish, _tube_table, fit_problem
from .tubefit import TubeFit

__all__ = ["FitReport", "fit", "fit_problem", "stamp"]

def _resolve(func: str | Activation, beta: float | None) -> Activation:
    return func if isinstance(func, Activation) else get(func, beta)


def _auto_range(act: Activation, lo: float, hi: float, tails: str, err: float) -> tuple[float, float] | None:
    """Widen the range while a pinned asymptote is still far from f at the edge (tail-limited fits)."""
    if tails != "asymptote":
        return None
    nlo, nhi = lo, hi
    if act.left and abs(act.f(np.array([lo]))[0] - (act.left[0] * lo + act.left[1])) > 0.25 * err:
        nlo = lo * 1.5 if lo < 0 else lo - (hi - lo) * 0.5
    if act.right and abs(act.f(np.array([hi]))[0] - (act.right[0] * hi + act.right[1])) > 0.25 * err:
        nhi = hi * 1.5 if hi > 0 else hi + (hi - lo) * 0.5
    return None if (nlo, nhi) == (lo, hi) else (nlo, nhi)


def fit(func: str | Activation, segments: int | None = None, *, max_error: float | None = None,
        range: tuple[float, float] | None = None, metric: str = "max-abs", continuous: bool = True,
        tails: str = "free", beta: float | None = None,
        weight: Callable[[np.ndarray], np.ndarray] | None = None,
        monotone: bool | str = False, slope_min: float | None = None, slope_max: float | None = None,
        min_width: float | None = None, breakpoint_grid: float | None = None,
        slope_grid: float | None = None, intercept_grid: float | None = None,
        pow2_slopes: tuple[int, int] | None = None, uniform: bool = False) -> Table:
    """Fit `func` with `segments` segments (least error) or with the fewest meeting `max_error`.

    Constraints (max-abs and max-rel; `uniform` also rms; kept by the optimizer, re-verified on the
    result and stated in ``error.constraints``): `monotone` (True: slopes of f's sign, f must be
    monotone on the range; ``"auto"``: each segment's slope has f's sign wherever f is monotone on
    it), `slope_min` / `slope_max`, `min_width` (segment length), `breakpoint_grid` (breakpoints on
    multiples of it, e.g. 1 or 2**-3), `uniform` (breakpoints at lo + i·(hi − lo)/N), and the
    discrete ones searched on a lattice (`lattice.py`: the best table among candidate lines near the
    float fit, not a proven optimum): `slope_grid` / `intercept_grid` (multiples of a step, e.g.
    2**-6), `pow2_slopes=(emin, emax)` (every slope 0 or ±2^e, emin <= e <= emax).

    Hardware-constrained fits are `actiba.fit(..., target=NAME)` (`actiba.targets.fit`): targets build on
    this fitter, so it does not call them.

    `range` defaults to the function's own; with asymptote tails and no range given, the range is
    widened until the pinned tails are not what limits the error.
    """
    act = _resolve(func, beta)
    if segments is not None and (isinstance(segments, bool) or not isinstance(segments, numbers.Integral)):
        raise InputError(f"segments must be an integer, got {segments!r}")  # as the CLI's int parser
    if (segments is None) == (max_error is None):
        raise InputError("give exactly one of --segments N or --max-error EPS")
    if weight is not None and metric != "rms":
        raise InputError("a weight function applies to the rms metric only")
    lo, hi = (float(range[0]), float(range[1])) if range is not None else act.default_range
    con = _constraints(act, lo, hi, monotone, slope_min, slope_max, min_width, breakpoint_grid,
                       slope_grid, intercept_grid, pow2_slopes, uniform)
    for _ in builtins.range(8):
        if segments is not None:
            prob = Problem(act, lo, hi, int(segments), continuous, tails, metric, weight, con)
            table = fit_problem(prob)
        else:
            table = _fit_budget(act, float(max_error), lo, hi, continuous, tails, metric, weight, con)
        wider = _auto_range(act, lo, hi, tails, table.error["max_abs"]) if range is None else None
        if wider is None:
            break
        lo, hi = wider
    if range is None and (lo, hi) != act.default_range:
        table.report.message = f"range widened to [{lo:g}, {hi:g}] so the asymptote tails do not limit the error"
    stamp(table, act, metric, continuous, tails, segments=segments, max_error=max_error,
           constraints=con.describe() if con is not None else None)
    return table


def _constraints(act: Activation, lo: float, hi: float, monotone: bool | str, slope_min: float | None,
                 slope_max: float | None, min_width: float | None, grid: float | None,
                 slope_grid: float | None = None, intercept_grid: float | None = None,
                 pow2_slopes: tuple[int, int] | None = None, uniform: bool = False) -> Constraints | None:
    if monotone not in (True, False, "auto"):
        raise InputError(f"monotone must be True, False or 'auto', got {monotone!r}")
    if monotone is True:
        d = act.df(np.linspace(lo, hi, 20001))
        if np.all(d >= 0):
            slope_min = 0.0 if slope_min is None else max(slope_min, 0.0)
        elif np.all(d <= 0):
            slope_max = 0.0 if slope_max is None else min(slope_max, 0.0)
        else:
            raise InputError(f"--monotone needs f monotone on [{lo:g}, {hi:g}]; "
                             f"{act.to_json()['function']} is not (use --monotone auto, or --slope-min/--slope-max)")
    pow2 = None
    if pow2_slopes is not None:
        try:
            emin, emax = pow2_slopes
        except (TypeError, ValueError):
            raise InputError(f"pow2_slopes must be (emin, emax), got {pow2_slopes!r}") from None
        if not all(isinstance(e, numbers.Integral) and not isinstance(e, bool) for e in (emin, emax)):
            raise InputError(f"pow2_slopes exponents must be integers, got {pow2_slopes!r}")
        pow2 = (int(emin), int(emax))
    con = Constraints(*(None if v is None else float(v) for v in (slope_min, slope_max, min_width, grid,
                                                                     slope_grid, intercept_grid)),
                      pow2_slopes=pow2, uniform=bool(uniform), monotone_auto=monotone == "auto")
    return con if con.any else None


def stamp(table: Table, act: Activation, metric: str, continuous: bool, tails: str, **opts: Any) -> None:
    """Record the version, the time and the options a table was fitted with in its provenance."""
    from .._version import __version__

    options = {"metric": metric, "continuous": continuous, "tails": tails}
    options.update({k: v for k, v in opts.items() if v is not None})
    table.provenance = {
        "actiba": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "options": options,
    }


def _metric_value(table: Table, metric: str) -> float:
    key = {"max-abs": "max_abs", "max-rel": "max_rel", "rms": "rms"}[metric]
    if metric == "max-abs" and table.error.get("over") == "real-line":
        return float(table.error["domain_max_abs"])
    return float(table.error[key])


def _fit_budget(act: Activation, eps: float, lo: float, hi: float, continuous: bool, tails: str,
                metric: str, weight: Callable | None, con: Constraints | None = None) -> Table:
    """Fewest segments whose fitted error meets eps, found by search, not by walking.

    max-abs: the exact discontinuous count at eps is a lower bound on N for every table; for
    continuous free tails the minimum-link count in the tube gives the answer directly (and, widened
    by δ, proves one fewer impossible). Otherwise: exponential steps up from the lower bound, then
    bisection between the last failing and the first meeting count. Fits are memoized, so no count
    is fitted twice, and the reported seconds cover the whole search.
    """
    if not (math.isfinite(eps) and eps > 0):
        raise InputError(f"--max-error must be a positive finite number, got {eps}")
    t0 = time.perf_counter()
    memo: dict[int, Table] = {}

    def attempt(n: int) -> Table:
        if n not in memo:
            memo[n] = fit_problem(Problem(act, lo, hi, n, continuous, tails, metric, weight, con), certify=False)
        return memo[n]

    def meets(n: int) -> bool:
        return _metric_value(attempt(n), metric) <= eps

    def unreachable(best: float) -> InputError:
        kind = "continuous" if continuous else "discontinuous"
        return InputError(f"max error {eps:g} is not reachable within {MAX_SEGMENTS} segments on "
                          f"[{lo:g}, {hi:g}]; with {kind} tables ({metric}) the best achievable is {best:.4g}")

    bad = int(tails in ("asymptote", "clamp")) * 2  # counts known to fail
    good: int | None = None
    guess = max(bad + 1, 16)
    if metric == "max-abs":  # the exact discontinuous count is a lower bound for every table
        probe = Problem(act, lo, hi, MAX_SEGMENTS, False, tails, metric)
        pts = max(20001, min(400_000, int(60 * (hi - lo) / math.sqrt(eps) + 1)))
        plan = Greedy(probe, points=pts).plan(eps, MAX_SEGMENTS)
        if plan is None:
            if continuous:
                best = _metric_value(attempt(MAX_SEGMENTS), metric)
            else:
                cap = Greedy(Problem(act, lo, hi, MAX_SEGMENTS, False, tails, metric),
                             points=max(20001, min(400_000, 60 * MAX_SEGMENTS)))
                best, _ = cap.solve(hint=estimate_error(cap.prob), rtol=1e-5)
            raise unreachable(best)
        bad = max(bad, len(plan) - 1)
        guess = bad + 1
        if continuous and tails == "free" and con is None:  # the fewest links in the tube answer directly
            prob = Problem(act, lo, hi, max(len(plan), 1), True, tails, metric)
            direct = _tube_table(prob, eps, limit=MAX_SEGMENTS)
            if direct is not None:
                n = direct.segments
                memo[n] = _finish(Problem(act, lo, hi, n, True, tails, metric), direct, 0, None, None, t0)
                if _metric_value(memo[n], metric) > eps:
                    memo.pop(n)  # verification disagrees with the sampled tube: let the search decide
                bad = max(bad, _tube_impossible(act, lo, hi, eps, n))
                guess = n
                if n in memo:
                    good = n  # one fewer, if not proven impossible, is settled by fitting it (tube: ~1 s)
    guess = min(max(guess, bad + 1), MAX_SEGMENTS)
    n = guess
    while good is None:  # predict from error ~ 1/N², then bisect what is left of the bracket
        if meets(n):
            good = n
            break
        bad = n
        if n >= MAX_SEGMENTS:
            raise unreachable(_metric_value(attempt(n), metric))
        e = _metric_value(attempt(n), metric)
        jump = int(math.ceil(n * math.sqrt(e / eps) * 1.02)) if e > 0 else 2 * n
        n = min(MAX_SEGMENTS, max(n + 1, jump))
    while good - bad > 1:
        mid = (good + bad) // 2
        e_bad = _metric_value(memo[bad], metric) if bad in memo else math.inf
        e_good = _metric_value(attempt(good), metric)
        if math.isfinite(e_bad) and e_bad > eps > e_good > 0 and good - bad > 3:  # 1/sqrt(error) ~ N
            f = (1 / math.sqrt(eps) - 1 / math.sqrt(e_bad)) / (1 / math.sqrt(e_good) - 1 / math.sqrt(e_bad))
            mid = min(good - 1, max(bad + 1, int(round(bad + f * (good - bad)))))
        if meets(mid):
            good = mid
        else:
            bad = mid
    table = attempt(good)
    prob = Problem(act, lo, hi, good, continuous, tails, metric, weight, con)
    if metric == "max-abs" and continuous and good <= CERTIFY_MAX:
        lower, method = _continuous_bound(prob, table.report.error, None)
        table.error["lower_bound"], table.error["lower_bound_method"] = float(lower), method
        table.report.lower_bound, table.report.lower_bound_method = lower, method
    if table.report is not None:
        table.report.seconds = time.perf_counter() - t0
        table.report.extra["counts_fitted"] = sorted(memo)
    return table


def _tube_impossible(act: Activation, lo: float, hi: float, eps: float, n: int) -> int:
    """Largest count proven unable to meet eps (n - 1 if the δ-widened tube needs n links)."""
    if n <= 1:
        return 0
    prob = Problem(act, lo, hi, n - 1, True, "free", "max-abs")
    # the curvature-equidistributed tube: its δ is ~10x smaller than a uniform grid's at equal size,
    # which is what lets it prove n - 1 impossible at 1e-7 (the uniform one could not: two extra fits)
    tube = TubeFit(prob, int(min(max(160 * n + 1, 4001), 150_001))).tube
    return n - 1 if tube.count(eps, n - 1) is None else 0
