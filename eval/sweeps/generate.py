"""Write the built-in sweeps out as the files in this folder: ``python eval/sweeps/generate.py``.

Why generated: the files are documented as `actiba.evaluate.configs.default_sweep` written out, and
hand-kept copies drifted from it by 4-6 configurations; tests/test_configs.py checks they are equal.
The Mamba-2 sweeps use the embedded model's SSD chunk length (64), read from its config.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def files() -> dict[str, str]:
    """File name -> text, for every built-in sweep of both embedded models."""
    sys.path.insert(0, str(ROOT))
    from actiba.evaluate.configs import builtin_sweep, sweep_document

    chunk = json.loads((ROOT / "actiba" / "embedded" / "mamba2" / "config.json").read_text())["chunk_size"]
    out = {}
    for name in ("quick", "default", "full"):
        out[f"{name}_mamba2.json"] = sweep_document(builtin_sweep(name, "mamba2", chunk))
        out[f"{name}_mamba.json"] = sweep_document(builtin_sweep(name, "mamba"))
    return out


if __name__ == "__main__":
    for name, text in files().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote eval/sweeps/{name}")
