"""Fitters: the best piecewise-linear table for a function, by segment count or by error budget.

Pipeline (each step its own module): `problem` states what is asked; `greedy` solves the discontinuous
max-abs problem exactly (and seeds everything else); `init` seeds the metrics greedy does not cover;
`refine` jointly optimizes knots and values (sequential LP for minimax, Gauss–Newton for L2);
`verify` measures the finished table independently on a dense grid.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation, get
from ..table import Table
from .bound import DISC_METHOD, ContinuousBound
from .constraints import Constraints, violation
from .greedy import Greedy
from .init import estimate_error, initial_knots
from .problem import MAX_SEGMENTS, Problem
from .tubefit import TubeFit
from .verify import measure

__all__ = ["FitReport", "fit", "fit_problem", "stamp"]

LATTICE_METHOD = ("exact discontinuous optimum under the slope/intercept constraints on {m} samples "
                  "(greedy farthest reach, bisection on ε)")
CERTIFY_MAX = 256  # continuous certificates above this cost more than the fit; the table still says so


@dataclass
class FitReport:
    """What the fitter did and how good the result is (like scipy.optimize's result objects)."""

    segments: int
    error: dict[str, Any]
    range: tuple[float, float]
    tails: str
    metric: str
    continuous: bool
    seconds: float
    iterations: int = 0
    lower_bound: float | None = None  # no table of this kind (N, range, tails, continuity) beats it
    lower_bound_method: str | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    function: str = ""

    @property
    def _constrained_bound(self) -> bool:
        return bool(self.lower_bound_method) and self.lower_bound_method.startswith("exact discontinuous optimum under")

    def __str__(self) -> str:
        return self.summary(self.function or "table")

    def summary(self, name: str) -> str:
        e = self.error
        over = "all real x" if e.get("over") == "real-line" else f"[{self.range[0]:g}, {self.range[1]:g}]"
        txt = (f"{name}: {self.segments} {'continuous' if self.continuous else 'discontinuous'} segments, "
               f"tails {self.tails}, fitted for {self.metric} on [{self.range[0]:g}, {self.range[1]:g}] "
               f"in {self.seconds:.3f} s of fitting. Max-abs error {e['max_abs']:.4g} over {over}, "
               f"worst at x = {e['where']:.6g}; rms {e['rms']:.4g}")
        if e.get("max_rel") is not None and self.metric == "max-rel":
            txt += f", max-rel {e['max_rel']:.4g}"
        if e.get("half_line"):
            hl = e["half_line"]
            txt += f"; bound {hl['max_abs']:.4g} holds for {hl['holds_for']}"
        txt += (f". After rounding the table to float32: {e['float32_max_abs']:.4g}, "
                f"float16: {e['float16_max_abs']:.4g}.")
        if self.lower_bound is not None and self.lower_bound > 1e-15:
            kind = "continuous " if self.continuous else ""
            gap = e.get("domain_max_abs", e["max_abs"]) / self.lower_bound - 1
            how = "minimum-link certificate" if self.continuous else "sampled discontinuous optimum"
            if self._constrained_bound:
                how = "sampled optimum under the same constraints"
            txt += (f" No {kind}{self.segments}-segment table with these tails can beat {self.lower_bound:.4g} "
                    f"({how}): this one is within {100 * max(gap, 0.0):.2g} % of optimal.")
        con = e.get("constraints")
        if con:
            txt += " Constraints " + ", ".join(f"{k}={_show(v)}" for k, v in con["requested"].items())
            txt += (" met (re-verified)." if self._constrained_bound else
                    " met (re-verified); the bound is for tables without them (so valid with them too), and "
                    "the gap includes what they cost.")
            if con.get("search"):
                txt += f" Slopes/intercepts: {con['search']}."
        if self.message:
            txt += f" Note: {self.message}."
        return txt


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "..".join(str(e) for e in v)
    return str(v).lower() if isinstance(v, bool) else str(v)


LARGE = 128  # budget searches settle counts above this from the tube alone (an LP fit would cost seconds)


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

        from .lattice import Covering, search

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


def _tube_table(prob: Problem, eps: float | None = None, points: int | None = None) -> Table | None:
    """Continuous free-tail table from the minimum-link path: the optimum (bisection) or, for `eps`,
    the fewest links whose error is ≤ eps everywhere; None if the path's windows overlapped."""
    tf = TubeFit(prob, points)
    if eps is not None:
        return tf.within(eps, MAX_SEGMENTS)
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
            direct = _tube_table(prob, eps)
            if direct is not None:
                n = direct.segments
                memo[n] = _finish(Problem(act, lo, hi, n, True, tails, metric), direct, 0, None, None, t0)
                if _metric_value(memo[n], metric) > eps:
                    memo.pop(n)  # verification disagrees with the sampled tube: let the search decide
                bad = max(bad, _tube_impossible(act, lo, hi, eps, n))
                guess = n
                if n in memo:
                    good = n
                    if bad < n - 1 and n - 1 > LARGE:
                        bad = n - 1  # settling one fewer would cost a fit of hundreds of segments
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
    cb = ContinuousBound(prob, points=int(min(max(160 * n + 1, 4001), 150_001)))
    return n - 1 if not cb.feasible(eps) else 0
