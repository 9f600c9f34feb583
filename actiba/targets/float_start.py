"""Float tables to start from (and to round naively, for the baselines the constrained fits must beat).

Uses the project's fitter `actiba.fitting.fit`; when it refuses the request (an `InputError`, e.g.
asymptote tails for a function without asymptotes) or with `fallback=True`, a simple local rule: knots
equidistributed in the density sqrt|f''| (the asymptotic optimum for interpolation), f interpolated at
the knots, outer segments extended. Any other exception is a bug and propagates.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..functions import Activation
from ..table import Table


def interpolating_fit(act: Activation, segments: int, lo: float, hi: float) -> Table:
    """Continuous table interpolating f at knots placed by sqrt|f''| density (N+1 knots on [lo, hi])."""
    xs = np.linspace(lo, hi, 4001)
    with np.errstate(all="ignore"):
        dens = np.sqrt(np.abs(np.nan_to_num(act.d2f(xs))))
    dens = dens + 0.05 * (dens.max() if dens.max() > 0 else 1.0)  # keep some knots in flat regions
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(xs))])
    knots = np.interp(np.linspace(0, cdf[-1], segments + 1), cdf, xs)
    knots[0], knots[-1] = lo, hi
    knots = np.unique(knots)
    y = act(knots)
    slopes = np.diff(y) / np.diff(knots)
    icepts = y[:-1] - slopes * knots[:-1]
    return Table(knots[1:-1], slopes, icepts, function=act.expression or act.name, params=dict(act.params),
                 domain=(float(lo), float(hi)), provenance={"fit": "interpolation at sqrt|f''| knots"})


def float_fit(act: Activation, segments: int, lo: float, hi: float, tails: str = "free",
              fallback: bool = False) -> Table:
    """The best float table available: the project fitter, or the local interpolating rule."""
    if fallback:
        return interpolating_fit(act, segments, lo, hi)
    from ..fitting import fit

    try:
        return fit(act, segments=segments, range=(lo, hi), metric="max-abs", continuous=True, tails=tails)
    except InputError as exc:  # a start table is still useful; the provenance says why it is this one
        table = interpolating_fit(act, segments, lo, hi)
        table.provenance["start"] = f"the float fitter refused ({exc}); interpolated instead"
        return table
