"""The null control: the baseline graph compiled a second time, timed against the run's compiled baseline.

Why: two compiles of one graph can time a few per cent apart (1.026× on Mamba-130M here), which no
single pairing's interval shows; a configuration must beat that floor to be recommended
(`pareto.null_noise`), and a per-site choice to keep a rewrite. It is timing, so it runs where the run's
reference is compiled (the timing node of a cluster).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._atomic import write_text
from . import latency
from .build import LoadedModel, rewritten_onnx, to_openvino
from .configs import Config
from .measure import RunState, reference
from .pareto import null_noise, null_usable
from .row import error_text
from .settings import Settings

NULL_ATTEMPTS = 3  # null-control timings before a run's latency is declared not usable


def null_control(lm: LoadedModel, configs: list[Config], settings: Settings, precision: str, state: RunState,
                 cache: Path, row_dir: Path) -> dict[str, Any] | None:
    """The baseline against itself compiled again ({"speedup", "halfwidth_rel", "pairs", "noise", ...}).

    A null control further from 1 than `pareto.NULL_MAX_NOISE` means the timing itself failed (another
    job took the cores): it is compiled and timed again with more pairs, up to NULL_ATTEMPTS times; if
    it stays wide, `usable` is false and the run recommends nothing. Remembered next to the rows, so a
    resumed run keeps its floor. A failure is returned as {"error": ...} and leaves the floor at 0.
    """
    memo = row_dir / f"null-control-{settings.key()}.json"
    try:
        return json.loads(memo.read_text())
    except (OSError, ValueError):
        pass
    attempts: list[dict[str, Any]] = []
    try:
        base_cfg = next(c for c in configs if c.is_baseline)
        ref = reference(lm, base_cfg, settings, precision, state, cache)
        m, _ = rewritten_onnx(lm, base_cfg, settings.seq_len, precision, cache, settings.prefill_logits)
        feed = latency.random_ids(settings.seq_len, lm.vocab_size)
        for k in range(NULL_ATTEMPTS):  # too wide: compile both afresh, time with more pairs, no time limit
            if k:  # the reference may be the odd compile: every row is timed against it, so replace it
                state.reference = None
                ref = reference(lm, base_cfg, settings, precision, state, cache)
            again, _ = latency.compile_model(to_openvino(m), settings.device, precision, settings.threads)
            paired = latency.time_paired_adaptive(
                again, ref, feed, settings.warmup, settings.repeats * (1 + 2 * k), settings.min_repeats * (1 + k),
                settings.rel_tol, settings.timing_seconds if k == 0 else None)
            del again
            got = {"speedup": 1.0 / paired.ratio_median, "halfwidth_rel": paired.ratio_halfwidth,
                   "pairs": paired.a.repeats}
            got["noise"] = null_noise(got)
            attempts.append(got)
            if null_usable(got):
                break
    except Exception as exc:  # the floor is an extra: the sweep goes on without it
        return {"error": error_text(exc)}
    out: dict[str, Any] = dict(attempts[-1])
    out["attempts"] = len(attempts)
    out["usable"] = null_usable(out)
    if len(attempts) > 1:
        out["earlier"] = attempts[:-1]
    write_text(memo, json.dumps(out))
    return out
