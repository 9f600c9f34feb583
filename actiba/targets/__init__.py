"""Hardware table formats: constrained fitting, bit-exact integer simulation, serialization.

    from actiba import functions, targets
    t = targets.get("npu-ppe").fit(functions.get("silu"), 8, -8.0, 8.0, "asymptote", {})
    t.target          # the integer config (JSON-able), t.error from the simulator over the whole grid

Each target is a `Target` (see `base.py`); `NAMES` lists them. Modules load lazily by name.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from ..functions import Activation
from ..registry import Registry
from ..table import Table
from .base import Target

# the one place a hardware format registers: `actiba fit --target`, `actiba export --to` and the
# catalog all read this registry
_REGISTRY: Registry[Target] = Registry("target", build=lambda cls: cls())
_REGISTRY.register("npu-ppe", "actiba.targets.npu_ppe:NpuPpe")
_REGISTRY.register("tflite-int16", "actiba.targets.tflite_int16:TfliteInt16")
_REGISTRY.register("ethosu-int16", "actiba.targets.ethosu_int16:EthosuInt16")
_REGISTRY.register("int8-lut", "actiba.targets.int8_lut:Int8Lut")
_REGISTRY.register("c-header", "actiba.targets.c_header:CHeader")
NAMES: tuple[str, ...] = _REGISTRY.names()


def get(name: str) -> Target:
    """The target called `name` (one shared instance), or InputError listing the known ones."""
    return _REGISTRY.get(name)


def fit(name: str, func: str | Activation, segments: int | None = None, *, max_error: float | None = None,
        range: tuple[float, float] | None = None, metric: str = "max-abs", continuous: bool = True,
        tails: str = "free", beta: float | None = None, weight: Any = None,
        params: dict[str, str] | None = None) -> Table:
    """A table fitted under target `name`'s constraints: what `actiba.fit(..., target=name)` returns.

    Takes `actiba.fitting.fit`'s arguments so the two are interchangeable; the hardware fixes the
    table size, so `segments` is required. The provenance is stamped as for every fit.
    """
    from ..fitting import stamp
    from ..functions import get as get_function

    act = func if isinstance(func, Activation) else get_function(func, beta)
    if (segments is None) == (max_error is None):
        raise InputError("give exactly one of --segments N or --max-error EPS")
    if weight is not None and metric != "rms":
        raise InputError("a weight function applies to the rms metric only")
    lo, hi = (float(range[0]), float(range[1])) if range is not None else act.default_range
    if segments is None:
        raise InputError("--target fits take --segments (the hardware fixes the table size)")
    table = get(name).fit(act, segments, lo, hi, tails, params or {})
    stamp(table, act, metric, continuous, tails, target=name)
    return table


def summary(table) -> str:
    """The one-paragraph `fit --target` summary: the integer-grid error, what it measures, and what
    the float coefficients stored beside it measure on the same grid."""
    t, e = table.target if isinstance(table.target, dict) else {}, table.error or {}
    name = t.get("name", "target")
    lo, hi = table.domain if table.domain is not None else (float("nan"), float("nan"))
    if e.get("max_abs") is None:
        return f"{table.function}: {name} table, {table.segments} float segments on [{lo:g}, {hi:g}]."
    msg = (f"{table.function}: {name} table, {table.segments} float segments on [{lo:g}, {hi:g}]. "
           f"Max-abs error {e['max_abs']:.4g} at x = {e.get('where', float('nan')):.5g} over all "
           f"{e.get('points', '?')} codes of the {e.get('grid', 'integer grid')}: the hardware's output, "
           f"after its rounding; rms {e.get('rms', float('nan')):.4g}.")
    fe = e.get("float_coefficients_max_abs")
    if fe is not None and fe == e["max_abs"]:
        msg += " The float coefficients in the file evaluate to the hardware's output on the grid."
    elif fe is not None:
        msg += (f" The float coefficients in the file (the line before output rounding) measure "
                f"{fe:.4g} on the same grid.")
    return msg


__all__ = ["NAMES", "Target", "fit", "get", "summary"]
