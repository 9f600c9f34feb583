"""Byte-level tokenizer for the embedded models: token id b is the byte b, plus two special ids.

Why the `tokenizers` library: a `PreTrainedTokenizerFast` saved as ``tokenizer.json`` loads offline
with ``AutoTokenizer.from_pretrained(folder)`` and in lm-eval's ``hf`` model, with no custom code.
There are no merges and no normalization, so encoding any UTF-8 text and decoding it gives it back.
"""

from __future__ import annotations

from typing import Any

N_BYTES = 256
EOS_TOKEN = "<|endoftext|>"  # id 256: also used as BOS (the "start of context" marker in training)
PAD_TOKEN = "<pad>"  # id 257
EOS_ID = 256
PAD_ID = 257
VOCAB_SIZE = 258


def byte_to_char() -> dict[int, str]:
    """The GPT-2 style reversible byte -> printable character map used by ByteLevel pre-tokenizers."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(N_BYTES):
        if b not in mapping:
            mapping[b] = chr(N_BYTES + extra)
            extra += 1
    return mapping


def build_tokenizer(model_max_length: int = 1 << 20) -> Any:
    """A `transformers.PreTrainedTokenizerFast` mapping bytes to ids 0..255 (EOS 256, PAD 257)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in byte_to_char().items()}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], fuse_unk=False))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens([EOS_TOKEN, PAD_TOKEN])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    assert tok.convert_tokens_to_ids(EOS_TOKEN) == EOS_ID and tok.convert_tokens_to_ids(PAD_TOKEN) == PAD_ID
    return tok


def save_byte_tokenizer(folder: Any, overwrite_generation_config: bool = True) -> None:
    """Write the byte tokenizer and a matching generation config into a model folder.

    Why here: both the training script and `actiba finetune` must write folders that load with
    `actiba.models.load` and lm-eval's `hf` model; the tokenizer class is written as
    PreTrainedTokenizerFast, the name every transformers version knows."""
    import json
    from pathlib import Path

    from transformers import GenerationConfig

    out = Path(folder)
    if overwrite_generation_config or not (out / "generation_config.json").is_file():
        GenerationConfig(bos_token_id=EOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, do_sample=False,
                         max_new_tokens=64).save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
