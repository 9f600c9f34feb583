"""Shared machinery of the int16 interpolating LUT targets (`tflite-int16`, `ethosu-int16`).

Quantization (the one TFLite's `gen_lut` assumes, with ranges as parameters):
  input   x(q) = input_min + (q + 32768) * s_in,  s_in = (input_max - input_min) / 65536,  q in int16;
  output  y    = out * s_out,                     s_out = (output_max - output_min) / 65536 (no zero
          point: int16 tensors are symmetric in TFLite, so output_min must be -output_max, or
          -output_max * 32768/32767 as TFLite itself states an int16 scale s: [-32768 s, 32767 s]).
Tensor quantization parameters (input_scale / input_zero_point / output_scale, as a TFLite or TOSA
model states them) are accepted instead of the ranges; `_from_quantization` gives the mapping and how
it differs from TFLite's own generator convention.
The 16-bit input splits into a 9-bit index i = (q + 32768) >> 7 and a 7-bit fraction fr = q & 127;
entry i sits at x_i = input_min + 128 * i * s_in, entry 512 at input_max (only used for interpolation in
the last interval, which reaches q = 32767, fr = 127).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation
from ..table import Table
from .base import Param, Target, check_range, grid_error, parse_params, round_half_away, sample_range

Q = np.arange(-32768, 32768, dtype=np.int64)
RANGE_PARAMS = (
    Param("input_min", "float", "real input at q = -32768 (default: fit range lo)"),
    Param("input_max", "float", "real input at q = +32768, one step past the last code "
          "(default: fit range hi)"),
    Param("output_min", "float", "output range low end; s_out = (output_max - output_min) / 65536 "
          "(default: -output_max)"),
    Param("output_max", "float", "output range high end (default: max |f| on the grid * 32768/32767)"),
    Param("input_scale", "pos", "tensor quantization instead of input_min/max: x(q) = input_scale * "
          "(q - input_zero_point), i.e. input_min = s*(-32768 - z), input_max = s*(32768 - z)"),
    Param("input_zero_point", "int", "input zero point (with input_scale; default 0)", lo=-32768, hi=32767),
    Param("output_scale", "pos", "tensor quantization instead of output_min/max: y = out * "
          "output_scale, i.e. output_max = 32768 * s = -output_min"),
    Param("output_zero_point", "int", "must be 0: int16 outputs are symmetric (as in TFLite)",
          lo=-32768, hi=32767),
)


def _from_quantization(name: str, p: dict[str, Any]) -> None:
    """Turn tensor quantization parameters (scale, zero point, as a TFLite or TOSA model states them)
    into the range convention of this module, in place.

    x(q) = s·(q − z) exactly, so input_min = s·(−32768 − z) and input_max = s·(32768 − z): our
    input_max is one step past the last code. TFLite's own int16 LUT generator (`LUTPopulateInt16`) is
    instead given input_max = s·(32767 − z) and output_max − output_min = 65535·s_out, so its 513 knots
    are (65535/512)·s apart rather than 128·s: its entry i samples f up to one input code away from the
    grid point the hardware interpolates from (entry 512 at 32767·s, not 32768·s). To reproduce
    TFLite's table bit for bit, pass input_min/input_max/output_min/output_max as TFLite computes
    them; with scales, the table is built on the true grid.
    """
    for side, lo_key, hi_key in (("input", "input_min", "input_max"), ("output", "output_min", "output_max")):
        scale, zp = f"{side}_scale", f"{side}_zero_point"
        if scale not in p and zp not in p:
            continue
        if lo_key in p or hi_key in p:
            raise InputError(f"{name}: give the {side} as {scale}/{zp} or as {lo_key}/{hi_key}, not both")
        if scale not in p:
            raise InputError(f"{name} parameter {zp} needs {scale}")
        s, z = float(p.pop(scale)), int(p.pop(zp, 0))
        if side == "output" and z != 0:
            raise InputError(f"{name} output has no zero point (int16 outputs are symmetric, as in "
                             f"TFLite): output_zero_point must be 0, got {z}")
        p[lo_key], p[hi_key] = s * (-32768 - z), s * (32768 - z)


def resolve_ranges(name: str, spec: tuple[Param, ...], act: Any, lo: float, hi: float,
                   params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Typed params with derived defaults; InputError naming the key for an empty range."""
    p = parse_params(name, spec, params)
    _from_quantization(name, p)
    if "input_min" not in p or "input_max" not in p:
        check_range(lo, hi)
    p.setdefault("input_min", float(lo))
    p.setdefault("input_max", float(hi))
    if not p["input_max"] > p["input_min"]:
        raise InputError(f"{name} parameter input_max must be > input_min, got {p['input_max']} "
                         f"<= {p['input_min']}")
    if "output_max" not in p:
        if act is None:
            raise InputError(f"{name} needs output_min and output_max")
        # entry 512 samples f(input_max), one step past the grid: include it in the range
        ylo, yhi = sample_range(act, np.append(x_of(p, Q), p["input_max"]))
        m = max(abs(ylo), abs(yhi)) or 1.0
        p["output_max"] = m * 32768.0 / 32767.0
    p.setdefault("output_min", -p["output_max"])
    if not p["output_max"] > p["output_min"]:
        raise InputError(f"{name} parameter output_max must be > output_min, got {p['output_max']} "
                         f"<= {p['output_min']}")
    symmetric = math.isclose(p["output_min"], -p["output_max"], rel_tol=1e-9, abs_tol=0.0)
    # TFLite's own convention states the range of the int16 codes: [s*-32768, s*32767]
    tflite = math.isclose(p["output_min"], -p["output_max"] * 32768 / 32767, rel_tol=1e-9, abs_tol=0.0)
    if not (symmetric or tflite):
        # out * s_out with out in int16 covers [-(max - min)/2, (max - min)/2): an asymmetric range
        # would silently saturate (sigmoid with [0, 1] stopped at 0.5, max error 0.5)
        half = (p["output_max"] - p["output_min"]) / 2
        raise InputError(f"{name} output has no zero point (int16 outputs are symmetric, as in TFLite): "
                         f"output [{p['output_min']:g}, {p['output_max']:g}] would cover only "
                         f"[{-half:g}, {half:g}); give output_max alone (output_min = -output_max, or "
                         f"-output_max*32768/32767 as TFLite states it), "
                         f"e.g. output_max={max(abs(p['output_min']), abs(p['output_max'])):g}")
    return p


