"""`actiba rewrite`: dry run, verification refusal, bad input -> exit 2 with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from actiba.cli import main  # noqa: E402


@pytest.fixture
def graph(tmp_path):
    nodes = [h.make_node("CumSum", ["x", "m2"], ["c"], name="blk/cs_rows"),
             h.make_node("CumSum", ["c", "m1"], ["d"], name="blk/cs_last"),
             h.make_node("ReduceSum", ["d", "m1"], ["r"], name="blk/rs", keepdims=1),
             h.make_node("Sigmoid", ["r"], ["s"]), h.make_node("Mul", ["r", "s"], ["y"], name="blk/act")]
    inits = [nh.from_array(np.array(-2, np.int64), "m2"), nh.from_array(np.array([-1], np.int64), "m1")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, ["b", 8, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["b", 8, 1])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), str(path))
    return path


def _silu_table(tmp_path, n=16):
    b = np.linspace(-8, 8, n + 1)
    y = b / (1 + np.exp(-b))
    s = np.diff(y) / np.diff(b)
    c = y[:-1] - s * b[:-1]
    d = {"format": "actiba-pwl/1", "function": "silu", "params": {"beta": 1.0}, "domain": [-8, 8],
         "breakpoints": b.tolist(), "slopes": np.r_[0.0, s, 1.0].tolist(),
         "intercepts": np.r_[0.0, c, 0.0].tolist(), "continuous": False,
         "error": {"max_abs": 0.03, "max_rel": None, "rms": None, "over": "domain"}, "target": None,
         "provenance": {}}
    path = tmp_path / "silu.json"
    path.write_text(json.dumps(d))
    return path


def test_dry_run_lists_sites_and_writes_nothing(graph, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    assert main(["rewrite", str(graph), "--cumba", "--cumba-axis", "-2", "--reduba", "--dry-run",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "blk/cs_rows" in err and "axis=-2 -> rewrite" in err
    assert "blk/cs_last" in err and "not in --cumba-axis" in err
    assert "blk/rs" in err and not out.exists()


def test_rewrite_verifies_and_saves(graph, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    table = _silu_table(tmp_path)
    assert main(["rewrite", str(graph), "--cumba", "--reduba", "--act", f"silu={table}", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "exact rewrites: max |output diff|" in err and "ActiBA: max |output diff|" in err
    assert "CumSum" in err and "MatMul" in err  # inventory
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert not {"CumSum", "ReduceSum", "Sigmoid"} & ops


def test_refuses_over_tolerance_unless_forced(graph, tmp_path, capsys):
    out = tmp_path / "out.onnx"
    table = _silu_table(tmp_path)
    assert main(["rewrite", str(graph), "--act", f"silu={table}", "--act-tolerance", "1e-9", "-o", str(out)]) == 2
    assert "nothing written" in capsys.readouterr().err and not out.exists()
    assert set(tmp_path.iterdir()) == {graph, table}  # no temp file left behind
    assert main(["rewrite", str(graph), "--act", f"silu={table}", "--act-tolerance", "1e-9", "--force",
                 "-o", str(out)]) == 0
    assert out.exists()


@pytest.mark.parametrize("case", ["missing", "corrupt", "bad-ext", "bad-act", "nothing", "bad-table", "no-out"])
def test_bad_input_exit_2(graph, tmp_path, capsys, case):
    out = tmp_path / "out.onnx"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    args = {
        "missing": [str(tmp_path / "nope.onnx"), "--cumba", "-o", str(out)],
        "corrupt": [str(bad), "--cumba", "-o", str(out)],
        "bad-ext": [str(graph), "--cumba", "-o", str(tmp_path / "out.xml")],
        "bad-act": [str(graph), "--act", "relu=x.json", "-o", str(out)],
        "nothing": [str(graph), "-o", str(out)],
        "bad-table": [str(graph), "--act", f"silu={tmp_path / 'missing.json'}", "-o", str(out)],
        "no-out": [str(graph), "--cumba"],
    }[case]
    assert main(["rewrite", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("actiba: error:")
    assert not out.exists()
