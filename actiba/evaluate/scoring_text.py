"""The text accuracy is scored on, as the model's own tokens: the one seam between text and scoring.

Why one object: the sweep, `actiba eval`, the emulated front and the Ray backend all score "the text"
in disjoint whole windows of `seq_len` tokens, each after a start token, and divide the summed nats by
the UTF-8 bytes those windows cover (bits/byte: comparable across tokenizers, as lm-eval's
`bits_per_byte` is). Before, "the text" was the held-out bytes and a token was a byte; a model with a
BPE tokenizer was scored on byte ids it never saw. `ScoringText` carries the token ids, the start id
(BOS, else EOS: `models.score_text_bits_per_byte`'s rule) and, per token, the UTF-8 bytes covered so
far, so a prefix of whole windows knows its byte count.

With the byte tokenizer (the embedded models, or a folder saved without a tokenizer) the ids are the
raw bytes and the start id is 256, exactly what `perplexity.window_nats` scored before, so every
committed result is unchanged (tests/test_scoring_text_sweep.py checks it bit for bit).

`--eval-bytes` keeps meaning bytes of text: the prefix is cut there (for a real tokenizer back to a
UTF-8 character boundary, so the text decodes) before tokenizing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

HELDOUT = "held-out split (Macbeth + The Tempest)"
BYTES = "bytes"  # the byte tokenizer's name in reports: id = byte, start id 256


@dataclass(frozen=True)
class ScoringText:
    """Token ids of a text, the start id, and the UTF-8 bytes covered through each token.

    `len()` and slicing from 0 (``text[:n]``) count tokens, so code that cut byte data to whole windows
    (`sweep.eval_data`) cuts tokens the same way; the cut keeps `byte_ends` aligned.
    """

    ids: tuple[int, ...]
    start_id: int
    byte_ends: tuple[int, ...]  # byte_ends[k]: UTF-8 bytes of the text covered by ids[:k + 1]
    source: str  # which text: HELDOUT or the file's path
    tokenizer: str  # BYTES or the tokenizer's name/class

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, cut: slice) -> ScoringText:
        if not isinstance(cut, slice) or cut.start not in (None, 0) or cut.step not in (None, 1):
            raise TypeError("a ScoringText is cut only as a prefix: text[:n_tokens]")
        return ScoringText(self.ids[cut], self.start_id, self.byte_ends[cut], self.source, self.tokenizer)

    @property
    def is_bytes(self) -> bool:
        return self.tokenizer == BYTES

    def n_windows(self, seq_len: int) -> int:
        return len(self.ids) // seq_len

    def n_bytes(self, seq_len: int) -> int:
        """UTF-8 bytes covered by the whole windows (what bits/byte divides by)."""
        n = self.n_windows(seq_len) * seq_len
        return self.byte_ends[n - 1] if n else 0

    def windows(self, seq_len: int) -> list[tuple[int, ...]]:
        """The whole disjoint windows' target ids, in order (the tail is dropped: fixed-length graphs)."""
        n = self.n_windows(seq_len)
        if n == 0:
            raise InputError(f"the text is {len(self.ids)} tokens ({self.byte_ends[-1] if self.ids else 0} "
                             f"bytes), shorter than one window of {seq_len} tokens")
        return [self.ids[i:i + seq_len] for i in range(0, n * seq_len, seq_len)]

    def token_key(self) -> str | None:
        """None for byte ids; else a hash of the tokens, for the cache key (`Settings.tokens`): rows scored
        on byte ids before this model's tokenizer was used, or with another tokenizer, are not reused."""
        if self.is_bytes:
            return None
        return hashlib.sha256(repr((self.tokenizer, self.start_id, self.ids)).encode()).hexdigest()[:12]

    def describe(self, seq_len: int) -> dict[str, Any]:
        """What a report says of the text: which, how many bytes and tokens scored, which tokenizer."""
        n = self.n_windows(seq_len)
        return {"text": self.source, "tokenizer": self.tokenizer, "bytes": self.n_bytes(seq_len),
                "tokens": n * seq_len, "windows": n}


def from_bytes(data: bytes, source: str = HELDOUT) -> ScoringText:
    """Byte-tokenizer text: id = byte, start id 256 (the convention of the embedded models)."""
    from ..models.tokenizer import EOS_ID

    return ScoringText(tuple(data), EOS_ID, tuple(range(1, len(data) + 1)), source, BYTES)