def x_of(p: Mapping[str, Any], q: np.ndarray) -> np.ndarray:
    s_in = (p["input_max"] - p["input_min"]) / 65536.0
    return p["input_min"] + (np.asarray(q, dtype=np.int64) + 32768).astype(np.float64) * s_in


def s_out(p: Mapping[str, Any]) -> float:
    return (p["output_max"] - p["output_min"]) / 65536.0


def gen_lut(f, p: Mapping[str, Any]) -> np.ndarray:
    """TFLite's `gen_lut` for int16 (513 entries), in float64 with C `round` (ties away from zero):
    sample f at the 513 knots and shift each entry by half its midpoint interpolation error."""
    lo, hi = p["input_min"], p["input_max"]
    step = (hi - lo) / 512
    inv = 65536.0 / (p["output_max"] - p["output_min"])
    i = np.arange(512, dtype=np.float64)
    with np.errstate(all="ignore"):
        val, mid, nxt = f(lo + i * step), f(lo + i * step + step / 2), f(lo + (i + 1) * step)
        last = f(np.array([hi]))[0]
    if not (np.all(np.isfinite(val)) and np.all(np.isfinite(mid)) and np.isfinite(last)):
        raise InputError("function is not finite on the LUT input range")
    r = round_half_away
    sample = r(val * inv)
    interp = r((nxt * inv + r(val * inv)) / 2)
    bias = r((interp - r(mid * inv)) / 2)
    lut = np.clip(np.concatenate([sample - bias, [r(last * inv)]]), -32768, 32767)
    return lut.astype(np.int64)


def interp_raw(base: np.ndarray, slope: np.ndarray, fr: np.ndarray) -> np.ndarray:
    """TOSA TABLE int16: (base << 7) + slope * fraction, the 16+7-bit interpolated value."""
    return (base << 7) + slope * fr


def targets_lsb(f, p: Mapping[str, Any], per_lsb: float) -> np.ndarray:
    """f on every grid point in output units (LSBs of size s_out / per_lsb), shaped (512, 128)."""
    with np.errstate(all="ignore"):
        y = np.asarray(f(x_of(p, Q)), dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise InputError("function is not finite on the LUT input grid")
    return (y * (per_lsb / s_out(p))).reshape(512, 128)


FR = np.arange(128, dtype=np.int64)[None, :]


def pwl_table(p: Mapping[str, Any], base: np.ndarray, slope: np.ndarray, act: Activation | None,
              target: dict, err: dict | None, provenance: dict) -> Table:
    """The 512-segment float table of the interpolant before output rounding (see module docs)."""
    s_in = (p["input_max"] - p["input_min"]) / 65536.0
    xi = x_of(p, -32768 + 128 * np.arange(512))
    sl = slope.astype(np.float64) * (s_out(p) / (128.0 * s_in))
    ic = base.astype(np.float64) * s_out(p) - sl * xi
    name = (act.expression or act.name) if act is not None else "custom"
    return Table(xi[1:], sl, ic, function=name, params=dict(act.params) if act else {},
                 domain=(float(x_of(p, [-32768])[0]), float(x_of(p, [32767])[0])), error=err,
                 target=target, provenance=provenance)


class Lut16Target(Target):
    """Base of the int16 LUT targets: range params, grid, error in output LSBs."""

    out_per_lsb = 1  # 128 when the hardware output keeps the 7 fraction bits (TOSA raw int32)

    def grid(self, config: Any) -> np.ndarray:
        return Q.copy()

    def dequant_in(self, config: Any, q: np.ndarray) -> np.ndarray:
        return x_of(config.to_dict(), q)

    def error_lsb(self, config: Any, f) -> float:
        """max |hardware - f| in output LSBs, over all 65536 inputs."""
        t = targets_lsb(f, config.to_dict(), self.per_lsb(config)).reshape(-1)
        return float(np.max(np.abs(self.simulate(config, Q) - t)))

    def per_lsb(self, config: Any) -> int:
        return self.out_per_lsb

    def measure(self, config: Any, act: Activation | None) -> dict | None:
        if act is None:
            return None
        q = Q
        return grid_error(self.dequant_in(config, q), self.dequant_out(config, self.simulate(config, q)),
                          act, f"{self.name} integer input grid (all int16)")
