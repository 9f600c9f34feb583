"""`actiba export --to <hardware target>`: exit codes, no file on error, written configs re-check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actiba import functions, targets
from actiba.cli import main
from actiba.table import Table
from actiba.targets.float_start import interpolating_fit


@pytest.fixture
def float_table(tmp_path):
    t = interpolating_fit(functions.get("silu"), 8, -8.0, 8.0)
    path = tmp_path / "silu.json"
    t.save(path)
    return path


def test_bad_param_exits_2_and_writes_nothing(tmp_path, float_table, capsys):
    out = tmp_path / "lut.json"
    rc = main(["export", str(float_table), "--to", "int8-lut", "-o", str(out), "--param", "input_scale=-1"])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "input_scale" in err and len(err.strip().splitlines()) == 1
    for bad in ("zoom=3", "format=xml", "input_dtype=int4"):
        rc = main(["export", str(float_table), "--to", "int8-lut", "-o", str(out), "--param", bad])
        assert rc == 2 and not out.exists()
    assert list(tmp_path.iterdir()) == [float_table]


@pytest.mark.parametrize("name", ["int8-lut", "tflite-int16", "ethosu-int16"])
def test_lut_exports_of_a_float_table(tmp_path, float_table, name, capsys):
    out = tmp_path / "o.json"
    assert main(["export", str(float_table), "--to", name, "-o", str(out)]) == 0
    cfg = targets.get(name).config_from_json(out.read_text())
    assert "max-abs" in capsys.readouterr().err
    # the LUT reproduces the table it was made from, to within the output step plus interpolation
    T = targets.get(name)
    e = T.error(cfg, Table.from_json(float_table.read_text()))
    assert e["max_abs"] < 0.05
    out_h = tmp_path / "o.h"
    assert main(["export", str(float_table), "--to", name, "-o", str(out_h), "--param", "symbol=silu_q"]) == 0
    assert "silu_q_lut" in out_h.read_text()


def test_npu_ppe_export_needs_power_of_two_slopes(tmp_path, float_table, capsys):
    out = tmp_path / "ppe.json"
    assert main(["export", str(float_table), "--to", "npu-ppe", "-o", str(out)]) == 2 and not out.exists()
    assert "slope" in capsys.readouterr().err
    assert main(["export", str(float_table), "--to", "npu-ppe", "-o", str(out), "--param", "snap=true"]) == 0
    targets.get("npu-ppe").config_from_json(out.read_text())
    out2 = tmp_path / "ppe2.json"
    assert main(["export", str(float_table), "--to", "npu-ppe", "-o", str(out2), "--param", "refit=1"]) == 0
    snapped = targets.get("npu-ppe").config_from_json(out.read_text())
    refit = targets.get("npu-ppe").config_from_json(out2.read_text())
    act = functions.get("silu")
    assert targets.get("npu-ppe").error(refit, act)["max_abs"] < targets.get("npu-ppe").error(snapped,
                                                                                               act)["max_abs"]


def test_fitted_target_table_exports_as_is(tmp_path):
    T = targets.get("npu-ppe")
    t = T.fit(functions.get("tanh"), 8, -4, 4, "asymptote", {})
    src = tmp_path / "tanh_ppe.json"
    t.save(src)
    out = tmp_path / "tanh.h"
    assert main(["export", str(src), "--to", "npu-ppe", "-o", str(out)]) == 0
    assert "tbl" not in out.read_text() and "actiba_table_eval" in out.read_text()
    out_j = tmp_path / "tanh.json"
    assert main(["export", str(src), "--to", "npu-ppe", "-o", str(out_j)]) == 0
    assert json.loads(out_j.read_text()) == t.target
    # parameters cannot silently requantize an already-quantized table
    assert main(["export", str(src), "--to", "npu-ppe", "-o", str(out_j), "--param", "frac_bits=4"]) == 2
    # a hand-edited quantized table is rejected, naming what is wrong
    d = json.loads(src.read_text())
    d["target"]["shifts"][2] = 99
    src.write_text(json.dumps(d))
    bad = tmp_path / "bad.json"
    assert main(["export", str(src), "--to", "npu-ppe", "-o", str(bad)]) == 2 and not bad.exists()


def test_c_header_export(tmp_path, float_table):
    out = tmp_path / "silu.h"
    assert main(["export", str(float_table), "--to", "c-header", "-o", str(out), "--param", "symbol=my_silu"]) == 0
    text = out.read_text()
    assert "MY_SILU_INLINE double my_silu(double x)" in text
    assert main(["export", str(float_table), "--to", "c-header", "-o", str(out), "--param", "symbol=1x"]) == 2


@pytest.mark.parametrize("fn,lo,hi", [("silu", -8, 8), ("softplus", -8, 8), ("gelu", -8, 8),
                                      ("sigmoid", -8, 8), ("tanh", -4, 4), ("exp", -16, 0)])
def test_catalog_api(fn, lo, hi):
    act = functions.get(fn)
    for name in ("npu-ppe", "tflite-int16"):
        t = targets.get(name).fit(act, 8, lo, hi, "asymptote", {})
        assert t.target["name"] == name and t.error["max_abs"] > 0
        Table.from_dict(json.loads(t.to_json()))  # schema-valid
        assert np.isfinite(t.error["max_abs"])
