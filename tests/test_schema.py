"""The shipped JSON Schema (actiba/schema/actiba-pwl-1.json), as a reader without actiba uses it:
it rejects what JSON Schema can express (duplicate breakpoints, ±Infinity, wrong types, short
arrays), and every rule it cannot express is listed in its `$comment`, accepted by the schema alone
and rejected by `actiba.load`'s validation."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from actiba.table import TableError, schema, validate

GOOD = {"format": "actiba-pwl/1", "function": "silu", "params": {"beta": 1.0}, "domain": [-8.0, 8.0],
        "breakpoints": [-3.0, -1.0, 0.5], "slopes": [0.0, -0.05, 0.3, 1.0],
        "intercepts": [0.0, -0.2, 0.0, 0.0], "continuous": False, "error": None, "target": None}
INF = float("inf")


def _schema_ok(d) -> bool:
    return jsonschema.Draft202012Validator(schema()).is_valid(d)


def test_schema_is_valid_and_accepts_a_good_table() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert _schema_ok(GOOD)
    validate(GOOD)


@pytest.mark.parametrize("key,value", [
    ("breakpoints", [-3.0, -3.0, 0.5]),           # duplicate
    ("breakpoints", [-3.0, INF, 0.5]), ("slopes", [0.0, -INF, 0.3, 1.0]),
    ("intercepts", [0.0, 0.0, INF, 0.0]), ("domain", [-INF, 8.0]), ("domain", [1.0]),
    ("slopes", []), ("params", {"beta": INF}), ("format", "actiba-pwl/2"), ("breakpoints", ["a"]),
])
def test_schema_rejects_what_it_can_express(key: str, value) -> None:
    bad = {**GOOD, key: value}
    assert not _schema_ok(bad), (key, value)
    with pytest.raises(TableError):
        validate(bad)


@pytest.mark.parametrize("rule,key,value", [
    ("(1)", "breakpoints", [0.5, -1.0, 2.0]),                 # unsorted, no duplicate
    ("(2)", "intercepts", [0.0, 0.0, 0.0]),                   # wrong length
    ("(2)", "breakpoints", [-3.0, -1.0]),                     # N - 2 breakpoints
    ("(3)", "domain", [8.0, -8.0]),                           # reversed domain
    ("(4)", "slopes", [0.0, float("nan"), 0.3, 1.0]),         # NaN
])
def test_rules_beyond_json_schema_are_listed_and_enforced_by_load(rule: str, key: str, value) -> None:
    bad = {**GOOD, key: value}
    assert _schema_ok(bad), "the schema now expresses this rule: move it out of $comment"
    assert rule in schema()["$comment"]
    with pytest.raises(TableError):
        validate(bad)


def test_the_catalog_and_a_fresh_fit_pass_the_schema() -> None:
    import actiba

    files = sorted(Path(__file__).resolve().parents[1].joinpath("fits").glob("*.json"))
    for f in files[:50]:
        d = json.loads(f.read_text())
        if d.get("format") == "actiba-pwl/1":
            assert _schema_ok(d), f.name
    assert _schema_ok(json.loads(actiba.fit("tanh", segments=6, tails="clamp").to_json()))
