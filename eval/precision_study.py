"""Accuracy at the precision that runs (issue 5) and what SSD d1 does to a bf16 run (issue 4): emulated,
and native where the CPU has bf16.

Each graph is run by onnxruntime three ways: as exported (f32), and with every float tensor rounded to
bf16 or f16 after each op (`actiba.evaluate.emulate`: compute in f32, store in the narrow format). Where
OpenVINO's CPU plugin offers bf16 (AVX512-BF16 / AMX CPUs: OPTIMIZATION_CAPABILITIES has BF16), the
same graph is also run natively by OpenVINO at f32 and at bf16 (INFERENCE_PRECISION_HINT set
explicitly), so the emulation can be checked against what a bf16 device actually computes. Graphs: the
embedded Mamba-2 exported at a fixed length, plus the graph-level SSD rewrites d1, d2 and d1+d2 applied
with precision="f32" (so d1 is not refused — the point is to see what it does at bf16); the embedded
Mamba (default stepped scan). Every row is compared with the f32 baseline graph on the same windows:
held-out bits/byte, its relative change, top-1 agreement, max |logit diff|. Optionally random-weight
Mamba-2-130M (f32 vs bf16, emulated and native, a few windows).

    nice -n 10 python eval/precision_study.py -o eval/results/precision.md
"""

from __future__ import annotations

import argparse
import datetime
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# (label, emulated precision or None, op types kept in f32); "norms in f32" keeps RMSNorm's x² and its mean
PRECISIONS = (("f32", None, ()), ("bf16 emulated", "bf16", ()), ("f16 emulated", "f16", ()),
              ("f16 emulated, norms f32", "f16", ("Pow", "ReduceMean")))
SSD_GRAPHS = (("d1", ["ssd-d1"]), ("d2", ["ssd-d2"]), ("d1+d2", ["ssd-d1", "ssd-d2"]))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    import importlib.metadata as md

    from actiba.evaluate.report import cpu_name

    uname = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    versions = ", ".join(f"{p} {md.version(p)}" for p in ("onnx", "onnxruntime", "torch", "transformers", "numpy"))
    return f"{cpu_name()} ({uname}); {versions}"


def export(name: str, seq_len: int, folder: Path) -> tuple[Any, Any]:
    """(loaded model, onnx.ModelProto at fixed length) via `export_onnx` (Mamba v1: stepped scan)."""
    import onnx

    from actiba.evaluate.build import load_model

    lm = load_model(name)
    path = folder / (name.replace(":", "_") + ".onnx")
    from actiba.models.export import export_onnx

    export_onnx(lm.model, path, seq_len=seq_len, verbose=False)
    lm.model = None  # only the graph is scored from here on (the 130M model would hold ~0.5 GB)
    return lm, onnx.load(str(path))


def graphs(lm: Any, base: Any, ssd: tuple[tuple[str, list[str]], ...] = SSD_GRAPHS) -> list[tuple[str, Any, str]]:
    """(name, graph, note) for the baseline and, for Mamba-2, the SSD rewrites `ssd`."""
    from actiba.rewrite import apply

    out = [("baseline", base, "")]
    if lm.model_type != "mamba2":
        return out
    for name, rewrites in ssd:
        new, sites = apply(base, rewrites, precision="f32")
        done = [s for s in sites if s.ok]
        note = ", ".join(f"{r}: {sum(s.rewrite == r for s in done)}/{sum(s.rewrite == r for s in sites)} sites"
                         for r in rewrites)
        out.append((name, new, note))
    return out


def _round(x: Any, precision: str) -> Any:
    """float32 -> bf16 (nearest even, by bits) or f16 -> float32, as the emulated graph stores tensors."""
    import numpy as np

    x = np.asarray(x, dtype=np.float32)
    if precision == "f16":
        with np.errstate(over="ignore"):
            return x.astype(np.float16).astype(np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), x, r)


