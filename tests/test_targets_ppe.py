"""npu-ppe: hand-worked integer examples, a scalar reference model, constrained fit vs naive rounding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actiba import functions, targets
from actiba.errors import InputError
from actiba.table import Table
from actiba.targets.ppe_format import multiplier

P = targets.get("npu-ppe")
GRID = np.arange(-4096, 4096)


def ppe_ref(d: dict, q: int) -> int:
    """The npu-ppe datapath in plain Python integers (linear segment search, // for shifts)."""
    b = d["boundaries"]
    q = min(max(q, b[0]), b[-1])
    j = 0
    while j < len(d["signs"]) - 1 and q >= b[j + 1]:
        j += 1
    acc = d["signs"][j] * q * 2 ** (d["frac_bits"] + d["shifts"][j]) + d["biases"][j]
    prod, n = acc * d["multiplier"], d["post_shift"]
    if d["rounding"] == "half-up":
        v = (prod + 2 ** (n - 1)) // 2**n
    else:
        v = (abs(prod) + 2 ** (n - 1)) // 2**n * (1 if prod >= 0 else -1)
    lo, hi = (-128, 127) if d["output_dtype"] == "int8" else (0, 255)
    return min(max(v + d["output_zero_point"], lo), hi)


def config(**kw):
    d = {"name": "npu-ppe", "input_scale": 1.0, "input_zero_point": 0, "output_dtype": "int8",
         "output_scale": 0.25, "output_zero_point": 0, "frac_bits": 2, "max_shift": 4, "bias_bits": 32,
         "multiplier_bits": 15, "rounding": "half-up", "boundaries": [-100, 0, 100], "signs": [0, 1],
         "shifts": [0, -1], "biases": [5, 3]}
    d.update(kw)
    m, n = multiplier(d["input_scale"], d["output_scale"], d["frac_bits"], d["multiplier_bits"])
    d.update(multiplier=m, post_shift=n)
    return P.config_from_dict(d)


def test_hand_worked_identity_requant():
    # input_scale 1, output_scale 1/4, frac_bits 2: m / 2^n = 1, so out = acc (saturated to int8)
    cfg = config()
    assert (cfg.multiplier, cfg.post_shift) == (2**14, 14)
    q = np.array([-4096, -101, -100, -1, 0, 1, 50, 62, 63, 100, 4095])
    # segment 0: acc = 5; segment 1: acc = (q << 1) + 3; input saturates to [-100, 100]
    assert P.simulate(cfg, q).tolist() == [5, 5, 5, 5, 3, 5, 103, 127, 127, 127, 127]


def test_hand_worked_rounding_modes():
    # output_scale 1: m / 2^n = 1/4, out = round(acc / 4)
    up = config(output_scale=1.0)
    away = config(output_scale=1.0, rounding="half-away")
    assert (up.multiplier, up.post_shift) == (2**14, 16)
    seg1 = config(output_scale=1.0, boundaries=[-100, -99, 100], biases=[0, 0], shifts=[0, -1])
    q = np.array([-3, -2, -1, 0, 1, 2, 3])  # acc = 2q: -6, -4, -2, 0, 2, 4, 6 -> /4
    assert P.simulate(seg1, q).tolist() == [-1, -1, 0, 0, 1, 1, 2]  # -1.5 -> -1, -0.5 -> 0 (ties up)
    seg1a = config(output_scale=1.0, rounding="half-away", boundaries=[-100, -99, 100], biases=[0, 0],
                   shifts=[0, -1])
    assert P.simulate(seg1a, q).tolist() == [-2, -1, -1, 0, 1, 1, 2]  # ties away from zero
    assert P.simulate(up, np.array([1]))[0] == 1 and P.simulate(away, np.array([1]))[0] == 1


def test_negative_slope_and_uint8():
    cfg = config(output_dtype="uint8", output_zero_point=10, signs=[-1, 1], shifts=[1, 0], biases=[0, 0])
    q = np.array([-100, -3, -1, 0, 2, 200])
    # seg 0: acc = -(q << 3) ; seg 1: acc = q << 2 ; out = acc + 10 clipped to [0, 255]
    assert P.simulate(cfg, q).tolist() == [255, 34, 18, 10, 18, 255]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**32 - 1), st.sampled_from(["half-up", "half-away"]),
       st.sampled_from(["int8", "uint8"]), st.integers(0, 8))
