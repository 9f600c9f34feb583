"""Re-run the sweep's comparison (baseline against d1+d2 at chunk 64) with and without the null control.

    python sweep_rerun.py on|off ONNX_CACHE_DIR OUT_DIR

This uses `sweep.run_one`, as `actiba pareto` does, with the exports copied from ONNX_CACHE_DIR, so
nothing is exported again. `off` replaces the null control with nothing, to check whether it slows the
reference.
"""

import shutil
import sys
from pathlib import Path

from actiba.evaluate import sweep
from actiba.evaluate.build import load_model
from actiba.evaluate.configs import Config


def main(mode: str, onnx_cache: str, out_dir: str) -> None:
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    (out / "cache").mkdir(parents=True)
    shutil.copytree(onnx_cache, out / "cache" / "onnx")
    if mode == "off":
        sweep.null_control = lambda *a, **k: None
    lm = load_model("random:mamba2-130m")
    configs = [Config("baseline"), Config("q64", ssd_d1=True, ssd_d2=True, ssd_chunk=64)]
    s = sweep.Settings(seq_len=256, warmup=1, repeats=12, min_repeats=6, rel_tol=0.02, timing_seconds=60,
                       latency_only=True)
    run = sweep.run_one(lm, configs, s, "f32", out)
    base, q64 = run["configs"]
    print(f"{mode}: null control {run.get('null_control')}; baseline row {base.latency_ms.median:.0f} ms; "
          f"chunk 64 {q64.latency_ms.median:.0f} ms against {q64.baseline_latency_ms.median:.0f} ms, "
          f"speed-up {q64.speedup:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
