"""Capture per-site activation statistics by running a byte-level model on text.

Windows are cut as `actiba.evaluate.perplexity.windows_bits_per_byte` scores them (disjoint windows of
`seq_len` bytes, tail dropped, each fed as [EOS] + window[:-1]), and Mamba v1 runs with the same exact
recurrent scan as scoring, so the statistics describe exactly the calls that scoring makes. Site ids
come from `observe_activations`, the same ids the per-site rewrites use. One pass: the histogram's
lattice grows exactly with the range (`stats.Accumulator`), so memory stays flat for any amount of text.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import InputError
from ..fingerprint import model_fingerprint, torch_module
from ..models.arch import is_selective_scan
from .stats import Accumulator, CalibrationStats


def windows(data: bytes, seq_len: int, max_windows: int | None = None) -> list[bytes]:
    """Disjoint `seq_len`-byte windows of `data` (the tail shorter than a window is dropped)."""
    if seq_len < 1:
        raise InputError(f"--seq-len must be positive, got {seq_len}")
    if not data:
        raise InputError("calibration data is empty")
    n = len(data) // seq_len
    if n == 0:
        raise InputError(f"calibration data has {len(data)} bytes, shorter than one window of {seq_len}")
    if max_windows is not None:
        if max_windows < 1:
            raise InputError(f"max_windows must be positive, got {max_windows}")
        n = min(n, max_windows)
    return [data[i * seq_len:(i + 1) * seq_len] for i in range(n)]


def _scan_context(module: Any) -> Any:
    """Mamba v1: the exact recurrent scan scoring uses (HF's slow path is the same math, much slower)."""
    already = any("_actiba_original_forward" in vars(m) for m in module.modules())
    if is_selective_scan(module) and not already:
        from ..models.mamba_scan import chunked_scan

        return chunked_scan(module, mode="recurrent")
    return contextlib.nullcontext()


def calibrate(model: Any, data: bytes, *, seq_len: int = 256, functions: Iterable[str] = ("silu", "softplus"),
              max_windows: int | None = None, model_name: str | None = None, data_name: str | None = None,
              batch_size: int = 8, progress: Callable[[int, int], None] | None = None) -> CalibrationStats:
    """Statistics of the inputs of every `functions` call of `model` on `data` (bytes are token ids).

    `model` is a torch causal LM or an `actiba.evaluate.build.LoadedModel`. `progress(done, total)` is
    called after each batch.
    """
    import torch

    from ..models.tokenizer import EOS_ID
    from ..rewrite.spec import ACT_FUNCTIONS, canonical_function
    from ..rewrite.torch_rw import observe_activations

    fns = sorted({canonical_function(f) for f in functions})
    if not fns:
        raise InputError("no functions to calibrate")
    unknown = [f for f in fns if f not in ACT_FUNCTIONS]
    if unknown:
        raise InputError(f"cannot calibrate {', '.join(unknown)}; known: {', '.join(ACT_FUNCTIONS)}")
    if batch_size < 1:
        raise InputError(f"batch size must be positive, got {batch_size}")
    wins = windows(data, seq_len, max_windows)
    module = torch_module(model)
    fingerprint = model_fingerprint(model)
    if model_name:
        fingerprint["name_or_path"] = model_name

    ids = torch.tensor([[EOS_ID, *w[:-1]] for w in wins], dtype=torch.long)
    batches = [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]
    accs: dict[str, Accumulator] = {}

    def on_call(site: str, function: str, _beta: Any, x: torch.Tensor) -> None:
        accs.setdefault(site, Accumulator(site, function)).observe(x.detach().to(torch.float64).cpu().numpy())
        return None

    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), _scan_context(module):
            for done, batch in enumerate(batches, 1):
                with observe_activations(module, on_call, fns):
                    module(input_ids=batch, use_cache=False)
                if progress is not None:
                    progress(done, len(batches))
    finally:
        module.train(was_training)
    if not accs:
        raise InputError(f"the model made no {'/'.join(fns)} calls")
    used = len(wins) * seq_len
    data_info = {"source": data_name or "bytes", "n_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                 "seq_len": int(seq_len), "windows": len(wins), "bytes_used": used,
                 "windowing": "disjoint seq_len windows, tail dropped, each fed as [EOS] + window[:-1]"}
    return CalibrationStats(fingerprint, data_info, {k: a.finish() for k, a in accs.items()})
