"""Graph-level SSD rewrites vs torch-level, and Mamba-v1 scan forms, timed on OpenVINO CPU f32 (paired).

    nice -n 10 python eval/bench_ssd_graph.py ssd [--rewrites d1|d2|d1+d2] [--model random:mamba2-130m]
                                                  [--seq-len 256] [--repeats 6]
    nice -n 10 python eval/bench_ssd_graph.py scan [--model embedded:mamba] [--seq-len 256] [--forms ...]

`ssd`: one ONNX export of HF's Mamba-2 (baseline), the same graph after `onnx_ssd` (ONNX level) and after
`openvino_ssd` (OpenVINO level), and an export with the same rewrites at the torch level (`torch_ssd`).
`scan`: Mamba v1 exported with HF's unrolled loop (baseline) and with actiba's scan forms
(`mamba_scan`: chunked q×q, doubling). Every variant is timed in alternating single inferences next to the
baseline (`latency.time_paired`), so ratios are robust to the shared machine's drifting load; results are
appended to (d1) or written into (scan) `eval/results/`.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actiba._atomic import write_text  # noqa: E402


def machine() -> str:
    import openvino as ov
    import torch

    from actiba.evaluate.report import cpu_name

    return (f"{cpu_name()}, {platform.machine()}, 2 cores shared with other jobs; OpenVINO {ov.__version__}, "
            f"torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")


def _compile(ov_model: Any) -> Any:
    from actiba.evaluate.latency import compile_model

    compiled, notes = compile_model(ov_model, "CPU", "f32", threads=1)
    assert notes["precision_used"] == "f32", notes
    return compiled


def _ov_logits(compiled: Any, ids: np.ndarray) -> np.ndarray:
    return np.asarray(compiled({0: ids})[compiled.output(0)])


def _torch_logits(model: Any, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.from_numpy(ids), use_cache=False).logits.float().numpy()


def _real_ids(seq_len: int) -> np.ndarray:
    from actiba.data import heldout_bytes

    return np.frombuffer(heldout_bytes(4096 + seq_len), np.uint8)[4096:].astype(np.int64).reshape(1, -1)


def _ratio_rows(variants: list[tuple[str, Any, dict[str, Any]]], base: Any, seq_len: int, vocab: int,
                repeats: int) -> list[dict[str, Any]]:
    """Time each compiled variant paired with the compiled baseline."""
    from actiba.evaluate.latency import random_ids, time_paired

    feed = random_ids(seq_len, vocab)
    rows = []
    for label, compiled, info in variants:
        a, b = time_paired(compiled, base, feed, warmup=2, repeats=repeats)
        rows.append({"variant": label, "ms": a.median, "base_ms": b.median, "speedup": b.median / a.median,
                     **info})
        print(rows[-1], flush=True)
    return rows


def run_ssd(args: argparse.Namespace) -> None:
    """Baseline, the SSD rewrites `args.rewrites` at the ONNX and OpenVINO level, and the same at torch level."""
    import onnx
    import openvino as ov

    from actiba.evaluate.build import load_model
    from actiba.models.export import export_onnx
    from actiba.rewrite import onnx_ssd, openvino_ssd
    from actiba.rewrite.torch_ssd import ssd_rewrites

    names = {"d1": ["ssd-d1"], "d2": ["ssd-d2"], "d1+d2": ["ssd-d1", "ssd-d2"]}[args.rewrites]
    tag = args.rewrites
    lm = load_model(args.model)
    t0 = time.time()
    real = _real_ids(args.seq_len)
    ref_torch = _torch_logits(lm.model, real)
    with tempfile.TemporaryDirectory() as tmp:
        base_path = Path(tmp) / "hf.onnx"
        export_onnx(lm.model, base_path, args.seq_len, verbose=False)
        base_onnx = onnx.load(str(base_path))
        g_onnx, sites = base_onnx, []
        for rw in names:  # each verified on the whole model with onnxruntime
            g_onnx, done = onnx_ssd.apply(g_onnx, rewrite=rw)
            sites += done
        g_path = Path(tmp) / "graph.onnx"
        onnx.save(g_onnx, str(g_path))
        with ssd_rewrites(lm.model, d1="ssd-d1" in names, d2="ssd-d2" in names):
            export_onnx(lm.model, Path(tmp) / "torch.onnx", args.seq_len, verbose=False)
        base_ov = ov.convert_model(str(base_path))
        ov_g, ov_sites = base_ov, []
        for rw in names:
            ov_g, done = openvino_ssd.apply(ov_g, verify_mode="none", rewrite=rw)
            ov_sites += done
        models = {"hf (baseline)": base_ov, f"graph {tag} (ONNX level)": ov.convert_model(str(g_path)),
                  f"graph {tag} (OpenVINO level)": ov_g,
                  f"torch {tag}": ov.convert_model(str(Path(tmp) / "torch.onnx"))}
    compiled = {k: _compile(m) for k, m in models.items()}
    base = compiled["hf (baseline)"]
    ref_ov = _ov_logits(base, real)
    variants = []
    for label, c in compiled.items():
        out = _ov_logits(c, real)
        ops = models[label].get_ops()
        variants.append((label, c, {
            "ops": len(ops), "cumsum": sum(o.get_type_name() == "CumSum" for o in ops),
            "einsum": sum(o.get_type_name() == "Einsum" for o in ops),
            "diff_ov": float(np.abs(out - ref_ov).max()), "diff_torch": float(np.abs(out - ref_torch).max())}))
    rows = _ratio_rows(variants, base, args.seq_len, lm.vocab_size, args.repeats)
    counts = ", ".join(f"{rw}: {sum(s.ok and s.rewrite == rw for s in sites)} sites in the ONNX graph "
                       f"({sum(not s.ok and s.rewrite == rw for s in sites)} left with reasons), "
                       f"{sum(s.ok and s.rewrite == rw for s in ov_sites)} in the OpenVINO model" for rw in names)
    ok = [s for s in sites if s.ok and "max_diff_real" in s.detail]
    lines = [
        "", f"## Graph-level SSD {tag} (ONNX / OpenVINO rewrite) vs torch-level {tag}", "",
        f"Command: `nice -n 10 python eval/bench_ssd_graph.py ssd --rewrites {tag} --model {args.model} "
        f"--seq-len {args.seq_len} --repeats {args.repeats}`  ",
        f"Machine: {machine()}  ",
        f"OpenVINO CPU, INFERENCE_PRECISION_HINT=f32 (checked), 1 inference thread, batch 1, {args.seq_len} "
        f"tokens; each variant timed in {args.repeats} alternating (ABBA) inferences with the baseline "
        f"(`latency.time_paired`), speed-up = baseline median / variant median from the same window; "
        f"total {time.time() - t0:.0f} s. Random weights (accuracy meaningless; latency only).", "",
        f"Rewritten: {counts}. onnxruntime verification of the ONNX rewrites: max |logit diff| "
        f"{max(s.detail['max_diff_random'] for s in ok):.3g} (random ids), "
        f"{max(s.detail['max_diff_real'] for s in ok):.3g} (held-out bytes).", "",
        "Logit diffs on held-out bytes: vs the baseline graph on OpenVINO f32, and vs HF torch.", "",
        "| variant | ops | CumSum ops | Einsum ops | median ms | baseline ms (paired) | speed-up | diff vs hf (OV) "
        "| diff vs torch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['ops']} | {r['cumsum']} | {r['einsum']} | {r['ms']:.1f} | "
                     f"{r['base_ms']:.1f} | {r['speedup']:.2f} | {r['diff_ov']:.3g} | {r['diff_torch']:.3g} |")
    lines += ["", "The `hf (baseline)` row pairs the baseline with a second request of itself: its ratio is the "
              "noise of the pairing on this machine."]
    out = ROOT / "eval" / "results" / "rewrites.md"
    write_text(out, out.read_text() + "\n".join(lines) + "\n")
    print(f"appended to {out}")


def run_chunk(args: argparse.Namespace) -> None:
    """Torch-level SSD d1+d2 at several chunk lengths vs HF's Mamba-2 at its own chunk length."""
    import openvino as ov

    from actiba.evaluate.build import load_model
    from actiba.models.export import export_onnx
    from actiba.rewrite.torch_ssd import ssd_rewrites

    lm = load_model(args.model)
    t0 = time.time()
    real = _real_ids(args.seq_len)
    ref_torch = _torch_logits(lm.model, real)[:, -1:] if args.logits == "last" else _torch_logits(lm.model, real)
    native = lm.model.config.chunk_size
    chunks = [int(q) for q in args.chunks.split(",")]
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hf.onnx"
        export_onnx(lm.model, path, args.seq_len, verbose=False, logits=args.logits)
        models[f"hf, chunk {native} (baseline)"] = ov.convert_model(str(path))
        for q in chunks:
            path = Path(tmp) / f"d12_{q}.onnx"
            with ssd_rewrites(lm.model, chunk=q):
                export_onnx(lm.model, path, args.seq_len, verbose=False, logits=args.logits)
            models[f"d1+d2, chunk {q}"] = ov.convert_model(str(path))
    compiled = {k: _compile(m) for k, m in models.items()}
    base = compiled[f"hf, chunk {native} (baseline)"]
    ref_ov = _ov_logits(base, real)
    variants = [(label, c, {"ops": len(models[label].get_ops()),
                            "diff_ov": float(np.abs(_ov_logits(c, real) - ref_ov).max()),
                            "diff_torch": float(np.abs(_ov_logits(c, real) - ref_torch).max())})
                for label, c in compiled.items()]
    rows = _ratio_rows(variants, base, args.seq_len, lm.vocab_size, args.repeats)
    lines = [
        "", f"## SSD chunk length (torch-level d1+d2, {args.seq_len} tokens, logits: {args.logits})", "",
        f"Command: `nice -n 10 python eval/bench_ssd_graph.py chunk --model {args.model} --seq-len {args.seq_len} "
        f"--chunks {args.chunks} --logits {args.logits} --repeats {args.repeats}`  ",
        f"Machine: {machine()}  ",
        f"OpenVINO CPU, INFERENCE_PRECISION_HINT=f32 (checked), 1 inference thread, batch 1; each variant timed in "
        f"{args.repeats} alternating (ABBA) inferences with the baseline; total {time.time() - t0:.0f} s. Random "
        f"weights (latency only). The chunked SSD is exact for any chunk length; the diffs below are rounding "
        f"(and d1's f32 cancellation, which shrinks with the chunk).", "",
        "| variant | ops | median ms | baseline ms (paired) | speed-up | diff vs hf (OV) | diff vs torch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['ops']} | {r['ms']:.1f} | {r['base_ms']:.1f} | {r['speedup']:.2f} | "
                     f"{r['diff_ov']:.3g} | {r['diff_torch']:.3g} |")
    out = ROOT / "eval" / "results" / "rewrites.md"
    write_text(out, out.read_text() + "\n".join(lines) + "\n")
    print("\n".join(lines))


