"""What one evaluated configuration is, how it is written in files, and the default sweeps.

Why a small dataclass and not the CLI flags: a sweep is a list of configurations that must be hashed
(for the resume cache), written into reports (DESIGN §4 `configs` rows) and read back from
`--config FILE`, so one plain JSON-able shape serves all three.

A configuration file (JSON, or YAML when PyYAML is installed) is either one object or
``{"configs": [...]}``::

    {"name": "cumba+silu16", "rewrites": ["cumba"],
     "activations": {"silu": {"segments": 16}, "softplus": {"table": "relu"}},
     "sites": {"cumba": ["node_cumsum_*"]}, "cumba_min_n": 32}

`rewrites` names graph rewrites from `actiba.rewrite.names.REWRITES` (cumba, reduba, ssd-d1, ssd-d2).
Files written before it existed give one boolean per rewrite (`"cumba": true`, `"ssd_d1": true`); they
still load, mapped onto `rewrites`.

`"ssd_chunk": 64` runs Mamba-2's SSD (with d1/d2 or HF's own) at that chunk length instead of the
model's: exact for any chunk, cheaper for shorter ones until the inter-chunk work takes over.

An activation is given by `segments` (fitted with asymptote tails on the function's default range,
cached), by `table` = a path to an `actiba-pwl/1` file or to an `actiba-pwl-set/1` table set (its tables
of that function, per site), or by `table` = "relu" (XAMBA's ReLU in place of Softplus).

Calibrated tables: ``{"segments": 8, "calibrated": "per-site"|"shared", "weighting": "density"|"range",
"percentiles": [0.1, 99.9]}`` fits tables to the activation statistics the model shows on the TRAIN split
(never the held-out text the metric is measured on). `actiba.evaluate.tables` turns a configuration's
activations into tables (`tables_for`), fitting, calibrating and caching them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..activations import SWEEP_NAMES as ACT_NAMES  # the activation registry
from ..errors import InputError
from ..rewrite.names import REWRITES
from . import tables  # the calibration settings `key` hashes (read at call time: one owner)

SEGMENTS = (4, 8, 16, 32)
CALIBRATED = ("shared", "per-site")
WEIGHTINGS = ("range", "density")
_SPEC_KEYS = {"segments", "table", "calibrated", "weighting", "percentiles"}
LEGACY_FLAGS = {"cumba": "cumba", "reduba": "reduba", "ssd_d1": "ssd-d1", "ssd_d2": "ssd-d2"}  # old bool keys


def _rewrite_tuple(names: Any) -> tuple[str, ...]:
    """Known rewrite names in REWRITES order, once each (so equal sets give equal keys)."""
    chosen = set(names)
    return tuple(r for r in REWRITES if r in chosen)


@dataclass(init=False)
class Config:
    """One point of the sweep: graph rewrites (by name) plus activation tables.

    Keyword-constructed: ``Config("x", rewrites=("cumba", "ssd-d1"), activations=...)``. The boolean
    keywords ``cumba=``, ``reduba=``, ``ssd_d1=``, ``ssd_d2=`` (what older code and files say) add or
    remove that rewrite.
    """

    name: str
    rewrites: tuple[str, ...] = ()
    activations: dict[str, dict[str, Any]] = field(default_factory=dict)
    sites: dict[str, list[str]] = field(default_factory=dict)  # rewrite -> include globs (per-site)
    cumba_min_n: int | None = None  # per-site: CumBA only where the scanned length n >= this
    measure_sites: bool = False  # per-site by measurement: keep CumBA/ReduBA only on site classes timed faster
    ssd_chunk: int | None = None  # Mamba-2 SSD chunk length (exact for any; None: the model's own)

    def __init__(self, name: str, *, rewrites: Any = (), activations: dict[str, dict[str, Any]] | None = None,
                 sites: dict[str, list[str]] | None = None, cumba_min_n: int | None = None,
                 measure_sites: bool = False, ssd_chunk: int | None = None, cumba: bool | None = None,
                 reduba: bool | None = None, ssd_d1: bool | None = None, ssd_d2: bool | None = None) -> None:
        unknown = [r for r in rewrites if r not in REWRITES]
        if unknown:
            raise InputError(f"{name}: unknown rewrite(s) {unknown}; known: {', '.join(REWRITES)}")
        chosen = set(rewrites)
        for flag, on in (("cumba", cumba), ("reduba", reduba), ("ssd_d1", ssd_d1), ("ssd_d2", ssd_d2)):
            if on is not None:
                (chosen.add if on else chosen.discard)(LEGACY_FLAGS[flag])
        self.name = name
        self.rewrites = _rewrite_tuple(chosen)
        self.activations = dict(activations or {})
        self.sites = dict(sites or {})
        self.cumba_min_n = cumba_min_n
        self.measure_sites = measure_sites
        self.ssd_chunk = ssd_chunk

    @property
    def cumba(self) -> bool:
        return "cumba" in self.rewrites

    @property
    def reduba(self) -> bool:
        return "reduba" in self.rewrites

    @property
    def ssd_d1(self) -> bool:
        return "ssd-d1" in self.rewrites

    @property
    def ssd_d2(self) -> bool:
        return "ssd-d2" in self.rewrites

    @property
    def is_baseline(self) -> bool:
        return not (self.rewrites or self.ssd_chunk or self.activations)

    @property
    def ssd(self) -> tuple[bool, bool]:
        return self.ssd_d1, self.ssd_d2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rewrites"] = list(self.rewrites)
        return d

    def key(self) -> str:
        """Stable hash of everything that changes the result (names excluded)."""
        d = self.to_dict()
        d.pop("name")
        if d["ssd_chunk"] is None:  # keeps the keys (and resumable caches) of configurations without it
            d.pop("ssd_chunk")
        for spec in d["activations"].values():  # a table file counts by content, not by path
            t = spec.get("table")
            if t and t != "relu" and os.path.isfile(t):
                spec["table_sha"] = hashlib.sha256(Path(t).read_bytes()).hexdigest()[:16]
            if spec.get("calibrated"):  # calibration data and defaults change the tables
                spec["calibration_data"] = [tables.CALIB_BYTES, tables.CALIB_CHUNKS, tables.CALIB_SEQ_LEN]
                spec.setdefault("weighting", tables.DEFAULT_WEIGHTING)
                spec.setdefault("percentiles", list(tables.DEFAULT_PERCENTILES))
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


KEYS = tuple(f.name for f in fields(Config))  # what a configuration file may say (plus LEGACY_FLAGS)


def from_dict(d: Any, where: str = "config") -> Config:
    """Validate a plain dict into a Config; every problem is one InputError naming the key."""
    if not isinstance(d, dict):
        raise InputError(f"{where}: a configuration must be an object, got {type(d).__name__}")
    unknown = set(d) - set(KEYS) - set(LEGACY_FLAGS)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; known: {', '.join(KEYS)}")
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"{where}: 'name' must be a non-empty string")
    rewrites = d.get("rewrites", [])
    if not isinstance(rewrites, list | tuple) or not all(isinstance(r, str) for r in rewrites):
        raise InputError(f"{where} {name}: 'rewrites' must be a list of rewrite names ({', '.join(REWRITES)})")
    bad = [r for r in rewrites if r not in REWRITES]
    if bad:
        raise InputError(f"{where} {name}: 'rewrites' has unknown rewrite(s) {bad}; known: {', '.join(REWRITES)}")
    chosen = set(rewrites)
    for k, rw in LEGACY_FLAGS.items():
        if k in d:
            if not isinstance(d[k], bool):
                raise InputError(f"{where} {name}: '{k}' must be true or false")
            if d[k]:
                chosen.add(rw)
            elif rw in chosen:
                raise InputError(f"{where} {name}: '{k}': false contradicts 'rewrites' naming {rw}")
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
        _check_spec(spec, f"{where} {name}: activations.{fn}", fn)
        clean[fn] = dict(spec)
    sites = d.get("sites") or {}
    if not isinstance(sites, dict) or not all(isinstance(v, list) for v in sites.values()):
        raise InputError(f"{where} {name}: 'sites' must map a rewrite to a list of name globs")
    min_n = d.get("cumba_min_n")
    if min_n is not None and (not isinstance(min_n, int) or isinstance(min_n, bool) or min_n < 1):
        raise InputError(f"{where} {name}: 'cumba_min_n' must be a positive integer")
    if not isinstance(d.get("measure_sites", False), bool):
        raise InputError(f"{where} {name}: 'measure_sites' must be true or false")
    chunk = d.get("ssd_chunk")
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise InputError(f"{where} {name}: 'ssd_chunk' must be a positive integer (the SSD chunk length)")
    return Config(name, rewrites=_rewrite_tuple(chosen), activations=clean,
                  sites={k: list(v) for k, v in sites.items()}, cumba_min_n=min_n,
                  measure_sites=bool(d.get("measure_sites", False)), ssd_chunk=chunk)


def _check_spec(spec: dict[str, Any], where: str, fn: str) -> None:
    """Validate one activation spec (segments / table / calibration settings); InputError naming the key."""
    unknown = set(spec) - _SPEC_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(_SPEC_KEYS)}")
    if "segments" in spec and (not isinstance(spec["segments"], int) or isinstance(spec["segments"], bool)
                               or spec["segments"] < 1):
        raise InputError(f"{where}.segments must be a positive integer")
    if "table" in spec:
        t = spec["table"]
        if t == "relu" and fn != "softplus":
            raise InputError(f"{where}: the 'relu' table stands for softplus only")
        if t != "relu" and not (isinstance(t, str) and os.path.isfile(t)):
            raise InputError(f"{where}.table {t!r} is not a file")
    cal = spec.get("calibrated")
    if cal is not None and cal not in CALIBRATED:
        raise InputError(f"{where}.calibrated must be one of {', '.join(CALIBRATED)}, got {cal!r}")
    if cal is not None and "segments" not in spec:
        raise InputError(f"{where}: 'calibrated' needs 'segments' (the tables are fitted)")
    for key in ("weighting", "percentiles"):
        if key in spec and cal is None:
            raise InputError(f"{where}.{key} applies to calibrated tables only (add \"calibrated\")")
    if "weighting" in spec and spec["weighting"] not in WEIGHTINGS:
        raise InputError(f"{where}.weighting must be one of {', '.join(WEIGHTINGS)}, got {spec['weighting']!r}")
    if "percentiles" in spec:
        p = spec["percentiles"]
        ok = (isinstance(p, list | tuple) and len(p) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in p))
        if not ok or not 0 <= p[0] < p[1] <= 100:
            raise InputError(f"{where}.percentiles must be [lo, hi] with 0 <= lo < hi <= 100, got {p!r}")


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


SWEEPS = ("default", "full", "quick")  # built-in sweeps: `actiba pareto --sweep NAME`


def default_sweep(model_type: str, quick: bool = False, chunk_size: int | None = None,
                  full: bool = False, functions: tuple[str, ...] = ()) -> list[Config]:
    """The sweep `actiba pareto` runs when given no --sweep file (`full`: `--sweep full`).

    A causal LM without SSM (`arch.NONE`) gets `activation_sweep(functions)`: its MLP functions
    (`arch.mlp_functions(model)`), no SSM rewrite. The rest of this says what the SSM families get.

    Full: graph rewrites alone, every table size for both activations, each activation alone, XAMBA's
    ReLU-for-Softplus, a per-site CumBA choice, the combined configurations, and calibrated tables
    (one shared table per function, N = 4 and 8) to set against the uniform-range tables of equal N.
    For Mamba-2 with its `chunk_size` given, SSD d1+d2 also at a half and a quarter of it (at least 16):
    the chunked SSD is exact for any chunk, and the best one depends on the device.

    Default: the full sweep without the configurations that the committed full results
    (eval/results/pareto_cpu, both models, f32) show dominated everywhere and that nothing else needs:
    16/32-segment tables (0.70-0.85x: a table costs more than OpenVINO's fused SiLU/Softplus, with no
    loss to win back), the combinations built on them, SSD d1 and d2 alone (d1+d2 is faster at the same
    loss) and the quarter chunk (slower than the half). They cost ~45 % of the full sweep's time, mostly
    compile and scoring of the slow table graphs, and the SSD exports (~6 s each, ~60 s under load).
    Also left to the full sweep: 4-segment tables (+6.9 % bits/byte on Mamba-2, +18 % on Mamba, at
    0.999-1.032x: inside the timing noise in all four committed runs) and Softplus alone at 16 segments
    (0.978-1.002x, +0.005-0.07 %): the front's speed-tie rule puts both behind the baseline everywhere,
    and each cost 5-9 s per run (two runs per model on a bf16 CPU). CumBA + ReduBA together was on no
    front of the eight default runs measured (behind SSD d1+d2 on Mamba-2, inside the noise on Mamba), and
    Mamba's per-site choice kept no site in any of them (its graph was the baseline's, 11-13 s a run);
    the Mamba-2 per-site row, built on SSD d1+d2, stays.
    Per-site calibrated tables are left to --sweep files (``"calibrated": "per-site"``): they were not
    consistently better than a shared table (eval/results/calibration.md) and cost a fit per site.
    Quick: a handful, with the exact SSD d1+d2 for SSD models (the rewrite that pays most on Mamba-2).
    The SSD rows go to every family whose registry entry has SSD mixers (Mamba-2 and its hybrids).
    """
    from ..models.arch import ARCHITECTURES, NONE, SSD

    entry = ARCHITECTURES.get(model_type)
    if entry is not None and entry.ssm == NONE:
        return activation_sweep(functions, quick=quick, full=full)
    ssd_family = getattr(entry, "ssm", None) == SSD
    both = {"silu": {"segments": 16}, "softplus": {"segments": 16}}
    if quick:
        out = [baseline(), Config("cumba+reduba", cumba=True, reduba=True),
               Config("act-both-8", activations={"silu": {"segments": 8}, "softplus": {"segments": 8}}),
               Config("softplus-relu", activations={"softplus": {"table": "relu"}})]
        return out + ([Config("ssd-d1+d2", ssd_d1=True, ssd_d2=True)] if ssd_family else [])
    out = [baseline(), Config("cumba", cumba=True), Config("reduba", reduba=True)]
    if full:
        out.append(Config("cumba+reduba", cumba=True, reduba=True))
    if ssd_family:
        out += [Config("ssd-d1", ssd_d1=True), Config("ssd-d2", ssd_d2=True)] if full else []
        out += [Config("ssd-d1+d2", ssd_d1=True, ssd_d2=True),
                Config("ssd-d1+d2+measured-sites", ssd_d1=True, ssd_d2=True, cumba=True, reduba=True,
                       measure_sites=True)]
        chunks = (chunk_size // 2, chunk_size // 4) if chunk_size else ()
        out += [Config(f"ssd-d1+d2+chunk{q}", ssd_d1=True, ssd_d2=True, ssd_chunk=q)
                for q in (chunks if full else chunks[:1]) if q >= 16]
    elif full:
        out.append(Config("measured-sites", cumba=True, reduba=True, measure_sites=True))
    for n in SEGMENTS if full else (8,):
        out.append(Config(f"act-both-{n}", activations={"silu": {"segments": n}, "softplus": {"segments": n}}))
    for n in (4, 8) if full else (8,):  # density weighting: "range" gives the uniform table back
        spec = {"segments": n, "calibrated": "shared", "weighting": "density"}
        out.append(Config(f"act-both-{n}-cal-shared", activations={"silu": dict(spec), "softplus": dict(spec)}))
    if full:
        out += [Config("act-silu-16", activations={"silu": {"segments": 16}}),
                Config("act-softplus-16", activations={"softplus": {"segments": 16}})]
    out.append(Config("softplus-relu", activations={"softplus": {"table": "relu"}}))
    if full:
        out += [Config("softplus-relu+silu-16", activations={"silu": {"segments": 16}, "softplus": {"table": "relu"}}),
                Config("cumba+reduba+act-both-16", cumba=True, reduba=True, activations=both)]
        if ssd_family:
            out.append(Config("ssd-d2+reduba+act-both-16", ssd_d2=True, reduba=True, activations=both))
    return out


def activation_sweep(functions: tuple[str, ...], quick: bool = False, full: bool = False) -> list[Config]:
    """Baseline and ActiBA on `functions` only: the sweep of a causal LM without SSM (Llama's silu, GPT-2's
    gelu-tanh). Table sizes as in the SSM families' sweeps (4 and 8, a shared calibrated 8, and 16 as the
    accurate end; full: 4-32 and calibrated 4 and 8).

    Why no CumBA / ReduBA rows: they are XAMBA's rewrites of an SSM's sequential sums. These graphs
    have no CumSum at all (positions come from an arange; checked on every such family in
    tests/test_causal_lm.py), so CumBA has no site, and ReduBA's only sites would be the RMSNorm means,
    which are not what it is for; a --sweep file can still ask for either.
    """
    if not functions:
        raise ValueError("activation_sweep needs the model's MLP functions (arch.mlp_functions)")
    fns = tuple(dict.fromkeys(functions))
    tag = "+".join(fns)

    def act(n: int, **cal: str) -> dict[str, dict[str, Any]]:
        return {fn: {"segments": n, **cal} for fn in fns}

    sizes = (8, 4) if quick else SEGMENTS if full else (4, 8, 16)
    out = [baseline(), *(Config(f"act-{tag}-{n}", activations=act(n)) for n in sizes)]
    if not quick:
        out += [Config(f"act-{tag}-{n}-cal-shared", activations=act(n, calibrated="shared", weighting="density"))
                for n in ((4, 8) if full else (8,))]
    return out


def builtin_sweep(name: str, model_type: str, chunk_size: int | None = None,
                  functions: tuple[str, ...] = ()) -> list[Config]:
    """A built-in sweep by name (SWEEPS); `functions`: a causal LM's MLP functions (`default_sweep`)."""
    if name not in SWEEPS:
        raise InputError(f"unknown built-in sweep {name!r}; known: {', '.join(SWEEPS)} (or a JSON/YAML file)")
    return default_sweep(model_type, quick=name == "quick", chunk_size=chunk_size, full=name == "full",
                         functions=functions)


def sweep_document(configs: list[Config]) -> str:
    """A sweep file's text (`read_file` reads it back to the same configurations)."""
    return json.dumps({"configs": [c.to_dict() for c in configs]}, indent=1) + "\n"
