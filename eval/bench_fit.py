"""Benchmark: actiba's fitter vs pwlf (`fitfast`), PyPI pwlfit (pruned knots) and uniform knots;
certified gaps for every registry function; discontinuous exactness; hardware constraints against
rounding the float table; speed of budgets, rms and large N (wall and CPU seconds, with the load).

    python eval/bench_fit.py [--out eval/results/bench_fit.md]

Same function, range [-8, 8] and segment count for every method; max-abs error measured the same
way for all (canonical evaluator on a 200 001-point grid plus every breakpoint); fitting time as wall
clock of the fit call. Ratios are computed from numbers measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's actiba, not the installed one
import actiba  # noqa: E402
from actiba.fitting.verify import dense_grid  # noqa: E402

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


def pwlfit_pruned(act, sigma: float, points: int):
    """PyPI pwlfit 0.2: it picks its own knots (pruned from a grid) for noisy data; noiseless samples
    with a nominal sigma make it choose fewer or more segments. Returns (table, seconds)."""
    from pwlfit.driver import PWLinearFitConfig, PWLinearFitter
    from pwlfit.grid import Grid

    x = np.linspace(LO, HI, points)
    cfg = PWLinearFitConfig()
    cfg.options.verbose = False
    t0 = time.perf_counter()
    fit = PWLinearFitter(Grid(x, ngrid=200), cfg)(act.f(x), np.full_like(x, 1 / sigma**2))
    dt = time.perf_counter() - t0
    return from_knots(np.asarray(fit.xknots, dtype=np.float64), np.asarray(fit.yknots, dtype=np.float64)), dt


def timed(fn, *a, **k):
    t0 = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t0


def timed_cpu(fn):
    """(result, wall s, CPU s): on a shared machine the CPU seconds are what the request costs."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _rounded(t: actiba.Table, qs: float | None, qc: float | None, pow2: tuple[int, int] | None) -> actiba.Table:
    """The float table with its slopes and intercepts rounded to the constraint (what users do today),
    each line turned about its segment's middle so the rounding costs as little as it can."""
    sl = t.slopes.copy()
    if qs is not None:
        sl = np.round(sl / qs) * qs
    if pow2 is not None:
        pool = np.array([0.0] + [sg * 2.0 ** e for e in range(pow2[0], pow2[1] + 1) for sg in (1, -1)])
        sl = pool[np.argmin(np.abs(pool[None, :] - sl[:, None]), axis=1)]
    # keep each line's value at its segment's middle, so rounding a slope does not tilt it about x = 0
    knots = np.concatenate(([LO], t.breakpoints, [HI]))
    mid = 0.5 * (knots[:-1] + knots[1:])
    ic = t.slopes * mid + t.intercepts - sl * mid
    ic = ic if qc is None else np.round(ic / qc) * qc
    return actiba.Table(t.breakpoints.copy(), sl, ic, continuous=False)


