"""Per-site activation statistics: the `actiba-calibration/1` file, histograms, quantiles, pooling.

Why a dyadic lattice: each site's histogram has equal bins of width w = 2^k aligned at 0, with k
chosen so [min, max] spans at least `MIN_BINS` bins. Bin assignment is then exact (x / 2^k is exact in
floating point), every quantile is known to within one bin, and histograms of different sites merge
*exactly* (a coarser lattice's bins are unions of a finer one's), which is what a shared table needs.

File format (JSON)::

    {"format": "actiba-calibration/1", "actiba": "0.1.0", "created": "...Z",
     "model": {"name_or_path", "model_type", "sha256"},
     "data": {"source", "n_bytes", "sha256", "seq_len", "windows", ...},
     "sites": {"<site id>": {"function", "shape", "count", "nan", "posinf", "neginf",
                              "min", "max", "mean", "std", "percentiles": {"0.01": ..., ...},
                              "histogram": {"start": edges[0], "width": w, "counts": [...]}}}}

`count` is every element seen (NaN and ±inf included); the histogram holds the finite ones only.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _atomic
from ..errors import InputError
from ..fingerprint import check_fingerprint, model_fingerprint  # noqa: F401 - part of this module's API

FORMAT = "actiba-calibration/1"
PERCENTILES = ("0.01", "0.1", "1", "5", "25", "50", "75", "95", "99", "99.9", "99.99")
MIN_BINS = 4096
_TINY = 2.0 ** -1000  # smallest bin width used


# --- histogram lattice -----------------------------------------------------------------------------------

def lattice(lo: float, hi: float, min_bins: int = MIN_BINS) -> tuple[float, int, int]:
    """(width 2^k, first index i0, bin count n) so that bins [(i0+j)w, (i0+j+1)w] cover [lo, hi].

    k is the largest with at least `min_bins` bins over [lo, hi] (fewer than 2 * min_bins + 2 in all;
    bins are half-open, so when hi sits on an edge the last bin starts at hi); lo == hi gives (0, 0, 1).
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"bad histogram range [{lo}, {hi}]")
    if lo == hi:
        return 0.0, 0, 1
    half_span = hi / 2 - lo / 2  # no overflow for any finite pair
    if half_span < _TINY * min_bins:  # subnormal spans: keep w normal (x / w stays exact), fewer bins
        w = _TINY
    else:
        w = 2.0 ** (math.floor(math.log2(half_span)) + 1 - math.ceil(math.log2(min_bins)))
        while half_span * 2 / w < min_bins:  # log2 rounding can be off by one
            w /= 2
        while half_span * 2 / w >= 2 * min_bins:
            w *= 2
    return (w, *_span(lo, hi, w))


def _span(lo: float, hi: float, w: float) -> tuple[int, int]:
    """(first index, bin count) of the half-open width-w lattice bins covering [lo, hi]."""
    i0 = int(lattice_floor(np.array([lo]), w)[0])
    return i0, int(lattice_floor(np.array([hi]), w)[0]) + 1 - i0


def _coarsen(first: int, size: int, shift: int) -> np.ndarray:
    """Lattice indices first..first+size-1 of width w mapped to width w * 2**shift (floor, exact)."""
    return np.right_shift(first + np.arange(size, dtype=np.int64), min(shift, 63))


def lattice_floor(x: np.ndarray, w: float) -> np.ndarray:
    """floor(x / w) as integers, exact: w is a power of two; a quotient that underflows is corrected."""
    k = np.floor(np.asarray(x, dtype=np.float64) / w).astype(np.int64)
    k -= np.asarray(x < k * w, dtype=np.int64)
    k += np.asarray(x >= (k + 1) * w, dtype=np.int64)
    return k


def bin_index(x: np.ndarray, w: float, i0: int, n: int) -> np.ndarray:
    """Bin of each finite x on the lattice (exact; bins are half-open [a, b))."""
    if w == 0.0:
        return np.zeros(np.shape(x), dtype=np.int64)
    return np.clip(lattice_floor(x, w) - i0, 0, n - 1)


