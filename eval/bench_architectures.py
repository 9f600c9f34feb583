"""Prefill speed-up of the best exact configuration per architecture family, OpenVINO CPU f32 and bf16.

    python eval/bench_architectures.py [--work /tmp/archbench] [--only NAME,...] [--report-only]
                                       [--out eval/results/architectures.md]

Why random weights at the public checkpoints' sizes: latency depends on the shapes, not on the values, and
nothing may be downloaded here. Each family's config below holds the published config values of its
smallest public checkpoint (source named per entry; read off the model cards / config.json files), with
the changes listed in its `scaled` note: fewer layers *at the real widths* where the full depth does not fit
the time budget (one prefill of a whole 1B hybrid at 512 tokens takes tens of seconds on one thread here;
latency grows roughly linearly with the layer count, and the ratio is what is reported), a smaller
vocabulary where the embedding alone would pass ONNX's 2 GB protobuf limit (with last-position logits the
LM head is one row: < 1 % of the prefill), and dense MLPs instead of Jamba's MoE (below).

Per family the script builds the random model (torch seed 0), saves it with `save_pretrained`, and runs

    actiba pareto FOLDER --latency-only --sweep SWEEP --seq-len 512 --precision auto --no-decode
                         --emulate none --warmup 1 --repeats 10 --min-repeats 6 --timing-seconds 30

(paired ABBA timing against the baseline; the run's null control times the baseline against itself
compiled again). SSD families sweep ssd-d1+d2 at the model's chunk and at chunk 64 (the best exact rows on
Mamba-2-130M, eval/results/pareto_cpu_130m; `--short-ssd` keeps only chunk 64, to fit a time budget);
selective-scan families sweep cumba+reduba (their only exact graph rewrites). Then it lists, on the
baseline export, every CumBA / ReduBA / SSD-d1 / SSD-d2 site with its decision and the skip reasons
(`onnx_rw.find_sites`), writes one JSON per family under eval/results/architectures/ and renders
eval/results/architectures.md from all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actiba._atomic import write_text  # noqa: E402

SEQ_LEN = 512
TIMING = ["--warmup", "1", "--repeats", "10", "--min-repeats", "6"]  # + --timing-seconds (--timing-seconds here)
SSD_SWEEP = {"configs": [{"name": "baseline"},
                         {"name": "ssd-d1+d2", "ssd_d1": True, "ssd_d2": True},
                         {"name": "ssd-d1+d2+chunk64", "ssd_d1": True, "ssd_d2": True, "ssd_chunk": 64}]}
SSD_SWEEP_SHORT = {"configs": [SSD_SWEEP["configs"][0], SSD_SWEEP["configs"][2]]}  # --short-ssd: the time budget
SCAN_SWEEP = {"configs": [{"name": "baseline"}, {"name": "cumba+reduba", "cumba": True, "reduba": True}]}
SITE_RULES = ("cumba", "reduba", "ssd-d1", "ssd-d2")
NOTES = "<!-- notes: hand-written, kept by re-rendering -->"

# name -> model_type, public checkpoint, where the values come from, config kwargs, what was scaled
FAMILIES: dict[str, dict] = {
    "mamba2-130m": dict(
        model_type="mamba2", public="state-spaces/mamba2-130m", source="state-spaces/mamba2-130m config.json",
        config=dict(hidden_size=768, num_hidden_layers=24, vocab_size=50288, num_heads=24, head_dim=64,
                    state_size=128, n_groups=1, chunk_size=256, expand=2, conv_kernel=4),
        layers=8, scaled="8 of 24 layers"),
    "granite-4.0-h-350m": dict(
        model_type="granitemoehybrid", public="ibm-granite/granite-4.0-h-350m",
        source="granite-4.0-h-350m model card / GGUF metadata: 32 blocks (28 Mamba-2, 4 attention), hidden 768, "
               "12 heads, 4 KV heads, Mamba-2 d_inner 1536 = 48 heads x 32, state 128, 1 group, dense shared MLP "
               "2048, no experts, vocab 100352, logits_scaling 3",
        config=dict(hidden_size=768, num_hidden_layers=32, vocab_size=100352, num_attention_heads=12,
                    num_key_value_heads=4, intermediate_size=2048, shared_intermediate_size=2048,
                    num_local_experts=0, num_experts_per_tok=0, mamba_n_heads=48, mamba_d_head=32,
                    mamba_d_state=128, mamba_n_groups=1, mamba_chunk_size=256, mamba_expand=2, mamba_d_conv=4,
                    logits_scaling=3.0, embedding_multiplier=12.0, attention_multiplier=0.015625,
                    residual_multiplier=0.246),
        layers=8, layer_types=["mamba"] * 3 + ["attention"] + ["mamba"] * 4,
        scaled="8 of 32 layers (7 Mamba-2 + 1 attention, the checkpoint's 7 : 1)"),
    "falcon-h1-0.5b": dict(
        model_type="falcon_h1", public="tiiuae/Falcon-H1-0.5B-Base",
        source="Falcon-H1-0.5B config.json (transformers FalconH1 docs table): 36 layers, hidden 1024, 8 heads, "
               "2 KV, head_dim 64, mamba_d_ssm 1536 = 24 heads x 64, state 128, 1 group, chunk 128, MLP 2048, "
               "vocab 32784",
        config=dict(hidden_size=1024, num_hidden_layers=36, vocab_size=32784, num_attention_heads=8,
                    num_key_value_heads=2, head_dim=64, intermediate_size=2048, mamba_d_ssm=1536,
                    mamba_n_heads=24, mamba_d_head=64, mamba_d_state=128, mamba_n_groups=1, mamba_chunk_size=128,
                    mamba_expand=2, mamba_d_conv=4, mamba_rms_norm=False, lm_head_multiplier=0.0390625,
                    embedding_multiplier=5.656854249492381),
        layers=3, scaled="3 of 36 layers (each layer: attention, Mamba-2 and MLP in parallel)"),
    "zamba2-1.2b": dict(
        model_type="zamba2", public="Zyphra/Zamba2-1.2B",
        source="Zyphra/Zamba2-1.2B config.json: 38 layers (a shared transformer block after every 5 Mamba-2), "
               "hidden 2048, Mamba-2 heads of 64 (64 heads), state 128, 1 group, chunk 256, 32 attention heads, "
               "FFN 8192, 1 memory block, vocab 32000",
        config=dict(hidden_size=2048, num_hidden_layers=38, vocab_size=32000, num_attention_heads=32,
                    num_key_value_heads=32, intermediate_size=8192, mamba_d_state=128, mamba_headdim=64,
                    n_mamba_heads=64, mamba_ngroups=1, chunk_size=256, mamba_expand=2, num_mem_blocks=1),
        layers=3, layers_block_type=["mamba"] * 2 + ["hybrid"],
        scaled="3 of 38 layers (2 Mamba-2 + 1 hybrid = shared transformer + Mamba-2; the checkpoint has one "
               "hybrid per 6 layers, so the shared transformer weighs 2x more here)"),
    "nemotron-h-4b": dict(
        model_type="nemotron_h", public="nvidia/Nemotron-H-4B-Base-8K",
        source="Nemotron-H 4B as Megatron-Bridge's model notes give it (docs/models/llm/nemotronh.md): 52 layers, "
               "pattern M-M-M-M*-..., hidden 3072, FFN 12288, 32 heads / 8 KV of 128, 112 Mamba heads x 64, state "
               "128; n_groups 8 is Megatron's mamba_num_groups default, chunk 128 and vocab 131072 (HF NemotronH's "
               "default) not stated there. Summary: "
               "52 layers (Mamba-2 'M', attention '*', MLP '-'), hidden 3072, "
               "Mamba-2 112 heads x 64, state 128, n_groups 8, chunk 128, 32 heads / 8 KV of 128, relu2 MLP "
               "12288, vocab 131072",
        config=dict(hidden_size=3072, num_hidden_layers=52, vocab_size=131072, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=128, intermediate_size=12288, mamba_num_heads=112,
                    mamba_head_dim=64, ssm_state_size=128, n_groups=8, chunk_size=128, expand=2, conv_kernel=4,
                    mlp_hidden_act="relu2"),
        layers=3, hybrid_override_pattern="M*-", vocab=32768,
        scaled="3 of 52 layers (pattern 'M*-': one Mamba-2, one attention, one MLP); vocab 131072 -> 32768 "
               "(the 2 x 403M-parameter embedding + head alone pass the 2 GB ONNX limit)"),
    "mamba-130m": dict(
        model_type="mamba", public="state-spaces/mamba-130m-hf", source="state-spaces/mamba-130m-hf config.json",
        config=dict(hidden_size=768, num_hidden_layers=24, vocab_size=50280, state_size=16, expand=2,
                    conv_kernel=4, time_step_rank=48),
        layers=8, scaled="8 of 24 layers"),
    "jamba-scaled": dict(
        model_type="jamba", public="ai21labs/Jamba-v0.1 (52B; Jamba-tiny-dev's config was not found)",
        source="Jamba-v0.1 config.json: 32 layers, attention period 8 offset 4, experts every 2nd layer (16, "
               "top-2), hidden 4096, MLP 14336, 32 heads / 8 KV, Mamba d_state 16, dt_rank 256, expand 2, "
               "vocab 65536",
        config=dict(hidden_size=1024, num_hidden_layers=4, vocab_size=65536, num_attention_heads=8,
                    num_key_value_heads=2, intermediate_size=3584, mamba_d_state=16, mamba_dt_rank=64,
                    mamba_expand=2, mamba_d_conv=4, attn_layer_period=4, attn_layer_offset=2, num_experts=1,
                    num_experts_per_tok=1, expert_layer_period=2, expert_layer_offset=1),
        layers=4,
        scaled="widths / 4 (hidden 1024, MLP 3584, 8 heads / 2 KV, dt_rank 64), 4 layers (3 Mamba + 1 attention; "
               "the checkpoint has 1 attention per 8); the MoE replaced by dense MLPs (num_experts 1 = the FLOPs of "
               "one expert): the exportable batched_mm experts gather a weight copy per token and choice "
               "(512 x 2 x 3 x 1024 x 3584 floats = 45 GB)"),
    "falcon-mamba-7b": dict(
        model_type="falcon_mamba", public="tiiuae/falcon-mamba-7b",
        source="tiiuae/falcon-mamba-7b config.json: 64 layers, hidden 4096, expand 2 (d_inner 8192), state 16, "
               "dt_rank 256, vocab 65024",
        config=dict(hidden_size=4096, num_hidden_layers=64, vocab_size=65024, state_size=16, expand=2,
                    conv_kernel=4, time_step_rank=256, tie_word_embeddings=True),
        layers=1, vocab=32768,
        scaled="1 of 64 layers; vocab 65024 -> 32768 with tied embeddings (2 GB ONNX limit)"),
}


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def build(name: str, spec: dict, folder: Path) -> None:
    """Random model with the family's config (scaled as noted), saved with `save_pretrained`."""
    if (folder / "config.json").is_file():
        return
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    kw = dict(spec["config"], num_hidden_layers=spec["layers"], use_cache=False)
    for key in ("layer_types", "layers_block_type", "hybrid_override_pattern"):
        if key in spec:
            kw[key] = spec[key]
    if "vocab" in spec:
        kw["vocab_size"] = spec["vocab"]
    config = AutoConfig.for_model(spec["model_type"], **kw)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.save_pretrained(folder)
    print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters saved to {folder}",
          flush=True)


