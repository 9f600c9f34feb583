"""Fitters: the best piecewise-linear table for a function, by segment count or by error budget.

Pipeline (each step its own module): `problem` states what is asked; `greedy` solves the discontinuous
max-abs problem exactly (and seeds everything else); `init` seeds the metrics greedy does not cover;
`refine` jointly optimizes knots and values (sequential LP for minimax, Gauss–Newton for L2);
`verify` measures the finished table independently on a dense grid.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation, get
from ..table import Table
from .greedy import Greedy
from .init import estimate_error, initial_knots
from .param import layout, to_table
from .problem import MAX_SEGMENTS, Problem
from .refine import refine
from .verify import measure

__all__ = ["FitReport", "fit", "fit_problem", "stamp"]


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
    lower_bound: float | None = None  # best discontinuous max-abs error at this N (a bound for any table)
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

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
            txt += (f" No {self.segments}-segment table with these tails can beat {self.lower_bound:.4g} "
                    "(sampled discontinuous optimum).")
        if self.message:
            txt += f" Note: {self.message}."
        return txt


def _solve(prob: Problem) -> tuple[Table, int, float | None]:
    """Fit one problem; returns (table, iterations, discontinuous lower bound or None)."""
    n = prob.segments
    lower = None
    if prob.metric == "max-abs" or prob.metric == "rms":
        g = Greedy(prob, points=max(2001, 60 * n))
        eps, plan = g.solve(hint=estimate_error(prob), rtol=2e-3)
        lower = g.infeasible if prob.metric == "max-abs" else None
        p0, _, _ = g.lines(plan)
        if len(plan) < n:  # the function needs fewer segments than asked: split the longest ones
            p0 = _pad(prob, p0, n)
    else:
        p0 = initial_knots(prob)
    lay = layout(prob)
    res = refine(prob, lay, p0)
    if prob.metric == "rms":
        alt = refine(prob, lay, initial_knots(prob))
        res = alt if alt.objective < res.objective else res
    return to_table(prob, lay, res.z, res.p), res.iterations, lower


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


def fit_problem(prob: Problem) -> Table:
    """Fit a fully specified problem and attach verified error and report."""
    t0 = time.perf_counter()
    table, iters, lower = _solve(prob)
    seconds = time.perf_counter() - t0
    err = measure(table, prob.act, prob.lo, prob.hi, prob.tails)
    ident = prob.act.to_json()
    table.function, table.params = ident["function"], ident["params"]
    table.domain = (prob.lo, prob.hi)
    table.error = {k: err[k] for k in ("max_abs", "max_rel", "rms", "over")}
    table.error.update({k: v for k, v in err.items() if k not in table.error})
    # JSON has no inf: an error that cannot be measured (no input of the range fits in float16) is null
    table.error = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in table.error.items()}
    table.report = FitReport(prob.segments, err, (prob.lo, prob.hi), prob.tails, prob.metric,
                             prob.continuous, seconds, iters, lower)
    return table


def fit(func: str | Activation, segments: int | None = None, *, max_error: float | None = None,
        range: tuple[float, float] | None = None, metric: str = "max-abs", continuous: bool = True,
        tails: str = "free", beta: float | None = None,
        weight: Callable[[np.ndarray], np.ndarray] | None = None) -> Table:
    """Fit `func` with `segments` segments (least error) or with the fewest meeting `max_error`.

    Hardware-constrained fits are `actiba.fit(..., target=NAME)` (`actiba.targets.fit`): targets build on
    this fitter, so it does not call them.

    `range` defaults to the function's own; with asymptote tails and no range given, the range is
    widened until the pinned tails are not what limits the error.
    """
    act = _resolve(func, beta)
    if (segments is None) == (max_error is None):
        raise InputError("give exactly one of --segments N or --max-error EPS")
    if weight is not None and metric != "rms":
        raise InputError("a weight function applies to the rms metric only")
    lo, hi = (float(range[0]), float(range[1])) if range is not None else act.default_range
    for _ in builtins.range(8):
        if segments is not None:
            prob = Problem(act, lo, hi, int(segments), continuous, tails, metric, weight)
            table = fit_problem(prob)
        else:
            table = _fit_budget(act, float(max_error), lo, hi, continuous, tails, metric, weight)
        wider = _auto_range(act, lo, hi, tails, table.error["max_abs"]) if range is None else None
        if wider is None:
            break
        lo, hi = wider
    if range is None and (lo, hi) != act.default_range:
        table.report.message = f"range widened to [{lo:g}, {hi:g}] so the asymptote tails do not limit the error"
    stamp(table, act, metric, continuous, tails, segments=segments, max_error=max_error)
    return table


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
                metric: str, weight: Callable | None) -> Table:
    """Fewest segments whose fitted error meets eps; then the least error at that count."""
    import math

    if not (math.isfinite(eps) and eps > 0):
        raise InputError(f"--max-error must be a positive finite number, got {eps}")

    def attempt(n: int) -> Table:
        return fit_problem(Problem(act, lo, hi, n, continuous, tails, metric, weight))

    start = 1 + int(tails in ("asymptote", "clamp")) * 2
    if metric == "max-abs":  # the exact discontinuous count is a lower bound for every table
        probe = Problem(act, lo, hi, MAX_SEGMENTS, False, tails, metric)
        plan = Greedy(probe, points=max(20001, min(400_000, int(60 * (hi - lo) / math.sqrt(eps) + 1)))).plan(
            eps, MAX_SEGMENTS)
        if plan is None:  # quote the exact discontinuous optimum at the cap: a bound no table beats
            cap = Greedy(Problem(act, lo, hi, MAX_SEGMENTS, False, tails, metric),
                         points=max(20001, min(400_000, 60 * MAX_SEGMENTS)))
            best, _ = cap.solve(hint=estimate_error(cap.prob), rtol=1e-5)
            raise InputError(f"max error {eps:g} is not reachable within {MAX_SEGMENTS} segments on "
                             f"[{lo:g}, {hi:g}]; the best achievable is {best:.4g}")
        start = max(start, len(plan))
    n = start
    table = attempt(n)
    step = 1
    while _metric_value(table, metric) > eps:
        if n >= MAX_SEGMENTS:
            raise InputError(f"max error {eps:g} is not reachable within {MAX_SEGMENTS} segments on "
                             f"[{lo:g}, {hi:g}]; the best achievable is {_metric_value(table, metric):.4g}")
        n = min(MAX_SEGMENTS, n + step)
        step *= 2 if metric != "max-abs" else 1
        table = attempt(n)
    # after an exponential climb, walk back to the smallest count that still meets eps
    while n > start:
        prev = attempt(n - 1)
        if _metric_value(prev, metric) > eps:
            break
        n, table = n - 1, prev
    return table
