"""Accuracy recovery (`actiba.recover`, `actiba finetune`): gradients, training, the saved folder, refusals.

Gradients are compared with torch autograd of the exact functions and with the canonical table's
slopes (`Table.slopes` at `searchsorted(breakpoints, x, "right")`, the format's evaluation rule);
training is checked by recomputing the loss outside `finetune`; the saved folder by reloading it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
import torch.nn.functional as F  # noqa: E402

from actiba.cli import main  # noqa: E402
from actiba.evaluate.build import load_model  # noqa: E402
from actiba.evaluate.tables import fitted_table, relu_table  # noqa: E402
from actiba.models import embedded_path, load  # noqa: E402
from actiba.recover import default_out_dir, finetune, make_pwl, save_folder  # noqa: E402
from actiba.rewrite.torch_rw import actiba_scope  # noqa: E402
from actiba.table import Table  # noqa: E402

SCOPE = ["backbone.layers.*.mixer"]


def _tiny():
    return load_model("random:tiny-mamba2").model


def _tables():
    return {"silu": fitted_table("silu", 4), "softplus": relu_table()}


def _grid(table: Table, dtype) -> torch.Tensor:
    """Points on [-10, 10] at least 1e-3 from every breakpoint (the slope is undefined on them)."""
    x = np.linspace(-10, 10, 4001)
    keep = np.all(np.abs(x[:, None] - table.breakpoints[None, :]) > 1e-3, axis=1)
    return torch.tensor(x[keep], dtype=dtype, requires_grad=True)


def _grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    fn(x).sum().backward()
    return x.grad


def _discontinuous() -> Table:
    return Table([-2.0, 0.0, 1.5], [0.0, 0.3, 0.9, 1.0], [-0.1, 0.2, 0.05, 0.0], function="silu")


# --- gradients -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("which", ["silu4", "softplus8", "relu", "discontinuous"])
def test_table_gradient_is_the_canonical_segment_slope(which, dtype):
    table = {"silu4": lambda: fitted_table("silu", 4), "softplus8": lambda: fitted_table("softplus", 8),
             "relu": relu_table, "discontinuous": _discontinuous}[which]()
    fn = "softplus" if which in ("softplus8", "relu") else "silu"
    pwl = make_pwl({fn: table}, "table")
    x = _grid(table, dtype)
    g = _grad(lambda t: pwl(t, table), x).double().numpy()
    seg = np.searchsorted(table.breakpoints, x.detach().double().numpy(), side="right")
    want = table.slopes[seg]
    tol = 1e-12 if dtype == torch.float64 else 2e-7
    np.testing.assert_allclose(g, want, rtol=tol, atol=tol)
    # and the forward value is the canonical evaluator's
    y = pwl(x.detach(), table).double().numpy()
    np.testing.assert_allclose(y, table(x.detach().double().numpy()), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("fn,table,exact", [
    ("silu", lambda: fitted_table("silu", 4), F.silu),
    ("softplus", relu_table, F.softplus),  # the ReLU table back-propagates Softplus' derivative
    ("softplus", lambda: fitted_table("softplus", 8), F.softplus),
])
def test_ste_gradient_is_the_exact_derivative(fn, table, exact):
    t = table()
    pwl = make_pwl({fn: t}, "ste")
    x = torch.linspace(-12, 12, 2401, dtype=torch.float32)
    g = _grad(lambda v: pwl(v, t), x)
    want = _grad(exact, x)
    torch.testing.assert_close(g, want, rtol=0, atol=0)
    # forward is still the table
    np.testing.assert_allclose(pwl(x, t).double().numpy(), t(x.double().numpy()), rtol=1e-6, atol=1e-6)


def test_ste_through_the_scope_reaches_module_weights():
    """Inside actiba_scope the STE value is the table and the weight gradient uses f'(x), not the slope."""
    t = fitted_table("silu", 4)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(-3, 3, 64))

        def forward(self, x):
            return F.silu(self.w * x)

    m, x = M(), torch.full((64,), 1.5)
    with actiba_scope(m, {"silu": t}, pwl=make_pwl({"silu": t}, "ste")):
        y = m(x)
    y.sum().backward()
    z = (m.w * x).detach()
    np.testing.assert_allclose(y.detach().double().numpy(), t(z.double().numpy()), rtol=1e-6, atol=1e-6)
    want = _grad(F.silu, z) * x  # chain rule with the exact derivative
    torch.testing.assert_close(m.w.grad, want, rtol=1e-6, atol=1e-7)


