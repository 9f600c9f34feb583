"""Vendor comparison (slow suite; `python -m pytest -m slow tests/test_targets_vendor.py`, needs the
`vendor` extra): Arm's Vela compiler (PyPI ethos-u-vela) generates the int16 and int8 LUTs it puts
on Ethos-U; its generators are run here on the same quantization and compared with ours over every
entry and every input code: our unoptimised tables (`naive`) must be Vela's, bit for bit, and our
fitted ones at least as accurate on the whole integer grid (the ratio is printed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from actiba import functions, targets

pytestmark = pytest.mark.slow
vela_lut = pytest.importorskip("ethosu.vela.lut")
from ethosu.vela.data_type import DataType  # noqa: E402


class _Quant:
    def __init__(self, scale: float, zero_point: int) -> None:
        self.scale_f32, self.zero_point = scale, zero_point


class _Tensor:
    def __init__(self, scale: float, zero_point: int, dtype) -> None:
        self.quantization, self.dtype = _Quant(scale, zero_point), dtype


class _Op:
    def __init__(self, s_in, z_in, s_out, z_out, dtype) -> None:
        self.ifm, self.ofm, self.name = _Tensor(s_in, z_in, dtype), _Tensor(s_out, z_out, dtype), "op"


def _vela(monkeypatch, make, op, fn) -> list[int]:
    """Vela's LUT values for `fn` (its generator's output, before it is attached to the graph)."""
    monkeypatch.setattr(vela_lut, "convert_to_lut", lambda _op, values, _name: list(values))
    return make(op, fn, "f")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


CASES16 = [("tanh", math.tanh, 4.0 / 32768, 1.0 / 32768), ("sigmoid", _sigmoid, 8.0 / 32768, 1.0 / 32768),
           ("tanh", math.tanh, 3.0 / 32768, 1.0 / 32768)]


@pytest.mark.parametrize("name,fn,s_in,s_out", CASES16)
def test_ethosu_int16_naive_is_velas_lut_and_the_fit_beats_it(monkeypatch, capsys, name, fn, s_in, s_out):
    words = _vela(monkeypatch, vela_lut.create_lut_int16_op, _Op(s_in, 0, s_out, 0, DataType.int16), fn)
    E, act = targets.get("ethosu-int16"), functions.get(name)
    # Vela's (TFLite's) range convention: input to 32767 s, output [-32768 s, 32767 s]
    p = {"input_min": s_in * -32768, "input_max": s_in * 32767, "output_min": s_out * -32768,
         "output_max": s_out * 32767}
    naive = E.check(E.naive(act, 512, 0, 0, params=p))
    assert naive.lut == [w % 2**32 for w in words]  # every one of the 512 words
    # accuracy as the hardware dequantizes: x = s_in * q, y = s_out * out (the tensors' true scales;
    # TFLite's range convention builds its table for a 65535/65536 scale, ours from the scales)
    q = np.arange(-32768, 32768)
    theirs = float(np.max(np.abs(s_out * E.simulate(naive, q) - act(s_in * q))))
    fit = E.check(E.fit(act, 512, 0, 0, params={"input_scale": s_in, "output_scale": s_out}))
    ours = float(np.max(np.abs(s_out * E.simulate(fit, q) - act(s_in * q))))
    assert ours == pytest.approx(E.error(fit, act)["max_abs"], rel=1e-12)  # the same grid and scales
    assert ours <= theirs
    with capsys.disabled():
        print(f"\n{name} int16 s_in={s_in:.3g}: Vela max-abs {theirs:.3e}, actiba fit {ours:.3e} "
              f"({theirs / ours:.2f}x better) over all 65536 codes")


@pytest.mark.parametrize("name,fn,s_in,z_in,s_out,z_out", [
    ("tanh", math.tanh, 4.0 / 128, 0, 1.0 / 128, 0), ("sigmoid", _sigmoid, 8.0 / 128, -3, 1.0 / 256, -128),
    ("sigmoid", _sigmoid, 16.0 / 255, 0, 1.0 / 4096, -128)])
def test_int8_lut_is_velas_on_every_code(monkeypatch, name, fn, s_in, z_in, s_out, z_out):
    vals = _vela(monkeypatch, vela_lut.create_lut_8bit_op, _Op(s_in, z_in, s_out, z_out, DataType.int8), fn)
    L = targets.get("int8-lut")
    cfg = L.check(L.fit(functions.get(name), 256, 0, 1, params={
        "input_scale": s_in, "input_zero_point": z_in, "output_scale": s_out, "output_zero_point": z_out}))
    assert cfg.lut == [int(v) for v in vals]
    assert np.array_equal(L.simulate(cfg, np.arange(-128, 128)), np.array(vals))
