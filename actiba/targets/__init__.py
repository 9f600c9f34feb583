"""Hardware table formats: constrained fitting, bit-exact integer simulation, serialization.

    from actiba import functions, targets
    t = targets.get("npu-ppe").fit(functions.get("silu"), 8, -8.0, 8.0, "asymptote", {})
    t.target          # the integer config (JSON-able), t.error from the simulator over the whole grid

Each target is a `Target` (see `base.py`); `NAMES` lists them. Modules load lazily by name.
"""

from __future__ import annotations

import importlib

from ..errors import InputError
from .base import Target

_REGISTRY: dict[str, str] = {
    "npu-ppe": "actiba.targets.npu_ppe:NpuPpe",
    "tflite-int16": "actiba.targets.tflite_int16:TfliteInt16",
    "ethosu-int16": "actiba.targets.ethosu_int16:EthosuInt16",
    "int8-lut": "actiba.targets.int8_lut:Int8Lut",
    "c-header": "actiba.targets.c_header:CHeader",
}
NAMES: tuple[str, ...] = tuple(_REGISTRY)
_CACHE: dict[str, Target] = {}


def get(name: str) -> Target:
    """The target called `name`, or InputError listing the known ones."""
    if name not in _REGISTRY:
        raise InputError(f"unknown target {name!r}; known: {', '.join(NAMES)}")
    if name not in _CACHE:
        module, cls = _REGISTRY[name].split(":")
        _CACHE[name] = getattr(importlib.import_module(module), cls)()
    return _CACHE[name]


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


__all__ = ["NAMES", "Target", "get", "summary"]
