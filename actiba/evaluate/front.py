"""The Pareto front scored again at emulated precisions (bf16, f16): accuracy only, after the rows.

Why: a device that runs bf16/f16 changes every configuration's accuracy, and this CPU cannot show it
(OpenVINO here runs f32 only). `evaluate.emulate` rounds every float tensor of the all-positions graph to
that precision (onnxruntime), so the front's accuracy can be read at the precision an NPU would run;
latency is not emulated. Only the baseline and the EMULATED_FRONT fastest Pareto graphs, because that is
what a user picks from and each emulated graph costs ~5-15 s here. Deltas are against the f32-graph
baseline metric, so they include what the precision itself costs. Memoized by scoring-graph hash next to
the rows.
"""

from __future__ import annotations

import json
from pathlib import Path

from .._atomic import write_text
from .build import LoadedModel, rewritten_onnx
from .configs import Config
from .row import Row, error_text
from .settings import Settings
from .sites import config_of

EMULATED_FRONT = 3  # Pareto graphs scored at each emulated precision (the fastest ones), besides the baseline


def emulation_targets(rows: list[Row], base: Row) -> list[Row]:
    """The baseline and the rows of the EMULATED_FRONT fastest distinct Pareto scoring graphs (rows that
    share a graph share its number)."""
    front = [r for r in rows if r.pareto and r is not base and r.ok and r.metric is not None
             and r.speedup is not None]
    front.sort(key=lambda r: -r.speedup)
    shas: list[str | None] = []
    for r in front:
        sha = r.scoring_sha
        if sha not in shas and len(shas) < EMULATED_FRONT:
            shas.append(sha)
    return [base] + [r for r in front if r.scoring_sha in shas]


def emulate_front(lm: LoadedModel, configs: list[Config], rows: list[Row], settings: Settings,
                  precision: str, data: bytes, cache: Path, row_dir: Path, base: Row) -> None:
    """Score the baseline and the fastest Pareto rows again at each `settings.emulate` precision, emulated."""
    import os

    from .emulate import bits_per_byte_onnx, emulate_precision

    by_name = {c.name: c for c in configs}
    for row in emulation_targets(rows, base):
        sha = row.scoring_sha
        got, errors = {}, {}
        for p in settings.emulate:
            memo = row_dir / f"emulated-{p}-{sha}-{settings.key()}.json"
            try:
                got[p] = float(json.loads(memo.read_text())["metric"])
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
            try:
                config = config_of(row, by_name[row.name])
                model, _ = rewritten_onnx(lm, config, settings.seq_len, precision, cache, "all")
                value = bits_per_byte_onnx(emulate_precision(model, p), data, settings.seq_len,
                                           threads=os.cpu_count() or 1)
            except Exception as exc:  # an extra: the row stands without it
                errors[p] = error_text(exc)
                continue
            got[p] = value
            write_text(memo, json.dumps({"metric": value, "graph_sha": sha}))
        if got:
            row.metric_emulated = got
            row.metric_emulated_delta_rel = {p: (v - base.metric) / base.metric for p, v in got.items()}
        if errors:
            row.emulate_error = errors

