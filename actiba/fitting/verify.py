"""Independent error measurement of a finished table against f.

Uses only the canonical evaluator and f — none of the optimizer's state — on a dense grid that
includes every breakpoint and its neighbouring floats. Between grid points the error is smooth (the
breakpoints are grid points), so a second-order margin h²/8·max|f''| turns the sampled maximum into a
bound. Asymptote-pinned tails extend the bound to the whole real line because |f − asymptote| is
non-increasing beyond the point each function states (`Activation.tail_from`). `violation` re-checks a
finished table's constraints from its numbers alone (grids and powers of two exactly, in float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..functions import Activation
from ..table import Table, evaluate
from .constraints import Constraints, is_pow2, on_grid

GRID = 100_001


def dense_grid(lo: float, hi: float, breakpoints: np.ndarray, points: int = GRID) -> np.ndarray:
    """Uniform points on [lo, hi] plus each breakpoint inside and its two neighbouring floats."""
    bp = breakpoints[(breakpoints >= lo) & (breakpoints <= hi)]
    extra = np.concatenate([bp, np.nextafter(bp, -np.inf), np.nextafter(bp, np.inf)])
    return np.unique(np.concatenate([np.linspace(lo, hi, points), extra]))


def _max(err: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
    i = int(np.nanargmax(err))
    return float(err[i]), float(xs[i])


def _rounded_error(table: Table, act: Activation, xs: np.ndarray, dtype: type) -> float:
    """Max-abs error when the table's numbers and the input are stored and evaluated in `dtype`."""
    with np.errstate(all="ignore"):
        bp, sl, ic = (np.asarray(a, dtype=dtype) for a in (table.breakpoints, table.slopes, table.intercepts))
        xd = xs.astype(dtype)
        finite = np.isfinite(xd)
        if not finite.any():  # no input of the range is representable in dtype (|x| > 65504 in f16)
            return float("inf")
        idx = np.minimum(np.searchsorted(bp, xd[finite], side="right"), sl.size - 1)
        y = (sl[idx] * xd[finite] + ic[idx]).astype(np.float64)
        return float(np.max(np.abs(y - act.f(xd[finite].astype(np.float64)))))


def measure(table: Table, act: Activation, lo: float, hi: float, tails: str = "free") -> dict[str, Any]:
    """Error statistics of `table` vs `act` on [lo, hi] (and on ℝ for asymptote tails)."""
    xs = dense_grid(lo, hi, table.breakpoints)
    y = evaluate(table.breakpoints, table.slopes, table.intercepts, xs)
    fx = act.f(xs)
    err = np.abs(y - fx)
    max_abs, where = _max(err, xs)
    h = float(np.max(np.diff(xs)))
    margin = h * h / 8 * float(np.max(np.abs(act.d2f(xs))))
    u = np.linspace(lo, hi, GRID)
    rms = float(np.sqrt(np.mean((evaluate(table.breakpoints, table.slopes, table.intercepts, u) - act.f(u)) ** 2)))
    max_rel = None
    if np.all(fx != 0) and np.all(np.sign(fx) == np.sign(fx[0])):
        max_rel = float(np.max(err / np.abs(fx)))
    out: dict[str, Any] = {
        "max_abs": max_abs, "max_rel": max_rel, "rms": rms, "over": "domain", "where": where,
        "bound": max_abs + margin,
        "grid_points": int(xs.size),
        "float32_max_abs": _rounded_error(table, act, xs, np.float32),
        "float16_max_abs": _rounded_error(table, act, xs, np.float16),
    }
    if tails == "asymptote":
        out.update(_tail_bound(table, act, lo, hi, max_abs + margin))
    return out


