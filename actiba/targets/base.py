"""What every hardware table format shares: parameters, integer rounding, grid error, the `Target` API.

A target turns an activation into the integers a piece of hardware stores (a *config*), simulates that
hardware bit-exactly in integer arithmetic, and measures the error over the hardware's WHOLE integer
input grid. The fitted `Table` carries the config in `table.target` (a JSON-able dict), so a table can
be exported, re-checked and re-simulated without refitting.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..functions import Activation
from ..table import Table

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# -- parameters ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One documented `--param KEY=VALUE` option of a target.

    kind: "pos" (finite float > 0), "float" (finite), "int" (in [lo, hi]), "choice" or "ident" (C name).
    default None means "derived from the fit range / the function" (see the target's docstring).
    """

    name: str
    kind: str
    doc: str
    default: Any = None
    lo: int | None = None
    hi: int | None = None
    choices: tuple[str, ...] = ()

    def parse(self, raw: Any, target: str) -> Any:
        where = f"{target} parameter {self.name}"
        if self.kind == "ident":
            v = str(raw).strip()
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", v):
                raise InputError(f"{where} must be a C identifier, got {raw!r}")
            return v
        if self.kind == "choice":
            v = str(raw).strip().lower()
            if v not in self.choices:
                raise InputError(f"{where} must be one of {', '.join(self.choices)}, got {raw!r}")
            return v
        if self.kind == "int":
            try:
                f = float(raw)
            except (TypeError, ValueError):
                raise InputError(f"{where} must be an integer, got {raw!r}") from None
            if not (math.isfinite(f) and f == int(f)):
                raise InputError(f"{where} must be an integer, got {raw!r}")
            v = int(f)
            if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
                raise InputError(f"{where} must be in [{self.lo}, {self.hi}], got {v}")
            return v
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise InputError(f"{where} must be a number, got {raw!r}") from None
        if not math.isfinite(v):
            raise InputError(f"{where} must be finite, got {raw!r}")
        if self.kind == "pos" and not v > 0:
            raise InputError(f"{where} must be > 0, got {raw!r}")
        return v


def parse_params(target: str, spec: tuple[Param, ...], raw: Mapping[str, Any] | None,
                 extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Typed values for the keys given in `raw` (strings or numbers); unknown keys name themselves.

    Keys in `extra` are passed through untouched (exporter options such as `format`).
    """
    by_name = {p.name: p for p in spec}
    out: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key in extra:
            out[key] = value
        elif key not in by_name:
            known = ", ".join([*by_name, *extra])
            raise InputError(f"unknown {target} parameter {key!r}; known: {known}")
        else:
            out[key] = by_name[key].parse(value, target)
    return out


def describe_params(spec: tuple[Param, ...]) -> str:
    """One line per parameter, for docs and `--help`-style listings."""
    lines = []
    for p in spec:
        dflt = "derived" if p.default is None else repr(p.default)
        rng = f" in [{p.lo}, {p.hi}]" if p.kind == "int" else (f" one of {'|'.join(p.choices)}"
                                                               if p.choices else "")
        lines.append(f"{p.name} ({p.kind}{rng}, default {dflt}): {p.doc}")
    return "\n".join(lines)


# -- integer arithmetic the simulators share -------------------------------------------------------
def round_shift(v: np.ndarray, n: int, mode: str = "half-up") -> np.ndarray:
    """Arithmetic right shift of int64 `v` by n >= 0 bits with rounding.

    half-up: (v + 2^(n-1)) >> n, ties toward +inf (what add-then-shift hardware does);
    half-away: ties away from zero (TFLite/Vela `round_away_zero` style).
    """
    v = np.asarray(v, dtype=np.int64)
    if n == 0:
        return v.copy()
    half = np.int64(1) << np.int64(n - 1)
    if mode == "half-up":
        return (v + half) >> np.int64(n)
    if mode == "half-away":
        mag = (np.abs(v) + half) >> np.int64(n)
        return np.where(v < 0, -mag, mag)
    raise ValueError(mode)


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """Float rounding to nearest, ties away from zero (C `round`, TFLite `TfLiteRound`)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def wrap_int16(v: np.ndarray) -> np.ndarray:
    """Two's-complement truncation to int16, as a C `(int16_t)` cast does."""
    v = np.asarray(v, dtype=np.int64)
    return ((v + 32768) & 0xFFFF) - 32768


# -- error over the whole grid ---------------------------------------------------------------------
def grid_error(x: np.ndarray, y_hw: np.ndarray, act: Activation, grid: str) -> dict[str, Any]:
    """max-abs / rms of dequantized hardware output vs f(dequantized input) over every grid point."""
    with np.errstate(all="ignore"):
        ref = act(np.asarray(x, dtype=np.float64))
    err = np.abs(np.asarray(y_hw, dtype=np.float64) - ref)
    err = np.where(np.isfinite(err), err, np.inf)
    i = int(np.argmax(err))
    return {"max_abs": float(err[i]), "max_rel": None, "rms": float(np.sqrt(np.mean(err * err))),
            "over": "domain", "where": float(x[i]), "grid": grid, "points": int(np.size(x))}


def sample_range(act: Activation, x: np.ndarray) -> tuple[float, float]:
    """(min, max) of f on the grid, the default output quantization range; non-finite is an error."""
    with np.errstate(all="ignore"):
        y = act(x)
    if not np.all(np.isfinite(y)):
        bad = float(np.asarray(x)[~np.isfinite(y)][0])
        name = getattr(act, "name", getattr(act, "function", "function"))
        raise InputError(f"{name} is not finite at x={bad} inside the input grid; narrow the range")
    return float(np.min(y)), float(np.max(y))


def monotone_sign(y: np.ndarray) -> int:
    """+1 if the samples never decrease, -1 if they never increase, else 0 (what a fit must preserve)."""
    d = np.diff(np.asarray(y, dtype=np.float64))
    if np.all(d >= 0):
        return 1
    if np.all(d <= 0):
        return -1
    return 0


def check_range(lo: float, hi: float) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"range must be finite with lo < hi, got [{lo}, {hi}]")


