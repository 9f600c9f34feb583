"""The scoring text (`evaluate.scoring_text`): byte tokenizer = the old byte windows bit for bit; a real BPE
tokenizer = torch's `score_text_bits_per_byte` through the sweep's OpenVINO graph; `--text FILE` in the CLI."""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from _cli import one_line, run  # noqa: E402

from actiba.errors import InputError  # noqa: E402
from actiba.evaluate import scoring_text as st  # noqa: E402

TEXT = ("Thou naïve café-keeper — wilt thou sell me ‘crème brûlée’ at twelve o’clock? "
        "Ay, marry, and Ærøskøbing’s finest smørrebrød too. ") * 12


def _old_window_nats(logits_fn, data: bytes, seq_len: int) -> list[float]:
    """`perplexity.window_nats` as committed before the scoring text (byte ids, start id 256), verbatim."""
    usable = len(data) - len(data) % seq_len
    arr = torch.tensor(list(data[:usable]), dtype=torch.long)
    out = []
    with torch.inference_mode():
        for i in range(0, usable, seq_len):
            target = arr[i:i + seq_len][None]
            ids = torch.cat([torch.full((1, 1), 256, dtype=torch.long), target[:, :-1]], dim=1)
            logp = torch.log_softmax(torch.as_tensor(logits_fn(ids)).float(), dim=-1)
            out.append(-logp.gather(-1, target[..., None]).sum().item())
    return out


@pytest.mark.parametrize("name", ["embedded:mamba2", "embedded:mamba"])
def test_byte_tokenizer_windows_are_the_old_ones_bit_for_bit(name):
    """The embedded models' tokenizer is recognised as bytes, and every per-window nat and the bits/byte
    (as the sweep's `measure.score` computes them) equal the old byte-id computation exactly."""
    from actiba.data import heldout_bytes
    from actiba.evaluate.build import load_model
    from actiba.evaluate.perplexity import bits_per_byte_of, torch_logits_fn, window_nats, windows_bits_per_byte

    seq, n = 32, 32 * 3 + 17  # a tail that is dropped
    text = st.load(name, n)
    assert text.is_bytes and text.tokenizer == st.BYTES and text.start_id == 256 and text.token_key() is None
    data = heldout_bytes(n)
    assert bytes(text.ids) == data
    lm = load_model(name)
    fn = torch_logits_fn(lm.model)
    old = _old_window_nats(fn, data, seq)
    new = window_nats(fn, text, seq)
    assert new == old  # exact
    old_bpb = sum(old) / math.log(2) / (len(old) * seq)
    assert bits_per_byte_of(new, seq, text.n_bytes(seq)) == old_bpb
    assert text.n_bytes(seq) == 3 * seq and text.describe(seq)["tokens"] == 3 * seq
    assert windows_bits_per_byte(fn, text, seq) == windows_bits_per_byte(fn, data, seq)