def test_simulator_matches_reference_on_random_configs(S, seed, rounding, dtype, frac):
    rng = np.random.default_rng(seed)
    inner = np.sort(rng.choice(np.arange(-4000, 4000), S - 1, replace=False)).tolist()
    lo, hi = int(rng.integers(-4096, -4000)), int(rng.integers(4000, 4096))
    shifts = rng.integers(-frac, 5, S).tolist()
    d = dict(boundaries=[lo, *inner, hi], signs=rng.integers(-1, 2, S).tolist(), shifts=shifts,
             biases=rng.integers(-(2**20), 2**20, S).tolist(), rounding=rounding, output_dtype=dtype,
             frac_bits=frac, input_scale=float(rng.uniform(1e-3, 1)),
             output_scale=float(rng.uniform(1e-3, 1)),
             output_zero_point=int(rng.integers(-20, 20)) + (128 if dtype == "uint8" else 0))
    cfg = config(**d)
    q = np.concatenate([GRID[::37], [-4096, 4095, *cfg.boundaries]])
    full = cfg.to_dict()
    assert P.simulate(cfg, q).tolist() == [ppe_ref(full, int(v)) for v in q]


@pytest.mark.parametrize("fn,lo,hi", [("silu", -8, 8), ("sigmoid", -8, 8), ("exp", -16, 0)])
def test_fit_beats_naive_rounding_and_matches_reference(fn, lo, hi):
    act = functions.get(fn)
    fit = P.fit(act, 8, lo, hi, "asymptote", {})
    naive = P.naive(act, 8, lo, hi, "asymptote", {}, fallback=True)
    assert fit.error["max_abs"] < naive.error["max_abs"]
    cfg = P.check(fit)
    assert cfg.segments == 8 and len(cfg.boundaries) == 9
    full = cfg.to_dict()
    ref = np.array([ppe_ref(full, int(q)) for q in GRID])
    assert np.array_equal(P.simulate(cfg, GRID), ref)
    x = cfg.input_scale * (GRID - cfg.input_zero_point)
    y = cfg.output_scale * (ref - cfg.output_zero_point)
    assert np.max(np.abs(y - act(x))) == fit.error["max_abs"] and fit.error["points"] == 8192
    # every slope of the float table is 0 or +-2^k up to the requantization multiplier's rounding
    real = np.abs(fit.slopes[fit.slopes != 0])
    k = np.round(np.log2(real))
    assert np.all(np.abs(real / 2.0**k - 1) < 2**-13)


def test_table_is_prerounding_line():
    act = functions.get("gelu")
    t = P.fit(act, 6, -6, 6, "free", {})
    cfg = P.check(t)
    out = P.simulate(cfg, GRID)
    hw = P.dequant_out(cfg, out)
    x = P.dequant_in(cfg, GRID)
    inside = (out > -128) & (out < 127)
    assert np.max(np.abs(t(x) - hw)[inside]) <= cfg.output_scale / 2 * (1 + 1e-9)


def test_saturating_boundaries_in_table():
    cfg = config(boundaries=[-50, 0, 60], input_scale=0.01, output_scale=0.01)
    t = P.to_table(cfg, None)
    x = P.dequant_in(cfg, GRID)
    hw = P.dequant_out(cfg, P.simulate(cfg, GRID))
    inside = np.abs(P.simulate(cfg, GRID)) < 127
    assert np.max(np.abs(t(x) - hw)[inside]) <= 0.005 * (1 + 1e-9)
    assert t.slopes[0] == 0 and t.slopes[-1] == 0


