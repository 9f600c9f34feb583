"""`int8-lut`: a 256-entry direct lookup table for int8/uint8 tensors (TFLite/TOSA TABLE int8, Ethos-U).

Hardware: out = lut[q - qmin] for every input integer q of the input type. Entry i holds
clamp(zp_out + round(f(s_in * (q_i - zp_in)) / s_out)). Because each entry is looked up on its own,
rounding f to the nearest output code independently per entry minimises both the max-abs and the
rms error over the grid: the constrained fit *is* the naive rounding, and nothing can beat it.

The float table is the exact staircase: evaluate(table, s_in*(q - zp_in)) == s_out*(lut - zp_out)
bit-for-bit for every q (both sides are the same float64 product).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation, from_table_json
from ..table import Table
from .base import (
    Param,
    Target,
    c_rows,
    default_affine,
    grid_error,
    int_list,
    need_keys,
    parse_params,
    round_half_away,
    staircase,
)

DTYPES = {"int8": (-128, 127), "uint8": (0, 255)}
ZP = (-(2**16), 2**16)


@dataclass
class Int8LutConfig:
    input_dtype: str
    input_scale: float
    input_zero_point: int
    output_dtype: str
    output_scale: float
    output_zero_point: int
    lut: list[int]
    name: str = "int8-lut"
    output_qmin: int | None = None  # a restricted output range's lowest code (-127 for symmetric int8)

    def out_codes(self) -> tuple[int, int]:
        lo, hi = DTYPES[self.output_dtype]
        return (lo if self.output_qmin is None else self.output_qmin), hi

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Int8Lut(Target):
    name = "int8-lut"
    summary = "256-entry int8/uint8 direct lookup table"
    params = (
        Param("input_dtype", "choice", "input integer type", "int8", choices=("int8", "uint8")),
        Param("input_scale", "pos", "real value of one input step; default maps the fit range onto the type"),
        Param("input_zero_point", "int", "input integer of real 0", lo=ZP[0], hi=ZP[1]),
        Param("output_dtype", "choice", "output integer type", "int8", choices=("int8", "uint8")),
        Param("output_scale", "pos", "real value of one output step; default maps f's range on the grid"),
        Param("output_zero_point", "int", "output integer of real 0", lo=ZP[0], hi=ZP[1]),
        Param("output_qmin", "int", "lowest output code of a restricted range (-127: symmetric int8, "
              "whose -128 must never be produced); default the type's minimum", lo=-128, hi=255),
    )

    def resolve(self, act: Activation | None, lo: float, hi: float,
                params: Mapping[str, Any] | None) -> dict[str, Any]:
        p = parse_params(self.name, self.params, params)
        din = p.setdefault("input_dtype", "int8")
        dout = p.setdefault("output_dtype", "int8")
        return default_affine(self.name, p, act, lo, hi, DTYPES[din], DTYPES[dout])

    def quantize(self, f, p: Mapping[str, Any]) -> Int8LutConfig:
        """Round-to-nearest of f at every input code, saturated: optimal per entry."""
        qmin, qmax = DTYPES[p["input_dtype"]]
        omin, omax = DTYPES[p["output_dtype"]]
        qlo = p.get("output_qmin")
        if qlo is not None:
            if not omin <= qlo < omax:
                raise InputError(f"{self.name} parameter output_qmin={qlo} is outside the "
                                 f"{p['output_dtype']} codes [{omin}, {omax - 1}]")
            omin = qlo
        q = np.arange(qmin, qmax + 1, dtype=np.int64)
        with np.errstate(all="ignore"):
            y = np.asarray(f(p["input_scale"] * (q - p["input_zero_point"]).astype(np.float64)))
        if not np.all(np.isfinite(y)):
            raise InputError(f"function is not finite on the {self.name} input grid")
        lut = np.clip(round_half_away(y / p["output_scale"]) + p["output_zero_point"], omin, omax)
        return Int8LutConfig(p["input_dtype"], float(p["input_scale"]), int(p["input_zero_point"]),
                             p["output_dtype"], float(p["output_scale"]), int(p["output_zero_point"]),
                             [int(v) for v in lut], output_qmin=qlo)

    def _fit(self, activation: Activation, segments: int = 256, lo: float = -8.0, hi: float = 8.0,
            tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        """`segments` and `tails` do not apply: the table has one entry per input code."""
        return self.to_table(self.quantize(activation, self.resolve(activation, lo, hi, params)), activation)

    naive = _fit

    def from_table(self, table: Table, params: Mapping[str, Any] | None) -> Int8LutConfig:
        """Sample a float table (the export path): the LUT reproduces the table, rounded."""
        lo, hi = table.domain if table.domain is not None else (-8.0, 8.0)
        return self.quantize(table, self.resolve(table, lo, hi, params))

    def config_from_dict(self, d: Mapping[str, Any]) -> Int8LutConfig:
        keys = ("input_dtype", "input_scale", "input_zero_point", "output_dtype", "output_scale",
                "output_zero_point", "lut")
        need_keys(self.name, d, keys)
        opt = {k: d[k] for k in ("output_qmin",) if d.get(k) is not None}
        p = parse_params(self.name, self.params, {**{k: d[k] for k in keys[:-1]}, **opt})
        omin, omax = DTYPES[p["output_dtype"]]
        qlo = p.get("output_qmin")
        if qlo is not None and not omin <= qlo < omax:
            raise InputError(f"{self.name} output_qmin={qlo} is outside the {p['output_dtype']} codes")
        lut = int_list(self.name, "lut", d["lut"], 256, omin if qlo is None else qlo, omax)
        return Int8LutConfig(p["input_dtype"], p["input_scale"], p["input_zero_point"], p["output_dtype"],
                             p["output_scale"], p["output_zero_point"], lut, output_qmin=qlo)

    def grid(self, config: Int8LutConfig) -> np.ndarray:
        qmin, qmax = DTYPES[config.input_dtype]
        return np.arange(qmin, qmax + 1, dtype=np.int64)

    def simulate(self, config: Int8LutConfig, q_input: np.ndarray) -> np.ndarray:
        qmin, qmax = DTYPES[config.input_dtype]
        q = np.asarray(q_input, dtype=np.int64)
        if q.size and (q.min() < qmin or q.max() > qmax):
            raise InputError(f"{self.name} input must be {config.input_dtype}")
        return np.asarray(config.lut, dtype=np.int64)[q - qmin]

    def to_table(self, config: Int8LutConfig, activation: Activation | None) -> Table:
        q = self.grid(config)
        x = self.dequant_in(config, q)
        y = self.dequant_out(config, self.simulate(config, q))
        bps, slopes, icepts = staircase(x, y)
        act = activation
        err = grid_error(x, y, act, f"{self.name} integer input grid") if act is not None else None
        return Table(bps, slopes, icepts, function=act.expression or act.name if act else "custom",
                     params=dict(act.params) if act else {}, domain=(float(x[0]), float(x[-1])),
                     continuous=bps.size == 0, error=err, target=config.to_dict(),
                     provenance={"target": self.name, "fit": "round-to-nearest per entry (optimal)"})

    def check_numbers(self, table: Table, config: Int8LutConfig) -> None:
        q = self.grid(config)
        if not np.array_equal(table(self.dequant_in(config, q)),
                              self.dequant_out(config, self.simulate(config, q))):
            raise InputError(f"table numbers do not match its {self.name} lut (edited by hand?)")

    def serialize_c(self, config: Int8LutConfig, symbol: str = "actiba_table") -> str:
        ctype = "int8_t" if config.output_dtype == "int8" else "uint8_t"
        itype = "int8_t" if config.input_dtype == "int8" else "uint8_t"
        qmin = DTYPES[config.input_dtype][0]
        rows = c_rows(config.lut, 16, "4d")
        return (f"/* actiba int8-lut: out = {symbol}_lut[q - ({qmin})]\n"
                f" * input  real = {config.input_scale!r} * (q - {config.input_zero_point}) "
                f"({config.input_dtype})\n"
                f" * output real = {config.output_scale!r} * (out - {config.output_zero_point}) "
                f"({config.output_dtype}) */\n"
                f"#ifndef {symbol.upper()}_H\n#define {symbol.upper()}_H\n#include <stdint.h>\n\n"
                f"static const {ctype} {symbol}_lut[256] = {{\n{rows}\n}};\n\n"
                f"static inline {ctype} {symbol}_lookup({itype} q) {{\n"
                f"  return {symbol}_lut[(int)q - ({qmin})];\n}}\n\n#endif\n")


def table_activation(table: Table) -> Activation | None:
    """The activation a stored table approximates (None for custom tables)."""
    return from_table_json(table.function, table.params)
