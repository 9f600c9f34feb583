"""Hardware targets: constrained fit vs naive rounding, max-abs error over each target's whole integer grid.

    python eval/bench_targets.py [--out eval/results/targets.md]

Naive baselines: npu-ppe = the project's best 8-segment float fit with slopes rounded to the nearest
power of two, boundaries and biases to integers; tflite-int16 = TFLite's own `gen_lut`; ethosu-int16 =
Vela's conversion of `gen_lut`; int8-lut = round-to-nearest per entry (already optimal).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from actiba import functions, targets  # noqa: E402

FUNCS = [("silu", -8.0, 8.0), ("softplus", -8.0, 8.0), ("gelu", -8.0, 8.0), ("sigmoid", -8.0, 8.0),
         ("tanh", -4.0, 4.0), ("exp", -16.0, 0.0)]
RUNS = [("npu-ppe", {}, "8 segments, int8 out"), ("npu-ppe", {"monotone": "auto"}, "same, monotone=auto"),
        ("tflite-int16", {}, "int16 out"),
        ("tflite-int16", {"mode": "tosa"}, "TOSA int32 out"), ("ethosu-int16", {}, "nearest, vela words"),
        ("int8-lut", {}, "int8 in/out")]


def lsb(name: str, t) -> float:
    c = t.target
    if name == "npu-ppe" or name == "int8-lut":
        return c["output_scale"]
    s = (c["output_max"] - c["output_min"]) / 65536
    return s / 128 if c.get("mode") == "tosa" else s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "targets.md"))
    args = ap.parse_args()
    rows = []
    for fn, lo, hi in FUNCS:
        act = functions.get(fn)
        for name, params, note in RUNS:
            T = targets.get(name)
            t0 = time.perf_counter()
            fit = T.fit(act, 8, lo, hi, "asymptote", params)
            dt = time.perf_counter() - t0
            naive = T.naive(act, 8, lo, hi, "asymptote", params)
            # re-measure both through the public API (simulator over the whole grid)
            ef = T.error(T.check(fit), act)["max_abs"]
            en = T.error(T.check(naive), act)["max_abs"]
            step = lsb(name, fit)
            rows.append((fn, f"[{lo:g}, {hi:g}]", name, note, en, ef, en / step, ef / step, dt,
                         fit.error["points"]))
            print(f"{fn:9s} {name:13s} {note:20s} naive {en:.4g} ({en / step:.3f} LSB)  fit {ef:.4g} "
                  f"({ef / step:.3f} LSB)  {dt:.2f}s", flush=True)
    lines = [
        "# Hardware targets: constrained fit vs naive rounding",
        "",
        "Max-abs error of the dequantized **simulator** output against f(dequantized input), over every "
        "integer input of the target (npu-ppe: 8192 13-bit codes; int16 LUTs: 65536; int8-lut: 256). "
        "Default parameters: input quantization maps the range onto the input type, output quantization "
        "covers f's range on the grid (LUT16: symmetric ±max|f|). LSB = one output step.",
        "",
        "Naive: npu-ppe = the project's 8-segment float fit (`actiba.fitting.fit`, tails asymptote) with "
        "slopes rounded to ±2^k, boundaries and biases rounded; tflite-int16 = TFLite `gen_lut`; "
        "ethosu-int16 = Vela's conversion of `gen_lut`; int8-lut = per-entry rounding (optimal, so equal).",
        "",
        "Command: `python eval/bench_targets.py` "
        f"(machine: {platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}, "
        f"numpy {np.__version__}; fit time is wall-clock of `targets.get(name).fit(...)` on a shared "
        "2-core machine).",
        "",
        "| function | range | target | variant | naive max-abs | fit max-abs | naive LSB | fit LSB | "
        "fit time (s) | grid points |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.4g} | {r[5]:.4g} | {r[6]:.3f} | "
                     f"{r[7]:.3f} | {r[8]:.2f} | {r[9]} |")
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
