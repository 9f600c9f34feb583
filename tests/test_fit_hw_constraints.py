"""Hardware constraints (slope/intercept grids, power-of-two slopes, uniform spacing, monotone auto):
each checked on the re-read JSON with exact rational arithmetic, the error re-measured on a dense grid,
and the lattice search compared with brute force on tiny cases."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import optimize

import actiba
from actiba import functions
from actiba.cli import main as cli_main
from actiba.errors import InputError


def reread(t: actiba.Table) -> dict:
    return json.loads(t.to_json())


def dense_error(d: dict, name: str, lo: float, hi: float) -> float:
    """Max-abs error by our own transcription of the evaluation rule (not actiba.evaluate)."""
    bp, sl, ic = (np.asarray(d[k], dtype=np.float64) for k in ("breakpoints", "slopes", "intercepts"))
    xs = np.unique(np.concatenate([np.linspace(lo, hi, 200_001), bp, np.nextafter(bp, -np.inf)]))
    i = np.searchsorted(bp, xs, side="right")
    return float(np.max(np.abs(sl[i] * xs + ic[i] - functions.get(name).f(xs))))


def multiple_of(v: float, q: float) -> bool:
    return (Fraction(v) / Fraction(q)).denominator == 1


def power_of_two(v: float, emin: int, emax: int) -> bool:
    if v == 0:
        return True
    f = abs(Fraction(v))
    num, den = f.numerator, f.denominator
    if num & (num - 1) or den & (den - 1):
        return False
    e = num.bit_length() - den.bit_length()
    return emin <= e <= emax


@pytest.mark.parametrize("continuous", [True, False])
def test_slope_and_intercept_grids_hold_exactly(continuous):
    qs, qc = 2.0 ** -5, 2.0 ** -7
    free = actiba.fit("silu", 8, continuous=continuous)
    t = actiba.fit("silu", 8, continuous=continuous, slope_grid=qs, intercept_grid=qc)
    d = reread(t)
    assert all(multiple_of(s, qs) for s in d["slopes"]) and all(multiple_of(c, qc) for c in d["intercepts"])
    err = dense_error(d, "silu", -8, 8)
    assert err == pytest.approx(d["error"]["max_abs"], rel=2e-3)
    assert err >= free.error["lower_bound"] * (1 - 1e-9)  # the unconstrained bound bounds it too
    if continuous:  # breakpoints where consecutive grid lines cross: continuous to rounding
        bp, sl, ic = (np.asarray(d[k]) for k in ("breakpoints", "slopes", "intercepts"))
        assert np.max(np.abs(sl[:-1] * bp + ic[:-1] - (sl[1:] * bp + ic[1:]))) <= 1e-12
    assert d["error"]["constraints"]["violation"] == {"slope_grid": 0.0, "intercept_grid": 0.0}


def test_pow2_slopes_hold_exactly_and_the_bound_is_for_the_constrained_problem():
    t = actiba.fit("silu", 8, continuous=False, pow2_slopes=(-6, 1))
    d = reread(t)
    assert all(power_of_two(s, -6, 1) for s in d["slopes"])
    err = dense_error(d, "silu", -8, 8)
    lb = d["error"]["lower_bound"]
    assert "under the slope/intercept constraints" in d["error"]["lower_bound_method"]
    assert lb <= err <= lb * 1.02  # exact on the samples; between samples lines drift by |s − f'|·h
    free = actiba.fit("silu", 8, continuous=False)
    assert lb >= free.error["lower_bound"]  # constraints can only cost


def _brute_discontinuous_two(name, lo, hi, slopes, intercepts, m=1201):
    """Best 2-segment discontinuous table with lines from the full lattice, breakpoint between samples."""
    x = np.linspace(lo, hi, m)
    f = functions.get(name).f(x)
    S, C = np.meshgrid(slopes, intercepts, indexing="ij")
    E = np.abs(S.ravel()[:, None] * x[None, :] + C.ravel()[:, None] - f[None, :])
    pre = np.maximum.accumulate(E, axis=1).min(axis=0)  # best left line on samples 0..t
    suf = np.maximum.accumulate(E[:, ::-1], axis=1)[:, ::-1].min(axis=0)  # best right line on t..m-1
    return float(np.min(np.maximum(pre[:-1], suf[1:])))


def _brute_continuous_two(name, lo, hi, slopes, intercepts, m=1201):
    """Best continuous 2-segment table of lattice lines (they must cross inside the range)."""
    x = np.linspace(lo, hi, m)
    f = functions.get(name).f(x)
    S, C = (a.ravel() for a in np.meshgrid(slopes, intercepts, indexing="ij"))
    E = np.abs(S[:, None] * x[None, :] + C[:, None] - f[None, :])
    pre = np.maximum.accumulate(E, axis=1)
    suf = np.maximum.accumulate(E[:, ::-1], axis=1)[:, ::-1]
    best = np.inf
    for i in range(S.size):
        with np.errstate(all="ignore"):
            b = (C - C[i]) / (S[i] - S)
        ok = np.isfinite(b) & (b > lo) & (b < hi)
        t = np.searchsorted(x, b[ok])
        t = np.clip(t, 1, m - 1)
        cost = np.maximum(pre[i, t - 1], suf[np.nonzero(ok)[0], t])
        if cost.size:
            best = min(best, float(cost.min()))
    return best


@pytest.mark.parametrize("continuous", [False, True])
def test_lattice_search_finds_the_brute_force_best_on_a_tiny_case(continuous):
    qs, qc = 2.0 ** -2, 2.0 ** -3
    slopes = np.arange(-4, 9) * qs  # every grid slope in [-1, 2] (tanh' is in (0, 1])
    intercepts = np.arange(-12, 13) * qc
    brute = (_brute_continuous_two if continuous else _brute_discontinuous_two)("tanh", -3.0, 3.0, slopes,
                                                                                 intercepts)
    t = actiba.fit("tanh", 2, range=(-3, 3), continuous=continuous, slope_grid=qs, intercept_grid=qc)
    got = dense_error(reread(t), "tanh", -3, 3)
    assert got >= brute * (1 - 1e-9)  # brute force is optimal on its samples, which the dense grid covers
    assert got <= brute * 1.01


def test_uniform_breakpoints_exact_and_values_optimal():
    n, lo, hi = 8, -8.0, 8.0
    t = actiba.fit("gelu", n, uniform=True)
    d = reread(t)
    want = [lo + (hi - lo) * i / n for i in range(1, n)]
    assert [Fraction(b) for b in d["breakpoints"]] == [Fraction(w) for w in want]
    # independent: best continuous values for those knots, an LP over the knot values on 4001 points
    knots = np.array([lo, *want, hi])
    x = np.linspace(lo, hi, 4001)
    f = functions.get("gelu").f(x)
    B = np.stack([np.interp(x, knots, np.eye(n + 1)[j]) for j in range(n + 1)], axis=1)
    A = np.vstack([np.hstack([B, -np.ones((x.size, 1))]), np.hstack([-B, -np.ones((x.size, 1))])])
    c = np.zeros(n + 2)
    c[-1] = 1.0
    lp = optimize.linprog(c, A_ub=A, b_ub=np.concatenate([f, -f]), bounds=[(None, None)] * (n + 2), method="highs")
    err = dense_error(d, "gelu", lo, hi)
    assert lp.fun * (1 - 1e-6) <= err <= lp.fun * 1.002
    rms = actiba.fit("gelu", n, uniform=True, metric="rms")
    assert rms.breakpoints.tolist() == want


@pytest.mark.parametrize("name,n", [("silu", 8), ("gelu", 12)])
def test_monotone_auto_follows_f_on_every_segment(name, n):
    t = actiba.fit(name, n, monotone="auto")
    d = reread(t)
    act = functions.get(name)
    knots = np.concatenate(([-8.0], d["breakpoints"], [8.0]))
    signed = 0
    for k, s in enumerate(d["slopes"]):
        dfk = act.df(np.linspace(knots[k], knots[k + 1], 2001))
        if np.all(dfk >= 0):
            assert s >= 0
            signed += 1
        elif np.all(dfk <= 0):
            assert s <= 0
            signed += 1
    assert signed >= n - 2  # only the segments across f's turning point (one for these) are free
    assert dense_error(d, name, -8, 8) >= actiba.fit(name, n).error["lower_bound"] * (1 - 1e-9)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(2, 8), name=st.sampled_from(["silu", "tanh", "sigmoid"]), continuous=st.booleans())
def test_slope_grid_property(k, name, continuous):
    q = 2.0 ** -k
    t = actiba.fit(name, 4, slope_grid=q, continuous=continuous)
    d = reread(t)
    lo, hi = d["domain"]
    assert all(multiple_of(s, q) for s in d["slopes"])
    assert dense_error(d, name, lo, hi) == pytest.approx(d["error"]["max_abs"], rel=2e-3)


@pytest.mark.parametrize("args", [
    ["--uniform", "--slope-grid", "2^-4"],  # continuous grid lines decide their own breakpoints
    ["--pow2-slopes", "3", "1"],
    ["--slope-grid", "2^-4", "--min-width", "1"],
    ["--slope-grid", "2^-4", "--pow2-slopes", "-4", "0"],
    ["--monotone", "auto", "--metric", "rms"],
    ["--uniform", "--breakpoint-grid", "3"],
    ["--intercept-grid", "0.3", "--tails", "asymptote", "--range", "-8", "8", "--slope-grid", "0.7"],
    ["--pow2-slopes", "-4", "0", "--slope-min", "2"],
])
def test_impossible_requests_are_one_line_exit_2(args, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert cli_main(["fit", "silu", "--segments", "8", *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert not out.exists()


def test_cli_flags_reach_the_table(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert cli_main(["fit", "sigmoid", "--segments", "6", "--discontinuous", "--slope-grid", "2^-6",
                     "--intercept-grid", "2^-10", "--monotone", "-o", str(out)]) == 0
    d = json.loads(out.read_text())
    assert all(multiple_of(s, 2 ** -6) and s >= 0 for s in d["slopes"])
    assert all(multiple_of(c, 2 ** -10) for c in d["intercepts"])
    assert d["error"]["constraints"]["requested"]["slope_grid"] == 2 ** -6
    assert "met (re-verified)" in capsys.readouterr().err
    with pytest.raises(InputError):
        actiba.fit("silu", 4, pow2_slopes=(1.5, 2))


def test_free_fit_needs_no_scipy():
    """The common request imports only numpy (scipy.optimize alone costs ~0.3 s of a 0.6 s command)."""
    code = "import sys, actiba; t = actiba.fit('silu', 16); print('scipy' in sys.modules, t.segments)"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.split() == ["False", "16"]


def test_fewer_needed_segments_are_padded_to_the_count_asked():
    t = actiba.fit("tanh", 16)  # the 16th segment buys nothing over 15 (the inflection segment limits)
    assert t.segments == 16
    assert t.error["max_abs"] <= actiba.fit("tanh", 15).error["max_abs"] * (1 + 1e-3)


def test_uniform_with_monotone_auto_when_a_knot_sits_on_the_turning_point():
    t = actiba.fit("expr:x*x", 4, range=(-2, 2), uniform=True, monotone="auto")  # knot at x = 0 exactly
    d = reread(t)
    assert d["breakpoints"] == [-1.0, 0.0, 1.0]
    assert d["slopes"][0] <= 0 and d["slopes"][1] <= 0 and d["slopes"][2] >= 0 and d["slopes"][3] >= 0
    silu = actiba.fit("silu", 8, uniform=True, monotone="auto")
    assert silu.slopes[0] <= 0 and silu.slopes[1] <= 0  # silu falls on [-8, -4]: stated as <= 0 exactly


def test_continuous_pow2_slopes_are_exact_and_continuous():
    t = actiba.fit("tanh", 6, pow2_slopes=(-3, 0))
    d = reread(t)
    assert all(power_of_two(s, -3, 0) for s in d["slopes"])
    bp, sl, ic = (np.asarray(d[k]) for k in ("breakpoints", "slopes", "intercepts"))
    assert np.max(np.abs(sl[:-1] * bp + ic[:-1] - (sl[1:] * bp + ic[1:]))) <= 1e-12
    err = dense_error(d, "tanh", -6, 6)
    assert err == pytest.approx(d["error"]["max_abs"], rel=2e-3)
    assert err >= actiba.fit("tanh", 6).error["lower_bound"] * (1 - 1e-9)
    # no worse than the float fit's slopes snapped to the nearest allowed power with its knots kept
    free = actiba.fit("tanh", 6)
    pool = np.array([0.0] + [2.0 ** e for e in range(-3, 1)])
    snapped = pool[np.argmin(np.abs(pool[None, :] - free.slopes[:, None]), axis=1)]
    knots = np.concatenate(([-6.0], free.breakpoints, [6.0]))
    y0 = free(np.array([knots[0]]))[0]
    values = y0 + np.concatenate(([0.0], np.cumsum(snapped * np.diff(knots))))
    xs = np.linspace(-6, 6, 20001)
    naive = float(np.max(np.abs(np.interp(xs, knots, values) - np.tanh(xs))))
    assert err <= naive
