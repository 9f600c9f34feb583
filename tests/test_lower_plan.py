"""Lowering plans (pure numpy): feasibility, overrides, the automatic choice, and the numpy model of
every plan against the canonical evaluator (relu/clip/max modelled as dropping NaN, the worst case)."""

from __future__ import annotations

import numpy as np
import pytest
from _grids import assert_matches, grid, random_tables, tables
from hypothesis import HealthCheck, given, settings

from actiba.errors import InputError
from actiba.lower.plan import LOWERINGS, choose, feasible, make_plan, resolve, run
from actiba.table import Table

TABLES = tables()


@pytest.mark.parametrize("name", list(TABLES))
@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_every_feasible_plan_matches_reference(name: str, dtype: str) -> None:
    t = TABLES[name]
    x = grid(t, dtype)
    for low in feasible(t):
        assert_matches(run(make_plan(t, low, dtype=dtype), x, dtype), x, t, dtype, low)


def test_feasibility_follows_shape() -> None:
    assert feasible(TABLES["silu"]) == ("relu-sum", "select", "where")
    assert "minmax" in feasible(TABLES["convex"]) and "minmax" in feasible(TABLES["concave"])
    assert feasible(TABLES["discontinuous"]) == ("select", "where")


@pytest.mark.parametrize("name,lowering", [("silu", "minmax"), ("discontinuous", "relu-sum"),
                                           ("discontinuous", "minmax"), ("silu", "lut")])
def test_infeasible_or_unknown_override_is_input_error(name: str, lowering: str) -> None:
    with pytest.raises(InputError):
        make_plan(TABLES[name], lowering)


def test_auto_is_feasible_for_every_size() -> None:
    for t in TABLES.values():
        for n in (None, 1 << 10, 1 << 16, 1 << 20, 1 << 24):
            assert choose(t, n) in feasible(t)
            assert resolve(t, "auto", n) == choose(t, n)
    assert set(LOWERINGS) == {"relu-sum", "select", "where", "minmax"}


def test_flat_tails_never_multiply_infinity() -> None:
    # 0·inf would give NaN at ±inf; flat segments must be constants in every plan
    t = TABLES["clamped"]
    for low in feasible(t):
        y = run(make_plan(t, low, dtype="float32"), np.array([-np.inf, np.inf, np.nan]), "float32")
        assert np.allclose(y[:2], t.intercepts[[0, -1]], rtol=1e-6, atol=0)
        assert np.isnan(y[2])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables())
def test_random_tables_all_plans(t) -> None:
    for dtype in ("float32", "float16"):
        x = grid(t, dtype, n_random=400)
        for low in feasible(t):
            assert_matches(run(make_plan(t, low, dtype=dtype), x, dtype), x, t, dtype, low)


def test_float16_outer_line_does_not_overflow_near_the_limit() -> None:
    """x − t overflows in float16 at x = 65504 with t = −16; the table's value (32760) does not.
    Found by hypothesis; every lowering must give the finite value."""
    t = Table([-16.0], [0.0, 0.5], [0.0, 8.0])
    x = np.array([65504.0, -65504.0, -16.0, 0.0], dtype=np.float16)
    for low in feasible(t):
        y = run(make_plan(t, low, dtype="float16"), x, "float16")
        np.testing.assert_allclose(y.astype(np.float64), [32760.0, 0.0, 0.0, 8.0], rtol=1e-3)