# -- the API ---------------------------------------------------------------------------------------
class Target(ABC):
    """A hardware table format: constraints + quantizer + bit-exact simulator + serializers.

    Subclasses define `name`, `params` and a config type (a dict-able dataclass). Every public entry
    accepts params as dict[str, str] (from `--param`) or typed values.
    """

    name: str = ""
    params: tuple[Param, ...] = ()
    summary: str = ""

    # configs ------------------------------------------------------------------------------------
    def fit(self, activation: Activation, segments: int, lo: float, hi: float, tails: str = "free",
            params: Mapping[str, Any] | None = None) -> Table:
        """Constrained fit: optimize the hardware integers against the simulator; error from it.

        The result passes the same `check` that `actiba export` applies to a loaded table, so a fit
        never produces a file its own export refuses (a config the format cannot hold is an
        InputError here, before anything is written)."""
        table = self._fit(activation, segments, lo, hi, tails, params)
        try:
            config = self.check(table)
        except InputError as exc:
            what = getattr(activation, "expression", None) or getattr(activation, "name", "the function")
            raise InputError(f"{self.name} cannot hold a fit of {what} "
                             f"on this range: {exc}") from None
        self._label_error(table, config, activation)
        return table

    def _label_error(self, table: Table, config: Any, activation: Activation) -> None:
        """Say in the stored `error` what it measures: the hardware's dequantized integer output on
        every input code, which is not what the float coefficients beside it evaluate to (they are the
        line before output rounding; e.g. npu-ppe silu 8: 0.0523 stored, 0.0482 from the floats)."""
        err = table.error
        if not isinstance(err, dict) or "grid" not in err:
            return
        x = self.dequant_in(config, self.grid(config))
        with np.errstate(all="ignore"):
            d = np.abs(table(x) - activation(x))
        err["measures"] = ("hardware output (dequantized integers, after output rounding) vs the function "
                           "at every input code of the grid")
        err["float_coefficients_max_abs"] = float(np.max(np.where(np.isfinite(d), d, np.inf)))


    @abstractmethod
    def _fit(self, activation: Activation, segments: int, lo: float, hi: float, tails: str = "free",
             params: Mapping[str, Any] | None = None) -> Table:
        """The target's own constrained fit (`fit` checks what it returns)."""

    @abstractmethod
    def naive(self, activation: Activation, segments: int, lo: float, hi: float, tails: str = "free",
              params: Mapping[str, Any] | None = None) -> Table:
        """The baseline a constrained fit must beat (rounding a float fit / the framework's generator)."""

    @abstractmethod
    def config_from_dict(self, d: Mapping[str, Any]) -> Any:
        """Validate a `table.target` dict and build the config (InputError naming what is wrong)."""

    @abstractmethod
    def from_table(self, table: Table, params: Mapping[str, Any] | None) -> Any:
        """Quantize a float table (fitted for any target or none) into this format's config."""

    @abstractmethod
    def grid(self, config: Any) -> np.ndarray:
        """Every integer input the hardware can see, ascending (int64)."""

    def dequant_in(self, config: Any, q: np.ndarray) -> np.ndarray:
        """Real input of integer `q` (affine: input_scale, input_zero_point; override otherwise)."""
        q = np.asarray(q, dtype=np.int64)
        return config.input_scale * (q - config.input_zero_point).astype(np.float64)

    def dequant_out(self, config: Any, out: np.ndarray) -> np.ndarray:
        """Real value of integer output `out` (affine: output_scale, output_zero_point)."""
        return config.output_scale * (np.asarray(out, dtype=np.int64)
                                      - config.output_zero_point).astype(np.float64)

    @abstractmethod
    def simulate(self, config: Any, q_input: np.ndarray) -> np.ndarray:
        """Bit-exact integer model of the hardware (int64 array of its output integers)."""

    @abstractmethod
    def to_table(self, config: Any, activation: Activation | None) -> Table:
        """The float table carrying `config` in `target`, error measured by the simulator."""

    @abstractmethod
    def serialize_c(self, config: Any, symbol: str = "actiba_table") -> str: ...

    # shared -------------------------------------------------------------------------------------
    def check(self, table: Table) -> Any:
        """The config of a table fitted for this target; InputError naming what violates it."""
        t = table.target
        if not isinstance(t, dict) or t.get("name") != self.name:
            got = t.get("name") if isinstance(t, dict) else t
            raise InputError(f"table is not a {self.name} table (target is {got!r}); "
                             f"fit it with --target {self.name}")
        config = self.config_from_dict(t)
        self.check_numbers(table, config)
        return config

    def check_numbers(self, table: Table, config: Any) -> None:
        """The table's float numbers must be the ones its config implies (no hand edits)."""
        ref = self.to_table(config, None)
        for key in ("breakpoints", "slopes", "intercepts"):
            a, b = getattr(table, key), getattr(ref, key)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-12, atol=1e-300):
                raise InputError(f"table {key} do not match its {self.name} integer config "
                                 f"(edited by hand?); refit with --target {self.name}")

    def error(self, config: Any, activation: Activation) -> dict[str, Any]:
        """Error of the dequantized simulator output over the whole integer input grid."""
        q = self.grid(config)
        return grid_error(self.dequant_in(config, q), self.dequant_out(config, self.simulate(config, q)),
                          activation, f"{self.name} integer input grid")

    def serialize_json(self, config: Any) -> str:
        import json

        return json.dumps(config.to_dict(), indent=1) + "\n"

    def config_from_json(self, text: str) -> Any:
        import json

        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{self.name} config is not valid JSON ({exc.msg})") from None
        if not isinstance(d, dict):
            raise InputError(f"{self.name} config must be a JSON object")
        return self.config_from_dict(d)


