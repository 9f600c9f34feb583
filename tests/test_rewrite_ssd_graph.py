"""Graph-level SSD rewrite d1 (ONNX and OpenVINO): matching, exactness, refusals, unchanged graphs.

References are independent of the rewrite: a numpy double loop for HF's segment sum, and the HF torch
model's logits for exported Mamba-2 graphs.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _torch_ref import torch_logits as _torch_logits  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from actiba.rewrite import apply, find_sites, onnx_ssd  # noqa: E402
from actiba.rewrite.onnx_rw import run  # noqa: E402


def segsum_reference(x: np.ndarray) -> np.ndarray:
    """HF segment_sum by its definition: out[..., i, j] = sum_{j<k<=i} x_k, -inf above the diagonal."""
    t = x.shape[-1]
    out = np.full(x.shape + (t,), -np.inf, dtype=np.float64)
    for i in range(t):
        for j in range(i + 1):
            out[..., i, j] = x[..., j + 1:i + 1].astype(np.float64).sum(-1)
    return out


def segsum_graph(t: int, lead: tuple[int, ...] = (2, 3), expand: str = "Expand", mask1: str = "where",
                 masks: str = "const", final: str = "where", dtype: int = TensorProto.FLOAT,
                 first_diag: int = -1, with_cumsum: bool = False) -> onnx.ModelProto:
    """HF's segment sum as exporters write it, in the requested variant."""
    np_dt = helper.tensor_dtype_to_np_dtype(dtype)
    shape = list(lead) + [t]
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def tril_mask(name: str, k: int) -> str:
        """~tril(ones, k) as a bool constant, or as Not(Trilu(ones, k)) nodes."""
        if masks == "const":
            return const(name, ~np.tril(np.ones((t, t), bool), k))
        ones = const(name + "_ones", np.ones((t, t), bool))
        nodes.append(helper.make_node("Trilu", [ones, const(name + "_k", np.array(k, np.int64))],
                                      [name + "_tril"], upper=0))
        nodes.append(helper.make_node("Not", [name + "_tril"], [name]))
        return name

    nodes.append(helper.make_node("Unsqueeze", ["x", const("ax", np.array([-1], np.int64))], ["u"]))
    if expand == "Expand":
        nodes.append(helper.make_node("Expand", ["u", const("shp", np.array(shape + [t], np.int64))], ["e"]))
    elif expand == "Tile":
        reps = np.array([1] * len(shape) + [t], np.int64)
        nodes.append(helper.make_node("Tile", ["u", const("reps", reps)], ["e"]))
    else:  # broadcasting inside the Where/Mul
        nodes.append(helper.make_node("Identity", ["u"], ["e"]))
    if mask1 == "where":
        nodes.append(helper.make_node("Where", [tril_mask("m1", first_diag), const("zero", np.array(0, np_dt)),
                                                "e"], ["masked"]))
    else:
        keep = np.tril(np.ones((t, t)), first_diag).astype(np_dt)
        nodes.append(helper.make_node("Mul", ["e", const("keep", keep)], ["masked"]))
    nodes.append(helper.make_node("CumSum", ["masked", const("axis", np.array(-2, np.int64))], ["c"]))
    if final == "where":
        nodes.append(helper.make_node("Where", [tril_mask("m2", 0), const("ninf", np.array(-np.inf, np_dt)), "c"],
                                      ["y"]))
    else:
        add = np.where(np.tril(np.ones((t, t), bool)), 0, -np.inf).astype(np_dt)
        nodes.append(helper.make_node("Add", ["c", const("addmask", add)], ["y"]))
    outputs = [helper.make_tensor_value_info("y", dtype, shape + [t])]
    if with_cumsum:  # HF also takes CumSum(x, -1) of the same x: d1 reuses it
        nodes.append(helper.make_node("CumSum", ["x", const("axis_last", np.array(-1, np.int64))], ["cs"]))
        outputs.append(helper.make_tensor_value_info("cs", dtype, shape))
    graph = helper.make_graph(nodes, "segsum", [helper.make_tensor_value_info("x", dtype, shape)], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def _check_rewritten(model: onnx.ModelProto, x: np.ndarray, atol: float = 1e-5) -> onnx.ModelProto:
    sites = find_sites(model, "ssd-d1")
    assert [s.decision for s in sites if s.shape and len(s.shape) == x.ndim + 1] == ["rewrite"], \
        [s.line() for s in sites]
    new, done = apply(model, ["ssd-d1"])
    # apply's own check uses its own (unscaled) random inputs: only a loose bound applies to it
    assert any(s.ok and s.detail["max_diff_random"] < max(atol, 1e-4) for s in done)
    got = run(new, {"x": x})[0]
    want = segsum_reference(x)
    assert np.array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], atol=atol, rtol=1e-5)
    # the T×T CumSum is gone; one CumSum over x's last axis remains
    assert _ops(new)["CumSum"] == 1 and "Expand" not in _ops(new) and "Tile" not in _ops(new)
    return new


