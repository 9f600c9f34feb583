"""The `actiba-pwl/1` table: the canonical evaluator against an independent pure-Python reading of the
normative rule (DESIGN.md §2), JSON round trips, `load`/`validate` errors naming the key, the shipped
JSON Schema, and atomic saves."""

from __future__ import annotations

import json
import math
import os
import struct

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actiba import _atomic
from actiba.errors import InputError, TableError
from actiba.table import Table, evaluate, load, schema, validate

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "actiba", "schema", "actiba-pwl-1.json")


# --------------------------------------------------------------------------------------------------
# independent reference: the normative rule, read literally, in plain Python floats
# --------------------------------------------------------------------------------------------------
def ref_eval(breakpoints, slopes, intercepts, x: float) -> float:
    """i = number of breakpoints b with b <= x;  y = slopes[i] * x + intercepts[i].

    NaN -> NaN; ±inf -> limit of the outer segment, 0·inf taken as the intercept."""
    x = float(x)
    if math.isnan(x):
        return math.nan
    i = 0
    for b in breakpoints:
        if float(b) <= x:
            i += 1
    s, c = float(slopes[i]), float(intercepts[i])
    if math.isinf(x):
        if s == 0.0:
            return c
        return math.copysign(math.inf, s) * math.copysign(1.0, x)
    return s * x + c


def bits(v: float) -> int:
    return struct.unpack("<q", struct.pack("<d", float(v)))[0]