# --- one site ----------------------------------------------------------------------------------------------

@dataclass
class SiteStats:
    """Distribution of one activation site's inputs (or of several sites pooled)."""

    site: str
    function: str
    shape: list[int]
    count: int
    nan: int
    posinf: int
    neginf: int
    min: float
    max: float
    mean: float
    std: float
    percentiles: dict[str, float]
    edges: list[float]
    counts: list[int]
    _cum: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def finite(self) -> int:
        return int(self.count - self.nan - self.posinf - self.neginf)

    @property
    def width(self) -> float:
        """Bin width (0 for a single repeated value)."""
        return float(self.edges[1] - self.edges[0]) if len(self.edges) > 1 else 0.0

    def _order_stat(self, j: int) -> float:
        """Estimate of the j-th smallest finite value (0-based); always inside the true value's bin."""
        n = self.finite
        if j <= 0:
            return self.min
        if j >= n - 1:
            return self.max
        if self._cum is None:
            self._cum = np.cumsum(np.asarray(self.counts, dtype=np.int64))
        b = int(np.searchsorted(self._cum, j + 1, side="left"))
        before = int(self._cum[b - 1]) if b else 0
        cnt = int(self.counts[b])
        lo, hi = self.edges[b], self.edges[b + 1]
        est = lo + (j - before + 0.5) / cnt * (hi - lo)
        return float(min(max(est, self.min), self.max))

    def quantile(self, q_percent: float) -> float:
        """numpy.percentile's (linear) q-th percentile of the finite values, to within one bin."""
        q = float(q_percent)
        if not 0.0 <= q <= 100.0:
            raise InputError(f"percentile must be in [0, 100], got {q_percent}")
        n = self.finite
        if n == 0:
            raise InputError(f"site {self.site} saw no finite values")
        h = (n - 1) * q / 100.0
        k = math.floor(h)
        f = h - k
        a = self._order_stat(k)
        if f == 0.0:
            return a
        b = self._order_stat(k + 1)
        return float(a + f * (b - a))

    def density(self) -> Callable[[np.ndarray], np.ndarray]:
        """The histogram as a probability density (per unit x); 0 outside [edges[0], edges[-1]]."""
        edges = np.asarray(self.edges, dtype=np.float64)
        counts = np.asarray(self.counts, dtype=np.float64)
        total = counts.sum()
        widths = np.diff(edges)
        with np.errstate(divide="ignore", invalid="ignore"):
            dens = np.where(widths > 0, counts / (max(total, 1.0) * widths), 0.0)

        def pdf(x: np.ndarray) -> np.ndarray:
            xa = np.asarray(x, dtype=np.float64)
            if dens.size == 0:
                return np.zeros_like(xa)
            idx = np.clip(np.searchsorted(edges, xa, side="right") - 1, 0, dens.size - 1)
            inside = (xa >= edges[0]) & (xa <= edges[-1])
            return np.where(inside, dens[idx], 0.0)

        return pdf

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"function": self.function, "shape": [int(s) for s in self.shape], "count": int(self.count),
                "nan": int(self.nan), "posinf": int(self.posinf), "neginf": int(self.neginf),
                "min": num(self.min), "max": num(self.max), "mean": num(self.mean), "std": num(self.std),
                "percentiles": {k: num(v) for k, v in self.percentiles.items()},
                "histogram": {"start": self.edges[0] if self.edges else None, "width": self.width,
                              "counts": [int(c) for c in self.counts]}}


def percentiles_of(s: SiteStats) -> dict[str, float]:
    return {k: s.quantile(float(k)) for k in PERCENTILES} if s.finite else {}


