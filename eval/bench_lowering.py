"""Lowerings vs the exact activation op in OpenVINO CPU (f32): where does each lowering win?

    python eval/bench_lowering.py [--quick] [--threads 1] [--rounds 15]
                                  [--out eval/results/bench_lowering.md]

For each function, element count and segment count N, every feasible lowering and the exact op(s)
(Softplus; Swish and x·Sigmoid for SiLU; Gelu; Sigmoid; Tanh; Exp) are compiled with
INFERENCE_PRECISION_HINT=f32 and timed round-robin (a fresh random order each round, so drift in
the shared machine's load hits all variants alike). A sample is the mean of enough back-to-back
inferences to last >= 5 ms; the figure is the median over rounds (half the rounds at 16 Mi); the
ratio is against the fastest exact op of the same function, measured in the same rounds. Tables
are interpolants on uniform knots (only their structure matters for speed: N, continuity,
convexity, flat tails). All variants share one input and one output tensor, so 16 Mi runs need
~130 MB, not one buffer per model.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actiba._atomic import write_text  # noqa: E402
from actiba.lower.plan import choose, feasible, make_plan  # noqa: E402
from actiba.table import Table  # noqa: E402

# function -> (numpy f, range, left slope, right slope or None = last chord's derivative)
FUNCS = {
    "silu": (lambda x: x / (1 + np.exp(-x)), (-8.0, 8.0), 0.0, 1.0),
    "softplus": (lambda x: np.logaddexp(0.0, x), (-8.0, 8.0), 0.0, 1.0),
    "gelu": (lambda x: 0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2))), (-5.0, 5.0), 0.0, 1.0),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), (-8.0, 8.0), 0.0, 0.0),
    "tanh": (np.tanh, (-4.0, 4.0), 0.0, 0.0),
    "exp": (np.exp, (-8.0, 2.0), 0.0, None),
}


def table_for(name: str, segments: int) -> Table:
    """Continuous interpolant with `segments` pieces: N-1 uniform knots plus the tails."""
    f, (lo, hi), left, right = FUNCS[name]
    k = np.linspace(lo, hi, segments - 1)
    v = f(k)
    chords = np.diff(v) / np.diff(k) if k.size > 1 else np.zeros(0)
    right = float(np.exp(hi)) if right is None else right
    s = np.r_[left, chords, right]
    c = np.r_[v[0] - left * k[0], v[:-1] - chords * k[:-1], v[-1] - right * k[-1]]
    return Table(k, s, c, function=name)


def exact_models(name: str, n: int):
    import openvino as ov
    import openvino.opset13 as ops

    def model(build) -> ov.Model:
        x = ops.parameter([n], ov.Type.f32, name="x")
        return ov.Model([ops.result(build(x))], [x])

    if name == "silu":
        return {"Swish": model(ops.swish), "x*Sigmoid": model(lambda x: ops.multiply(x, ops.sigmoid(x)))}
    return {{"softplus": "Softplus", "gelu": "Gelu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp"}[name]:
            model({"softplus": ops.softplus, "gelu": lambda x: ops.gelu(x, "erf"), "sigmoid": ops.sigmoid,
                   "tanh": ops.tanh, "exp": ops.exp}[name])}


def lowering_model(table: Table, lowering: str, n: int):
    from actiba.lower.openvino_lower import table_model

    return table_model(table, "f32", lowering, [n])


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return names[0] if names else platform.processor() or "?"


def bench_group(core, variants: dict[str, object], n: int, rounds: int, threads: int, seed: int
                ) -> dict[str, list[float]]:
    """Round-robin timing of compiled variants on one shared input/output; ms per inference samples."""
    import openvino as ov

    cfg = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    x = ov.Tensor(np.random.default_rng(seed).uniform(-10, 10, n).astype(np.float32))
    y = ov.Tensor(ov.Type.f32, [n])
    reqs = {}
    for key, model in variants.items():
        req = core.compile_model(model, "CPU", cfg).create_infer_request()
        req.set_input_tensor(x)
        req.set_output_tensor(y)
        for _ in range(3):
            req.infer()
        reqs[key] = req
    # calls per sample so one sample lasts >= 5 ms (decided on the first variant, then fixed)
    t0 = time.perf_counter()
    next(iter(reqs.values())).infer()
    reps = max(1, int(0.005 / max(time.perf_counter() - t0, 1e-6)))
    samples: dict[str, list[float]] = {k: [] for k in reqs}
    rng = random.Random(seed)
    keys = list(reqs)
    for _ in range(rounds):
        rng.shuffle(keys)
        for key in keys:
            req = reqs[key]
            t0 = time.perf_counter()
            for _ in range(reps):
                req.infer()
            samples[key].append((time.perf_counter() - t0) * 1e3 / reps)
    return samples


def main(argv: list[str] | None = None) -> None:
    import openvino as ov

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes, N and rounds (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="OpenVINO inference threads (machine is shared)")
    ap.add_argument("--functions", default=",".join(FUNCS))
    ap.add_argument("--out", default=str(ROOT / "eval/results/bench_lowering.md"))
    ap.add_argument("--render", metavar="JSON", help="only rewrite the report from a results JSON, "
                    "re-marking what the current `choose` picks (no measuring)")
    args = ap.parse_args(argv)
    if args.render:
        return render(Path(args.render), Path(args.out))
    sizes = [1 << 16, 1 << 20] if args.quick else [1 << 16, 1 << 20, 1 << 24]
    segs = [4, 16] if args.quick else [4, 8, 16, 32]
    rounds = args.rounds or (5 if args.quick else 15)
    funcs = args.functions.split(",")

    core = ov.Core()
    rows = []
    start = time.time()
    for n in sizes:
        for name in funcs:
            variants: dict[str, object] = {("exact", op, 0): m for op, m in exact_models(name, n).items()}
            tables = {N: table_for(name, N) for N in segs}
            for N, t in tables.items():
                for low in feasible(t):
                    variants[("lowering", low, N)] = lowering_model(t, low, n)
            r = rounds if n < 1 << 24 else max(5, rounds // 2)  # 16 Mi: fewer rounds, each ~0.1-1 s
            samples = bench_group(core, variants, n, r, args.threads, seed=n + len(name))
            med = {k: float(np.median(v)) for k, v in samples.items()}
            exact = {k[1]: med[k] for k in med if k[0] == "exact"}
            best_exact = min(exact.values())
            for (kind, what, N), v in samples.items():
                row = {"function": name, "elements": n, "kind": kind, "variant": what, "segments": N or None,
                       "median_ms": med[(kind, what, N)], "p10_ms": float(np.percentile(v, 10)),
                       "p90_ms": float(np.percentile(v, 90)),
                       "speedup_vs_exact": {op: e / med[(kind, what, N)] for op, e in exact.items()},
                       "speedup_vs_fastest_exact": best_exact / med[(kind, what, N)]}
                if kind == "lowering":
                    t = tables[N]
                    row["nodes"] = len(make_plan(t, what).ops)
                    row["auto"] = choose(t, n) == what
                rows.append(row)
            print(f"[{time.time() - start:6.1f}s] {name:8s} n={n:>9d} exact "
                  + ", ".join(f"{k}={v:.3f}ms" for k, v in exact.items()), file=sys.stderr)
    meta = {
        "command": "python eval/bench_lowering.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                                      if (argv if argv is not None else sys.argv[1:]) else ""),
        "machine": {"cpu": cpu_name(), "logical_cores": __import__("os").cpu_count(),
                    "python": platform.python_version()},
        "openvino": ov.__version__, "device": "CPU", "precision": "f32 (INFERENCE_PRECISION_HINT)",
        "threads": args.threads, "rounds": rounds, "seconds": round(time.time() - start, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out = Path(args.out)
    write_text(out.with_suffix(".json"), json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    write_text(out, report(meta, rows, sizes, segs, funcs))
    print(f"wrote {out} and {out.with_suffix('.json')} in {meta['seconds']} s", file=sys.stderr)


def render(src: Path, out: Path) -> None:
    """Rewrite the markdown (and the `auto` flags in the JSON) from stored measurements."""
    data = json.loads(src.read_text())
    rows = data.pop("rows")
    data["rendered_with"] = f"python eval/bench_lowering.py --render {src}"
    for r in rows:
        if r["kind"] == "lowering":
            r["auto"] = choose(table_for(r["function"], r["segments"]), r["elements"]) == r["variant"]
    sizes = sorted({r["elements"] for r in rows})
    segs = sorted({r["segments"] for r in rows if r["segments"]})
    funcs = list(dict.fromkeys(r["function"] for r in rows))
    write_text(out.with_suffix(".json"), json.dumps({**data, "rows": rows}, indent=1) + "\n")
    write_text(out, report(data, rows, sizes, segs, funcs))
    print(f"re-rendered {out} from {src}", file=sys.stderr)


def report(meta: dict, rows: list[dict], sizes: list[int], segs: list[int], funcs: list[str]) -> str:
    lows = ["relu-sum", "select", "where", "minmax"]
    lines = [
        "# Lowerings vs exact ops — OpenVINO CPU, f32",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['logical_cores']} logical cores (shared, "
        f"a training job running alongside); OpenVINO {meta['openvino']}; precision {meta['precision']}; "
        f"{meta['threads']} inference thread(s); {meta['rounds']} interleaved rounds; run took "
        f"{meta['seconds']} s on {meta['date']}."
        + (f" The `*` marks were re-rendered from the stored measurements by `{meta['rendered_with']}`."
           if meta.get("rendered_with") else ""),
        "",
        "Cells: speed-up over the fastest exact op of the same function, measured in the same rounds "
        "(> 1 = the lowering is faster); **bold** = fastest lowering of the row, `*` = what "
        "`actiba.lower.choose` picks. Exact-op times are medians in ms.",
        "",
    ]
    for n in sizes:
        lines += [f"## {n // 1024} Ki elements" if n < 1 << 20 else f"## {n >> 20} Mi elements", "",
                  "| function | exact op(s), ms | N | " + " | ".join(lows) + " |",
                  "|---|---|---|" + "---|" * len(lows)]
        for name in funcs:
            sel = [r for r in rows if r["function"] == name and r["elements"] == n]
            ex = ", ".join(f"{r['variant']} {r['median_ms']:.3f}" for r in sel if r["kind"] == "exact")
            for N in segs:
                cells = {r["variant"]: r for r in sel if r["kind"] == "lowering" and r["segments"] == N}
                best = max(cells, key=lambda k: cells[k]["speedup_vs_fastest_exact"])
                out = []
                for low in lows:
                    if low not in cells:
                        out.append("—")
                        continue
                    txt = f"{cells[low]['speedup_vs_fastest_exact']:.2f}×" + ("*" if cells[low].get("auto") else "")
                    out.append(f"**{txt}**" if low == best else txt)
                lines.append(f"| {name} | {ex if N == segs[0] else ''} | {N} | " + " | ".join(out) + " |")
        lines.append("")
    lines += ["## Where each lowering wins", ""]
    for n in sizes:
        lab = f"{n // 1024} Ki" if n < 1 << 20 else f"{n >> 20} Mi"
        wins: dict[str, int] = {}
        auto_ok = auto_all = 0
        wins_auto: list[str] = []
        for name in funcs:
            for N in segs:
                cells = {r["variant"]: r for r in rows if r["function"] == name and r["elements"] == n
                         and r["kind"] == "lowering" and r["segments"] == N}
                best = max(cells, key=lambda k: cells[k]["speedup_vs_fastest_exact"])
                wins[best] = wins.get(best, 0) + 1
                auto = [r for r in cells.values() if r.get("auto")]
                auto_all += 1
                if auto and auto[0]["speedup_vs_fastest_exact"] >= 1.0:
                    auto_ok += 1
                    wins_auto.append(f"{name} N={N}")
        lines.append(f"- {lab}: fastest lowering in "
                     + ", ".join(f"{v} rows: {k}" for k, v in sorted(wins.items(), key=lambda kv: -kv[1]))
                     + f"; the automatic choice is at least as fast as the exact op in {auto_ok}/{auto_all} "
                     + "rows: " + ", ".join(wins_auto) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
