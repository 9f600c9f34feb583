"""Starting knots: equidistribute a curvature density, leaving room for pinned tails.

For a smooth f the best error of a segment of width h scales like |f''| h² (max-abs) so equal errors
need knot density ∝ √|f''|. That density vanishes at inflection points and flat tails; a floor keeps
segments from growing without bound there, and the refiner does the rest.
"""

from __future__ import annotations

import numpy as np

from .problem import Problem


def _density(prob: Problem, xs: np.ndarray) -> np.ndarray:
    w = prob.w(xs) if prob.metric != "rms" else np.ones_like(xs)
    rho = np.sqrt(np.abs(prob.act.d2f(xs)) * w)
    rho = np.where(np.isfinite(rho), rho, 0.0)
    return rho + 0.15 * max(float(np.mean(rho)), 1e-300)


def _equidistribute(xs: np.ndarray, rho: np.ndarray, a: float, b: float, m: int) -> np.ndarray:
    """m-1 interior points splitting [a, b] into m pieces of equal ∫rho."""
    if m <= 1:
        return np.empty(0)
    sel = (xs >= a) & (xs <= b)
    x, r = np.concatenate(([a], xs[sel], [b])), np.interp(np.concatenate(([a], xs[sel], [b])), xs, rho)
    cum = np.concatenate(([0.0], np.cumsum(0.5 * (r[1:] + r[:-1]) * np.diff(x))))
    targets = cum[-1] * np.arange(1, m) / m
    return np.interp(targets, cum, x)


def _tail_reach(prob: Problem, xs: np.ndarray, side: str, eps: float) -> float:
    """How far a pinned outer segment can reach into the range with deviation <= eps."""
    f = prob.act.f(xs)
    w = prob.w(xs)
    if side == "left":
        line = prob.left_line
        dev = np.abs(w * (f - (line[0] * xs + line[1]))) if line else np.abs(w * (f - f[0])) / 2
        bad = np.nonzero(dev > eps)[0]
        return float(xs[bad[0]]) if bad.size else float(xs[-1])
    line = prob.right_line
    dev = np.abs(w * (f - (line[0] * xs + line[1]))) if line else np.abs(w * (f - f[-1])) / 2
    bad = np.nonzero(dev > eps)[0]
    return float(xs[bad[-1]]) if bad.size else float(xs[0])


def initial_knots(prob: Problem) -> np.ndarray:
    n = prob.segments
    xs = np.linspace(prob.lo, prob.hi, 8001)
    rho = _density(prob, xs)
    a, b = prob.lo, prob.hi
    m = n - int(prob.left_pinned) - int(prob.right_pinned)
    for _ in range(4):
        sel = (xs >= a) & (xs <= b)
        integral = float(np.trapezoid(rho[sel], xs[sel])) if sel.sum() > 1 else 0.0
        eps = integral**2 / (16 * max(m, 1) ** 2)
        a = _tail_reach(prob, xs, "left", eps) if prob.left_pinned else prob.lo
        b = _tail_reach(prob, xs, "right", eps) if prob.right_pinned else prob.hi
        if not a < b:
            a, b = prob.lo + (prob.hi - prob.lo) / n, prob.hi - (prob.hi - prob.lo) / n
    inner = _equidistribute(xs, rho, a, b, m)
    parts = ([a] if prob.left_pinned else []) + list(inner) + ([b] if prob.right_pinned else [])
    p = np.asarray(parts, dtype=np.float64)
    # keep knots strictly inside and strictly increasing
    span = prob.hi - prob.lo
    p = np.clip(p, prob.lo + 1e-6 * span, prob.hi - 1e-6 * span)
    for i in range(1, p.size):
        p[i] = max(p[i], p[i - 1] + 1e-6 * span / n)
    return p


def estimate_error(prob: Problem) -> float:
    """Asymptotic max-abs error of the best N-segment table, (∫√|f''|)² / (16 N²): a bisection hint."""
    xs = np.linspace(prob.lo, prob.hi, 4001)
    integral = float(np.trapezoid(np.sqrt(np.abs(prob.act.d2f(xs))), xs))
    return max(integral**2 / (16 * prob.segments**2), 1e-12)
