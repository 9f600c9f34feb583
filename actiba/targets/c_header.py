"""`c-header`: the float table as a self-contained C header with reference evaluators.

Emits `static const double` breakpoints / slopes / intercepts as shortest round-trip decimal literals
(exact in any correctly rounding compiler; hex floats would not compile as C89 or C++11) and
float32-rounded `float` copies, plus inline `double SYM(double)` and `float SYM_f(float)`
implementing the canonical rule: i = number of breakpoints b <= x (binary search); y = s_i*x + c_i;
NaN -> NaN; ±inf -> the outer segment's limit with 0*inf taken as the intercept. The product is stored
in a `volatile` temporary so no compiler can fuse s*x + c into an FMA: the double version is then
bit-exact with `actiba.table.evaluate` (two IEEE roundings, as numpy does), whatever the flags but
-ffast-math, under which the header emits a #warning (the NaN and inf guards may be compiled away).
It compiles as C89 (gcc -std=c89 -pedantic), C99 and C++11.
The float version rounds the numbers to float32 and computes in float: an approximation of the table
to float32 precision, not bit-exact with the float64 evaluator.

As a `Target`: `fit` is the float fitter (no quantization), the "simulator" is the canonical evaluator on
float64 inputs, and the error grid is 200001 evenly spaced points over the fit range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation
from ..table import Table, evaluate
from .base import Param, Target, check_range, grid_error, parse_params
from .float_start import float_fit


@dataclass
class CHeaderConfig:
    symbol: str
    table: Table = field(repr=False)
    name: str = "c-header"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "symbol": self.symbol}


def default_symbol(function: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", function.removeprefix("expr:"))[:40] or "table"
    return "actiba_" + s


def c_double(v: float) -> str:
    """v as a C double literal: the shortest decimal that reads back as exactly v (C89 and C++11
    have no hex-float literals; every correctly rounding compiler reads it back bit for bit).
    Always with a '.' or an exponent, so -0.0 stays negative zero."""
    r = repr(float(v))
    return r if any(ch in r for ch in ".en") else r + ".0"


def c_float(v: float) -> str:
    """The float32 rounding of v as a C float literal (overflow: +-(float)HUGE_VAL, which is +-inf on
    IEEE machines; HUGE_VALF is C99)."""
    with np.errstate(over="ignore"):
        f = float(np.float32(v))
    if np.isinf(f):
        return "((float)HUGE_VAL)" if f > 0 else "(-(float)HUGE_VAL)"
    return c_double(f) + "f"


class CHeader(Target):
    name = "c-header"
    summary = "float table as a C header (hex-float arrays + reference evaluators, double and float)"
    params = (Param("symbol", "ident", "C name prefix of arrays and functions (default actiba_<function>)"),)

    def _symbol(self, params: Mapping[str, Any] | None, function: str) -> str:
        p = parse_params(self.name, self.params, params)
        return p.get("symbol") or default_symbol(function)

    def _fit(self, activation: Activation, segments: int = 8, lo: float = -8.0, hi: float = 8.0,
            tails: str = "free", params: Mapping[str, Any] | None = None) -> Table:
        check_range(lo, hi)
        sym = self._symbol(params, activation.expression or activation.name)
        t = float_fit(activation, int(segments), lo, hi, tails)
        t.target = {"name": self.name, "symbol": sym}
        return t

    naive = _fit

    def from_table(self, table: Table, params: Mapping[str, Any] | None) -> CHeaderConfig:
        return CHeaderConfig(self._symbol(params, table.function), table)

    def config_from_dict(self, d: Mapping[str, Any]) -> CHeaderConfig:
        raise InputError("a c-header config is the table itself; use from_table")

    def check(self, table: Table) -> CHeaderConfig:
        """Any valid float table can be written as a C header."""
        sym = table.target.get("symbol") if isinstance(table.target, dict) else None
        return CHeaderConfig(sym or default_symbol(table.function), table)

    def grid(self, config: CHeaderConfig) -> np.ndarray:
        lo, hi = config.table.domain if config.table.domain is not None else (-8.0, 8.0)
        return np.linspace(lo, hi, 200001)

    def dequant_in(self, config: CHeaderConfig, q: np.ndarray) -> np.ndarray:
        return np.asarray(q, dtype=np.float64)

    def dequant_out(self, config: CHeaderConfig, out: np.ndarray) -> np.ndarray:
        return np.asarray(out, dtype=np.float64)

    def simulate(self, config: CHeaderConfig, q_input: np.ndarray) -> np.ndarray:
        t = config.table
        return evaluate(t.breakpoints, t.slopes, t.intercepts, q_input)

    def to_table(self, config: CHeaderConfig, activation: Activation | None) -> Table:
        return config.table

    def error(self, config: CHeaderConfig, activation: Activation) -> dict[str, Any]:
        x = self.grid(config)
        return grid_error(x, self.simulate(config, x), activation, "200001-point grid over the domain")

    def serialize_json(self, config: CHeaderConfig) -> str:
        return config.table.to_json()

    def serialize_c(self, config: CHeaderConfig, symbol: str | None = None) -> str:
        t, sym = config.table, symbol or config.symbol
        nb = t.breakpoints.size
        bp = t.breakpoints if nb else np.array([0.0])  # C forbids empty arrays; NB says how many count

        def arr(ctype: str, suffix: str, vals: np.ndarray, fmt) -> str:
            body = ",\n".join("  " + ", ".join(fmt(v) for v in vals[i:i + 3]) for i in range(0, vals.size, 3))
            return f"static const {ctype} {sym}_{suffix}[{vals.size}] = {{\n{body}\n}};\n"

        def func(ctype: str, suffix: str, huge: str) -> str:
            return (f"{sym.upper()}_INLINE {ctype} {sym}{suffix}({ctype} x) {{\n"
                    f"  int lo = 0, hi = {sym.upper()}_NB;\n"
                    f"  {ctype} s, c;\n"
                    f"  volatile {ctype} p;  /* no FMA: two roundings, like the canonical evaluator */\n"
                    f"  if (x != x) return x;  /* NaN in -> NaN out */\n"
                    f"  while (lo < hi) {{     /* i = number of breakpoints b <= x */\n"
                    f"    int mid = (lo + hi) / 2;\n"
                    f"    if ({sym}_breakpoints{suffix}[mid] <= x) lo = mid + 1; else hi = mid;\n"
                    f"  }}\n"
                    f"  s = {sym}_slopes{suffix}[lo];\n"
                    f"  c = {sym}_intercepts{suffix}[lo];\n"
                    f"  if ((x == {huge} || x == -{huge}) && s == 0) return c;  /* 0 * inf = intercept */\n"
                    f"  p = s * x;\n"
                    f"  return p + c;\n}}\n")

        dom = "none" if t.domain is None else f"[{t.domain[0]!r}, {t.domain[1]!r}]"
        err = (t.error or {}).get("max_abs")
        return (f"/* actiba-pwl/1 table for {t.function} {t.params or ''}: {t.segments} segments, "
                f"domain {dom}"
                f"{'' if err is None else f', max-abs error {err:.6g}'}.\n"
                f" * Rule: i = number of breakpoints b <= x; y = slopes[i]*x + intercepts[i]; NaN -> NaN;\n"
                f" * +-inf -> outer segment's limit (0*inf = intercept). {sym}() is bit-exact with actiba's\n"
                f" * float64 evaluator; {sym}_f() is the same rule on float32-rounded numbers. */\n"
                f"#ifndef {sym.upper()}_H\n#define {sym.upper()}_H\n#include <math.h>\n\n"
                f"{self._prelude(sym.upper())}"
                f"#define {sym.upper()}_SEGMENTS {t.segments}\n#define {sym.upper()}_NB {nb}\n"
                + arr("double", "breakpoints", bp, c_double) + arr("double", "slopes", t.slopes, c_double)
                + arr("double", "intercepts", t.intercepts, c_double)
                + arr("float", "breakpoints_f", bp, c_float)
                + arr("float", "slopes_f", t.slopes, c_float)
                + arr("float", "intercepts_f", t.intercepts, c_float) + "\n"
                + func("double", "", "HUGE_VAL") + "\n" + func("float", "_f", "(float)HUGE_VAL")
                + "\n#endif\n")

    @staticmethod
    def _prelude(up: str) -> str:
        """`inline` where the language has it (C99, C++; GNU C89 spells it __inline__), plain static in
        C89; and a compile-time warning under -ffast-math, which assumes no NaN or infinity exists and so
        may delete both guards (x != x, x == +-HUGE_VAL): the header then no longer follows the rule."""
        return (f"#if defined(__cplusplus) || (defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L)\n"
                f"#define {up}_INLINE static inline\n"
                f"#elif defined(__GNUC__)\n#define {up}_INLINE static __inline__\n"
                f"#else\n#define {up}_INLINE static\n#endif\n"
                f"#if defined(__FAST_MATH__) || defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__\n"
                f"#warning \"actiba table header: -ffast-math / -ffinite-math-only removes the NaN and inf "
                f"guards; NaN and +-inf inputs will not follow the table rule\"\n#endif\n\n")
