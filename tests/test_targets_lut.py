"""LUT targets (int8-lut, tflite-int16, ethosu-int16) against independent scalar re-implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actiba import functions, targets
from actiba.errors import InputError
from actiba.table import Table
from actiba.targets import ethosu_int16 as eu

ALL_Q = np.arange(-32768, 32768)
EDGES = [-32768, -32767, -32641, -32640, -129, -128, -1, 0, 1, 127, 128, 32639, 32640, 32641, 32766, 32767]


# -- independent scalar models, transcribed from the C/C++ semantics (not the numpy code paths) ----------
def c_int16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def tflite_lookup_ref(lut: list[int], value: int) -> int:
    """TFLite `lut_lookup_with_interpolation` for int16 in/out, as written in C++."""
    index = 256 + (value >> 7)
    offset = value & 0x7F
    base = lut[index]
    slope = c_int16(lut[index + 1] - lut[index])
    delta = (slope * offset + 64) >> 7
    return c_int16(base + delta)


def tosa_table_ref(lut: list[int], value: int) -> int:
    """TOSA `apply_lookup_s` for int16: the 23-bit interpolated value."""
    index = (value + 32768) >> 7
    fraction = value & 0x7F
    return (lut[index] << 7) + (lut[index + 1] - lut[index]) * fraction


def gen_lut_ref(f, input_min, input_max, output_min, output_max) -> list[int]:
    """TFLite `gen_lut<double, int16_t, int16_t>` line by line, scalar math."""
    def rnd(v):  # std::round: half away from zero
        return math.copysign(math.floor(abs(v) + 0.5), v)

    step = (input_max - input_min) / 512
    half = step / 2
    inv = 65536.0 / (output_max - output_min)
    out = []
    for i in range(512):
        val = f(input_min + i * step)
        mid = f(input_min + i * step + half)
        nxt = f(input_min + (i + 1) * step)
        sample = rnd(val * inv)
        interp = rnd((nxt * inv + rnd(val * inv)) / 2)
        bias = rnd((interp - rnd(mid * inv)) / 2)
        out.append(int(min(max(sample - bias, -32768.0), 32767.0)))
    out.append(int(min(max(rnd(f(input_max) * inv), -32768.0), 32767.0)))
    return out


def ethos_ref(words: list[int], value: int, encoding: str, rounding: str) -> int:
    w = words[(value + 32768) >> 7]
    base = c_int16(w & 0xFFFF)
    slope = c_int16(((w - base) % 2**32) >> 16) if encoding == "vela" else c_int16(w >> 16)
    frac = (value + 32768) % 128
    v = base + ((slope * frac + (64 if rounding == "nearest" else 0)) >> 7)
    return max(-32768, min(32767, v))


def cfg16(lut: list[int], mode: str = "tflite"):
    return targets.get("tflite-int16").config_from_dict(
        {"name": "tflite-int16", "input_min": -8.0, "input_max": 8.0, "output_min": -8.0, "output_max": 8.0,
         "mode": mode, "lut": lut})


# -- tflite-int16 -------------------------------------------------------------------------------------
def test_tflite_simulator_matches_reference_on_all_inputs():
    T = targets.get("tflite-int16")
    rng = np.random.default_rng(1)
    lut = np.cumsum(rng.integers(-200, 200, 513)).clip(-32768, 32767).tolist()
    cfg = cfg16(lut)
    sim = T.simulate(cfg, ALL_Q)
    ref = [tflite_lookup_ref(lut, int(q)) for q in ALL_Q]
    assert sim.tolist() == ref
    tosa = T.simulate(cfg16(lut, "tosa"), ALL_Q)
    assert tosa.tolist() == [tosa_table_ref(lut, int(q)) for q in ALL_Q]


def test_tflite_last_interval_uses_entry_512():
    T = targets.get("tflite-int16")
    lut = [0] * 513
    lut[511], lut[512] = 100, 228  # slope 128 over the last interval
    sim = T.simulate(cfg16(lut), np.array([32640, 32641, 32703, 32766, 32767]))
    # hand-worked: 100 + ((128 * fr + 64) >> 7) = 100 + fr for fr = 0, 1, 63, 126, 127
    assert sim.tolist() == [100, 101, 163, 226, 227]
    lut2 = list(lut)
    lut2[512] = -28  # only the last interval may change
    s1, s2 = T.simulate(cfg16(lut), ALL_Q), T.simulate(cfg16(lut2), ALL_Q)
    changed = np.nonzero(s1 != s2)[0] + ALL_Q[0]
    assert changed.min() == 32641 and changed.max() == 32767
    assert T.simulate(cfg16(lut2), np.array([32767]))[0] == 100 + ((-128 * 127 + 64) >> 7)
    # TOSA raw output at the very last input: (100 << 7) + 128 * 127
    assert T.simulate(cfg16(lut, "tosa"), np.array([32767]))[0] == 12800 + 16256


def test_tflite_slope_wraps_like_int16_in_tflite_mode():
    T = targets.get("tflite-int16")
    lut = [0] * 513
    lut[0], lut[1] = -20000, 20000  # difference 40000 wraps to -25536 in the int16 slope
    from actiba.targets.tflite_int16 import TfliteInt16Config

    cfg = TfliteInt16Config(-8.0, 8.0, -8.0, 8.0, "tflite", lut)
    got = T.simulate(cfg, np.arange(-32768, -32640))
    assert got.tolist() == [tflite_lookup_ref(lut, q) for q in range(-32768, -32640)]
    with pytest.raises(InputError, match=r"lut\[1\] - lut\[0\]"):
        cfg16(lut)  # a stored table whose slope overflows is rejected


def test_tflite_int16_reads_every_int16_slope_and_no_other():
    """A step of exactly -32768 is an int16 slope (TOSA's reference model accepts it, the vendor suite
    checks that): it loads and both modes match the scalar references; +32768 and -32769 do not load."""
    T = targets.get("tflite-int16")
    lut = [0] * 513
    lut[3], lut[4], lut[5] = 32767, -1, 32766  # steps -32768, +32767
    lut[511], lut[512] = 32767, -1  # -32768 in the last interval too
    q = np.r_[np.arange(-32768, -32000), np.arange(32000, 32768)]
    for mode, ref in (("tflite", tflite_lookup_ref), ("tosa", tosa_table_ref)):
        assert T.simulate(cfg16(lut, mode), q).tolist() == [ref(lut, int(v)) for v in q]
    for a, b in ((-32768, 0), (32767, -2)):  # steps +32768 and -32769
        bad = [0] * 513
        bad[7], bad[8] = a, b
        with pytest.raises(InputError, match=r"lut\[8\] - lut\[7\]"):
            cfg16(bad)


@pytest.mark.parametrize("fn,lo,hi", [("silu", -8, 8), ("exp", -16, 0), ("tanh", -4, 4)])
def test_gen_lut_matches_scalar_transcription(fn, lo, hi):
    T = targets.get("tflite-int16")
    act = functions.get(fn)
    t = T.naive(act, 512, lo, hi)
    c = t.target
    ref = gen_lut_ref(lambda v: float(act(np.array([v]))[0]), c["input_min"], c["input_max"],
                      c["output_min"], c["output_max"])
    assert t.target["lut"] == ref


def test_tflite_fit_beats_gen_lut_and_error_is_whole_grid():
    T = targets.get("tflite-int16")
    act = functions.get("silu")
    fit, naive = T.fit(act, 512, -8, 8), T.naive(act, 512, -8, 8)
    cf, cn = T.check(fit), T.check(naive)
    assert T.error_lsb(cf, act) < T.error_lsb(cn, act) - 0.2
    assert fit.error["points"] == 65536 and fit.error["max_abs"] < naive.error["max_abs"]
    # error recomputed independently from the scalar reference over every input
    x = -8.0 + (ALL_Q + 32768) * (16.0 / 65536)
    s_out = (cf.output_max - cf.output_min) / 65536
    y = np.array([tflite_lookup_ref(cf.lut, int(q)) for q in ALL_Q]) * s_out
    assert np.max(np.abs(y - act(x))) == pytest.approx(fit.error["max_abs"], rel=1e-12)


def test_tflite_table_is_the_interpolant():
    T = targets.get("tflite-int16")
    act = functions.get("gelu")
    for mode in ("tflite", "tosa"):
        t = T.fit(act, 512, -6, 6, params={"mode": mode})
        cfg = T.check(t)
        x = T.dequant_in(cfg, ALL_Q)
        hw = T.dequant_out(cfg, T.simulate(cfg, ALL_Q))
        s_out = (cfg.output_max - cfg.output_min) / 65536
        diff = np.abs(t(x) - hw)
        if mode == "tosa":
            assert diff.max() <= 1e-12 * cfg.output_max
        else:
            assert diff.max() <= s_out / 2 * (1 + 1e-9)
    assert t.segments == 512


# -- ethosu-int16 ---------------------------------------------------------------------------------------
def test_ethos_encoding_hand_example():
    assert eu.encode(np.array([-5]), np.array([3]), "vela").tolist() == [0x0002FFFB]
    assert eu.encode(np.array([-5]), np.array([3]), "fields").tolist() == [0x0003FFFB]
    for enc in ("vela", "fields"):
        b, s = eu.decode(eu.encode(np.array([-5]), np.array([3]), enc), enc)
        assert (b.tolist(), s.tolist()) == ([-5], [3])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(-32768, 32767), st.integers(-32768, 32767)), min_size=1, max_size=50),
       st.sampled_from(["vela", "fields"]))
def test_ethos_encode_decode_round_trip(pairs, enc):
    b, s = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    w = eu.encode(b, s, enc)
    assert np.all((w >= 0) & (w < 2**32))
    b2, s2 = eu.decode(w, enc)
    assert b2.tolist() == b.tolist() and s2.tolist() == s.tolist()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(-300, 300), min_size=513, max_size=513), st.integers(-20000, 20000),
       st.sampled_from(["vela", "fields"]))
def test_ethos_conversion_is_bit_exact_with_tflite(steps, start, enc):
    lut = np.clip(start + np.cumsum(steps), -32768, 32767).tolist()
    cfg = cfg16(lut)
    e = eu.from_tflite(cfg, "nearest", enc)
    q = np.array(EDGES + list(range(-32768, 32768, 97)))
    got = targets.get("ethosu-int16").simulate(e, q)
    assert got.tolist() == targets.get("tflite-int16").simulate(cfg, q).tolist()
    assert got.tolist() == [ethos_ref(e.lut, int(v), enc, "nearest") for v in q]


def test_ethos_simulator_matches_reference_truncate_and_fit():
    E = targets.get("ethosu-int16")
    act = functions.get("tanh")
    for rounding in ("nearest", "truncate"):
        t = E.fit(act, 512, -4, 4, params={"rounding": rounding})
        cfg = E.check(t)
        q = np.arange(-32768, 32768, 7)
        assert E.simulate(cfg, q).tolist() == [ethos_ref(cfg.lut, int(v), "vela", rounding) for v in q]
    T = targets.get("tflite-int16")
    tf = T.check(T.fit(act, 512, -4, 4))
    ef = E.check(E.fit(act, 512, -4, 4))
    naive = E.check(E.naive(act, 512, -4, 4))
    assert E.error_lsb(ef, act) <= T.error_lsb(tf, act) + 1e-12
    assert E.error_lsb(ef, act) < E.error_lsb(naive, act)


# -- int8-lut -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("din,dout", [("int8", "int8"), ("uint8", "uint8"), ("int8", "uint8")])
def test_int8_lut_is_optimal_per_entry_and_table_exact(din, dout):
    L = targets.get("int8-lut")
    act = functions.get("sigmoid")
    t = L.fit(act, 256, -6, 6, params={"input_dtype": din, "output_dtype": dout})
    cfg = L.check(t)
    qmin = -128 if din == "int8" else 0
    q = np.arange(qmin, qmin + 256)
    assert L.simulate(cfg, q).tolist() == [cfg.lut[int(v) - qmin] for v in q]
    x = cfg.input_scale * (q - cfg.input_zero_point)
    y = act(x)
    omin, omax = (-128, 127) if dout == "int8" else (0, 255)
    for delta in (-1, 1):  # no neighbouring code is closer to f for any entry
        alt = np.clip(np.array(cfg.lut) + delta, omin, omax)
        e0 = np.abs(cfg.output_scale * (np.array(cfg.lut) - cfg.output_zero_point) - y)
        e1 = np.abs(cfg.output_scale * (alt - cfg.output_zero_point) - y)
        assert np.all(e0 <= e1 + 1e-15)
    # the float table is the exact staircase: bit-identical on the grid
    assert np.array_equal(t(L.dequant_in(cfg, q)), L.dequant_out(cfg, L.simulate(cfg, q)))
    assert t.error["points"] == 256


def test_int8_lut_bad_params_and_tables():
    L = targets.get("int8-lut")
    act = functions.get("silu")
    for bad, key in [({"input_scale": "-1"}, "input_scale"), ({"output_scale": "0"}, "output_scale"),
                     ({"input_dtype": "int4"}, "input_dtype"), ({"zoom": "2"}, "zoom"),
                     ({"input_zero_point": "1.5"}, "input_zero_point")]:
        with pytest.raises(InputError, match=key):
            L.fit(act, 256, -8, 8, params=bad)
    t = L.fit(act, 256, -8, 8)
    d = dict(t.target)
    d["lut"] = d["lut"][:-1]
    with pytest.raises(InputError, match="lut"):
        L.config_from_dict(d)
    d = dict(t.target, lut=[300] + t.target["lut"][1:])
    with pytest.raises(InputError, match=r"lut\[0\]"):
        L.config_from_dict(d)
    edited = Table(t.breakpoints, t.slopes, t.intercepts + 0.01, target=t.target)
    with pytest.raises(InputError, match="do not match"):
        L.check(edited)
    with pytest.raises(InputError, match="not a int8-lut table"):
        L.check(Table([0.0], [0.0, 1.0], [0.0, 0.0]))


def test_lut16_bad_params():
    T = targets.get("tflite-int16")
    act = functions.get("tanh")
    for bad, key in [({"input_max": "-9"}, "input_max"), ({"mode": "fast"}, "mode"),
                     ({"output_max": "nan"}, "output_max"), ({"input_zero_point": "3"}, "input_scale"),
                     ({"input_scale": "1", "input_min": "-1"}, "not both"),
                     ({"output_scale": "0"}, "output_scale")]:
        with pytest.raises(InputError, match=key):
            T.fit(act, 512, -8, 8, params=bad)
    with pytest.raises(InputError, match="rounding"):
        targets.get("ethosu-int16").fit(act, 512, -8, 8, params={"rounding": "up"})


@pytest.mark.parametrize("name", ["tflite-int16", "ethosu-int16", "int8-lut"])
def test_serializers_round_trip(name):
    T = targets.get(name)
    t = T.fit(functions.get("softplus"), 8, -8, 8, "asymptote", {})
    cfg = T.check(t)
    assert T.config_from_json(T.serialize_json(cfg)) == cfg
    t2 = Table.from_json(t.to_json())
    assert T.check(t2) == cfg
    q = T.grid(cfg)
    assert np.array_equal(T.simulate(T.check(t2), q), T.simulate(cfg, q))
