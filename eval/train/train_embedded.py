"""Train the embedded byte-level Mamba-2 / Mamba models on the Shakespeare corpus (fixed seed, 1 thread).

Usage (from the repository root; each run takes about 25 minutes on one CPU thread)::

    python eval/train/train_embedded.py --model mamba2 --log eval/train/log_mamba2.txt
    python eval/train/train_embedded.py --model mamba  --log eval/train/log_mamba.txt

Each training sequence is the start token (id 256) followed by `seq_len` - 1 bytes taken at a random
offset of the training split, and the model predicts the `seq_len` bytes after the start token -- the
same convention `actiba.models.score_bits_per_byte` and lm-eval's rolling log-likelihood use. Mamba v1
trains through `actiba.models.mamba_scan`'s recurrent scan (same numbers as HF's torch path, but with a
linear-time backward; HF's own loop is quadratic in length under autograd). Weights are saved as fp16
safetensors and the held-out score is measured on the saved (reloaded) model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from actiba import data  # noqa: E402
from actiba.models.mamba_scan import patch_scan, unpatch_scan  # noqa: E402
from actiba.models.scoring import score_bits_per_byte, unigram_bits_per_byte  # noqa: E402
from actiba.models.tokenizer import EOS_ID, PAD_ID, VOCAB_SIZE, save_byte_tokenizer  # noqa: E402

DEFAULTS = {
    "mamba2": {"steps": 800, "batch": 16, "seq_len": 256, "lr": 3e-3},
    "mamba": {"steps": 550, "batch": 16, "seq_len": 256, "lr": 3e-3},
}


def make_model(kind: str) -> torch.nn.Module:
    """A fresh model of the embedded architecture (hidden 256, 4 layers, byte vocabulary)."""
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

    common = dict(vocab_size=VOCAB_SIZE, hidden_size=256, num_hidden_layers=4, expand=2, conv_kernel=4,
                  bos_token_id=EOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, tie_word_embeddings=True,
                  use_cache=True)
    if kind == "mamba2":
        cfg = Mamba2Config(head_dim=64, num_heads=8, n_groups=1, state_size=64, chunk_size=64, **common)
        return Mamba2ForCausalLM(cfg)
    if kind == "mamba":
        return MambaForCausalLM(MambaConfig(state_size=16, **common))
    raise SystemExit(f"unknown model kind {kind!r}")


def machine() -> str:
    from actiba.evaluate.report import cpu_name

    return f"{cpu_name()}; {os.cpu_count()} logical CPUs; {platform.platform()}; torch {torch.__version__}"


def lr_at(step: int, steps: int, peak: float, warmup: int = 30) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save(model: torch.nn.Module, out: Path) -> None:
    """Write fp16 safetensors, config, generation config and tokenizer; replace `out` only when complete."""

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.half().save_pretrained(tmp, safe_serialization=True)
        model.float()
        save_byte_tokenizer(tmp)
        tmp.chmod(0o755)
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(DEFAULTS), required=True)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="default: actiba/embedded/<model>")
    ap.add_argument("--log", type=Path, help="default: eval/train/log_<model>.txt")
    ap.add_argument("--eval-every", type=int, default=100)
    args = ap.parse_args()
    cfg = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in DEFAULTS[args.model].items()}
    out = args.out or ROOT / "actiba" / "embedded" / args.model
    log_path = args.log or ROOT / "eval" / "train" / f"log_{args.model}.txt"

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    log_file = open(log_path, "w", buffering=1)

    def log(msg: str) -> None:
        print(msg, flush=True)
        log_file.write(msg + "\n")

    log(f"command: python {' '.join(shlex.quote(a) for a in sys.argv)}")
    log(f"machine: {machine()}")
    log(f"started: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    train = data.load_split("train")
    heldout = data.load_split("heldout")
    log(f"corpus: {data.PACKAGE} train {len(train)} bytes, held-out {len(heldout)} bytes "
        f"({', '.join(data.HELDOUT_FILES)})")
    train_t = torch.frombuffer(bytearray(train), dtype=torch.uint8)
    probe = heldout[:16384]

    model = make_model(args.model)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {type(model).__name__} {n_params} parameters; {json.dumps(cfg)} seed {args.seed}")
    if args.model == "mamba":
        patch_scan(model, "recurrent")
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "A_log" in name or name.endswith(".D") else decay).append(p)
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(0.9, 0.95))
    seq_len, batch = cfg["seq_len"], cfg["batch"]
    start = torch.full((batch, 1), EOS_ID, dtype=torch.long)
    t0 = time.time()
    log("step  loss_bits_per_byte  lr  elapsed_s   [probe: held-out bits/byte on the first 16 kB]")
    running = 0.0
    for step in range(cfg["steps"]):
        model.train()
        offsets = torch.randint(0, len(train_t) - seq_len, (batch,), generator=gen)
        target = torch.stack([train_t[o:o + seq_len] for o in offsets.tolist()]).long()
        ids = torch.cat([start, target[:, :-1]], dim=1)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg["steps"], cfg["lr"])
        logits = model(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        running += loss.item()
        if (step + 1) % 10 == 0:
            log(f"{step + 1:5d}  {running / 10 / math.log(2):.4f}  {opt.param_groups[0]['lr']:.2e}  "
                f"{time.time() - t0:8.1f}")
            running = 0.0
        if (step + 1) % args.eval_every == 0 or step + 1 == cfg["steps"]:
            model.eval()
            bpb = score_bits_per_byte(model, probe, seq_len=seq_len)
            log(f"{step + 1:5d}  probe {bpb:.4f}")
    train_s = time.time() - t0
    log(f"training time: {train_s:.0f} s ({train_s / 60:.1f} min)")

    if args.model == "mamba":
        unpatch_scan(model)
    save(model, out)
    log(f"saved: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")

    from actiba.models import load

    reloaded = load(str(out)).eval()
    if args.model == "mamba":
        patch_scan(reloaded, "chunked")
    results = {"model": args.model, "parameters": n_params, "train_seconds": round(train_s), **cfg,
               "unigram_bits_per_byte": unigram_bits_per_byte(train, heldout)}
    for ctx in (seq_len, 1024):
        t1 = time.time()
        results[f"heldout_bits_per_byte_seq{ctx}"] = score_bits_per_byte(reloaded, heldout, seq_len=ctx)
        log(f"held-out bits/byte (saved fp16 weights, windows of {ctx}): "
            f"{results[f'heldout_bits_per_byte_seq{ctx}']:.4f}  ({time.time() - t1:.0f} s)")
    log(f"unigram baseline (train byte frequencies) bits/byte: {results['unigram_bits_per_byte']:.4f}")
    (log_path.parent / f"metrics_{args.model}.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"finished: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")


if __name__ == "__main__":
    main()