def same(a: float, b: float) -> bool:
    """Bit-exact equality, any NaN equal to any NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return bits(a) == bits(b)


def assert_matches_reference(bp, sl, ic, xs) -> None:
    xs = np.asarray(xs, dtype=np.float64)
    got = evaluate(np.asarray(bp, float), np.asarray(sl, float), np.asarray(ic, float), xs)
    assert got.shape == xs.shape
    for x, y in zip(xs.ravel().tolist(), got.ravel().tolist(), strict=True):
        want = ref_eval(bp, sl, ic, x)
        assert same(y, want), f"x={x!r}: evaluate gave {y!r}, the normative rule gives {want!r}"


SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e300, -1e300, 5e-324, -5e-324,
           2.2250738585072014e-308, -2.2250738585072014e-308, 1e-310, -1e-310,
           1.7976931348623157e308, -1.7976931348623157e308, 1.0, -1.0]


def probe_points(bp) -> np.ndarray:
    bp = np.asarray(bp, dtype=np.float64)
    near = np.concatenate([bp, np.nextafter(bp, -np.inf), np.nextafter(bp, np.inf)])
    lo = float(bp.min()) - 3 if bp.size else -3.0
    hi = float(bp.max()) + 3 if bp.size else 3.0
    return np.concatenate([np.linspace(lo, hi, 1001), near, np.array(SPECIAL)])


TABLES = {
    "one-segment": ([], [2.5], [-1.0]),
    "zero-slope-one-segment": ([], [0.0], [3.0]),
    "breakpoint-at-zero": ([0.0], [0.0, 1.0], [0.0, 0.0]),  # ReLU; -0.0 counts as b <= x
    "silu-like": ([-3.1, -1.2, 0.4], [0.0, -0.05, 0.3, 1.0], [0.0, -0.2, 0.0, 0.0]),
    "negative-outer-slopes": ([-1.0, 2.0], [-2.0, 0.5, -3.0], [1.0, 0.0, 7.0]),
    "jumps": ([-1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [5.0, 0.0, 2.0, -4.0]),
    "subnormal-breakpoints": ([-5e-324, 0.0, 5e-324], [1.0, 2.0, 3.0, 4.0], [0.5, -0.5, 1.5, -1.5]),
    "huge-breakpoints": ([-1e300, 1e300], [1e-300, 1.0, -1e-300], [1.0, 0.0, -1.0]),
}


@pytest.mark.parametrize("name", list(TABLES))
def test_evaluate_matches_normative_rule_on_dense_grid(name):
    bp, sl, ic = TABLES[name]
    assert_matches_reference(bp, sl, ic, probe_points(bp))


def test_segment_selection_at_breakpoints_and_neighbours():
    bp = [-2.0, 0.0, 3.0]
    sl = [10.0, 20.0, 30.0, 40.0]
    ic = [1.0, 2.0, 3.0, 4.0]
    # at a breakpoint the segment to its right is used (b <= x counts); just below, the left one
    for k, b in enumerate(bp):
        assert evaluate(bp, sl, ic, b) == sl[k + 1] * b + ic[k + 1]
        below = float(np.nextafter(b, -np.inf))
        assert evaluate(bp, sl, ic, below) == sl[k] * below + ic[k]
    # -0.0 is equal to the breakpoint 0.0, so it belongs to segment 2
    assert evaluate(bp, sl, ic, -0.0) == ic[2]
    assert evaluate(bp, sl, ic, -5e-324) == sl[1] * -5e-324 + ic[1]


def test_infinite_inputs_take_outer_limits():
    bp = [-1.0, 1.0]
    # outer slopes non-zero: ±inf with the sign of slope·x
    y = evaluate(bp, [2.0, 0.0, -3.0], [7.0, 1.0, 9.0], np.array([-np.inf, np.inf]))
    assert y[0] == -np.inf and y[1] == -np.inf
    y = evaluate(bp, [-2.0, 0.0, 3.0], [7.0, 1.0, 9.0], np.array([-np.inf, np.inf]))
    assert y[0] == np.inf and y[1] == np.inf
    # outer slopes zero: 0·inf is the intercept (not NaN)
    y = evaluate(bp, [0.0, 5.0, 0.0], [-4.0, 1.0, 6.5], np.array([-np.inf, np.inf]))
    assert y.tolist() == [-4.0, 6.5]
    # -0.0 slope also counts as zero
    y = evaluate(bp, [-0.0, 5.0, -0.0], [-4.0, 1.0, 6.5], np.array([-np.inf, np.inf]))
    assert y.tolist() == [-4.0, 6.5]
    # NaN in, NaN out, whatever the slopes
    assert np.isnan(evaluate(bp, [0.0, 5.0, 0.0], [-4.0, 1.0, 6.5], np.nan))


def test_evaluate_keeps_shape_and_accepts_scalars_and_lists():
    bp, sl, ic = TABLES["silu-like"]
    x = np.linspace(-5, 5, 12).reshape(3, 4)
    y = evaluate(bp, sl, ic, x)
    assert y.shape == (3, 4) and y.dtype == np.float64
    assert float(evaluate(bp, sl, ic, 2.0)) == 1.0 * 2.0 + 0.0
    assert evaluate(bp, sl, ic, [2.0, -10.0]).tolist() == [2.0, 0.0]
    t = Table(bp, sl, ic)
    np.testing.assert_array_equal(t(x), y)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("name", list(TABLES))
def test_evaluate_does_not_warn_on_special_inputs(name):
    """Overflow to ±inf and 0·inf are part of the rule, not warnings (numpy's default error state)."""
    bp, sl, ic = TABLES[name]
    with np.errstate(divide="warn", over="warn", invalid="warn", under="ignore"):
        evaluate(bp, sl, ic, np.array(SPECIAL))


finite = st.floats(allow_nan=False, allow_infinity=False)
moderate = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def tables(draw, values=finite):
    n = draw(st.integers(min_value=1, max_value=9))
    bp = sorted(set(draw(st.lists(values, min_size=n - 1, max_size=n - 1))))
    n = len(bp) + 1
    sl = draw(st.lists(values, min_size=n, max_size=n))
    ic = draw(st.lists(values, min_size=n, max_size=n))
    return bp, sl, ic


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.lists(st.floats(), min_size=1, max_size=20))
def test_evaluate_matches_rule_hypothesis(table, xs):
    bp, sl, ic = table
    assert_matches_reference(bp, sl, ic, np.concatenate([xs, bp, SPECIAL]))


@settings(max_examples=60, deadline=None)
@given(tables(moderate))
def test_evaluate_matches_rule_dense_hypothesis(table):
    bp, sl, ic = table
    assert_matches_reference(bp, sl, ic, probe_points(bp))


