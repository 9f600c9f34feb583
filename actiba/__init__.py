"""actiba: piecewise-linear activation tables for NPUs, and SSM model rewrites measured end to end.

Quick use::

    import actiba
    t = actiba.fit("silu", segments=16)     # -> Table (callable, .save(), .report)
    y = t(x)                                # the canonical float64 evaluator
    t2 = actiba.load("silu16.json")
"""

from __future__ import annotations

from . import functions
from ._version import __version__
from .errors import InputError, TableError
from .table import Table, evaluate, load

__all__ = ["InputError", "functions", "Table", "TableError", "__version__", "evaluate", "fit", "load"]


def fit(func, segments=None, *, max_error=None, range=None, metric="max-abs", continuous=True,
        tails="free", beta=None, weight=None, target=None, target_params=None, monotone=False,
        slope_min=None, slope_max=None, min_width=None, breakpoint_grid=None, slope_grid=None,
        intercept_grid=None, pow2_slopes=None, uniform=False) -> Table:
    """Fit a piecewise-linear table to `func` (a registry name, ``expr:...`` or an `Activation`).

    Give `segments` (least error with that many) or `max_error` (fewest segments meeting it).
    `metric` is ``max-abs``, ``max-rel`` or ``rms`` (`weight(x)` weights rms); `tails` ``free``,
    ``asymptote`` or ``clamp``; `range` defaults to the function's own. Constraints kept by the
    optimizer: `monotone` (True, or ``"auto"``: f's sign per segment), `slope_min`/`slope_max`,
    `min_width`, `breakpoint_grid`, `uniform`, and searched on a lattice `slope_grid`, `intercept_grid`,
    `pow2_slopes=(emin, emax)` (see `actiba.fitting.fit`). With `target` the
    table is fitted under that hardware format's constraints (`actiba.targets.fit`). Returns a `Table`
    whose ``report`` is the `actiba.fitting.FitReport` (``str(t.report)`` is the summary). Implemented in
    `actiba.fitting.fit`, imported on first call so that ``import actiba`` stays light.
    """
    if target is not None:
        if monotone or uniform or any(v is not None for v in (slope_min, slope_max, min_width, breakpoint_grid,
                                                               slope_grid, intercept_grid, pow2_slopes)):
            raise InputError("constraints do not combine with --target (the hardware format sets its own)")
        from .targets import fit as _fit_target

        return _fit_target(target, func, segments, max_error=max_error, range=range, metric=metric,
                           continuous=continuous, tails=tails, beta=beta, weight=weight, params=target_params)
    from .fitting import fit as _fit

    return _fit(func, segments, max_error=max_error, range=range, metric=metric, continuous=continuous,
                tails=tails, beta=beta, weight=weight, monotone=monotone, slope_min=slope_min,
                slope_max=slope_max, min_width=min_width, breakpoint_grid=breakpoint_grid, slope_grid=slope_grid,
                intercept_grid=intercept_grid, pow2_slopes=pow2_slopes, uniform=uniform)
