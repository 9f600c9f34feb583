"""A set of tables keyed by activation site: the `actiba-pwl-set/1` format.

Why a set: calibrated fitting gives each activation call of a model ("site", see
`actiba.rewrite.site_ids`) its own table, or one table shared by a glob of sites. A key is either a
site id (``backbone.layers.0.mixer:softplus#0``) or a glob containing ':' (``*:silu#*``), so a shared
table is just ``{"*:silu#*": table}``. Lookup tries the exact key first, then globs in insertion order.

File format (JSON)::

    {"format": "actiba-pwl-set/1",
     "model": {... fingerprint ...} | null,          # which model the tables were calibrated on
     "calibration": {... provenance ...} | null,     # which statistics, percentiles, weighting
     "tables": {"<site id or glob>": <actiba-pwl/1 table object, exactly as Table.save writes it>}}

Bottom layer: imports only `table`, `errors`, `_atomic` (site-id syntax is restated here on purpose,
it is a two-line regex and the rewrite layer sits above this one).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import _atomic
from .errors import InputError, TableError
from .table import Table, first_nonfinite, validate

FORMAT = "actiba-pwl-set/1"
_SITE = re.compile(r"^(?P<path>[^:#]*):(?P<fn>[a-z][a-z-]*)#(?P<k>\d+)$")
_GLOB_CHARS = set("*?[")
_ALIASES = {"swish": "silu", "gelu_tanh": "gelu-tanh", "gelu-erf": "gelu"}


def _canonical(function: str) -> str:
    key = function.strip().lower()
    return _ALIASES.get(key, key)


def key_function(key: str) -> str:
    """The function part of a site id or site glob (may itself be a pattern, e.g. ``*``).

    InputError if `key` is neither a site id nor a glob containing ':'.
    """
    if not isinstance(key, str) or not key:
        raise InputError(f"table-set key {key!r} is empty or not a string")
    if _SITE.match(key):
        return key.split(":", 1)[1].split("#", 1)[0]
    if ":" in key and _GLOB_CHARS & set(key):
        return key.split(":", 1)[1].split("#", 1)[0] or "*"
    raise InputError(f"table-set key {key!r} is neither a site id (PATH:FUNCTION#K, e.g. "
                     "backbone.layers.0.mixer:silu#0) nor a site glob containing ':' (e.g. *:silu#*)")


def _check_entry(key: str, table: Table) -> None:
    fn_pattern = key_function(key)
    fn = _canonical(table.function or "")
    if not fnmatch.fnmatchcase(fn, fn_pattern):
        raise InputError(f"table-set key {key!r}: table approximates {table.function!r}, "
                         f"but the key names function {fn_pattern!r}")


@dataclass
class TableSet:
    """Tables keyed by site id or site glob, plus the model fingerprint and calibration provenance."""

    tables: dict[str, Table] = field(default_factory=dict)
    model: dict | None = None
    calibration: dict | None = None

    def key_for(self, site: str) -> str | None:
        """The key that picks `site`'s table: exact key first, then the first matching glob (insertion order)."""
        if site in self.tables:
            return site
        return next((k for k in self.tables if _GLOB_CHARS & set(k) and fnmatch.fnmatchcase(site, k)), None)

    def table_for(self, site: str) -> Table | None:
        """The table for `site` (see `key_for`), or None."""
        key = self.key_for(site)
        return None if key is None else self.tables[key]

    def unmatched(self, site_ids: Iterable[str]) -> list[str]:
        """Keys that pick none of `site_ids` (a set for another model, or a typo)."""
        ids = list(site_ids)
        return [k for k in self.tables if not any(s == k or fnmatch.fnmatchcase(s, k) for s in ids)]

    def check_unmatched(self, site_ids: Iterable[str], where: str) -> None:
        """InputError naming the keys that match no site of `where`: a set that silently rewrites nothing
        would report the exact model's accuracy as the tables'."""
        ids = sorted(set(site_ids))
        bad = self.unmatched(ids)
        if bad:
            shown = ", ".join(ids[:6]) + (" ..." if len(ids) > 6 else "")
            raise InputError(f"table set key(s) {bad[:4]} match no activation site in {where}; "
                             f"its sites are: {shown or '(none)'}")

    @staticmethod
    def split(tables: Any) -> tuple[dict[str, Any], TableSet | None]:
        """(function -> table, per-site set or None) from a {function: Table} mapping, a TableSet, or a
        mapping whose keys are site ids / site globs (any key containing ':'); both kinds may be mixed,
        and function keys then serve the sites the per-site keys do not cover."""
        if tables is None:
            return {}, None
        if isinstance(tables, TableSet):
            return {}, tables
        if not isinstance(tables, dict):
            raise InputError(f"tables must be a mapping or a TableSet, not {type(tables).__name__}")
        by_site = {k: v for k, v in tables.items() if ":" in k}
        by_fn = {k: v for k, v in tables.items() if ":" not in k}
        return by_fn, (TableSet(by_site) if by_site else None)

    def functions(self) -> set[str]:
        """Canonical functions of the tables present (e.g. {"silu", "softplus"})."""
        return {_canonical(t.function) for t in self.tables.values()}

    def validate(self) -> None:
        """InputError naming the key if any key or table is malformed or keyed under the wrong function."""
        if not self.tables:
            raise InputError("table set has no tables")
        for key, table in self.tables.items():
            if not isinstance(table, Table):
                raise InputError(f"table-set key {key!r}: not a Table")
            try:
                validate(json.loads(table.to_json()))
            except TableError as exc:
                raise TableError(f"tables[{key!r}]: {exc}") from None
            _check_entry(key, table)
        for name, value in (("model", self.model), ("calibration", self.calibration)):
            if value is not None and not isinstance(value, dict):
                raise InputError(f"table set: {name!r} must be an object or null")

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model, "calibration": self.calibration,
                "tables": {k: t.to_dict() for k, t in self.tables.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        """Validate, then write atomically (temp file + rename)."""
        self.validate()
        _atomic.write_text(path, self.to_json())


def from_dict(d: Any, source: str = "table set") -> TableSet:
    """Build and validate a TableSet from a parsed JSON object; errors name the offending key."""
    if not isinstance(d, dict):
        raise InputError(f"{source}: must be a JSON object")
    if d.get("format") != FORMAT:
        raise InputError(f"{source}: 'format' must be {FORMAT!r}, got {d.get('format')!r}")
    tables = d.get("tables")
    if not isinstance(tables, dict):
        raise InputError(f"{source}: 'tables' must be an object mapping site ids or globs to tables")
    out: dict[str, Table] = {}
    for key, td in tables.items():
        try:
            key_function(key)
            out[key] = Table.from_dict(td)
        except InputError as exc:
            raise type(exc)(f"{source}: tables[{key!r}]: {exc}") from None
    for name in ("model", "calibration"):
        bad = first_nonfinite(d.get(name), name)
        if bad is not None:
            raise InputError(f"{source}: {bad[0]} is not finite ({bad[1]}); JSON numbers must be finite")
    ts = TableSet(out, d.get("model"), d.get("calibration"))
    try:
        ts.validate()
    except InputError as exc:
        raise type(exc)(f"{source}: {exc}") from None
    return ts


def load_set(path: str | os.PathLike) -> TableSet:
    """Load and validate an `actiba-pwl-set/1` file (every inner table against the actiba-pwl/1 schema)."""
    name = os.fspath(path)
    d, _ = _atomic.read_json(path, "table-set")
    return from_dict(d, source=name)


def is_tableset_file(path: str | os.PathLike) -> bool:
    """Cheap check: does `path` look like an `actiba-pwl-set/1` file (by its "format" near the start)?"""
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    if re.search(r'"format"\s*:\s*"' + re.escape(FORMAT) + '"', head):
        return True
    if '"format"' in head or not head.lstrip().startswith("{"):
        return False  # "format" is near the start and says something else, or it is not JSON
    try:  # a writer that put "format" after the tables: parse the whole file
        with open(path, encoding="utf-8") as fh:
            d = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(d, dict) and d.get("format") == FORMAT
