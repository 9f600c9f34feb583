"""Bits per byte on the fixed held-out split: torch (tables via the ActiBA scope) and OpenVINO paths.

Why two paths: torch with scoped tables says what the *approximation* costs; OpenVINO scores the very
graph whose latency is measured, at the chosen inference precision, so rewrite and precision effects
count too. Why `rolling_bits_per_byte`: it reproduces lm-eval's `loglikelihood_rolling` windowing (first
window after the prefix token, later windows conditioned on the one byte before them) so the native
number can be checked against lm-eval's `bits_per_byte` on the same text.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..models import mixer_scope

if TYPE_CHECKING:
    from .scoring_text import ScoringText

LogitsFn = Callable[[Any], Any]  # LongTensor|ndarray [b, t] -> logits [b, t, vocab]


def heldout(n_bytes: int | None) -> bytes:
    """The first `n_bytes` of the held-out split (a prefix, so every run scores the same text)."""
    from ..data import heldout_bytes

    return heldout_bytes(n_bytes)


@contextlib.contextmanager
def tables_applied(model: Any, tables: Any, include: Iterable[str] | None = None) -> Iterator[Any]:
    """Within the block the model's mixer activations (a causal LM without SSM: its MLP activations) run
    as tables (no-op without tables).

    `include`: module-path globs; None is the scope the architecture registry finds (`models.mixer_scope`:
    SSM mixers by path and class, so Nemotron-H's attention / MLP `.mixer`s stay exact; MLP blocks for
    a causal LM without SSM).

    `tables`: {function: Table}, a TableSet, or the mixed mapping `tables.tables_for(config, lm)` returns
    (site ids / site globs pick per-site tables; see `torch_rw.actiba_scope`).
    """
    if not tables:
        yield None
        return
    from ..rewrite.torch_rw import actiba_scope

    scope = mixer_scope(model) if include is None else list(include)
    with actiba_scope(model, tables, include=scope) as mode:
        yield mode


def torch_logits_fn(model: Any) -> LogitsFn:
    def fn(ids: Any) -> Any:
        return model(input_ids=ids, use_cache=False).logits

    return fn


def openvino_logits_fn(compiled: Any, record: Callable[[np.ndarray], None] | None = None) -> LogitsFn:
    """Logits from a compiled OpenVINO model with a fixed [1, L] input, window by window (as float32,
    whatever precision the model ran at); `record` sees each window's [L, V] logits."""
    import torch

    req = compiled.create_infer_request()

    def fn(ids: Any) -> Any:
        arr = np.asarray(ids, dtype=np.int64)
        outs = [np.array(req.infer({0: arr[i:i + 1]})[compiled.output(0)], dtype=np.float32)
                for i in range(arr.shape[0])]
        if record is not None:
            for o in outs:
                record(o[0])
        return torch.from_numpy(np.concatenate(outs, axis=0))

    return fn


def windows_bits_per_byte(logits_fn: LogitsFn, data: bytes | ScoringText, seq_len: int, start_id: int = 256,
                          progress: Callable[[int, int], None] | None = None) -> float:
    """actiba's convention (as in training): disjoint windows of `seq_len` tokens, each after the start id.

    `data`: byte ids (id = byte, start 256), or a `ScoringText` in the model's own tokens, whose summed
    nats are divided by the UTF-8 bytes its whole windows cover. Only whole windows are scored (the tail
    is dropped) so a fixed-length exported graph can score it.
    """
    from ..models.scoring import score_ids_bits_per_byte

    text = as_scoring_text(data)
    n = text.n_windows(seq_len) * seq_len
    if n == 0:
        text.windows(seq_len)  # the one-line InputError
    del start_id  # the text's start id (256 for bytes: the tokenizer's EOS)
    return score_ids_bits_per_byte(None, list(text.ids[:n]), text.start_id, text.n_bytes(seq_len), seq_len,
                                   batch_size=1, logits_fn=logits_fn, progress=progress)


