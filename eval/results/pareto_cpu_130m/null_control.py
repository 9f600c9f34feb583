"""Control for the Mamba-130M rows: is a few-percent "speed-up" an artefact of re-compiling or of passing
the graph through `onnx_rw.apply`? Times the cached last-logits baseline of `mamba_256` against (a) itself
compiled again and (b) `onnx_rw.apply(base, ["cumba"], sites=[])` (no site rewritten), ABBA like the sweep.

    nice -n 5 python eval/results/pareto_cpu_130m/null_control.py   # after run.sh step 3
"""

from __future__ import annotations

from pathlib import Path

import onnx

from actiba.errors import InputError
from actiba.evaluate import latency
from actiba.evaluate.build import to_openvino
from actiba.rewrite import onnx_rw


def main() -> None:
    found = sorted((Path(__file__).parent / "mamba_256" / "cache" / "onnx").glob("*-logitslast.onnx"))
    if not found:
        raise InputError("no cached mamba_256 export: run step 3 of run.sh first")
    base = onnx.load(str(found[0]))
    null, sites = onnx_rw.apply(base, ["cumba"], sites=[])
    print("sites rewritten in the null rewrite:", sum(s.ok for s in sites))
    ref, _ = latency.compile_model(to_openvino(base), "CPU", "f32", 1)
    feed = latency.random_ids(256, 50280)
    for name, model in (("baseline compiled again", base), ("null rewrite (apply, no site)", null)):
        compiled, _ = latency.compile_model(to_openvino(model), "CPU", "f32", 1)
        p = latency.time_paired_adaptive(compiled, ref, feed, 1, 12, 10, 0.02, 200)
        print(f"{name}: speed-up {1 / p.ratio_median:.3f}x ±{100 * p.ratio_halfwidth:.1f}% ({p.a.repeats} pairs)")


if __name__ == "__main__":
    main()