def utf8_prefix(data: bytes, n: int | None) -> bytes:
    """The first `n` bytes of `data`, cut back to a UTF-8 character boundary."""
    if n is None or n >= len(data):
        return data
    while n > 0 and (data[n] & 0xC0) == 0x80:  # data[n] continues a character begun before the cut
        n -= 1
    return data[:n]


def from_tokenizer(text: str, tokenizer: Any, source: str, name: str) -> ScoringText:
    """Text tokenized by a (fast) HF tokenizer, with each token's covered bytes from its offsets."""
    start = getattr(tokenizer, "bos_token_id", None)
    if start is None:
        start = getattr(tokenizer, "eos_token_id", None)
    if start is None:
        raise InputError(f"the tokenizer of {name} has neither a BOS nor an EOS token, so the first token of "
                         "each window has no context to be predicted from")
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise InputError(f"the tokenizer of {name} is not a fast tokenizer (no character offsets), so the "
                         "bytes each window covers are unknown") from None
    # a character's bytes count once its last byte's token is in: ends are cumulative maxima (byte-fallback
    # tokens of one character share its offsets)
    char_bytes = [0]
    for ch in text:
        char_bytes.append(char_bytes[-1] + len(ch.encode("utf-8")))
    ends, far = [], 0
    for _s, e in enc["offset_mapping"]:
        far = max(far, e)
        ends.append(char_bytes[far])
    return ScoringText(tuple(int(i) for i in enc["input_ids"]), int(start), tuple(ends), source, name)


def is_byte_tokenizer(tok: Any) -> bool:
    """True for `models.tokenizer.build_tokenizer()`'s vocabulary (ids 0..255 are bytes, start 256)."""
    from ..models.tokenizer import EOS_ID, VOCAB_SIZE

    if tok is None:
        return True
    try:
        probe = bytes(range(256)).decode("latin-1")
        ids = tok(probe, add_special_tokens=False)["input_ids"]
    except Exception:
        return False
    return len(tok) == VOCAB_SIZE and ids == [b for b in probe.encode("utf-8")] and tok.bos_token_id == EOS_ID


def read_text_file(path: str) -> bytes:
    """A local UTF-8 text file's bytes (one-line InputError when missing, unreadable or not UTF-8)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read --text {path}: {exc.strerror or exc}") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"--text {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not data:
        raise InputError(f"--text {path} is empty")
    return data


def file_sha256(path: str) -> str:
    """Content hash of a --text file: part of the row cache key, so an edited file is scored again."""
    return hashlib.sha256(read_text_file(path)).hexdigest()[:16]


def model_tokenizer(name: str) -> Any:
    """The tokenizer saved with model `name`, or None where there is none (random models, a folder saved
    without one): those are scored on byte ids, as before tokenizers were used."""
    if name.startswith("random:"):
        return None
    from ..models import tokenizer

    try:
        return tokenizer(name)
    except InputError:
        return None


def load(model_name: str, n_bytes: int | None, text_file: str | None = None, tok: Any = "auto",
         seq_len: int | None = None) -> ScoringText:
    """The scoring text of model `model_name`: the first `n_bytes` of the held-out split or of `text_file`
    (all of a shorter file), as the model's tokens (`tok` overrides the model's tokenizer; None: bytes).
    With `seq_len`, a text shorter than one window is refused here, before any graph is built."""
    from ..data import heldout_bytes

    if text_file:
        raw, source = read_text_file(text_file), str(text_file)
    else:
        heldout_bytes(n_bytes)  # the split's own refusal of a non-positive or too large --eval-bytes
        raw, source = heldout_bytes(None), HELDOUT
    tok = model_tokenizer(model_name) if isinstance(tok, str) and tok == "auto" else tok
    if is_byte_tokenizer(tok):  # the raw byte prefix, as scored before (no character-boundary cut needed)
        text = from_bytes(raw if n_bytes is None else raw[:n_bytes], source)
    else:
        name = getattr(tok, "name_or_path", "") or type(tok).__name__
        text = from_tokenizer(utf8_prefix(raw, n_bytes).decode("utf-8"), tok, source, str(name))
    if seq_len is not None:
        text.windows(seq_len)  # the one-line refusal of a text shorter than one window
    return text