# --- training --------------------------------------------------------------------------------------------

def _scoped_loss(model, tables, data: bytes) -> float:
    ids = torch.tensor([[256, *data[:-1]]])
    with torch.no_grad(), actiba_scope(model, tables, include=SCOPE):
        logits = model(input_ids=ids, use_cache=False).logits
    return F.cross_entropy(logits[0], torch.tensor(list(data))).item()


def test_loss_decreases_on_a_fixed_batch():
    model, tables = _tiny(), _tables()
    batch = bytes(np.random.default_rng(0).integers(32, 127, 48).astype(np.uint8))
    before = _scoped_loss(model, tables, batch)
    res = finetune(model, tables, batch, steps=12, lr=1e-2, seq_len=len(batch), batch=1, seed=0)
    after = _scoped_loss(model, tables, batch)
    assert after < before - 0.3, (before, after)
    assert res.losses[-1] < res.losses[0] and len(res.losses) == 12
    assert res.settings["grad"] == "table" and res.seconds > 0


def test_same_seed_same_run_and_frozen_parameters():
    data = bytes(np.random.default_rng(1).integers(0, 256, 4000).astype(np.uint8))
    runs = []
    for _ in range(2):
        model = _tiny()
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if ".mixer." not in n}
        r = finetune(model, _tables(), data, steps=3, lr=1e-3, seq_len=32, batch=2, seed=7,
                     train_params="mixer", grad="ste")
        runs.append(r.losses)
        for n, p in model.named_parameters():
            if n in frozen:
                assert torch.equal(p, frozen[n]), n
        assert all(".mixer." in n for n in r.trained)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("kw,msg", [({"grad": "nope"}, "gradient mode"), ({"steps": 0}, "steps"),
                                    ({"lr": -1.0}, "lr"), ({"train_params": "nothing"}, "train_params"),
                                    ({"seq_len": 10_000}, "training bytes")])
def test_bad_arguments_are_input_errors(kw, msg):
    from actiba.errors import InputError

    with pytest.raises(InputError, match=msg):
        finetune(_tiny(), _tables(), b"x" * 100, **{"steps": 1, "seq_len": 16, "batch": 1, **kw})


