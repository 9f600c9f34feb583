"""`ethosu-int16`: Arm Ethos-U int16 LUT — 512 uint32 words, each an int16 base and an int16 slope.

What we implement, and why:
  * Word encoding (param `encoding`): "vela" (default) stores word = ((slope << 16) + base) mod 2^32,
    exactly as Arm's Vela compiler writes it (`create_lut_int16_op`: `lut[i] = slope + base` with
    `slope = (values[i+1] - values[i]) << 16`). "fields" stores (slope << 16) | (base & 0xFFFF), the
    two halves as plain bit fields. The two agree when base >= 0; for base < 0 the vela word's high
    half reads slope - 1. We decode each word by the inverse of its own encoding, so the simulated
    (base, slope) are the ones that were encoded; which decode the silicon uses cannot be checked here.
  * Datapath: u = q + 32768, i = u >> 7, fr = u & 127 (the same 9+7-bit split as TFLite), and
        out = sat_int16(base_i + ((slope_i * fr + 64) >> 7))       rounding "nearest" (default)
        out = sat_int16(base_i + ((slope_i * fr) >> 7))            rounding "truncate"
    "nearest" is what makes Vela's conversion of a TFLite 513-entry LUT bit-exact with TFLite's
    reference `lut_lookup` (slope_i = lut[i+1] - lut[i]); a test checks that equivalence on all 65536
    inputs. "truncate" is the plain `base + (slope*frac) >> 7` reading, offered for hardware that
    does not round.
  * Quantization: as `tflite-int16` (input/output ranges as parameters, see `lut16`).

Constrained fit: every interval owns its (base, slope) pair — no shared knots, unlike the 513-entry
LUT — so each interval is optimized on its own against the simulator: start from the optimized
tflite-int16 entries and from each interval's own rounded chord, then an integer search of base and
slope (±2 each, repeated until stable) minimising that interval's max error (ties: squared error).
It can only be better than or equal to the tflite-int16 fit converted.

Float table: 512 segments (discontinuous in general), the interpolant before output rounding; the
hardware output is that value rounded to the output step (|diff| <= s_out/2 for "nearest", < s_out
for "truncate").
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
from .lut16 import FR, RANGE_PARAMS, Lut16Target, gen_lut, pwl_table, resolve_ranges, s_out, targets_lsb
from .tflite_int16 import TfliteInt16Config, viterbi


@dataclass
class EthosuInt16Config:
    input_min: float
    input_max: float
    output_min: float
    output_max: float
    rounding: str
    encoding: str
    lut: list[int]  # 512 uint32 words
    name: str = "ethosu-int16"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def encode(base: np.ndarray, slope: np.ndarray, encoding: str) -> np.ndarray:
    b, s = np.asarray(base, dtype=np.int64), np.asarray(slope, dtype=np.int64)
    if encoding == "vela":
        return ((s << 16) + b) & 0xFFFFFFFF
    return ((s & 0xFFFF) << 16) | (b & 0xFFFF)


def decode(words: np.ndarray, encoding: str) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(words, dtype=np.int64)
    base = wrap_int16(w & 0xFFFF)
    high = ((w - base) & 0xFFFFFFFF) >> 16 if encoding == "vela" else w >> 16
    return base, wrap_int16(high)


def datapath(base: np.ndarray, slope: np.ndarray, fr: np.ndarray, rounding: str) -> np.ndarray:
    prod = slope * fr + (64 if rounding == "nearest" else 0)
    return np.clip(base + (prod >> 7), -32768, 32767)


def from_tflite(cfg: TfliteInt16Config, rounding: str = "nearest",
                encoding: str = "vela") -> EthosuInt16Config:
    """Vela's conversion of a 513-entry int16 LUT: slope_i = lut[i+1] - lut[i], base_i = lut[i]."""
    e = np.asarray(cfg.lut, dtype=np.int64)
    if np.any(np.abs(e[1:] - e[:-1]) > 32767):
        raise InputError("LUT slope overflows int16; cannot convert to ethosu-int16")
    words = encode(e[:-1], e[1:] - e[:-1], encoding)
    return EthosuInt16Config(cfg.input_min, cfg.input_max, cfg.output_min, cfg.output_max, rounding,
                             encoding, [int(v) for v in words])


