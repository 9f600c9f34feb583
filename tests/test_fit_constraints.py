"""Constraints kept by the optimizer and re-verified here on the finished tables, independently."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

import actiba
from actiba import functions
from actiba.cli import main as cli_main
from actiba.errors import InputError


def dense(t, name, lo, hi):
    xs = np.unique(np.concatenate([np.linspace(lo, hi, 100_001), t.breakpoints]))
    return float(np.max(np.abs(t(xs) - functions.get(name).f(xs))))


def lp_values_for_knots(name, lo, hi, inner):
    """Best continuous max-abs values for fixed knots on a sample grid (independent LP)."""
    knots = np.concatenate(([lo], inner, [hi]))
    x = np.unique(np.concatenate([np.linspace(lo, hi, 3001), knots]))
    f = functions.get(name).f(x)
    B = np.stack([np.interp(x, knots, np.eye(knots.size)[j]) for j in range(knots.size)], axis=1)
    one = np.ones((x.size, 1))
    A = np.vstack([np.hstack([B, -one]), np.hstack([-B, -one])])
    c = np.zeros(knots.size + 1)
    c[-1] = 1
    return float(optimize.linprog(c, A_ub=A, b_ub=np.concatenate([f, -f]),
                                  bounds=[(None, None)] * (knots.size + 1), method="highs").fun)


def test_slope_bounds_are_kept_and_cost_error():
    free = actiba.fit("silu", 8)
    t = actiba.fit("silu", 8, slope_min=-0.05, slope_max=1.05)
    assert t.slopes.min() >= -0.05 and t.slopes.max() <= 1.05
    assert t.error["constraints"]["violation"] == {"slope_min": 0.0, "slope_max": 0.0}
    assert dense(t, "silu", -8, 8) >= dense(free, "silu", -8, 8) * (1 - 1e-6)
    assert t.max_jump() <= 1e-9  # still continuous


def test_monotone_on_a_monotone_function():
    t = actiba.fit("tanh", 6, monotone=True)
    xs = np.linspace(-50, 50, 20001)
    assert np.all(np.diff(t(xs)) >= -1e-12) and np.all(t.slopes >= 0)
    with pytest.raises(InputError):
        actiba.fit("silu", 6, monotone=True)  # silu dips: not monotone on [-8, 8]


def test_min_width():
    t = actiba.fit("gelu", 8, min_width=1.5)
    widths = np.diff(np.concatenate(([-8.0], t.breakpoints, [8.0])))
    assert widths.min() >= 1.5 * (1 - 1e-9)


@pytest.mark.parametrize("step", [1.0, 0.25])
def test_breakpoint_grid_beats_rounding_the_free_knots(step):
    free = actiba.fit("silu", 8)
    t = actiba.fit("silu", 8, breakpoint_grid=step)
    q = t.breakpoints / step
    assert np.all(q == np.round(q)) and np.all(np.diff(t.breakpoints) > 0)
    rounded = np.round(free.breakpoints / step) * step
    baseline = lp_values_for_knots("silu", -8.0, 8.0, rounded)
    assert dense(t, "silu", -8, 8) <= baseline * 1.002  # optimized on the grid, not just rounded
    assert dense(t, "silu", -8, 8) >= free.error["lower_bound"]


@pytest.mark.parametrize("kwargs", [
    {"slope_min": 1.0, "slope_max": 0.0}, {"min_width": 3.0}, {"breakpoint_grid": 8.0},
    {"slope_min": 0.1, "metric": "rms"}, {"slope_min": float("nan")},
])
def test_bad_constraints_are_input_errors(kwargs):
    with pytest.raises(InputError):
        actiba.fit("silu", 8, **kwargs)


def test_cli_grid_in_powers_of_two(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert cli_main(["fit", "tanh", "--segments", "4", "--breakpoint-grid", "2^-3", "-o", str(out)]) == 0
    t = actiba.load(out)
    assert np.all((t.breakpoints * 8) == np.round(t.breakpoints * 8))
    assert "Constraints" in capsys.readouterr().err
