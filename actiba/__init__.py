"""actiba: piecewise-linear activation tables for NPUs, and SSM model rewrites measured end to end.

Quick use::

    import actiba
    t = actiba.fit("silu", segments=16)     # -> Table (callable, .save(), .report)
    y = t(x)                                # the canonical float64 evaluator
    t2 = actiba.load("silu16.json")
"""

from __future__ import annotations

from . import functions
from .errors import InputError, TableError
from .table import Table, evaluate, load

__version__ = "0.1.0"
__all__ = ["InputError", "functions", "Table", "TableError", "__version__", "evaluate", "fit", "load"]


def fit(*args, **kwargs) -> Table:
    """Fit a piecewise-linear table; see `actiba.fit.fit` (imported lazily to keep start-up fast)."""
    from .fitting import fit as _fit

    return _fit(*args, **kwargs)
