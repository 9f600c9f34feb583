"""Fewest segments of a *continuous* table inside a tube: minimum-link paths by window propagation.

For a half-width w, the tube is the polygon between the polylines through (x_i, f_i + w) and
(x_i, f_i - w). The fewest links of an x-monotone polyline inside it (Imai & Iri 1986) are found by
one sweep: a link's possible lines form a convex set bounded by two extreme lines (S1, least slope,
through an upper point on its left and a lower point on its right; S2, greatest slope, the mirror
image). Gate i is reachable by the same link iff S1(x_i) <= u_i and S2(x_i) >= l_i. When a gate is
not, the extreme line that failed cuts the tube in a chord (the *window*); every path that goes on
must cross it, so the next link starts on it, and the window's two ends start the next link's
chains. The number of windows + 1 is the minimum number of links, and the window lines themselves
(crossed by the next link) give a continuous table with that many segments.

Why this certifies: a continuous table with max error e on [lo, hi] lies, between two samples h
apart, within e + h²/8·max|f''| of the polyline through the samples' f ± e. So if the tube of
half-width e + δ (δ that margin) needs more than N links, no continuous N-segment table has error
≤ e anywhere — with knots anywhere, not only at samples. Bisection on the half-width gives the
largest such e: the bound stated in a table's `error.lower_bound`.

Pure Python on purpose: the sweep touches each sample a bounded number of times (convex hulls with
amortized O(1) updates), ~2–4 µs per sample; vectorizing it would need the hull logic anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _at(p: tuple[float, float], q: tuple[float, float], x: float) -> float:
    """Value at x of the line through p and q (p.x != q.x)."""
    return p[1] + (q[1] - p[1]) * (x - p[0]) / (q[0] - p[0])


def _meet(p: tuple[float, float], q: tuple[float, float], a: tuple[float, float],
          b: tuple[float, float]) -> tuple[float, float]:
    """Where the line through p, q crosses the segment a-b (a.x < b.x; the caller knows it does)."""
    da = a[1] - _at(p, q, a[0])
    db = b[1] - _at(p, q, b[0])
    t = da / (da - db) if da != db else 0.0
    t = min(max(t, 0.0), 1.0)
    x = a[0] + t * (b[0] - a[0])
    return x, _at(p, q, x)


class _Stage:
    """One link: the chains from the window's ends, their hulls and the two extreme lines."""

    __slots__ = ("hu", "hl", "s1", "s2", "t1", "t2", "last_u", "last_l")

    def __init__(self, pu: tuple[float, float], pl: tuple[float, float]):
        self.hu = [pu]  # lower convex hull of the upper chain (what lines below it touch)
        self.hl = [pl]  # upper convex hull of the lower chain
        self.s1: tuple[tuple[float, float], tuple[float, float]] | None = None  # (upper pt, lower pt)
        self.s2: tuple[tuple[float, float], tuple[float, float]] | None = None  # (lower pt, upper pt)
        self.t1 = 0  # tangent indices, moved monotonically (amortized O(1))
        self.t2 = 0
        self.last_u, self.last_l = pu, pl


def _tangent(h: list, t: int, p: tuple[float, float], sign: float) -> tuple[int, float]:
    """Index on a hull extremizing the slope from hull point to p (points left of p only): the maximum
    for `sign` +1 (a lower hull), the minimum for -1 (an upper hull). Starts from the previous index `t`
    and walks, which keeps the whole sweep amortized O(1) per gate. (Written out per sign without a
    helper: this is the sweep's inner loop, and the calls were half its time.)"""
    px, py = p
    n = len(h)
    while n > 0 and h[n - 1][0] >= px:
        n -= 1
    if n == 0:
        return -1, 0.0
    if t > n - 1:
        t = n - 1
    hx, hy = h[t]
    best = (py - hy) / (px - hx)
    if sign > 0:
        while t + 1 < n:
            hx, hy = h[t + 1]
            v = (py - hy) / (px - hx)
            if v < best:
                break
            t, best = t + 1, v
        while t > 0:
            hx, hy = h[t - 1]
            v = (py - hy) / (px - hx)
            if v <= best:
                break
            t, best = t - 1, v
    else:
        while t + 1 < n:
            hx, hy = h[t + 1]
            v = (py - hy) / (px - hx)
            if v > best:
                break
            t, best = t + 1, v
        while t > 0:
            hx, hy = h[t - 1]
            v = (py - hy) / (px - hx)
            if v >= best:
                break
            t, best = t - 1, v
    return t, best


