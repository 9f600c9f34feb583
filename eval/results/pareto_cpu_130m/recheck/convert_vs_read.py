"""Does reading ONNX with `Core.read_model` instead of `ov.convert_model` change a graph's speed?

    python convert_vs_read.py MODEL.onnx [MODEL.onnx ...]

For each all-positions export: slice to the last position, build the OpenVINO model both ways, compile
both (CPU f32, 1 thread) and time them paired (ABBA). Prints convert/read time ratio (1 = the same).
"""

import io
import os
import sys
import tempfile
import time

import onnx
import openvino as ov

from actiba.evaluate import latency
from actiba.models.export import last_logits_graph


def main(paths: list[str], vocab: int = 50288, seq_len: int = 256) -> None:
    for path in paths:
        m = last_logits_graph(onnx.load(path))
        with tempfile.TemporaryDirectory() as tmp:
            p = os.path.join(tmp, "m.onnx")
            onnx.save_model(m, p)
            t = time.perf_counter()
            converted = ov.convert_model(p)
            t_convert = time.perf_counter() - t
        t = time.perf_counter()
        read = ov.Core().read_model(io.BytesIO(m.SerializeToString()))
        t_read = time.perf_counter() - t
        a, b = (latency.compile_model(x, "CPU", "f32", 1)[0] for x in (converted, read))
        r = latency.time_paired_adaptive(a, b, latency.random_ids(seq_len, vocab), 1, 12, 6, 0.02, 60)
        print(f"{os.path.basename(path)}: convert {t_convert:.1f} s, read {t_read:.1f} s; convert/read time "
              f"ratio {r.ratio_median:.3f} ±{100 * r.ratio_halfwidth:.1f} % ({r.a.repeats} pairs); "
              f"median ms {r.a.median:.0f} / {r.b.median:.0f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
