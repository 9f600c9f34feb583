"""`actiba-pwl-set/1`: round trips, lookup order (exact key, then globs in insertion order), bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actiba.errors import InputError
from actiba.table import Table
from actiba.tableset import FORMAT, TableSet, is_tableset_file, load_set


def _table(function: str, shift: float = 0.0) -> Table:
    return Table([0.0 + shift], [0.0, 1.0], [0.0, -shift], function=function, params={"beta": 1.0},
                 domain=(-4.0, 4.0))


def _set() -> TableSet:
    return TableSet({"backbone.layers.0.mixer:silu#0": _table("silu", 0.5),
                     "backbone.layers.*.mixer:silu#*": _table("silu", 0.25),
                     "*:silu#*": _table("silu"),
                     "*:softplus#*": _table("softplus", 1.0)},
                    model={"name_or_path": "m", "model_type": "mamba2", "sha256": "ab" * 32},
                    calibration={"stats_sha256": "cd" * 32})


def test_round_trip(tmp_path):
    ts = _set()
    path = tmp_path / "set.json"
    ts.save(path)
    assert is_tableset_file(path)
    back = load_set(path)
    assert list(back.tables) == list(ts.tables)
    assert back.model == ts.model and back.calibration == ts.calibration
    x = np.linspace(-3, 3, 101)
    for key in ts.tables:
        np.testing.assert_array_equal(back.tables[key](x), ts.tables[key](x))
    # inner tables are exactly what Table.save writes
    d = json.loads(path.read_text())
    assert d["format"] == FORMAT
    assert d["tables"]["*:silu#*"] == json.loads(ts.tables["*:silu#*"].to_json())
    assert back.functions() == {"silu", "softplus"}


def test_lookup_order():
    ts = _set()
    assert ts.table_for("backbone.layers.0.mixer:silu#0") is ts.tables["backbone.layers.0.mixer:silu#0"]
    assert ts.table_for("backbone.layers.3.mixer:silu#1") is ts.tables["backbone.layers.*.mixer:silu#*"]
    assert ts.table_for("backbone.layers.3.mixer.norm:silu#0") is ts.tables["*:silu#*"]
    assert ts.table_for("backbone.layers.3.mixer:softplus#0") is ts.tables["*:softplus#*"]
    assert ts.table_for("backbone.layers.3.mixer:gelu#0") is None
    # insertion order decides among globs
    ts2 = TableSet({"*:silu#*": _table("silu"), "backbone.*:silu#*": _table("silu", 1.0)})
    assert ts2.table_for("backbone.layers.0.mixer:silu#0") is ts2.tables["*:silu#*"]


def test_not_a_set_file(tmp_path):
    p = tmp_path / "t.json"
    _table("silu").save(p)
    assert not is_tableset_file(p)
    assert not is_tableset_file(tmp_path / "missing.json")
    with pytest.raises(InputError, match="format"):
        load_set(p)


def _write(tmp_path, d) -> str:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(d) if not isinstance(d, str) else d)
    return str(p)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["tables"].update({"silu": d["tables"].pop("*:silu#*")}), "neither a site id"),
    (lambda d: d["tables"].update({"*:softplus#*": d["tables"].pop("*:silu#*")}), "approximates 'silu'"),
    (lambda d: d["tables"]["*:silu#*"].pop("slopes"), r"\*:silu#\*.*slopes"),
    (lambda d: d["tables"]["*:silu#*"].update(breakpoints=[1.0, 0.0]), r"\*:silu#\*.*breakpoints"),
    (lambda d: d.update(tables=[]), "'tables' must be an object"),
    (lambda d: d.update(tables={}), "no tables"),
    (lambda d: d.update(model=3), "'model'"),
])
def test_bad_sets_name_the_key(tmp_path, mutate, message):
    d = TableSet({"*:silu#*": _table("silu")}).to_dict()
    mutate(d)
    with pytest.raises(InputError, match=message):
        load_set(_write(tmp_path, d))


def test_bad_files(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_set(tmp_path / "nope.json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_set(_write(tmp_path, "{"))
    with pytest.raises(InputError, match="folder"):
        load_set(tmp_path)


def test_save_validates_and_leaves_nothing(tmp_path):
    bad = TableSet({"*:softplus#*": _table("silu")})
    with pytest.raises(InputError, match="approximates"):
        bad.save(tmp_path / "s.json")
    assert list(tmp_path.iterdir()) == []