def run_pareto(spec: dict, folder: Path, out: Path, sweep: Path, seconds: int) -> list[str]:
    cmd = [sys.executable, "-m", "actiba", "pareto", str(folder), "--latency-only", "--sweep", str(sweep),
           "--seq-len", str(SEQ_LEN), "--precision", "auto", "--no-decode", "--emulate", "none",
           *TIMING, "--timing-seconds", str(seconds), "--out", str(out)]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return cmd


def sites(out: Path) -> dict:
    """Every site of each graph rewrite on the baseline export (all-positions graph), with skip reasons."""
    import onnx

    from actiba.rewrite import onnx_rw

    found = sorted((out / "cache" / "onnx").glob(f"*-d10-d20-L{SEQ_LEN}*.onnx"))
    if not found:
        return {}
    model = onnx.load(str(min(found, key=lambda f: len(f.name))))  # the all-positions graph
    result = {}
    for rule in SITE_RULES:
        ss = onnx_rw.find_sites(model, rule)
        result[rule] = {"found": len(ss), "rewrite": sum(s.decision == "rewrite" for s in ss),
                        "skipped": dict(Counter(s.reason for s in ss if s.decision != "rewrite"))}
    return result


def summarize(name: str, spec: dict, out: Path, cmd: list[str], load: tuple[float, float]) -> dict:
    res = json.loads((out / "results.json").read_text())
    runs = res.get("runs", [res])
    rows = []
    for run in runs:
        null = run.get("null_control") or {}
        for c in run["configs"]:
            ratio = c.get("latency_ratio") or {}
            rows.append({"precision": run["precision"], "precision_used": c.get("compile", {}).get("precision_used"),
                         "name": c["name"], "speedup": c.get("speedup"), "halfwidth_rel": ratio.get("halfwidth_rel"),
                         "pairs": ratio.get("pairs"), "ms": (c.get("latency_ms") or {}).get("median"),
                         "baseline_ms": (c.get("baseline_latency_ms") or {}).get("median"),
                         "refused": c.get("refused"), "error": c.get("error"),
                         "null": {k: null.get(k) for k in ("speedup", "halfwidth_rel", "pairs")},
                         "load_start": (run.get("machine") or {}).get("load_average_1m")})
    machine = res.get("machine") or runs[0].get("machine") or {}
    return {"name": name, "model_type": spec["model_type"], "public": spec["public"], "source": spec["source"],
            "scaled": spec["scaled"], "seq_len": SEQ_LEN, "command": " ".join(Path(a).name if "/" in a else a
                                                                                 for a in cmd),
            "load_before": load[0], "load_after": load[1], "rows": rows, "sites": sites(out),
            "machine": {k: machine.get(k) for k in ("cpu", "cores", "versions", "cpu_capabilities")}}