def test_tails_clamp_and_asymptote():
    act = functions.get("silu")
    c = P.check(P.fit(act, 8, -8, 8, "clamp", {}))
    assert c.signs[0] == 0 and c.signs[-1] == 0
    a = P.check(P.fit(act, 8, -8, 8, "asymptote", {}))
    assert a.signs[0] == 0 and (a.signs[-1], a.shifts[-1]) == (1, 0)  # silu: slope 0 left, 1 right


def test_violations_name_what():
    act = functions.get("tanh")
    t = P.fit(act, 4, -4, 4, "free", {})
    bad = [({"shifts": [0, 0, 0, 9]}, "shifts"), ({"boundaries": [-4096, 5, 5, 100, 4095]}, "ascending"),
           ({"signs": [0, 1, 2, 1]}, "signs"), ({"biases": [0, 0, 0]}, "biases"),
           ({"multiplier": 3}, "multiplier"), ({"signs": [1] * 9, "shifts": [0] * 9}, "1..8 segments"),
           ({"input_scale": -1.0}, "input_scale"), ({"frac_bits": 40}, "frac_bits")]
    for change, what in bad:
        d = dict(t.target, **change)
        with pytest.raises(InputError, match=what):
            P.check(Table(t.breakpoints, t.slopes, t.intercepts, target=d))
    with pytest.raises(InputError, match="do not match"):
        P.check(Table(t.breakpoints, t.slopes * 1.01, t.intercepts, target=t.target))
    with pytest.raises(InputError, match="at most 8 segments"):
        P.from_table(Table(np.arange(8.0) - 4, np.ones(9), np.zeros(9)), {})
    with pytest.raises(InputError, match="segment 1 slope 0.3"):
        P.from_table(Table([0.0], [0.0, 0.3], [0.0, 0.0], domain=(-4.0, 4.0)), {"output_scale": "0.1",
                                                                              "output_zero_point": "0"})
    with pytest.raises(InputError, match="segments"):
        P.fit(act, 9, -4, 4, "free", {})
    for bad_p, key in [({"output_scale": "-2"}, "output_scale"), ({"max_shift": "99"}, "max_shift"),
                       ({"bias_bits": "x"}, "bias_bits"), ({"rounding": "even"}, "rounding")]:
        with pytest.raises(InputError, match=key):
            P.fit(act, 4, -4, 4, "free", bad_p)


def test_serializer_round_trip():
    t = P.fit(functions.get("softplus"), 8, -8, 8, "asymptote", {})
    cfg = P.check(t)
    assert P.config_from_json(P.serialize_json(cfg)) == cfg
    assert P.check(Table.from_json(t.to_json())) == cfg


def test_monotone_option_keeps_output_monotone():
    act = functions.get("tanh")
    t = P.fit(act, 8, -4, 4, "asymptote", {"monotone": "auto"})
    out = P.simulate(P.check(t), GRID)
    assert np.all(np.diff(out) >= 0)
    assert "monotone" not in t.target  # a fitter option, not a hardware register


def test_tiny_slope_is_refused_without_snap_and_zeroed_with_it() -> None:
    """A slope of 1e-6 (below 2^-frac_bits / 2) used to be zeroed silently with snap=false."""
    T = targets.get("npu-ppe")
    t = Table([0.0], [1e-6, 1.0], [0.0, 0.0], domain=(-4.0, 4.0))
    with pytest.raises(InputError, match="segment 0 slope 1e-06 is too small"):
        T.from_table(t, {}, snap=False)
    cfg = T.from_table(t, {}, snap=True)
    assert cfg.signs[0] == 0 and cfg.signs[1] == 1
    exact = Table([0.0], [0.0, 1.0], [0.0, 0.0], domain=(-4.0, 4.0))
    assert T.from_table(exact, {}, snap=False).signs == [0, 1]