@pytest.mark.parametrize("expand", ["Expand", "Tile", "broadcast"])
@pytest.mark.parametrize("mask1,masks,final", [("where", "const", "where"), ("mul", "const", "add"),
                                               ("where", "trilu", "where"), ("where", "trilu", "add")])
def test_variants_match_and_equal_reference(expand: str, mask1: str, masks: str, final: str) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    _check_rewritten(segsum_graph(8, expand=expand, mask1=mask1, masks=masks, final=final), x)


def test_reuses_existing_cumsum() -> None:
    model = segsum_graph(6, with_cumsum=True)
    (site,) = [s for s in find_sites(model, "ssd-d1") if s.ok]
    assert site.detail["reuse_cumsum"]
    x = np.random.default_rng(1).standard_normal((2, 3, 6)).astype(np.float32)
    new = _check_rewritten(model, x)
    np.testing.assert_allclose(run(new, {"x": x})[1], np.cumsum(x, -1), rtol=1e-6, atol=1e-6)


@settings(max_examples=12, deadline=None)
@given(t=st.integers(2, 12), lead=st.lists(st.integers(1, 3), min_size=0, max_size=3),
       scale=st.sampled_from([0.1, 1.0, 5.0]), seed=st.integers(0, 2**16))
def test_exact_within_float_tolerance(t: int, lead: list[int], scale: float, seed: int) -> None:
    x = (scale * np.random.default_rng(seed).standard_normal(tuple(lead) + (t,))).astype(np.float32)
    # |cs_i - cs_j| rounding: a few ulps of the partial sums' magnitude
    _check_rewritten(segsum_graph(t, lead=tuple(lead)), x, atol=8 * np.finfo(np.float32).eps * scale * t)


def test_wrong_first_mask_is_not_matched() -> None:
    """With tril(0) instead of tril(-1) the sum includes x_j: not cs_i - cs_j, must be left alone."""
    model = segsum_graph(5, first_diag=0)
    sites = find_sites(model, "ssd-d1")
    assert not any(s.ok for s in sites)
    assert "strictly lower-triangular" in sites[0].reason
    new, _ = apply(model, ["ssd-d1"])
    assert _ops(new) == _ops(model)


@pytest.mark.parametrize("dtype,name", [(TensorProto.FLOAT16, "f16"), (TensorProto.BFLOAT16, "bf16")])
def test_refuses_half_precision_graphs(dtype: int, name: str) -> None:
    model = segsum_graph(4, dtype=dtype, masks="trilu" if dtype == TensorProto.BFLOAT16 else "const",
                         mask1="where")
    if dtype == TensorProto.BFLOAT16:  # numpy has no bf16 constants: make the 0/-inf scalars bf16 tensors
        for init in model.graph.initializer:
            if init.name in ("zero", "ninf"):
                value = float(numpy_helper.to_array(init))
                init.CopyFrom(helper.make_tensor(init.name, TensorProto.BFLOAT16, [], [value]))
    (site,) = find_sites(model, "ssd-d1")
    assert not site.ok and f"refused for {name}" in site.reason
    new, done = apply(model, ["ssd-d1"])
    assert _ops(new) == _ops(model) and not any(s.ok for s in done)


@pytest.mark.parametrize("precision", ["bf16", "f16"])
def test_refuses_half_inference_precision(precision: str) -> None:
    model = segsum_graph(4)
    (site,) = find_sites(model, "ssd-d1", precision=precision)
    assert not site.ok and "cancel" in site.reason
    new, _ = apply(model, ["ssd-d1"], precision=precision)
    assert _ops(new) == _ops(model)