def as_scoring_text(data: bytes | ScoringText) -> ScoringText:
    """Bytes as byte-tokenizer text (the scorers' old input); a ScoringText as it is."""
    from .scoring_text import ScoringText, from_bytes

    return data if isinstance(data, ScoringText) else from_bytes(bytes(data))


def window_nats(logits_fn: LogitsFn, data: bytes | ScoringText, seq_len: int,
                progress: Callable[[int, int], None] | None = None) -> list[float]:
    """Nats of each whole disjoint window of `data` (each after the start token), in order.

    The same windows and per-window sums as `windows_bits_per_byte` (whose value is
    ``sum(window_nats) / ln 2 / bytes``); kept per window because the difference of two configurations
    window by window on the same text is what says whether their accuracies differ beyond the text's
    own sampling noise (`accuracy.paired_halfwidth`). `data`: byte ids or a `ScoringText`.
    """
    import torch

    text = as_scoring_text(data)
    windows = text.windows(seq_len)
    usable = len(windows) * seq_len
    out = []
    with torch.inference_mode():
        for k, w in enumerate(windows):
            target = torch.tensor(w, dtype=torch.long)[None]
            ids = torch.cat([torch.full((1, 1), text.start_id, dtype=torch.long), target[:, :-1]], dim=1)
            logp = torch.log_softmax(torch.as_tensor(logits_fn(ids)).float(), dim=-1)
            out.append(-logp.gather(-1, target[..., None]).sum().item())
            if progress is not None:
                progress((k + 1) * seq_len, usable)
    return out


def bits_per_byte_of(nats: list[float], seq_len: int, n_bytes: int | None = None) -> float:
    """bits/byte from `window_nats` (summed in order, as `windows_bits_per_byte` sums them) over the
    `n_bytes` the windows cover (default: one byte per token, the byte tokenizer)."""
    total = 0.0
    for v in nats:
        total += v
    return total / math.log(2) / (len(nats) * seq_len if n_bytes is None else n_bytes)


def rolling_windows(tokens: list[int], prefix_id: int, max_len: int) -> list[tuple[list[int], list[int]]]:
    """lm-eval's rolling windows (context_len=1) as (model input, targets of its last len(targets) positions).

    The first window is the prefix token then the first max_len-1 tokens; each later window predicts the
    next (up to) max_len tokens from the max_len tokens just before them, with no state carried over.
    """
    out: list[tuple[list[int], list[int]]] = []
    if not tokens:
        return out
    first = min(max_len, len(tokens))
    out.append(([prefix_id] + tokens[:first - 1], tokens[:first]))
    done = first
    while done < len(tokens):
        n = min(len(tokens) - done, max_len)
        end = done + n
        out.append((tokens[max(0, end - max_len - 1):end - 1], tokens[end - n:end]))
        done = end
    return out


def rolling_bits_per_byte(logits_fn: LogitsFn, docs: list[bytes], seq_len: int, prefix_id: int = 256) -> float:
    """Bits per byte over `docs` with lm-eval's `loglikelihood_rolling` windowing (one token per byte)."""
    import torch

    nats, n_bytes = 0.0, 0
    with torch.inference_mode():
        for doc in docs:
            n_bytes += len(doc)
            for inp, tgt in rolling_windows(list(doc), prefix_id, seq_len):
                logits = torch.as_tensor(logits_fn(torch.tensor([inp], dtype=torch.long))).float()
                logp = torch.log_softmax(logits[0, -len(tgt):], dim=-1)
                nats -= logp.gather(-1, torch.tensor(tgt)[:, None]).sum().item()
    if n_bytes == 0:
        raise InputError("no bytes to score")
    return nats / math.log(2) / n_bytes


def torch_bits_per_byte(model: Any, data: bytes | ScoringText, seq_len: int, tables: Any = None,
                        include: Iterable[str] | None = None) -> float:
    """Native path: bits/byte of `data` with the mixer activations replaced by `tables` (as in
    `tables_applied`: function tables and/or per-site tables)."""
    with tables_applied(model, tables or {}, include):
        return windows_bits_per_byte(torch_logits_fn(model), data, seq_len)
