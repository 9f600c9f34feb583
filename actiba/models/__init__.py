"""Load, run and score HF causal LMs of the architecture registry (Mamba families, and Llama / Qwen /
Gemma / GPT-2 without SSM): the embedded byte-level models, local folders, or hub ids the user already
has cached (actiba never downloads weights).

    model = load("embedded:mamba2")          # or "embedded:mamba", "path/to/folder", "org/name"
    tok = tokenizer("embedded:mamba2")
    print(generate(model, "ROMEO.\\n", 80))
    bpb = score_bits_per_byte(model, actiba.data.heldout_bytes(65536), seq_len=1024)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..errors import InputError
from . import arch
from .arch import mixer_scope
from .scoring import score_bits_per_byte, score_text_bits_per_byte, unigram_bits_per_byte
from .tokenizer import EOS_ID

__all__ = ["EMBEDDED", "embedded_path", "generate", "load", "mixer_scope", "resolve", "score_bits_per_byte",
           "score_text_bits_per_byte", "tokenizer", "unigram_bits_per_byte"]

EMBEDDED = ("mamba2", "mamba")
SUPPORTED_TYPES = arch.supported()
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def embedded_path(kind: str) -> Path:
    """Folder of the embedded model `kind` ("mamba2" or "mamba") shipped as package data."""
    if kind not in EMBEDDED:
        raise InputError(f"unknown embedded model {kind!r}; choose one of: "
                         + ", ".join(f"embedded:{k}" for k in EMBEDDED))
    return Path(__file__).resolve().parent.parent / "embedded" / kind


def resolve(name: str) -> tuple[str, bool]:
    """Map a model name to (path or hub id, is_local_folder); raise InputError if it cannot exist."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("model name is empty")
    if name.startswith("embedded:"):
        folder = embedded_path(name.split(":", 1)[1])
        if not (folder / "config.json").is_file():
            raise InputError(f"embedded model {name} is not installed (no {folder}/config.json); "
                             "train it with eval/train/train_embedded.py")
        return str(folder), True
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(f"model folder {path} has no config.json")
        return str(path), True
    if path.exists():
        raise InputError(f"model {name} is a file, not a model folder")
    if _HUB_ID.match(name) and not name.startswith((".", "~")):
        return name, False
    raise InputError(f"model folder {name} does not exist (and it is not a hub id like org/name)")


def _check_type(config: Any, name: str) -> None:
    arch.require(config, name)  # refuses, with the reason, what cannot run end to end


def load(name: str, dtype: str = "float32") -> Any:
    """Load a registry causal LM in eval mode, offline; any failure is one InputError line."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    where, local = resolve(name)
    try:
        config = AutoConfig.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as exc:
        if not local:
            raise InputError(f"hub model {name} is not in the local Hugging Face cache "
                             "(actiba never downloads; fetch it yourself first)") from None
        raise InputError(f"cannot read the config of {name}: {_first_line(exc)}") from None
    _check_type(config, name)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(where, config=config, local_files_only=True,
                                                           dtype=getattr(torch, dtype), output_loading_info=True)
    except Exception as exc:  # safetensors / torch raise many types for broken files
        raise InputError(f"cannot load the weights of {name}: {_first_line(exc)}") from None
    # transformers fills missing or mis-shaped tensors with random values and only warns: refuse that
    bad = sorted(set(info.get("missing_keys") or ()) | {str(k[0]) if isinstance(k, tuple) else str(k)
                                                         for k in info.get("mismatched_keys") or ()})
    if bad:
        raise InputError(f"weights of {name} do not fit its config: {len(bad)} tensors missing or mis-shaped "
                         f"(first: {bad[0]})")
    return model.eval()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def tokenizer(name: str) -> Any:
    """The tokenizer saved with model `name` (for embedded models: the byte-level one), offline."""
    from transformers import AutoTokenizer

    where, local = resolve(name)
    try:
        return AutoTokenizer.from_pretrained(where, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the tokenizer of {name}: {_first_line(exc)}") from None


def generate(model: Any, text: str, n: int = 64, tok: Any = None) -> str:
    """Greedy continuation of `text` by `n` tokens (a smoke test). Without `tok`, ids are bytes."""
    import torch

    if tok is None:
        ids = [EOS_ID, *text.encode("utf-8")]
    else:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if tok.bos_token_id is not None:
            ids = [tok.bos_token_id, *ids]
    input_ids = torch.tensor([ids], dtype=torch.long)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=n,
                             do_sample=False, pad_token_id=model.config.pad_token_id)
    new = out[0, input_ids.shape[1]:].tolist()
    if tok is not None:
        return tok.decode(new, skip_special_tokens=True)
    return bytes(i for i in new if i < 256).decode("utf-8", errors="replace")
