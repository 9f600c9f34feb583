"""Registry of `actiba export --to NAME` back ends, imported lazily by name.

Each entry resolves to `fn(table, out_path, params: dict[str, str]) -> str` (a one-line summary).
Lowerings (onnx/openvino/torch) live in `actiba.lower`; every hardware format in `actiba.targets` is
an exporter too, through `targets.cli.exporter(name)`, so a new target registers once (in
`targets._REGISTRY`) and `--to` offers it. The CLI only sees this registry, so `actiba fit` never
imports onnx, openvino or torch.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import InputError
from .registry import Registry
from .targets import _REGISTRY as _TARGETS

EXPORTERS: Registry[Callable[..., str]] = Registry("export format")
EXPORTERS.register("onnx", "actiba.lower.onnx_lower:export_cli")
EXPORTERS.register("openvino", "actiba.lower.openvino_lower:export_cli")
EXPORTERS.register("torch", "actiba.lower.torch_lower:export_cli")


def _target_exporter(name: str) -> Callable[..., str]:
    def export(table, out_path: str, params: dict[str, str]) -> str:
        from .targets.cli import export as export_target

        return export_target(name, table, out_path, params)

    export.__name__ = f"export_{name.replace('-', '_')}"
    return export


for _name in _TARGETS:
    EXPORTERS.register(_name, _target_exporter(_name))


def get(name: str) -> Callable[..., str]:
    """The exporter for `name`, or InputError listing the known ones."""
    return EXPORTERS.get(name)


def parse_params(items: list[str] | None) -> dict[str, str]:
    """`KEY=VALUE` strings from `--param` into a dict; malformed items are an InputError."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
