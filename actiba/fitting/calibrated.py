"""Tables fitted to the inputs a model's activation sites really see.

Why: a uniform-range table spends its segments on [-8, 8] evenly, but a site's inputs usually fill a
narrower, lopsided interval. Two ways to use the statistics:

- ``weighting="density"`` (default): rms weighted by the histogram density (smoothed, with a small
  floor so no region is free) on [p_lo, p_hi], which minimizes the *expected* squared error there.
  Measured on the embedded models (eval/results/calibration.md) this is what pays: 4 segments lose
  0.56 % bits/byte instead of 6.9 %.
- ``weighting="range"``: max-abs on [p_lo, p_hi] (the bulk, by default the 0.1–99.9 percentiles),
  asymptote tails so the error stays bounded on the rare values outside.
  With asymptote tails this gives practically the uniform table back: pinning the asymptotes at the
  edge of the data costs more than the bulk error, so the range widens until they fit.

Every table records in its provenance which statistics (file hash, model), sites, percentiles and
weighting it came from, so a table is never mistaken for one fitted to another model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..calibrate.stats import CalibrationStats, SiteStats, pooled
from ..errors import InputError
from ..table import Table
from ..tableset import TableSet

WEIGHTINGS = ("range", "density")
MIN_WIDTH = 1e-6
DENSITY_FLOOR = 1e-3  # relative to the peak: every part of the range keeps some weight
SMOOTH_FRACTION = 1 / 256  # Gaussian smoothing sigma as a fraction of the range


def _canonical(function: str) -> str:
    key = function.strip().lower()
    return {"swish": "silu"}.get(key, key)


def calibrated_range(s: SiteStats, percentiles: tuple[float, float]) -> tuple[float, float, str | None]:
    """(lo, hi, note): the percentile range, widened when it is (nearly) a single point."""
    p_lo, p_hi = (float(p) for p in percentiles)
    if not (0.0 <= p_lo < p_hi <= 100.0):
        raise InputError(f"percentiles must satisfy 0 <= LO < HI <= 100, got {p_lo:g} {p_hi:g}")
    if s.finite == 0:
        raise InputError(f"site {s.site} saw no finite values; nothing to calibrate on")
    lo, hi = s.quantile(p_lo), s.quantile(p_hi)
    if hi - lo >= max(MIN_WIDTH, 1e-9 * max(abs(lo), abs(hi))):
        return lo, hi, None
    c = 0.5 * (lo + hi)
    half = max(0.5 * (s.max - s.min), 1e-3 * (1.0 + abs(c)))
    return c - half, c + half, (f"percentile range [{lo:.6g}, {hi:.6g}] is too narrow; widened to "
                                f"[{c - half:.6g}, {c + half:.6g}]")


def mass_in(s: SiteStats, lo: float, hi: float) -> float:
    """Fraction of the finite values in histogram bins overlapping [lo, hi]."""
    if not s.counts:
        return 0.0
    e = np.asarray(s.edges, dtype=np.float64)
    c = np.asarray(s.counts, dtype=np.float64)
    overlap = (e[1:] >= lo) & (e[:-1] <= hi)
    return float(c[overlap].sum() / max(c.sum(), 1.0))


def density_weight(s: SiteStats, lo: float, hi: float) -> Callable[[np.ndarray], np.ndarray]:
    """The histogram density on [lo, hi], Gaussian-smoothed and floored, scaled to peak 1.

    A single repeated value has no density to follow: every point of the (widened) range weighs the same.
    """
    if s.width == 0.0:
        return lambda x: np.ones_like(np.asarray(x, dtype=np.float64))
    pdf = s.density()
    n = 2049
    xs = np.linspace(lo, hi, n)
    step = xs[1] - xs[0]
    sigma = max(SMOOTH_FRACTION * (hi - lo), s.width)
    # sub-sample each grid cell so narrow bins are not missed, then smooth on the grid
    sub = pdf(xs[:, None] + step * (np.arange(8)[None, :] / 8.0 - 0.4375)).mean(axis=1)
    k = max(1, int(math.ceil(3 * sigma / step)))
    kern = np.exp(-0.5 * (np.arange(-k, k + 1) * step / sigma) ** 2)
    padded = np.pad(sub, k, mode="edge")
    smooth = np.convolve(padded, kern / kern.sum(), mode="valid")
    peak = float(smooth.max())
    if not peak > 0:
        raise InputError(f"site {s.site}: the histogram has no mass in [{lo:.6g}, {hi:.6g}]")
    w = np.maximum(smooth / peak, DENSITY_FLOOR)

    def weight(x: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(x, dtype=np.float64), xs, w, left=DENSITY_FLOOR, right=DENSITY_FLOOR)

    return weight


TAILS = ("asymptote", "auto", "free", "clamp")
AUTO_COST = 1.5  # "auto" keeps asymptote tails unless they make the in-range error this many times worse


def _in_range_error(table: Table, act: Any, lo: float, hi: float, kw: dict[str, Any]) -> float:
    """The fitted metric measured on [lo, hi] only (canonical evaluator on a dense grid)."""
    x = np.linspace(lo, hi, 20001)
    err = table(x) - act.f(x)
    if kw["metric"] == "max-abs":
        return float(np.max(np.abs(err)))
    w = kw["weight"](x)
    return float(np.sqrt(np.sum(w * err ** 2) / np.sum(w)))


def _widened(act: Any, lo: float, hi: float, eps: float) -> tuple[float, float]:
    """[lo, hi] pushed out (25 % of the width per step, at most 8 steps) on each side whose asymptote
    is still more than eps/4 from f at the edge, so pinned tails no longer dominate the error."""
    width = hi - lo
    for side, line in (("lo", act.left), ("hi", act.right)):
        if line is None:
            continue
        for _ in range(8):
            edge = lo if side == "lo" else hi
            if abs(float(act.f(np.array([edge]))[0]) - (line[0] * edge + line[1])) <= 0.25 * eps:
                break
            if side == "lo":
                lo -= 0.25 * width
            else:
                hi += 0.25 * width
    return lo, hi


def _fit_tails(function: str, segments: int, tails: str, kw: dict[str, Any]) -> tuple[Table, str | None]:
    """Fit on kw["range"] with `tails`; returns the table and a note on what was done about the tails.

    Pinned tails make the table *be* the asymptote beyond the outer knots, so on a range that stops
    where f is still far from its asymptote (SiLU on [-4.5, 4.6]: 0.05 at the left edge) they cost
    more than the whole bulk error. "asymptote" then also tries a range widened until the asymptotes
    are close and keeps whichever is better *on the calibrated range* (the bound still holds on all
    of ℝ); "auto" uses free tails when pinned ones would cost more than AUTO_COST times their error.
    """
    from ..functions import get
    from . import fit

    if tails not in TAILS:
        raise InputError(f"unknown tails {tails!r}; use one of: {', '.join(TAILS)}")
    if tails in ("free", "clamp"):
        return fit(function, segments, tails=tails, **kw), None
    act = get(function, kw.get("beta"))
    lo, hi = kw["range"]
    free = fit(function, segments, tails="free", **kw)
    e_free = _in_range_error(free, act, lo, hi, kw)
    best, e_best, where = None, math.inf, ""
    for rng in dict.fromkeys([(lo, hi), _widened(act, lo, hi, e_free)]):
        try:
            t = fit(function, segments, tails="asymptote", **{**kw, "range": rng})
        except (InputError, IndexError, ValueError):  # IndexError: greedy fails when no tail fits in range
            continue
        e = _in_range_error(t, act, lo, hi, kw)
        if e < e_best:
            best, e_best, where = t, e, ("" if rng == (lo, hi) else f"fitted on [{rng[0]:.4g}, {rng[1]:.4g}]")
    if best is None:
        return free, "asymptote tails impossible on this range; free tails used (error unbounded outside)"
    if tails == "auto" and e_best > AUTO_COST * e_free:
        return free, (f"asymptote tails would raise the in-range error from {e_free:.3g} to {e_best:.3g}; "
                      "free tails used (error unbounded outside the range)")
    note = f"asymptote tails {where}" if where else None
    if e_best > AUTO_COST * e_free:
        note = (note + "; " if note else "") + (f"free tails would give {e_free:.3g} on the range "
                                                 f"(vs {e_best:.3g}) but an unbounded error outside")
    return best, note


def fit_calibrated(function: str, segments: int, stats: SiteStats | list[SiteStats], *,
                   weighting: str = "density", percentiles: tuple[float, float] = (0.1, 99.9),
                   tails: str = "asymptote", continuous: bool = True, beta: float | None = None,
                   source: dict[str, Any] | None = None) -> Table:
    """Fit `function` with `segments` segments to the distribution in `stats` (several sites are pooled).

    `tails`: "asymptote" (bounded on all of ℝ), "auto" (asymptote unless it costs > AUTO_COST× on the
    range, then free), "free" or "clamp".
    `source` (e.g. the statistics file hash and model fingerprint) goes into the table's provenance.
    """
    from ..functions import get

    if weighting not in WEIGHTINGS:
        raise InputError(f"unknown weighting {weighting!r}; use one of: {', '.join(WEIGHTINGS)}")
    sites = stats if isinstance(stats, list) else [stats]
    if not sites:
        raise InputError("no site statistics to fit to")
    fn = _canonical(function)
    wrong = [s for s in sites if s.function != fn]
    if wrong:
        raise InputError(f"statistics of {wrong[0].site} are for {wrong[0].function}, not {fn}")
    s = pooled(sites) if len(sites) > 1 else sites[0]
    lo, hi, note = calibrated_range(s, percentiles)
    mass = mass_in(s, lo, hi)
    if mass <= 0.0:
        raise InputError(f"site {s.site}: the histogram has no mass in [{lo:.6g}, {hi:.6g}]")
    kw: dict[str, Any] = dict(range=(lo, hi), continuous=continuous, beta=beta)
    if weighting == "range":
        kw["metric"] = "max-abs"
    else:
        kw.update(metric="rms", weight=density_weight(s, lo, hi))
    table, tails_note = _fit_tails(function, segments, tails, kw)
    note = "; ".join(n for n in (note, tails_note) if n) or None
    used = "asymptote" if table.error.get("over") == "real-line" else ("free" if tails == "auto" else tails)
    table.provenance["calibration"] = {
        "tails": used,
        **(source or {}),
        "sites": [x.site for x in sites],
        "percentiles": [float(percentiles[0]), float(percentiles[1])],
        "range": [lo, hi],
        "error_in_range": _in_range_error(table, get(function, beta), lo, hi, kw),
        "mass_in_range": mass,
        "weighting": weighting,
        "samples": int(sum(x.finite for x in sites)),
    }
    if note:
        table.provenance["calibration"]["note"] = note
        if table.report is not None:
            table.report.message = (table.report.message + "; " if table.report.message else "") + note
    return table


def source_of(stats: CalibrationStats) -> dict[str, Any]:
    """What a table records about the statistics it came from."""
    return {"stats_sha256": stats.sha256(), "model": stats.model.get("name_or_path"),
            "model_sha256": stats.model.get("sha256"), "data": stats.data.get("source"),
            "data_sha256": stats.data.get("sha256")}


def set_key(function: str, pattern: str) -> str:
    """The table-set key of a shared table: the pattern if it names a function, else PATTERN:fn#*."""
    fn = _canonical(function)
    if pattern in ("", "*"):
        return f"*:{fn}#*"
    return pattern if ":" in pattern else f"{pattern}:{fn}#*"


def fit_sites(stats: CalibrationStats, function: str, segments: int, *, per_site: bool = True,
              pattern: str = "*", **kw: Any) -> TableSet:
    """A TableSet: one table per site matching `pattern`, or one shared table (pooled statistics)."""
    sites = stats.select(function, pattern)
    src = source_of(stats)
    if per_site:
        tables = {s.site: fit_calibrated(function, segments, s, source=src, **kw) for s in sites}
    else:
        tables = {set_key(function, pattern): fit_calibrated(function, segments, sites, source=src, **kw)}
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    return TableSet(tables, model=dict(stats.model),
                    calibration={**src, "function": _canonical(function), "segments": int(segments),
                                 "per_site": bool(per_site), "pattern": pattern,
                                 "data_info": dict(stats.data), **options})