class Accumulator:
    """One pass over a site's values: counts, min/max, moments, and a histogram on the dyadic lattice.

    The lattice grows with the data: extending the range pads bins, and when the range spans
    2 * MIN_BINS bins the width doubles by merging bin pairs (exact). The final lattice is the one
    `lattice(min, max)` gives, whatever the order of the data, so one pass equals two.
    """

    def __init__(self, site: str, function: str) -> None:
        self.site, self.function = site, function
        self.shape: list[int] = []
        self.count = self.nan = self.posinf = self.neginf = 0
        self.n = 0
        self.mean = self.m2 = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.w, self.i0 = 0.0, 0
        self.hist = np.zeros(0, dtype=np.int64)

    def observe(self, x: np.ndarray) -> None:
        if not self.shape:
            self.shape = [int(d) for d in np.shape(x)]
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        self.count += int(x.size)
        self.nan += int(np.isnan(x).sum())
        self.posinf += int(np.isposinf(x).sum())
        self.neginf += int(np.isneginf(x).sum())
        v = x[np.isfinite(x)]
        if v.size == 0:
            return
        m = float(v.mean())
        m2 = float(((v - m) ** 2).sum())
        n = self.n + v.size
        d = m - self.mean
        self.mean += d * v.size / n
        self.m2 += m2 + d * d * self.n * v.size / n
        self._grow(float(v.min()), float(v.max()))
        self.n = n
        if self.w == 0.0:
            self.hist[0] += v.size
        else:
            self.hist += np.bincount(bin_index(v, self.w, self.i0, self.hist.size), minlength=self.hist.size)

    def _grow(self, vlo: float, vhi: float) -> None:
        """Widen the range to include [vlo, vhi], re-binning the counts so far exactly."""
        lo, hi = min(self.lo, vlo), max(self.hi, vhi)
        if self.n == 0 or lo == hi:
            if self.n == 0:
                self.hist = np.zeros(1, dtype=np.int64)
            self.lo, self.hi = lo, hi
            if lo == hi:
                return
        if self.w == 0.0:  # so far one repeated value (exact): start the lattice
            const, held = self.lo, int(self.hist[0])
            self.w, self.i0, nb = lattice(lo, hi)
            self.hist = np.zeros(nb, dtype=np.int64)
            if held:
                self.hist[bin_index(np.array([const]), self.w, self.i0, nb)[0]] += held
            self.lo, self.hi = lo, hi
            return
        w, i0, hist = self.w, self.i0, self.hist
        while (hi / 2 - lo / 2) * 2 / w >= 2 * MIN_BINS and (hi / 2 - lo / 2) >= _TINY * MIN_BINS:
            w *= 2
        ni0, nb = _span(lo, hi, w)
        new = np.zeros(nb, dtype=np.int64)
        idx = _coarsen(i0, hist.size, round(math.log2(w / self.w))) - ni0
        np.add.at(new, np.clip(idx, 0, nb - 1), hist)
        self.w, self.i0, self.hist, self.lo, self.hi = w, ni0, new, lo, hi

    def finish(self) -> SiteStats:
        if self.n:
            edges = [self.lo, self.hi] if self.w == 0.0 else \
                [float((self.i0 + j) * self.w) for j in range(self.hist.size + 1)]
            counts = [int(c) for c in self.hist]
            std = math.sqrt(max(self.m2 / self.n, 0.0))
        else:
            edges, counts, std = [], [], math.nan
        s = SiteStats(self.site, self.function, list(self.shape), self.count, self.nan, self.posinf, self.neginf,
                      self.lo if self.n else math.nan, self.hi if self.n else math.nan,
                      self.mean if self.n else math.nan, std, {}, edges, counts)
        s.percentiles = percentiles_of(s)
        return s


def from_values(site: str, function: str, x: np.ndarray) -> SiteStats:
    """Statistics of an in-memory array."""
    acc = Accumulator(site, function)
    acc.observe(x)
    return acc.finish()


