"""Paired prefill timing of fixed-length ONNX exports against a baseline, alone in one process.

    python pair.py BASELINE.onnx REWRITTEN.onnx [REWRITTEN.onnx ...]

An all-positions graph gets the last-position slice (`last_logits_graph`), as the sweep times it; a
graph that already returns [1, 1, V] is used as it is. The input length is read from the graph. Each
graph is read with OpenVINO's ONNX frontend and compiled for CPU f32 with 1 thread. Each rewritten
graph is then timed against the baseline in alternating single inferences (ABBA), until the ratio is
known to ±2 % or 60 s pass. The script prints each rewritten graph's speed-up over the baseline.
"""

import io
import os
import sys

import onnx
import openvino as ov

from actiba.evaluate import latency
from actiba.models.export import last_logits_graph


def _load(path: str) -> tuple[object, int, int]:
    """(compiled graph, input length, vocabulary size)."""
    m = onnx.load(path)
    seq_len = m.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    out = m.graph.output[0].type.tensor_type.shape.dim
    if out[1].dim_value != 1:
        m = last_logits_graph(m)
    compiled = latency.compile_model(ov.Core().read_model(io.BytesIO(m.SerializeToString())), "CPU", "f32", 1)[0]
    return compiled, seq_len, out[2].dim_value


def main(base_path: str, *others: str) -> None:
    base, seq_len, vocab = _load(base_path)
    feed = latency.random_ids(seq_len, vocab)
    for path in others:
        other, n, _ = _load(path)
        if n != seq_len:
            raise SystemExit(f"{path}: length {n}, baseline {seq_len}")
        r = latency.time_paired_adaptive(other, base, feed, 1, 12, 6, 0.02, 60)
        print(f"{os.path.basename(path)} at {seq_len} tokens: speed-up {1 / r.ratio_median:.3f} "
              f"±{100 * r.ratio_halfwidth:.1f} % ({r.a.repeats} pairs); median ms {r.a.median:.0f} vs baseline "
              f"{r.b.median:.0f}", flush=True)
        del other


if __name__ == "__main__":
    main(*sys.argv[1:])
