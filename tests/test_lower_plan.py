"""Lowering plans (pure numpy): feasibility, overrides, the automatic choice, the numpy model of
every plan against the canonical evaluator (relu/clip/max modelled as dropping NaN), and NaN / ±inf
by construction: the static proof `nan_carried`, and every plan under every CPU NaN model (including
comparisons with NaN returning true, as AVX-512 kernels may), which fails if the guard is removed."""

from __future__ import annotations

import numpy as np
import pytest
from _grids import assert_matches, grid, random_tables, tables
from hypothesis import HealthCheck, given, settings

from actiba.errors import InputError
from actiba.lower.plan import (
    LOWERINGS,
    NAN_MODELS,
    Op,
    Plan,
    choose,
    feasible,
    infinities_needing_guard,
    make_plan,
    nan_carried,
    resolve,
    run,
)
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


# -- NaN and ±inf by construction: proven on the op list, checked under every CPU's NaN model --------
def _all_plans():
    for name, t in TABLES.items():
        for dtype in ("float64", "float32", "float16"):
            for low in feasible(t):
                yield name, t, dtype, low, make_plan(t, low, dtype=dtype)


def _strip_guard(ops):
    """`ops` without a final where(isnan(x), x, .), if it has one."""
    last = ops[-1]
    if last.kind == "where" and last.args[1] == 0 and ops[last.args[0] - 1] == Op("isnan", (0,)):
        return ops[: last.args[0] - 1] + ops[last.args[0]:-1]
    return ops


@pytest.mark.parametrize("nan_model", NAN_MODELS)
def test_nan_and_inf_under_every_cpu_nan_model(nan_model: str) -> None:
    x = np.array([np.nan, -np.inf, np.inf])
    for name, t, dtype, low, plan in _all_plans():
        assert nan_carried(plan.ops), (name, dtype, low)
        y = run(plan, x, dtype, nan_model)
        assert np.isnan(y[0]), (name, dtype, low, nan_model, y)
        assert_matches(y[1:], x[1:], t, dtype, low)


def test_no_op_sees_nan_at_infinity_unless_guarded() -> None:
    # no NaN inside at ±inf => every ISA computes the same IEEE value there
    for name, _t, dtype, low, plan in _all_plans():
        assert infinities_needing_guard(_strip_guard(plan.ops), dtype) == (), (name, dtype, low)


def test_without_the_guard_an_unordered_compare_cpu_returns_numbers_for_nan() -> None:
    """What the AVX-512 machine showed (where/minmax, x = NaN -> 0.995): the tests above fail if the
    guard is removed, under the model that mimics that CPU, and the static proof sees it."""
    unguarded = []
    for name, _t, dtype, low, plan in _all_plans():
        ops = _strip_guard(plan.ops)
        if ops != plan.ops and ops:  # (a constant table's plan is only the guard)
            assert not nan_carried(ops), (name, dtype, low)
            y = run(Plan(low, ops), np.array([np.nan]), dtype, "drop-true")
            unguarded.append((name, low, bool(np.isnan(y[0]))))
    failing = {(n, low) for n, low, ok in unguarded if not ok}
    for case in [("clamped", "where"), ("convex", "minmax"), ("two-segment", "where"),
                 ("two-segment", "minmax"), ("clamped", "relu-sum"), ("clamped", "select")]:
        assert case in failing, (case, sorted(failing))


def test_guard_only_where_arithmetic_cannot_carry_nan() -> None:
    # leaky relu: both outer slopes nonzero, so relu-sum's x·slope carries NaN: no guard, no extra op
    leaky = Table([0.0], [0.1, 1.0], [0.0, 0.0])
    plan = make_plan(leaky, "relu-sum", dtype="float32")
    assert _strip_guard(plan.ops) == plan.ops and nan_carried(plan.ops)
    assert "isnan" not in [op.kind for op in plan.ops]
    assert np.isnan(run(plan, np.array([np.nan]), "float32", "drop-true")[0])
    # its minmax plan max(0.1x, x) has NaN in both operands: no guard; relu's max(0, x) needs one
    assert make_plan(leaky, "minmax", dtype="float32").ops[-1].kind == "max"
    relu = make_plan(Table([0.0], [0.0, 1.0], [0.0, 0.0]), "minmax", dtype="float32")
    assert [op.kind for op in relu.ops] == ["max", "isnan", "where"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables())
def test_random_tables_nan_and_inf_every_model(t) -> None:
    x = np.array([np.nan, -np.inf, np.inf])
    for dtype in ("float32", "float16"):
        for low in feasible(t):
            plan = make_plan(t, low, dtype=dtype)
            assert nan_carried(plan.ops)
            for model in NAN_MODELS:
                y = run(plan, x, dtype, model)
                assert np.isnan(y[0])
                assert_matches(y[1:], x[1:], t, dtype, low)


def test_a_tiny_jump_is_allowed_with_the_output_rounding():
    """Regression (hypothesis, CI): slopes 9.6e-24 with a jump of the same size at 0 — the continuous
    lowerings return the jump's side, and float32 rounding of that output must be inside the tolerance."""
    t = Table(np.array([0.0]), np.array([9.55126199e-24, 9.55126199e-24]), np.array([0.0, 9.55126199e-24]))
    x = np.array([-3.375216692802496e-07, -8.625563350506127e-05, -0.00012615713058039546], dtype=np.float32)
    for low in ("minmax", "relu-sum"):
        assert_matches(run(make_plan(t, low, dtype="float32"), x, "float32"), x, t, "float32", low)
