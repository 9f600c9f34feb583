"""`tflite-int16`: TFLite / TOSA TABLE int16 — 513 int16 entries, 7-bit linear interpolation.

Simulated semantics (all 65536 inputs, integer arithmetic), with u = q + 32768:
  i = u >> 7, fr = u & 127, base = lut[i], slope = (int16)(lut[i+1] - lut[i])
  mode "tflite" (default; TFLite `lut_lookup_with_interpolation`, int16 out):
      out = (int16)(base + ((slope * fr + 64) >> 7))          y = out * s_out
  mode "tosa" (TOSA TABLE int16, int32 out before the following RESCALE):
      out = (base << 7) + slope * fr                          y = out * s_out / 128
The last interval (i = 511) interpolates towards lut[512] = f(input_max).

Constrained fit: every interval's error depends only on its two entries, so the LUT is a chain and the
best LUT within ±4 codes of TFLite's own `gen_lut` entries is found exactly by dynamic programming over
the simulator's integer output: a min-max Viterbi pass gives the smallest achievable max error, a second
pass the least squared error among LUTs reaching it; re-centred while entries sit on the window edge.
gen_lut itself lies in the window, so the fit is never worse than gen_lut.

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


def representable(e: np.ndarray) -> np.ndarray:
    """`e` with every step lut[i+1] - lut[i] brought into the int16 slope range [-32767, 32767].

    gen_lut (and any sampling of a near-step function: tanh(1000x) on [-8, 8] gives lut[255] = -32768,
    lut[256] = 8192) can leave a step the format cannot hold, and the ±4 window around it then holds
    no valid LUT at all. Each entry is moved the least that satisfies its left neighbour, left to right.
    """
    out = np.asarray(e, dtype=np.int64).copy()
    for i in range(out.size - 1):  # (a moved entry may break the next step: one pass, in order)
        out[i + 1] = np.clip(out[i + 1], out[i] - 32767, out[i] + 32767)
    return out


def viterbi(e0: np.ndarray, t: np.ndarray, mode: str, width: int = 4, rounds: int = 3) -> np.ndarray:
    """Exact minimax over all LUTs within ±width of `e0` per entry (ties: least squared error).

    Interval i depends only on (e_i, e_{i+1}), so the LUT is a chain: a min-max Viterbi pass finds the
    smallest achievable max error, a second (sum of squares, intervals above that max forbidden) picks
    the best such LUT. Re-centred and repeated while entries end on the window edge.
    """
    e = representable(e0)  # so the window always holds a valid LUT (e itself)
    d = np.arange(-width, width + 1)
    for _ in range(rounds):
        c = np.clip(e[:, None] + d[None, :], -32768, 32767)  # (513, K) candidates
        K = d.size
        cmax, csq = np.empty((512, K, K)), np.empty((512, K, K))
        for s0 in range(0, 512, 64):  # chunks keep the (64, K, K, 128) temporaries small
            base = c[s0:s0 + 64, :, None, None]
            slope = c[s0 + 1:s0 + 65, None, :, None] - base
            raw = interp_raw(base, slope, FR[None, None])
            out = raw if mode == "tosa" else (raw + 64) >> 7
            err = np.abs(out - t[s0:s0 + 64, None, None, :])
            cmax[s0:s0 + 64] = np.where(np.abs(slope[..., 0]) > 32767, np.inf, err.max(3))
            csq[s0:s0 + 64] = (err * err).sum(3)
        # pass 1: min over paths of the max interval error
        V = np.zeros(K)
        for i in range(512):
            V = np.min(np.maximum(V[:, None], cmax[i]), axis=0)
        if not np.isfinite(V.min()):  # pragma: no cover - e is in the window and representable
            raise AssertionError("no representable LUT in the window")
        tau = float(V.min()) * (1 + 1e-12) + 1e-12
        # pass 2: least squared error among paths whose every interval is <= tau
        W = np.zeros(K)
        arg = np.zeros((512, K), dtype=np.int64)
        for i in range(512):
            tot = W[:, None] + np.where(cmax[i] <= tau, csq[i], np.inf)
            arg[i] = np.argmin(tot, axis=0)
            W = tot[arg[i], np.arange(K)]
        k = int(np.argmin(W))
        path = [k]
        for i in range(511, -1, -1):
            k = int(arg[i, k])
            path.append(k)
        path.reverse()
        new = c[np.arange(513), path]
        edge = np.any((np.array(path) == 0) | (np.array(path) == K - 1))
        e = new
        if not edge:
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

    def _fit(self, activation: Activation, segments: int = 512, lo: float = -8.0, hi: float = 8.0,
            tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        """`segments`/`tails` do not apply (512 intervals over the whole int16 grid)."""
        p = self.resolve(activation, lo, hi, params)
        e0 = gen_lut(activation, p)
        t = targets_lsb(activation, p, 128 if p["mode"] == "tosa" else 1)
        cfg = self.make(p, viterbi(e0, t, p["mode"]))
        return self.to_table(cfg, activation, "gen_lut start + exact minimax DP over entries within ±4 codes")

    def naive(self, activation: Activation, segments: int = 512, lo: float = -8.0, hi: float = 8.0,
              tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        """TFLite's own generator (`gen_lut`), unoptimized."""
        p = self.resolve(activation, lo, hi, params)
        return self.to_table(self.make(p, gen_lut(activation, p)), activation, "tflite gen_lut")

    def from_table(self, table: Table, params: Mapping[str, Any] | None) -> TfliteInt16Config:
        lo, hi = table.domain if table.domain is not None else (-8.0, 8.0)
        p = self.resolve(table, lo, hi, params)
        return self.make(p, representable(gen_lut(table, p)))

    def config_from_dict(self, d: Mapping[str, Any]) -> TfliteInt16Config:
        keys = ("input_min", "input_max", "output_min", "output_max", "mode")
        need_keys(self.name, d, (*keys, "lut"))
        p = parse_params(self.name, self.params, {k: d[k] for k in keys})
        p = resolve_ranges(self.name, self.params, None, 0.0, 1.0, p)
        lut = int_list(self.name, "lut", d["lut"], 513, -32768, 32767)
        for i in range(512):
            # the slope is an int16 in both datapaths: TOSA REQUIREs it in [-32768, 32767] (its reference
            # model accepts a step of exactly -32768 and calls +32768 UNPREDICTABLE); our fits stay
            # within +-32767, the LUTs they write are a subset of what is read here
            if not -32768 <= lut[i + 1] - lut[i] <= 32767:
                raise InputError(f"{self.name} lut[{i + 1}] - lut[{i}] = {lut[i + 1] - lut[i]} overflows "
                                 f"the int16 slope [-32768, 32767]")
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
