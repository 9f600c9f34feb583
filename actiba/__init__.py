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


def fit(*args, target: str | None = None, target_params: dict[str, str] | None = None, **kwargs) -> Table:
    """Fit a piecewise-linear table: `actiba.fitting.fit`, or with `target` the hardware-constrained
    `actiba.targets.fit` (both imported lazily to keep start-up fast)."""
    if target is None:
        from .fitting import fit as _fit

        return _fit(*args, **kwargs)
    from .targets import fit as _fit_target

    return _fit_target(target, *args, params=target_params, **kwargs)
