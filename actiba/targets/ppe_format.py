"""`npu-ppe`'s format: the PPE-style integer datapath we define, its bit-exact simulator, and the
conversions between its integer configs and float tables, JSON and C.

Why apart from the fitter (`npu_ppe.NpuPpe`, which searches configs scored by this simulator): this is
what the hardware computes and what a file must hold; `check`, `export` and the simulator need nothing
else, and a change to the search cannot change what a config means.

Integer semantics we define and simulate (bit-exact, int64 datapath):
  input   q: signed 13-bit (-4096..4095), already requantized; real x = input_scale * (q - input_zero_point)
  range   S <= 8 segments, S+1 boundaries r_0 < r_1 < ... < r_S (9 for 8 segments). The input
          saturates to [r_0, r_S]; segment j holds r_j <= q < r_{j+1} (the last one includes r_S).
  segment slope sign s_j in {-1, 0, +1}, shift k_j in [-frac_bits, max_shift], integer bias b_j
          (bias_bits wide): acc = s_j * (q << (frac_bits + k_j)) + b_j, an int32 accumulator with
          frac_bits fraction bits, so the real slope is s_j * 2^k_j (slope 0, ±1/2^frac_bits .. ±2^max_shift).
  output  requantization by a fixed-point multiplier (m, n), m < 2^multiplier_bits, with
          m / 2^n ~= input_scale / (output_scale * 2^frac_bits):
              out = sat_int8(output_zero_point + round(acc * m / 2^n))
          rounding "half-up" = (acc*m + 2^(n-1)) >> n (add-half-and-shift, ties to +inf; default) or
          "half-away" (ties away from zero). int8 or uint8 output; real y = output_scale * (out - zp).

Second encoding: Intel's open NPU compiler states real PPE tables as PWLTableEntry{range, shift,
bias, floatRange, postShift}; `ppe_pwl` reads and evaluates that shape (semantics derived from the
compiler's own LeakyReLU tables) and emits it from a config here when both compute the same
(`--param format=pwl-entry`: slopes >= 0, power-of-two requantization, half-up rounding).

Float table: the pre-requantization line of every segment, y = (m/2^n) * output_scale * acc(q), written in
x (so slopes are s_j * 2^k_j up to the multiplier's rounding). On the grid the simulator output is that
value rounded to the output step: |dequant(out) - table(x(q))| <= output_scale/2 wherever the output does
not saturate (tested). Where r_0 > -4096 or r_S < 4095 the table gets constant end segments (input
saturation); beyond the grid its outer segments extend linearly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation
from ..table import Table
from .base import (
    INT32_MAX,
    INT32_MIN,
    Param,
    Target,
    c_rows,
    default_affine,
    grid_error,
    int_list,
    need_keys,
    parse_params,
    round_shift,
)

QMIN, QMAX = -4096, 4095
MAX_SEGMENTS = 8
OUT = {"int8": (-128, 127), "uint8": (0, 255)}
Q = np.arange(QMIN, QMAX + 1, dtype=np.int64)
FIT_ONLY = ("monotone",)  # options of the fitter, not registers of the hardware


@dataclass
class PpeConfig:
    input_scale: float
    input_zero_point: int
    output_dtype: str
    output_scale: float
    output_zero_point: int
    frac_bits: int
    max_shift: int
    bias_bits: int
    multiplier_bits: int
    rounding: str
    multiplier: int
    post_shift: int
    boundaries: list[int]
    signs: list[int]
    shifts: list[int]
    biases: list[int]
    name: str = "npu-ppe"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def segments(self) -> int:
        return len(self.signs)

    @property
    def acc_unit(self) -> float:
        """Real output value of one accumulator unit (after the fixed-point multiplier)."""
        return self.output_scale * self.multiplier / 2.0 ** self.post_shift


def multiplier(input_scale: float, output_scale: float, frac_bits: int, bits: int) -> tuple[int, int]:
    """(m, n) with m / 2^n ~= input_scale / (output_scale 2^frac_bits), 2^(bits-1) <= m < 2^bits."""
    ratio = input_scale / (output_scale * 2.0 ** frac_bits)
    n = bits - 1 - math.floor(math.log2(ratio))
    m = round(ratio * 2.0 ** n)
    if m >= 2 ** bits:
        m, n = m // 2, n - 1
    if not 1 <= n <= 62:
        raise InputError(f"npu-ppe: input_scale/output_scale = {input_scale / output_scale:.3g} cannot be "
                         f"requantized with frac_bits={frac_bits} (post shift {n} outside [1, 62])")
    return int(m), int(n)


def segment_index(cfg: PpeConfig, qc: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(cfg.boundaries[1:-1], dtype=np.int64), qc, side="right")


def accumulate(cfg: PpeConfig, q: np.ndarray) -> np.ndarray:
    """Saturated input -> segment -> int accumulator (int64 array)."""
    b = cfg.boundaries
    qc = np.clip(q, b[0], b[-1])
    j = segment_index(cfg, qc)
    sh = cfg.frac_bits + np.asarray(cfg.shifts, dtype=np.int64)[j]
    return np.asarray(cfg.signs, dtype=np.int64)[j] * (qc << sh) + np.asarray(cfg.biases, dtype=np.int64)[j]


def requantize(cfg: PpeConfig, acc: np.ndarray) -> np.ndarray:
    lo, hi = OUT[cfg.output_dtype]
    v = round_shift(acc * cfg.multiplier, cfg.post_shift, cfg.rounding)
    return np.clip(v + cfg.output_zero_point, lo, hi)


class PpeFormat(Target):
    """npu-ppe without its fitter: parameters, configs, the simulator, float tables and C (the
    constrained fit and the naive baseline are `npu_ppe.NpuPpe`, the registered target)."""

    name = "npu-ppe"
    summary = "PPE-style <= 8-segment table, power-of-two slopes, integer biases, int8/uint8 output"
    params = (
        Param("input_scale", "pos", "real value of one 13-bit input step (default: fit range / 8191)"),
        Param("input_zero_point", "int", "input code of real 0 (default: fit range lo at -4096)",
              lo=-(2**15), hi=2**15),
        Param("output_dtype", "choice", "output integer type", "int8", choices=("int8", "uint8")),
        Param("output_scale", "pos", "real value of one output step (default: f's range on the grid / 255)"),
        Param("output_zero_point", "int", "output code of real 0", lo=-(2**15), hi=2**15),
        Param("frac_bits", "int", "accumulator fraction bits; smallest slope 2^-frac_bits", 10, lo=0, hi=16),
        Param("max_shift", "int", "largest slope exponent: slopes up to 2^max_shift", 4, lo=0, hi=12),
        Param("bias_bits", "int", "signed bias width", 32, lo=2, hi=32),
        Param("multiplier_bits", "int", "requantization multiplier width", 15, lo=2, hi=31),
        Param("rounding", "choice", "requantization rounding", "half-up", choices=("half-up", "half-away")),
        Param("monotone", "choice", "auto: keep the output monotone where f is monotone on the grid "
              "(no step back at any boundary; costs accuracy with 8 power-of-two segments)",
              "off", choices=("auto", "off")),
    )

    # -- parameters -------------------------------------------------------------------------------
    def resolve(self, act: Any, lo: float, hi: float, params: Mapping[str, Any] | None) -> dict[str, Any]:
        p = parse_params(self.name, self.params, params)
        for prm in self.params:
            if prm.default is not None:
                p.setdefault(prm.name, prm.default)
        default_affine(self.name, p, act, lo, hi, (QMIN, QMAX), OUT[p["output_dtype"]])
        p["multiplier"], p["post_shift"] = multiplier(p["input_scale"], p["output_scale"], p["frac_bits"],
                                                      p["multiplier_bits"])
        if p["frac_bits"] + p["max_shift"] + 12 > 31:
            raise InputError(f"{self.name}: frac_bits + max_shift must be <= 19 so q << shift fits int32, "
                             "got "
                             f"{p['frac_bits']} + {p['max_shift']}")
        return p

    def make(self, p: Mapping[str, Any], boundaries, signs, shifts, biases) -> PpeConfig:
        keys = [f.name for f in self.params if f.name not in FIT_ONLY] + ["multiplier", "post_shift"]
        return PpeConfig(**{k: p[k] for k in keys}, boundaries=[int(v) for v in boundaries],
                         signs=[int(v) for v in signs], shifts=[int(v) for v in shifts],
                         biases=[int(v) for v in biases])

    def quantize_float(self, ft: Table, p: Mapping[str, Any], snap: bool = True) -> PpeConfig:
        """A float table as PPE integers (the export path). Without `snap`, every slope must already
        be 0 or ±2^k with k in range (InputError naming the segment otherwise)."""
        if ft.segments > MAX_SEGMENTS:
            raise InputError(f"npu-ppe allows at most {MAX_SEGMENTS} segments; the table has {ft.segments}")
        s_in, zp = p["input_scale"], p["input_zero_point"]
        inner = np.clip(np.rint(ft.breakpoints / s_in + zp), QMIN + 1, QMAX).astype(np.int64)
        bounds = [QMIN, *inner.tolist(), QMAX]
        for j in range(1, len(bounds)):
            if bounds[j] <= bounds[j - 1]:
                raise InputError(f"npu-ppe: breakpoints {j - 1} and {j} fall on the same input code; "
                                 "the segments are narrower than the input step")
        base = self.make(p, bounds, [0] * ft.segments, [0] * ft.segments, [0] * ft.segments)
        u = base.acc_unit
        signs, shifts, biases = [], [], []
        bmin, bmax = -(2 ** (p["bias_bits"] - 1)), 2 ** (p["bias_bits"] - 1) - 1
        for j in range(ft.segments):
            a = float(ft.slopes[j])
            if a == 0 or abs(a) < 2.0 ** (-p["frac_bits"] - 1):
                if not snap and a != 0:  # not silently zeroed: 0 is not the table's slope
                    raise InputError(f"npu-ppe: segment {j} slope {a:g} is too small to represent "
                                     f"(smallest nonzero slope 2^-{p['frac_bits']}); pass --param "
                                     "snap=true to round it to 0")
                sg, k = 0, 0
            else:
                k = int(np.clip(round(math.log2(abs(a))), -p["frac_bits"], p["max_shift"]))
                sg = 1 if a > 0 else -1
                if not snap and sg * 2.0 ** k != a:
                    raise InputError(f"npu-ppe: segment {j} slope {a:g} is not 0 or ±2^k with k in "
                                     f"[{-p['frac_bits']}, {p['max_shift']}]; fit with --target npu-ppe or "
                                     "pass --param snap=true")
            qa, qb = bounds[j], bounds[j + 1]
            qm = 0.5 * (qa + qb)
            xm = s_in * (qm - zp)
            ym = float(ft(xm))
            sigma = sg * 2 ** (p["frac_bits"] + k)
            b = int(np.clip(round(ym / u - sigma * qm), bmin, bmax))
            signs.append(sg)
            shifts.append(k)
            biases.append(b)
        return self.make(p, bounds, signs, shifts, biases)

    def from_table(self, table: Table, params: Mapping[str, Any] | None, snap: bool = False) -> PpeConfig:
        lo, hi = table.domain if table.domain is not None else (-8.0, 8.0)
        return self.quantize_float(table, self.resolve(table, lo, hi, params), snap=snap)

    # -- config / simulation ----------------------------------------------------------------------
    def config_from_dict(self, d: Mapping[str, Any]) -> PpeConfig:
        pkeys = tuple(f.name for f in self.params if f.name not in FIT_ONLY)
        need_keys(self.name, d, (*pkeys, "multiplier", "post_shift", "boundaries", "signs", "shifts",
                                 "biases"))
        p = parse_params(self.name, self.params, {k: d[k] for k in pkeys})
        m, n = multiplier(p["input_scale"], p["output_scale"], p["frac_bits"], p["multiplier_bits"])
        if (d["multiplier"], d["post_shift"]) != (m, n):
            raise InputError(f"npu-ppe multiplier/post_shift ({d['multiplier']}, {d['post_shift']}) do not "
                             f"match input_scale/output_scale (expected ({m}, {n}))")
        signs = int_list(self.name, "signs", d["signs"], None, -1, 1)
        S = len(signs)
        if not 1 <= S <= MAX_SEGMENTS:
            raise InputError(f"npu-ppe allows 1..{MAX_SEGMENTS} segments, the table has {S}")
        bounds = int_list(self.name, "boundaries", d["boundaries"], S + 1, QMIN, QMAX)
        for j in range(S):
            if not bounds[j] < bounds[j + 1]:
                raise InputError(f"npu-ppe boundaries must be strictly ascending: boundaries[{j}]="
                                 f"{bounds[j]} >= boundaries[{j + 1}]={bounds[j + 1]}")
        shifts = int_list(self.name, "shifts", d["shifts"], S, -p["frac_bits"], p["max_shift"])
        bb = 2 ** (p["bias_bits"] - 1)
        biases = int_list(self.name, "biases", d["biases"], S, -bb, bb - 1)
        cfg = self.make({**p, "multiplier": m, "post_shift": n}, bounds, signs, shifts, biases)
        for j in range(S):
            ends = np.array([bounds[j], bounds[j + 1]], dtype=np.int64)
            acc = signs[j] * (ends << (p["frac_bits"] + shifts[j])) + biases[j]
            if acc.min() < INT32_MIN or acc.max() > INT32_MAX:
                raise InputError(f"npu-ppe segment {j}: accumulator overflows int32 on its range")
        return cfg

    def grid(self, config: PpeConfig) -> np.ndarray:
        return Q.copy()

    def simulate(self, config: PpeConfig, q_input: np.ndarray) -> np.ndarray:
        q = np.asarray(q_input, dtype=np.int64)
        if q.size and (q.min() < QMIN or q.max() > QMAX):
            raise InputError(f"{self.name} input must be a signed 13-bit integer ({QMIN}..{QMAX})")
        return requantize(config, accumulate(config, q))

    def to_table(self, config: PpeConfig, activation: Activation | None, how: str = "given") -> Table:
        u, s_in, zp = config.acc_unit, config.input_scale, config.input_zero_point
        sig = np.array([s * 2.0 ** (config.frac_bits + k) for s, k in zip(config.signs, config.shifts,
                                                                               strict=True)])
        b = np.asarray(config.biases, dtype=np.float64)
        slopes = u * sig / s_in
        icepts = u * (sig * zp + b)
        x_b = s_in * (np.asarray(config.boundaries, dtype=np.float64) - zp)
        bps = list(x_b[1:-1])
        if config.boundaries[0] > QMIN:  # input saturates inside the grid: constant left segment
            bps.insert(0, x_b[0])
            slopes = np.concatenate([[0.0], slopes])
            icepts = np.concatenate([[slopes[1] * x_b[0] + icepts[0]], icepts])
        if config.boundaries[-1] < QMAX:
            bps.append(x_b[-1])
            slopes = np.concatenate([slopes, [0.0]])
            icepts = np.concatenate([icepts, [slopes[-2] * x_b[-1] + icepts[-1]]])
        err = None
        if activation is not None:
            err = grid_error(self.dequant_in(config, Q), self.dequant_out(config, self.simulate(config, Q)),
                             activation, f"{self.name} integer input grid (13-bit)")
        name = (activation.expression or activation.name) if activation is not None else "custom"
        return Table(np.array(bps), slopes, icepts, function=name,
                     params=dict(activation.params) if activation else {},
                     domain=(float(s_in * (QMIN - zp)), float(s_in * (QMAX - zp))), error=err,
                     target=config.to_dict(), provenance={"target": self.name, "fit": how})

    def serialize_c(self, config: PpeConfig, symbol: str = "actiba_table") -> str:
        S = config.segments
        lo, hi = OUT[config.output_dtype]
        otype = "int8_t" if config.output_dtype == "int8" else "uint8_t"
        half = f"((int64_t)1 << {config.post_shift - 1})"
        if config.rounding == "half-up":
            rq = f"int64_t v = (p + {half}) >> {config.post_shift};"
        else:
            rq = (f"int64_t v = p < 0 ? -((-p + {half}) >> {config.post_shift}) : "
                  f"(p + {half}) >> {config.post_shift};")
        return (f"/* actiba npu-ppe: {S} segments, power-of-two slopes, int32 accumulator with "
                f"{config.frac_bits} fraction bits.\n"
                f" * input  real = {config.input_scale!r} * (q - {config.input_zero_point}), "
                f"q signed 13-bit\n"
                f" * output real = {config.output_scale!r} * (out - {config.output_zero_point}) "
                f"({config.output_dtype}); requant multiplier {config.multiplier} / 2^{config.post_shift}, "
                f"rounding {config.rounding} */\n"
                f"#ifndef {symbol.upper()}_H\n#define {symbol.upper()}_H\n#include <stdint.h>\n\n"
                f"#define {symbol.upper()}_SEGMENTS {S}\n"
                f"static const int16_t {symbol}_boundaries[{S + 1}] = "
                f"{{{c_rows(config.boundaries, 16, 'd')}}};\n"
                f"static const int8_t {symbol}_signs[{S}] = {{{c_rows(config.signs, 16, 'd')}}};\n"
                f"static const int8_t {symbol}_shifts[{S}] = {{{c_rows(config.shifts, 16, 'd')}}};\n"
                f"static const int32_t {symbol}_biases[{S}] = {{{c_rows(config.biases, 8, 'd')}}};\n\n"
                f"static inline {otype} {symbol}_eval(int32_t q) {{\n"
                f"  int j = 0;\n"
                f"  if (q < {symbol}_boundaries[0]) q = {symbol}_boundaries[0];\n"
                f"  if (q > {symbol}_boundaries[{S}]) q = {symbol}_boundaries[{S}];\n"
                f"  while (j < {S - 1} && q >= {symbol}_boundaries[j + 1]) j++;\n"
                f"  int64_t acc = (int64_t){symbol}_signs[j] * ((int64_t)q * ((int64_t)1 << "
                f"({config.frac_bits} + {symbol}_shifts[j]))) + {symbol}_biases[j];\n"
                f"  int64_t p = acc * {config.multiplier};\n"
                f"  {rq}\n"
                f"  v += {config.output_zero_point};\n"
                f"  return ({otype})(v < {lo} ? {lo} : v > {hi} ? {hi} : v);\n}}\n\n#endif\n")
