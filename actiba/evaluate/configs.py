"""What one evaluated configuration is, how it is written in files, and the default sweeps.

Why a small dataclass and not the CLI flags: a sweep is a list of configurations that must be hashed
(for the resume cache), written into reports (DESIGN §4 `configs` rows) and read back from
`--config FILE`, so one plain JSON-able shape serves all three.

A configuration file (JSON, or YAML when PyYAML is installed) is either one object or
``{"configs": [...]}``::

    {"name": "cumba+silu16", "cumba": true, "reduba": false, "ssd_d1": false, "ssd_d2": false,
     "activations": {"silu": {"segments": 16}, "softplus": {"table": "relu"}},
     "sites": {"cumba": ["node_cumsum_*"]}, "cumba_min_n": 32}

An activation is given by `segments` (fitted with asymptote tails, cached), by `table` = a path to an
`actiba-pwl/1` file, or by `table` = "relu" (XAMBA's ReLU in place of Softplus).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

ACT_NAMES = ("silu", "softplus")
SEGMENTS = (4, 8, 16, 32)
_KEYS = {"name", "cumba", "reduba", "ssd_d1", "ssd_d2", "activations", "sites", "cumba_min_n"}


@dataclass
class Config:
    """One point of the sweep: graph rewrites plus activation tables."""

    name: str
    cumba: bool = False
    reduba: bool = False
    ssd_d1: bool = False
    ssd_d2: bool = False
    activations: dict[str, dict[str, Any]] = field(default_factory=dict)
    sites: dict[str, list[str]] = field(default_factory=dict)  # rewrite -> include globs (per-site)
    cumba_min_n: int | None = None  # per-site: CumBA only where the scanned length n >= this

    @property
    def is_baseline(self) -> bool:
        return not (self.cumba or self.reduba or self.ssd_d1 or self.ssd_d2 or self.activations)

    @property
    def ssd(self) -> tuple[bool, bool]:
        return self.ssd_d1, self.ssd_d2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def key(self) -> str:
        """Stable hash of everything that changes the result (names excluded)."""
        d = self.to_dict()
        d.pop("name")
        for spec in d["activations"].values():  # a table file counts by content, not by path
            t = spec.get("table")
            if t and t != "relu" and os.path.isfile(t):
                spec["table_sha"] = hashlib.sha256(Path(t).read_bytes()).hexdigest()[:16]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def from_dict(d: Any, where: str = "config") -> Config:
    """Validate a plain dict into a Config; every problem is one InputError naming the key."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: a configuration must be an object, got {type(d).__name__}")
    unknown = set(d) - _KEYS
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_KEYS)}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: 'name' must be a non-empty string")
    for k in ("cumba", "reduba", "ssd_d1", "ssd_d2"):
        if not isinstance(d.get(k, False), bool):
            raise InputError(f"{where} {name}: '{k}' must be true or false")
    acts = d.get("activations") or {}
    if not isinstance(acts, dict):
        raise InputError(f"{where} {name}: 'activations' must be an object")
    clean: dict[str, dict[str, Any]] = {}
    for fn, spec in acts.items():
        fn = "silu" if fn == "swish" else fn
        if fn not in ACT_NAMES:
            raise InputError(f"{where} {name}: unknown activation {fn!r}; known: {', '.join(ACT_NAMES)}")
        if spec in (None, "exact"):
            continue
        if isinstance(spec, int):
            spec = {"segments": spec}
        if not isinstance(spec, dict) or ("segments" in spec) == ("table" in spec):
            raise InputError(f"{where} {name}: activations.{fn} needs exactly one of 'segments' or 'table'")
        if "segments" in spec and (not isinstance(spec["segments"], int) or spec["segments"] < 1):
            raise InputError(f"{where} {name}: activations.{fn}.segments must be a positive integer")
        if "table" in spec:
            t = spec["table"]
            if t == "relu" and fn != "softplus":
                raise InputError(f"{where} {name}: the 'relu' table stands for softplus only")
            if t != "relu" and not (isinstance(t, str) and os.path.isfile(t)):
                raise InputError(f"{where} {name}: activations.{fn}.table {t!r} is not a file")
        clean[fn] = dict(spec)
    sites = d.get("sites") or {}
    if not isinstance(sites, dict) or not all(isinstance(v, list) for v in sites.values()):
        raise InputError(f"{where} {name}: 'sites' must map a rewrite to a list of name globs")
    min_n = d.get("cumba_min_n")
    if min_n is not None and (not isinstance(min_n, int) or min_n < 1):
        raise InputError(f"{where} {name}: 'cumba_min_n' must be a positive integer")
    return Config(name, bool(d.get("cumba", False)), bool(d.get("reduba", False)), bool(d.get("ssd_d1", False)),
                  bool(d.get("ssd_d2", False)), clean, {k: list(v) for k, v in sites.items()}, min_n)


