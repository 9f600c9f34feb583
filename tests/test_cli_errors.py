"""Inputs that used to end in a traceback, numpy warnings or a silently wrong output: each is now one
line on stderr, exit 2, nothing written (or, for the table set, a summary)."""

from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
import pytest
from _cli import one_line, run

from actiba.cli import main


@pytest.fixture
def table(tmp_path, capsys):
    path = tmp_path / "silu.json"
    assert main(["fit", "silu", "--segments", "6", "-o", str(path)]) == 0
    capsys.readouterr()
    return path


def test_opset_beyond_the_installed_onnx(capsys, tmp_path, table):
    pytest.importorskip("onnx")
    rc, _, err = run(capsys, "export", table, "--to", "onnx", "--param", "opset=99", "-o", tmp_path / "m.onnx")
    assert "opset 99" in one_line(rc, err)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("where", ["slopes", "breakpoints", "domain", "params", "error", "provenance"])
def test_json_number_overflowing_float64(capsys, tmp_path, table, where):
    text = table.read_text()
    d = json.loads(text)
    if where in ("slopes", "breakpoints"):
        text = text.replace(repr(d[where][1]), "1e400", 1)
    elif where == "domain":
        text = re.sub(r'"domain": \[\s*-8\.0', '"domain": [-1e400', text, count=1)
    elif where == "params":
        text = text.replace('"beta": 1.0', '"beta": 1e400', 1)
    elif where == "error":
        text = re.sub(r'"max_abs": [^,]+', '"max_abs": -1e400', text, count=1)
    else:
        text = text.replace('"segments": 6', '"segments": 1e400', 1)
    assert "e400" in text
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    for argv in (["show", bad], ["export", bad, "--to", "c-header", "-o", tmp_path / "t.h"]):
        rc, _, err = run(capsys, *argv)
        assert "not finite" in one_line(rc, err)
    assert not (tmp_path / "t.h").exists()


@pytest.mark.parametrize("lo,hi", [("-1e308", "1e308"), ("-1e200", "1e200"), ("1", "1.0000000000001")])
def test_ranges_float64_cannot_fit_over(capsys, lo, hi):
    with warnings.catch_warnings(record=True) as caught:  # pytest would otherwise swallow numpy's warnings
        warnings.simplefilter("always")
        rc, out, err = run(capsys, "fit", "silu", "--segments", "4", "--range", lo, hi)
    assert "range" in one_line(rc, err) and out == ""
    assert [str(w.message) for w in caught] == []


def test_range_beyond_float16_measures_what_it_can(capsys):
    """No input of [1e10, 1e11] exists in float16: the float16 error is inf in the summary and null
    in the JSON (which has no inf), not a crash on an empty array."""
    rc, out, err = run(capsys, "fit", "silu", "--segments", "4", "--range", "1e10", "1e11")
    assert rc == 0, err
    assert json.loads(out)["error"]["float16_max_abs"] is None and "float16: inf" in err


def _onnx_eval(path, x):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _scaled(table_path, tmp_path, scale) -> str:
    d = json.loads(table_path.read_text())
    d["slopes"] = [s * scale for s in d["slopes"]]
    d["intercepts"] = [c * scale for c in d["intercepts"]]
    d["error"] = None
    out = tmp_path / f"x{scale:g}.json"
    out.write_text(json.dumps(d))
    return out


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_coefficients_refused_for_float_exports(capsys, tmp_path, table, dtype):
    pytest.importorskip("onnx")
    big = _scaled(table, tmp_path, 1e308)
    rc, _, err = run(capsys, "export", big, "--to", "onnx", "--param", f"dtype={dtype}", "-o", tmp_path / "m.onnx")
    assert dtype in one_line(rc, err)
    assert not (tmp_path / "m.onnx").exists()


def test_large_but_representable_coefficients_export_correctly(capsys, tmp_path, table):
    """1e30 coefficients fit in float32: the model is written and computes the table (no NaN)."""
    from actiba.table import load

    big = _scaled(table, tmp_path, 1e30)
    out = tmp_path / "m.onnx"
    rc, _, err = run(capsys, "export", big, "--to", "onnx", "-o", out)
    assert rc == 0, err
    x = np.linspace(-10, 10, 2001, dtype=np.float32)
    y = _onnx_eval(out, x)
    ref = load(big)(x.astype(np.float64))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-6 * 1e30)


def test_float16_export_of_a_table_beyond_float16(capsys, tmp_path, table):
    big = _scaled(table, tmp_path, 1e5)
    rc, _, err = run(capsys, "export", big, "--to", "onnx", "--param", "dtype=float16", "-o", tmp_path / "m.onnx")
    assert "float16" in one_line(rc, err)


@pytest.mark.parametrize("flag,value", [("--tolerance", "-1"), ("--act-tolerance", "-0.5"),
                                        ("--tolerance", "nan"), ("--act-tolerance", "inf")])
def test_negative_or_nonfinite_tolerance(capsys, tmp_path, flag, value):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    rc, _, err = run(capsys, "rewrite", model, "--cumba", flag, value, "-o", tmp_path / "o.onnx")
    assert flag in one_line(rc, err)


def test_fit_negative_max_error(capsys):
    rc, _, err = run(capsys, "fit", "silu", "--max-error", "-1")
    assert "--max-error" in one_line(rc, err)


@pytest.mark.parametrize("weight,why", [("-1", ">= 0"), ("x", ">= 0"), ("1/x", ">= 0"), ("0*x", "0 everywhere"),
                                        ("log(x)", ">= 0")])
def test_bad_weight(capsys, tmp_path, weight, why):
    out = tmp_path / "t.json"
    rc, _, err = run(capsys, "fit", "silu", "--segments", "4", "--metric", "rms", "--weight", weight, "-o", out)
    assert why in one_line(rc, err)
    assert os.listdir(tmp_path) == []


def test_show_summarises_a_table_set(capsys, tmp_path, table):
    d = json.loads(table.read_text())
    tanh = dict(d, function="tanh", params={})
    path = tmp_path / "set.json"
    path.write_text(json.dumps({"format": "actiba-pwl-set/1", "model": None, "calibration": None,
                                "tables": {"*:silu#*": d, "layers.0.mixer:tanh#0": tanh}}))
    rc, out, err = run(capsys, "show", path)
    assert rc == 0, err
    assert "2 table(s)" in out and "[*:silu#*]" in out and "[layers.0.mixer:tanh#0]" in out
    assert out.count("segments  6") == 2 and out.count("measured  max_abs") == 2
    rc, _, err = run(capsys, "show", path, "--plot", tmp_path / "p.png")
    assert "table set" in one_line(rc, err)
    assert not (tmp_path / "p.png").exists()


def test_rewrite_json_output_names_the_output(capsys, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    rc, _, err = run(capsys, "rewrite", model, "--cumba", "-o", tmp_path / "x.json")
    line = one_line(rc, err)
    assert line.startswith(f"actiba: error: output {tmp_path / 'x.json'} must end in .onnx")
