"""Hardware-target edge cases: a fit never produces what its own export refuses (tanh(1000x) made a
513-entry LUT step the int16 slope cannot hold), int16 outputs have no zero point (an asymmetric
output range is refused, it used to saturate sigmoid at 0.5), tensor quantization parameters map onto
the range convention exactly, and int8 tables for restricted ranges and small output scales."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actiba import functions, targets
from actiba.cli import main
from actiba.errors import InputError
from actiba.targets.lut16 import Q, resolve_ranges, s_out, x_of
from actiba.targets.tflite_int16 import representable


def test_representable_moves_only_what_it_must() -> None:
    e = np.array([-32767, -32768, 8192, 32767, 0])
    r = representable(e)
    assert np.abs(np.diff(r)).max() <= 32767
    assert r.tolist() == [-32767, -32768, -1, 32766, 0]
    ok = np.array([0, 32767, 0, -32767, 0])
    assert representable(ok).tolist() == ok.tolist()


@pytest.mark.parametrize("name", ["tflite-int16", "ethosu-int16"])
def test_fit_of_a_near_step_is_exported_by_its_own_export(name: str, tmp_path, capsys) -> None:
    src, out = tmp_path / "t.json", tmp_path / "o.json"
    assert main(["fit", "expr:tanh(1000*x)", "--segments", "512", "--target", name, "-o", str(src)]) == 0
    d = json.loads(src.read_text())
    if name == "tflite-int16":
        assert np.abs(np.diff(d["target"]["lut"])).max() <= 32767
    assert main(["export", str(src), "--to", name, "-o", str(out)]) == 0, capsys.readouterr().err
    assert out.exists()


@pytest.mark.parametrize("fn,params", [("expr:sign(x)", {}), ("expr:tanh(300*x)", {"mode": "tosa"}),
                                       ("expr:2*tanh(1000*(x - 1))", {"output_max": 2})])
def test_steps_of_every_kind_fit_within_the_int16_slope(fn: str, params: dict) -> None:
    T = targets.get("tflite-int16")
    cfg = T.check(T.fit(functions.get(fn), 512, -8, 8, params=params))
    assert np.abs(np.diff(cfg.lut)).max() <= 32767
    T.config_from_dict(cfg.to_dict())  # what export's reader applies


def test_fit_result_is_checked_before_it_is_returned(monkeypatch) -> None:
    """The generic guard: whatever a target's own fit returns passes `check` (export's test) or is an
    InputError; here the DP is made to return an unrepresentable LUT."""
    from actiba.targets import tflite_int16

    monkeypatch.setattr(tflite_int16, "viterbi", lambda e0, t, mode: np.r_[e0[:256] * 0 - 32768,
                                                                            e0[256:] * 0 + 32767])
    with pytest.raises(InputError, match="cannot hold"):
        targets.get("tflite-int16").fit(functions.get("tanh"), 512, -8, 8)


@pytest.mark.parametrize("name", ["tflite-int16", "ethosu-int16"])
def test_asymmetric_int16_output_is_refused_and_nothing_written(name: str, tmp_path, capsys) -> None:
    out = tmp_path / "s.json"
    rc = main(["fit", "sigmoid", "--segments", "512", "--target", name, "--param", "output_min=0",
               "--param", "output_max=1", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no zero point" in err and err.count("\n") == 1
    assert not out.exists()
    with pytest.raises(InputError, match="output_zero_point must be 0"):
        targets.get(name).fit(functions.get("sigmoid"), 512, -8, 8,
                              params={"output_scale": 1 / 32768, "output_zero_point": -32768})


def test_symmetric_output_for_sigmoid_has_small_error() -> None:
    t = targets.get("tflite-int16").fit(functions.get("sigmoid"), 512, -8, 8, params={"output_max": 1})
    assert t.error["max_abs"] < 1e-4  # (the asymmetric [0, 1] request measured 0.50)
    assert "integer input grid" in t.error["grid"]


@pytest.mark.parametrize("s_in,z_in,s_o", [(2.0 ** -12, 0, 2.0 ** -15), (0.000317, -1234, 1 / 30000),
                                           (0.01, 32767, 0.5)])
def test_tensor_quantization_maps_exactly(s_in: float, z_in: int, s_o: float) -> None:
    p = resolve_ranges("tflite-int16", targets.get("tflite-int16").params, None, 0.0, 1.0,
                       {"input_scale": s_in, "input_zero_point": z_in, "output_scale": s_o})
    np.testing.assert_allclose(x_of(p, Q), s_in * (Q - z_in), rtol=1e-12, atol=1e-12 * s_in * 65536)
    assert s_out(p) == pytest.approx(s_o, rel=1e-15)
    assert p["output_min"] == -p["output_max"]


def test_scales_and_ranges_give_the_same_fit() -> None:
    T, act = targets.get("tflite-int16"), functions.get("tanh")
    a = T.fit(act, 512, -4, 4, params={"input_scale": 8 / 65536, "input_zero_point": 0,
                                       "output_scale": 1 / 32768})
    b = T.fit(act, 512, -4, 4, params={"input_min": -4, "input_max": 4, "output_max": 1})
    assert a.target == b.target


# -- int8 edge cases (known bugs in other LUT generators) ---------------------------------------------
def test_int8_restricted_range_qmin_minus_127() -> None:
    """A symmetric int8 tensor (qmin = -127, TFLite's weight convention, also used for activations
    by some converters): code -128 never occurs, and every other entry is the nearest code of f."""
    L, act = targets.get("int8-lut"), functions.get("tanh")
    s_i, s_o = 4.0 / 127, 1.0 / 127
    t = L.fit(act, 256, -4, 4, params={"input_scale": s_i, "input_zero_point": 0, "output_scale": s_o,
                                       "output_zero_point": 0})
    cfg = L.check(t)
    q = np.arange(-128, 128)
    want = np.clip(np.round(np.tanh(s_i * q) / s_o), -128, 127)
    assert np.array_equal(L.simulate(cfg, q)[1:], want[1:])  # -127..127: the nearest code
    assert abs(L.dequant_out(cfg, L.simulate(cfg, np.array([-127])))[0] - np.tanh(-4.0)) <= s_o / 2 + 1e-12


def test_int8_small_output_scale_saturates_not_wraps() -> None:
    """sigmoid at output scale 1/4096 (zero point -128): the output range is [0, 0.0623]; every code
    past it must saturate at 127, never wrap to negative codes (a known generator bug)."""
    L, act = targets.get("int8-lut"), functions.get("sigmoid")
    t = L.fit(act, 256, -8, 8, params={"input_scale": 16 / 255, "input_zero_point": 0,
                                       "output_scale": 1 / 4096, "output_zero_point": -128})
    cfg = L.check(t)
    q = np.arange(-128, 128)
    y = act(cfg.input_scale * q)
    want = np.clip(np.round(y * 4096) - 128, -128, 127)
    got = L.simulate(cfg, q)
    assert np.array_equal(got, want)
    assert np.all(np.diff(got) >= 0)  # monotone: no wrap-around
    assert got[-1] == 127


def test_int8_restricted_output_never_produces_minus_128(tmp_path) -> None:
    """tanh at output scale 0.99/127: f(-4) = -0.9993 rounds to code -128.2; a symmetric (restricted,
    qmin = -127) output tensor must get -127, the full range -128."""
    L, act = targets.get("int8-lut"), functions.get("tanh")
    base = {"input_scale": 4.0 / 127, "input_zero_point": 0, "output_scale": 0.99 / 127,
            "output_zero_point": 0}
    full = L.check(L.fit(act, 256, -4, 4, params=base))
    restricted_table = L.fit(act, 256, -4, 4, params={**base, "output_qmin": -127})
    restricted = L.check(restricted_table)
    assert min(full.lut) == -128 and min(restricted.lut) == -127
    assert restricted.lut[1:] == np.maximum(np.array(full.lut[1:]), -127).tolist()
    # the bound is part of the stored config: loading refuses a -128 under it
    d = restricted.to_dict()
    d["lut"] = [-128, *d["lut"][1:]]
    with pytest.raises(InputError, match="lut"):
        L.config_from_dict(d)
    with pytest.raises(InputError, match="output_qmin"):
        L.fit(act, 256, -4, 4, params={**base, "output_qmin": 127})
    src = tmp_path / "r.json"
    restricted_table.save(src)
    assert main(["export", str(src), "--to", "int8-lut", "-o", str(tmp_path / "r.h")]) == 0


def test_tflite_stated_output_range_is_accepted() -> None:
    """TFLite states an int16 output of scale s as [-32768 s, 32767 s]: not an asymmetric request."""
    s = 1 / 32768
    t = targets.get("tflite-int16").fit(functions.get("tanh"), 512, -4, 4,
                                        params={"output_min": -32768 * s, "output_max": 32767 * s})
    assert t.error["max_abs"] < 1e-4


def test_fit_target_summary_and_stored_error_say_what_they_measure(tmp_path, capsys) -> None:
    out = tmp_path / "p.json"
    assert main(["fit", "silu", "--segments", "8", "--target", "npu-ppe", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    d = json.loads(out.read_text())
    e = d["error"]
    assert "hardware output" in e["measures"] and e["points"] == 8192
    # the float coefficients measure something else on the same grid, and the file says how much
    import actiba

    t = actiba.load(out)
    cfg = targets.get("npu-ppe").check(t)
    x = targets.get("npu-ppe").dequant_in(cfg, targets.get("npu-ppe").grid(cfg))
    direct = float(np.max(np.abs(t(x) - functions.get("silu")(x))))
    assert e["float_coefficients_max_abs"] == pytest.approx(direct, rel=1e-12)
    assert e["float_coefficients_max_abs"] != e["max_abs"]
    assert f"{e['max_abs']:.4g}" in err and f"{direct:.4g}" in err and "8192 codes" in err
    assert err.count("\n") == 1
