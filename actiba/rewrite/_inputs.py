"""Random (and user-given) inputs for the before/after verification every rewrite runs."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import InputError

DYNAMIC_DIM = 16  # length used for a symbolic/unknown dimension
INT_HIGH = 32  # integer inputs (token ids, indices) are drawn from [0, INT_HIGH)


def random_array(shape: list[Any], dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """An input of `shape` (unknown dims -> DYNAMIC_DIM): normal floats, small ints, random bools."""
    dims = [d if isinstance(d, int) and d >= 0 else DYNAMIC_DIM for d in shape]
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(dims) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, INT_HIGH, size=dims).astype(dtype)
    return rng.standard_normal(dims).astype(dtype)


def load_inputs(path: str | os.PathLike | None) -> dict[str, np.ndarray] | None:
    """Real inputs from an .npz (input name -> array); one InputError line if unreadable."""
    if path is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise InputError(f"inputs file {os.fspath(path)} does not exist") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read inputs {os.fspath(path)} (expected .npz): {exc}") from None


def max_abs_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """Max |a - b| over all outputs; NaN/inf where the other side is finite counts as inf."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            return float("inf")
        if x.size == 0:
            continue
        same_nonfinite = (~np.isfinite(x)) & (x == y) | (np.isnan(x) & np.isnan(y))
        d = np.where(same_nonfinite, 0.0, np.abs(x - y))
        d = np.where(np.isnan(d), np.inf, d)
        worst = max(worst, float(d.max()))
    return worst
