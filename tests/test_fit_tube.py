"""Continuous free-tail tables from the curvature-equidistributed tube (`fitting/tubefit.py`): their
certificate against tables made another way, their error re-measured, and the degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest

import actiba
from actiba import functions


def measured(t: actiba.Table, f, lo: float, hi: float) -> float:
    xs = np.unique(np.concatenate([np.linspace(lo, hi, 300_001), t.breakpoints]))
    i = np.searchsorted(t.breakpoints, xs, side="right")
    return float(np.max(np.abs(t.slopes[i] * xs + t.intercepts[i] - f(xs))))


@pytest.mark.parametrize("name,n", [("silu", 16), ("gelu", 8), ("exp", 12), ("tanh", 10)])
def test_tube_table_and_bound_against_the_lp_refiner(name, n):
    act = functions.get(name)
    lo, hi = act.default_range
    t = actiba.fit(name, n)
    assert t.error["lower_bound_method"].startswith("minimum-link")
    err = measured(t, act.f, lo, hi)
    lb = t.error["lower_bound"]
    assert lb <= err <= lb * 1.001  # certified within 0.1 %
    # an independent continuous table: the SLP refiner (a vacuous slope bound routes the request there)
    lp = actiba.fit(name, n, slope_min=-1e6)
    assert measured(lp, act.f, lo, hi) >= lb * (1 - 1e-9)  # the bound holds for it too
    assert err <= measured(lp, act.f, lo, hi) * 1.002  # and the tube table is as good


def test_a_linear_function_is_exact_with_bound_zero():
    t = actiba.fit("expr:2*x+1", 4, range=(-3, 5))
    assert t.segments == 4 and t.error["max_abs"] <= 1e-12 and t.error["lower_bound"] == 0.0


def test_counts_the_function_does_not_need_keep_the_error():
    t1, t2 = actiba.fit("silu", 1), actiba.fit("silu", 2)
    assert t1.segments == 1 and t2.segments == 2
    assert t2.error["max_abs"] < t1.error["max_abs"]