def links(x: Sequence[float], lower: Sequence[float], upper: Sequence[float], limit: int,
          build: bool = False, start: int = 0, stop: int | None = None
          ) -> tuple[int, list[tuple[float, float]]] | None:
    """Minimum number of links of a polyline inside the tube over gates start..stop-1 (None if more
    than `limit`). With `build`, also the lines (slope, intercept) of an optimal path's links."""
    m = len(x) if stop is None else stop
    pu, pl = (x[start], upper[start]), (x[start], lower[start])
    nu = nl = start + 1  # next gate of each chain
    count = 1
    lines: list[tuple[float, float]] = []
    while True:
        st = _Stage(pu, pl)
        hu, hl = st.hu, st.hl
        # extreme lines as y = m x + c; S1 starts at slope -inf (no constraint), S2 at +inf
        m1 = c1 = m2 = c2 = 0.0
        have1 = have2 = False
        k = min(nu, nl)
        fail = None
        while k < m:
            xk = x[k]
            uk = upper[k]
            lk = lower[k]
            has_u, has_l = k >= nu, k >= nl
            if has_u and have1 and m1 * xk + c1 > uk:
                fail = "upper"
                break
            if has_l and have2 and m2 * xk + c2 < lk:
                fail = "lower"
                break
            if has_u:
                while len(hu) >= 2:
                    (ax, ay), (bx, by) = hu[-2], hu[-1]
                    if (bx - ax) * (uk - ay) - (by - ay) * (xk - ax) <= 0:
                        hu.pop()
                    else:
                        break
                hu.append((xk, uk))
                st.last_u = (xk, uk)
            if has_l:
                while len(hl) >= 2:
                    (ax, ay), (bx, by) = hl[-2], hl[-1]
                    if (bx - ax) * (lk - ay) - (by - ay) * (xk - ax) >= 0:
                        hl.pop()
                    else:
                        break
                hl.append((xk, lk))
                st.last_l = (xk, lk)
                if not have1 or m1 * xk + c1 < lk:
                    t, slope = _tangent(hu, st.t1, (xk, lk), 1.0)
                    if t >= 0:
                        st.t1, st.s1 = t, (hu[t], (xk, lk))
                        m1, c1, have1 = slope, lk - slope * xk, True
            if has_u and (not have2 or m2 * xk + c2 > uk):
                t, slope = _tangent(hl, st.t2, (xk, uk), -1.0)
                if t >= 0:
                    st.t2, st.s2 = t, (hl[t], (xk, uk))
                    m2, c2, have2 = slope, uk - slope * xk, True
            k += 1
        if fail is None:
            if build:
                lines.append(_inside(st))
            return count, lines
        count += 1
        if fail == "upper":  # S1 leaves through the upper chain: window from its lower point
            a, b = st.s1  # type: ignore[misc]
            pl = b
            pu = _meet(a, b, st.last_u, (x[k], upper[k]))
            nl = _next_index(x, b[0])
            nu = k
            win = (m1, c1)
        else:
            c, d = st.s2  # type: ignore[misc]
            pu = d
            pl = _meet(c, d, st.last_l, (x[k], lower[k]))
            nu = _next_index(x, d[0])
            nl = k
            win = (m2, c2)
        if count > limit:
            return None
        if build:
            lines.append(win)


def _next_index(x: Sequence[float], xv: float) -> int:
    """First gate index strictly right of xv (xv is a gate's own x or between gates)."""
    import bisect

    return bisect.bisect_right(x, xv)


def _inside(st: _Stage) -> tuple[float, float]:
    """A line of the last stage's feasible set: the mean of its extreme lines (the set is convex)."""
    cand = []
    for pair in (st.s1, st.s2):
        if pair is not None:
            p, q = pair
            sl = (q[1] - p[1]) / (q[0] - p[0])
            cand.append((sl, p[1] - sl * p[0]))
    if not cand:  # one gate only: the horizontal line through its middle
        yu, yl = st.hu[0][1], st.hl[0][1]
        return 0.0, 0.5 * (yu + yl)
    if len(cand) == 1:
        return cand[0]
    return 0.5 * (cand[0][0] + cand[1][0]), 0.5 * (cand[0][1] + cand[1][1])


def polyline(lines: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Breakpoints (consecutive lines' crossings), slopes, intercepts; None if not increasing."""
    sl = np.array([a for a, _ in lines], dtype=np.float64)
    ic = np.array([b for _, b in lines], dtype=np.float64)
    with np.errstate(all="ignore"):
        bp = (ic[1:] - ic[:-1]) / (sl[:-1] - sl[1:])
    if not (np.all(np.isfinite(bp)) and np.all(np.diff(bp) > 0)):
        return None
    return bp, sl, ic


class Tube:
    """Samples of f and, per sample, the margin δ_i that makes the sampled tube a relaxation.

    δ_i = h²/8 · max|f''| over the two strips next to sample i (f'' sampled 8× finer, +5 %): a
    table within e of f lies within e + δ_i of the chord through f ± e there.
    """

    def __init__(self, f: np.ndarray, x: np.ndarray, d2: np.ndarray | None = None):
        self.x = x
        self.f = f
        self._xl = x.tolist()
        if d2 is None:
            self.delta = np.zeros_like(f)
        else:  # d2: |f''| on a grid 8× finer than x (8 (m - 1) + 1 points)
            h = np.diff(x)  # the samples need not be uniform (tubefit equidistributes curvature)
            strip = np.maximum.reduceat(d2[:-1], np.arange(0, d2.size - 1, 8))[: h.size]
            strip = np.maximum(strip, np.maximum(d2[:-1:8][: h.size], d2[8::8][: h.size]))
            per = 1.05 * h * h / 8.0 * strip
            self.delta = np.concatenate(([per[0]], np.maximum(per[:-1], per[1:]), [per[-1]]))

    @property
    def delta_max(self) -> float:
        return float(np.max(self.delta)) if self.delta.size else 0.0

    def count(self, w: float, limit: int, build: bool = False, start: int = 0, stop: int | None = None,
              widen: bool = True):
        """Fewest links in the tube of half-width w (+ δ_i unless `widen` is False), or None above limit."""
        half = w + self.delta if widen else np.full_like(self.f, w)
        return links(self._xl, (self.f - half).tolist(), (self.f + half).tolist(), limit, build,
                     start=start, stop=stop)