def read_file(path: str | os.PathLike) -> list[Config]:
    """Configurations from a JSON or YAML file (one object, a list, or {"configs": [...]})."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"config file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json / yaml syntax errors
        raise InputError(f"cannot parse {p}: {str(exc).splitlines()[0]}") from None
    items = data.get("configs") if isinstance(data, dict) and "configs" in data else data
    items = items if isinstance(items, list) else [items]
    configs = [from_dict(d, f"{p}[{i}]") for i, d in enumerate(items)]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InputError(f"{p}: configuration names must be unique")
    return configs


def baseline() -> Config:
    return Config("baseline")


def default_sweep(model_type: str, quick: bool = False) -> list[Config]:
    """The sweep `actiba pareto` runs when given no --sweep file.

    Full: graph rewrites alone, every table size for both activations, each activation alone, XAMBA's
    ReLU-for-Softplus, a per-site CumBA choice and the combined configurations. Quick: a handful.
    """
    mamba2 = model_type == "mamba2"
    both = {"silu": {"segments": 16}, "softplus": {"segments": 16}}
    if quick:
        out = [baseline(), Config("cumba+reduba", cumba=True, reduba=True),
               Config("act-both-8", activations={"silu": {"segments": 8}, "softplus": {"segments": 8}}),
               Config("softplus-relu", activations={"softplus": {"table": "relu"}})]
        return out
    out = [baseline(), Config("cumba", cumba=True), Config("reduba", reduba=True),
           Config("cumba+reduba", cumba=True, reduba=True)]
    if mamba2:
        out += [Config("ssd-d1", ssd_d1=True), Config("ssd-d2", ssd_d2=True),
                Config("ssd-d1+d2", ssd_d1=True, ssd_d2=True)]
    out.append(Config("cumba-n>=32", cumba=True, cumba_min_n=32))
    for n in SEGMENTS:
        out.append(Config(f"act-both-{n}", activations={"silu": {"segments": n}, "softplus": {"segments": n}}))
    out += [Config("act-silu-16", activations={"silu": {"segments": 16}}),
            Config("act-softplus-16", activations={"softplus": {"segments": 16}}),
            Config("softplus-relu", activations={"softplus": {"table": "relu"}}),
            Config("softplus-relu+silu-16", activations={"silu": {"segments": 16}, "softplus": {"table": "relu"}}),
            Config("cumba+reduba+act-both-16", cumba=True, reduba=True, activations=both)]
    if mamba2:
        out.append(Config("ssd-d2+reduba+act-both-16", ssd_d2=True, reduba=True, activations=both))
    return out


# --- tables -------------------------------------------------------------------------------------------

def relu_table() -> Any:
    """XAMBA's ReLU-for-Softplus as a 2-segment table (max error ln 2 at x = 0)."""
    from ..table import Table

    return Table([0.0], [0.0, 1.0], [0.0, 0.0], function="custom", domain=(-20.0, 20.0),
                 error={"max_abs": 0.6931471805599453, "max_rel": None, "rms": None, "over": "real-line"},
                 provenance={"actiba": "0.1.0", "options": {"xamba": "relu-for-softplus"}})


def _table_cache() -> Path:
    from ..data import cache_root

    return cache_root() / "tables"


def fitted_table(function: str, segments: int) -> Any:
    """A fitted table with asymptote tails (bounded on all of ℝ), cached outside the repo: refits are slow."""
    import actiba

    path = _table_cache() / f"{function}-{segments}-asymptote.json"
    if path.is_file():
        try:
            return actiba.load(path)
        except InputError:
            path.unlink(missing_ok=True)
    try:
        table = actiba.fit(function, segments, tails="asymptote")
    except InputError:
        table = actiba.fit(function, segments)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table.save(path)
    except (OSError, InputError):
        pass  # the cache is an optimization only
    return table


def tables_for(config: Config) -> dict[str, Any]:
    """function -> Table for every approximated activation of `config`."""
    import actiba

    out = {}
    for fn, spec in config.activations.items():
        if "segments" in spec:
            out[fn] = fitted_table(fn, int(spec["segments"]))
        elif spec["table"] == "relu":
            out[fn] = relu_table()
        else:
            out[fn] = actiba.load(spec["table"])
    return out


def describe_activations(config: Config) -> dict[str, dict[str, Any]]:
    """The report's `activations` field: {"silu": {"segments", "table"}} for each approximated one."""
    out = {}
    for fn, spec in config.activations.items():
        if "segments" in spec:
            out[fn] = {"segments": int(spec["segments"]), "table": f"fit:{fn}/{spec['segments']}/asymptote"}
        elif spec["table"] == "relu":
            out[fn] = {"segments": 2, "table": "relu"}
        else:
            import actiba

            out[fn] = {"segments": actiba.load(spec["table"]).segments, "table": str(spec["table"])}
    return out