# --------------------------------------------------------------------------------------------------
# JSON round trip, unknown keys
# --------------------------------------------------------------------------------------------------
def table_dict(**over) -> dict:
    d = {
        "format": "actiba-pwl/1",
        "function": "silu",
        "params": {"beta": 1.0},
        "domain": [-8.0, 8.0],
        "breakpoints": [-3.1, -1.2, 0.4],
        "slopes": [0.0, -0.05, 0.3, 1.0],
        "intercepts": [0.0, -0.2, 0.0, 0.0],
        "continuous": False,
        "error": {"max_abs": 0.0036, "max_rel": None, "rms": 0.0011, "over": "domain"},
        "target": None,
        "provenance": {"actiba": "0.1.0", "created": "2026-11-24T00:00:00Z", "options": {}},
    }
    d.update(over)
    return d


def write(tmp_path, text: str, name: str = "t.json"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@settings(max_examples=100, deadline=None)
@given(tables())
def test_json_round_trip_is_bit_exact(table):
    bp, sl, ic = table
    t = Table(bp, sl, ic, function="custom", domain=(-1.0, 2.0))
    text = t.to_json()
    back = Table.from_json(text)
    for a, b in ((t.breakpoints, back.breakpoints), (t.slopes, back.slopes), (t.intercepts, back.intercepts)):
        assert a.view(np.int64).tolist() == b.view(np.int64).tolist()
    # and the text itself is plain JSON that a non-actiba reader parses to the same floats
    raw = json.loads(text)
    assert [bits(v) for v in raw["slopes"]] == [bits(v) for v in sl]
    assert [bits(v) for v in raw["breakpoints"]] == [bits(v) for v in bp]


def test_save_load_round_trip_keeps_everything(tmp_path):
    d = table_dict(slopes=[-0.0, 5e-324, 0.1 + 0.2, 1.7976931348623157e308],
                   intercepts=[0.0, -2.2250738585072014e-308, 1e-300, -1e300])
    t = Table.from_dict(d)
    p = tmp_path / "t.json"
    t.save(p)
    back = load(p)
    assert back.slopes.view(np.int64).tolist() == [bits(v) for v in d["slopes"]]
    assert back.intercepts.view(np.int64).tolist() == [bits(v) for v in d["intercepts"]]
    assert back.breakpoints.tolist() == d["breakpoints"]
    assert back.function == "silu" and back.params == {"beta": 1.0}
    assert back.domain == (-8.0, 8.0) and back.continuous is False
    assert back.error == d["error"] and back.provenance == d["provenance"] and back.target is None
    assert json.loads(p.read_text()) == t.to_dict()


def test_unknown_keys_are_ignored_by_evaluation_and_kept_on_save(tmp_path):
    d = table_dict(x_vendor={"lut": [1, 2, 3]}, comment="made by hand")
    p = write(tmp_path, json.dumps(d))
    t = load(p)
    ref = Table.from_dict(table_dict())
    xs = np.linspace(-10, 10, 501)
    np.testing.assert_array_equal(t(xs), ref(xs))
    out = tmp_path / "out.json"
    t.save(out)
    again = json.loads(out.read_text())
    assert again["x_vendor"] == {"lut": [1, 2, 3]} and again["comment"] == "made by hand"


def test_minimal_table_with_only_required_keys(tmp_path):
    d = {"format": "actiba-pwl/1", "function": "relu", "breakpoints": [0.0], "slopes": [0.0, 1.0],
         "intercepts": [0.0, 0.0]}
    t = load(write(tmp_path, json.dumps(d)))
    assert t(np.array([-2.0, 3.0])).tolist() == [0.0, 3.0]
    assert t.domain is None and t.segments == 2


# --------------------------------------------------------------------------------------------------
# errors naming the key
# --------------------------------------------------------------------------------------------------
def load_error(tmp_path, text: str) -> str:
    with pytest.raises(TableError) as ei:
        load(write(tmp_path, text))
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("key", ["format", "function", "breakpoints", "slopes", "intercepts"])
def test_missing_required_key_is_named(tmp_path, key):
    d = table_dict()
    del d[key]
    assert repr(key) in load_error(tmp_path, json.dumps(d)) or key in load_error(tmp_path, json.dumps(d))


@pytest.mark.parametrize("over,key", [
    ({"intercepts": [0.0, 0.0, 0.0]}, "intercepts"),
    ({"intercepts": [0.0, 0.0, 0.0, 0.0, 0.0]}, "intercepts"),
    ({"breakpoints": [-3.1, -1.2]}, "breakpoints"),
    ({"breakpoints": [-3.1, -1.2, 0.4, 2.0]}, "breakpoints"),
    ({"slopes": [], "intercepts": [], "breakpoints": []}, ("slopes", "intercepts")),
    ({"domain": [1.0]}, "domain"),
    ({"domain": [1.0, 2.0, 3.0]}, "domain"),
])
def test_wrong_lengths_are_named(tmp_path, over, key):
    msg = load_error(tmp_path, json.dumps(table_dict(**over)))
    assert any(k in msg for k in ((key,) if isinstance(key, str) else key)), msg


@pytest.mark.parametrize("bp", [[-1.2, -3.1, 0.4], [-3.1, -3.1, 0.4], [0.4, -1.2, -3.1], [0.0, -0.0, 1.0]])
def test_unsorted_or_equal_breakpoints_are_named(tmp_path, bp):
    assert "breakpoints" in load_error(tmp_path, json.dumps(table_dict(breakpoints=bp)))


@pytest.mark.parametrize("key,index", [("breakpoints", 1), ("slopes", 2), ("intercepts", 0), ("domain", 1)])
def test_overflowing_number_literal_is_named(tmp_path, key, index):
    d = table_dict()
    d[key] = list(d[key])
    d[key][index] = 12345.0
    text = json.dumps(d).replace("12345.0", "1e999")  # Python's json reads 1e999 as inf
    msg = load_error(tmp_path, text)
    assert key in msg


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nonfinite_json_token_is_rejected(tmp_path, token):
    d = table_dict()
    d["slopes"] = [0.0, -0.05, 12345.0, 1.0]
    msg = load_error(tmp_path, json.dumps(d).replace("12345.0", token))
    assert token in msg or "finite" in msg


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nonfinite_json_token_error_names_the_key(tmp_path, token):
    d = table_dict()
    d["slopes"] = [0.0, -0.05, 12345.0, 1.0]
    msg = load_error(tmp_path, json.dumps(d).replace("12345.0", token))
    assert "slopes" in msg


@pytest.mark.parametrize("over,key", [
    ({"format": "actiba-pwl/2"}, "format"),
    ({"format": 1}, "format"),
    ({"function": ""}, "function"),
    ({"function": 3}, "function"),
    ({"slopes": [0.0, "a", 0.3, 1.0]}, "slopes"),
    ({"slopes": [0.0, True, 0.3, 1.0]}, "slopes"),
    ({"breakpoints": "1,2,3"}, "breakpoints"),
    ({"intercepts": [0.0, None, 0.0, 0.0]}, "intercepts"),
    ({"params": {"beta": "one"}}, "params"),
    ({"continuous": "yes"}, "continuous"),
    ({"domain": [8.0, -8.0]}, "domain"),
    ({"domain": [1.0, 1.0]}, "domain"),
    ({"error": {"over": "everywhere"}}, "error"),
])
def test_bad_values_are_named(tmp_path, over, key):
    assert key in load_error(tmp_path, json.dumps(table_dict(**over)))


@pytest.mark.parametrize("text", ["", "{", '{"format": "actiba-pwl/1", "slopes": [1.0,', "[1, 2, 3]", "null",
                                  '"actiba-pwl/1"', "{'format': 'actiba-pwl/1'}"])
def test_truncated_or_non_object_json(tmp_path, text):
    msg = load_error(tmp_path, text)
    assert "t.json" in msg or "object" in msg


def test_truncated_real_table(tmp_path):
    text = Table.from_dict(table_dict()).to_json()
    for cut in (1, len(text) // 3, len(text) // 2, len(text) - 3):
        msg = load_error(tmp_path, text[:cut])
        assert "JSON" in msg


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(TableError, match="folder"):
        load(tmp_path)
    with pytest.raises(TableError, match="does not exist"):
        load(tmp_path / "nope.json")


def test_binary_garbage_is_a_table_error(tmp_path):
    p = tmp_path / "t.json"
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TableError):
        load(p)


def test_validate_accepts_to_dict_output_and_rejects_non_objects():
    validate(Table([0.0], [0.0, 1.0], [0.0, 0.0], function="relu").to_dict())
    for bad in ([], "x", 3, None):
        with pytest.raises(TableError):
            validate(bad)


def test_table_error_is_input_error():
    assert issubclass(TableError, InputError) and issubclass(InputError, ValueError)


# --------------------------------------------------------------------------------------------------
# the shipped schema
# --------------------------------------------------------------------------------------------------
def test_schema_is_valid_json_schema_and_matches_the_package_copy():
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        on_disk = json.load(fh)
    jsonschema.Draft202012Validator.check_schema(on_disk)
    assert on_disk == schema()
    assert set(on_disk["required"]) >= {"format", "function", "breakpoints", "slopes", "intercepts"}


def test_schema_alone_accepts_design_example_and_rejects_bad_shapes():
    """A reader without actiba, using only the schema and a stock validator."""
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        v = jsonschema.Draft202012Validator(json.load(fh))
    assert v.is_valid(table_dict())
    assert not v.is_valid(table_dict(format="actiba-pwl/0"))
    assert not v.is_valid({k: x for k, x in table_dict().items() if k != "slopes"})
    assert not v.is_valid(table_dict(slopes=[]))
    assert not v.is_valid(table_dict(slopes=["1"] * 4))


# --------------------------------------------------------------------------------------------------
# Table helpers
# --------------------------------------------------------------------------------------------------
def test_jumps_continuity_and_convexity():
    relu = Table([0.0], [0.0, 1.0], [0.0, 0.0])
    assert relu.continuous is True and relu.max_jump() == 0.0 and relu.is_convex() and not relu.is_concave()
    step = Table([0.0], [0.0, 0.0], [0.0, 1.0])
    assert step.continuous is False and step.jumps().tolist() == [1.0]
    assert not step.is_convex()
    t = Table.from_dict(table_dict())
    b = np.asarray(t.breakpoints)
    right = np.array([evaluate(t.breakpoints, t.slopes, t.intercepts, v) for v in b])
    left = np.array([evaluate(t.breakpoints, t.slopes, t.intercepts, np.nextafter(v, -np.inf)) for v in b])
    np.testing.assert_allclose(t.jumps(), right - left, atol=1e-12)
    np.testing.assert_array_equal(t.knot_values(), right)
    assert t.segments == 4


# --------------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------------
def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))  # includes hidden temp files


