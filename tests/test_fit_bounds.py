"""Certificates and budget search checked against computations that share no code with the fitter:

* exhaustive knot grids + an LP over knot values (scipy.optimize.linprog) for tiny tubes and for
  2- and 3-segment continuous tables: any feasible grid solution is an upper bound on the optimum,
  so a lower bound above it would be unsound;
* the finished tables themselves, re-measured on a dense grid (a bound above a real table is wrong);
* a linear scan over segment counts for the budget search.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

import actiba
from actiba import functions
from actiba.fitting.minlink import links, polyline
from actiba.table import evaluate


# --------------------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------------------
def hat_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Columns: the piecewise-linear hat functions on `knots` (values at knots are the unknowns)."""
    return np.stack([np.interp(x, knots, np.eye(knots.size)[j]) for j in range(knots.size)], axis=1)


def best_continuous_on_knots(x: np.ndarray, f, knots: np.ndarray) -> float:
    """min over knot values of max |g - f| on the samples and the knots, g continuous with the given
    knots (LP). Between consecutive evaluation points g is linear, so the continuum error exceeds
    this by at most h²/8·max|f''|: a valid upper bound on the optimum up to that slack."""
    x = np.unique(np.concatenate([x, knots]))
    f = f(x)
    B = hat_basis(x, knots)
    one = np.ones((x.size, 1))
    A = np.vstack([np.hstack([B, -one]), np.hstack([-B, -one])])
    c = np.zeros(knots.size + 1)
    c[-1] = 1.0
    res = optimize.linprog(c, A_ub=A, b_ub=np.concatenate([f, -f]),
                           bounds=[(None, None)] * (knots.size + 1), method="highs")
    return float(res.fun)


def tube_feasible_on_knots(x, lo, up, knots) -> bool:
    """Is there a polyline with these knot abscissae inside the polygon tube through (x, lo/up)?

    Both the polyline and the tube's chains are linear between consecutive events (gates, knots), so
    checking at the union of gates and knots is exact."""
    ev = np.unique(np.concatenate([x, knots]))
    B = hat_basis(ev, knots)
    lo_e, up_e = np.interp(ev, x, lo), np.interp(ev, x, up)
    A = np.vstack([B, -B])
    res = optimize.linprog(np.zeros(knots.size), A_ub=A, b_ub=np.concatenate([up_e, -lo_e]),
                           bounds=[(None, None)] * knots.size, method="highs")
    return res.status == 0


def brute_force_links(x, lo, up, per_strip: int = 4, kmax: int = 3) -> int:
    """Fewest links found with knots on a grid inside every strip (an upper bound on the optimum)."""
    grid = np.unique(np.concatenate([np.linspace(x[i], x[i + 1], per_strip + 1) for i in range(x.size - 1)]))
    inner = grid[(grid > x[0]) & (grid < x[-1])]
    for k in range(1, kmax + 1):
        for inside in itertools.combinations(inner, k - 1):
            knots = np.concatenate(([x[0]], inside, [x[-1]]))
            if tube_feasible_on_knots(x, lo, up, knots):
                return k
    return kmax + 1


# --------------------------------------------------------------------------------------------------
# the minimum-link sweep on tiny tubes
# --------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=6), st.floats(0.02, 0.5))
def test_min_links_never_above_a_brute_force_solution_and_is_achieved(ys, w):
    x = np.arange(len(ys), dtype=np.float64)
    f = np.asarray(ys)
    lo, up = f - w, f + w
    got = links(x.tolist(), lo.tolist(), up.tolist(), 99, build=True)
    assert got is not None
    k, lines = got
    bf = brute_force_links(x, lo, up)
    # soundness of every certificate built on it: the sweep never claims more links than needed
    if bf <= 3:  # (a grid that found nothing proves nothing)
        assert k <= bf, (k, bf)
    # and it is achieved: the window lines make a polyline inside the tube
    poly = polyline(lines)
    if poly is not None:
        bp, sl, ic = poly
        ev = np.unique(np.concatenate([x, bp[(bp > x[0]) & (bp < x[-1])]]))
        g = evaluate(bp, sl, ic, ev)
        assert np.all(g <= np.interp(ev, x, up) + 1e-9) and np.all(g >= np.interp(ev, x, lo) - 1e-9)
        assert sl.size == k


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=12), st.floats(0.01, 0.3), st.floats(1.05, 2.0))
def test_min_links_is_monotone_in_the_width(ys, w, grow):
    x = np.arange(len(ys), dtype=np.float64).tolist()
    f = np.asarray(ys)
    k1 = links(x, (f - w).tolist(), (f + w).tolist(), 99)[0]
    k2 = links(x, (f - w * grow).tolist(), (f + w * grow).tolist(), 99)[0]
    assert k2 <= k1