def need_keys(name: str, d: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    if d.get("name") != name:
        raise InputError(f"target name must be {name!r}, got {d.get('name')!r}")
    for k in keys:
        if k not in d:
            raise InputError(f"{name} target is missing key {k!r}")


def int_list(name: str, key: str, v: Any, n: int | None, lo: int, hi: int) -> list[int]:
    """A list of integers in [lo, hi] (length n if given), or InputError naming the key and index."""
    if not isinstance(v, list | tuple):
        raise InputError(f"{name} {key} must be a list of integers")
    if n is not None and len(v) != n:
        raise InputError(f"{name} {key} must have {n} entries, got {len(v)}")
    out = []
    for i, e in enumerate(v):
        if isinstance(e, bool) or not isinstance(e, int | float) or not float(e).is_integer():
            raise InputError(f"{name} {key}[{i}] must be an integer, got {e!r}")
        if not lo <= int(e) <= hi:
            raise InputError(f"{name} {key}[{i}]={int(e)} is outside [{lo}, {hi}]")
        out.append(int(e))
    return out


def derive_affine(lo: float, hi: float, qmin: int, qmax: int) -> tuple[float, int]:
    """Scale and zero point mapping [lo, hi] onto [qmin, qmax] (the usual asymmetric quantization)."""
    if not hi > lo:
        hi = lo + max(abs(lo), 1.0) * 1e-3
    scale = (hi - lo) / (qmax - qmin)
    return scale, int(qmin - round_half_away(lo / scale))


def default_affine(name: str, p: dict[str, Any], act: Activation | None, lo: float, hi: float,
                   q_in: tuple[int, int], q_out: tuple[int, int]) -> dict[str, Any]:
    """Fill missing input/output scale and zero point in `p`: the fit range onto the input type,
    f's range over that integer grid onto the output type (what a converter would pick)."""
    if "input_scale" not in p or "input_zero_point" not in p:
        check_range(lo, hi)
        s, z = derive_affine(lo, hi, *q_in)
        p.setdefault("input_scale", s)
        p.setdefault("input_zero_point", z)
    if "output_scale" not in p or "output_zero_point" not in p:
        if act is None:
            raise InputError(f"{name} needs output_scale and output_zero_point")
        q = np.arange(q_in[0], q_in[1] + 1)
        ylo, yhi = sample_range(act, p["input_scale"] * (q - p["input_zero_point"]))
        s, z = derive_affine(ylo, yhi, *q_out)
        p.setdefault("output_scale", s)
        p.setdefault("output_zero_point", z)
    return p


def staircase(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A constant-per-step table through (x[i], y[i]) (x ascending): equal neighbours merge,
    breakpoints sit half-way between grid points, so evaluate(x[i]) == y[i] exactly."""
    change = np.nonzero(y[1:] != y[:-1])[0]
    bps = 0.5 * (x[change] + x[change + 1])
    levels = np.concatenate([[y[0]], y[change + 1]])
    return bps, np.zeros_like(levels), levels


def c_rows(values: list[int], per_line: int, fmt: str) -> str:
    """Comma-separated C initializer rows, `per_line` values each, formatted with `fmt`."""
    return ",\n".join("  " + ", ".join(format(v, fmt) for v in values[i:i + per_line])
                      for i in range(0, len(values), per_line))
