"""Shared machinery of the int16 interpolating LUT targets (`tflite-int16`, `ethosu-int16`).

Quantization (the one TFLite's `gen_lut` assumes, with ranges as parameters):
  input   x(q) = input_min + (q + 32768) * s_in,  s_in = (input_max - input_min) / 65536,  q in int16;
  output  y    = out * s_out,                     s_out = (output_max - output_min) / 65536 (no zero
          point: int16 tensors are symmetric in TFLite).
The 16-bit input splits into a 9-bit index i = (q + 32768) >> 7 and a 7-bit fraction fr = q & 127;
entry i sits at x_i = input_min + 128 * i * s_in, entry 512 at input_max (only used for interpolation in
the last interval, which reaches q = 32767, fr = 127).
"""

from __future__ import annotations

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
)


def resolve_ranges(name: str, spec: tuple[Param, ...], act: Any, lo: float, hi: float,
                   params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Typed params with derived defaults; InputError naming the key for an empty range."""
    p = parse_params(name, spec, params)
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
