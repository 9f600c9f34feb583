"""bits/byte with a model's own tokenizer: equal to the byte-level scorer on the byte tokenizer, and to
an unbatched float64 recomputation on a real BPE tokenizer (multi-byte UTF-8 text)."""

import math

import numpy as np
import pytest

from actiba.errors import InputError
from actiba.models import score_bits_per_byte, score_text_bits_per_byte

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXT = ("Thou naïve café-keeper — wilt thou sell me ‘crème brûlée’ at twelve o’clock? " * 3
        + "Ay, marry, and Ærøskøbing’s finest smørrebrød too. ") * 4


def _tiny_mamba2(vocab):
    cfg = transformers.Mamba2Config(hidden_size=32, num_hidden_layers=1, vocab_size=vocab, num_heads=4,
                                    head_dim=16, state_size=8, n_groups=1, chunk_size=8)
    torch.manual_seed(1)
    return transformers.Mamba2ForCausalLM(cfg).eval()


def _bpe(vocab_size=320):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>")


def test_byte_tokenizer_is_the_byte_scorer():
    from actiba.models.tokenizer import VOCAB_SIZE, build_tokenizer

    model = _tiny_mamba2(VOCAB_SIZE)
    a = score_text_bits_per_byte(model, TEXT, build_tokenizer(), seq_len=64)
    b = score_bits_per_byte(model, TEXT.encode("utf-8"), seq_len=64)
    assert a == pytest.approx(b, rel=1e-12)


def test_bpe_matches_an_unbatched_recomputation():
    tok = _bpe()
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(TEXT.encode("utf-8")) / 1.5  # merges happened: tokens are not bytes
    model = _tiny_mamba2(len(tok))
    seq = 37  # not a divisor of the token count: a short tail window
    got = score_text_bits_per_byte(model, TEXT, tok, seq_len=seq, batch_size=3)
    nats = 0.0
    with torch.inference_mode():
        for i in range(0, len(ids), seq):
            w = ids[i:i + seq]
            inp = torch.tensor([[tok.bos_token_id, *w[:-1]]])
            logits = model(input_ids=inp).logits[0].double().numpy()
            logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
            nats += float(np.sum(logz - logits[np.arange(len(w)), w]))
    assert got == pytest.approx(nats / math.log(2) / len(TEXT.encode("utf-8")), rel=1e-6)


def test_tokenizer_without_start_token_is_refused():
    tok = _bpe()
    tok.bos_token = None
    tok.eos_token = None
    with pytest.raises(InputError, match="neither a BOS nor an EOS"):
        score_text_bits_per_byte(_tiny_mamba2(len(tok)), TEXT, tok, seq_len=16)