def fmt_x(row: dict) -> str:
    if row.get("speedup") is None:
        return f"failed: {row.get('error')}"
    hw = row.get("halfwidth_rel")
    return f"{row['speedup']:.2f}× ±{100 * hw:.1f} % ({row['pairs']})" if hw is not None else f"{row['speedup']:.2f}×"


def render(results: list[dict]) -> str:
    head = results[0]["machine"] if results else {}
    lines = [
        "# Architectures: best exact configuration's prefill speed-up, OpenVINO CPU f32 and bf16",
        "",
        "**Random weights, latency only, CPU, 512 tokens, last-position logits, 1 inference thread.** Each",
        "family at the size of its smallest public checkpoint, built from that checkpoint's published config",
        "values (source per family in `eval/bench_architectures.py` and below), with fewer layers *at the real",
        "widths* where marked: latency grows roughly linearly with the layer count, so the ratio is what to",
        "read, not the milliseconds. Speed-up = 1 / median of per-pair time ratios against the baseline timed",
        "interleaved with it (± ≈ 95 % interval, pairs); **null** = the baseline against itself compiled again,",
        "which bounds what two compilations of one graph differ by here. bf16 is native OpenVINO bf16",
        "(INFERENCE_PRECISION_HINT bf16), measured only where the CPU offers it (`--precision auto`);",
        "SSD d1 is refused at bf16 (cancellation in cs_i − cs_j, eval/results/precision.md), so a bf16",
        "`ssd-d1+d2` row runs d2 only.",
        "",
        f"Machines: 2-core {head.get('cpu')} machines of two kinds, OpenVINO "
        f"{(head.get('versions') or {}).get('openvino')}, torch {(head.get('versions') or {}).get('torch')}, "
        f"transformers {(head.get('versions') or {}).get('transformers')}; per family, its CPU's OpenVINO "
        "capabilities: " + "; ".join(f"{r['name']}: {', '.join((r.get('machine') or {}).get('cpu_capabilities') or [])}"
                                     for r in results) + ". Load = 1-minute load average at the start / end of "
        "each family's run.",
        "",
        "Command: `python eval/bench_architectures.py` (models and ONNX caches in `--work`, not committed;",
        "per-family results in `eval/results/architectures/*.json`). Per family it runs",
        "`actiba pareto FOLDER --latency-only --sweep SWEEP --seq-len 512 --precision auto --no-decode",
        "--emulate none " + " ".join(TIMING) + " --timing-seconds S` on the `save_pretrained` folder (S per",
        "family in its JSON's `command`: 30 s for Mamba-2, 12 s for Granite, 8 s for the rest, to fit the time",
        "budget; at least 6 pairs are timed whatever S is).",
        "",
        "Rows: SSD families time `ssd-d1+d2` (exact; the model's own chunk) and `ssd-d1+d2+chunk64` (exact for",
        "any chunk), or with `--short-ssd` only the latter (the best row on Mamba-2-130M); selective-scan",
        "families (Mamba, FalconMamba, Jamba) time `cumba+reduba`, their only exact graph rewrites (the SSD",
        "rewrites do not exist for a selective scan). `Every row` below lists what each family ran.",
        "",
        "## Best exact configuration per family",
        "",
        "| family (public checkpoint) | size run | load | f32: best exact row | f32 speed-up | f32 null "
        "| bf16: best exact row | bf16 speed-up | bf16 null |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = []
        for prec in ("f32", "bf16"):
            rows = [x for x in r["rows"] if x["precision"] == prec and x["name"] != "baseline"]
            ok = [x for x in rows if x.get("speedup") is not None]
            best = max(ok, key=lambda x: x["speedup"]) if ok else (rows[0] if rows else None)
            null = (best or {}).get("null") or {}
            nulls = fmt_x(null) if null.get("speedup") is not None else "–"
            if best is None:
                cells += ["not run", "", ""]
            else:
                label = best["name"] + (" (d2 only)" if best.get("refused") else "")
                cells += [label, f"{fmt_x(best)}; {best['ms']:.0f} vs {best['baseline_ms']:.0f} ms"
                          if best.get("ms") and best.get("baseline_ms") else fmt_x(best), nulls]
        lines.append(f"| {r['name']} (`{r['public']}`, {r['model_type']}) | {r['scaled']} | "
                     f"{r['load_before']}–{r['load_after']} | " + " | ".join(cells) + " |")
    lines += ["", "## Every row", "",
              "| family | precision | configuration | speed-up ± (pairs) | median ms | baseline ms (same pairs) |",
              "|---|---|---|---|---|---|"]
    for r in results:
        for x in r["rows"]:
            if x["name"] == "baseline":
                continue
            refused = f" (refused: {', '.join(x['refused'])})" if x.get("refused") else ""
            ms = f"{x['ms']:.0f}" if x.get("ms") else ""
            bms = f"{x['baseline_ms']:.0f}" if x.get("baseline_ms") else ""
            lines.append(f"| {r['name']} | {x['precision']} | {x['name']}{refused} | {fmt_x(x)} | {ms} | {bms} |")
    lines += ["", "## Which rewrites apply where, and why", "",
              "Sites on each family's baseline export (all-positions graph, f32), from `onnx_rw.find_sites`: "
              "found / rewritten, and the reasons of the skipped ones. The SSD chunk length (`ssd_chunk`) is a "
              "torch-level change of the Mamba-2 scan, so it applies to every SSD mixer and to nothing else.",
              "", "| family | CumBA | ReduBA | SSD d1 | SSD d2 |", "|---|---|---|---|---|"]
    for r in results:
        cells = []
        for rule in SITE_RULES:
            s = (r.get("sites") or {}).get(rule)
            if s is None:
                cells.append("–")
                continue
            why = "; ".join(f"{n}× {reason}" for reason, n in s["skipped"].items())
            cells.append(f"{s['rewrite']}/{s['found']}" + (f" (skipped: {why})" if why else ""))
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += ["", "## Configs used", ""]
    for r in results:
        lines.append(f"- **{r['name']}** ({r['model_type']}): {r['source']}. Run: {r['scaled']}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/work/scratch/archbench"), help="models, reports, ONNX caches")
    ap.add_argument("--only", default="", help="comma-separated family names (default: all)")
    ap.add_argument("--timing-seconds", type=int, default=30,
                    help="actiba pareto --timing-seconds per row (at least 6 pairs are timed anyway)")
    ap.add_argument("--short-ssd", action="store_true",
                    help="SSD families: only baseline and ssd-d1+d2+chunk64 (the best row on Mamba-2-130M)")
    ap.add_argument("--report-only", action="store_true", help="render the report from the committed JSONs")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "architectures.md")
    args = ap.parse_args()
    jdir = args.out.parent / "architectures"
    jdir.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        sys.exit(f"unknown family {unknown[0]!r}; known: {', '.join(FAMILIES)}")
    if not args.report_only:
        args.work.mkdir(parents=True, exist_ok=True)
        for name in names:
            spec = FAMILIES[name]
            folder, out = args.work / name / "model", args.work / name / "report"
            sweep = args.work / name / "sweep.json"
            sweep.parent.mkdir(parents=True, exist_ok=True)
            sweep.write_text(json.dumps(SCAN_SWEEP if spec["model_type"] in ("mamba", "falcon_mamba", "jamba")
                                        else SSD_SWEEP_SHORT if args.short_ssd else SSD_SWEEP))
            t0, load0 = time.time(), load_avg()
            build(name, spec, folder)
            try:
                cmd = run_pareto(spec, folder, out, sweep, args.timing_seconds)
            except subprocess.CalledProcessError as exc:  # one family's failure must not stop the others
                print(f"{name}: actiba pareto failed (exit {exc.returncode})", flush=True)
                continue
            summary = summarize(name, spec, out, cmd, (load0, load_avg()))
            summary["wall_seconds"] = round(time.time() - t0)
            write_text(jdir / f"{name}.json", json.dumps(summary, indent=1) + "\n")
            print(f"{name}: done in {summary['wall_seconds']} s", flush=True)
    results = [json.loads((jdir / f"{n}.json").read_text()) for n in FAMILIES if (jdir / f"{n}.json").is_file()]
    # the hand-written reading of the numbers below NOTES survives a re-render
    notes = args.out.read_text().partition(NOTES)[2] if args.out.is_file() else ""
    write_text(args.out, render(results) + ("\n" + NOTES + notes if notes else ""))
    print(f"wrote {args.out} ({len(results)} families)")


if __name__ == "__main__":
    main()