def constraints_rows() -> list[dict]:
    """SiLU 16 on [-8, 8] under each hardware constraint: error, stored bound, time, what is claimed,
    and the float table rounded to the same constraint as the baseline."""
    act = actiba.functions.get("silu")
    cases = [("free", {}), ("uniform", {"uniform": True}), ("monotone auto", {"monotone": "auto"}),
             ("slope grid 2^-6", {"slope_grid": 2 ** -6}),
             ("slope grid 2^-6, intercept grid 2^-10", {"slope_grid": 2 ** -6, "intercept_grid": 2 ** -10}),
             ("pow2 slopes 2^-8..2^2", {"pow2_slopes": (-8, 2)}),
             ("pow2 slopes 2^-8..2^2, intercept grid 2^-10", {"pow2_slopes": (-8, 2), "intercept_grid": 2 ** -10})]
    rows = []
    for continuous in (True, False):
        free = actiba.fit("silu", 16, range=(LO, HI), continuous=continuous)
        for label, kw in cases:
            try:
                t, wall, cpu = timed_cpu(lambda kw=kw, c=continuous: actiba.fit("silu", 16, range=(LO, HI),
                                                                                 continuous=c, **kw))
            except actiba.InputError as e:
                rows.append({"case": label, "continuous": continuous, "refused": str(e)})
                print(f"constraint {label} continuous={continuous}: refused: {e}", flush=True)
                continue
            err = max_err(t, act)
            rounded = None
            if any(k in kw for k in ("slope_grid", "intercept_grid", "pow2_slopes")):
                rounded = max_err(_rounded(free, kw.get("slope_grid"), kw.get("intercept_grid"),
                                           kw.get("pow2_slopes")), act)
            search = (t.error.get("constraints") or {}).get("search", "")
            claim = ("exact on the samples" if search.startswith("exact") else
                     "best on the searched lattice" if search else
                     "optimal values for the fixed knots" if "uniform" in kw else "local optimum (SLP)")
            if not kw:
                claim = "certified (tube)" if continuous else "exact on the samples"
            rows.append({"case": label, "continuous": continuous, "error": err,
                         "lower_bound": t.error.get("lower_bound"),
                         "bound_method": t.error.get("lower_bound_method"), "rounded_error": rounded,
                         "wall_s": wall, "cpu_s": cpu, "claim": claim})
            print(f"constraint {label} continuous={continuous}: {err:.4e} (rounded {rounded}) {wall:.2f}s", flush=True)
    return rows


def certified_gaps(names, segments) -> list[dict]:
    rows = []
    for name in names:
        act = actiba.functions.get(name)
        lo, hi = act.default_range
        for n in segments:
            t, s = timed(actiba.fit, name, n)
            xs = dense_grid(lo, hi, t.breakpoints, 400_001)
            err = float(np.max(np.abs(t(xs) - act.f(xs))))
            lb = t.error["lower_bound"]
            rows.append({"function": name, "N": n, "range": [lo, hi], "error": err, "lower_bound": lb,
                         "gap": err / lb - 1, "fit_s": s})
            print(f"gap {name:9s} N={n:3d} error {err:.5e} bound {lb:.5e} gap {100 * (err / lb - 1):.3f}% "
                  f"({s:.2f}s)", flush=True)
    return rows


def discontinuous_exactness() -> list[dict]:
    """Tables vs the sampled discontinuous optimum on 256 001 points (a bound for any table)."""
    from actiba.fitting.greedy import Greedy
    from actiba.fitting.init import estimate_error
    from actiba.fitting.problem import Problem

    rows = []
    for name, n, lo, hi in (("silu", 32, -8.0, 8.0), ("gelu", 16, -6.0, 6.0), ("tanh", 16, -4.0, 4.0)):
        act = actiba.functions.get(name)
        t, s = timed(actiba.fit, name, n, range=(lo, hi), continuous=False)
        xs = dense_grid(lo, hi, t.breakpoints, 400_001)
        err = float(np.max(np.abs(t(xs) - act.f(xs))))
        prob = Problem(act, lo, hi, n, False)
        g = Greedy(prob, points=256_001)
        g.solve(hint=estimate_error(prob), rtol=1e-7)
        rows.append({"function": name, "N": n, "range": [lo, hi], "error": err, "reference_bound": g.infeasible,
                     "above": err / g.infeasible - 1, "stored_bound": t.error["lower_bound"], "fit_s": s})
        print(f"disc {name} N={n}: {err:.6e} vs bound(256k) {g.infeasible:.6e}: "
              f"{100 * (err / g.infeasible - 1):.3f}% above", flush=True)
    return rows


