"""Registry of `actiba export --to NAME` back ends, imported lazily by name.

Each entry is "module:function" with signature `fn(table, out_path, params: dict[str, str]) -> str`
(returns a one-line summary). Lowerings (onnx/openvino/torch) live in `actiba.lower`, hardware table
formats in `actiba.targets`; the CLI only sees this map, so `actiba fit` never imports them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .errors import InputError

EXPORTERS: dict[str, str] = {
    "onnx": "actiba.lower.onnx_lower:export_cli",
    "openvino": "actiba.lower.openvino_lower:export_cli",
    "torch": "actiba.lower.torch_lower:export_cli",
    "npu-ppe": "actiba.targets.cli:export_npu_ppe",
    "tflite-int16": "actiba.targets.cli:export_tflite_int16",
    "ethosu-int16": "actiba.targets.cli:export_ethosu_int16",
    "int8-lut": "actiba.targets.cli:export_int8_lut",
    "c-header": "actiba.targets.cli:export_c_header",
}


def get(name: str) -> Callable[..., str]:
    """The exporter for `name`, or InputError listing the known ones."""
    if name not in EXPORTERS:
        raise InputError(f"unknown export format {name!r}; known: {', '.join(EXPORTERS)}")
    module, func = EXPORTERS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise InputError(f"export to {name} needs an optional dependency that is not installed "
                         f"({exc.name}); install actiba[all]") from None
    return getattr(mod, func)


def parse_params(items: list[str] | None) -> dict[str, str]:
    """`KEY=VALUE` strings from `--param` into a dict; malformed items are an InputError."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