def _tail_bound(table: Table, act: Activation, lo: float, hi: float, inside: float) -> dict[str, Any]:
    """Extend the bound past [lo, hi] on each side whose outer segment is the asymptote."""
    sides = {}
    for side, line, t in (("left", act.left, act.tail_from[0]), ("right", act.right, act.tail_from[1])):
        if line is None:
            continue
        k = 0 if side == "left" else -1
        if (table.slopes[k], table.intercepts[k]) != line:
            continue
        # outside the range the table *is* the asymptote; |f - line| is non-increasing beyond t
        a, b = (min(t, lo), lo) if side == "left" else (hi, max(t, hi))
        xs = np.linspace(a, b, 20001)
        dev = float(np.max(np.abs(act.f(xs) - (line[0] * xs + line[1]))))
        sides[side] = max(dev, 0.0)
    if not sides:
        return {}
    bound = max([inside, *sides.values()])
    if len(sides) == 2:
        return {"over": "real-line", "max_abs": bound, "domain_max_abs": inside,
                "bound_method": "dense grid on the range with a second-order margin; outside it the table "
                                "equals the asymptote and |f - asymptote| is non-increasing beyond "
                                f"x={act.tail_from[0]:.4g} / {act.tail_from[1]:.4g}"}
    side = next(iter(sides))
    return {"half_line": {"side": side, "max_abs": bound,
                          "holds_for": f"x <= {hi:g}" if side == "left" else f"x >= {lo:g}"}}


def violation(con: Constraints, table, lo: float, hi: float, skip_left: bool, skip_right: bool,
              act=None) -> dict:
    """Re-verify a finished table; returns the worst violation of each constraint (0 when met)."""
    out = {}
    s = table.slopes[int(skip_left): table.slopes.size - int(skip_right)]
    if con.slope_min is not None:
        out["slope_min"] = float(max(0.0, con.slope_min - float(s.min()))) if s.size else 0.0
    if con.slope_max is not None:
        out["slope_max"] = float(max(0.0, float(s.max()) - con.slope_max)) if s.size else 0.0
    knots = np.concatenate(([lo], table.breakpoints, [hi]))
    if con.min_width is not None:
        out["min_width"] = float(max(0.0, con.min_width - float(np.diff(knots).min())))
    if con.grid is not None:
        q = table.breakpoints / con.grid
        out["breakpoint_grid"] = float(np.max(np.abs(q - np.round(q)))) * con.grid if q.size else 0.0
    for key, q, vals in (("slope_grid", con.slope_grid, table.slopes),
                         ("intercept_grid", con.intercept_grid, table.intercepts)):
        if q is not None:  # every segment, pinned ones included: the hardware stores them all
            bad = [abs(v - round(v / q) * q) or 1e-300 for v in vals.tolist() if not on_grid(v, q)]
            out[key] = max(bad, default=0.0)
    if con.pow2_slopes is not None:
        bad = [v for v in table.slopes.tolist() if not is_pow2(v, *con.pow2_slopes)]
        out["pow2_slopes"] = float(len(bad))  # how many slopes are not 0 or ±2^e in range
    if con.uniform:
        n = table.segments
        want = lo + (hi - lo) * np.arange(1, n) / n
        out["uniform"] = float(np.max(np.abs(table.breakpoints - want))) if n > 1 else 0.0
    if con.monotone_auto:
        out["monotone"] = monotone_violation(table, act, lo, hi, skip_left, skip_right)
    return out


def monotone_signs(table, act, lo: float, hi: float) -> np.ndarray:
    """Per segment: +1 where f' >= 0 on all of it, -1 where f' <= 0, 0 where f turns inside it
    (f' sampled on the segment, ends included, independently of how the optimizer assigned them)."""
    knots = np.concatenate(([lo], table.breakpoints, [hi]))
    out = np.zeros(table.segments)
    for k in range(table.segments):
        d = act.df(np.linspace(knots[k], knots[k + 1], 257))
        out[k] = 1.0 if np.all(d >= 0) else -1.0 if np.all(d <= 0) else 0.0
    return out


def monotone_violation(table, act, lo: float, hi: float, skip_left: bool, skip_right: bool) -> float:
    """Worst slope of the wrong sign on a segment where f' keeps one sign."""
    sg = monotone_signs(table, act, lo, hi)
    worst = 0.0
    for k in range(int(skip_left), table.segments - int(skip_right)):
        if sg[k]:
            worst = max(worst, -sg[k] * float(table.slopes[k]))
    return worst
