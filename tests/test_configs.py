"""Configurations: labels that say what is fitted, and the committed default sweep files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actiba.evaluate import configs

ROOT = Path(__file__).resolve().parents[1]


def test_calibrated_label_names_the_weighting_actually_fitted(monkeypatch):
    """No weighting given: the label must name the one `calibrated_set` is called with (the default)."""
    seen = {}

    class _Set:
        tables: dict = {}

    def fake_set(lm, fn, segments, mode, weighting, percentiles):
        seen[fn] = weighting
        return _Set()

    monkeypatch.setattr(configs, "calibrated_set", fake_set)
    c = configs.from_dict({"name": "c", "activations": {"softplus": {"segments": 4, "calibrated": "shared"}}})
    configs.tables_for(c, lm=object())
    label = configs.describe_activations(c)["softplus"]["table"]
    assert label.split("/")[1] == seen["softplus"] == configs.DEFAULT_WEIGHTING
    explicit = configs.from_dict({"name": "r", "activations": {
        "softplus": {"segments": 4, "calibrated": "shared", "weighting": "range"}}})
    assert configs.describe_activations(explicit)["softplus"]["table"].split("/")[1] == "range"


def _generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_sweeps", ROOT / "eval" / "sweeps" / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_sweep_files_are_the_built_in_sweeps():
    """eval/sweeps/*.json are what `python eval/sweeps/generate.py` writes, and read back to the same
    configurations (same cache keys) as the code's sweeps."""
    expected = _generator().files()
    for name, text in expected.items():
        path = ROOT / "eval" / "sweeps" / name
        assert path.read_text(encoding="utf-8") == text, f"{name} differs: run python eval/sweeps/generate.py"
    chunk = json.loads((ROOT / "actiba/embedded/mamba2/config.json").read_text())["chunk_size"]
    for name in ("default", "full"):
        for model in ("mamba2", "mamba"):
            got = configs.read_file(ROOT / "eval" / "sweeps" / f"{name}_{model}.json")
            want = configs.builtin_sweep(name, model, chunk if model == "mamba2" else None)
            assert [c.key() for c in got] == [c.key() for c in want]


def test_default_sweep_is_the_full_one_without_the_dominated_rows():
    for model, chunk in (("mamba2", 64), ("mamba", None)):
        full = {c.name: c.key() for c in configs.default_sweep(model, chunk_size=chunk, full=True)}
        default = {c.name: c.key() for c in configs.default_sweep(model, chunk_size=chunk)}
        assert set(default) < set(full) and all(full[n] == k for n, k in default.items())
        assert not any(n.startswith(("act-both-16", "act-both-32")) for n in default)
    with pytest.raises(configs.InputError, match="unknown built-in sweep"):
        configs.builtin_sweep("fast", "mamba")