def pooled(sites: list[SiteStats], site: str | None = None) -> SiteStats:
    """One distribution for a shared table: the exact merge of the sites' histograms.

    Every lattice is dyadic and aligned at 0, so each site's bins nest inside the coarsest width's bins
    and the merge moves whole bin counts (no splitting, no approximation).
    """
    if not sites:
        raise InputError("no sites to pool")
    fns = {s.function for s in sites}
    if len(fns) != 1:
        raise InputError(f"cannot pool sites of different functions: {', '.join(sorted(fns))}")
    if len(sites) == 1 and site is None:
        return sites[0]
    fn = fns.pop()
    name = site or f"*:{fn}#*"
    live = [s for s in sites if s.finite]
    count = sum(s.count for s in sites)
    nan, posinf, neginf = (sum(getattr(s, k) for s in sites) for k in ("nan", "posinf", "neginf"))
    if not live:
        out = SiteStats(name, fn, [], count, nan, posinf, neginf, math.nan, math.nan, math.nan, math.nan, {}, [], [])
        return out
    lo, hi = min(s.min for s in live), max(s.max for s in live)
    n = sum(s.finite for s in live)
    mean = sum(s.mean * s.finite for s in live) / n
    m2 = sum(s.std ** 2 * s.finite + (s.mean - mean) ** 2 * s.finite for s in live)
    w = max(s.width for s in live)
    if w == 0.0:  # every site is a single repeated value: those values are exact, bin them afresh
        w, i0, nb = lattice(lo, hi)
        hist = np.zeros(nb, dtype=np.int64)
        for s in live:
            hist[bin_index(np.array([s.min]), w, i0, nb)[0]] += s.finite
    else:
        while (hi / 2 - lo / 2) * 2 / w >= 2 * MIN_BINS and (hi / 2 - lo / 2) >= _TINY * MIN_BINS:
            w *= 2  # coarser than every site (exact), and no more bins than one site would have
        i0, nb = _span(lo, hi, w)
        hist = np.zeros(nb, dtype=np.int64)
        for s in live:
            c = np.asarray(s.counts, dtype=np.int64)
            if s.width == 0.0:
                hist[bin_index(np.array([s.min]), w, i0, nb)[0]] += s.finite
                continue
            first = round(s.edges[0] / s.width)
            coarse = _coarsen(first, c.size, round(math.log2(w / s.width))) - i0
            np.add.at(hist, np.clip(coarse, 0, nb - 1), c)
    edges = [lo, hi] if w == 0.0 else [float((i0 + j) * w) for j in range(nb + 1)]
    out = SiteStats(name, fn, [], count, nan, posinf, neginf, lo, hi, mean, math.sqrt(max(m2 / n, 0.0)), {},
                    edges, [int(c) for c in hist])
    out.percentiles = percentiles_of(out)
    return out


# --- the statistics file -----------------------------------------------------------------------------------

@dataclass
class CalibrationStats:
    """Statistics of every observed site of one model on one text, with where both came from."""

    model: dict
    data: dict
    sites: dict[str, SiteStats]
    created: str = ""
    actiba: str = ""
    file_sha256: str | None = field(default=None, compare=False, repr=False)  # set by load_stats

    def __post_init__(self) -> None:
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self.actiba:
            from .._version import __version__

            self.actiba = __version__

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "actiba": self.actiba, "created": self.created, "model": self.model,
                "data": self.data, "sites": {k: s.to_dict() for k, s in self.sites.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":")) + "\n"

    def sha256(self) -> str:
        """Hash of the statistics file's content (what a fitted table records as its provenance)."""
        return self.file_sha256 or hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        _atomic.write_text(path, self.to_json())

    def select(self, function: str, pattern: str = "*") -> list[SiteStats]:
        """Sites of `function` whose id matches the glob `pattern`; InputError (listing sites) if none."""
        fn = function.strip().lower()
        fn = {"swish": "silu"}.get(fn, fn)
        out = [s for k, s in self.sites.items() if s.function == fn and fnmatch.fnmatchcase(k, pattern)]
        if not out:
            known = sorted(self.sites)
            shown = ", ".join(known[:8]) + (f", … ({len(known)} in all)" if len(known) > 8 else "")
            raise InputError(f"no {fn} site matches {pattern!r} in the statistics; sites: {shown or 'none'}")
        return out

    def check_model(self, model: Any) -> None:
        """InputError unless `model` has the fingerprint these statistics were captured on."""
        check_fingerprint(self.model, model, "statistics are from")


