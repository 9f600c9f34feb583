"""`actiba finetune MODEL (--act FUNC=TABLE.json | --segments N | --act softplus=relu) [-o OUT_DIR]`.

Recovers accuracy lost to coarse tables: trains the model briefly with the tables in place, measures
held-out bits/byte (exact model, tables before tuning, tables after tuning, tuned model with exact
activations; one held-out prefix for all four), and saves the tuned model as a new folder beside the
original (`<model folder>-actiba-tuned`; `./<name>-actiba-tuned` for embedded models) with
`actiba-finetune.json` recording the base model, its weight hashes, the tables, settings and numbers.
It never writes over the model (see `actiba.recover.folder`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help="short fine-tune with activation tables in place; saves beside the model")
    p.add_argument("model", metavar="MODEL", help="model folder, embedded:mamba2|embedded:mamba, or a cached hub id")
    p.add_argument("--act", action="append", default=[], metavar="FUNC=TABLE.json",
                   help="table for FUNC (silu, softplus, ...); softplus=relu is XAMBA's ReLU; repeatable")
    p.add_argument("--segments", type=int, metavar="N", help="fitted N-segment tables for both silu and softplus "
                   "(asymptote tails; --act wins for its function)")
    p.add_argument("--act-set", metavar="SET.json", help="per-site tables (actiba-pwl-set/1); --act fills in")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=3e-4,
                   help="peak learning rate (AdamW, cosine to 10%%; 1e-3 hurt the exact model in the study)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=256, help="training and scoring window (bytes)")
    p.add_argument("--grad", choices=["table", "ste"], default="table",
                   help="table: the lowering's slope; ste: forward table, backward exact derivative")
    p.add_argument("--train-params", default="all", choices=["all", "mixer"], help="which weights to train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-bytes", type=int, default=32768, help="held-out prefix scored before and after")
    p.add_argument("--save-dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="dtype of the saved weights (auto: as the base model's files)")
    p.add_argument("--force", action="store_true", help="replace a non-empty OUT_DIR (never the model's folder)")
    p.add_argument("-o", "--output", metavar="OUT_DIR", help="default: beside the model, <folder>-actiba-tuned")
    p.set_defaults(run=run)


def _act_tables(args) -> tuple[dict[str, Any], dict[str, Any]]:
    """(function -> Table, function -> its JSON for the record); InputError for any bad piece."""
    from ..evaluate.tables import fitted_table, relu_table
    from ..rewrite import spec
    from ..table import load

    tables: dict[str, Any] = {}
    if args.segments is not None:
        if args.segments < 1:
            raise InputError(f"--segments must be a positive integer, got {args.segments}")
        for fn in ("silu", "softplus"):
            tables[fn] = fitted_table(fn, args.segments)
    for item in args.act:
        fn, sep, value = item.partition("=")
        fn, value = spec.canonical_function(fn), value.strip()
        if not sep or not fn or not value:
            raise InputError(f"--act expects FUNC=TABLE.json (or softplus=relu), got {item!r}")
        if fn not in spec.ACT_FUNCTIONS:
            raise InputError(f"--act {fn}: unknown function; known: {', '.join(spec.ACT_FUNCTIONS)}")
        if value == "relu":
            if fn != "softplus":
                raise InputError("--act ...=relu stands for XAMBA's ReLU-for-Softplus: use softplus=relu")
            tables[fn] = relu_table()
        else:
            tables[fn] = load(value)
    return tables, {fn: t.to_dict() for fn, t in tables.items()}


def _check_numbers(args) -> None:
    for name in ("steps", "batch", "seq_len", "eval_bytes"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be a positive integer")
    if not args.lr > 0:
        raise InputError(f"--lr must be positive, got {args.lr}")
    if args.eval_bytes < args.seq_len:
        raise InputError(f"--eval-bytes {args.eval_bytes} is shorter than one window (--seq-len {args.seq_len})")


def _progress(steps: int):
    """Progress over steps: a live display on a terminal, a plain line every ~10 % otherwise (DESIGN §3)."""
    from ._progress import Progress

    bar = Progress(steps, "step", every=max(1, steps // 10), title="finetune")

    def tick(step: int, total: int, loss: float) -> None:
        bar.step(f"bits/byte {loss:.3f}")
        bar.advance(f"train bits/byte {loss:.3f}" if bar.mode == "plain" else "")

    return tick, bar


def run(args) -> int:
    _check_numbers(args)
    tables, record = _act_tables(args)
    tset = None
    if args.act_set:
        from ..tableset import load_set

        tset = load_set(args.act_set)
    if not tables and tset is None:
        raise InputError("nothing to tune for: give --act FUNC=TABLE.json, --segments N or --act-set SET.json")

    from .._version import __version__
    from ..models import resolve
    from ..recover import folder as fo

    random = args.model.startswith("random:")
    model_folder = None
    if not random:
        where, local = resolve(args.model)
        model_folder = str(Path(where).resolve()) if local else None
    if args.output == "-":
        raise InputError("-o -: a tuned model is a folder, it cannot go to standard output; give a folder path")
    out = args.output or fo.default_out_dir(args.model, model_folder)
    fo.check_out_dir(out, [model_folder], args.force)  # fail before the slow part

    import dataclasses

    from ..calibrate.stats import model_fingerprint
    from ..data import load_split
    from ..evaluate.build import load_model
    from ..evaluate.perplexity import heldout, torch_bits_per_byte
    from ..recover import finetune

    lm = load_model(args.model)
    model = lm.model.float().eval()
    base_fp = model_fingerprint(lm)
    base_files = fo.weights_fingerprint(model_folder)
    scope_tables: Any = tables
    if tset is not None:
        from ..rewrite.torch_rw import check_set_model

        check_set_model(tset, model)  # against the base model; the tuned one then uses the same tables
        scope_tables = {**dataclasses.replace(tset, model=None).tables, **tables}
        record = {"set": tset.to_dict(), **record}
    data = heldout(args.eval_bytes)

    def bpb(with_tables: bool) -> float:
        return torch_bits_per_byte(model, data, args.seq_len, scope_tables if with_tables else None)

    exact = bpb(False)
    before = bpb(True)
    tick, bar = _progress(args.steps)
    with bar:
        result = finetune(model, scope_tables, load_split("train"), steps=args.steps, lr=args.lr,
                          seq_len=args.seq_len, batch=args.batch, grad=args.grad,
                          train_params=args.train_params, seed=args.seed, progress=tick)
    dtype = fo.base_dtype(model_folder) if args.save_dtype == "auto" else args.save_dtype
    import json

    with fo.staged_folder(out, [model_folder], args.force) as tmp:
        fo.write_model(model, tmp, model_folder, dtype)  # rounds the model to what the files hold
        after = bpb(True)
        tuned_exact = bpb(False)
        numbers = {"exact": exact, "tables_before": before, "tables_after": after, "tuned_exact": tuned_exact}
        lost = before - exact
        recovered = (before - after) / lost if lost > 0 else None
        meta = {
            "format": "actiba-finetune/1",
            "actiba": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "base_model": {"name": args.model, "folder": model_folder, "weights_sha256": base_files,
                           "fingerprint": base_fp},
            "tables": record,
            "settings": {**result.settings, "saved_dtype": dtype, "eval_bytes": args.eval_bytes,
                         "eval_seq_len": args.seq_len, "eval_split": "heldout (prefix)"},
            "bits_per_byte": numbers,
            "recovered_fraction": recovered,
            "train_seconds": round(result.seconds, 1),
            "train_loss_bits_per_byte": [round(v, 5) for v in result.losses],
        }
        (tmp / fo.META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        (tmp / fo.META_FILE).chmod(0o644)
    target = Path(out).expanduser().resolve()
    rec = f"{100 * recovered:.0f} % of the table loss recovered" if recovered is not None else "tables cost nothing"
    print(f"exact model        {exact:.4f} bits/byte (held-out prefix of {len(data)} bytes, windows of {args.seq_len})")
    print(f"tables before/after {before:.4f} -> {after:.4f} bits/byte ({rec}; {args.steps} steps, "
          f"grad={args.grad}, {result.seconds:.0f} s)")
    print(f"saved {target} ({dtype}; tuned model with exact activations: {tuned_exact:.4f} bits/byte)")
    return 0
