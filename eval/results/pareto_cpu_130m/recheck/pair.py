"""Paired prefill timing of two fixed-length all-positions ONNX exports, alone in one process.

    python pair.py BASELINE.onnx REWRITTEN.onnx

Both graphs get the last-position slice (`last_logits_graph`, as the sweep times them), are read with
OpenVINO's ONNX frontend and compiled for CPU f32 with 1 thread, then timed in alternating single
inferences (ABBA) until the ratio is known to ±2 % or 60 s pass. Prints REWRITTEN's speed-up over BASELINE.
"""

import io
import sys

import onnx
import openvino as ov

from actiba.evaluate import latency
from actiba.models.export import last_logits_graph


def main(base_path: str, other_path: str, vocab: int = 50288, seq_len: int = 256) -> None:
    models = [ov.Core().read_model(io.BytesIO(last_logits_graph(onnx.load(p)).SerializeToString()))
              for p in (base_path, other_path)]
    base, other = (latency.compile_model(m, "CPU", "f32", 1)[0] for m in models)
    r = latency.time_paired_adaptive(other, base, latency.random_ids(seq_len, vocab), 1, 12, 6, 0.02, 60)
    print(f"speed-up {1 / r.ratio_median:.3f} ±{100 * r.ratio_halfwidth:.1f} % ({r.a.repeats} pairs); "
          f"median ms {r.a.median:.0f} vs baseline {r.b.median:.0f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
