"""The ``actiba`` lm-eval model's ``act_<function>`` args on causal LMs without SSM (GPT-2 gelu_new,
Gemma gelu_pytorch_tanh, Llama silu): derived from the activation registry, refusing unknown keys and
functions the model does not compute, and scoring what an independent table substitution scores.

Tiny random models saved with `save_pretrained` and the byte tokenizer in a tmp folder, so they load as
a user's folder does; the task is `actiba_heldout_small` on short documents of our own (`task_config`'s
`docs`), which keeps the fast tests off the corpus.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("lm_eval")

from actiba.errors import InputError  # noqa: E402
from actiba.models import arch  # noqa: E402

SEQ = 64
DOCS = [b"To-morrow, and to-morrow, and to-morrow,\nCreeps in this petty pace from day to day.\n" * 2,
        b"We are such stuff as dreams are made on, and our little life is rounded with a sleep.\n"]


def _save_tiny(model_type: str, folder: Path):
    from actiba.models.tokenizer import VOCAB_SIZE, save_byte_tokenizer

    entry = arch.ARCHITECTURES[model_type]
    cfg = transformers.AutoConfig.for_model(model_type, **{**entry.tiny, "vocab_size": VOCAB_SIZE})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    # random weights of the default scale make the MLP input small (|x| < ~0.5), where a 4-segment table
    # is close to exact; scaling the MLP input projections up gives the table's error a visible effect
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("c_fc", "up_proj", "gate_proj")):
                p.mul_(8.0)
    model.save_pretrained(folder)
    save_byte_tokenizer(folder)
    return entry, model


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval")
    return {t: (root / t, *_save_tiny(t, root / t)) for t in ("gpt2", "gemma", "llama")}


def _bpb(res):
    return res["bits_per_byte"]


def _independent_bpb(model, fn: str, segments: int) -> float:
    """bits/byte with every MLP activation module swapped for the table through the canonical numpy
    evaluator (no torch scope, no site tracker), scored with lm-eval's rolling windows in actiba's own
    scorer."""
    import copy

    from actiba.evaluate.perplexity import rolling_bits_per_byte, torch_logits_fn
    from actiba.evaluate.tables import fitted_table

    table = fitted_table(fn, segments)

    class Table(torch.nn.Module):
        def forward(self, x):
            return torch.from_numpy(np.asarray(table(x.double().numpy()))).to(x.dtype)

    m = copy.deepcopy(model)
    swapped = 0
    for _, parent in list(m.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child).__module__ == "transformers.activations":
                setattr(parent, name, Table())
                swapped += 1
    assert swapped == model.config.num_hidden_layers
    return rolling_bits_per_byte(torch_logits_fn(m), DOCS, SEQ)


def test_model_args_derive_from_the_registry():
    from actiba import activations
    from actiba.evaluate.lm_eval_model import MODEL_ARGS, split_act_args

    assert set(MODEL_ARGS.values()) == set(activations.SWEEP_NAMES)
    assert {"act_silu", "act_softplus", "act_gelu", "act_gelu_tanh"} <= set(MODEL_ARGS)
    kw = {"act_gelu_tanh": 8, "act_swish": 4, "batch_size": 1}
    assert split_act_args(kw) == {"gelu-tanh": 8, "silu": 4} and kw == {"batch_size": 1}
    with pytest.raises(InputError) as exc:
        split_act_args({"act_relu": 4})
    msg = str(exc.value)
    assert "\n" not in msg and "'act_relu'" in msg and all(k in msg for k in MODEL_ARGS)
    with pytest.raises(InputError, match="already set"):
        split_act_args({"act_silu": 4, "act_swish": 8})


@pytest.mark.parametrize("model_type", ["gpt2", "gemma"])
def test_act_gelu_tanh_scores_the_table(folders, model_type):
    """act_gelu_tanh=4 through lm-eval changes bits/byte and equals the independent substitution."""
    from actiba.evaluate.lm_eval_model import run_task

    folder, entry, model = folders[model_type]
    assert entry.mlp_function(model.config) == "gelu-tanh"
    exact = _bpb(run_task(str(folder), "actiba_heldout_small", None, seq_len=SEQ, docs=DOCS, limit=2))
    got = _bpb(run_task(str(folder), "actiba_heldout_small", None, seq_len=SEQ, docs=DOCS, limit=2,
                        act_gelu_tanh=4))
    want = _independent_bpb(model, "gelu-tanh", 4)
    assert got == pytest.approx(want, rel=2e-5)
    assert abs(got - exact) > 50 * abs(got - want)


def test_act_silu_on_llama(folders):
    from actiba.evaluate.lm_eval_model import run_task

    folder, _, model = folders["llama"]
    got = _bpb(run_task(str(folder), "actiba_heldout_small", None, seq_len=SEQ, docs=DOCS, limit=2, act_silu=4))
    exact = _bpb(run_task(str(folder), "actiba_heldout_small", None, seq_len=SEQ, docs=DOCS, limit=2))
    want = _independent_bpb(model, "silu", 4)
    assert got == pytest.approx(want, rel=2e-5) and abs(got - exact) > 50 * abs(got - want)


@pytest.mark.parametrize(("model_type", "arg", "have"), [("llama", "act_softplus", "act_silu"),
                                                          ("llama", "act_gelu_tanh", "act_silu"),
                                                          ("gpt2", "act_silu", "act_gelu_tanh"),
                                                          ("gemma", "act_gelu", "act_gelu_tanh")])
def test_a_function_the_model_does_not_have_is_refused(folders, model_type, arg, have):
    from actiba.evaluate.lm_eval_model import ActibaLM

    folder = folders[model_type][0]
    with pytest.raises(InputError) as exc:
        ActibaLM(pretrained=str(folder), max_length=SEQ, **{arg: 4})
    msg = str(exc.value)
    fn = arg[len("act_"):].replace("_", "-")
    assert "\n" not in msg and f"no {fn} call" in msg and msg.endswith(f"its functions there: {have}")


def test_cli_unknown_arg_is_one_line_exit_2(folders):
    """`python -m actiba.lm_eval` with an unknown act_ key: exit 2, one line naming the known args, before
    any table is fitted."""
    folder = folders["gpt2"][0]
    proc = subprocess.run([sys.executable, "-m", "actiba.lm_eval", "--model", "actiba", "--model_args",
                           f"pretrained={folder},act_gelu_tan=4", "--tasks", "actiba_heldout_small",
                           "--limit", "1"], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("actiba.lm_eval: error: unknown model arg 'act_gelu_tan'") and "act_gelu_tanh" in last
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_act_gelu_tanh_equals_the_python_api(folders, tmp_path):
    """The CLI on a saved GPT-2 folder with act_gelu_tanh=4 gives the in-process number on the held-out
    split (the corpus; windows of 256, the tiny GPT-2's n_positions), and it is not the exact model's."""
    import json

    from actiba.evaluate.lm_eval_model import run_task

    folder = folders["gpt2"][0]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "actiba.lm_eval", "--model", "actiba", "--model_args",
                           f"pretrained={folder},max_length=256,act_gelu_tanh=4", "--tasks",
                           "actiba_heldout_small", "--limit", "1", "--output_path", str(out)],
                          capture_output=True, text=True, timeout=1800, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-2000:]
    (results,) = out.rglob("results_*.json")
    cli = json.loads(results.read_text())["results"]["actiba_heldout_small"]["bits_per_byte,none"]
    api = run_task(str(folder), "actiba_heldout_small", None, seq_len=256, limit=1, act_gelu_tanh=4)
    exact = run_task(str(folder), "actiba_heldout_small", None, seq_len=256, limit=1)
    assert cli == pytest.approx(api["bits_per_byte"], rel=1e-9)
    assert cli != pytest.approx(exact["bits_per_byte"], rel=1e-6)
