"""The Pareto set of (metric loss, speed-up) and the device-aware choice within a loss budget.

Why explicit tie rules: sweeps produce duplicates (a rewrite that finds no site measures like the
baseline) and equal losses (exact rewrites); a point is dominated only by one that is at least as good
in both and strictly better in one, so identical points are all kept, and the choice breaks ties
by smaller loss, then by name, so the same results always give the same answer.

Why a loss tolerance: bits/byte is measured on a sample of text, so a 0.016 % lower loss at 0.70x
(`act-both-32` on Mamba, scored on 64 windows) is not "better" unless it is beyond what the text's own
sampling noise gives (`accuracy.tolerance`: paired per-window differences). Within the tolerance two
losses tie and the faster configuration dominates; the recommendation applies the same rule to the
loss budget.

Why a speed tolerance too: a speed-up is a paired timing with its own interval, and the run's null
control says how far two compiles of the same graph differ. `softplus-relu` at 1.010x ±1.9 % (null
control 3.2 %) on the embedded Mamba is not faster than the baseline, yet with a loss tie and an exact
speed comparison it stayed on the front. Speed-ups whose intervals overlap (each row's paired half-width,
plus the null control's floor) tie as well, and a configuration that ties the baseline in both is
dominated by it: the baseline is what you get without rewriting anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .row import Row


def _ok(row: Row) -> bool:
    loss, speed = row.metric_delta_rel, row.speedup
    return (not row.error and isinstance(loss, (int, float)) and isinstance(speed, (int, float))
            and math.isfinite(loss) and math.isfinite(speed))


def dominates(a: tuple[float, float], b: tuple[float, float], tol: float = 0.0, speed_tol: float = 0.0,
              a_is_baseline: bool = False) -> bool:
    """(loss, speed-up) `a` dominates `b`: no worse in both, strictly better in at least one.

    Losses within `tol` of each other tie (neither is better nor worse), and so do speed-ups within
    `speed_tol` (relative: ``|ln(a/b)| <= ln(1 + speed_tol)``). A tie in both is no domination, except
    when `a` is the baseline (`a_is_baseline`): a rewrite that changes nothing measurable is not worth
    applying."""
    lo, hi = 1.0 / (1.0 + speed_tol), 1.0 + speed_tol
    speed_tie = b[1] * lo <= a[1] <= b[1] * hi
    no_worse = a[0] <= b[0] + tol and (a[1] >= b[1] or speed_tie)
    better = a[0] < b[0] - tol or (a[1] > b[1] and not speed_tie)
    return no_worse and (better or (a_is_baseline and speed_tie and abs(a[0] - b[0]) <= tol))


def pareto_flags(points: Sequence[tuple[float, float] | None],
                 tol: Callable[[int, int], float] | None = None,
                 speed_tol: Callable[[int, int], float] | None = None, baseline: int | None = None) -> list[bool]:
    """For each (loss, speed-up) point (None = failed), whether it is on the Pareto front. O(n²), n is small.

    `tol(i, j)` / `speed_tol(i, j)`: the loss difference / relative speed-up difference between points i and
    j that is a tie (default 0: exact); `baseline`: the index of the baseline point (it dominates what ties
    it in both)."""
    out = []
    for j, p in enumerate(points):
        out.append(p is not None and not any(
            q is not None and i != j and dominates(q, p, tol(i, j) if tol else 0.0,
                                                   speed_tol(i, j) if speed_tol else 0.0, i == baseline)
            for i, q in enumerate(points)))
    return out


def speed_halfwidth(row: Row, base: Row | None) -> float:
    """The row's speed-up interval as a relative half-width: its paired ratio's (0 for the baseline itself)."""
    return 0.0 if row is base or row.latency_ratio is None else row.latency_ratio.halfwidth


def mark_pareto(rows: list[Row], base: Row | None = None, noise: float = 0.0) -> None:
    """Set row.pareto in place (failed rows are never on the front); losses that differ by less than
    their paired uncertainty (`accuracy.tolerance`, relative to `base`'s windows) tie, and so do speed-ups
    whose intervals overlap (the two rows' paired half-widths plus the run's null-control `noise`)."""
    from .accuracy import tolerance

    pts = [(float(r.metric_delta_rel), float(r.speedup)) if _ok(r) else None for r in rows]
    bw = base.metric_windows if base is not None else None
    base_total = math.fsum(bw) if isinstance(bw, list) and bw else None
    cache: dict[tuple[int, int], float] = {}
    hws = [speed_halfwidth(r, base) for r in rows]
    floor = max(0.0, float(noise))

    def tol(i: int, j: int) -> float:
        key = (min(i, j), max(i, j))
        if key not in cache:
            cache[key] = tolerance(rows[i], rows[j], base_total)
        return cache[key]

    def speed_tol(i: int, j: int) -> float:
        return hws[i] + hws[j] + floor

    b = next((i for i, r in enumerate(rows) if r is base), None)
    for r, flag in zip(rows, pareto_flags(pts, tol, speed_tol, b), strict=True):
        r.pareto = flag


def _halfwidth(timing: dict[str, Any] | None) -> float:
    """A timing's relative half-width (`halfwidth_rel`); 0 where it is missing or not finite."""
    hw = (timing or {}).get("halfwidth_rel")
    return float(hw) if isinstance(hw, (int, float)) and math.isfinite(hw) else 0.0


def surely_faster(row: Row, noise: float = 0.0) -> bool:
    """Faster than the baseline even at the pessimistic end of its timing interval, by more than `noise`.

    The paired timing records the ratio's relative half-width (`latency_ratio.halfwidth_rel`); a 1.01×
    measured to ±3 % may well be slower, so it must not be recommended. `noise` is the run's null
    control (`null_noise`): what the baseline graph compiled a second time differs from itself by, which
    no interval of a single pairing shows. Rows without an interval (older caches) need speedup > 1 + noise."""
    return faster_than(row.speedup, row.latency_ratio.halfwidth if row.latency_ratio else 0.0, noise)


def faster_than(speedup: float, halfwidth_rel: float, noise: float = 0.0) -> bool:
    """`speedup` measured to ±`halfwidth_rel` is above 1 + `noise` even at the pessimistic end."""
    return speedup / (1.0 + halfwidth_rel) > 1.0 + max(0.0, noise)


NULL_MAX_NOISE = 0.05  # a null control further from 1 than this (with its interval) means the timing failed


def null_usable(null: dict[str, Any] | None) -> bool:
    """Whether the run's latencies can be trusted: its null control (if measured) is within NULL_MAX_NOISE.

    Why 5 %: two compiles of one graph differed by <= 2.6 % on every quiet run here (Mamba-130M: 1.026x);
    a 1.117x ± 14 % null control came from a run disturbed by other jobs, whose speed-ups then mean
    nothing at the few-per-cent level the choices are made at."""
    if not null or not isinstance(null.get("speedup"), (int, float)):
        return True
    return null_noise(null) <= NULL_MAX_NOISE


def null_noise(null: dict[str, Any] | None) -> float:
    """The speed-up a configuration must exceed to count, from the run's null control (the baseline against
    itself compiled again): its distance from 1 plus its own half-width. 0 without a null control."""
    if not null or not isinstance(null.get("speedup"), (int, float)):
        return 0.0
    return abs(float(null["speedup"]) - 1.0) + _halfwidth(null)


def within_budget(row: Row, max_loss: float) -> bool:
    """The row's loss is not beyond `max_loss` by more than its own uncertainty (the front's tie rule:
    a lossless rewrite measured 1e-8 above the baseline is within a 0 % budget)."""
    hw = row.metric_delta_halfwidth_rel
    hw = float(hw) if isinstance(hw, (int, float)) and math.isfinite(hw) else 0.0
    return row.metric_delta_rel <= max_loss + hw


def choose(rows: list[Row], max_loss: float, baseline_name: str = "baseline",
           noise: float = 0.0) -> Row | None:
    """The fastest row with metric_delta_rel <= max_loss that is surely faster than the baseline, else the
    baseline.

    Speed-ups are relative to the baseline measured in the same run (same model, device, precision), so
    "never slower than the baseline" is `surely_faster` (beyond the run's null-control `noise`); the
    baseline itself is returned when nothing beats it.
    """
    ok = [r for r in rows if _ok(r) and within_budget(r, max_loss) and surely_faster(r, noise)
          and r.name != baseline_name]
    if ok:
        return sorted(ok, key=lambda r: (-r.speedup, r.metric_delta_rel, r.name))[0]
    base = [r for r in rows if r.name == baseline_name and not r.error]
    return base[0] if base else None


def parse_loss(text: str) -> float:
    """'1%' -> 0.01, '0.5' -> 0.005 if written with %, a bare number is a fraction ('0.01')."""
    from ..errors import InputError

    t = text.strip()
    try:
        v = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    except ValueError:
        raise InputError(f"--max-loss {text!r} is not a number or percentage (e.g. 1%)") from None
    if not math.isfinite(v) or v < 0:
        raise InputError(f"--max-loss must be a non-negative finite value, got {text!r}")
    return v
