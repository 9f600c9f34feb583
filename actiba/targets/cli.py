"""`actiba export FILE --to npu-ppe|tflite-int16|ethosu-int16|int8-lut|c-header` back ends.

`export(name, table, out_path, params) -> one-line summary` serves every registered target
(`actiba.exporters` registers it once per name). A table fitted for the same target
(`table.target["name"]`) is checked and written as is; any other table is quantized: LUT targets sample
the table itself, npu-ppe requires power-of-two slopes (or `snap=true` to round them), and `refit=true`
re-runs the constrained fit of the table's function over its domain instead. Output is the target's
JSON config, or a C header when `format=c` or OUT ends in .h; npu-ppe also writes Intel's NPU-compiler
`PWLTableEntry` shape with `format=pwl-entry` (see `ppe_pwl`). Parameters are validated before anything
is written, so a bad `--param` leaves no file behind.
"""

from __future__ import annotations

from typing import Any

from .. import _atomic
from ..errors import InputError
from ..table import Table
from . import get
from .int8_lut import table_activation

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _flag(params: dict[str, Any], key: str, target: str) -> bool:
    if key not in params:
        return False
    v = str(params.pop(key)).strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InputError(f"{target} parameter {key} must be true or false, got {v!r}")


def export(name: str, table: Table, out_path: str, params: dict[str, str] | None) -> str:
    """Quantize/check `table` for target `name` and write it to `out_path` atomically."""
    target = get(name)
    p: dict[str, Any] = dict(params or {})
    fmt = str(p.pop("format", "c" if str(out_path).endswith((".h", ".c")) else "json")).lower()
    if name == "c-header":
        fmt = "c"
    formats = ("json", "c", "pwl-entry") if name == "npu-ppe" else ("json", "c")
    if fmt not in formats:
        raise InputError(f"{name} parameter format must be {' or '.join(formats)}, got {fmt!r}")
    symbol = p.get("symbol") if name == "c-header" else p.pop("symbol", None)
    refit = _flag(p, "refit", name)
    snap = _flag(p, "snap", name) if name == "npu-ppe" else False
    act = table_activation(table)
    own = isinstance(table.target, dict) and table.target.get("name") == name
    if own and name != "c-header":
        if p or refit:
            raise InputError(f"the table is already quantized for {name}; its parameters cannot change at "
                             f"export (drop --param {next(iter(p), 'refit')}, or refit from the function)")
        config = target.check(table)
    elif refit:
        if act is None:
            raise InputError(f"refit needs a known function; the table approximates {table.function!r}")
        lo, hi = table.domain if table.domain is not None else act.default_range
        config = target.check(target.fit(act, table.segments, lo, hi, "free", p))
    elif name == "npu-ppe":
        config = target.from_table(table, p, snap=snap)
    else:
        config = target.from_table(table, p)
    if name != "c-header":  # what is written must load back: the same check a reader's export runs
        target.config_from_dict(config.to_dict())
    if symbol is not None and name != "c-header":
        from .base import Param

        symbol = Param("symbol", "ident", "").parse(symbol, name)
    if fmt == "c":
        text = target.serialize_c(config, symbol or "actiba_table")
    elif fmt == "pwl-entry":  # the NPU compiler's PWLTableEntry shape (see ppe_pwl)
        from . import ppe_pwl

        text = ppe_pwl.serialize(ppe_pwl.from_config(config), config)
    else:
        text = target.serialize_json(config)
    _atomic.write_text(out_path, text)
    kind = {'c': 'C header', 'pwl-entry': 'NPU-compiler PWLTableEntry JSON'}.get(fmt, 'JSON')
    msg = f"{name}: wrote {out_path} ({kind})"
    if name != "c-header":
        e_tab = target.error(config, table)["max_abs"]
        msg += f"; max-abs vs the table {e_tab:.4g}"
        if act is not None:
            e = target.error(config, act)
            msg += f", vs {table.function} {e['max_abs']:.4g} (at x={e['where']:.4g})"
        msg += " over the whole integer input grid"
    return msg
