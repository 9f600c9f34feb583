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

from .arch import is_selective_scan
from .tokenizer import EOS_ID, N_BYTES


def score_bits_per_byte(model: object, data: bytes, seq_len: int = 1024, batch_size: int = 8,
                        logits_fn: Callable | None = None, progress: Callable[[int, int], None] | None = None
                        ) -> float:
    """Bits per byte of `data` under `model` (a torch causal LM over byte ids, or any `logits_fn`).

    `logits_fn(ids: LongTensor[b, t]) -> FloatTensor[b, t, vocab]` lets exported models be scored the same
    way; by default the torch model's ``model(input_ids=ids).logits`` is used.
    """
    if not data:
        raise ValueError("no bytes to score")
    return score_ids_bits_per_byte(model, list(data), EOS_ID, len(data), seq_len, batch_size, logits_fn, progress)


def score_ids_bits_per_byte(model: object, ids: list[int], start_id: int, n_bytes: int, seq_len: int = 1024,
                            batch_size: int = 8, logits_fn: Callable | None = None,
                            progress: Callable[[int, int], None] | None = None) -> float:
    """Bits per byte of token `ids` covering `n_bytes` of text: windows of `seq_len` after `start_id`.

    The common core of the byte scorer and the tokenizer-aware one (`score_text_bits_per_byte`, and
    `evaluate.scoring_text` for exported graphs), so both divide the same summed nats the same way.
    """
    if not ids or n_bytes < 1:
        raise ValueError("no tokens to score")
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    scan = contextlib.nullcontext()
    if logits_fn is None:
        logits_fn, scan = _torch_logits(model)
    with scan:
        nats = _window_nats(logits_fn, ids, start_id, seq_len, batch_size, progress)
    return nats / math.log(2) / n_bytes


def _torch_logits(model: object) -> tuple[Callable, contextlib.AbstractContextManager]:
    """A torch model's logits function, and the scan form it must run under (Mamba v1: HF's slow path
    loops per token; our recurrent form is exact and linear in memory)."""
    def logits_fn(ids):
        return model(input_ids=ids, use_cache=False).logits  # type: ignore[operator]

    scan: contextlib.AbstractContextManager = contextlib.nullcontext()
    already = any("_actiba_original_forward" in vars(m) for m in model.modules())  # type: ignore[attr-defined]
    if is_selective_scan(model) and not already:
        from .mamba_scan import chunked_scan

        scan = chunked_scan(model, mode="recurrent")  # type: ignore[arg-type]
    return logits_fn, scan


def score_text_bits_per_byte(model: object, text: str, tokenizer: object, seq_len: int = 1024,
                             batch_size: int = 8, logits_fn: Callable | None = None,
                             progress: Callable[[int, int], None] | None = None) -> float:
    """Bits per UTF-8 byte of `text` under a causal LM with its own tokenizer.

    Why per byte and not per token: the loss of a table must compare across models whose tokenizers
    differ, and bits/byte does (lm-eval's `bits_per_byte` is the same normalisation). The token ids are
    cut into consecutive windows of `seq_len` tokens, each fed after the tokenizer's BOS (or, without
    one, its EOS) as the start of context, so every token is predicted once; the summed -log2 p over all
    tokens is divided by the text's UTF-8 length. With the embedded byte tokenizer this is exactly
    `score_bits_per_byte` (token id = byte, start id 256).
    """
    if not text:
        raise ValueError("no text to score")
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    start = getattr(tokenizer, "bos_token_id", None)
    if start is None:
        start = getattr(tokenizer, "eos_token_id", None)
    if start is None:
        from ..errors import InputError

        raise InputError("the tokenizer has neither a BOS nor an EOS token, so the first token of each "
                         "window has no context to be predicted from")
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
    scan: contextlib.AbstractContextManager = contextlib.nullcontext()
    if logits_fn is None:
        logits_fn, scan = _torch_logits(model)
    with scan:
        nats = _window_nats(logits_fn, ids, int(start), seq_len, batch_size, progress)
    return nats / math.log(2) / len(text.encode("utf-8"))


def _window_nats(logits_fn: Callable, ids: list[int], start_id: int, seq_len: int, batch_size: int,
                 progress: Callable[[int, int], None] | None) -> float:
    """-sum log p of every id, in consecutive `seq_len` windows each fed after `start_id`."""
    import torch

    arr = torch.tensor(ids, dtype=torch.long)
    windows = [arr[i:i + seq_len] for i in range(0, len(arr), seq_len)]
    total_nats = 0.0
    with torch.inference_mode():
        # equal lengths batch together; the one short tail window goes alone
        groups: dict[int, list[torch.Tensor]] = {}
        for w in windows:
            groups.setdefault(len(w), []).append(w)
        done = 0
        for ws in groups.values():
            for i in range(0, len(ws), batch_size):
                target = torch.stack(ws[i:i + batch_size])
                start = torch.full((len(target), 1), start_id, dtype=torch.long)
                inputs = torch.cat([start, target[:, :-1]], dim=1)
                logits = torch.as_tensor(logits_fn(inputs)).float()
                logp = torch.log_softmax(logits, dim=-1)
                total_nats -= logp.gather(-1, target[..., None]).sum().item()
                done += target.numel()
                if progress is not None:
                    progress(done, len(arr))
    return total_nats


def unigram_bits_per_byte(train: bytes, data: bytes) -> float:
    """Cross-entropy of `data` under the byte frequencies of `train` (add-one smoothed), in bits/byte."""
    counts = np.bincount(np.frombuffer(train, dtype=np.uint8), minlength=N_BYTES).astype(np.float64) + 1.0
    logp = np.log2(counts / counts.sum())
    test = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=N_BYTES)
    return float(-(test * logp).sum() / len(data))
