"""Fitter quality against references written here, independently of actiba.fitting:

* `DiscRef`: the exact discontinuous max-abs optimum on a sample grid (greedy farthest reach with
  Chebyshev lines, bisection on ε). The samples relax the continuum problem, so its value is a lower
  bound for every table with N segments. `ContRef` runs the same greedy with real-valued segment ends,
  which converges to the continuum optimum itself; `disc_optimum` brackets that optimum.
* `dense_error`: the error of a finished table re-measured with the canonical evaluator on a grid much
  denser than the fitter's verifier, plus every breakpoint and its neighbouring floats.
* small LPs (scipy.optimize.linprog) for one-line and one-knot problems.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from scipy import optimize

import actiba
from actiba import functions
from actiba.errors import InputError
from actiba.table import evaluate

# --------------------------------------------------------------------------------------------------
# independent references
# --------------------------------------------------------------------------------------------------
REF_POINTS = 12001


def chebyshev_line_error(x: np.ndarray, f: np.ndarray, same_curvature: bool) -> float:
    """Least max |f - (m x + c)| over the samples (half the least vertical width of the point set)."""
    if x.size <= 2:
        return 0.0
    if same_curvature:  # convex or concave data: the chord slope is optimal
        m = (f[-1] - f[0]) / (x[-1] - x[0])
        r = f - m * x
        return 0.5 * float(r.max() - r.min())
    s = np.diff(f) / np.diff(x)

    def width(m: float) -> float:
        r = f - m * x
        return float(r.max() - r.min())

    # the width is convex in m and its minimum lies between the extreme chord slopes
    res = optimize.minimize_scalar(width, bounds=(s.min(), s.max()), method="bounded",
                                   options={"xatol": 1e-13 * (1 + np.abs(s).max())})
    return 0.5 * min(res.fun, width(s.min()), width(s.max()))


class DiscRef:
    def __init__(self, name: str, lo: float, hi: float, points: int = REF_POINTS):
        act = functions.get(name)
        self.name = name
        self.x = np.linspace(lo, hi, points)
        self.f = act.f(self.x)
        # curvature regions from f'' signs on the samples (independent of Activation.inflections)
        d2 = act.d2f(self.x)
        sg = np.sign(d2)  # a new region wherever the sign of f'' changes (a zero is a region of its own)
        self.region = np.concatenate(([0], np.cumsum(sg[1:] != sg[:-1])))

    def err(self, i: int, j: int) -> float:
        return chebyshev_line_error(self.x[i:j + 1], self.f[i:j + 1], self.region[i] == self.region[j])

    def count(self, eps: float, limit: int) -> int | None:
        """Fewest segments covering all samples within eps (greedy farthest reach), None if > limit."""
        last = self.x.size - 1
        i = k = 0
        while i <= last:
            k += 1
            if k > limit:
                return None
            if self.err(i, last) <= eps:
                return k
            good, step = i, 1
            while good + step <= last and self.err(i, good + step) <= eps:
                good, step = good + step, 2 * step
            bad = min(good + step, last)
            while bad - good > 1:
                mid = (good + bad) // 2
                if self.err(i, mid) <= eps:
                    good = mid
                else:
                    bad = mid
            i = good + 1
        return k

    def optimum(self, n: int, rtol: float = 1e-6) -> float:
        """Least eps reachable with n segments (largest proven-infeasible eps, i.e. a lower bound)."""
        lo, hi = 0.0, 0.5 * float(np.ptp(self.f))
        while hi - lo > rtol * hi:
            mid = 0.5 * (lo + hi)
            if self.count(mid, n) is None:
                lo = mid
            else:
                hi = mid
        return lo


class ContRef(DiscRef):
    """The same greedy on the continuum: a segment's end is a real number found by bisection, and its
    error is sampled on the fine grid plus its two exact ends. Converges to the continuum optimum as
    the grid refines (second order), unlike `DiscRef` whose skipped gaps make it a (looser) lower bound."""

    def __init__(self, name: str, lo: float, hi: float, points: int = REF_POINTS):
        super().__init__(name, lo, hi, points)
        self.fn = functions.get(name).f
        self.lo, self.hi = lo, hi

    def cerr(self, a: float, ia: int, b: float, ib: int) -> float:
        """Error on [a, b]; samples ia..ib-1 lie strictly inside."""
        xs = np.concatenate(([a], self.x[ia:ib], [b]))
        fs = np.concatenate((self.fn(np.array([a])), self.f[ia:ib], self.fn(np.array([b]))))
        same = self.region[max(ia - 1, 0)] == self.region[min(ib, self.x.size - 1)]
        return chebyshev_line_error(xs, fs, bool(same))

    def reach(self, a: float, eps: float) -> float:
        last = self.x.size - 1
        ia = int(np.searchsorted(self.x, a, side="right"))
        if self.cerr(a, ia, self.hi, last) <= eps:
            return self.hi
        if self.cerr(a, ia, self.x[ia], ia) > eps:
            lo_b, hi_b = a, self.x[ia]
        else:
            good, step = ia, 1
            while good + step < last and self.cerr(a, ia, self.x[good + step], good + step) <= eps:
                good, step = good + step, 2 * step
            bad = min(good + step, last)
            while bad - good > 1:
                mid = (good + bad) // 2
                if self.cerr(a, ia, self.x[mid], mid) <= eps:
                    good = mid
                else:
                    bad = mid
            lo_b, hi_b = self.x[good], self.x[good + 1]
        jb = int(np.searchsorted(self.x, lo_b, side="right"))
        while hi_b - lo_b > 1e-10 * (self.x[1] - self.x[0]):
            mid = 0.5 * (lo_b + hi_b)
            if self.cerr(a, ia, mid, jb) <= eps:
                lo_b = mid
            else:
                hi_b = mid
        return lo_b

    def count(self, eps: float, limit: int) -> int | None:
        a, k = self.lo, 0
        while a < self.hi:
            k += 1
            if k > limit:
                return None
            a = self.reach(a, eps)
        return k

    def bracket(self, n: int, rtol: float = 1e-5) -> tuple[float, float]:
        """(infeasible, feasible) eps for n segments, rtol apart."""
        lo = DiscRef(self.name, self.lo, self.hi, 2001).optimum(n, rtol=1e-3)  # cheap lower bound
        hi = 1.05 * lo
        while self.count(hi, n) is None:
            lo, hi = hi, 2 * hi
        while hi - lo > rtol * hi:
            mid = 0.5 * (lo + hi)
            if self.count(mid, n) is None:
                lo = mid
            else:
                hi = mid
        return lo, hi


@cache
def disc_optimum(name: str, n: int, lo: float | None = None, hi: float | None = None) -> tuple[float, float]:
    """Bracket of the continuum discontinuous optimum (its lower end is a bound up to sampling slack)."""
    if lo is None:
        lo, hi = functions.get(name).default_range
    return ContRef(name, lo, hi).bracket(n)


SAMPLING_SLACK = 1e-4  # ContRef samples each segment's interior: its error is at most this much low


def dense_error(table, name: str, lo: float, hi: float, points: int = 400_001, beta=None):
    f = functions.get(name, beta).f
    bp = table.breakpoints[(table.breakpoints >= lo) & (table.breakpoints <= hi)]
    xs = np.unique(np.concatenate([np.linspace(lo, hi, points), bp, np.nextafter(bp, -np.inf),
                                   np.nextafter(bp, np.inf)]))
    xs = xs[(xs >= lo) & (xs <= hi)]
    err = np.abs(evaluate(table.breakpoints, table.slopes, table.intercepts, xs) - f(xs))
    i = int(np.argmax(err))
    return float(err[i]), float(xs[i])


@cache
def fitted(name: str, n: int, continuous: bool):
    return actiba.fit(name, segments=n, continuous=continuous)


CASES = [(name, n) for name in ("silu", "gelu", "tanh", "softplus") for n in (8, 16, 32)]


# --------------------------------------------------------------------------------------------------
# the reference itself, checked on a case with a closed form
# --------------------------------------------------------------------------------------------------
def test_reference_on_a_parabola():
    """f = x² on [-1, 1]: the best N-segment (discontinuous) max-abs error is (2/N)²/8 = 1/(2N²)."""
    ref = DiscRef.__new__(DiscRef)
    ref.x = np.linspace(-1, 1, 4001)
    ref.f = ref.x**2
    ref.region = np.zeros(ref.x.size, dtype=int)
    for n in (1, 3, 8):
        assert ref.optimum(n) == pytest.approx(1 / (2 * n * n), rel=2e-3)


# --------------------------------------------------------------------------------------------------
# quality vs the exact discontinuous optimum
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,n", CASES)
def test_discontinuous_fit_within_1pct_of_optimum(name, n):
    t = fitted(name, n, False)
    lo, hi = functions.get(name).default_range
    err, _ = dense_error(t, name, lo, hi)
    lo_opt, hi_opt = disc_optimum(name, n)
    assert t.segments == n and t.breakpoints.size == n - 1
    assert err >= lo_opt * (1 - SAMPLING_SLACK), "a table cannot beat the discontinuous optimum"
    assert err <= 1.01 * hi_opt, f"{name} N={n}: discontinuous fit {err:.6g} vs optimum {hi_opt:.6g}"


# tanh with 8 segments: an independent search (LP over knot values + Nelder-Mead over knots) found no
# continuous table below 1.058 x the discontinuous optimum, so 1.05 cannot hold there.
CONT_FACTOR = {("tanh", 8): 1.08}


@pytest.mark.parametrize("name,n", CASES)
def test_continuous_fit_between_optimum_and_5pct_above(name, n):
    t = fitted(name, n, True)
    lo, hi = functions.get(name).default_range
    err, _ = dense_error(t, name, lo, hi)
    lo_opt, hi_opt = disc_optimum(name, n)
    assert t.continuous is True and t.max_jump() <= 1e-9
    assert err >= lo_opt * (1 - SAMPLING_SLACK)
    assert err <= CONT_FACTOR.get((name, n), 1.05) * hi_opt, f"{name} N={n}: {err:.6g} vs {hi_opt:.6g}"


@pytest.mark.parametrize("name,n", CASES)
@pytest.mark.parametrize("continuous", [True, False])
def test_reported_error_matches_dense_recomputation(name, n, continuous):
    t = fitted(name, n, continuous)
    lo, hi = functions.get(name).default_range
    err, where = dense_error(t, name, lo, hi)
    rep = t.error
    assert rep["over"] == "domain" and tuple(t.domain) == (lo, hi)
    assert rep["max_abs"] == pytest.approx(err, rel=1e-3)
    assert rep["bound"] >= err * (1 - 1e-9)  # the stated bound really bounds the dense maximum
    # the reported worst point has (nearly) the worst error
    f = functions.get(name).f
    at = abs(float(t(np.array([rep["where"]]))[0] - f(np.array([rep["where"]]))[0]))
    assert at == pytest.approx(rep["max_abs"], rel=1e-9) and lo <= rep["where"] <= hi
    # rms on a uniform grid (independent recomputation)
    u = np.linspace(lo, hi, 200_001)
    rms = float(np.sqrt(np.mean((t(u) - f(u)) ** 2)))
    assert rep["rms"] == pytest.approx(rms, rel=1e-3)
    if continuous:  # a bound on continuous tables: above the discontinuous optimum, below this table
        assert rep["lower_bound"] <= err and rep["lower_bound"] >= disc_optimum(name, n)[0] * (1 - 5e-3)
    else:
        assert rep["lower_bound"] <= disc_optimum(name, n)[1]


def test_silu16_continuous_beats_published_best():
    t = actiba.fit("silu", segments=16, range=(-8, 8))
    err, _ = dense_error(t, "silu", -8, 8)
    assert err <= 3.42e-3


def test_uniform_knot_interpolation_is_at_least_5x_worse():
    name, n = "silu", 16
    lo, hi = -8.0, 8.0
    t = fitted(name, n, True)
    f = functions.get(name).f
    knots = np.linspace(lo, hi, n + 1)
    xs = np.linspace(lo, hi, 200_001)
    interp_err = float(np.max(np.abs(np.interp(xs, knots, f(knots)) - f(xs))))
    err, _ = dense_error(t, name, lo, hi)
    assert interp_err >= 5 * err, (interp_err, err)


# --------------------------------------------------------------------------------------------------
# N = 1 and N = 2 against brute-force LPs
# --------------------------------------------------------------------------------------------------
def best_line_error(x: np.ndarray, f: np.ndarray) -> float:
    """min over (m, c) of max |m x + c - f| as an LP."""
    one = np.ones((x.size, 1))
    A = np.vstack([np.hstack([x[:, None], one, -one]), np.hstack([-x[:, None], -one, -one])])
    res = optimize.linprog([0, 0, 1], A_ub=A, b_ub=np.concatenate([f, -f]),
                           bounds=[(None, None)] * 3, method="highs")
    return float(res.fun)


def best_two_segment_continuous(x: np.ndarray, f: np.ndarray, knots: np.ndarray) -> float:
    """min over the knot (from `knots`) and the three knot values of the max error, LP per knot."""
    best = math.inf
    a, b = x[0], x[-1]
    for p in knots:
        left = x <= p
        # basis: hat functions at a, p, b
        phi_a = np.where(left, (p - x) / (p - a), 0.0)
        phi_p = np.where(left, (x - a) / (p - a), (b - x) / (b - p))
        phi_b = np.where(left, 0.0, (x - p) / (b - p))
        B = np.stack([phi_a, phi_p, phi_b], axis=1)
        one = np.ones((x.size, 1))
        A = np.vstack([np.hstack([B, -one]), np.hstack([-B, -one])])
        res = optimize.linprog([0, 0, 0, 1], A_ub=A, b_ub=np.concatenate([f, -f]),
                               bounds=[(None, None)] * 4, method="highs")
        best = min(best, float(res.fun))
    return best


@pytest.mark.parametrize("name,continuous", [
    ("silu", True), ("silu", False), ("sigmoid", True),
    ("tanh", True), ("tanh", False),
])
def test_one_segment_is_the_best_line(name, continuous):
    lo, hi = functions.get(name).default_range
    x = np.linspace(lo, hi, 8001)
    want = best_line_error(x, functions.get(name).f(x))
    t = actiba.fit(name, segments=1, continuous=continuous)
    assert t.segments == 1 and t.breakpoints.size == 0
    err, _ = dense_error(t, name, lo, hi)
    assert want * (1 - 1e-6) <= err <= want * 1.001, (err, want)


def test_two_segments_continuous_vs_brute_force():
    lo, hi = -8.0, 8.0
    x = np.linspace(lo, hi, 1601)
    f = functions.get("silu").f(x)
    coarse = np.linspace(-3, 3, 31)
    errs = [best_two_segment_continuous(x, f, [p]) for p in coarse]
    k0 = coarse[int(np.argmin(errs))]
    want = best_two_segment_continuous(x, f, np.linspace(k0 - 0.2, k0 + 0.2, 41))
    t = fitted("silu", 2, True)
    err, _ = dense_error(t, "silu", lo, hi)
    assert t.segments == 2
    assert err >= want * (1 - 1e-3)  # the brute force is itself sampled
    assert err <= want * 1.01


def test_two_segments_discontinuous_vs_reference():
    t = fitted("gelu", 2, False)
    err, _ = dense_error(t, "gelu", -8, 8)
    lo_opt, hi_opt = disc_optimum("gelu", 2)
    assert lo_opt * (1 - SAMPLING_SLACK) <= err <= 1.01 * hi_opt


# --------------------------------------------------------------------------------------------------
# discontinuity, tails
# --------------------------------------------------------------------------------------------------
def test_discontinuous_tables_may_jump_and_round_trip():
    t = fitted("tanh", 8, False)
    assert t.continuous is False
    assert t.max_jump() > 1e-6  # it uses its freedom
    back = actiba.Table.from_json(t.to_json())
    assert back.continuous is False
    np.testing.assert_array_equal(back.jumps(), t.jumps())


ASYM = {"silu": ((0.0, 0.0), (1.0, 0.0)), "gelu": ((0.0, 0.0), (1.0, 0.0)),
        "softplus": ((0.0, 0.0), (1.0, 0.0)), "tanh": ((0.0, -1.0), (0.0, 1.0)),
        "sigmoid": ((0.0, 0.0), (0.0, 1.0))}


@pytest.mark.parametrize("name", list(ASYM))
def test_asymptote_tails_are_the_lines_and_bound_holds_on_real_line(name):
    lo, hi = functions.get(name).default_range
    t = actiba.fit(name, segments=8, tails="asymptote", range=(lo, hi))
    left, right = ASYM[name]
    assert (t.slopes[0], t.intercepts[0]) == left  # exactly, not approximately
    assert (t.slopes[-1], t.intercepts[-1]) == right
    assert t.error["over"] == "real-line"
    bound = t.error["max_abs"]
    f = functions.get(name).f
    far = np.logspace(-3, 6, 4001)
    xs = np.concatenate([-far, far, np.linspace(lo, hi, 200_001), t.breakpoints,
                         np.nextafter(t.breakpoints, -np.inf)])
    err = np.abs(t(xs) - f(xs))
    assert np.max(err) <= bound * (1 + 1e-9), (np.max(err), bound)
    # the domain part of the bound agrees with an independent dense measurement
    derr, _ = dense_error(t, name, lo, hi)
    assert t.error["domain_max_abs"] == pytest.approx(derr, rel=1e-3)
    # at ±inf the table gives the asymptote's limit, which is f's limit
    y = t(np.array([-np.inf, np.inf]))
    lim = {"tanh": [-1.0, 1.0], "sigmoid": [0.0, 1.0]}.get(name, [0.0, np.inf])
    assert y.tolist() == lim


def test_asymptote_default_range_may_widen_and_says_so():
    t = actiba.fit("silu", segments=12, tails="asymptote")
    lo, hi = t.domain
    assert lo <= -8.0 and hi >= 8.0
    if (lo, hi) != (-8.0, 8.0):
        assert "widened" in t.report.message
    xs = np.concatenate([-np.logspace(-2, 6, 2001), np.logspace(-2, 6, 2001)])
    assert np.max(np.abs(t(xs) - functions.get("silu").f(xs))) <= t.error["max_abs"] * (1 + 1e-9)


def test_asymptote_needs_an_asymptote_and_three_segments():
    with pytest.raises(InputError):
        actiba.fit("expr:x*x", segments=8, tails="asymptote")
    with pytest.raises(InputError):
        actiba.fit("silu", segments=2, tails="asymptote")


def test_exp_asymptote_tail_is_half_line():
    t = actiba.fit("exp", segments=6, tails="asymptote")
    assert (t.slopes[0], t.intercepts[0]) == (0.0, 0.0)
    assert t.error["over"] == "domain" and t.error["half_line"]["side"] == "left"
    lo, hi = t.domain
    xs = np.concatenate([-np.logspace(-3, 6, 2001), np.linspace(lo, hi, 100_001)])
    xs = xs[xs <= hi]
    assert np.max(np.abs(t(xs) - np.exp(xs))) <= t.error["half_line"]["max_abs"] * (1 + 1e-9)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "silu"])
def test_clamp_tails_have_zero_outer_slopes(name):
    lo, hi = functions.get(name).default_range
    t = actiba.fit(name, segments=8, tails="clamp", range=(lo, hi))
    assert t.slopes[0] == 0.0 and t.slopes[-1] == 0.0
    assert t(np.array([-1e300]))[0] == t.intercepts[0] and t(np.array([1e300]))[0] == t.intercepts[-1]
    err, _ = dense_error(t, name, lo, hi)
    assert t.error["max_abs"] == pytest.approx(err, rel=1e-3)
    free = fitted(name, 8, True) if name != "sigmoid" else actiba.fit(name, segments=8)
    assert err >= free.error["max_abs"] * (1 - 1e-3)  # a constraint cannot help


# --------------------------------------------------------------------------------------------------
# budget mode
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,eps,continuous", [("silu", 1e-3, True), ("gelu", 5e-4, False),
                                                 ("tanh", 4e-3, True)])
def test_max_error_mode_gives_fewest_segments(name, eps, continuous):
    lo, hi = functions.get(name).default_range
    t = actiba.fit(name, max_error=eps, continuous=continuous)
    n = t.segments
    err, _ = dense_error(t, name, lo, hi)
    assert err <= eps * (1 + 1e-6)
    fewer = actiba.fit(name, segments=n - 1, continuous=continuous)
    ferr, _ = dense_error(fewer, name, lo, hi)
    assert ferr > eps
    # no table of any kind can do it with fewer than the (sampled, hence optimistic) discontinuous count
    assert n >= DiscRef(name, lo, hi).count(eps, 4096)
    if not continuous:  # and a discontinuous fit needs no more than the continuum greedy count
        assert n <= ContRef(name, lo, hi).count(eps, 4096)


def test_max_error_mode_rejects_bad_eps():
    for eps in (0.0, -1e-3, math.nan, math.inf):
        with pytest.raises(InputError):
            actiba.fit("silu", max_error=eps)
    with pytest.raises(InputError):
        actiba.fit("silu", segments=4, max_error=1e-3)
    with pytest.raises(InputError):
        actiba.fit("silu")


def test_unreachable_budget_names_best_achievable(monkeypatch):
    """With the segment cap lowered to 6 (to keep this fast), an unreachable eps reports the best error
    the cap allows, which cannot be below the 6-segment discontinuous optimum."""
    import actiba.fitting as fitting

    monkeypatch.setattr(fitting, "MAX_SEGMENTS", 6)
    with pytest.raises(InputError) as ei:
        actiba.fit("tanh", max_error=1e-4)
    msg = str(ei.value)
    assert "not reachable" in msg and "best achievable" in msg
    best = float(msg.rsplit("best achievable is", 1)[1].strip().rstrip("."))
    assert "continuous tables" in msg  # the figure quoted is the continuous one for a continuous request
    lo_opt, hi_opt = disc_optimum("tanh", 6)
    assert lo_opt * (1 - 1e-3) <= best <= 1.1 * hi_opt


# --------------------------------------------------------------------------------------------------
# other metrics
# --------------------------------------------------------------------------------------------------
def best_relative_line(x: np.ndarray, f: np.ndarray) -> float:
    """min over (m, c) of max |m x + c - f| / |f| as an LP."""
    w = 1 / np.abs(f)
    one = np.ones((x.size, 1))
    B = np.hstack([(x * w)[:, None], w[:, None]])
    A = np.vstack([np.hstack([B, -one]), np.hstack([-B, -one])])
    res = optimize.linprog([0, 0, 1], A_ub=A, b_ub=np.concatenate([f * w, -f * w]),
                           bounds=[(None, None)] * 3, method="highs")
    return float(res.fun)


def test_max_rel_on_exp_reaches_the_shift_invariant_optimum():
    """exp(x + a) = e^a exp(x): relative error is shift-invariant, so on [-16, 0] with 8 segments the
    discontinuous optimum is 8 equal segments of width 2, each as good as the best relative line for
    e^x on [0, 2]."""
    x = np.linspace(0.0, 2.0, 8001)
    r_star = best_relative_line(x, np.exp(x))
    xs = np.linspace(-16.0, 0.0, 400_001)
    for continuous in (False, True):
        t = actiba.fit("exp", segments=8, metric="max-rel", continuous=continuous)
        rel = float(np.max(np.abs(t(xs) - np.exp(xs)) / np.exp(xs)))
        assert t.error["max_rel"] == pytest.approx(rel, rel=1e-3)
        assert rel >= r_star * (1 - 1e-4)
        assert rel <= r_star * (1.01 if not continuous else 1.05), (continuous, rel, r_star)


def test_max_rel_sigmoid_beats_max_abs_fit_in_relative_error():
    rng = (-8.0, 8.0)
    xs = np.linspace(*rng, 200_001)
    f = functions.get("sigmoid").f(xs)
    rel_fit = actiba.fit("sigmoid", segments=8, metric="max-rel", range=rng)
    abs_fit = actiba.fit("sigmoid", segments=8, range=rng)
    rel_of = {k: float(np.max(np.abs(t(xs) - f) / f)) for k, t in (("rel", rel_fit), ("abs", abs_fit))}
    assert rel_fit.error["max_rel"] == pytest.approx(rel_of["rel"], rel=1e-3)
    # sigmoid's left tail is tiny, so an absolute fit is poor there in relative terms; the max-rel fit
    # must do much better than that, not just marginally
    assert rel_of["rel"] < 0.5 * rel_of["abs"]


def test_max_rel_rejects_functions_with_zeros():
    with pytest.raises(InputError):
        actiba.fit("silu", segments=8, metric="max-rel")


def test_rms_metric_gives_lower_rms_than_max_abs_fit():
    rms_fit = actiba.fit("silu", segments=16, metric="rms")
    abs_fit = fitted("silu", 16, True)
    u = np.linspace(-8, 8, 200_001)
    f = functions.get("silu").f(u)
    rms = {k: float(np.sqrt(np.mean((t(u) - f) ** 2))) for k, t in (("rms", rms_fit), ("abs", abs_fit))}
    assert rms_fit.error["rms"] == pytest.approx(rms["rms"], rel=1e-3)
    assert rms["rms"] <= rms["abs"]
    err_rms_fit, _ = dense_error(rms_fit, "silu", -8, 8)
    err_abs_fit, _ = dense_error(abs_fit, "silu", -8, 8)
    assert err_abs_fit <= err_rms_fit  # and vice versa for max-abs


# --------------------------------------------------------------------------------------------------
# rounded precisions, provenance, beta
# --------------------------------------------------------------------------------------------------
def rounded_error(t, name: str, lo: float, hi: float, dtype) -> float:
    """Table numbers and inputs stored in dtype, evaluated in dtype by the normative rule."""
    f = functions.get(name).f
    bp, sl, ic = (a.astype(dtype) for a in (t.breakpoints, t.slopes, t.intercepts))
    xs = np.unique(np.linspace(lo, hi, 200_001).astype(dtype))
    with np.errstate(all="ignore"):
        i = np.searchsorted(bp, xs, side="right")
        y = (sl[i] * xs + ic[i]).astype(np.float64)
    return float(np.max(np.abs(y - f(xs.astype(np.float64)))))


@pytest.mark.parametrize("name,n", [("silu", 16), ("gelu", 8)])
def test_float32_float16_errors_reported(name, n):
    t = fitted(name, n, True)
    lo, hi = functions.get(name).default_range
    e64 = t.error["max_abs"]
    e32, e16 = t.error["float32_max_abs"], t.error["float16_max_abs"]
    assert e32 == pytest.approx(rounded_error(t, name, lo, hi, np.float32), rel=2e-2)
    assert e16 == pytest.approx(rounded_error(t, name, lo, hi, np.float16), rel=2e-2)
    assert e32 >= 0.99 * e64 and e16 >= 0.9 * e64
    assert e32 <= e64 + 1e-5  # float32 rounding adds little at this error level


def test_provenance_and_identity():
    t = actiba.fit("silu", segments=4, beta=2.0)
    assert t.function == "silu" and t.params == {"beta": 2.0}
    assert t.domain == (-4.0, 4.0)
    opts = t.provenance["options"]
    assert opts["segments"] == 4 and opts["tails"] == "free" and opts["metric"] == "max-abs"
    assert t.provenance["actiba"] == actiba.__version__
    err, _ = dense_error(t, "silu", -4.0, 4.0, beta=2.0)
    assert t.error["max_abs"] == pytest.approx(err, rel=1e-3)
    s = t.report.summary(t.function)
    assert "4 continuous segments" in s and "\n" not in s


def test_expression_fit_matches_builtin():
    a = actiba.fit("expr:x / (1 + exp(-x))", segments=8)
    b = fitted("silu", 8, True)
    assert a.function == "expr:x / (1 + exp(-x))"
    assert a.error["max_abs"] == pytest.approx(b.error["max_abs"], rel=1e-2)


@pytest.mark.parametrize("kwargs", [
    {"segments": 0}, {"segments": 4097}, {"segments": 4, "range": (1.0, 1.0)},
    {"segments": 4, "range": (2.0, -2.0)}, {"segments": 4, "range": (math.nan, 1.0)},
    {"segments": 4, "range": (0.0, math.inf)}, {"segments": 4, "tails": "wobbly"},
    {"segments": 4, "metric": "l1"}, {"segments": 4, "beta": -1.0},
])
def test_bad_requests_are_input_errors(kwargs):
    with pytest.raises(InputError):
        actiba.fit("silu", **kwargs)


def test_non_finite_expression_on_range_is_input_error():
    with pytest.raises(InputError):
        actiba.fit("expr:log(x)", segments=4, range=(-1.0, 1.0))
    with pytest.raises(InputError):
        actiba.fit("expr:1/x", segments=4, range=(-1.0, 1.0))


@pytest.mark.parametrize("func,rng", [("softplus", (-12.0, -0.3)), ("silu", (5.0, 12.0))])
def test_asymptote_tails_on_a_one_sided_range_do_not_crash(func, rng):
    """A range where one pinned tail covers every sample used to index past the samples.

    The answer is poor by nature (the other asymptote is pinned at the range's end), but it must be a
    valid table whose stated error matches an independent evaluation."""
    t = actiba.fit(func, 8, range=rng, tails="asymptote")
    x = np.linspace(*rng, 20001)
    f = actiba.functions.get(func)(x)
    assert t.segments == 8
    assert np.max(np.abs(t(x) - f)) <= t.error["max_abs"] * (1 + 1e-6) + 1e-12