# --------------------------------------------------------------------------------------------------
# continuous certificates vs independent tables
# --------------------------------------------------------------------------------------------------
def test_two_segment_bound_vs_lp_brute_force():
    lo, hi = -8.0, 8.0
    x = np.linspace(lo, hi, 1201)
    f = functions.get("silu").f
    coarse = np.linspace(-3, 3, 25)
    errs = [best_continuous_on_knots(x, f, np.array([lo, p, hi])) for p in coarse]
    k0 = coarse[int(np.argmin(errs))]
    best = min(best_continuous_on_knots(x, f, np.array([lo, p, hi])) for p in np.linspace(k0 - 0.25, k0 + 0.25, 26))
    t = actiba.fit("silu", segments=2)
    lb = t.error["lower_bound"]
    # the LP optimum on these samples is itself optimistic by at most the curvature between samples
    slack = (x[1] - x[0]) ** 2 / 8 * 0.5
    assert lb <= best + slack, (lb, best)
    assert lb >= 0.995 * min(best, t.error["max_abs"]), (lb, best)


def test_three_segment_bound_vs_lp_around_the_fit():
    name, lo, hi = "tanh", -6.0, 6.0
    t = actiba.fit(name, segments=3)
    x = np.linspace(lo, hi, 1201)
    f = functions.get(name).f
    b0, b1 = t.breakpoints
    best = min(best_continuous_on_knots(x, f, np.array([lo, p, q, hi]))
               for p in np.linspace(b0 - 0.1, b0 + 0.1, 9) for q in np.linspace(b1 - 0.1, b1 + 0.1, 9))
    lb = t.error["lower_bound"]
    assert lb <= best + (x[1] - x[0]) ** 2 / 8 * 0.8
    assert lb >= 0.995 * min(best, t.error["max_abs"])


REGISTRY = ["silu", "gelu", "gelu-tanh", "softplus", "sigmoid", "tanh", "exp"]


@pytest.mark.parametrize("name", REGISTRY)
@pytest.mark.parametrize("n", [4, 16])
def test_bound_is_below_the_table_and_the_gap_is_small(name, n):
    t = actiba.fit(name, segments=n)
    lo, hi = t.domain
    f = functions.get(name).f
    xs = np.unique(np.concatenate([np.linspace(lo, hi, 300_001), t.breakpoints]))
    err = float(np.max(np.abs(t(xs) - f(xs))))
    lb = t.error["lower_bound"]
    assert "minimum-link" in t.error["lower_bound_method"]
    assert lb <= err * (1 + 1e-9)
    assert err / lb - 1 <= 0.005, f"{name} N={n}: gap {err / lb - 1:.3%}"


@pytest.mark.parametrize("tails", ["asymptote", "clamp"])
def test_pinned_tail_bound_is_below_the_table(tails):
    t = actiba.fit("tanh", segments=8, tails=tails, range=(-6.0, 6.0))
    xs = np.linspace(-6, 6, 200_001)
    err = float(np.max(np.abs(t(xs) - np.tanh(xs))))
    assert t.error["lower_bound"] <= err * (1 + 1e-9)
    # pinned tails cannot do better than free ones, and the certificate knows a free-tail bound
    free = actiba.fit("tanh", segments=8, range=(-6.0, 6.0))
    assert t.error["lower_bound"] >= 0.5 * free.error["lower_bound"]


def test_discontinuous_bound_is_below_the_table():
    t = actiba.fit("silu", segments=32, continuous=False)
    xs = np.unique(np.concatenate([np.linspace(-8, 8, 400_001), t.breakpoints]))
    err = float(np.max(np.abs(t(xs) - functions.get("silu").f(xs))))
    assert t.error["lower_bound"] <= err
    assert err / t.error["lower_bound"] - 1 <= 0.005


def test_summary_states_the_gap():
    t = actiba.fit("sigmoid", segments=8)
    s = str(t.report.summary(t.function))
    assert "can beat" in s and "% of optimal" in s


# --------------------------------------------------------------------------------------------------
# budget search vs a linear scan
# --------------------------------------------------------------------------------------------------
def _meets(t, eps: float, metric: str) -> bool:
    key = {"max-abs": "max_abs", "rms": "rms"}[metric]
    v = t.error["domain_max_abs"] if key == "max_abs" and "domain_max_abs" in t.error else t.error[key]
    return v <= eps


@pytest.mark.parametrize("name,eps,metric,continuous", [
    ("tanh", 2e-2, "max-abs", True), ("silu", 5e-3, "max-abs", False),
    ("sigmoid", 2e-3, "rms", True), ("gelu", 1e-2, "max-abs", True),
])
def test_budget_search_agrees_with_a_linear_scan(name, eps, metric, continuous):
    t = actiba.fit(name, max_error=eps, metric=metric, continuous=continuous)
    assert _meets(t, eps, metric)
    first = next(n for n in range(1, 64)
                 if _meets(actiba.fit(name, segments=n, metric=metric, continuous=continuous), eps, metric))
    assert t.segments == first
    assert t.report.extra["counts_fitted"]  # the search says what it tried


def test_budget_time_covers_the_whole_search():
    t = actiba.fit("sigmoid", max_error=2e-3, metric="rms")
    assert len(t.report.extra["counts_fitted"]) >= 1
    assert t.report.seconds > 0
