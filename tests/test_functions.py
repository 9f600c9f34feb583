"""The activation registry against independent formulas evaluated in high precision (mpmath), derivatives
against mpmath numerical differentiation, asymptotes, tail monotonicity and inflection points solved
independently."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

from actiba import functions
from actiba.errors import InputError

mp.mp.dps = 40

SQRT2 = mp.sqrt(2)


def m_sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def m_silu(beta=1.0):
    return lambda x: x * m_sigmoid(beta * x)


def m_softplus(beta=1.0):
    return lambda x: mp.log1p(mp.exp(beta * x)) / beta


def m_gelu(x):
    return x / 2 * mp.erfc(-x / SQRT2)


def m_gelu_tanh(x):
    k = mp.sqrt(2 / mp.pi)
    return x / 2 * (1 + mp.tanh(k * (x + mp.mpf("0.044715") * x**3)))


REF = {
    "silu": m_silu(),
    "softplus": m_softplus(),
    "gelu": m_gelu,
    "gelu-tanh": m_gelu_tanh,
    "sigmoid": m_sigmoid,
    "tanh": mp.tanh,
    "exp": mp.exp,
}

POINTS = [-700.0, -80.0, -30.0, -8.0, -3.7, -2.4, -1.0, -0.3, -1e-8, 0.0, 1e-12, 0.25, 1.0, 2.39936, 5.0,
          8.0, 17.5, 40.0, 300.0, 700.0]


def rel_close(got: float, want, rtol: float, atol: float = 0.0) -> bool:
    want = float(want)
    return abs(got - want) <= atol + rtol * abs(want)


@pytest.mark.parametrize("name", list(REF))
def test_f_matches_high_precision_formula(name):
    act = functions.get(name)
    xs = np.array(POINTS)
    with np.errstate(over="ignore"):
        ys = act.f(xs)
    for x, y in zip(POINTS, ys.tolist(), strict=True):
        want = REF[name](mp.mpf(x))
        if name == "exp" and x > 709:
            continue
        if abs(want) > 1e308:
            assert y == math.inf or rel_close(y, want, 1e-13)
            continue
        # absolute accuracy to a few ulp of the value's scale everywhere ...
        assert abs(y - float(want)) <= 4e-16 * max(1.0, abs(float(want))), f"{name}({x}) = {y!r}"
        # ... and relative accuracy, also in the tails (gelu-tanh's left tail cancels: 0.5x(1+tanh u))
        if name != "gelu-tanh" or x > -5:
            assert rel_close(y, want, 1e-12, atol=1e-300), f"{name}({x}) = {y!r}, want {mp.nstr(want, 20)}"


@pytest.mark.parametrize("beta", [0.5, 1.702, 4.0])
def test_beta_variants(beta):
    silu = functions.get("silu", beta)
    swish = functions.get("swish", beta)
    softplus = functions.get("softplus", beta)
    xs = np.array([-50.0, -3.0, -0.5, 0.0, 0.7, 2.0, 9.0, 60.0])
    for x, a, b, c in zip(xs, silu.f(xs), swish.f(xs), softplus.f(xs), strict=True):
        assert rel_close(a, m_silu(beta)(mp.mpf(float(x))), 1e-13, 1e-300)
        assert a == b
        assert rel_close(c, m_softplus(beta)(mp.mpf(float(x))), 1e-13, 1e-300)
    assert silu.params == {"beta": beta} and silu.to_json() == {"function": "silu", "params": {"beta": beta}}


def test_gelu_against_math_erf_per_element():
    act = functions.get("gelu")
    xs = np.linspace(-10, 10, 2001)
    want = np.array([0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0))) for x in xs.tolist()])
    np.testing.assert_allclose(act.f(xs), want, rtol=0, atol=2e-16 * 10)


def test_gelu_tanh_against_math_tanh_per_element():
    act = functions.get("gelu-tanh")
    xs = np.linspace(-10, 10, 2001)
    k = math.sqrt(2.0 / math.pi)
    want = np.array([0.5 * x * (1.0 + math.tanh(k * (x + 0.044715 * x**3))) for x in xs.tolist()])
    np.testing.assert_allclose(act.f(xs), want, rtol=1e-14, atol=1e-15)


@pytest.mark.filterwarnings("error")
def test_softplus_and_silu_do_not_overflow_at_extremes():
    xs = np.array([-1000.0, -745.0, -1e10, 1000.0, 1e10, 1e300, -1e300])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        sp = functions.get("softplus").f(xs)
        si = functions.get("silu").f(xs)
        sg = functions.get("sigmoid").f(xs)
    assert np.all(np.isfinite(sp)) and np.all(np.isfinite(si)) and np.all(np.isfinite(sg))
    assert sp[3] == 1000.0 and sp[4] == 1e10 and sp[5] == 1e300
    assert 0.0 <= sp[0] < 1e-300 and sp[2] == 0.0
    assert si[3] == 1000.0 and si[5] == 1e300 and abs(si[0]) < 1e-300
    # softplus(beta) at large beta*x: exactly x, no overflow of exp(beta x)
    sp20 = functions.get("softplus", 20.0).f(np.array([100.0, -100.0]))
    assert sp20[0] == 100.0 and 0.0 <= sp20[1] < 1e-300


def m_derivative(fn, x, n):
    return mp.diff(fn, mp.mpf(x), n)


@pytest.mark.parametrize("name", list(REF))
def test_derivatives_match_high_precision_numerical_differentiation(name):
    act = functions.get(name)
    xs = np.array([-12.0, -6.0, -3.3, -2.0, -1.1, -0.4, 0.0, 0.3, 1.0, 1.7, 2.5, 4.0, 7.0, 11.0])
    d1, d2 = act.df(xs), act.d2f(xs)
    for x, a, b in zip(xs.tolist(), d1.tolist(), d2.tolist(), strict=True):
        want1 = m_derivative(REF[name], x, 1)
        want2 = m_derivative(REF[name], x, 2)
        assert rel_close(a, want1, 1e-12, 1e-15), f"{name}'({x}) = {a}, want {mp.nstr(want1, 17)}"
        assert rel_close(b, want2, 1e-11, 1e-14), f"{name}''({x}) = {b}, want {mp.nstr(want2, 17)}"


@pytest.mark.parametrize("name,beta", [("silu", 2.0), ("softplus", 0.5), ("softplus", 3.0)])
def test_derivatives_with_beta(name, beta):
    act = functions.get(name, beta)
    ref = m_silu(beta) if name == "silu" else m_softplus(beta)
    xs = np.array([-5.0, -1.0, 0.0, 0.6, 3.0])
    for x, a, b in zip(xs.tolist(), act.df(xs).tolist(), act.d2f(xs).tolist(), strict=True):
        assert rel_close(a, m_derivative(ref, x, 1), 1e-12, 1e-15)
        assert rel_close(b, m_derivative(ref, x, 2), 1e-11, 1e-15)


def test_derivatives_against_central_differences_on_dense_grid():
    """A plain float64 check on a dense grid, independent of mpmath."""
    xs = np.linspace(-9, 9, 1801)
    h = 1e-5
    for name in REF:
        act = functions.get(name)
        fd1 = (act.f(xs + h) - act.f(xs - h)) / (2 * h)
        fd2 = (act.df(xs + h) - act.df(xs - h)) / (2 * h)
        scale = 1 + np.abs(act.f(xs))
        assert np.max(np.abs(act.df(xs) - fd1) / scale) < 1e-6, name
        assert np.max(np.abs(act.d2f(xs) - fd2) / scale) < 1e-6, name


ASYMPTOTES = {  # independently known lines as x -> -inf / +inf
    "silu": ((0.0, 0.0), (1.0, 0.0)),
    "softplus": ((0.0, 0.0), (1.0, 0.0)),
    "gelu": ((0.0, 0.0), (1.0, 0.0)),
    "gelu-tanh": ((0.0, 0.0), (1.0, 0.0)),
    "sigmoid": ((0.0, 0.0), (0.0, 1.0)),
    "tanh": ((0.0, -1.0), (0.0, 1.0)),
    "exp": ((0.0, 0.0), None),
}


@pytest.mark.parametrize("name", list(ASYMPTOTES))
def test_asymptotes_are_the_known_lines_and_f_approaches_them(name):
    act = functions.get(name)
    left, right = ASYMPTOTES[name]
    assert act.left == left and act.right == right
    far = np.array([40.0, 100.0, 1e3, 1e6])
    dev_l = np.abs(act.f(-far) - (left[0] * -far + left[1]))
    assert np.all(dev_l < 1e-12), dev_l
    if right is not None:
        dev_r = np.abs(act.f(far) - (right[0] * far + right[1]))
        assert np.all(dev_r < 1e-12), dev_r


@pytest.mark.parametrize("name", list(ASYMPTOTES))
def test_tail_deviation_is_non_increasing_beyond_tail_from(name):
    act = functions.get(name)
    xl, xr = act.tail_from
    for side, line, start in (("left", act.left, xl), ("right", act.right, xr)):
        if line is None:
            continue
        s = max(min(start, 50.0), -50.0)  # tail_from may be ±inf (exp: the whole line)
        if side == "left":
            xs = np.linspace(s, -60.0, 60001) if s > -60 else np.linspace(s, s - 60, 601)
        else:
            xs = np.linspace(s, 60.0, 60001) if s < 60 else np.linspace(s, s + 60, 601)
        dev = np.abs(act.f(xs) - (line[0] * xs + line[1]))
        # moving away from the range the deviation never grows (rounding slack only)
        slack = 4 * np.spacing(np.maximum(1.0, np.abs(xs[1:])))
        assert np.all(np.diff(dev) <= slack), (name, side)


def test_silu_tail_starts_at_its_minimum():
    """|silu| is unimodal on x<0 with its peak at the minimum: 1 + x(1 - sigmoid(x)) = 0."""
    xmin = float(mp.findroot(lambda x: 1 + x * (1 - m_sigmoid(x)), -1.3))
    assert abs(xmin - (-1.2784645)) < 1e-6
    t = functions.get("silu").tail_from
    assert abs(t[0] - xmin) < 1e-3 and abs(t[1] + xmin) < 1e-3


def silu_inflections():
    """f'' of silu is s(1-s)(2 + x(1-2s)); roots of 2 + x(1 - 2 sigmoid(x)) = 0, solved in mpmath."""
    g = lambda x: 2 + x * (1 - 2 * m_sigmoid(x))  # noqa: E731
    r = float(mp.findroot(g, 2.4))
    return [-r, r]


@pytest.mark.parametrize("name,want", [
    ("silu", silu_inflections()),
    ("gelu", [-math.sqrt(2.0), math.sqrt(2.0)]),  # gelu'' = phi(x)(2 - x^2)
    ("tanh", [0.0]),
    ("sigmoid", [0.0]),
    ("softplus", []),
    ("exp", []),
])
def test_inflection_points(name, want):
    act = functions.get(name)
    got = act.inflections(-8.0, 8.0)
    assert len(got) == len(want), got
    for g, w in zip(got, want, strict=True):
        assert abs(g - w) < 1e-9, (got, want)
    if name == "silu":
        assert abs(want[1] - 2.399357280) < 1e-8


def test_gelu_tanh_inflections_solved_independently():
    act = functions.get("gelu-tanh")
    r = float(mp.findroot(lambda x: mp.diff(m_gelu_tanh, x, 2), 1.4))
    got = act.inflections(-8.0, 8.0)
    assert len(got) == 2
    assert abs(got[0] + r) < 1e-8 and abs(got[1] - r) < 1e-8


def test_inflections_scale_with_beta_and_respect_range():
    r = silu_inflections()[1]
    got = functions.get("silu", 2.0).inflections(-8.0, 8.0)
    assert len(got) == 2 and abs(got[1] - r / 2) < 1e-9 and abs(got[0] + r / 2) < 1e-9
    assert functions.get("silu").inflections(0.0, 8.0) == pytest.approx([r], abs=1e-9)
    assert functions.get("silu").inflections(3.0, 8.0) == []


def test_convexity_intervals_agree_with_second_derivative_sign():
    r = silu_inflections()[1]
    conv = functions.get("silu").convexity(-8.0, 8.0)
    assert [c[2] for c in conv] == [-1, 1, -1]
    assert conv[0][0] == -8.0 and conv[-1][1] == 8.0
    assert abs(conv[0][1] + r) < 1e-9 and abs(conv[1][1] - r) < 1e-9
    assert [c[2] for c in functions.get("softplus").convexity(-8, 8)] == [1]
    assert [c[2] for c in functions.get("tanh").convexity(-6, 6)] == [1, -1]
    # each claimed interval really has that sign of f'' (independent mpmath check at its midpoint)
    for a, b, s in conv:
        mid = 0.5 * (a + b)
        assert np.sign(float(mp.diff(REF["silu"], mp.mpf(mid), 2))) == s


def test_names_aliases_and_case():
    assert functions.get("SiLU").name == "silu"
    assert functions.get("swish").name == "silu"
    for name in ["silu", "swish", "softplus", "gelu", "gelu-tanh", "sigmoid", "tanh", "exp"]:
        assert name in functions.NAMES


@pytest.mark.parametrize("name", ["relu", "", "gelu_tanh", "silu2", "expr", "Exp:x"])
def test_unknown_name_is_input_error(name):
    with pytest.raises(InputError):
        functions.get(name)


@pytest.mark.parametrize("name", ["silu", "swish", "softplus"])
@pytest.mark.parametrize("beta", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_bad_beta_is_input_error(name, beta):
    with pytest.raises(InputError, match="beta"):
        functions.get(name, beta)


@pytest.mark.parametrize("name", ["gelu", "tanh", "exp", "expr:x*2"])
def test_beta_on_functions_without_beta_is_input_error(name):
    with pytest.raises(InputError, match="beta"):
        functions.get(name, 1.0)


def test_expression_activation_and_its_numerical_derivatives():
    act = functions.get("expr:x**3 - 2*x")
    xs = np.linspace(-3, 3, 61)
    np.testing.assert_allclose(act.f(xs), xs**3 - 2 * xs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(act.df(xs), 3 * xs**2 - 2, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(act.d2f(xs), 6 * xs, rtol=1e-5, atol=1e-5)
    assert act.left is None and act.right is None
    assert act.to_json()["function"] == "expr:x**3 - 2*x"
    assert act.inflections(-3, 3) == pytest.approx([0.0], abs=1e-6)


def test_from_table_json():
    assert functions.from_table_json("silu", {"beta": 2.0}).params == {"beta": 2.0}
    assert functions.from_table_json("gelu", {}).name == "gelu"
    assert functions.from_table_json("relu", {}) is None
    assert functions.from_table_json("expr:x*x", None).expression == "expr:x*x"
    assert functions.from_table_json("expr:__import__('os')", None) is None