def test_graph_without_pattern_is_unchanged_with_reason() -> None:
    axis = numpy_helper.from_array(np.array(1, np.int64), "axis")
    graph = helper.make_graph([helper.make_node("CumSum", ["x", "axis"], ["y"]),
                               helper.make_node("Relu", ["y"], ["z"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, [3, 4])], [axis])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (site,) = find_sites(model, "ssd-d1")
    assert not site.ok and "not a segment sum" in site.reason
    new, _ = apply(model, ["ssd-d1"])
    assert new.graph.SerializeToString() == model.graph.SerializeToString()


# --- exported models ---------------------------------------------------------------------------------

def test_exported_mamba2_onnx(tiny_mamba2) -> None:
    torch_model, model, _ = tiny_mamba2
    sites = find_sites(model, "ssd-d1")
    ok = [s for s in sites if s.ok]
    assert len(ok) == 2, [s.line() for s in sites]  # intra-chunk (T=16) and inter-chunk (T=4) segment sums
    assert sorted(s.detail["T"] for s in ok) == [4, 16]
    new, done = apply(model, ["ssd-d1"])
    for s in done:
        if s.ok:
            assert s.detail["max_diff_random"] < 1e-4 and s.detail["max_diff_real"] < 1e-4
    assert _ops(new)["CumSum"] == _ops(model)["CumSum"] - 1  # one new CumSum, two T×T ones gone
    ids = onnx_ssd.real_inputs(model)["input_ids"]
    np.testing.assert_allclose(run(new, {"input_ids": ids})[0], _torch_logits(torch_model, ids), atol=1e-4)


def test_exported_mamba2_openvino(tiny_mamba2) -> None:
    ov = pytest.importorskip("openvino")
    from actiba.rewrite import openvino_ssd
    from actiba.rewrite.openvino_rw import inventory
    from actiba.rewrite.openvino_rw import run as ov_run

    torch_model, _, path = tiny_mamba2
    ov_model = ov.convert_model(path)
    new, done = apply(ov_model, ["ssd-d1"])
    ok = [s for s in done if s.ok]
    assert len(ok) == 2 and all(s.detail["max_diff_real"] < 1e-4 for s in ok)
    assert inventory(new)["CumSum"] == inventory(ov_model)["CumSum"] - 1
    ids = openvino_ssd.real_inputs(ov_model)[0]
    np.testing.assert_allclose(ov_run(new, [ids])[0], _torch_logits(torch_model, ids), atol=1e-4)
    # refused for bf16 inference: nothing changes
    same, done = apply(ov_model, ["ssd-d1"], precision="bf16")
    assert not any(s.ok for s in done) and inventory(same) == inventory(ov_model)


def test_d1_then_cumba_in_one_apply() -> None:
    """d1 runs first, so CumBA sees the new CumSum(x, -1) instead of the T×T one."""
    x = np.random.default_rng(2).standard_normal((2, 3, 8)).astype(np.float32)
    new, done = apply(segsum_graph(8), ["ssd-d1", "cumba"])
    assert [s.rewrite for s in done if s.ok] == ["ssd-d1", "cumba"]
    assert "CumSum" not in _ops(new)
    want = segsum_reference(x)
    got = run(new, {"x": x})[0]
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], atol=1e-5)


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_cli_ssd_d1(tiny_mamba2, tmp_path, capsys, precision: str) -> None:
    """`actiba rewrite --ssd-d1`: f32 rewrites and matches HF torch; bf16 refuses every site, so the request
    changes nothing: exit 2 unless --allow-noop."""
    from actiba.cli import main

    model, original, path = tiny_mamba2
    out = tmp_path / "d1.onnx"
    if precision == "bf16":
        assert main(["rewrite", path, "--ssd-d1", "--precision", precision, "-o", str(out)]) == 2
        assert "changed nothing" in capsys.readouterr().err and not out.exists()
    noop = ["--allow-noop"] if precision == "bf16" else []
    code = main(["rewrite", path, "--ssd-d1", "--precision", precision, *noop, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    new = onnx.load(str(out))
    if precision == "f32":
        assert _ops(new)["CumSum"] < _ops(original)["CumSum"]
        ids = np.random.default_rng(3).integers(0, 256, (1, 40)).astype(np.int64)
        got = run(new, {new.graph.input[0].name: ids})[0]
        np.testing.assert_allclose(got, _torch_logits(model, ids), atol=1e-3)
    else:
        assert _ops(new) == _ops(original)
        assert "refused" in err and "0 of" in err
