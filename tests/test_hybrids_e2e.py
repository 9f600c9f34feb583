"""Every hybrid and Mamba-1 relative through the commands, from a folder saved by `save_pretrained` (tiny
random weights, initialised so the SSD term matters: `test_hybrids_ssd.exercise_ssd`).

A saved folder is scored like any model (bits/byte on the held-out text; its weights are random, so the
numbers only say the graphs compute what torch computes). The SSD d1+d2 row must be exact: same
bits/byte as the baseline from a different graph. Fast: a two-configuration pareto on a two-layer
Nemotron-H (grouped SSD, `.mixer` for every block; two exports, 12 s at load 2.6 on 2 cores). Slow:
`--quick` on every class, and eval / calibrate / finetune on GraniteMoeHybrid (MoE and shared-MLP SiLUs
outside the mixers).
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("openvino")

from test_hybrids import _tiny  # noqa: E402
from test_hybrids_ssd import exercise_ssd  # noqa: E402

from actiba.cli import main  # noqa: E402
from actiba.models import arch, mixer_scope  # noqa: E402

CLASSES = ("bamba", "granitemoehybrid", "falcon_h1", "zamba2", "nemotron_h", "jamba", "falcon_mamba")
CHEAP = ["--seq-len", "32", "--precision", "f32", "--repeats", "3", "--warmup", "0", "--min-repeats", "3",
         "--timing-seconds", "1", "--emulate", "none"]


def _saved(model_type: str, folder, **config):
    entry, model = _tiny(model_type, **config)
    if entry.ssm == arch.SSD:
        exercise_ssd(model, entry)
    model.save_pretrained(folder)
    return entry, model


def _rows(out) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "results.json").read_text())["configs"]}


def _torch_bpb(model, n_bytes: int, seq_len: int = 32) -> float:
    from actiba.evaluate.perplexity import heldout, torch_bits_per_byte

    return torch_bits_per_byte(model.eval(), heldout(n_bytes), seq_len)


def _check_exact_ssd(rows: dict[str, dict]) -> None:
    base, ssd = rows["baseline"], rows["ssd-d1+d2"]
    assert ssd["error"] is None and ssd["graph_sha"] != base["graph_sha"]  # rewritten, and still exact
    assert ssd["metric"] == pytest.approx(base["metric"], rel=1e-6)


def test_pareto_on_a_saved_nemotron_h(tmp_path):
    """Two layers (SSD mixer, MLP `.mixer`): the cheapest model with grouped SSD and a `.mixer` that is not one."""
    entry, model = _saved("nemotron_h", tmp_path / "m", num_hidden_layers=2, hybrid_override_pattern="M-")
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"configs": [{"name": "baseline"},
                                             {"name": "ssd-d1+d2", "rewrites": ["ssd-d1", "ssd-d2"]}]}))
    rc = main(["pareto", str(tmp_path / "m"), "--sweep", str(sweep), "--out", str(tmp_path / "out"),
               "--eval-bytes", "256", "--no-decode", *CHEAP])
    assert rc == 0
    rows = _rows(tmp_path / "out")
    assert rows["baseline"]["error"] is None
    _check_exact_ssd(rows)
    # the OpenVINO graph scores what HF torch scores on the same text
    assert rows["baseline"]["metric"] == pytest.approx(_torch_bpb(model, 256), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", CLASSES)
def test_quick_pareto_on_every_class(model_type, tmp_path):
    """`actiba pareto FOLDER --quick`: every row measured (prefill and decode step), the SSD families with
    an exact SSD d1+d2 row, and the tables placed in the mixers only (as many graph sites as torch's)."""
    from actiba.evaluate.configs import builtin_sweep
    from actiba.rewrite.torch_rw import find_actiba_sites

    entry, model = _saved(model_type, tmp_path / "m")
    rc = main(["pareto", str(tmp_path / "m"), "--quick", "--out", str(tmp_path / "out"), "--eval-bytes", "512",
               *CHEAP])
    assert rc == 0
    rows = _rows(tmp_path / "out")
    assert sorted(rows) == sorted(c.name for c in builtin_sweep("quick", model_type))
    for name, r in rows.items():
        assert r["error"] is None and r.get("decode_error") is None, (name, r["error"], r.get("decode_error"))
        assert r["decode_latency_ms"]["median"] > 0
    if entry.ssm == arch.SSD:
        _check_exact_ssd(rows)
    else:
        assert "ssd-d1+d2" not in rows
    from actiba.evaluate.tables import fitted_table
    from actiba.models.export import export_view

    tables = {"silu": fitted_table("silu", 8), "softplus": fitted_table("softplus", 8)}
    ids = torch.randint(0, 256, (1, 32), generator=torch.Generator().manual_seed(0))
    with export_view(model) as view:
        in_scope = [s for s in find_actiba_sites(view, tables, ids, include=mixer_scope(model)) if s.ok]
    assert rows["act-both-8"]["sites_rewritten"] == {"actiba": len(in_scope)}
    assert rows["act-both-8"]["decode_sites_rewritten"] == len(in_scope)


@pytest.mark.slow
def test_eval_calibrate_finetune_on_a_saved_granite(tmp_path, capsys):
    import re

    entry, model = _saved("granitemoehybrid", tmp_path / "m")
    folder = str(tmp_path / "m")
    assert main(["eval", folder, "--seq-len", "64", "--eval-bytes", "1024", "--repeats", "3",
                 "--backend", "torch"]) == 0
    ov_bpb, pt_bpb = map(float, re.search(r"bits/byte ([\d.]+) ±[\d.]+ torch ([\d.]+)", capsys.readouterr().out
                                          ).groups())
    assert ov_bpb == pytest.approx(pt_bpb, rel=1e-4)

    stats = tmp_path / "stats.json"
    assert main(["calibrate", folder, "--bytes", "2048", "--seq-len", "64", "-o", str(stats)]) == 0
    sites = json.loads(stats.read_text())["sites"]
    scope = mixer_scope(model)
    assert {f"{p}:{f}#0" for p in scope for f in ("silu", "softplus")} <= set(sites)
    assert any(":silu#" in s and not s.startswith(scope) for s in sites)  # the MLP / expert SiLUs as well

    out = tmp_path / "tuned"
    assert main(["finetune", folder, "--segments", "4", "--steps", "2", "--batch", "2", "--seq-len", "64",
                 "--eval-bytes", "512", "--train-params", "mixer", "-o", str(out)]) == 0
    meta = json.loads((out / "actiba-finetune.json").read_text())
    assert meta["settings"]["include"] == list(scope)


@pytest.mark.slow
def test_pareto_with_per_site_calibrated_tables_on_a_saved_bamba(tmp_path, monkeypatch):
    """Per-site calibrated tables reach the graph: their site ids (from torch capture) name the mixer's
    graph sites, so both SiLU sites of Bamba's mixer get their own table and the MLP's stays exact."""
    from actiba.evaluate import tables

    monkeypatch.setattr(tables, "_calibration_dir", lambda: tmp_path / "calibration")
    entry, model = _saved("bamba", tmp_path / "m")
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"configs": [
        {"name": "baseline"},
        {"name": "silu-4-per-site", "activations": {"silu": {"segments": 4, "calibrated": "per-site"}}}]}))
    assert main(["pareto", str(tmp_path / "m"), "--sweep", str(sweep), "--out", str(tmp_path / "out"),
                 "--eval-bytes", "512", *CHEAP]) == 0
    row = _rows(tmp_path / "out")["silu-4-per-site"]
    assert row["error"] is None and row.get("decode_error") is None
    assert row["sites_rewritten"] == {"actiba": 2} and row["decode_sites_rewritten"] == 2