def chunk_log_decays(base: Any, data: bytes, seq_len: int, windows: int) -> list[Any]:
    """Per layer, the log-decays x [b, h, chunks, T] that HF's chunk scan sums (inputs of the CumSums over
    the last axis of rank-4 tensors: `A_cumsum = cumsum(A, -1)`, which d1 reuses), on the first windows."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from actiba.evaluate.emulate import session

    consts = {t.name: numpy_helper.to_array(t) for t in base.graph.initializer}
    consts.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in base.graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    inferred = onnx.shape_inference.infer_shapes(base)
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in inferred.graph.value_info}
    wanted = [n.input[0] for n in base.graph.node if n.op_type == "CumSum" and ranks.get(n.input[0]) == 4
              and n.input[1] in consts and int(consts[n.input[1]]) in (-1, 3)]
    m = onnx.ModelProto.FromString(base.SerializeToString())
    for name in wanted:
        m.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    sess = session(m)
    feed = sess.get_inputs()[0].name
    per_layer: list[list[Any]] = [[] for _ in wanted]
    for w in range(windows):
        ids = np.frombuffer(data[w * seq_len:(w + 1) * seq_len], np.uint8).astype(np.int64)
        ids = np.concatenate([[256], ids[:-1]])[None]
        outs = sess.run(wanted, {feed: ids})
        for k, o in enumerate(outs):
            per_layer[k].append(o)
    return [np.concatenate(v, axis=0) for v in per_layer]


def segsum_errors(x: Any, precision: str) -> dict[str, float]:
    """Op-level error of the T×T segment sum S[i, j] = sum_{j<k<=i} x_k (j <= i) stored at `precision`:
    HF's form (CumSum of the masked expansion, f32 accumulation, rounded once) vs d1's outer difference
    of the rounded cumulative sum. Reference: float64 on the unrounded f32 x."""
    import numpy as np

    t = x.shape[-1]
    lower = np.tril(np.ones((t, t), bool))  # j <= i
    x64 = x.astype(np.float64)
    cs64 = np.cumsum(x64, -1)
    exact = cs64[..., :, None] - cs64[..., None, :]
    xr = _round(x, precision)
    masked = np.where(np.tril(np.ones((t, t), bool), -1), xr[..., :, None], np.float32(0))  # x_i where j < i
    hf = _round(np.cumsum(masked, axis=-2, dtype=np.float32), precision)
    cs = _round(np.cumsum(xr, -1, dtype=np.float32), precision)
    d1 = _round(cs[..., :, None] - cs[..., None, :], precision)
    out = {"max_abs_cs": float(np.abs(cs64).max())}
    for label, s in (("hf", hf), ("d1", d1)):
        err = np.abs(s.astype(np.float64)[..., lower] - exact[..., lower])
        dec = np.abs(np.exp(s.astype(np.float64)[..., lower]) - np.exp(exact[..., lower]))
        out[f"{label}_max_abs"] = float(err.max())
        out[f"{label}_max_decay"] = float(dec.max())
    return out


F16_MAX = 65504.0


def f16_overflow_census(base: Any, data: bytes, seq_len: int) -> list[dict[str, Any]]:
    """Float tensors of the f32 graph with values beyond f16's largest finite number (they become inf
    in an f16 run): tensor, op type, how many elements over all windows, largest |value|."""
    import numpy as np
    import onnx
    from onnx import helper

    from actiba.evaluate.emulate import _elem_types, session

    types = _elem_types(base)
    m = onnx.ModelProto.FromString(base.SerializeToString())
    outs = {o.name for o in m.graph.output}
    op_of = {}
    for n in m.graph.node:
        for o in n.output:
            if o and types.get(o) == onnx.TensorProto.FLOAT and o not in outs and n.op_type != "Constant":
                m.graph.output.append(helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None))
                op_of[o] = n.op_type
    sess = session(m)
    feed = sess.get_inputs()[0].name
    names = list(op_of)
    count = dict.fromkeys(names, 0)
    peak = dict.fromkeys(names, 0.0)
    for w in range(len(data) // seq_len):
        ids = np.frombuffer(data[w * seq_len:(w + 1) * seq_len], np.uint8).astype(np.int64)
        vals = sess.run(names, {feed: np.concatenate([[256], ids[:-1]])[None]})
        for name, v in zip(names, vals, strict=True):
            a = np.abs(v[np.isfinite(v)])
            if a.size:
                count[name] += int((a > F16_MAX).sum())
                peak[name] = max(peak[name], float(a.max()))
    return [{"tensor": n, "op": op_of[n], "count": count[n], "max": peak[n]} for n in names if count[n]]


def segsum_table(lm: Any, base: Any, data: bytes, seq_len: int, windows: int = 8) -> list[dict[str, Any]]:
    """`segsum_errors` per layer and precision on the model's own log-decays (Mamba-2 only)."""
    if lm.model_type != "mamba2":
        return []
    xs = chunk_log_decays(base, data, seq_len, min(windows, len(data) // seq_len))
    return [{"layer": k, "precision": p, "chunk": int(x.shape[-1]), **segsum_errors(x, p)}
            for k, x in enumerate(xs) for p in ("bf16", "f16")]


def native_precisions() -> list[str]:
    """OpenVINO CPU precisions to run natively: f32 and, where the CPU offers it, bf16 ([] without OpenVINO)."""
    try:
        from actiba.evaluate.latency import supported_precisions
    except ImportError:
        return []
    return [p for p in supported_precisions("CPU") if p in ("f32", "bf16")]


def compare_native(graph: Any, precision: str, ref: list[Any], data: bytes, seq_len: int) -> Any:
    """`emulate.compare` for OpenVINO CPU at `precision` (all threads: nothing is timed)."""
    from actiba.evaluate import latency
    from actiba.evaluate.build import to_openvino
    from actiba.evaluate.emulate import compare_fn
    from actiba.evaluate.perplexity import openvino_logits_fn

    compiled, notes = latency.compile_model(to_openvino(graph), "CPU", precision, threads=None)
    if notes.get("precision_used") != precision:
        raise RuntimeError(f"OpenVINO ran {notes.get('precision_used')} when asked for {precision}")
    return compare_fn(lambda record: openvino_logits_fn(compiled, record), ref, data, seq_len)


def study_model(name: str, data: bytes, seq_len: int, folder: Path) -> dict[str, Any]:
    from actiba.evaluate.emulate import compare, emulate_precision, window_logits

    lm, base = export(name, seq_len, folder)
    log(f"{name}: exported ({len(base.graph.node)} nodes)")
    t0 = time.perf_counter()
    ref_bpb, ref = window_logits(base, data, seq_len)
    log(f"{name}: f32 baseline {ref_bpb:.4f} bits/byte ({time.perf_counter() - t0:.0f} s)")
    segsum = segsum_table(lm, base, data, seq_len)
    census = f16_overflow_census(base, data, seq_len)
    rows = []
    for gname, graph, note in graphs(lm, base):
        for prec, emulated, keep in PRECISIONS:
            g = graph if emulated is None else emulate_precision(graph, emulated, keep)
            t0 = time.perf_counter()
            c = compare(g, ref, data, seq_len)
            rows.append({"graph": gname, "precision": prec, "note": note, "bits_per_byte": c.bits_per_byte,
                         "rel": c.bits_per_byte / ref_bpb - 1, "top1": c.top1_agreement,
                         "max_diff": c.max_abs_logit_diff, "seconds": time.perf_counter() - t0})
            log(f"{name} {gname} {prec}: {c.bits_per_byte:.4f} ({rows[-1]['rel']:+.3%}), top-1 {c.top1_agreement:.4f}, "
                f"max diff {c.max_abs_logit_diff:.3g}")
        for prec in native_precisions():
            t0 = time.perf_counter()
            c = compare_native(graph, prec, ref, data, seq_len)
            label = f"{prec} OpenVINO" + (" native" if prec != "f32" else "")
            rows.append({"graph": gname, "precision": label, "note": note, "bits_per_byte": c.bits_per_byte,
                         "rel": c.bits_per_byte / ref_bpb - 1, "top1": c.top1_agreement,
                         "max_diff": c.max_abs_logit_diff, "seconds": time.perf_counter() - t0})
            log(f"{name} {gname} {label}: {c.bits_per_byte:.4f} ({rows[-1]['rel']:+.3%}), "
                f"top-1 {c.top1_agreement:.4f}, max diff {c.max_abs_logit_diff:.3g}")
    return {"model": name, "baseline": ref_bpb, "rows": rows, "nodes": len(base.graph.node), "segsum": segsum,
            "census": census}


def study_random(name: str, data: bytes, seq_len: int, folder: Path, d1: bool) -> dict[str, Any]:
    """Random weights: only agreement and logit differences mean anything."""
    from actiba.evaluate.emulate import compare, emulate_precision, window_logits

    lm, base = export(name, seq_len, folder)
    log(f"{name}: exported ({len(base.graph.node)} nodes)")
    segsum = segsum_table(lm, base, data, seq_len)
    _, ref = window_logits(base, data, seq_len)
    rows = []
    native = [f"{p} OpenVINO native" for p in native_precisions() if p != "f32"]
    for gname, graph, _note in graphs(lm, base, SSD_GRAPHS[:1] if d1 else ()):
        for prec in [*(("f32", "bf16 emulated") if gname != "baseline" else ("bf16 emulated",)), *native]:
            if prec.endswith("native"):
                c = compare_native(graph, prec.split()[0], ref, data, seq_len)
            else:
                g = graph if prec == "f32" else emulate_precision(graph, prec.split()[0])
                c = compare(g, ref, data, seq_len)
            rows.append({"graph": gname, "precision": prec, "top1": c.top1_agreement, "max_diff": c.max_abs_logit_diff,
                         "positions": c.positions})
            log(f"{name} {gname} {prec}: top-1 {c.top1_agreement:.4f}, max diff {c.max_abs_logit_diff:.3g}")
    return {"model": name, "rows": rows, "segsum": segsum}


def _capabilities() -> str:
    try:
        from actiba.evaluate.latency import core

        return ", ".join(str(c) for c in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # no OpenVINO: the study is emulated only
        return f"unavailable ({type(exc).__name__})"


def _fmt(x: float, spec: str) -> str:
    return "inf" if math.isinf(x) else ("nan" if math.isnan(x) else format(x, spec))


def render(results: list[dict[str, Any]], rnd: dict[str, Any] | None, args: argparse.Namespace, took: float) -> str:
    lines = [
        "# Accuracy at bf16 / f16: emulated, and native where the CPU has bf16 (issues 4, 5 and 17)",
        "",
        f"Command: `nice -n 10 python eval/precision_study.py {' '.join(args.argv)}`",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC in {took / 60:.1f} min on {machine()}.",
        "",
        f"OpenVINO CPU precisions run natively here: {', '.join(native_precisions()) or 'none'} "
        f"(`OPTIMIZATION_CAPABILITIES` {_capabilities()}). Rows marked *OpenVINO* ran the same graph in "
        "OpenVINO with `INFERENCE_PRECISION_HINT` set to that precision (the compiled model confirmed it); "
        "rows marked *emulated* are onnxruntime with rounding, as below. Native bf16 here is OpenVINO's CPU "
        "plugin on this CPU (it keeps some ops and accumulations in f32 as it sees fit); an NPU's bf16 can "
        "differ again.",
        "",
        "**Emulated rows are not measured on bf16/f16 hardware.** onnxruntime CPU runs each fixed-length graph "
        "(`actiba.models.export.export_onnx`, length "
        f"{args.seq_len}) as exported (f32) and through `actiba.evaluate.emulate.emulate_precision`: every "
        "float tensor (weights, every op's output, the logits) is rounded to bf16 / f16 (nearest even) after "
        "it is produced, ops compute in f32 (the 'compute in f32, store in bf16' model). A real NPU may "
        "accumulate differently, keep some ops in f32, or saturate f16 instead of overflowing to inf.",
        "",
        f"Data: the first {len(args.data_used)} bytes of the held-out split, disjoint windows of {args.seq_len} "
        "bytes after the start token (`perplexity.windows_bits_per_byte`). Every row is compared with the "
        "**f32 baseline graph** of its model on the same windows: relative change of bits/byte, top-1 "
        "agreement (a position agrees when some token is top-1 under both; bf16 logits tie), max |logit diff|. "
        "SSD rewrites are `actiba.rewrite.apply(model, [...], precision=\"f32\")` so d1 is not refused.",
        "",
    ]
    for res in results:
        lines += [f"## {res['model']} (f32 baseline {res['baseline']:.4f} bits/byte, {res['nodes']} nodes)", "",
                  "| graph | precision | bits/byte | Δ vs f32 baseline | top-1 agreement | max abs logit diff "
                  "| sites |",
                  "|---|---|---:|---:|---:|---:|---|"]
        for r in res["rows"]:
            lines.append(f"| {r['graph']} | {r['precision']} | "
                         f"{_fmt(r['bits_per_byte'], '.4f')} | {_fmt(100 * r['rel'], '+.3f')} % | "
                         f"{_fmt(100 * r['top1'], '.2f')} % | {_fmt(r['max_diff'], '.3g')} | {r['note']} |")
        lines.append("")
        lines += _census_lines(res["census"], len(args.data_used))
        lines += _segsum_lines(res["segsum"])
    if rnd is not None:
        lines += [f"## {rnd['model']} — RANDOM WEIGHTS (agreement only; accuracy means nothing)", "",
                  f"{rnd['rows'][0]['positions']} positions (the first {rnd['rows'][0]['positions']} held-out bytes).",
                  "", "| graph | precision | top-1 agreement with f32 baseline | max abs logit diff |",
                  "|---|---|---:|---:|"]
        for r in rnd["rows"]:
            lines.append(f"| {r['graph']} | {r['precision']} | "
                         f"{100 * r['top1']:.2f} % | {_fmt(r['max_diff'], '.3g')} |")
        lines.append("")
        lines += _segsum_lines(rnd["segsum"])
    return "\n".join(lines) + "\n"


def _census_lines(census: list[dict[str, Any]], n_bytes: int) -> list[str]:
    if not census:
        return [f"f16 range: no tensor of the f32 graph exceeds {F16_MAX:g} on these {n_bytes} bytes.", ""]
    out = [f"f16 range: tensors of the f32 graph with elements beyond {F16_MAX:g} (inf in f16) on these "
           f"{n_bytes} bytes:", "", "| tensor | op | elements > 65504 | max abs |", "|---|---|---:|---:|"]
    out += [f"| {c['tensor']} | {c['op']} | {c['count']} | {c['max']:.4g} |" for c in census]
    return out + [""]


def _segsum_lines(table: list[dict[str, Any]]) -> list[str]:
    if not table:
        return []
    out = ["Op level: the intra-chunk segment sum S[i, j] = Σ_{j<k≤i} x_k (j ≤ i) of each layer's log-decays x "
           "(captured from the f32 graph on the first windows), stored at the precision, against float64: HF's "
           "form (CumSum of the masked expansion, accumulated in f32, rounded once) vs d1 (outer difference of "
           "the rounded cumulative sum). `decay` is exp(S) ∈ (0, 1], the weight the scan applies.", "",
           "| layer | precision | chunk T | max abs cs | HF max abs S err | d1 max abs S err | HF max abs decay err "
           "| d1 max abs decay err |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in table:
        out.append(f"| {r['layer']} | {r['precision']} | {r['chunk']} | {r['max_abs_cs']:.1f} | "
                   f"{r['hf_max_abs']:.3g} | {r['d1_max_abs']:.3g} | {r['hf_max_decay']:.3g} | "
                   f"{r['d1_max_decay']:.3g} |")
    return out + [""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-o", "--out", default="eval/results/precision.md")
    p.add_argument("--models", nargs="+", default=["embedded:mamba2", "embedded:mamba"])
    p.add_argument("--n-bytes", type=int, default=32768)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--random", default="random:mamba2-130m", help="random-weight model ('' to skip)")
    p.add_argument("--random-windows", type=int, default=4)
    p.add_argument("--random-d1", action="store_true", help="also d1 (f32, emulated bf16) on the random model")
    p.add_argument("--append", help="a text file appended to the report (interpretation)")
    args = p.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv

    import torch

    from actiba._atomic import write_text
    from actiba.data import heldout_bytes

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    data = heldout_bytes(args.n_bytes)
    data = data[:len(data) - len(data) % args.seq_len]
    args.data_used = data
    with tempfile.TemporaryDirectory() as tmp:
        results = [study_model(m, data, args.seq_len, Path(tmp)) for m in args.models]
        rnd = None
        if args.random:
            rnd = study_random(args.random, data[:args.random_windows * args.seq_len], args.seq_len, Path(tmp),
                               args.random_d1)
    text = render(results, rnd, args, time.perf_counter() - t0)
    if args.append:
        text += "\n" + Path(args.append).read_text()
    write_text(args.out, text)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
