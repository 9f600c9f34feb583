"""The canonical piecewise-linear table (`actiba-pwl/1`) and its ONE canonical evaluator.

Every other implementation in actiba (ONNX/OpenVINO/torch lowerings, hardware simulators, the C
header) is tested against `evaluate` here. The format is specified in DESIGN.md §2 and shipped as a
JSON Schema (`actiba/schema/actiba-pwl-1.json`) that every load validates against.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from . import _atomic
from .errors import TableError

FORMAT = "actiba-pwl/1"
_KNOWN_KEYS = ("format", "function", "params", "domain", "breakpoints", "slopes", "intercepts",
               "continuous", "error", "target", "provenance")


def evaluate(breakpoints: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray,
             x: np.ndarray | float) -> np.ndarray:
    """Evaluate a table at `x` in float64 by the normative rule.

    i = number of breakpoints b with b <= x;  y = slopes[i] * x + intercepts[i].
    NaN → NaN; ±inf → the outer segment's limit, with 0·inf taken as the intercept.
    """
    xa = np.asarray(x, dtype=np.float64)
    idx = np.searchsorted(np.asarray(breakpoints, dtype=np.float64), xa, side="right")
    idx = np.minimum(idx, len(slopes) - 1)  # NaN sorts last; its result is NaN regardless
    s = np.asarray(slopes, dtype=np.float64)[idx]
    c = np.asarray(intercepts, dtype=np.float64)[idx]
    with np.errstate(invalid="ignore", over="ignore"):
        y = s * xa + c
        y = np.where(np.isinf(xa) & (s == 0.0), c, y)
    return y


@lru_cache(maxsize=1)
def schema() -> dict:
    """The shipped JSON Schema for `actiba-pwl/1`."""
    text = resources.files("actiba").joinpath("schema/actiba-pwl-1.json").read_text("utf-8")
    return json.loads(text)


def _path(err: Any) -> str:
    out = ""
    for part in err.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate(d: Any) -> None:
    """Raise `TableError` naming the key if `d` is not a valid `actiba-pwl/1` object."""
    import jsonschema  # deferred: only loads need it

    if not isinstance(d, dict):
        raise TableError("table must be a JSON object")
    bad = first_nonfinite(d)  # before the schema, whose bounds would word an overflowed 1e400 obscurely
    if bad is not None:
        raise TableError(f"{bad[0]} is not finite ({bad[1]}); JSON numbers must be finite float64 "
                         "(a literal like 1e400 overflows to inf)")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(d), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        e = errors[0]
        if e.validator == "required":
            missing = [k for k in e.validator_value if k not in e.instance]
            raise TableError(f"missing required key {missing[0]!r}")
        raise TableError(f"{_path(e)}: {e.message}")
    for key in ("breakpoints", "slopes", "intercepts", "domain"):
        vals = d.get(key)
        if vals is None:
            continue
        for i, v in enumerate(vals):
            if not math.isfinite(v):
                raise TableError(f"{key}[{i}] is not finite ({v})")
    n = len(d["slopes"])
    if len(d["intercepts"]) != n:
        raise TableError(f"intercepts has {len(d['intercepts'])} entries but slopes has {n}")
    if len(d["breakpoints"]) != n - 1:
        raise TableError(f"breakpoints has {len(d['breakpoints'])} entries; {n} segments need {n - 1}")
    bp = d["breakpoints"]
    for i in range(len(bp) - 1):
        if not bp[i] < bp[i + 1]:
            raise TableError(f"breakpoints must be strictly ascending: breakpoints[{i}]={bp[i]} "
                             f">= breakpoints[{i + 1}]={bp[i + 1]}")
    dom = d.get("domain")
    if dom is not None and not dom[0] < dom[1]:
        raise TableError(f"domain must have lo < hi, got {dom}")


def first_nonfinite(obj: Any, path: str = "") -> tuple[str, float] | None:
    """(key path, value) of the first NaN/±inf anywhere in parsed JSON (params, error, provenance and
    unknown keys too): `json` reads 1e400 as inf and NaN/Infinity tokens as floats, and a table holding
    one could not be written back (`to_json` allows no NaN) nor measured."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "value", obj)
    if isinstance(obj, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in obj.items())
    elif isinstance(obj, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for sub, v in items:
        found = first_nonfinite(v, sub)
        if found is not None:
            return found
    return None


@dataclass(eq=False, repr=False)
class Table:
    """A piecewise-linear function: callable, serializable, the unit everything in actiba passes around.

    `report` holds the fitter's result (a `FitReport`) when the table came from `actiba.fit`; it is
    not serialized except through `error`.
    """

    breakpoints: np.ndarray
    slopes: np.ndarray
    intercepts: np.ndarray
    function: str = "custom"
    params: dict[str, float] = field(default_factory=dict)
    domain: tuple[float, float] | None = None
    continuous: bool | None = None
    error: dict[str, Any] | None = None
    target: str | dict | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    report: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.breakpoints = np.asarray(self.breakpoints, dtype=np.float64).reshape(-1)
        self.slopes = np.asarray(self.slopes, dtype=np.float64).reshape(-1)
        self.intercepts = np.asarray(self.intercepts, dtype=np.float64).reshape(-1)
        if self.continuous is None:
            with np.errstate(over="ignore", invalid="ignore"):
                self.continuous = bool(self.max_jump() <= 1e-12 * (1 + self.scale()))

    # -- evaluation ------------------------------------------------------------------------------
    def __call__(self, x: np.ndarray | float) -> np.ndarray | float:
        """The canonical evaluator; a scalar in gives a Python float out."""
        y = evaluate(self.breakpoints, self.slopes, self.intercepts, x)
        return float(y) if np.ndim(x) == 0 else y

    def __eq__(self, other: object) -> bool:
        """Same numbers (bit for bit) and the same metadata; the fit report is not compared."""
        if not isinstance(other, Table):
            return NotImplemented
        return (all(np.array_equal(getattr(self, k), getattr(other, k))
                    for k in ("breakpoints", "slopes", "intercepts"))
                and (self.function, self.params, self.domain, self.continuous, self.error, self.target,
                     self.provenance, self.extra)
                == (other.function, other.params, other.domain, other.continuous, other.error,
                    other.target, other.provenance, other.extra))

    __hash__ = None  # mutable, compared by value

    def __repr__(self) -> str:
        parts = [self.function, f"{self.segments} segment{'s' if self.segments != 1 else ''}",
                 "continuous" if self.continuous else "discontinuous"]
        if self.domain is not None:
            parts.append(f"domain [{self.domain[0]:g}, {self.domain[1]:g}]")
        if self.error and self.error.get("max_abs") is not None:
            parts.append(f"max_abs {self.error['max_abs']:.4g}")
        if self.target:
            parts.append(f"target {self.target if isinstance(self.target, str) else self.target.get('name', '?')}")
        return f"Table({', '.join(parts)})"

    @property
    def segments(self) -> int:
        return int(self.slopes.size)

    def jumps(self) -> np.ndarray:
        """Right limit minus left limit at every breakpoint."""
        b = self.breakpoints
        return (self.slopes[1:] * b + self.intercepts[1:]) - (self.slopes[:-1] * b + self.intercepts[:-1])

    def max_jump(self) -> float:
        return float(np.max(np.abs(self.jumps()))) if self.breakpoints.size else 0.0

    def scale(self) -> float:
        b = self.breakpoints
        return float(np.max(np.abs(self.slopes[1:] * b + self.intercepts[1:]))) if b.size else 0.0

    def knot_values(self) -> np.ndarray:
        """Table values at the breakpoints (right limits)."""
        return self(self.breakpoints)

    def is_convex(self, tol: float = 0.0) -> bool:
        return bool(self.continuous) and bool(np.all(np.diff(self.slopes) >= -tol))

    def is_concave(self, tol: float = 0.0) -> bool:
        return bool(self.continuous) and bool(np.all(np.diff(self.slopes) <= tol))

    # -- serialization ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "function": self.function,
            "params": dict(self.params),
            "domain": None if self.domain is None else [float(self.domain[0]), float(self.domain[1])],
            "breakpoints": [float(v) for v in self.breakpoints],
            "slopes": [float(v) for v in self.slopes],
            "intercepts": [float(v) for v in self.intercepts],
            "continuous": bool(self.continuous),
            "error": self.error,
            "target": self.target,
            "provenance": self.provenance,
        }
        d.update({k: v for k, v in self.extra.items() if k not in d})
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON, atomically (temp file + rename)."""
        _atomic.write_text(path, self.to_json())

    @classmethod
    def from_dict(cls, d: Any) -> Table:
        """Build a table from a parsed JSON object, validating it first."""
        validate(d)
        dom = d.get("domain")
        return cls(
            breakpoints=np.array(d["breakpoints"], dtype=np.float64),
            slopes=np.array(d["slopes"], dtype=np.float64),
            intercepts=np.array(d["intercepts"], dtype=np.float64),
            function=d["function"],
            params=dict(d.get("params") or {}),
            domain=None if dom is None else (float(dom[0]), float(dom[1])),
            continuous=d.get("continuous"),
            error=d.get("error"),
            target=d.get("target"),
            provenance=dict(d.get("provenance") or {}),
            extra={k: v for k, v in d.items() if k not in _KNOWN_KEYS},
        )

    @classmethod
    def from_json(cls, text: str, source: str = "table") -> Table:
        try:  # NaN/Infinity tokens parse to floats so that `validate` can name the key holding them
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TableError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno})") from None
        try:
            return cls.from_dict(d)
        except TableError as exc:
            raise TableError(f"{source}: {exc}") from None


def load(path: str | os.PathLike) -> Table:
    """Load and validate an `actiba-pwl/1` table from a JSON file."""
    text = _atomic.read_text(path, "table", TableError)
    return Table.from_json(text, source=os.fspath(path))
