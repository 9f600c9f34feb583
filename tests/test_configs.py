"""Configurations: labels that say what is fitted, and the committed default sweep files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actiba.evaluate import configs, tables

ROOT = Path(__file__).resolve().parents[1]


def test_calibrated_label_names_the_weighting_actually_fitted(monkeypatch):
    """No weighting given: the label must name the one `calibrated_set` is called with (the default)."""
    seen = {}

    class _Set:
        tables: dict = {}

    def fake_set(lm, fn, segments, mode, weighting, percentiles):
        seen[fn] = weighting
        return _Set()

    monkeypatch.setattr(tables, "calibrated_set", fake_set)
    c = configs.from_dict({"name": "c", "activations": {"softplus": {"segments": 4, "calibrated": "shared"}}})
    tables.tables_for(c, lm=object())
    label = tables.describe_activations(c)["softplus"]["table"]
    assert label.split("/")[1] == seen["softplus"] == tables.DEFAULT_WEIGHTING
    explicit = configs.from_dict({"name": "r", "activations": {
        "softplus": {"segments": 4, "calibrated": "shared", "weighting": "range"}}})
    assert tables.describe_activations(explicit)["softplus"]["table"].split("/")[1] == "range"


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
    for name in ("quick", "default", "full"):
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


def test_keys_come_from_the_dataclass_and_rewrites_are_named():
    import dataclasses

    from actiba.rewrite.names import REWRITES

    assert configs.KEYS == tuple(f.name for f in dataclasses.fields(configs.Config))
    c = configs.Config("x", rewrites=("ssd-d1", "cumba"))
    assert c.rewrites == ("cumba", "ssd-d1") and c.cumba and c.ssd_d1 and not c.reduba  # REWRITES order
    assert set(c.to_dict()) == set(configs.KEYS) and c.to_dict()["rewrites"] == ["cumba", "ssd-d1"]
    assert configs.Config("x", cumba=True, ssd_d1=True) == c  # the boolean keywords still work
    assert dataclasses.replace(c, cumba=False).rewrites == ("ssd-d1",)
    assert set(configs.LEGACY_FLAGS.values()) <= set(REWRITES)
    with pytest.raises(configs.InputError, match="unknown rewrite"):
        configs.Config("x", rewrites=("xamba",))


def test_old_sweep_files_with_one_bool_per_rewrite_still_load(tmp_path):
    """Files from before `rewrites` (e.g. the committed default_mamba2.json of 2026-11) read to the same
    configurations as the new spelling."""
    old = {"name": "a", "cumba": True, "reduba": False, "ssd_d1": True, "ssd_d2": False, "activations": {},
           "sites": {}, "cumba_min_n": None}
    new = {"name": "a", "rewrites": ["ssd-d1", "cumba"]}
    assert configs.from_dict(old) == configs.from_dict(new)
    assert configs.from_dict(old).key() == configs.from_dict(new).key()
    p = tmp_path / "old.json"
    p.write_text(json.dumps({"configs": [old, {"name": "b", "reduba": True}]}))
    assert [c.rewrites for c in configs.read_file(p)] == [("cumba", "ssd-d1"), ("reduba",)]


@pytest.mark.parametrize("bad, key", [({"name": "z", "rewrites": ["xamba"]}, "'rewrites'"),
                                      ({"name": "z", "rewrites": "cumba"}, "'rewrites'"),
                                      ({"name": "z", "cumba": "yes"}, "'cumba'"),
                                      ({"name": "z", "cumba": False, "rewrites": ["cumba"]}, "'cumba'"),
                                      ({"name": "z", "ssd_chunk": 0}, "'ssd_chunk'"),
                                      ({"name": "z", "cumba_min_n": True}, "'cumba_min_n'"),
                                      ({"name": "z", "nope": 1}, "nope"),
                                      ({"rewrites": []}, "'name'")])
def test_bad_files_name_the_key(bad, key):
    with pytest.raises(configs.InputError) as err:
        configs.from_dict(bad, "sweep.json[0]")
    assert key in str(err.value) and str(err.value).startswith("sweep.json[0]") and "\n" not in str(err.value)
