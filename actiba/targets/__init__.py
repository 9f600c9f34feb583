"""Hardware table formats: constrained fitting, bit-exact integer simulation, serialization.

    from actiba import functions, targets
    t = targets.get("npu-ppe").fit(functions.get("silu"), 8, -8.0, 8.0, "asymptote", {})
    t.target          # the integer config (JSON-able), t.error from the simulator over the whole grid

Each target is a `Target` (see `base.py`); `NAMES` lists them. Modules load lazily by name.
"""

from __future__ import annotations

from ..registry import Registry
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


__all__ = ["NAMES", "Target", "get"]
