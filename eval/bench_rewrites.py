"""Latency of each rewrite per site shape in OpenVINO CPU: CumBA (axis −2 vs −1), ReduBA, SSD d1/d2.

    python eval/bench_rewrites.py [--quick] [--out eval/results/rewrites.md]

Every pair (original, rewritten) is timed in the same run, interleaved, on one inference thread (the
machine is shared) with INFERENCE_PRECISION_HINT=f32 set explicitly; bf16 is added only if the CPU
reports it in OPTIMIZATION_CAPABILITIES. Ratios are original/rewritten medians (>1: the rewrite is
faster). The SSD rewrites run on the Mamba-2-130M configuration (24 layers, d_model 768, 24 heads of
64, state 128, n_groups 1, chunk 256) with random weights, converted from torch with each variant
installed: 24 layers at 256 tokens and 6 layers at 1024 tokens (time budget); `--quick` uses 4 layers
and 256 tokens only.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actiba._atomic import write_text  # noqa: E402
from actiba.rewrite import openvino_rw  # noqa: E402


def cpu_name() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    names = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return names[0] if names else platform.processor() or "?"


def compile_(model, precision: str):
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                  "INFERENCE_NUM_THREADS": 1})


def time_pair(models: list, feeds: list, precision: str, runs: int) -> list[float]:
    """Median ms of each model, runs interleaved so background load hits all of them alike."""
    reqs = [compile_(m, precision).create_infer_request() for m in models]
    for r in reqs:
        for _ in range(2):
            r.infer(feeds)
    times: list[list[float]] = [[] for _ in reqs]
    for _ in range(runs):
        for i, r in enumerate(reqs):
            t0 = time.perf_counter()
            r.infer(feeds)
            times[i].append((time.perf_counter() - t0) * 1e3)
    return [float(np.median(t)) for t in times]


def outputs(model, feeds, precision: str) -> np.ndarray:
    c = compile_(model, precision)
    return np.asarray(c(feeds)[c.output(0)])


# --- micro benchmarks --------------------------------------------------------------------------------------------

def micro(kind: str, shape: list[int], axes: list[int], precision: str, runs: int) -> dict:
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter(shape, np.float32, name="x")
    if kind == "cumsum":
        y = ops.cumsum(x, ops.constant(np.int64(axes[0])))
        rw = "cumba"
    else:
        y = (ops.reduce_sum if kind == "reducesum" else ops.reduce_mean)(
            x, ops.constant(np.array(axes, np.int64)), True)
        rw = "reduba"
    base = ov.Model([ops.result(y)], [x])
    new, sites = openvino_rw.apply(base, [rw])
    assert sites[0].ok, sites[0].reason
    feeds = [np.random.default_rng(0).standard_normal(shape).astype(np.float32)]
    diff = float(np.abs(outputs(base, feeds, "f32") - outputs(new, feeds, "f32")).max())
    t0, t1 = time_pair([base, new], feeds, precision, runs)
    return {"op": kind, "shape": shape, "axes": axes, "precision": precision, "plan": sites[0].reason,
            "original_ms": t0, "rewritten_ms": t1, "speedup": t0 / t1, "max_abs_diff": diff}


# --- SSD on the Mamba-2-130M configuration -------------------------------------------------------------------------

def mamba2_130m(layers: int):
    import torch
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(0)
    cfg = Mamba2Config(vocab_size=50288, hidden_size=768, num_hidden_layers=layers, state_size=128,
                       head_dim=64, num_heads=24, expand=2, n_groups=1, chunk_size=256, conv_kernel=4)
    return Mamba2ForCausalLM(cfg).eval()


def convert(model, seq_len: int, d1: bool, d2: bool):
    import contextlib
    import io

    import openvino as ov
    import torch

    from actiba.models.export import LogitsOnly
    from actiba.rewrite.torch_ssd import ssd_rewrites

    ids = torch.randint(0, 50288, (1, seq_len), generator=torch.Generator().manual_seed(1))
    with ssd_rewrites(model, d1=d1, d2=d2), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
        return ov.convert_model(LogitsOnly(model), example_input=ids), ids.numpy()


def ssd(layers: int, seq_len: int, precision: str, runs: int) -> list[dict]:
    import torch

    model = mamba2_130m(layers)
    variants = {"hf": (False, False), "d1": (True, False), "d2": (False, True), "d1+d2": (True, True)}
    models, ids = {}, None
    for name, (d1, d2) in variants.items():
        t = time.perf_counter()
        models[name], ids = convert(model, seq_len, d1, d2)
        print(f"  converted {name} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
    cum, _ = openvino_rw.apply(models["hf"], ["cumba"],
                               sites=[s.name for s in openvino_rw.find_sites(models["hf"], "cumba") if s.axis == -2])
    models["hf+cumba(-2)"] = cum
    with torch.no_grad():
        ref = model(torch.from_numpy(ids), use_cache=False).logits.numpy()
    feeds = [ids]
    names = list(models)
    ms = time_pair([models[n] for n in names], feeds, precision, runs)
    base_out = outputs(models["hf"], feeds, "f32")
    rows = []
    for n, t in zip(names, ms, strict=True):
        out = base_out if n == "hf" else outputs(models[n], feeds, "f32")
        rows.append({"variant": n, "layers": layers, "seq_len": seq_len, "precision": precision, "median_ms": t,
                     "speedup": ms[0] / t, "max_logit_diff_vs_hf_ov": float(np.abs(out - base_out).max()),
                     "max_logit_diff_vs_torch": float(np.abs(out - ref).max()),
                     "ops": sum(openvino_rw.inventory(models[n]).values()),
                     "cumsum_ops": openvino_rw.inventory(models[n]).get("CumSum", 0)})
    return rows


def main() -> None:
    import openvino as ov

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, 4-layer model, 256 tokens")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "eval/results/rewrites.md"))
    args = ap.parse_args()
    runs = args.runs or (5 if args.quick else 15)
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precisions = ["f32"] + (["bf16"] if "BF16" in caps else [])
    t_start = time.time()

    micro_rows = []
    seqs = [256] if args.quick else [256, 1024]
    for prec in precisions:
        for seq in seqs:
            c = seq // 256
            for axis in (-2, -1):  # the SSD segment-sum block (…, T, T) at chunk 256
                micro_rows.append(micro("cumsum", [1, 24, c, 256, 256], [axis], prec, runs))
            micro_rows.append(micro("cumsum", [1, 24, c, 256], [-1], prec, runs))  # A_cumsum
            micro_rows.append(micro("reducemean", [1, seq, 768], [-1], prec, runs))  # RMSNorm
            micro_rows.append(micro("reducesum", [1, seq, 1536], [-1], prec, runs))
            micro_rows.append(micro("reducesum", [1, 24, seq, 64], [-2], prec, runs))
            print(f"micro {prec} {seq} done ({time.time() - t_start:.0f} s)", file=sys.stderr, flush=True)

    ssd_rows = []
    cases = [(4, 256)] if args.quick else [(24, 256), (6, 1024)]
    for prec in precisions:
        for layers, seq in cases:
            ssd_rows += ssd(layers, seq, prec, 3 if layers * seq > 4096 else 5)
            print(f"ssd {layers}x{seq} {prec} done ({time.time() - t_start:.0f} s)", file=sys.stderr, flush=True)

    meta = {"command": "python eval/bench_rewrites.py" + (" --quick" if args.quick else ""),
            "machine": f"{cpu_name()}, {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} "
                       "usable cores (shared with other jobs)",
            "openvino": ov.__version__, "optimization_capabilities": list(caps), "precisions": precisions,
            "threads": 1, "runs": runs, "seconds": round(time.time() - t_start)}
    out = Path(args.out)
    write_text(out.with_suffix(".json"), json.dumps({"meta": meta, "micro": micro_rows, "ssd": ssd_rows},
                                                    indent=2) + "\n")
    write_text(out, report(meta, micro_rows, ssd_rows))
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)


def report(meta: dict, micro_rows: list[dict], ssd_rows: list[dict]) -> str:
    lines = ["# Rewrite latency (OpenVINO CPU)", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}  ",
             f"OpenVINO {meta['openvino']}, CPU capabilities {', '.join(meta['optimization_capabilities'])}; "
             f"precision(s) {', '.join(meta['precisions'])} set with INFERENCE_PRECISION_HINT; one inference "
             f"thread; medians of {meta['runs']} interleaved runs; total {meta['seconds']} s.", "",
             "Speed-up = original median / rewritten median (> 1: the rewrite is faster). NPU figures are not "
             "claimed from these CPU runs.", "",
             "## Per-op rewrites", "",
             "| op | shape | axes | precision | plan | original ms | rewritten ms | speed-up | max abs diff |",
             "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in micro_rows:
        lines.append(f"| {r['op']} | {r['shape']} | {r['axes']} | {r['precision']} | {r['plan']} | "
                     f"{r['original_ms']:.3f} | {r['rewritten_ms']:.3f} | {r['speedup']:.2f} | "
                     f"{r['max_abs_diff']:.2g} |")
    lines += ["", "## SSD-aware rewrites on the Mamba-2-130M configuration (random weights)", "",
              "`hf`: HF's torch_forward as exported; `d1`: segment sum as the outer difference of the existing "
              "cumulative sum; `d2`: C·Bᵀ once per layer and the SSD einsums as MatMuls; `hf+cumba(-2)`: graph "
              "CumBA on the axis −2 CumSums of `hf`. Logit differences are OpenVINO f32.", "",
              "| variant | layers | tokens | precision | median ms | speed-up | max logit diff vs hf (OV) | "
              "vs torch | ops | CumSum ops |", "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in ssd_rows:
        lines.append(f"| {r['variant']} | {r['layers']} | {r['seq_len']} | {r['precision']} | "
                     f"{r['median_ms']:.1f} | {r['speedup']:.2f} | {r['max_logit_diff_vs_hf_ov']:.3g} | "
                     f"{r['max_logit_diff_vs_torch']:.3g} | {r['ops']} | {r['cumsum_ops']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