def speed() -> list[dict]:
    from actiba.expr import compile_expr

    rows = []
    cases = [("silu --max-error 1e-5", lambda: actiba.fit("silu", max_error=1e-5)),
             ("silu --max-error 1e-6", lambda: actiba.fit("silu", max_error=1e-6)),
             ("silu --max-error 1e-7", lambda: actiba.fit("silu", max_error=1e-7)),
             ("silu --metric rms --segments 64", lambda: actiba.fit("silu", 64, metric="rms")),
             ("tanh --metric rms --segments 32", lambda: actiba.fit("tanh", 32, metric="rms")),
             ("silu --metric rms --weight exp(-x*x/8) --segments 64",
              lambda: actiba.fit("silu", 64, metric="rms", weight=compile_expr("exp(-x*x/8)"))),
             ("silu --segments 4096", lambda: actiba.fit("silu", 4096)),
             ("silu --segments 16", lambda: actiba.fit("silu", 16))]
    actiba.fit("silu", 8, metric="rms")  # scipy imported once, outside the timed requests that need it
    for label, fn in cases:
        t, s, cpu = timed_cpu(fn)
        rows.append({"case": label, "segments": t.segments, "max_abs": t.error["max_abs"], "rms": t.error["rms"],
                     "wall_s": s, "cpu_s": cpu, "report_s": t.report.seconds, "load": os.getloadavg()[0]})
        print(f"speed {label}: {t.segments} segments, {s:.2f}s wall, {cpu:.2f}s CPU (report {t.report.seconds:.2f}s)",
              flush=True)
    walls, cpus = [], []
    for _ in range(5):  # the CLI end to end, imports included
        t0, c0 = time.perf_counter(), _children_cpu()
        subprocess.run([sys.executable, "-m", "actiba", "fit", "silu", "--segments", "16", "-o", os.devnull],
                       check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import actiba.cli.fit_cmd, actiba.fitting"], check=True,
                   cwd=Path(__file__).resolve().parents[1])
    imp = time.perf_counter() - t0
    rows.append({"case": "CLI `python -m actiba fit silu --segments 16` (median of 5)", "segments": 16,
                 "wall_s": float(np.median(walls)), "cpu_s": float(np.median(cpus)), "report_s": None,
                 "import_s": imp, "load": os.getloadavg()[0]})
    print(f"speed CLI silu 16: median wall {np.median(walls):.2f}s, CPU {np.median(cpus):.2f}s, "
          f"imports alone {imp:.2f}s", flush=True)
    return rows


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        name = platform.processor() or "?"
    return (f"{name}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end of the run")


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def write_report(args, res: dict) -> None:
    cmd = "python eval/bench_fit.py " + " ".join(["--functions", *args.functions, "--segments",
                                                  *map(str, args.segments), "--pwlf-points", str(args.pwlf_points)])
    L = ["# Fitter benchmark", "", f"Command: `{cmd}`  ", f"Machine: {machine()}  ",
         f"Date: {time.strftime('%Y-%m-%d')}; numpy {np.__version__}; the machine was shared with other jobs, so "
         "absolute times are noisy (ratios are from this one run).", ""]
    rows = res.get("pwlf", [])
    if rows:
        L += ["## Against pwlf 2.7 (`fitfast`) and uniform knots, same N, range [-8, 8]", "",
              "Max-abs error on a 200 001-point grid plus every breakpoint; times are wall clock of the fit call "
              "(actiba: the whole call including its verification and certificate). Ratios: other ÷ actiba.", ""]
        L += _table(["function", "N", "actiba error", "actiba s", "certified ≥", "pwlf error", "pwlf s",
                     "pwlf error ratio", "pwlf time ratio", "uniform error", "uniform ratio"],
                    [[r["function"], str(r["N"]), f"{r['ours_err']:.3e}", f"{r['ours_s']:.3f}",
                      f"{r['lower_bound']:.3e}", f"{r['pwlf_err']:.3e}", f"{r['pwlf_s']:.2f}",
                      f"{r['pwlf_err_ratio']:.1f}×", f"{r['pwlf_time_ratio']:.1f}×", f"{r['uniform_err']:.3e}",
                      f"{r['uniform_err_ratio']:.1f}×"] for r in rows])
        L.append("")
    rows = res.get("pwlfit", [])
    if rows:
        L += ["## Against PyPI pwlfit 0.2 (pruned knots), at the segment count pwlfit chose", "",
              "pwlfit picks its own knots for noisy data; noiseless samples (2000 points) with a nominal sigma "
              "make it choose a count, and actiba is then asked for the same count.", ""]
        L += _table(["function", "sigma", "N (pwlfit's)", "pwlfit error", "pwlfit s", "actiba error", "actiba s",
                     "error ratio"],
                    [[r["function"], f"{r['sigma']:g}", str(r["N"]), f"{r['pwlfit_err']:.3e}", f"{r['pwlfit_s']:.2f}",
                      f"{r['ours_err']:.3e}", f"{r['ours_s']:.2f}", f"{r['pwlfit_err'] / r['ours_err']:.1f}×"]
                     for r in rows])
        L.append("")
    rows = res.get("gaps", [])
    if rows:
        L += ["## Certified gaps: every registry function, default range, free tails, continuous", "",
              "`certified ≥` is the table's `error.lower_bound` (minimum-link paths in the sampled tube widened by "
              "h²/8·max|f''| per strip, bisection on the half-width): no continuous table with that N and range "
              "does better. `gap` = error ÷ bound − 1, error re-measured on 400 001 points.", ""]
        L += _table(["function", "range", "N", "error", "certified ≥", "gap", "fit s"],
                    [[r["function"], f"[{r['range'][0]:g}, {r['range'][1]:g}]", str(r["N"]), f"{r['error']:.5e}",
                      f"{r['lower_bound']:.5e}", f"{100 * r['gap']:.3f} %", f"{r['fit_s']:.2f}"] for r in rows])
        worst = max(rows, key=lambda r: r["gap"])
        L += ["", f"Largest gap: {100 * worst['gap']:.3f} % ({worst['function']}, N = {worst['N']}).", ""]
    rows = res.get("disc", [])
    if rows:
        L += ["## Discontinuous max-abs vs the sampled optimum on 256 001 points", "",
              "The reference is the greedy farthest-reach optimum on 256 001 samples (a bound for every table; "
              "denser samples only raise it), so `above` over-states the distance to the true optimum.", ""]
        L += _table(["function", "range", "N", "error", "reference bound", "above", "stored bound", "fit s"],
                    [[r["function"], f"[{r['range'][0]:g}, {r['range'][1]:g}]", str(r["N"]), f"{r['error']:.6e}",
                      f"{r['reference_bound']:.6e}", f"{100 * r['above']:.3f} %", f"{r['stored_bound']:.6e}",
                      f"{r['fit_s']:.2f}"] for r in rows])
        L.append("")
    rows = res.get("constraints", [])
    if rows:
        L += ["## Hardware constraints: SiLU, 16 segments, [-8, 8]", "",
              "`error` re-measured on 200 001 points; `rounded` is the unconstrained table of the same continuity "
              "with its slopes/intercepts rounded to the constraint (breakpoints kept; a rounded continuous table "
              "is no longer continuous); `bound` is the stored `error.lower_bound` (for tables without the "
              "constraints unless the claim is 'exact', where it is for tables under them); `claim` is what the "
              "fitter can say about optimality.", ""]
        body = []
        for r in rows:
            kind = "continuous" if r["continuous"] else "discontinuous"
            if "refused" in r:
                body.append([r["case"], kind, "refused: " + r["refused"], "", "", "", "", ""])
                continue
            body.append([r["case"], kind, f"{r['error']:.4e}",
                         "—" if r["rounded_error"] is None else f"{r['rounded_error']:.4e}",
                         "—" if r["lower_bound"] is None else f"{r['lower_bound']:.4e}", r["claim"],
                         f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}"])
        L += _table(["constraint", "table", "error", "rounded", "bound", "claim", "wall s", "CPU s"], body)
        L.append("")
    rows = res.get("speed", [])
    if rows:
        L += ["## Speed", "", "`actiba.fit(...)` in process (budget searches include every count they fitted; "
              "`report s` is what the summary states), and the CLI end to end. Wall seconds depend on what else "
              "ran (load average at each request is given); CPU seconds are the request's own cost. scipy was "
              "already imported for the in-process rows; the CLI row includes every import.", ""]
        L += _table(["request", "segments", "wall s", "CPU s", "report s", "load"],
                    [[r["case"], str(r["segments"]), f"{r['wall_s']:.2f}", f"{r['cpu_s']:.2f}",
                      "—" if r.get("report_s") is None else f"{r['report_s']:.2f}", f"{r['load']:.1f}"]
                     for r in rows])
        imp = next((r["import_s"] for r in rows if "import_s" in r), None)
        if imp is not None:
            L += ["", f"Importing `actiba.cli.fit_cmd` and `actiba.fitting` (numpy only: scipy is imported by the "
                      f"requests that need it) took {imp:.2f} s in this run."]
        L.append("")
    Path(args.out).write_text("\n".join(L) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"command": cmd, "machine": machine(), **res},
                                                              indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="eval/results/bench_fit.md")
    ap.add_argument("--functions", nargs="+", default=["silu", "softplus", "gelu"])
    ap.add_argument("--segments", nargs="+", type=int, default=[8, 16, 32])
    ap.add_argument("--pwlf-points", type=int, default=1000, help="samples given to pwlf")
    ap.add_argument("--gap-functions", nargs="+",
                    default=["silu", "gelu", "gelu-tanh", "softplus", "sigmoid", "tanh", "exp"])
    ap.add_argument("--gap-segments", nargs="+", type=int, default=[4, 8, 16, 32, 64])
    args = ap.parse_args()
    res: dict = {"pwlf": [], "pwlfit": []}
    for name in args.functions:
        act = actiba.functions.get(name)
        for n in args.segments:
            t_o, s_o = ours(act, n)
            t_u, _ = uniform(act, n)
            t_p, s_p = pwlf_fitfast(act, n, args.pwlf_points)
            e_o, e_u, e_p = max_err(t_o, act), max_err(t_u, act), max_err(t_p, act)
            res["pwlf"].append({"function": name, "N": n, "ours_err": e_o, "ours_s": s_o,
                                "ours_fit_s": t_o.report.seconds, "pwlf_err": e_p, "pwlf_s": s_p,
                                "uniform_err": e_u, "pwlf_err_ratio": e_p / e_o, "uniform_err_ratio": e_u / e_o,
                                "pwlf_time_ratio": s_p / s_o, "lower_bound": t_o.report.lower_bound})
            print(f"{name:9s} N={n:3d}  ours {e_o:.3e} in {s_o:.3f}s | pwlf {e_p:.3e} in {s_p:.2f}s "
                  f"({e_p / e_o:.1f}x error, {s_p / s_o:.1f}x time) | uniform {e_u:.3e} ({e_u / e_o:.1f}x)", flush=True)
        for sigma in (1e-2, 1e-3):
            try:
                t_w, s_w = pwlfit_pruned(act, sigma, 2000)
            except ImportError:
                break
            t_o, s_o = ours(act, t_w.segments)
            e_w, e_o = max_err(t_w, act), max_err(t_o, act)
            res["pwlfit"].append({"function": name, "sigma": sigma, "N": t_w.segments, "pwlfit_err": e_w,
                                  "pwlfit_s": s_w, "ours_err": e_o, "ours_s": s_o})
            print(f"{name:9s} pwlfit sigma={sigma:g}: N={t_w.segments} {e_w:.3e} in {s_w:.2f}s | ours {e_o:.3e} "
                  f"in {s_o:.2f}s ({e_w / e_o:.1f}x)", flush=True)
        write_report(args, res)  # partial results survive an interrupted run
    res["gaps"] = certified_gaps(args.gap_functions, args.gap_segments)
    write_report(args, res)
    res["disc"] = discontinuous_exactness()
    write_report(args, res)
    res["constraints"] = constraints_rows()
    write_report(args, res)
    res["speed"] = speed()
    write_report(args, res)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
