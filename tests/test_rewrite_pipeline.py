"""`rewrite_model` and `actiba rewrite`: no-op requests refused, dead initializers pruned, tolerances relative."""

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
from actiba.errors import InputError  # noqa: E402
from actiba.rewrite import onnx_rw  # noqa: E402
from actiba.rewrite.pipeline import Request, rewrite_model  # noqa: E402


def _model(nodes, inits=(), shape=(4, 8, 16)):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _cumsum(axis=-2):
    return _model([h.make_node("CumSum", ["x", "ax"], ["y"], name="cs")],
                  [nh.from_array(np.array(axis, np.int64), "ax")])


def _silu(gain=1.0):
    """y = gain · x·Sigmoid(x): ActiBA's output error scales with `gain`."""
    nodes = [h.make_node("Sigmoid", ["x"], ["s"]), h.make_node("Mul", ["x", "s"], ["a"], name="act"),
             h.make_node("Mul", ["a", "g"], ["y"], name="gain")]
    return _model(nodes, [nh.from_array(np.array(gain, np.float32), "g")])


def _table_file(tmp_path, function="silu"):
    f = {"silu": lambda b: b / (1 + np.exp(-b)), "softplus": lambda b: np.logaddexp(0, b)}[function]
    b = np.linspace(-8, 8, 17)
    y = f(b)
    s = np.diff(y) / np.diff(b)
    c = y[:-1] - s * b[:-1]
    xs = np.linspace(-8, 8, 20001)
    err = float(np.abs(np.interp(xs, b, y) - f(xs)).max())
    d = {"format": "actiba-pwl/1", "function": function, "params": {"beta": 1.0}, "domain": [-8, 8],
         "breakpoints": b.tolist(), "slopes": np.r_[s[0], s, s[-1]].tolist(),
         "intercepts": np.r_[c[0], c, c[-1]].tolist(), "continuous": True,
         "error": {"max_abs": err, "max_rel": None, "rms": None, "over": "domain"}, "target": None,
         "provenance": {}}
    path = tmp_path / f"{function}.json"
    path.write_text(json.dumps(d))
    return path


def _save(tmp_path, m, name="m.onnx"):
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


@pytest.mark.parametrize("case", ["no-cumsum", "axis-5", "wrong-function"])
def test_noop_requests_exit_2_unless_allowed(tmp_path, capsys, case):
    table = _table_file(tmp_path, "softplus")
    src, args = {
        "no-cumsum": (_silu(), ["--cumba"]),
        "axis-5": (_cumsum(), ["--cumba", "--cumba-axis", "5"]),
        "wrong-function": (_silu(), ["--act", f"silu={table}"]),  # a softplus table given as silu=
    }[case]
    path, out = _save(tmp_path, src), tmp_path / "out.onnx"
    assert main(["rewrite", str(path), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("actiba: error:") and "changed nothing" in err[-1] and "--allow-noop" in err[-1]
    assert not out.exists()
    assert main(["rewrite", str(path), *args, "--allow-noop", "-o", str(out)]) == 0
    assert out.exists() and "changed nothing" in capsys.readouterr().err


def test_dry_run_of_a_noop_lists_and_exits_0(tmp_path, capsys):
    path = _save(tmp_path, _silu())
    assert main(["rewrite", str(path), "--cumba", "--dry-run"]) == 0
    assert "cumba changed nothing" in capsys.readouterr().err


def _unused_initializers(m):
    used = {i for n in m.graph.node for i in n.input}
    return [t.name for t in m.graph.initializer if t.name not in used]


def test_rewritten_graphs_keep_no_dead_initializers():
    nodes = [h.make_node("CumSum", ["x", "ax"], ["c"], name="cs"),
             h.make_node("ReduceSum", ["c", "axes"], ["y"], name="rs", keepdims=1)]
    m = _model(nodes, [nh.from_array(np.array(-2, np.int64), "ax"), nh.from_array(np.array([-1], np.int64), "axes")])
    new, sites = onnx_rw.apply(m, ["cumba", "reduba"])
    assert [s.ok for s in sites] == [True, True]
    assert _unused_initializers(m) == [] and _unused_initializers(new) == []
    assert onnx_rw.compare(m, new) < 1e-4
    shared = _model([h.make_node("CumSum", ["x", "ax"], ["c"], name="cs"),
                     h.make_node("Add", ["c", "ax_f"], ["y"])],
                    [nh.from_array(np.array(-2, np.int64), "ax"), nh.from_array(np.array(1.0, np.float32), "ax_f")])
    new, _ = onnx_rw.apply(shared, ["cumba"])
    assert _unused_initializers(new) == [] and {t.name for t in new.graph.initializer} >= {"ax_f"}


def test_act_tolerance_is_relative_to_the_output_scale(tmp_path):
    """The table error is amplified by the gain: absolutely far above 50 × table error, relatively not."""
    from actiba.table import load

    table = load(str(_table_file(tmp_path)))
    m = _silu(gain=1000.0)
    result = rewrite_model(m, Request(tables={"silu": table}))
    (stage,) = result.stages
    assert stage.name == "ActiBA" and stage.ok and stage.scale > 100
    assert stage.max_diff > 50 * table.error["max_abs"]  # the absolute reading would have refused it
    with pytest.raises(InputError, match="act-tolerance"):
        rewrite_model(m, Request(tables={"silu": table}, act_tolerance=1e-9))
    forced = rewrite_model(m, Request(tables={"silu": table}, act_tolerance=1e-9, force=True))
    assert forced.failures and forced.counts() == {"actiba": 1}


def test_pipeline_result_stages_counts_and_inventory(tmp_path):
    from actiba.table import load

    nodes = [h.make_node("CumSum", ["x", "ax"], ["c"], name="cs"), h.make_node("Sigmoid", ["c"], ["s"]),
             h.make_node("Mul", ["c", "s"], ["y"], name="act")]
    m = _model(nodes, [nh.from_array(np.array(-2, np.int64), "ax")])
    table = load(str(_table_file(tmp_path)))
    result = rewrite_model(m, Request(rewrites=("cumba",), tables={"silu": table}))
    assert result.counts() == {"cumba": 1, "actiba": 1}
    assert [s.name for s in result.stages] == ["exact rewrites", "ActiBA"] and all(s.ok for s in result.stages)
    assert result.before["CumSum"] == 1 and "CumSum" not in result.after and "MatMul" in result.after
    assert "CumSum" in result.inventory_diff()
    assert len(m.graph.node) == 3  # the input model is never modified
    with pytest.raises(InputError, match="unknown rewrite"):
        rewrite_model(m, Request(rewrites=("cumbaa",)))


def test_cli_reaches_any_rule_by_name(tmp_path, capsys):
    path, out = _save(tmp_path, _cumsum()), tmp_path / "out.onnx"
    assert main(["rewrite", str(path), "--rewrite", "cumba", "-o", str(out)]) == 0
    assert "CumSum" not in onnx_rw.inventory(onnx.load(str(out)))
    assert main(["rewrite", str(path), "--rewrite", "cumbaa", "-o", str(out)]) == 2
    assert "unknown rewrite 'cumbaa'; known: actiba" in capsys.readouterr().err