def test_save_failure_during_rename_leaves_nothing(tmp_path, monkeypatch):
    t = Table.from_dict(table_dict())

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_atomic.os, "replace", boom)
    with pytest.raises(InputError, match="No space left"):
        t.save(tmp_path / "t.json")
    assert listing(tmp_path) == []


def test_save_failure_keeps_old_file_intact(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old contents")
    with pytest.raises(RuntimeError), _atomic.atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old contents"
    assert listing(tmp_path) == ["t.json"]


def test_unserializable_table_leaves_nothing(tmp_path):
    t = Table.from_dict(table_dict())
    t.error = {"max_abs": float("nan")}  # allow_nan=False refuses this
    with pytest.raises(ValueError):
        t.save(tmp_path / "t.json")
    assert listing(tmp_path) == []


def test_save_into_missing_folder_is_input_error(tmp_path):
    t = Table.from_dict(table_dict())
    with pytest.raises(InputError, match="does not exist"):
        t.save(tmp_path / "nope" / "t.json")
    assert listing(tmp_path) == []


def test_save_replaces_existing_file_without_leftovers(tmp_path):
    target = tmp_path / "t.json"
    target.write_text("old")
    Table.from_dict(table_dict()).save(target)
    assert listing(tmp_path) == ["t.json"]
    assert load(target).segments == 4


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_save_into_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError):
            Table.from_dict(table_dict()).save(ro / "t.json")
        assert listing(ro) == []
    finally:
        ro.chmod(0o700)
