"""Bits per byte of a byte-level causal LM, and the unigram baseline it must beat.

Why a native path: lm-eval is thorough but slow; sweeps need a quick, deterministic number. The text is
cut into consecutive windows of `seq_len` bytes; each window is fed after the start token (id 256, the
same convention as training and as lm-eval's rolling log-likelihood) and every byte is predicted once.
bits/byte = sum of -log2 p(byte) / number of bytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np

from .tokenizer import EOS_ID, N_BYTES


def score_bits_per_byte(model: object, data: bytes, seq_len: int = 1024, batch_size: int = 8,
                        logits_fn: Callable | None = None, progress: Callable[[int, int], None] | None = None
                        ) -> float:
    """Bits per byte of `data` under `model` (a torch causal LM over byte ids, or any `logits_fn`).

    `logits_fn(ids: LongTensor[b, t]) -> FloatTensor[b, t, vocab]` lets exported models be scored the same
    way; by default the torch model's ``model(input_ids=ids).logits`` is used.
    """
    import torch

    if not data:
        raise ValueError("no bytes to score")
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    scan = contextlib.nullcontext()
    if logits_fn is None:
        def logits_fn(ids: torch.Tensor) -> torch.Tensor:
            return model(input_ids=ids, use_cache=False).logits  # type: ignore[operator]

        already = any("_actiba_original_forward" in vars(m) for m in model.modules())  # type: ignore[attr-defined]
        if getattr(getattr(model, "config", None), "model_type", None) == "mamba" and not already:
            from .mamba_scan import chunked_scan  # exact, and linear in memory unlike the chunked form

            scan = chunked_scan(model, mode="recurrent")  # type: ignore[arg-type]

    arr = torch.tensor(list(data), dtype=torch.long)
    windows = [arr[i:i + seq_len] for i in range(0, len(arr), seq_len)]
    total_nats = 0.0
    with torch.inference_mode(), scan:
        # equal lengths batch together; the one short tail window goes alone
        groups: dict[int, list[torch.Tensor]] = {}
        for w in windows:
            groups.setdefault(len(w), []).append(w)
        done = 0
        for length, ws in groups.items():
            for i in range(0, len(ws), batch_size):
                target = torch.stack(ws[i:i + batch_size])
                start = torch.full((len(target), 1), EOS_ID, dtype=torch.long)
                ids = torch.cat([start, target[:, :-1]], dim=1)
                logits = torch.as_tensor(logits_fn(ids)).float()
                logp = torch.log_softmax(logits, dim=-1)
                total_nats -= logp.gather(-1, target[..., None]).sum().item()
                done += target.numel()
                if progress is not None:
                    progress(done, len(arr))
            del length
    return total_nats / math.log(2) / len(data)


def unigram_bits_per_byte(train: bytes, data: bytes) -> float:
    """Cross-entropy of `data` under the byte frequencies of `train` (add-one smoothed), in bits/byte."""
    counts = np.bincount(np.frombuffer(train, dtype=np.uint8), minlength=N_BYTES).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    test = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=N_BYTES)
    return float(-(test * logp).sum() / len(data))
