"""OpenVINO lowering (opset13 nodes, CPU, INFERENCE_PRECISION_HINT=f32): every lowering × f32/f16
matches the reference on the dense grid for every kind of table and for random tables, with static
shapes (the fused JIT path) and dynamic ones; long chains still compile; IR export via the CLI."""

from __future__ import annotations

import numpy as np
import pytest
from _grids import assert_matches, grid, interp, random_tables, tables
from hypothesis import HealthCheck, given, settings

ov = pytest.importorskip("openvino")

from actiba.cli import main  # noqa: E402
from actiba.errors import InputError  # noqa: E402
from actiba.lower.openvino_lower import table_model, table_subgraph  # noqa: E402
from actiba.lower.plan import feasible  # noqa: E402

TABLES = tables()
CFG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1}
NP = {"f32": "float32", "f16": "float16"}


@pytest.fixture(scope="module")
def core():
    return ov.Core()


def _run(core, model, x: np.ndarray) -> np.ndarray:
    return core.compile_model(model, "CPU", CFG)(x)[0]


@pytest.mark.parametrize("et", ["f32", "f16"])
@pytest.mark.parametrize("name", list(TABLES))
def test_every_lowering_matches_reference(core, name: str, et: str) -> None:
    t = TABLES[name]
    x = grid(t, NP[et])
    for low in feasible(t):
        static = _run(core, table_model(t, et, low, list(x.shape)), x)
        assert static.dtype == np.dtype(NP[et])
        assert_matches(static, x, t, NP[et], low)
        if et == "f32":  # dynamic shapes take the unfused path: check it too
            dynamic = _run(core, table_model(t, et, low, [-1, -1]), x.reshape(1, -1))
            assert_matches(dynamic, x, t, NP[et], low)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_tables(max_segments=10))
def test_random_tables(core, t) -> None:
    x = grid(t, "float32", n_random=300)
    for low in feasible(t):
        assert_matches(_run(core, table_model(t, "f32", low, list(x.shape)), x), x, t, "float32", low)


@pytest.mark.parametrize("segments", [16, 48])
def test_long_chains_compile_and_match(core, segments: int) -> None:
    # more than ~25 scalars in one fused kernel used to fail: "Can't allocate registers for a snippet"
    t = interp(lambda v: v / (1 + np.exp(-v)), np.linspace(-8, 8, segments - 1))
    x = grid(t, "float32", n_random=2000)
    for low in feasible(t):
        assert_matches(_run(core, table_model(t, "f32", low, list(x.shape)), x), x, t, "float32", low)


def test_subgraph_splices_after_other_nodes(core) -> None:
    import openvino.opset13 as ops

    p = ops.parameter([64], ov.Type.f32)
    h = ops.multiply(p, ops.constant(np.float32(2.0)))
    y = table_subgraph(TABLES["discontinuous"], h.output(0), "select")
    x = np.linspace(-4, 4, 64, dtype=np.float32)
    out = _run(core, ov.Model([ops.result(y)], [p]), x)
    assert_matches(out, 2 * x, TABLES["discontinuous"], "float32", "select")


def test_bad_override_and_type_are_input_errors() -> None:
    with pytest.raises(InputError):
        table_model(TABLES["silu"], "f32", "minmax")
    with pytest.raises(InputError):
        table_model(TABLES["discontinuous"], "f32", "relu-sum")
    with pytest.raises(InputError):
        table_model(TABLES["silu"], "i8")


def test_cli_export_roundtrip(core, tmp_path) -> None:
    src = tmp_path / "t.json"
    TABLES["convex"].save(src)
    out = tmp_path / "m.xml"
    assert main(["export", str(src), "--to", "openvino", "-o", str(out), "--param", "lowering=minmax"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml", "t.json"]
    model = core.read_model(str(out))
    x = grid(TABLES["convex"], "float32", n_random=500)
    model.reshape([x.size])
    assert_matches(_run(core, model, x), x, TABLES["convex"], "float32", "minmax")


@pytest.mark.parametrize("out", ["missing/m.xml", "m.onnx"])
def test_cli_unwritable_exits_2_and_leaves_nothing(tmp_path, capsys, out: str) -> None:
    src = tmp_path / "t.json"
    TABLES["silu"].save(src)
    assert main(["export", str(src), "--to", "openvino", "-o", str(tmp_path / out)]) == 2
    assert capsys.readouterr().err.startswith("actiba: error:")
    assert [p.name for p in tmp_path.rglob("*")] == ["t.json"]


_OV_OP = {"add": "Add", "sub": "Subtract", "mul": "Multiply", "relu": "Relu", "abs": "Abs",
          "clip": "Clamp", "less": "Less", "greater": "Greater", "greater_equal": "GreaterEqual",
          "equal": "Equal", "isnan": "IsNaN", "where": "Select", "max": "Maximum", "min": "Minimum"}
_MOVES = {"Squeeze", "Unsqueeze"}  # the snippet-splitting barriers (no arithmetic)


@pytest.mark.parametrize("et", ["f32", "f16"])
def test_graph_is_the_proven_plan_and_ends_in_the_nan_guard(et: str) -> None:
    """NaN by construction whatever the CPU's Select/Maximum/compare do with NaN (an AVX-512 CPU
    returned 0.995 for NaN from the unguarded where/minmax graphs): the model is the plan op for op
    (barriers aside), and wherever arithmetic alone cannot carry NaN the Result is fed by
    Select(IsNaN(x), x, .) (x possibly moved through a barrier)."""
    from actiba.lower.plan import make_plan, nan_carried

    for t in [*TABLES.values(), interp(np.tanh, np.linspace(-3, 3, 40), 0.0, 0.0)]:
        for low in feasible(t):
            plan = make_plan(t, low, dtype=NP[et])
            assert nan_carried(plan.ops)
            model = table_model(t, et, low, [64])
            kinds = [op.get_type_name() for op in model.get_ordered_ops()
                     if op.get_type_name() not in {"Parameter", "Constant", "Result", *_MOVES}]
            assert sorted(kinds) == sorted(_OV_OP[op.kind] for op in plan.ops), low  # (any topological order)
            if "isnan" not in [op.kind for op in plan.ops]:
                continue
            node = model.get_results()[0].input_value(0).get_node()
            while node.get_type_name() in _MOVES:
                node = node.input_value(0).get_node()

            def source(n):  # the value behind any barriers
                while n.get_type_name() in _MOVES:
                    n = n.input_value(0).get_node()
                return n

            cond = source(node.input_value(0).get_node())
            assert node.get_type_name() == "Select" and cond.get_type_name() == "IsNaN", low
            assert source(cond.input_value(0).get_node()).get_type_name() == "Parameter"
            assert source(node.input_value(1).get_node()).get_type_name() == "Parameter"
