"""Calibrated vs uniform-range activation tables on the embedded models (torch path, scoped tables).

For each model and N: bits/byte on a fixed held-out prefix with the mixers' SiLU and Softplus replaced by
  uniform      `tables.fitted_table` (asymptote tails on the function's default range, one per function)
  shared-*     one table per function fitted to the pooled train-split statistics of all its sites
  per-site-*   one table per site fitted to that site's statistics
with `range` (max-abs on the p0.1..p99.9 bulk) or `density` (rms weighted by the histogram) weighting.
Statistics come from the TRAIN split (`tables.calibration_data`); the metric from the held-out prefix.

    nice -n 10 python eval/calibration_study.py -o eval/results/calibration.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

MODELS = ("embedded:mamba2", "embedded:mamba")
VARIANTS = (("uniform", None, None), ("shared-range", "shared", "range"), ("shared-density", "shared", "density"),
            ("per-site-range", "per-site", "range"), ("per-site-density", "per-site", "density"))


def tables(lm: Any, n: int, mode: str | None, weighting: str | None) -> dict[str, Any]:
    from actiba.activations import SWEEP_NAMES
    from actiba.evaluate.tables import calibrated_set, fitted_table

    out: dict[str, Any] = {}
    for fn in SWEEP_NAMES:
        if mode is None:
            out[fn] = fitted_table(fn, n)
        else:
            out.update(calibrated_set(lm, fn, n, mode, weighting).tables)
    return out


def machine() -> str:
    from actiba.evaluate.report import cpu_name

    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    return f"`{uname}`; CPU: {cpu_name()}"


def bits_per_byte(model: Any, data: bytes, seq_len: int, tabs: dict[str, Any] | None, batch: int) -> float:
    """`perplexity.torch_bits_per_byte` with the windows batched (the same windows and sum, ~3x faster on
    Mamba v1, whose scan steps token by token); a set key that matches no call is an error, not a warning."""
    from actiba.evaluate.perplexity import tables_applied
    from actiba.models import score_bits_per_byte

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="actiba: table set key")
        with tables_applied(model, tabs or {}):
            return score_bits_per_byte(model, data, seq_len, batch_size=batch)


def run(models: tuple[str, ...], segments: tuple[int, ...], n_bytes: int, seq_len: int,
        batch: int) -> dict[str, Any]:
    import torch

    from actiba.evaluate.build import load_model
    from actiba.evaluate.perplexity import heldout
    from actiba.evaluate.tables import calibration_stats

    torch.set_num_threads(1)
    data = heldout(n_bytes)
    data = data[:len(data) - len(data) % seq_len]  # whole windows only, as the sweep scores
    result: dict[str, Any] = {}
    for name in models:
        lm = load_model(name)
        t0 = time.perf_counter()
        stats = calibration_stats(lm)
        t_cal = time.perf_counter() - t0
        exact = bits_per_byte(lm.model, data, seq_len, None, batch)
        rows = []
        for n in segments:
            for label, mode, weighting in VARIANTS:
                t = time.perf_counter()
                tabs = tables(lm, n, mode, weighting)
                t_fit = time.perf_counter() - t
                bpb = bits_per_byte(lm.model, data, seq_len, tabs, batch)
                rows.append({"segments": n, "variant": label, "tables": len(tabs), "bits_per_byte": bpb,
                             "loss_rel": (bpb - exact) / exact, "fit_s": round(t_fit, 1),
                             "eval_s": round(time.perf_counter() - t - t_fit, 1)})
                print(f"{name} N={n:2d} {label:16s} {bpb:.5f} ({rows[-1]['loss_rel']:+.3%})", file=sys.stderr)
        result[name] = {"exact": exact, "rows": rows, "sites": sorted(stats.sites), "calibration_s": round(t_cal, 1),
                        "calibration_data": stats.data}
    return result


def markdown(res: dict[str, Any], argv: list[str], n_bytes: int, seq_len: int, seconds: float) -> str:
    from actiba.evaluate.tables import CALIB_BYTES, CALIB_CHUNKS, CALIB_SEQ_LEN, DEFAULT_PERCENTILES

    lo, hi = DEFAULT_PERCENTILES
    lines = ["# Calibrated activation tables vs uniform-range tables", "",
             f"Command: `nice -n 10 python eval/calibration_study.py {' '.join(argv)}`  ",
             f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
             f"run time {seconds / 60:.1f} min  ",
             f"Machine: {machine()}; torch CPU, 1 thread, float32; shared with other jobs (times are not "
             "benchmarks).", "",
             f"Metric: bits/byte (torch, scoped tables in `backbone.layers.*.mixer`, SiLU and Softplus) on the "
             f"first {n_bytes} bytes of the held-out split, windows of {seq_len}. Loss = relative increase over "
             "the exact model. Calibration statistics: TRAIN split, "
             f"{CALIB_CHUNKS} evenly spaced pieces, {CALIB_BYTES} bytes, windows of "
             f"{CALIB_SEQ_LEN}; percentiles {lo}..{hi}.",
             "uniform = `tables.fitted_table` (asymptote tails on the function's default range); shared = one "
             "table per function on the pooled statistics; per-site = one table per site; range = max-abs on "
             "the percentile range, density = rms weighted by the activation histogram.", ""]
    for name, r in res.items():
        lines += [f"## {name}", "", f"Exact: {r['exact']:.5f} bits/byte. Sites: {len(r['sites'])} "
                  f"({', '.join(r['sites'][:3])}, ...). Calibration took {r['calibration_s']} s.", "",
                  "| N | " + " | ".join(v[0] for v in VARIANTS) + " |",
                  "|---:|" + "---:|" * len(VARIANTS)]
        for n in sorted({row["segments"] for row in r["rows"]}):
            cells = []
            by = {row["variant"]: row for row in r["rows"] if row["segments"] == n}
            for v in VARIANTS:
                row = by.get(v[0])
                cells.append("" if row is None else f"{row['loss_rel']:+.2%} ({row['bits_per_byte']:.4f})")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Reading", "", "READING_PLACEHOLDER", "",
              "Raw numbers: `eval/results/calibration.json`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--segments", nargs="+", type=int, default=[4, 8, 16])
    ap.add_argument("--bytes", type=int, default=16384, help="held-out prefix scored")
    ap.add_argument("--batch", type=int, default=64, help="windows scored together")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("-o", "--output", default="eval/results/calibration.md")
    args = ap.parse_args(argv)
    from actiba._atomic import write_text

    t0 = time.perf_counter()
    res = run(tuple(args.models), tuple(args.segments), args.bytes, args.seq_len, args.batch)
    out = Path(args.output)
    write_text(out.with_suffix(".json"), json.dumps(res, indent=1) + "\n")
    write_text(out, markdown(res, argv, args.bytes, args.seq_len, time.perf_counter() - t0))
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
