"""Accuracy recovery study: held-out bits/byte of the embedded models with coarse tables, before and after
a short fine-tune with the tables in place (`actiba.recover.finetune`), written to eval/results/finetune.md.

Usage (from the repository root; budget ~15 min on 2 cores)::

    nice -n 10 python eval/finetune_study.py [--steps 50] [--batch 4] [--seq-len 256] [--lr 1e-3]

Cases per model: (a) XAMBA's ReLU for Softplus, (b) SiLU and Softplus at 4 segments, (c) at 8 segments;
for Mamba-2 also (b) with the straight-through estimator, and a control per model: the exact model
fine-tuned the same way (no tables), which separates "the tables were recovered" from "more training helped". Every
tuned model is saved (float16, as shipped) into a temporary folder and scored from the saved weights.
Rows are cached in --cache so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actiba.data import load_split  # noqa: E402
from actiba.evaluate.perplexity import heldout, tables_applied  # noqa: E402
from actiba.evaluate.tables import fitted_table, relu_table  # noqa: E402
from actiba.models import load  # noqa: E402
from actiba.models.scoring import score_bits_per_byte  # noqa: E402
from actiba.recover import finetune, write_model  # noqa: E402

CASES = {
    "softplus-relu": lambda: {"softplus": relu_table()},
    "both-4": lambda: {"silu": fitted_table("silu", 4), "softplus": fitted_table("softplus", 4)},
    "both-8": lambda: {"silu": fitted_table("silu", 8), "softplus": fitted_table("softplus", 8)},
    "exact (control)": lambda: {},
}
# (model, case, grad); the control trains without tables
# in priority order: the report is rewritten after every row, so a cut-short run still reports what it did
RUNS = [("mamba2", "both-4", "table"), ("mamba2", "softplus-relu", "table"), ("mamba2", "exact (control)", "table"),
        ("mamba2", "both-4", "ste"), ("mamba", "both-4", "table"), ("mamba", "softplus-relu", "table"),
        ("mamba2", "both-8", "table"), ("mamba", "both-8", "table"), ("mamba", "exact (control)", "table")]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> str:
    from actiba.evaluate.report import cpu_name

    return f"{cpu_name()}; {os.cpu_count()} logical CPUs; {platform.platform()}; torch {torch.__version__}"


def bpb(model, data: bytes, seq_len: int, tables: dict) -> float:
    """Held-out bits/byte with the mixer activations as `tables` (disjoint windows after token 256)."""
    with tables_applied(model, tables):
        return score_bits_per_byte(model, data, seq_len=seq_len, batch_size=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-bytes", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared machine)")
    ap.add_argument("--runs", help="comma-separated subset of MODEL/CASE/GRAD to run (default: all)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the cache; run nothing")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "actiba-finetune-study.json")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "finetune.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = {k: getattr(args, k) for k in ("steps", "batch", "seq_len", "eval_bytes", "threads")}
    cache = json.loads(args.cache.read_text()) if args.cache.is_file() else {}
    if "lr" in cache.get("settings", {}):  # an older cache: one lr for all rows
        lr0 = cache["settings"].pop("lr")
        cache["rows"] = {f"{k}@{lr0:g}": v for k, v in cache["rows"].items()}
    if cache.get("settings") != settings:
        cache = {"settings": settings, "rows": {}, "exact": {}, "before": {}}
    cmd = "nice -n 10 python " + " ".join(shlex.quote(a) for a in sys.argv)
    cache.setdefault("commands", [])
    if cmd not in cache["commands"] and not args.report_only:
        cache["commands"].append(cmd)
    wanted = None if not args.runs else {r.strip() for r in args.runs.split(",")}
    unknown = (wanted or set()) - {"/".join(r) for r in RUNS}
    if unknown:
        raise SystemExit(f"unknown runs {sorted(unknown)}; known: {['/'.join(r) for r in RUNS]}")
    started = time.time()
    load0 = os.getloadavg()
    train, data = load_split("train"), heldout(args.eval_bytes)

    def save_cache() -> None:
        args.cache.write_text(json.dumps(cache, indent=1))

    bases: dict[str, torch.nn.Module] = {}
    for kind, case, grad in RUNS:
        key = f"{kind}/{case}/{grad}@{args.lr:g}"
        if args.report_only or key in cache["rows"] or (wanted is not None and f"{kind}/{case}/{grad}" not in wanted):
            continue
        if kind not in bases:
            bases[kind] = load(f"embedded:{kind}").eval()
        base = bases[kind]
        if kind not in cache["exact"]:
            cache["exact"][kind] = bpb(base, data, args.seq_len, {})
            log(f"{kind}: exact {cache['exact'][kind]:.4f}")
        tables = CASES[case]()
        bkey = f"{kind}/{case}"
        if bkey not in cache["before"]:
            cache["before"][bkey] = bpb(base, data, args.seq_len, tables)
        model = copy.deepcopy(base)
        res = finetune(model, tables, train, steps=args.steps, lr=args.lr, seq_len=args.seq_len, batch=args.batch,
                       grad=grad, seed=0)
        with tempfile.TemporaryDirectory() as tmp:
            write_model(model, tmp, None, "float16")  # score what would be shipped
        row = {"after": bpb(model, data, args.seq_len, tables), "tuned_exact": bpb(model, data, args.seq_len, {}),
               "train_s": res.seconds, "first10": sum(res.losses[:10]) / 10, "last10": sum(res.losses[-10:]) / 10}
        cache["rows"][key] = row
        save_cache()
        write_report(args, cache, cache.get("wall_s", 0.0) + time.time() - started, load0, os.getloadavg())
        log(f"{key}: before {cache['before'][bkey]:.4f} after {row['after']:.4f} tuned-exact "
            f"{row['tuned_exact']:.4f} ({res.seconds:.0f} s)")
        del model
    cache["wall_s"] = cache.get("wall_s", 0.0) + time.time() - started
    save_cache()
    write_report(args, cache, cache["wall_s"], load0, os.getloadavg())


def write_report(args, cache: dict, total: float, load0, load1) -> None:
    from actiba._atomic import write_text

    s = cache["settings"]
    lines = [
        "# Accuracy recovery: a short fine-tune with the tables in place",
        "",
        "Commands (from the repository root, in this order; rows are cached between them):  ",
        *[f"`{c}`  " for c in cache.get("commands", [])],
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; wall time {total / 60:.1f} min over all commands; load "
        f"average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end of the last (2 cores shared with other "
        f"jobs); torch threads {s['threads']}",
        "",
        f"Fine-tune: {s['steps']} steps x batch {s['batch']} x {s['seq_len']} bytes "
        f"({s['steps'] * s['batch'] * s['seq_len'] / 1e3:.0f} kB of the train split, seed 0), AdamW with the "
        "peak lr of the row (warm-up, cosine to 10 %), all weights, float32, tables applied inside "
        "`backbone.layers.*.mixer` (the same scope as the Pareto sweep). Tuned weights are rounded to float16 "
        "(the shipped dtype, what `actiba finetune` saves) before scoring.",
        f"Scored: held-out bits/byte on the first {s['eval_bytes']} bytes of the held-out split (Macbeth, The "
        f"Tempest), disjoint windows of {s['seq_len']} after the start token; the same prefix for every number.",
        "",
        "| model | tables | grad | lr | exact | tables, before | tables, after | recovered | tuned model, exact acts "
        "| train loss first/last 10 steps | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {"/".join(r): i for i, r in enumerate(RUNS)}
    keys = sorted(cache["rows"], key=lambda k: (order[k.split("@")[0]], -float(k.split("@")[1])))
    for k in keys:
        row, (kind, case, grad), lr = cache["rows"][k], k.split("@")[0].split("/"), k.split("@")[1]
        ex, before = cache["exact"][kind], cache["before"][f"{kind}/{case}"]
        lost = before - ex
        rec = f"{100 * (before - row['after']) / lost:.0f} %" if lost > 1e-4 else "—"
        lines.append(f"| {kind} | {case} | {grad} | {lr} | {ex:.4f} | {before:.4f} ({lost:+.4f}) | {row['after']:.4f} "
                     f"({row['after'] - ex:+.4f}) | {rec} | {row['tuned_exact']:.4f} ({row['tuned_exact'] - ex:+.4f}) "
                     f"| {row['first10']:.3f} / {row['last10']:.3f} | {row['train_s']:.0f} |")
    reading = "READING (to be written by hand after looking at the numbers)\n"
    if args.out.is_file() and "## Reading\n" in (old := args.out.read_text()):
        reading = old.split("## Reading\n", 1)[1].lstrip("\n")  # a re-run keeps the hand-written reading
    lines += ["", "Recovered = (before − after) / (before − exact): the share of the tables' loss removed. "
              "The control row fine-tunes the exact model the same way; compare its gain with the table rows' "
              "to see how much of their improvement is only extra training on the domain.", "",
              "## Reading", ""]
    write_text(args.out, "\n".join(lines) + "\n" + reading)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
