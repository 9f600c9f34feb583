"""The tables a configuration's activations need, and the calibration they are fitted from.

Why apart from `configs`: a configuration is plain data (hashed, written into reports, read back from
files) that needs no model, fitter or table; turning it into tables fits, loads table files and sets,
runs the model on calibration text and caches the results, which is this module's one job.

Fitted tables (``{"segments": N}``) are cached under ``actiba.data.cache_root()/tables``; calibration
statistics and the sets fitted to them under ``cache_root()/calibration``, keyed by the model's
fingerprint and the settings below (`configs.Config.key` hashes the same settings, so a change to them
changes the resume cache's keys too).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..activations import SWEEP_NAMES as ACT_NAMES  # the activation registry
from ..errors import InputError

if TYPE_CHECKING:
    from .configs import Config

DEFAULT_WEIGHTING = "density"  # "range" gives the uniform table back (eval/results/calibration.md)
# calibration data: CALIB_CHUNKS evenly spaced pieces of the train split, CALIB_BYTES in all (whole windows)
CALIB_BYTES = 16384
CALIB_CHUNKS = 16
CALIB_SEQ_LEN = 256
DEFAULT_PERCENTILES = (0.1, 99.9)


def relu_table() -> Any:
    """XAMBA's ReLU-for-Softplus as a 2-segment table (max error ln 2 at x = 0)."""
    from .._version import __version__
    from ..table import Table

    return Table([0.0], [0.0, 1.0], [0.0, 0.0], function="custom", domain=(-20.0, 20.0),
                 error={"max_abs": 0.6931471805599453, "max_rel": None, "rms": None, "over": "real-line"},
                 provenance={"actiba": __version__, "options": {"xamba": "relu-for-softplus"}})


def _table_cache() -> Path:
    from ..data import cache_root

    return cache_root() / "tables"


def _disk_cached(path: Path, load: Any, make: Any) -> Any:
    """`load(path)` if the cached file is valid, else `make()` saved there (best effort: the cache is an
    optimization only, so an invalid file is dropped and an unwritable cache is ignored)."""
    if path.is_file():
        try:
            return load(path)
        except InputError:
            path.unlink(missing_ok=True)
    obj = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        obj.save(path)
    except (OSError, InputError):
        pass
    return obj


def fitted_table(function: str, segments: int) -> Any:
    """A fitted table with asymptote tails (bounded on all of ℝ), cached outside the repo: refits are slow."""
    from ..fitting import fit
    from ..table import load

    def make() -> Any:
        try:
            return fit(function, segments, tails="asymptote")
        except InputError:
            return fit(function, segments)

    return _disk_cached(_table_cache() / f"{function}-{segments}-asymptote.json", load, make)


def _fingerprint(model: Any) -> dict[str, Any]:
    """The model's fingerprint (memoized per module object: hashing every weight is not free)."""
    from ..fingerprint import model_fingerprint

    hit = _FINGERPRINTS.get(model)
    if hit is None:
        hit = _FINGERPRINTS[model] = model_fingerprint(model)
    return hit


_FINGERPRINTS: Any = weakref.WeakKeyDictionary()
_MEMO: dict[str, Any] = {}  # calibration stats and fitted sets of this process, by cache file name


def calibration_data() -> bytes:
    """CALIB_BYTES of the TRAIN split in CALIB_CHUNKS evenly spaced pieces (each a whole number of windows).

    Why spread out: the split starts with one play's front matter; activations should come from text of
    every kind the model sees. Never the held-out split, which the metric scores.
    """
    from ..data import load_split

    train = load_split("train")
    piece = CALIB_BYTES // CALIB_CHUNKS
    if len(train) < CALIB_BYTES:
        raise InputError(f"the train split has {len(train)} bytes, fewer than the {CALIB_BYTES} calibration needs")
    step = (len(train) - piece) // max(1, CALIB_CHUNKS - 1)
    return b"".join(train[i * step:i * step + piece] for i in range(CALIB_CHUNKS))


def _calibration_dir() -> Path:
    from ..data import cache_root

    return cache_root() / "calibration"


def calibration_stats(lm: Any) -> Any:
    """Activation statistics of `lm` (a LoadedModel) on `calibration_data()`, cached by fingerprint."""
    from ..calibrate import calibrate, load_stats

    sha = _fingerprint(lm.model)["sha256"]
    name = f"{sha[:16]}-train{CALIB_BYTES}x{CALIB_CHUNKS}-L{CALIB_SEQ_LEN}.stats.json"
    if name in _MEMO:
        return _MEMO[name]

    def load(path: Path) -> Any:
        stats = load_stats(path)
        stats.check_model(lm.model)
        return stats

    def make() -> Any:
        return calibrate(lm.model, calibration_data(), seq_len=CALIB_SEQ_LEN, functions=ACT_NAMES,
                         model_name=lm.name,
                         data_name=f"train split: {CALIB_CHUNKS} evenly spaced pieces, {CALIB_BYTES} bytes")

    _MEMO[name] = _disk_cached(_calibration_dir() / name, load, make)
    return _MEMO[name]


