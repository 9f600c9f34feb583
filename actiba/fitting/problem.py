"""What is being fitted: the function, the range, the segment count, continuity, tails and metric.

A `Problem` is the fitter's one input object; the parametrization, the refiners and the verifier
all read from it, so a constraint (e.g. an asymptote-pinned tail) is stated once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..functions import Activation
from .constraints import Constraints

TAILS = ("free", "asymptote", "clamp")
METRICS = ("max-abs", "max-rel", "rms")
MAX_SEGMENTS = 4096


# beyond this, err**2, the error estimate's integral and the grids' widths overflow float64
MAX_ABS_X = 1e100


@dataclass(frozen=True)
class Problem:
    act: Activation
    lo: float
    hi: float
    segments: int
    continuous: bool = True
    tails: str = "free"
    metric: str = "max-abs"
    weight: Callable[[np.ndarray], np.ndarray] | None = None
    constraints: Constraints | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            raise InputError(f"range must be finite, got [{self.lo}, {self.hi}]")
        if not self.lo < self.hi:
            raise InputError(f"range needs lo < hi, got [{self.lo}, {self.hi}]")
        if self.hi - self.lo < 1e-9 * max(abs(self.lo), abs(self.hi)):
            raise InputError(f"range [{self.lo!r}, {self.hi!r}] is too narrow for float64 at its magnitude "
                             "(width below 1e-9 of max |x|)")
        if max(abs(self.lo), abs(self.hi)) > MAX_ABS_X:
            raise InputError(f"range [{self.lo:g}, {self.hi:g}] is too wide: fits are limited to "
                             f"|x| <= {MAX_ABS_X:g} (squared errors and the fitter's integrals overflow float64)")
        if not 1 <= self.segments <= MAX_SEGMENTS:
            raise InputError(f"segments must be between 1 and {MAX_SEGMENTS}, got {self.segments}")
        if self.tails not in TAILS:
            raise InputError(f"unknown tails {self.tails!r}; use one of {', '.join(TAILS)}")
        if self.metric not in METRICS:
            raise InputError(f"unknown metric {self.metric!r}; use one of {', '.join(METRICS)}")
        if self.tails == "asymptote" and self.left_line is None and self.right_line is None:
            raise InputError(f"{self.act.to_json()['function']} has no known asymptote; "
                             "use --tails free or clamp")
        pinned = int(self.left_pinned) + int(self.right_pinned)
        if pinned and self.segments < pinned + 1:
            raise InputError(f"{self.segments} segment(s) are too few for {self.tails} tails: the "
                             f"pinned outer segments take {pinned}, at least one more must fit the range")
        if self.constraints is not None and self.constraints.any:
            self._check_constraints(self.constraints)
        xs = np.linspace(self.lo, self.hi, 20001)
        with np.errstate(all="ignore"):
            fx = self.act.f(xs)
        bad = np.nonzero(~np.isfinite(fx))[0]
        if bad.size:
            raise InputError(f"{self.act.to_json()['function']} is not finite at x = {xs[bad[0]]:.6g} "
                             f"on [{self.lo:g}, {self.hi:g}]; choose a range where it is defined")
        if not np.all(np.isfinite(self.act.df(xs))):
            raise InputError(f"{self.act.to_json()['function']} is not differentiable everywhere on "
                             f"[{self.lo:g}, {self.hi:g}]")
        if self.weight is not None:
            with np.errstate(all="ignore"):
                wx = np.asarray(self.weight(xs), dtype=np.float64) * np.ones_like(xs)
            bad = np.nonzero(~(np.isfinite(wx) & (wx >= 0)))[0]
            if bad.size:
                raise InputError(f"the weight must be finite and >= 0 on [{self.lo:g}, {self.hi:g}]; "
                                 f"w({xs[bad[0]]:.6g}) = {wx[bad[0]]:.6g}")
            if not np.any(wx > 0):
                raise InputError(f"the weight is 0 everywhere on [{self.lo:g}, {self.hi:g}]")
        if self.metric == "max-rel":
            if np.any(fx == 0) or np.any(np.sign(fx[1:]) != np.sign(fx[:-1])):
                raise InputError(f"max-rel needs f without a zero on [{self.lo}, {self.hi}]; "
                                 "use max-abs or a range where f keeps its sign")

    def _check_constraints(self, c: Constraints) -> None:
        n = self.segments
        if self.metric == "rms" and c.describe().keys() - {"uniform"}:
            raise InputError("slope, width and grid constraints apply to max-abs and max-rel fits "
                             "(rms takes --uniform only)")
        self._check_discrete(c)
        for name, v in (("slope-min", c.slope_min), ("slope-max", c.slope_max)):
            if v is not None and not math.isfinite(v):
                raise InputError(f"--{name} must be finite, got {v}")
        if c.slope_min is not None and c.slope_max is not None and c.slope_min > c.slope_max:
            raise InputError(f"--slope-min {c.slope_min:g} is above --slope-max {c.slope_max:g}")
        if c.min_width is not None and not (c.min_width > 0 and c.min_width * n <= self.hi - self.lo):
            raise InputError(f"--min-width must be positive and fit {n} times into [{self.lo:g}, {self.hi:g}], "
                             f"got {c.min_width:g}")
        if c.grid is not None:
            if not (math.isfinite(c.grid) and c.grid > 0):
                raise InputError(f"--breakpoint-grid must be a positive number, got {c.grid}")
            inside = math.floor(self.hi / c.grid - 1e-9) - math.ceil(self.lo / c.grid + 1e-9) + 1
            if inside < n - 1:
                raise InputError(f"a grid of {c.grid:g} has only {max(inside, 0)} points inside "
                                 f"({self.lo:g}, {self.hi:g}); {n} segments need {n - 1}")
        for side, line in (("left", self.left_line), ("right", self.right_line)):
            if line is None:
                continue
            low = c.slope_min is not None and line[0] < c.slope_min
            if low or (c.slope_max is not None and line[0] > c.slope_max):
                raise InputError(f"the {side} asymptote's slope {line[0]:g} is outside the slope bounds; "
                                 "use --tails free or clamp")

    def _check_discrete(self, c: Constraints) -> None:
        """Grids, powers of two, uniform spacing and monotone auto: refuse what cannot be combined."""
        from .constraints import on_grid

        n = self.segments
        for name, v in (("slope-grid", c.slope_grid), ("intercept-grid", c.intercept_grid)):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise InputError(f"--{name} must be a positive number, got {v}")
        if c.pow2_slopes is not None:
            emin, emax = c.pow2_slopes
            if not (-60 <= emin <= emax <= 60):
                raise InputError(f"--pow2-slopes needs -60 <= EMIN <= EMAX <= 60, got {emin} {emax}")
            if c.slope_grid is not None:
                raise InputError("give one of --pow2-slopes and --slope-grid, not both")
        if c.lattice:
            for flag, given in (("--breakpoint-grid", c.grid is not None), ("--min-width", c.min_width is not None),
                                ("--monotone auto", c.monotone_auto)):
                if given:
                    raise InputError(f"{flag} does not combine with slope/intercept grids or power-of-two slopes "
                                     "(their lattice search places the breakpoints)")
            if c.uniform and self.continuous:
                raise InputError("--uniform with slope/intercept grids needs --discontinuous: a continuous table "
                                 "of grid lines has its breakpoints where the lines cross")
            for side, line in (("left", self.left_line), ("right", self.right_line)):
                if line is None:
                    continue
                if not c.allows_slope(line[0]) or (c.intercept_grid is not None
                                                   and not on_grid(line[1], c.intercept_grid)):
                    raise InputError(f"the {side} asymptote {line[0]:g}·x + {line[1]:g} is not on the slope/intercept "
                                     "grid; use --tails free or clamp")
            if c.pow2_slopes is not None:
                emin, emax = c.pow2_slopes
                pool = [0.0] + [sg * 2.0 ** e for e in range(emin, emax + 1) for sg in (1.0, -1.0)]
                lo_s = -math.inf if c.slope_min is None else c.slope_min
                hi_s = math.inf if c.slope_max is None else c.slope_max
                if not any(lo_s <= v <= hi_s for v in pool):
                    raise InputError(f"no slope 0 or ±2^e (e in {emin}..{emax}) lies within the slope bounds")
        if c.uniform:
            w = (self.hi - self.lo) / n
            if c.min_width is not None and w < c.min_width:
                raise InputError(f"--uniform gives segments {w:g} wide, below --min-width {c.min_width:g}")
            if c.grid is not None:
                knots = self.lo + w * np.arange(1, n)
                if not np.allclose(knots / c.grid, np.round(knots / c.grid), rtol=0, atol=1e-9):
                    raise InputError(f"--uniform puts breakpoints at {self.lo:g} + i·{w:g}, not on the "
                                     f"--breakpoint-grid {c.grid:g}")

    @property
    def left_line(self) -> tuple[float, float] | None:
        return self.act.left if self.tails == "asymptote" else None

    @property
    def right_line(self) -> tuple[float, float] | None:
        return self.act.right if self.tails == "asymptote" else None

    @property
    def left_pinned(self) -> bool:
        """Segment 0 is fixed in shape (asymptote line or a constant)."""
        return self.left_line is not None or (self.tails == "clamp" and self.segments > 1)

    @property
    def right_pinned(self) -> bool:
        return self.right_line is not None or (self.tails == "clamp" and self.segments > 1)

    def w(self, x: np.ndarray) -> np.ndarray:
        """Pointwise error weight of the metric (1/|f| for max-rel, the user weight for rms)."""
        if self.metric == "max-rel":
            return 1.0 / np.abs(self.act.f(x))
        if self.weight is not None:
            return np.asarray(self.weight(x), dtype=np.float64) * np.ones_like(x)
        return np.ones_like(x)
