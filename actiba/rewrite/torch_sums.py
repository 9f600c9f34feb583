"""torch-level CumBA and ReduBA: cumulative and reducing sums as MatMuls, inside selected modules only.

Why at the torch level too: a user who exports from torch (or evaluates accuracy in torch) can bake
the MatMul form into the graph without an ONNX pass, and see exactly which calls changed. The math is
`rules.cumba.SPEC` / `rules.reduba.SPEC` (same constants, same layouts: the summed axis is brought next to the
constant with reshapes, never a transpose when the axes are contiguous).

    with sums_scope(model, ["cumba"], include=["backbone.layers.*.mixer"], min_n=32):
        logits = model(ids).logits          # torch.cumsum over >= 32 elements ran as MatMul

Scoping reuses the ActiBA scope's module-path hooks, so norms (which reduce with mean) stay untouched
unless selected. Calls a rewrite cannot express exactly (integer tensors, a `dtype=` argument, a
`out=` tensor) run unchanged and are recorded with the reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ..errors import InputError
from . import spec
from .spec import Site
from .torch_rw import scoped

_CUMSUM = {torch.cumsum, torch.Tensor.cumsum}
_SUM = {torch.sum, torch.Tensor.sum}
_MEAN = {torch.mean, torch.Tensor.mean}


def cumsum_as_matmul(x: torch.Tensor, dim: int) -> torch.Tensor:
    """torch.cumsum(x, dim) computed as a MatMul with the lower-triangular 0/1 constant."""
    rank = x.dim()
    d = dim % rank
    n = x.shape[d]
    m = torch.from_numpy(spec.cumsum_matrix(n)).to(dtype=x.dtype, device=x.device)
    if d == rank - 1:
        return x @ m.T
    if d == rank - 2:
        return m @ x
    shape = x.shape
    q = 1
    for s in shape[d + 1:]:
        q *= s
    y = m @ x.reshape(*shape[:d], n, q)
    return y.reshape(shape)


def reduce_as_matmul(x: torch.Tensor, dims: list[int] | None, keepdim: bool, mean: bool) -> torch.Tensor:
    """torch.sum / torch.mean over `dims` (all if None) as a MatMul with a ones (or 1/K) vector."""
    rank = x.dim()
    axes = list(range(rank)) if dims is None or len(dims) == 0 else spec.normalize_axes(dims, rank)
    if axes is None:
        raise InputError(f"reduction axes {dims} are invalid for rank {rank}")
    out_shape = [1 if i in axes else s for i, s in enumerate(x.shape)] if keepdim else \
        [s for i, s in enumerate(x.shape) if i not in axes]
    k = 1
    for a in axes:
        k *= x.shape[a]
    ones = torch.full((k,), (1.0 / k) if mean else 1.0, dtype=x.dtype, device=x.device)
    if axes != list(range(axes[0], axes[-1] + 1)):  # non-contiguous: bring the reduced axes together
        keep = [i for i in range(rank) if i not in axes]
        x = x.permute(*keep, *axes)
        return (x.reshape(*[x.shape[i] for i in range(len(keep))], k) @ ones).reshape(out_shape)
    pre, post = x.shape[:axes[0]], x.shape[axes[-1] + 1:]
    if not post:  # trailing axes: x[..., K] @ 1_K
        return (x.reshape(*pre, k) @ ones).reshape(out_shape)
    q = 1
    for s in post:
        q *= s
    return (ones[None, :] @ x.reshape(*pre, k, q)).reshape(out_shape)


def _dims(args: tuple, kwargs: dict) -> tuple[Any, bool]:
    dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
    keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
    if isinstance(dim, int):
        dim = [dim]
    return (list(dim) if dim is not None else None), keepdim


class _ScopedSums(TorchFunctionMode):
    """Replace cumsum / sum / mean by MatMuls while the innermost selected module is 'in'."""

    def __init__(self, rewrites: set[str], min_n: int | None, record: list[Site] | None) -> None:
        super().__init__()
        self.rewrites, self.min_n, self.record = rewrites, min_n, record
        self.stack: list[tuple[str, bool, bool]] = []
        self.calls = 0

    def _site(self, rewrite: str, op: str, x: torch.Tensor, axis: Any) -> Site:
        site = Site(rewrite, self.stack[-1][0], op, tuple(x.shape), axis=axis,
                    dtype=str(x.dtype).replace("torch.", ""))
        if self.record is not None:
            self.record.append(site)
        return site

    def _why_not(self, x: Any, kwargs: dict) -> str | None:
        if not isinstance(x, torch.Tensor):
            return "not a tensor"
        if not x.is_floating_point():
            return f"{str(x.dtype).replace('torch.', '')} is not a floating-point type"
        if kwargs.get("dtype") is not None:
            return "dtype= argument (accumulation type change)"
        if kwargs.get("out") is not None:
            return "out= argument"
        return None

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not (self.stack and self.stack[-1][1]) or not args:
            return func(*args, **kwargs)
        x = args[0]
        if "cumba" in self.rewrites and func in _CUMSUM:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            why = self._why_not(x, kwargs) or (None if isinstance(dim, int) else "dim is not an integer")
            if why is None and self.min_n and x.shape[dim] < self.min_n:
                why = f"n={x.shape[dim]} < min_n={self.min_n}"
            site = self._site("cumba", "torch.cumsum", x, dim) if isinstance(x, torch.Tensor) else None
            if why is None:
                self.calls += 1
                if site is not None:
                    site.reason = f"MatMul with a {x.shape[dim]}×{x.shape[dim]} triangular constant"
                return cumsum_as_matmul(x, dim)
            if site is not None:
                site.skip(why)
        elif "reduba" in self.rewrites and (func in _SUM or func in _MEAN):
            mean = func in _MEAN
            dims, keepdim = _dims(args, kwargs)
            site = self._site("reduba", "torch.mean" if mean else "torch.sum", x, dims) \
                if isinstance(x, torch.Tensor) else None
            why = self._why_not(x, kwargs)
            if why is None and x.dim() == 0:
                why = "scalar input"
            if why is None:
                self.calls += 1
                if site is not None:
                    site.reason = "MatMul with a ones vector" + (" (1/K)" if mean else "")
                return reduce_as_matmul(x, dims, keepdim, mean)
            if site is not None:
                site.skip(why)
        return func(*args, **kwargs)


@contextlib.contextmanager
def sums_scope(model: torch.nn.Module, rewrites: Iterable[str] = ("cumba", "reduba"), include: Iterable[str] = (),
               exclude: Iterable[str] = (), min_n: int | None = None,
               record: list[Site] | None = None) -> Iterator[_ScopedSums]:
    """Within the block, CumBA / ReduBA apply to calls made inside `include` modules (all if empty).

    `min_n` limits CumBA to cumulative sums over at least that many elements (on CPU only the axis −2
    layout of the SSD segment sum gains; see eval/results/rewrites.md). `record` collects one Site per
    call considered, rewritten or not.
    """
    chosen = set(rewrites)
    if not chosen or chosen - {"cumba", "reduba"}:
        raise InputError(f"torch sums scope takes cumba / reduba, not {sorted(chosen - {'cumba', 'reduba'}) or '[]'}")
    with scoped(model, _ScopedSums(chosen, min_n, record), list(include), list(exclude)) as mode:
        yield mode


def find_sum_sites(model: torch.nn.Module, example: Any, rewrites: Iterable[str] = ("cumba", "reduba"),
                   include: Iterable[str] = (), exclude: Iterable[str] = (), min_n: int | None = None) -> list[Site]:
    """Run `model(example)` once under the scope and list every call it considered (a dry run)."""
    sites: list[Site] = []
    with torch.inference_mode(), sums_scope(model, rewrites, include, exclude, min_n, record=sites):
        model(example) if not isinstance(example, dict) else model(**example)
    return sites