def calibrated_set(lm: Any, function: str, segments: int, mode: str = "per-site", weighting: str = DEFAULT_WEIGHTING,
                   percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> Any:
    """A TableSet for `function` fitted to `lm`'s train-split statistics (one per site, or one shared).

    Only the sites the tables will replace are fitted or pooled: those inside the model's mixer scope
    (a hybrid's MLP and expert SiLUs are captured too, but stay exact, so they must not shape the table).
    """
    from ..fitting.calibrated import fit_sites
    from ..tableset import load_set

    sha = _fingerprint(lm.model)["sha256"]
    lo, hi = (float(p) for p in percentiles)
    name = (f"{sha[:16]}-train{CALIB_BYTES}x{CALIB_CHUNKS}-L{CALIB_SEQ_LEN}-{function}-{segments}-{mode}-"
            f"{weighting}-p{lo:g}-{hi:g}.set.json")
    if name in _MEMO:
        return _MEMO[name]
    _MEMO[name] = _disk_cached(
        _calibration_dir() / name, load_set,
        lambda: fit_sites(_in_scope(calibration_stats(lm), lm.model), function, int(segments),
                          per_site=(mode == "per-site"), weighting=weighting, percentiles=(lo, hi)))
    return _MEMO[name]


def _in_scope(stats: Any, model: Any) -> Any:
    """`stats` restricted to the sites inside `model`'s mixer scope (the same object if that is all)."""
    import dataclasses

    from ..models import mixer_scope
    from ..rewrite.site_ids import in_scope

    scope = mixer_scope(model)
    kept = {k: s for k, s in stats.sites.items() if in_scope(k, scope)}
    return stats if len(kept) == len(stats.sites) else dataclasses.replace(stats, sites=kept)


def _set_tables(path: str, function: str, lm: Any) -> dict[str, Any]:
    """The per-site entries of a user table set that approximate `function` (checked against `lm`)."""
    from ..fingerprint import check_fingerprint
    from ..rewrite.spec import canonical_function
    from ..tableset import load_set

    ts = load_set(path)
    if lm is not None and isinstance(ts.model, dict) and ts.model.get("sha256"):
        check_fingerprint(ts.model, lm.model, f"table set {path} is for", have=_fingerprint(lm.model),
                          name=lm.name)
    out = {k: t for k, t in ts.tables.items() if canonical_function(t.function or "") == function}
    if not out:
        raise InputError(f"table set {path} has no {function} table (it has {sorted(ts.functions())})")
    return out


def tables_for(config: Config, lm: Any = None) -> dict[str, Any]:
    """The tables of `config`: function -> Table, plus site id / site glob -> Table for per-site ones.

    `lm` (the LoadedModel) is needed for calibrated tables (fitted to its statistics) and to check that a
    user table set belongs to it; the mapping is what `actiba_scope` and `onnx_rw.apply` take.
    """
    from ..table import load

    out: dict[str, Any] = {}
    for fn, spec in config.activations.items():
        if spec.get("calibrated"):
            if lm is None:
                raise InputError(f"{config.name}: calibrated {fn} tables need the model (tables_for(config, lm))")
            ts = calibrated_set(lm, fn, int(spec["segments"]), spec["calibrated"],
                                spec.get("weighting", DEFAULT_WEIGHTING),
                                tuple(spec.get("percentiles", DEFAULT_PERCENTILES)))
            out.update(ts.tables)
        elif "segments" in spec:
            out[fn] = fitted_table(fn, int(spec["segments"]))
        elif spec["table"] == "relu":
            out[fn] = relu_table()
        else:
            from ..tableset import is_tableset_file

            if is_tableset_file(spec["table"]):
                out.update(_set_tables(spec["table"], fn, lm))
            else:
                out[fn] = load(spec["table"])
    return out


def describe_activations(config: Config) -> dict[str, dict[str, Any]]:
    """The report's `activations` field: {"silu": {"segments", "table"}} for each approximated one.

    `table` says where the table came from: ``fit:silu/8/asymptote`` (uniform over the function's
    default range), ``calibrated:per-site/range/p0.1-99.9`` or ``calibrated:shared/density/...`` (fitted to
    train-split statistics), ``relu``, a file path, or ``set:PATH`` (per-site tables from a user set).
    """
    out = {}
    for fn, spec in config.activations.items():
        if spec.get("calibrated"):
            lo, hi = spec.get("percentiles", DEFAULT_PERCENTILES)
            weighting = spec.get("weighting", DEFAULT_WEIGHTING)  # what `tables_for` fits when none is given
            out[fn] = {"segments": int(spec["segments"]),
                       "table": f"calibrated:{spec['calibrated']}/{weighting}/p{lo:g}-{hi:g}"}
        elif "segments" in spec:
            out[fn] = {"segments": int(spec["segments"]), "table": f"fit:{fn}/{spec['segments']}/asymptote"}
        elif spec["table"] == "relu":
            out[fn] = {"segments": 2, "table": "relu"}
        else:
            from ..tableset import is_tableset_file

            if is_tableset_file(spec["table"]):
                tabs = _set_tables(spec["table"], fn, None)
                out[fn] = {"segments": max(t.segments for t in tabs.values()), "table": f"set:{spec['table']}"}
            else:
                from ..table import load

                out[fn] = {"segments": load(spec["table"]).segments, "table": str(spec["table"])}
    return out
