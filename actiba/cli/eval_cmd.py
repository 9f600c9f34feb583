"""`actiba eval MODEL [--config FILE]`: accuracy and latency of one configuration against the baseline.

Accuracy is bits/byte scored by the configuration's OpenVINO graph with every position's logits (or also
by torch with scoped tables, `--backend torch`), on the held-out split or `--text FILE`, in the model's own
tokens per UTF-8 byte (`evaluate.scoring_text`); `--task NAME` also runs an lm-eval task (offline from
eval/tasks, or lm-eval's own on a dataset already in the HF datasets cache). Latency is a generator's
prefill by default (`--prefill-logits last`), and each line says which output was timed.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..evaluate.row import Row


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="accuracy + latency of one configuration (vs the unmodified baseline)")
    p.add_argument("model", metavar="MODEL", help="model folder, embedded:mamba2|embedded:mamba, random:<arch>")
    p.add_argument("--config", metavar="FILE", help="configuration(s) (JSON/YAML); default: baseline only")
    p.add_argument("--device", default="CPU")
    p.add_argument("--precision", default="f32", help="inference precision hint: f32 or bf16 (if supported)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--prefill-lens", default="", metavar="N,N", help="extra prefill lengths to time")
    p.add_argument("--eval-bytes", type=int, default=16384,
                   help="bytes of text scored (a prefix, cut at a UTF-8 character boundary; whole windows only)")
    p.add_argument("--text", metavar="FILE", help="score this local UTF-8 text file instead of the held-out split "
                   "(in the model's own tokens, bits per UTF-8 byte)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--backend", choices=["openvino", "torch"], default="openvino",
                   help="accuracy from the OpenVINO graph (default) or also from torch with scoped tables")
    p.add_argument("--task", metavar="NAME", help="also run an lm-eval task: an offline one from eval/tasks (e.g. "
                   "actiba_heldout), or any task lm-eval knows whose dataset is in the HF datasets cache (e.g. "
                   "wikitext; never downloaded)")
    p.add_argument("--latency-only", action="store_true")
    p.add_argument("--prefill-logits", choices=["last", "all"], default="last",
                   help="timed prefill output: the last position's logits (a generator's prefill; default) "
                        "or every position's; accuracy always uses every position")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON ('-': stdout)")
    p.add_argument("--force", action="store_true", help="overwrite even when an output is one of the inputs")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..errors import InputError
    from ..evaluate import configs as cfgs
    from ..evaluate import latency, sweep, tables
    from ..evaluate.build import load_model

    if args.json:  # before minutes of timing
        from .. import _atomic

        _atomic.refuse_inputs([args.json], [args.model, args.config], args.force)
        _atomic.check_writable(args.json)
    device = latency.check_device(args.device)
    precision = latency.check_precision(args.precision, device)
    for n in ("seq_len", "eval_bytes", "repeats", "threads"):
        if getattr(args, n) < 1:
            raise InputError(f"--{n.replace('_', '-')} must be positive")
    try:
        extra = [int(x) for x in args.prefill_lens.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--prefill-lens {args.prefill_lens!r} is not a comma-separated list of integers") from None
    text_sha = None
    if args.text:  # a missing / unreadable / non-UTF-8 file is one line before the model loads
        from ..evaluate.scoring_text import file_sha256

        text_sha = file_sha256(args.text)
    task_manager = None
    if args.task:  # an lm-eval task whose dataset is not cached is one line here, before any timing
        from ..evaluate.lm_eval_model import find_task

        task_manager = find_task(args.task)
    configs = cfgs.read_file(args.config) if args.config else []
    if not args.latency_only:  # a text shorter than one window (or a tokenizer without a start token) is
        from ..evaluate.scoring_text import load  # one line before the model loads

        load(args.model, args.eval_bytes, args.text, seq_len=args.seq_len)
    lm = load_model(args.model)
    settings = sweep.Settings(device=device, seq_len=args.seq_len, eval_bytes=args.eval_bytes, repeats=args.repeats,
                              threads=args.threads, latency_only=args.latency_only or lm.random_weights,
                              torch_metric=args.backend == "torch", extra_seq_lens=extra,
                              prefill_logits=args.prefill_logits, text=args.text, text_sha256=text_sha)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="actiba-eval-") as tmp:
        run_ = sweep.run_one(lm, [cfgs.baseline(), *configs], settings, precision, Path(tmp))
    failed = [r for r in run_["configs"] if r.error]
    text = run_.get("scoring_text")
    if text:  # which text the number is on: the README's model table scores the whole split differently
        print(text_line(text, args.seq_len))
    for r in run_["configs"]:
        print(_line(r, run_))
    if args.task:
        from ..evaluate.lm_eval_model import run_task

        for c in [cfgs.baseline(), *configs]:
            res = run_task(args.model, args.task, tables.tables_for(c, lm), seq_len=args.seq_len,
                           task_manager=task_manager)
            print(f"lm-eval {args.task} [{c.name}]: " + ", ".join(f"{k}={v:.6g}" for k, v in res.items()))
    if args.json:
        from .._atomic import write_text
        from ..evaluate.row import run_as_json

        write_text(args.json, json.dumps(run_as_json(run_), indent=1, default=str) + "\n")
    if failed:
        raise InputError(f"configuration {failed[0].name} failed: {failed[0].error}")
    if run_.get("random_weights"):
        print("note: random weights: latency only", file=sys.stderr)
    return 0


def text_line(text: dict, seq_len: int) -> str:
    """Which text, how many bytes and tokens, which tokenizer (`scoring_text.ScoringText.describe`)."""
    from ..evaluate.scoring_text import HELDOUT

    tokens = ("byte tokens (id = byte)" if text["tokenizer"] == "bytes"
              else f"tokens of the model's tokenizer ({text['tokenizer']})")
    line = (f"bits/byte on the first {text['bytes']} UTF-8 bytes of {'the ' if text['text'] == HELDOUT else ''}"
            f"{text['text']}: {text['tokens']} {tokens}, {text['windows']} disjoint windows of {seq_len} tokens, "
            "each after the start token; ± is ~95 % over those windows")
    if text["text"] == HELDOUT:
        line += (" (the model table in README.md scores all 398,303 bytes in 1024-byte windows, "
                 "eval/train/RESULTS.md)")
    return line


def _line(r: Row, run: dict) -> str:
    if r.error:
        return f"{r.name}: FAILED {r.error}"
    lat = r.latency_ms
    parts = [f"{r.name}:"]
    if r.metric is not None:
        own = r.metric_halfwidth
        parts.append(f"bits/byte {r.metric:.6f}" + (f" ±{own:.3f}" if own else ""))
        if r.metric_delta_rel is not None and r.name != "baseline":
            hw = r.metric_delta_halfwidth_rel
            parts.append(f"({100 * r.metric_delta_rel:+.3f}%" + (f" ±{100 * hw:.3f}% paired)" if hw else ")"))
    if r.metric_torch is not None:
        parts.append(f"torch {r.metric_torch:.6f}")
    parts.append(f"latency {lat.median:.3f} ms [p10 {lat.p10:.3f}, p90 {lat.p90:.3f}] at {lat.seq_len}")
    if r.speedup is not None:
        parts.append(f"speed-up {r.speedup:.3f}x")
    for n, st in (r.latency_by_seq_len or {}).items():
        parts.append(f"| L={n}: {st.median:.3f} ms")
    parts.append(f"[{run['device']} {run['precision']}, used {(r.compile or {}).get('precision_used')}, "
                 f"{run.get('prefill_logits', 'all')}-position logits timed]")
    return " ".join(parts)
