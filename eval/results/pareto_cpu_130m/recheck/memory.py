"""Is the baseline slower in a process that holds many large graphs? (re-check of the in-sweep slow-down)

    python memory.py heavy|light CACHE_ONNX_DIR

`heavy` first loads the random Mamba-2-130M torch model and every export in CACHE_ONNX_DIR plus their
last-position slices (~10 GB resident), as a sweep process does; `light` does not. Then the baseline and
d1+d2 at chunk 64 are timed paired by `pair.py`.
"""

import glob
import os
import resource
import sys

import onnx
from pair import main as pair

from actiba.evaluate.build import load_model
from actiba.models.export import last_logits_graph


def main(mode: str, cache: str) -> None:
    keep: list = []
    if mode == "heavy":
        keep.append(load_model("random:mamba2-130m"))
        for f in sorted(glob.glob(os.path.join(cache, "*.onnx"))):
            m = onnx.load(f)
            keep += [m, last_logits_graph(m)]
    pair(os.path.join(cache, "24921b6b-d10-d20-L256.onnx"), os.path.join(cache, "24921b6b-d11-d21-Q64-L256.onnx"))
    print(f"{mode}: max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.1f} GB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
