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


__all__ = ["NAMES", "Target", "get"]