# --- the saved folder ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_saved_folder_reloads_with_the_same_logits(tmp_path, dtype):
    model, tables = _tiny(), _tables()
    data = bytes(np.random.default_rng(2).integers(0, 256, 2000).astype(np.uint8))
    finetune(model, tables, data, steps=2, lr=1e-2, seq_len=32, batch=2)
    out = save_folder(model, tmp_path / "tuned", meta={"k": 1}, dtype=dtype)
    reloaded = load(str(out))
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, reloaded(input_ids=ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert json.loads((out / "actiba-finetune.json").read_text()) == {"k": 1}
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tok("Ab", add_special_tokens=False)["input_ids"] == [65, 98]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_default_out_dir_is_beside_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_out_dir("embedded:mamba2", None) == tmp_path / "mamba2-actiba-tuned"
    assert default_out_dir("x", tmp_path / "m") == tmp_path / "m-actiba-tuned"
    assert default_out_dir("org/name", None) == tmp_path / "org--name-actiba-tuned"


# --- the CLI ---------------------------------------------------------------------------------------------

def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "work" / "tiny"
    folder.parent.mkdir()
    save_folder(_tiny(), folder)
    return folder


_FAST = ["--steps", "2", "--batch", "1", "--seq-len", "32", "--eval-bytes", "256"]


def test_cli_finetune_saves_beside_the_model(model_dir, capsys):
    from actiba.evaluate.perplexity import heldout, torch_bits_per_byte

    before_files = _hashes(model_dir)
    assert main(["finetune", str(model_dir), "--segments", "4", "--act", "softplus=relu", *_FAST]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "saved" in lines[2]
    out = model_dir.parent / "tiny-actiba-tuned"
    meta = json.loads((out / "actiba-finetune.json").read_text())
    assert _hashes(model_dir) == before_files  # the original is untouched
    assert meta["base_model"]["weights_sha256"]["model.safetensors"] == hashlib.sha256(
        (model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert set(meta["tables"]) == {"silu", "softplus"} and meta["tables"]["softplus"]["breakpoints"] == [0.0]
    # the recorded numbers, recomputed independently from the files on disk
    data = heldout(256)
    tables = {"silu": Table.from_dict(meta["tables"]["silu"]), "softplus": relu_table()}
    base, tuned = load(str(model_dir)), load(str(out))
    got = meta["bits_per_byte"]
    assert got["exact"] == pytest.approx(torch_bits_per_byte(base, data, 32), abs=1e-6)
    assert got["tables_before"] == pytest.approx(torch_bits_per_byte(base, data, 32, tables), abs=1e-6)
    assert got["tables_after"] == pytest.approx(torch_bits_per_byte(tuned, data, 32, tables), abs=1e-6)
    assert got["tuned_exact"] == pytest.approx(torch_bits_per_byte(tuned, data, 32), abs=1e-6)
    assert got["tables_after"] != got["tables_before"]


def _refuse(argv, parent: Path, capsys) -> str:
    listing = sorted(os.listdir(parent))
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # transformers may draw a loading bar before the check fails
    assert last.startswith("actiba: error: ") and "Traceback" not in err
    err = last
    assert sorted(os.listdir(parent)) == listing  # nothing left behind
    return err


def test_cli_refusals_exit_2_and_leave_nothing(model_dir, tmp_path, capsys):
    files = _hashes(model_dir)
    parent = model_dir.parent
    emb = embedded_path("mamba2")
    emb_listing = sorted(os.listdir(emb.parent)), sorted(os.listdir(emb))
    base = ["finetune", str(model_dir), "--segments", "4", *_FAST]
    assert "inside the model folder" in _refuse([*base, "-o", str(model_dir)], parent, capsys)
    assert "inside the model folder" in _refuse([*base, "-o", str(model_dir), "--force"], parent, capsys)
    assert "inside the model folder" in _refuse([*base, "-o", str(model_dir / "sub")], parent, capsys)
    assert "contains the model folder" in _refuse([*base, "-o", str(parent), "--force"], parent, capsys)
    assert "inside the model folder" in _refuse([*base, "-o", str(emb / "x"), "--force"], parent, capsys)
    assert "contains the model folder" in _refuse([*base, "-o", str(emb.parent.parent), "--force"], parent, capsys)
    busy = parent / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert "not empty" in _refuse([*base, "-o", str(busy)], parent, capsys)
    assert (busy / "keep.txt").read_text() == "mine"
    assert "does not exist" in _refuse(["finetune", str(model_dir), "--act", "silu=/nonexistent.json", *_FAST],
                                       parent, capsys)
    assert "nothing to tune" in _refuse(["finetune", str(model_dir), *_FAST], parent, capsys)
    assert "cannot go to standard output" in _refuse([*base, "-o", "-"], parent, capsys)
    assert not os.path.exists("-")
    assert "relu" in _refuse(["finetune", str(model_dir), "--act", "silu=relu", *_FAST], parent, capsys)
    assert _hashes(model_dir) == files
    assert (sorted(os.listdir(emb.parent)), sorted(os.listdir(emb))) == emb_listing


@pytest.mark.slow
def test_cli_force_replaces_a_non_empty_output(model_dir, capsys):
    out = model_dir.parent / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    assert main(["finetune", str(model_dir), "--act", "softplus=relu", *_FAST, "-o", str(out), "--force"]) == 0
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["out", "tiny"]


def test_cli_act_set_per_site_tables(model_dir, capsys):
    from actiba.tableset import TableSet

    set_path = model_dir.parent / "set.json"
    TableSet({"backbone.layers.0.mixer:silu#0": fitted_table("silu", 4)}).save(set_path)
    out = model_dir.parent / "tuned-set"
    assert main(["finetune", str(model_dir), "--act-set", str(set_path), *_FAST, "-o", str(out)]) == 0
    meta = json.loads((out / "actiba-finetune.json").read_text())
    assert list(meta["tables"]["set"]["tables"]) == ["backbone.layers.0.mixer:silu#0"]
    assert meta["bits_per_byte"]["tables_before"] != meta["bits_per_byte"]["exact"]  # the set was applied
    other = model_dir.parent / "other.json"
    TableSet({"*:silu#*": fitted_table("silu", 4)}, model={"name_or_path": "x", "sha256": "00" * 32}).save(other)
    err = _refuse(["finetune", str(model_dir), "--act-set", str(other), *_FAST, "-o", str(out) + "2"],
                  model_dir.parent, capsys)
    assert "table set is for model" in err
