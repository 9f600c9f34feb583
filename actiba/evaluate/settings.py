"""How every configuration of a sweep is measured (`Settings`, part of every cache key) and the cache version.

Why its own module: the measuring phases (`measure`), the null control, the emulated front and the run
driver all read it, and the cache key must be computed the same way wherever a row is measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

CACHE_VERSION = 5  # 2: interleaved timing; 3: adaptive timing, decode, graph sha; 4: graphs read by
# OpenVINO's ONNX frontend (not convert_model), "last" graphs derived from the "all" export; 5: per-window
# nats (`metric_windows`) for the paired accuracy uncertainty


@dataclass
class Settings:
    """How every configuration is measured (part of the cache key)."""

    device: str = "CPU"
    seq_len: int = 256  # accuracy windows and the reported latency length
    eval_bytes: int = 32768  # held-out prefix scored (whole windows only)
    warmup: int = 3
    repeats: int = 20
    threads: int | None = 1
    latency_only: bool = False
    torch_metric: bool = False  # also score with torch + scoped tables (the approximation alone)
    extra_seq_lens: list[int] = field(default_factory=list)  # more prefill lengths (latency only)
    profile: bool = False  # per-op-type profile of every row (baseline is always profiled)
    rel_tol: float | None = None  # adaptive timing: stop once the paired ratio is known to ±rel_tol (~95 %)
    min_repeats: int = 6  # adaptive timing: at least this many pairs
    timing_seconds: float | None = None  # adaptive timing: stop (after min_repeats) once this much time is spent
    accuracy_seconds: float | None = None  # scoring budget per configuration (None: all of eval_bytes)
    min_eval_windows: int = 32  # never fewer windows than this, whatever the budget
    decode: bool = False  # also time one decode step (state in/out) per configuration
    decode_repeats: int = 60  # decode steps timed (pairs, at most); adaptive with rel_tol
    prefill_logits: str = "last"  # timed prefill output: "last" position only ([1, 1, V]) or "all" ([1, L, V])
    emulate: list[str] = field(default_factory=list)  # also score the front at these precisions, emulated
    text: str | None = None  # --text FILE scored instead of the held-out split (`scoring_text`)
    text_sha256: str | None = None  # its content hash: an edited file is a new cache key
    tokens: str | None = None  # a real tokenizer's token hash (`ScoringText.token_key`; None: byte ids)

    def key(self) -> str:
        d = asdict(self)
        d.pop("profile")
        d.pop("emulate")  # added after the rows, memoized on its own (`emulate_front`)
        if d["tokens"] is None:  # byte ids, as every row before tokenizers were used: the same key
            d.pop("tokens")
        if d["text"] is None:  # the held-out split, as before --text: the keys of existing caches stay valid
            d.pop("text")
            d.pop("text_sha256")
        else:
            d.pop("text")  # the content, not the path, says which text
        return hashlib.sha256(json.dumps([CACHE_VERSION, d], sort_keys=True).encode()).hexdigest()[:12]


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)