def _bpe(vocab_size=300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    """A tiny random Llama saved with a small BPE tokenizer trained on TEXT (real merges, multi-byte text)."""
    from actiba.models import arch

    tok = _bpe()
    cfg = transformers.AutoConfig.for_model("llama", **{**arch.ARCHITECTURES["llama"].tiny,
                                                         "vocab_size": len(tok)})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    folder = tmp_path_factory.mktemp("bpe-llama")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    text = folder.parent / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    return folder, text, model, tok


def test_bpe_text_windows_and_bytes(llama_folder):
    folder, text_file, _, tok = llama_folder
    t = st.load(str(folder), None, str(text_file))
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    assert not t.is_bytes and list(t.ids) == ids and t.start_id == tok.bos_token_id
    assert len(ids) < len(TEXT.encode()) / 1.5  # merges happened: tokens are not bytes
    assert t.byte_ends[-1] == len(TEXT.encode("utf-8"))
    seq = 16
    n = t.n_windows(seq) * seq
    covered = tok.decode(ids[:n])  # the byte count of whole windows is the decoded tokens' UTF-8 length
    assert t.n_bytes(seq) == len(covered.encode("utf-8"))
    # --eval-bytes cuts at a character boundary: 'ï' is 2 bytes at offset 6..8, a cut at 7 keeps "Thou na"
    assert st.load(str(folder), 7, str(text_file)).byte_ends[-1] == 7
    assert st.utf8_prefix("naï".encode(), 3) == b"na"


@pytest.mark.slow
def test_sweep_graph_agrees_with_torch_on_a_bpe_model(llama_folder, tmp_path):
    """The sweep's OpenVINO graph on the model's BPE tokens = `score_text_bits_per_byte` in torch (an
    independent batched computation) on the text its whole windows cover."""
    from actiba.evaluate import configs as cfgs
    from actiba.evaluate import sweep
    from actiba.evaluate.build import load_model
    from actiba.models import score_text_bits_per_byte

    folder, text_file, model, tok = llama_folder
    seq = 16
    settings = sweep.Settings(seq_len=seq, eval_bytes=len(TEXT.encode()), repeats=2, warmup=1,
                              prefill_logits="all", text=str(text_file), text_sha256=st.file_sha256(str(text_file)))
    lm = load_model(str(folder))
    out = sweep.run_one(lm, [cfgs.baseline()], settings, "f32", tmp_path)
    row = out["baseline"]
    assert row.error is None, row.error
    t = st.load(str(folder), None, str(text_file))
    n = t.n_windows(seq) * seq
    covered = tok.decode(list(t.ids[:n]))
    assert tok(covered, add_special_tokens=False)["input_ids"] == list(t.ids[:n])  # same tokens again
    want = score_text_bits_per_byte(model, covered, tok, seq_len=seq, batch_size=4)
    assert row.metric == pytest.approx(want, rel=1e-5)
    assert len(row.metric_windows) == t.n_windows(seq)
    assert out["scoring_text"] == {"text": str(text_file), "tokenizer": str(folder), "bytes": len(covered.encode()),
                                   "tokens": n, "windows": n // seq}
    assert out["settings"]["eval_bytes_scored"] == len(covered.encode())
    assert out["settings"]["tokens"] == t.token_key() is not None  # BPE rows never reuse byte-id rows
    kept = {k: v for k, v in out["settings"].items() if k in sweep.Settings.__dataclass_fields__}
    assert sweep.Settings(**{**kept, "tokens": None}).key() != sweep.Settings(**kept).key()


def test_held_out_byte_runs_keep_their_cache_keys():
    """Without --text and with byte ids the key is computed as before the new fields (existing caches and
    committed runs stay valid)."""
    import hashlib
    from dataclasses import asdict

    from actiba.evaluate.settings import CACHE_VERSION, Settings

    s = Settings(seq_len=64, eval_bytes=4096)
    d = {k: v for k, v in asdict(s).items() if k not in ("profile", "emulate", "text", "text_sha256", "tokens")}
    assert s.key() == hashlib.sha256(json.dumps([CACHE_VERSION, d], sort_keys=True).encode()).hexdigest()[:12]


def test_text_file_is_part_of_the_cache_key(tmp_path):
    from actiba.evaluate.settings import Settings

    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one"), b.write_text("two")
    base = Settings()
    ka = Settings(text=str(a), text_sha256=st.file_sha256(str(a))).key()
    kb = Settings(text=str(a), text_sha256=st.file_sha256(str(b))).key()
    assert len({base.key(), ka, kb}) == 3
    assert Settings(text=str(b), text_sha256=st.file_sha256(str(a))).key() == ka  # content, not path


def test_bad_text_files_are_one_line(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9".encode("latin-1"))
    short = tmp_path / "short.txt"
    short.write_text("too short", encoding="utf-8")
    for f, msg in [(tmp_path / "missing.txt", "cannot read --text"), (bad, "not UTF-8"),
                   (short, "shorter than one window")]:
        rc, _, err = run(capsys, "eval", "embedded:mamba2", "--text", f, "--seq-len", "64", "--repeats", "1")
        assert msg in one_line(rc, err)
    with pytest.raises(InputError, match="shorter than one window"):
        st.load("embedded:mamba2", None, str(short), seq_len=64)


@pytest.mark.slow
def test_eval_cli_says_which_text_and_tokenizer(llama_folder, tmp_path, capsys):
    folder, text_file, _, _ = llama_folder
    rc, out, err = run(capsys, "eval", folder, "--text", text_file, "--seq-len", "16", "--repeats", "2",
                       "--json", tmp_path / "r.json")
    assert rc == 0, err
    assert f"of {text_file}:" in out and f"tokens of the model's tokenizer ({folder})" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["scoring_text"]["tokenizer"] == str(folder) and doc["scoring_text"]["text"] == str(text_file)


PAGES = ["Thou naive cafe keeper wilt thou sell me cream at twelve\nAy marry and the finest bread too\n" * 6,
         "Fair is foul and foul is fair\nHover through the fog and filthy air\n" * 9,
         "Our revels now are ended\nThese our actors as I foretold you were all spirits\n" * 7]


def _fake_cached_wikitext(cache: str) -> None:
    """lm-eval's `wikitext` dataset (EleutherAI/wikitext_document_level, wikitext-2-raw-v1) as the HF datasets
    cache holds it after a download, built locally from PAGES: the layout `load_dataset` reads offline."""
    import glob
    import os
    import shutil

    from datasets.packaged_modules.json.json import Json

    files = {}
    for split in ("train", "validation", "test"):
        path = os.path.join(cache, f"{split}.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"page": p}) + "\n" for p in PAGES)
        files[split] = path
    Json(cache_dir=cache, dataset_name="wikitext_document_level", config_name="wikitext-2-raw-v1",
         hash="0123abcd", data_files=files).download_and_prepare()
    built = glob.glob(os.path.join(cache, "wikitext_document_level", "wikitext-2-raw-v1-*", "0.0.0", "0123abcd"))[0]
    dst = os.path.join(cache, "EleutherAI___wikitext_document_level", "wikitext-2-raw-v1", "0.0.0", "0123abcd")
    os.makedirs(os.path.dirname(dst))
    shutil.move(built, dst)


@pytest.mark.slow  # lm-eval indexes its ~14,700 task configurations (~18 s), twice
def test_lm_eval_task_on_a_cached_dataset_and_the_refusal(tmp_path, monkeypatch, capsys):
    """`--task wikitext` runs lm-eval's own task on the cached dataset (bits/byte = an independent
    rolling-window recomputation in torch); with an empty cache it is one line, and nothing is fetched."""
    import datasets.config
    import huggingface_hub.constants
    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

    from actiba.evaluate.build import load_model
    from actiba.evaluate.lm_eval_model import find_task, run_task
    from actiba.evaluate.perplexity import rolling_windows, torch_logits_fn

    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):  # what `offline` sets, restored after the test
        monkeypatch.setenv(var, "0")
    for mod, attr in ((datasets.config, "HF_DATASETS_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
                      (huggingface_hub.constants, "HF_HUB_OFFLINE")):
        monkeypatch.setattr(mod, attr, getattr(mod, attr))
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(empty))
    rc, _, err = run(capsys, "eval", "embedded:mamba2", "--task", "wikitext", "--seq-len", "64")
    assert "wikitext_document_level wikitext-2-raw-v1 is not in the HF datasets cache" in one_line(rc, err)
    cache = tmp_path / "hf"
    cache.mkdir()
    _fake_cached_wikitext(str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    res = run_task("embedded:mamba2", "wikitext", seq_len=128, task_manager=find_task("wikitext"))
    assert all(wikitext_detokenizer({"page": p}) == p for p in PAGES)  # the task's target is the page itself
    fn = torch_logits_fn(load_model("embedded:mamba2").model)
    nats = 0.0
    with torch.inference_mode():
        for p in PAGES:
            for inp, tgt in rolling_windows(list(p.encode()), 256, 128):
                logp = torch.log_softmax(fn(torch.tensor([inp]))[0, -len(tgt):].double(), -1)
                nats -= float(logp.gather(-1, torch.tensor(tgt)[:, None]).sum())
    want = nats / math.log(2) / sum(len(p.encode()) for p in PAGES)
    assert res["bits_per_byte"] == pytest.approx(want, rel=1e-5)


def test_pareto_refuses_bad_text_files_before_any_output(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("ä" * 20, encoding="utf-8")  # 40 bytes: shorter than one window of 64 byte tokens
    for f, msg in [(tmp_path / "missing.txt", "cannot read --text"), (short, "shorter than one window")]:
        rc, _, err = run(capsys, "pareto", "embedded:mamba2", "--quick", "--text", f, "--out", tmp_path / "out")
        assert msg in one_line(rc, err)
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_pareto_on_a_bpe_model_with_a_text_file(llama_folder, tmp_path, capsys):
    """`pareto --text` on a BPE model: every row scored on its tokens (the emulated front too), and
    results.json and the HTML report say which text and tokenizer."""
    folder, text_file, _, _ = llama_folder
    out = tmp_path / "p"
    rc, _, err = run(capsys, "pareto", folder, "--quick", "--text", text_file, "--seq-len", "16",
                     "--precision", "f32", "--out", out)
    assert rc == 0, err
    run_ = json.loads((out / "results.json").read_text())["runs"][0]
    t = st.load(str(folder), 4096, str(text_file))
    assert run_["scoring_text"] == t.describe(16) and run_["settings"]["tokens"] == t.token_key()
    assert all(r["error"] is None and r["metric"] is not None for r in run_["configs"])
    assert f"scored as {t.describe(16)['tokens']} tokens (tokenizer {folder}" in (out / "report.html").read_text()
