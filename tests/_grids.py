"""Shared helpers for the lowering tests: test tables, the dense input grid, the comparison rule,
and a hypothesis strategy for random valid tables."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from actiba.lower.plan import reference, tolerance
from actiba.table import Table


def interp(f, knots, left: float = 0.0, right: float | None = 1.0, name: str = "custom") -> Table:
    """Continuous table through (k, f(k)) with the given outer slopes (None: last chord's)."""
    k = np.asarray(knots, dtype=np.float64)
    v = f(k)
    ch = np.diff(v) / np.diff(k)
    right = float(ch[-1]) if right is None else right
    s = np.r_[left, ch, right]
    c = np.r_[v[0] - left * k[0], v[:-1] - ch * k[:-1], v[-1] - right * k[-1]]
    return Table(k, s, c, function=name)


def _silu(x):
    return x / (1 + np.exp(-x))


def tables() -> dict[str, Table]:
    """The named test tables: every shape of table the lowerings treat differently."""
    rng = np.random.default_rng(7)
    k = np.linspace(-6, 6, 11)
    softplus = interp(lambda x: np.logaddexp(0, x), k, 0.0, 1.0, "softplus")
    bp = np.sort(rng.uniform(-4, 4, 6))
    return {
        "silu": interp(_silu, k, 0.0, 1.0, "silu"),
        "convex": softplus,
        "concave": Table(softplus.breakpoints, -softplus.slopes, -softplus.intercepts),
        "clamped": interp(np.tanh, np.linspace(-3, 3, 9), 0.0, 0.0, "tanh"),  # flat both sides
        "discontinuous": Table(bp, rng.normal(size=7), rng.normal(size=7) * 3),
        "steps": Table([-1.0, 0.0, 2.0], [0.0] * 4, [1.0, -2.0, 0.5, 3.0]),  # all slopes 0
        "one-segment": Table([], [0.75], [-0.5]),
        "constant": Table([], [0.0], [2.5]),
        "two-segment": Table([0.25], [0.0, 1.0], [0.0, -0.25]),  # relu shifted
        "two-segment-jump": Table([0.0], [1.0, 1.0], [0.0, 1.0]),
    }


def grid(table: Table, dtype: str, n_random: int = 10_000, seed: int = 0) -> np.ndarray:
    """±0, ±inf, NaN, huge, subnormals, every breakpoint and its neighbours in `dtype`, plus randoms."""
    dt = np.dtype(dtype)
    fi = np.finfo(dt)
    sub = fi.smallest_subnormal
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 65504.0, -65504.0,
                        float(fi.max), -float(fi.max), float(sub), -float(sub), float(fi.tiny) / 2,
                        -float(fi.tiny) / 2, float(fi.tiny), 1.0, -1.0])
    with np.errstate(over="ignore"):
        b = table.breakpoints.astype(dt)
        near = [b]
        for direction in (np.inf, -np.inf):
            step = b
            for _ in range(2):
                step = np.nextafter(step, dt.type(direction))
                near.append(step)
        rng = np.random.default_rng(seed)
        lo, hi = (float(b[0]) - 4, float(b[-1]) + 4) if b.size else (-8.0, 8.0)
        rand = np.r_[rng.uniform(lo, hi, n_random // 2),
                     rng.choice([-1, 1], n_random // 2) * 10.0 ** rng.uniform(-8, 4, n_random // 2)]
        return np.concatenate([special.astype(dt), *near, rand.astype(dt)])


def assert_matches(y, x, table: Table, dtype: str, lowering: str) -> None:
    """y (a lowering's output on x) equals the reference within `tolerance` (plan.reference's rule):
    NaN exactly where the reference is NaN, ±inf exactly where it is ±inf, and where the reference
    overflows the dtype the output may be the same-signed inf."""
    y = np.asarray(y, dtype=np.float64).ravel()
    x = np.asarray(x).ravel()
    ref = reference(table, x, dtype)
    tol = tolerance(table, x, dtype, lowering)
    big = float(np.finfo(np.dtype(dtype)).max)
    with np.errstate(invalid="ignore"):
        same_nan = np.isnan(y) == np.isnan(ref)
        close = (y == ref) | (np.abs(y - ref) <= tol)
        overflow = np.isinf(y) & (np.sign(y) == np.sign(ref)) & (np.abs(ref) + tol >= big)
        ok = same_nan & (np.isnan(ref) | close | overflow)
    if not ok.all():
        bad = np.flatnonzero(~ok)[:8]
        raise AssertionError(f"{lowering}/{dtype}: {(~ok).sum()} mismatches, e.g. x={x[bad].tolist()} "
                             f"y={y[bad].tolist()} ref={ref[bad].tolist()} tol={tol[bad].tolist()}")


@st.composite
def random_tables(draw, max_segments: int = 12, continuous: bool | None = None) -> Table:
    """Random valid tables: strictly ascending breakpoints in [-50, 50], moderate slopes/intercepts,
    continuous (values at the knots drawn, then joined) or not."""
    n = draw(st.integers(1, max_segments))
    cont = draw(st.booleans()) if continuous is None else continuous
    fl = st.floats(-50, 50, allow_nan=False, allow_infinity=False, width=32)
    bps = sorted(set(draw(st.lists(fl, min_size=n - 1, max_size=n - 1))))
    bps = [b for i, b in enumerate(bps) if i == 0 or b - bps[i - 1] > 1e-2]
    n = len(bps) + 1
    slope = st.one_of(st.just(0.0), st.floats(-10, 10, allow_nan=False, width=32))
    s = np.array(draw(st.lists(slope, min_size=n, max_size=n)))
    if cont and n > 1:
        v = np.array(draw(st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=n - 1,
                                   max_size=n - 1)))
        b = np.array(bps)
        inner = np.diff(v) / np.diff(b) if n > 2 else np.zeros(0)
        s = np.r_[s[0], inner, s[-1]]
        c = np.r_[v[0] - s[0] * b[0], v[:-1] - inner * b[:-1], v[-1] - s[-1] * b[-1]]
        if n == 2:
            c = np.array([v[0] - s[0] * b[0], v[0] - s[1] * b[0]])
    else:
        c = np.array(draw(st.lists(st.floats(-20, 20, allow_nan=False, width=32), min_size=n, max_size=n)))
    return Table(np.array(bps), s, c)
