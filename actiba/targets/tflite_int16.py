"""`tflite-int16`: TFLite / TOSA TABLE int16 — 513 int16 entries, 7-bit linear interpolation.

Simulated semantics (all 65536 inputs, integer arithmetic), with u = q + 32768:
  i = u >> 7, fr = u & 127, base = lut[i], slope = (int16)(lut[i+1] - lut[i])
  mode "tflite" (default; TFLite `lut_lookup_with_interpolation`, int16 out):
      out = (int16)(base + ((slope * fr + 64) >> 7))          y = out * s_out
  mode "tosa" (TOSA TABLE int16, int32 out before the following RESCALE):
      out = (base << 7) + slope * fr                          y = out * s_out / 128
The last interval (i = 511) interpolates towards lut[512] = f(input_max).

Constrained fit: start from TFLite's own `gen_lut` entries, then integer coordinate descent on the 513
entries against the simulator: entries of one parity move together (each touches two intervals, so the
moves are independent), a move is kept if it lowers the max error of its two intervals (ties: lower
squared error). The global max error never increases, and the result is never worse than gen_lut.

Float table: 512 segments, the interpolant before output rounding. In "tosa" mode it equals the
dequantized hardware output at every grid point up to float64 rounding (|diff| <= 1e-12 * scale); in
"tflite" mode the hardware output is that value rounded half-up to the output step, so they differ by at
most s_out / 2. Outside [input_min, input_max) the outer segments extend linearly (the hardware would
see a saturated input).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation
from ..table import Table
from .base import Param, c_rows, int_list, need_keys, parse_params, wrap_int16
from .lut16 import (
    FR,
    RANGE_PARAMS,
    Lut16Target,
    gen_lut,
    interp_raw,
    pwl_table,
    resolve_ranges,
    s_out,
    targets_lsb,
)


@dataclass
class TfliteInt16Config:
    input_min: float
    input_max: float
    output_min: float
    output_max: float
    mode: str
    lut: list[int]
    name: str = "tflite-int16"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lookup(lut: np.ndarray, q: np.ndarray, mode: str) -> np.ndarray:
    """The integer datapath of the module docstring (int64 arrays in, int64 out)."""
    u = q + 32768
    i, fr = u >> 7, u & 127
    base = lut[i]
    if mode == "tosa":
        return interp_raw(base, lut[i + 1] - base, fr)
    slope = wrap_int16(lut[i + 1] - base)
    return wrap_int16(base + ((slope * fr + 64) >> 7))


def interval_out(e: np.ndarray, mode: str) -> np.ndarray:
    """Hardware output for entries `e` as a (512, 128) array (no int16 wrap: the fit never wraps)."""
    base, slope = e[:-1, None], (e[1:] - e[:-1])[:, None]
    raw = interp_raw(base, slope, FR)
    return raw if mode == "tosa" else (raw + 64) >> 7


def descend(e: np.ndarray, t: np.ndarray, mode: str, sweeps: int = 40) -> np.ndarray:
    """Integer coordinate descent on the entries, minimising per-pair max error (see module docs)."""
    e = e.copy()

    def scores(ent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        err = np.abs(interval_out(ent, mode) - t)
        bad = np.abs(ent[1:] - ent[:-1]) > 32767
        mx, sq = err.max(1), (err * err).sum(1)
        mx[bad] = np.inf
        return mx, sq

    def local(mx: np.ndarray, sq: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lm = np.where(j > 0, mx[np.maximum(j - 1, 0)], -np.inf)
        rm = np.where(j < 512, mx[np.minimum(j, 511)], -np.inf)
        ls = np.where(j > 0, sq[np.maximum(j - 1, 0)], 0.0)
        rs = np.where(j < 512, sq[np.minimum(j, 511)], 0.0)
        return np.maximum(lm, rm), ls + rs

    for _ in range(sweeps):
        moved = 0
        for parity in (0, 1):
            j = np.arange(parity, 513, 2)
            best_m, best_s = local(*scores(e), j)
            best_d = np.zeros(j.size, dtype=np.int64)
            for d in (-1, 1, -2, 2, -4, 4):
                e2 = e.copy()
                e2[j] = np.clip(e[j] + d, -32768, 32767)
                m, s = local(*scores(e2), j)
                better = (m < best_m - 1e-9) | ((m <= best_m + 1e-9) & (s < best_s - 1e-9))
                best_m, best_s = np.where(better, m, best_m), np.where(better, s, best_s)
                best_d = np.where(better, d, best_d)
            moved += int(np.count_nonzero(best_d))
            e[j] = np.clip(e[j] + best_d, -32768, 32767)
        if moved == 0:
            break
    return e


class TfliteInt16(Lut16Target):
    name = "tflite-int16"
    summary = "513-entry int16 LUT with 7-bit interpolation (TFLite / TOSA TABLE)"
    params = (*RANGE_PARAMS,
              Param("mode", "choice", "tflite: int16 output rounded from the interpolation; tosa: the "
                    "raw int32 (base<<7)+slope*frac before RESCALE", "tflite", choices=("tflite", "tosa")))

    def resolve(self, act: Any, lo: float, hi: float, params: Mapping[str, Any] | None) -> dict[str, Any]:
        p = resolve_ranges(self.name, self.params, act, lo, hi, params)
        p.setdefault("mode", "tflite")
        return p

    def make(self, p: Mapping[str, Any], lut: np.ndarray) -> TfliteInt16Config:
        return TfliteInt16Config(float(p["input_min"]), float(p["input_max"]), float(p["output_min"]),
                                 float(p["output_max"]), p["mode"], [int(v) for v in lut])

    def per_lsb(self, config: Any) -> int:
        return 128 if config.mode == "tosa" else 1

    def fit(self, activation: Activation, segments: int = 512, lo: float = -8.0, hi: float = 8.0,
            tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        """`segments`/`tails` do not apply (512 intervals over the whole int16 grid)."""
        p = self.resolve(activation, lo, hi, params)
        e0 = gen_lut(activation, p)
        t = targets_lsb(activation, p, 128 if p["mode"] == "tosa" else 1)
        cfg = self.make(p, descend(e0, t, p["mode"]))
        return self.to_table(cfg, activation, "gen_lut start + integer coordinate descent on max error")

    def naive(self, activation: Activation, segments: int = 512, lo: float = -8.0, hi: float = 8.0,
              tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        """TFLite's own generator (`gen_lut`), unoptimized."""
        p = self.resolve(activation, lo, hi, params)
        return self.to_table(self.make(p, gen_lut(activation, p)), activation, "tflite gen_lut")

    def from_table(self, table: Table, params: Mapping[str, Any] | None) -> TfliteInt16Config:
        lo, hi = table.domain if table.domain is not None else (-8.0, 8.0)
        p = self.resolve(table, lo, hi, params)
        return self.make(p, gen_lut(table, p))

    def config_from_dict(self, d: Mapping[str, Any]) -> TfliteInt16Config:
        keys = ("input_min", "input_max", "output_min", "output_max", "mode")
        need_keys(self.name, d, (*keys, "lut"))
        p = parse_params(self.name, self.params, {k: d[k] for k in keys})
        p = resolve_ranges(self.name, self.params, None, 0.0, 1.0, p)
        lut = int_list(self.name, "lut", d["lut"], 513, -32768, 32767)
        for i in range(512):
            if abs(lut[i + 1] - lut[i]) > 32767:
                raise InputError(f"{self.name} lut[{i + 1}] - lut[{i}] = {lut[i + 1] - lut[i]} overflows "
                                 f"the int16 slope")
        return self.make(p, np.array(lut))

    def simulate(self, config: TfliteInt16Config, q_input: np.ndarray) -> np.ndarray:
        q = np.asarray(q_input, dtype=np.int64)
        if q.size and (q.min() < -32768 or q.max() > 32767):
            raise InputError(f"{self.name} input must be int16")
        return lookup(np.asarray(config.lut, dtype=np.int64), q, config.mode)

    def dequant_out(self, config: TfliteInt16Config, out: np.ndarray) -> np.ndarray:
        return np.asarray(out, dtype=np.int64).astype(np.float64) * (s_out(config.to_dict())
                                                                    / self.per_lsb(config))

    def to_table(self, config: TfliteInt16Config, activation: Activation | None,
                 how: str = "given") -> Table:
        e = np.asarray(config.lut, dtype=np.int64)
        return pwl_table(config.to_dict(), e[:-1], e[1:] - e[:-1], activation, config.to_dict(),
                         self.measure(config, activation), {"target": self.name, "fit": how})

    def serialize_c(self, config: TfliteInt16Config, symbol: str = "actiba_table") -> str:
        rows = c_rows(config.lut, 12, "6d")
        if config.mode == "tosa":
            ret, body = "int32_t", "return ((int32_t)base << 7) + (int32_t)slope * fr;"
        else:
            ret, body = "int16_t", "return (int16_t)(base + (((int32_t)slope * fr + 64) >> 7));"
        slope_t = "int32_t" if config.mode == "tosa" else "int16_t"
        return (f"/* actiba tflite-int16 ({config.mode}): 513-entry int16 LUT, 7-bit interpolation.\n"
                f" * input  real = {config.input_min!r} + (q + 32768) * "
                f"({config.input_max!r} - {config.input_min!r}) / 65536\n"
                f" * output real = out * ({config.output_max!r} - {config.output_min!r}) / 65536"
                f"{' / 128' if config.mode == 'tosa' else ''} */\n"
                f"#ifndef {symbol.upper()}_H\n#define {symbol.upper()}_H\n#include <stdint.h>\n\n"
                f"static const int16_t {symbol}_lut[513] = {{\n{rows}\n}};\n\n"
                f"static inline {ret} {symbol}_lookup(int16_t q) {{\n"
                f"  int32_t u = (int32_t)q + 32768;\n"
                f"  int32_t i = u >> 7, fr = u & 127;\n"
                f"  int16_t base = {symbol}_lut[i];\n"
                f"  {slope_t} slope = ({slope_t})({symbol}_lut[i + 1] - base);\n"
                f"  {body}\n}}\n\n#endif\n")
