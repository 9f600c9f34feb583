"""Benchmark: actiba's fitter vs pwlf (`fitfast`, least squares) vs uniform-knot interpolation.

    python eval/bench_fit.py [--out eval/results/bench_fit.md]

Same function, range [-8, 8] and segment count for every method; max-abs error measured the same
way for all (canonical evaluator on a 200 001-point grid plus every breakpoint); fitting time as wall
clock of the fit call. Ratios are computed from numbers measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

import actiba
from actiba.fitting.verify import dense_grid

LO, HI = -8.0, 8.0


def max_err(table: actiba.Table, act) -> float:
    xs = dense_grid(LO, HI, table.breakpoints, 200_001)
    return float(np.max(np.abs(table(xs) - act.f(xs))))


def from_knots(knots: np.ndarray, values: np.ndarray) -> actiba.Table:
    slopes = np.diff(values) / np.diff(knots)
    intercepts = values[:-1] - slopes * knots[:-1]
    return actiba.Table(knots[1:-1], slopes, intercepts)


def ours(act, n):
    t0 = time.perf_counter()
    t = actiba.fit(act, n, range=(LO, HI))
    return t, time.perf_counter() - t0


def uniform(act, n):
    t0 = time.perf_counter()
    k = np.linspace(LO, HI, n + 1)
    t = from_knots(k, act.f(k))
    return t, time.perf_counter() - t0


def pwlf_fitfast(act, n, points: int):
    import pwlf

    x = np.linspace(LO, HI, points)
    t0 = time.perf_counter()
    model = pwlf.PiecewiseLinFit(x, act.f(x), seed=0)
    breaks = model.fitfast(n, pop=2)
    dt = time.perf_counter() - t0
    breaks = np.asarray(breaks, dtype=np.float64)
    return from_knots(breaks, model.predict(breaks)), dt


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        name = platform.processor() or "?"
    import os

    return (f"{name}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def write_report(args, rows) -> None:
    cmd = "python eval/bench_fit.py " + " ".join(["--functions", *args.functions, "--segments",
                                                  *map(str, args.segments), "--pwlf-points", str(args.pwlf_points)])
    lines = ["# Fitter benchmark", "", f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
             f"Date: {time.strftime('%Y-%m-%d')}; numpy {np.__version__}", "",
             "Max-abs error on [-8, 8] (dense grid incl. breakpoints) and wall time of the fit call "
             "(actiba: whole call incl. its own dense-grid verification; `fit s`: the fitting alone). "
             "Ratios: other method ÷ actiba, from this run. `bound`: no table with N segments can do better "
             "(sampled exact discontinuous optimum).", "",
             "| function | N | actiba error | actiba s | fit s | bound | pwlf fitfast error | pwlf s | "
             "pwlf error ratio | "
             "pwlf time ratio | uniform-knot error | uniform error ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['function']} | {r['N']} | {r['ours_err']:.3e} | {r['ours_s']:.3f} | "
                     f"{r['ours_fit_s']:.3f} | "
                     f"{r['lower_bound']:.3e} | {r['pwlf_err']:.3e} | {r['pwlf_s']:.2f} | {r['pwlf_err_ratio']:.1f}× | "
                     f"{r['pwlf_time_ratio']:.0f}× | {r['uniform_err']:.3e} | {r['uniform_err_ratio']:.1f}× |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"command": cmd, "machine": machine(), "rows": rows},
                                                              indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="eval/results/bench_fit.md")
    ap.add_argument("--functions", nargs="+", default=["silu", "softplus", "gelu"])
    ap.add_argument("--segments", nargs="+", type=int, default=[8, 16, 32])
    ap.add_argument("--pwlf-points", type=int, default=1000, help="samples given to pwlf")
    args = ap.parse_args()
    rows = []
    for name in args.functions:
        act = actiba.functions.get(name)
        for n in args.segments:
            t_o, s_o = ours(act, n)
            t_u, s_u = uniform(act, n)
            t_p, s_p = pwlf_fitfast(act, n, args.pwlf_points)
            e_o, e_u, e_p = max_err(t_o, act), max_err(t_u, act), max_err(t_p, act)
            row = {"function": name, "N": n, "ours_err": e_o, "ours_s": s_o,
                   "ours_fit_s": t_o.report.seconds, "pwlf_err": e_p, "pwlf_s": s_p,
                   "uniform_err": e_u, "pwlf_err_ratio": e_p / e_o, "uniform_err_ratio": e_u / e_o,
                   "pwlf_time_ratio": s_p / s_o, "lower_bound": t_o.report.lower_bound}
            rows.append(row)
            print(f"{name:9s} N={n:3d}  ours {e_o:.3e} in {s_o:.3f}s ({t_o.report.seconds:.3f}s fitting) "
                  f"| pwlf {e_p:.3e} in {s_p:.2f}s "
                  f"({e_p / e_o:.1f}x error, {s_p / s_o:.0f}x time) | uniform {e_u:.3e} ({e_u / e_o:.1f}x)",
                  flush=True)
            write_report(args, rows)  # partial results survive an interrupted run
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