def refine_pairs(base: np.ndarray, slope: np.ndarray, t: np.ndarray, rounding: str,
                 rounds: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Per-interval integer search of (base, slope) minimising (max error, squared error)."""
    base, slope = base.copy(), slope.copy()

    def score(b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        err = np.abs(datapath(b[:, None], s[:, None], FR, rounding) - t)
        return err.max(1), (err * err).sum(1)

    best_m, best_s = score(base, slope)
    for _ in range(rounds):
        cb, cs = base.copy(), slope.copy()
        for db in range(-2, 3):
            for ds in range(-2, 3):
                if db == 0 and ds == 0:
                    continue
                b2 = np.clip(cb + db, -32768, 32767)
                s2 = np.clip(cs + ds, -32768, 32767)
                m, s = score(b2, s2)
                better = (m < best_m - 1e-9) | ((m <= best_m + 1e-9) & (s < best_s - 1e-9))
                base, slope = np.where(better, b2, base), np.where(better, s2, slope)
                best_m, best_s = np.where(better, m, best_m), np.where(better, s, best_s)
        if np.array_equal(cb, base) and np.array_equal(cs, slope):
            break
    return base, slope


class EthosuInt16(Lut16Target):
    name = "ethosu-int16"
    summary = "Arm Ethos-U int16 LUT: 512 x uint32 (int16 slope, int16 base)"
    params = (*RANGE_PARAMS,
              Param("rounding", "choice", "interpolation rounding: nearest ((s*f+64)>>7) or truncate "
                    "((s*f)>>7)", "nearest", choices=("nearest", "truncate")),
              Param("encoding", "choice", "word layout: vela ((slope<<16)+base) or fields "
                    "((slope<<16)|(base&0xFFFF))", "vela", choices=("vela", "fields")))

    def resolve(self, act: Any, lo: float, hi: float, params: Mapping[str, Any] | None) -> dict[str, Any]:
        p = resolve_ranges(self.name, self.params, act, lo, hi, params)
        p.setdefault("rounding", "nearest")
        p.setdefault("encoding", "vela")
        return p

    def make(self, p: Mapping[str, Any], base: np.ndarray, slope: np.ndarray) -> EthosuInt16Config:
        words = encode(base, slope, p["encoding"])
        return EthosuInt16Config(float(p["input_min"]), float(p["input_max"]), float(p["output_min"]),
                                 float(p["output_max"]), p["rounding"], p["encoding"],
                                 [int(v) for v in words])

    def _fit(self, activation: Activation, segments: int = 512, lo: float = -8.0, hi: float = 8.0,
            tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        """`segments`/`tails` do not apply (512 intervals over the whole int16 grid)."""
        p = self.resolve(activation, lo, hi, params)
        t = targets_lsb(activation, p, 1)
        e = viterbi(gen_lut(activation, p), t, "tflite")
        cands = [(e[:-1], e[1:] - e[:-1])]
        b0 = np.clip(np.rint(t[:, 0]), -32768, 32767).astype(np.int64)
        s0 = np.clip(np.rint((t[:, -1] - t[:, 0]) * 128 / 127), -32768, 32767).astype(np.int64)
        cands.append((b0, s0))
        best = None
        for b, s in cands:
            b, s = refine_pairs(b, s, t, p["rounding"])
            err = np.abs(datapath(b[:, None], s[:, None], FR, p["rounding"]) - t)
            m, sq = err.max(1), (err * err).sum(1)
            if best is None:
                best = [b, s, m, sq]
            else:
                better = (m < best[2] - 1e-9) | ((m <= best[2] + 1e-9) & (sq < best[3]))
                best = [np.where(better, b, best[0]), np.where(better, s, best[1]),
                        np.where(better, m, best[2]), np.where(better, sq, best[3])]
        return self.to_table(self.make(p, best[0], best[1]), activation,
                             "per-interval integer search of (base, slope) against the simulator")

    def naive(self, activation: Activation, segments: int = 512, lo: float = -8.0, hi: float = 8.0,
              tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        """Vela's path: TFLite gen_lut entries converted to base/slope words."""
        p = self.resolve(activation, lo, hi, params)
        e = gen_lut(activation, p)
        return self.to_table(self.make(p, e[:-1], e[1:] - e[:-1]), activation, "vela: gen_lut converted")

    def from_table(self, table: Table, params: Mapping[str, Any] | None) -> EthosuInt16Config:
        lo, hi = table.domain if table.domain is not None else (-8.0, 8.0)
        p = self.resolve(table, lo, hi, params)
        e = gen_lut(table, p)
        return self.make(p, e[:-1], e[1:] - e[:-1])

    def config_from_dict(self, d: Mapping[str, Any]) -> EthosuInt16Config:
        keys = ("input_min", "input_max", "output_min", "output_max", "rounding", "encoding")
        need_keys(self.name, d, (*keys, "lut"))
        p = resolve_ranges(self.name, self.params, None, 0.0, 1.0,
                           parse_params(self.name, self.params, {k: d[k] for k in keys}))
        words = int_list(self.name, "lut", d["lut"], 512, 0, 2**32 - 1)
        return EthosuInt16Config(p["input_min"], p["input_max"], p["output_min"], p["output_max"],
                                 p["rounding"], p["encoding"], words)

    def simulate(self, config: EthosuInt16Config, q_input: np.ndarray) -> np.ndarray:
        q = np.asarray(q_input, dtype=np.int64)
        if q.size and (q.min() < -32768 or q.max() > 32767):
            raise InputError(f"{self.name} input must be int16")
        base, slope = decode(np.asarray(config.lut, dtype=np.int64), config.encoding)
        u = q + 32768
        i, fr = u >> 7, u & 127
        return datapath(base[i], slope[i], fr, config.rounding)

    def dequant_out(self, config: EthosuInt16Config, out: np.ndarray) -> np.ndarray:
        return np.asarray(out, dtype=np.int64).astype(np.float64) * s_out(config.to_dict())

    def to_table(self, config: EthosuInt16Config, activation: Activation | None, how: str = "given") -> Table:
        base, slope = decode(np.asarray(config.lut, dtype=np.int64), config.encoding)
        return pwl_table(config.to_dict(), base, slope, activation, config.to_dict(),
                         self.measure(config, activation), {"target": self.name, "fit": how})

    def serialize_c(self, config: EthosuInt16Config, symbol: str = "actiba_table") -> str:
        rows = c_rows([f"0x{v:08X}u" for v in config.lut], 6, "s")
        rnd = " + 64" if config.rounding == "nearest" else ""
        high = ("(int16_t)(uint16_t)((w - (uint32_t)(int32_t)base) >> 16)" if config.encoding == "vela"
                else "(int16_t)(uint16_t)(w >> 16)")
        return (f"/* actiba ethosu-int16: 512 x uint32 words ({config.encoding} encoding, {config.rounding} "
                f"rounding).\n * input  real = {config.input_min!r} + (q + 32768) * "
                f"({config.input_max!r} - {config.input_min!r}) / 65536\n"
                f" * output real = out * ({config.output_max!r} - {config.output_min!r}) / 65536 */\n"
                f"#ifndef {symbol.upper()}_H\n#define {symbol.upper()}_H\n#include <stdint.h>\n\n"
                f"static const uint32_t {symbol}_lut[512] = {{\n{rows}\n}};\n\n"
                f"static inline int16_t {symbol}_lookup(int16_t q) {{\n"
                f"  int32_t u = (int32_t)q + 32768;\n"
                f"  uint32_t w = {symbol}_lut[u >> 7];\n"
                f"  int16_t base = (int16_t)(uint16_t)(w & 0xFFFFu);\n"
                f"  int16_t slope = {high};\n"
                f"  int32_t v = base + (((int32_t)slope * (u & 127){rnd}) >> 7);\n"
                f"  return (int16_t)(v < -32768 ? -32768 : v > 32767 ? 32767 : v);\n}}\n\n#endif\n")