def run_scan(args: argparse.Namespace) -> None:
    import onnx
    import openvino as ov

    from actiba.evaluate.build import load_model
    from actiba.models.export import export_onnx
    from actiba.models.mamba_scan import patch_scan, unpatch_scan

    lm = load_model(args.model)
    if args.layers:
        lm.model.backbone.layers = lm.model.backbone.layers[:args.layers]
        lm.model.config.num_hidden_layers = args.layers
    t0 = time.time()
    real = _real_ids(args.seq_len)
    ref_torch = _torch_logits(lm.model, real)
    forms = [("loop (HF)", "loop", 0)] + [(f"{f.split(':')[0]} Q={f.split(':')[1]}", f.split(":")[0],
                                            int(f.split(":")[1])) for f in args.forms.split(",")]
    models, nodes, export_s = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, mode, q in forms:
            path = Path(tmp) / f"{mode}{q}.onnx"
            t1 = time.time()
            if mode != "loop":
                patch_scan(lm.model, mode, q)  # type: ignore[arg-type]
            try:  # "loop": export as is (patched forward, or HF's own loop when unpatched)
                export_onnx(lm.model, path, args.seq_len, mamba_scan="loop", verbose=False)
            finally:
                unpatch_scan(lm.model)
            export_s[label] = time.time() - t1
            nodes[label] = len(onnx.load(str(path)).graph.node)
            models[label] = ov.convert_model(str(path))
            models[label].reshape({0: [1, args.seq_len]})
            print(label, nodes[label], f"{export_s[label]:.0f}s", flush=True)
    compiled = {k: _compile(m) for k, m in models.items()}
    base = compiled["loop (HF)"]
    ref_ov = _ov_logits(base, real)
    variants = []
    for label, c in compiled.items():
        out = _ov_logits(c, real)
        variants.append((label, c, {"onnx_nodes": nodes[label], "ov_ops": len(models[label].get_ops()),
                                    "export_s": export_s[label], "diff_torch": float(np.abs(out - ref_torch).max()),
                                    "diff_loop": float(np.abs(out - ref_ov).max())}))
    rows = _ratio_rows(variants, base, args.seq_len, lm.vocab_size, args.repeats)
    cfg = lm.model.config
    what = (f"{args.model} (hidden {cfg.hidden_size}, d_inner {cfg.intermediate_size}, state {cfg.state_size}, "
            f"{cfg.num_hidden_layers} layers{' kept of the config' if args.layers else ''})")
    lines = [
        f"### {what}, {args.seq_len} tokens", "",
        f"Command: `nice -n 10 python eval/bench_ssd_graph.py scan --model {args.model} --seq-len {args.seq_len} "
        f"--forms {args.forms} --repeats {args.repeats}{f' --layers {args.layers}' if args.layers else ''}`  ",
        f"Machine: {machine()}; total {time.time() - t0:.0f} s.", "",
        "| scan | ONNX nodes | OpenVINO ops | median ms | loop ms (paired) | speed-up vs loop | diff vs loop (OV) "
        "| diff vs HF torch | export s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['onnx_nodes']} | {r['ov_ops']} | {r['ms']:.2f} | {r['base_ms']:.2f} | "
                     f"{r['speedup']:.2f}x | {r['diff_loop']:.2e} | {r['diff_torch']:.2e} | {r['export_s']:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    for name in ("ssd", "d1"):  # "d1" = "ssd --rewrites d1" (the command of earlier results)
        d = sub.add_parser(name, help="graph-level vs torch-level SSD rewrites (Mamba-2)")
        d.add_argument("--rewrites", choices=["d1", "d2", "d1+d2"], default="d1" if name == "d1" else "d1+d2")
        d.add_argument("--model", default="random:mamba2-130m")
        d.add_argument("--seq-len", type=int, default=256)
        d.add_argument("--repeats", type=int, default=6)
    ch = sub.add_parser("chunk", help="torch-level SSD d1+d2 at several chunk lengths (Mamba-2)")
    ch.add_argument("--model", default="random:mamba2-130m")
    ch.add_argument("--seq-len", type=int, default=256)
    ch.add_argument("--chunks", default="256,128,64,32")
    ch.add_argument("--logits", choices=["all", "last"], default="last")
    ch.add_argument("--repeats", type=int, default=6)
    sc = sub.add_parser("scan", help="Mamba v1 scan forms vs HF's unrolled loop")
    sc.add_argument("--model", default="embedded:mamba")
    sc.add_argument("--seq-len", type=int, default=256)
    sc.add_argument("--forms", default="chunked:8,doubling:16,doubling:32,doubling:64")
    sc.add_argument("--layers", type=int, default=0, help="keep only the first N layers (0: all)")
    sc.add_argument("--repeats", type=int, default=20)
    sc.add_argument("--out", type=Path, help="write the markdown section here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"scan": run_scan, "chunk": run_chunk}.get(args.what, run_ssd)(args)


if __name__ == "__main__":
    main()
