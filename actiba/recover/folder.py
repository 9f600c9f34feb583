"""Where tuned weights go: a new folder beside the model, never over it, written whole or not at all.

Why so strict: a fine-tune changes weights, and the original (often the only copy, or package data)
must survive any mistake in -o. The output may not be the model's folder, inside it, an ancestor of
it, or the package's embedded folder (not even with --force); an existing non-empty folder needs
--force. Files are written into a temporary sibling that is renamed into place only when complete.

The folder mirrors `eval/train/train_embedded.py`'s `save`: config + safetensors (in the base
weights' dtype by default, so a tuned embedded model stays fp16), generation config and the tokenizer
files copied from the base (or the byte tokenizer for byte-level models without one), so it loads with
`actiba.models.load(folder)` and lm-eval's `hf` model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .._atomic import file_sha256
from ..errors import InputError

SUFFIX = "-actiba-tuned"
META_FILE = "actiba-finetune.json"
_WEIGHT_GLOBS = ("*.safetensors", "*.bin")
_TOKENIZER_GLOBS = ("tokenizer*.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
                    "vocab.*", "merges.txt", "chat_template*", "generation_config.json")
_DTYPES = ("float32", "float16", "bfloat16")


def _embedded_root() -> Path:
    from ..models import embedded_path

    return embedded_path("mamba2").parent.resolve()


def default_out_dir(name: str, model_folder: str | os.PathLike | None) -> Path:
    """`<model folder>-actiba-tuned` beside a local model; `./<name>-actiba-tuned` for embedded/hub ones."""
    if name.startswith("embedded:"):
        return Path.cwd() / f"{name.split(':', 1)[1]}{SUFFIX}"
    if model_folder is not None:
        folder = Path(model_folder).resolve()
        return folder.parent / f"{folder.name}{SUFFIX}"
    return Path.cwd() / f"{name.replace('/', '--')}{SUFFIX}"


def check_out_dir(out: str | os.PathLike, protect: Iterable[str | os.PathLike | None] = (),
                  force: bool = False) -> Path:
    """The resolved output folder, or InputError if writing it could touch a protected folder.

    Protected: every folder in `protect` (the model's) and the package's embedded models — neither the
    folder itself, anything inside it, nor an ancestor of it (replacing that would delete the model).
    """
    target = Path(out).expanduser().resolve()
    guarded = [Path(p).expanduser().resolve() for p in protect if p is not None] + [_embedded_root()]
    for p in guarded:
        if target == p or target.is_relative_to(p):
            raise InputError(f"refusing to write the tuned model to {target}: it is inside the model folder "
                             f"{p} (tuned weights go beside the model, never over it)")
        if p.is_relative_to(target):
            raise InputError(f"refusing to write the tuned model to {target}: it contains the model folder {p}")
    if not target.parent.is_dir():
        raise InputError(f"cannot write {target}: folder {target.parent} does not exist")
    if target.exists():
        if not target.is_dir():
            raise InputError(f"cannot write the tuned model to {target}: it is a file")
        if any(target.iterdir()) and not force:
            raise InputError(f"output folder {target} exists and is not empty (use --force to replace it)")
    return target


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, protect: Iterable[str | os.PathLike | None] = (),
                  force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `out`; on success it replaces `out`, on any failure it is removed."""
    protect = list(protect)
    target = check_out_dir(out, protect, force)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        target = check_out_dir(target, protect, force)  # again: the world may have changed meanwhile
        tmp.chmod(0o755)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "x")
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def weights_fingerprint(folder: str | os.PathLike | None) -> dict[str, str]:
    """{file name: sha256} of the weight files of a model folder (empty without a folder)."""
    if folder is None:
        return {}
    root = Path(folder)
    files = sorted({p for g in _WEIGHT_GLOBS for p in root.glob(g) if p.is_file()})
    return {p.name: file_sha256(p) for p in files}


def base_dtype(model_folder: str | os.PathLike | None) -> str:
    """The dtype the base weights are stored in (config `dtype`/`torch_dtype`), float32 if unknown."""
    if model_folder is None:
        return "float32"
    try:
        cfg = json.loads((Path(model_folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    value = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").replace("torch.", "")
    return value if value in _DTYPES else "float32"


def write_model(model: Any, folder: str | os.PathLike, base_folder: str | os.PathLike | None = None,
                dtype: str = "float32") -> None:
    """Save `model` (weights in `dtype`), generation config and tokenizer files into `folder`.

    The in-memory model is rounded to `dtype` and put back in float32, so afterwards it computes
    exactly what the saved folder will when reloaded (the after-tuning numbers describe the files).
    """
    import torch

    if dtype not in _DTYPES:
        raise InputError(f"unknown save dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
    out = Path(folder)
    model.to(getattr(torch, dtype)).save_pretrained(out, safe_serialization=True)
    model.float()
    copied = []
    if base_folder is not None:
        for g in _TOKENIZER_GLOBS:
            for p in Path(base_folder).glob(g):
                if p.is_file():
                    shutil.copyfile(p, out / p.name)
                    copied.append(p.name)
    if not any(n.startswith("tokenizer") for n in copied):
        _byte_tokenizer(model, out)
    for p in out.iterdir():
        p.chmod(0o644)


def _byte_tokenizer(model: Any, out: Path) -> None:
    """Byte-level models without tokenizer files get the embedded models' byte tokenizer (as training does)."""
    from ..models.tokenizer import VOCAB_SIZE, save_byte_tokenizer

    if int(getattr(model.config, "vocab_size", 0)) != VOCAB_SIZE:
        return  # not a byte-level model: nothing sensible to invent
    save_byte_tokenizer(out, overwrite_generation_config=False)


def save_folder(model: Any, out: str | os.PathLike, *, base_folder: str | os.PathLike | None = None,
                meta: dict[str, Any] | None = None, dtype: str | None = None, force: bool = False) -> Path:
    """Write the tuned model folder `out` atomically (never over `base_folder`); returns its path.

    `dtype` defaults to the base weights' dtype; `meta` is written as `actiba-finetune.json`.
    """
    with staged_folder(out, [base_folder], force) as tmp:
        write_model(model, tmp, base_folder, dtype or base_dtype(base_folder))
        if meta is not None:
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            (tmp / META_FILE).chmod(0o644)
    return Path(out).expanduser().resolve()