def _need(d: dict, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise InputError(f"{where}: missing key {key!r}")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, kind):
        raise InputError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {type(v).__name__}")
    return v


def _site_from_dict(site: str, d: Any, where: str) -> SiteStats:
    if not isinstance(d, dict):
        raise InputError(f"{where}: must be an object")
    ints = {k: _need(d, k, int, where) for k in ("count", "nan", "posinf", "neginf")}
    if any(v < 0 for v in ints.values()):
        raise InputError(f"{where}: counts must be non-negative")
    finite = ints["count"] - ints["nan"] - ints["posinf"] - ints["neginf"]
    if finite < 0:
        raise InputError(f"{where}: nan + posinf + neginf exceed count")
    fn = _need(d, "function", str, where)
    shape = _need(d, "shape", list, where)
    hist = _need(d, "histogram", dict, where)
    counts = _need(hist, "counts", list, where + ".histogram")
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        raise InputError(f"{where}.histogram.counts: must be non-negative integers")
    if sum(counts) != finite:
        raise InputError(f"{where}.histogram.counts: sum {sum(counts)} != finite values {finite}")
    nums: dict[str, float] = {}
    for k in ("min", "max", "mean", "std"):
        v = d.get(k)
        if finite and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise InputError(f"{where}.{k}: expected a finite number")
        nums[k] = float(v) if finite else math.nan
    edges: list[float] = []
    if finite:
        start = _need(hist, "start", (int, float), where + ".histogram")
        width = _need(hist, "width", (int, float), where + ".histogram")
        if not (math.isfinite(start) and math.isfinite(width) and width >= 0 and counts):
            raise InputError(f"{where}.histogram: bad start/width/counts")
        if width == 0:
            if len(counts) != 1:
                raise InputError(f"{where}.histogram: width 0 needs exactly one bin")
            edges = [nums["min"], nums["max"]]
        else:
            edges = [float(start + j * width) for j in range(len(counts) + 1)]
            if not (edges[0] <= nums["min"] <= nums["max"] <= edges[-1]):
                raise InputError(f"{where}.histogram: bins do not cover [min, max]")
    pct = d.get("percentiles") or {}
    if not isinstance(pct, dict):
        raise InputError(f"{where}.percentiles: must be an object")
    s = SiteStats(site, fn, [int(x) for x in shape], ints["count"], ints["nan"], ints["posinf"], ints["neginf"],
                  nums["min"], nums["max"], nums["mean"], nums["std"], {}, edges, [int(c) for c in counts])
    s.percentiles = {str(k): float(v) for k, v in pct.items() if isinstance(v, (int, float))} or percentiles_of(s)
    return s


def from_dict(d: Any, source: str = "statistics") -> CalibrationStats:
    if not isinstance(d, dict):
        raise InputError(f"{source}: must be a JSON object")
    if d.get("format") != FORMAT:
        raise InputError(f"{source}: 'format' must be {FORMAT!r}, got {d.get('format')!r}")
    model = _need(d, "model", dict, source)
    _need(model, "sha256", str, source + ".model")
    data = _need(d, "data", dict, source)
    sites_d = _need(d, "sites", dict, source)
    if not sites_d:
        raise InputError(f"{source}: 'sites' is empty")
    sites = {k: _site_from_dict(k, v, f"{source}: sites[{k!r}]") for k, v in sites_d.items()}
    return CalibrationStats(model, data, sites, str(d.get("created") or ""), str(d.get("actiba") or ""))


def load_stats(path: str | os.PathLike) -> CalibrationStats:
    """Load and validate a statistics file; a malformed one is an InputError naming the key."""
    name = os.fspath(path)
    d, text = _atomic.read_json(path, "statistics")
    stats = from_dict(d, source=name)
    stats.file_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return stats
