"""ONNX lowering: every lowering × float32/float16 matches the reference under onnxruntime on the
dense grid (specials, breakpoints ± 2 ulps, 1e4 randoms) for every kind of table and for random
tables; graphs pass onnx.checker (full_check); splicing, functions and the CLI contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _grids import assert_matches, grid, random_tables, tables
from hypothesis import HealthCheck, given, settings

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from actiba.cli import main  # noqa: E402
from actiba.errors import InputError  # noqa: E402
from actiba.lower.onnx_lower import table_function, table_model, table_nodes  # noqa: E402
from actiba.lower.plan import feasible  # noqa: E402

TABLES = tables()


def _run(model, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", list(TABLES))
def test_every_lowering_matches_reference(name: str, dtype: str) -> None:
    t = TABLES[name]
    x = grid(t, dtype)
    for low in feasible(t):
        m = table_model(t, dtype, low, rank=2)  # runs onnx.checker full_check
        y = _run(m, x.reshape(2, -1) if x.size % 2 == 0 else x[:-1].reshape(2, -1))
        xx = x if x.size % 2 == 0 else x[:-1]
        assert y.dtype == np.dtype(dtype) and y.shape == (2, xx.size // 2)
        assert_matches(y, xx, t, dtype, low)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables(max_segments=10))
def test_random_tables(t) -> None:
    x = grid(t, "float32", n_random=300)
    for low in feasible(t):
        assert_matches(_run(table_model(t, "float32", low), x), x, t, "float32", low)


def test_auto_model_records_lowering_and_any_rank() -> None:
    m = table_model(TABLES["silu"], rank=3)
    props = {p.key: p.value for p in m.metadata_props}
    assert props["actiba.lowering"] in feasible(TABLES["silu"])
    x = np.linspace(-9, 9, 24, dtype=np.float32).reshape(2, 3, 4)
    assert_matches(_run(m, x), x, TABLES["silu"], "float32", props["actiba.lowering"])


def test_two_tables_spliced_into_one_graph() -> None:
    a, b = TABLES["silu"], TABLES["discontinuous"]
    n1, i1 = table_nodes(a, "x", "h", "a_", TensorProto.FLOAT, "relu-sum")
    n2, i2 = table_nodes(b, "h", "y", "b_", TensorProto.FLOAT, "where")
    names = [o for n in n1 + n2 for o in n.output] + [i.name for i in i1 + i2]
    assert len(names) == len(set(names))
    g = helper.make_graph(n1 + n2, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])], i1 + i2)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.checker.check_model(m, full_check=True)
    x = np.linspace(-8, 8, 1001, dtype=np.float32)
    y = _run(m, x)
    h = a(x.astype(np.float64)).astype(np.float32)
    assert_matches(y, h, b, "float32", "where")


def test_function_proto_in_a_model() -> None:
    t = TABLES["convex"]
    f = table_function(t, lowering="minmax")
    node = helper.make_node(f.name, ["x"], ["y"], domain=f.domain)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    m = helper.make_model(g, functions=[f], ir_version=8,
                          opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(f.domain, 1)])
    onnx.checker.check_model(m, full_check=True)
    x = grid(t, "float32", n_random=500)
    assert_matches(_run(m, x), x, t, "float32", "minmax")


@pytest.mark.parametrize("name,lowering", [("silu", "minmax"), ("discontinuous", "relu-sum"), ("silu", "bogus")])
def test_bad_override_is_input_error(name: str, lowering: str) -> None:
    with pytest.raises(InputError):
        table_model(TABLES[name], lowering=lowering)
    with pytest.raises(InputError):
        table_nodes(TABLES[name], "x", "y", "p_", lowering=lowering)


def test_old_opset_and_bad_dtype_are_input_errors() -> None:
    with pytest.raises(InputError):
        table_model(TABLES["silu"], opset=11)
    with pytest.raises(InputError):
        table_model(TABLES["silu"], dtype="int8")


def test_cli_export(tmp_path, capsys) -> None:
    src = tmp_path / "t.json"
    TABLES["silu"].save(src)
    out = tmp_path / "f.onnx"
    assert main(["export", str(src), "--to", "onnx", "-o", str(out), "--param", "dtype=float16"]) == 0
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    x = np.linspace(-7, 7, 99).astype(np.float16)
    low = {p.key: p.value for p in m.metadata_props}["actiba.lowering"]
    assert_matches(_run(m, x), x, TABLES["silu"], "float16", low)
    assert "lowering" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx", "t.json"]


@pytest.mark.parametrize("args", [["-o", "{d}/missing/f.onnx"],
                                  ["-o", "{d}/f.onnx", "--param", "lowering=minmax"],
                                  ["-o", "{d}/f.onnx", "--param", "colour=red"]])
def test_cli_failures_exit_2_and_leave_nothing(tmp_path, capsys, args) -> None:
    src = tmp_path / "t.json"
    src.write_text(json.dumps(TABLES["silu"].to_dict()))
    argv = ["export", str(src), "--to", "onnx"] + [a.format(d=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("actiba: error:") and "\n" not in err
    assert [p.name for p in tmp_path.rglob("*")] == ["t.json"]


_ONNX_OP = {"add": "Add", "sub": "Sub", "mul": "Mul", "relu": "Relu", "abs": "Abs", "clip": "Clip",
            "less": "Less", "greater": "Greater", "greater_equal": "GreaterOrEqual", "equal": "Equal",
            "isnan": "IsNaN", "where": "Where", "sum": "Sum", "max": "Max", "min": "Min"}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_graph_is_the_proven_plan_and_ends_in_the_nan_guard(dtype: str) -> None:
    """NaN by construction, independent of the CPU onnxruntime runs on: the graph is the plan node for
    node (so `nan_carried`'s proof holds for it), and wherever arithmetic alone cannot carry NaN the
    output is Where(IsNaN(x), x, .)."""
    from actiba.lower.plan import make_plan, nan_carried

    for name, t in TABLES.items():
        for low in feasible(t):
            plan = make_plan(t, low, dtype=dtype)
            assert nan_carried(plan.ops)
            g = table_model(t, dtype, low).graph
            assert [n.op_type for n in g.node] == [_ONNX_OP[op.kind] for op in plan.ops], (name, low)
            last = g.node[-1]
            assert last.output[0] == "y"
            if "isnan" in [op.kind for op in plan.ops]:
                by_out = {n.output[0]: n for n in g.node}
                cond = by_out[last.input[0]]
                assert (last.op_type, cond.op_type, list(cond.input), last.input[1]) == \
                    ("Where", "IsNaN", ["x"], "x"), (name, low)
