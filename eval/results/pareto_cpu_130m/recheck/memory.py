"""Is the baseline slower in a process that holds many large graphs? (re-check of the in-sweep slow-down)

    python memory.py heavy|light CACHE_ONNX_DIR

`heavy` first loads the random Mamba-2-130M torch model and every export in CACHE_ONNX_DIR plus their
last-position slices (~10 GB resident), as a sweep process does; `light` does not. Then the baseline and
d1+d2 at chunk 64 are timed paired exactly as `pair.py` does.
"""

import glob
import io
import os
import resource
import sys

import onnx
import openvino as ov

from actiba.evaluate import latency
from actiba.evaluate.build import load_model
from actiba.models.export import last_logits_graph


def main(mode: str, cache: str) -> None:
    keep: list = []
    if mode == "heavy":
        keep.append(load_model("random:mamba2-130m"))
        for f in sorted(glob.glob(os.path.join(cache, "*.onnx"))):
            m = onnx.load(f)
            keep += [m, last_logits_graph(m)]
    names = ("24921b6b-d10-d20-L256.onnx", "24921b6b-d11-d21-Q64-L256.onnx")
    models = [ov.Core().read_model(io.BytesIO(last_logits_graph(onnx.load(os.path.join(cache, n))).SerializeToString()))
              for n in names]
    base, other = (latency.compile_model(m, "CPU", "f32", 1)[0] for m in models)
    r = latency.time_paired_adaptive(other, base, latency.random_ids(256, 50288), 1, 12, 6, 0.02, 60)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"{mode}: speed-up {1 / r.ratio_median:.3f} ±{100 * r.ratio_halfwidth:.1f} % ({r.a.repeats} pairs); "
          f"median ms {r.a.median:.0f} vs baseline {r.b.median:.0f}; max RSS {rss:.1f} GB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
