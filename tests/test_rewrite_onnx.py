"""ONNX rewrites verified with onnxruntime against the original graph, every attribute combination."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from actiba.rewrite import onnx_rw, spec  # noqa: E402
from actiba.table import Table  # noqa: E402


def chord_table(f, function: str, lo: float = -8.0, hi: float = 8.0, n: int = 32) -> Table:
    """Interpolating table with its measured max error (tests must not depend on the fitter)."""
    b = np.linspace(lo, hi, n + 1)
    y = f(b)
    s = np.diff(y) / np.diff(b)
    c = y[:-1] - s * b[:-1]
    t = Table(b, np.r_[s[0], s, s[-1]], np.r_[c[0], c, c[-1]], function=function)
    xs = np.linspace(lo, hi, 20001)
    t.error = {"max_abs": float(np.abs(t(xs) - f(xs)).max()), "max_rel": None, "rms": None, "over": "domain"}
    return t


def _sig(x):
    return 1 / (1 + np.exp(-x))


TABLES = {
    "silu": chord_table(lambda x: x * _sig(x), "silu"),
    "sigmoid": chord_table(_sig, "sigmoid"),
    "tanh": chord_table(np.tanh, "tanh"),
    "softplus": chord_table(lambda x: np.logaddexp(0, x), "softplus"),
    "exp": chord_table(np.exp, "exp", -8, 3, 64),
    "gelu": chord_table(lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), "gelu"),
}


def model(nodes, inputs, inits=(), opset=17, out_type=T.FLOAT):
    x = [h.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    y = h.make_tensor_value_info("y", out_type, None)
    return h.make_model(h.make_graph(nodes, "g", x, [y], list(inits)), opset_imports=[h.make_opsetid("", opset)])


def cumsum_model(shape, axis, exclusive, reverse, dtype=T.FLOAT):
    node = h.make_node("CumSum", ["x", "ax"], ["y"], name="cs", exclusive=exclusive, reverse=reverse)
    return model([node], [("x", dtype, list(shape))], [nh.from_array(np.array(axis, np.int64), "ax")],
                 out_type=dtype)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 3, 4, 5)])
def test_cumba_every_axis_and_flag(shape):
    rank = len(shape)
    for axis, exclusive, reverse in itertools.product(range(-rank, rank), (0, 1), (0, 1)):
        m = cumsum_model(shape, axis, exclusive, reverse)
        new, sites = onnx_rw.apply(m, ["cumba"])
        assert [s.decision for s in sites] == ["rewrite"], sites[0].reason
        assert "CumSum" not in onnx_rw.inventory(new) and "Transpose" not in onnx_rw.inventory(new)
        assert onnx_rw.compare(m, new) < 1e-5, (axis, exclusive, reverse)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=5), st.data(), st.booleans(), st.booleans())
def test_cumba_property(shape, data, exclusive, reverse):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    m = cumsum_model(shape, axis, int(exclusive), int(reverse), dtype=T.DOUBLE)
    new, sites = onnx_rw.apply(m, ["cumba"])
    assert sites[0].ok
    assert onnx_rw.compare(m, new) < 1e-10


def test_cumba_dynamic_dims():
    # dynamic batch: fine (0-copy reshapes); dynamic summed length: left alone, with the reason
    m = cumsum_model(["b", 4, 6, 3], 1, 0, 0)
    new, sites = onnx_rw.apply(m, ["cumba"])
    assert sites[0].ok and onnx_rw.compare(m, new) < 1e-5
    m = cumsum_model([2, "t", 3], 1, 0, 0)
    new, sites = onnx_rw.apply(m, ["cumba"])
    assert not sites[0].ok and "dynamic" in sites[0].reason
    assert onnx_rw.inventory(new) == {"CumSum": 1}


def test_cumba_refuses_nonconstant_axis_and_ints():
    node = h.make_node("CumSum", ["x", "ax"], ["y"])
    m = model([node], [("x", T.FLOAT, [3, 4]), ("ax", T.INT64, [])])
    (site,) = onnx_rw.find_sites(m, "cumba")
    assert not site.ok and "constant" in site.reason
    m = cumsum_model([3, 4], 0, 0, 0, dtype=T.INT64)
    (site,) = onnx_rw.find_sites(m, "cumba")
    assert not site.ok and "floating" in site.reason


def reduce_model(op, shape, axes, keep, noop, as_input):
    opset = (13 if op == "ReduceSum" else 18) if as_input else (11 if op == "ReduceSum" else 17)
    inputs, inits, attrs = ["x"], [], {"keepdims": keep}
    if noop:
        attrs["noop_with_empty_axes"] = 1
    if axes is not None:
        if as_input:
            inits = [nh.from_array(np.array(axes, np.int64), "ax")]
            inputs.append("ax")
        else:
            attrs["axes"] = list(axes)
    node = h.make_node(op, inputs, ["y"], name="r", **attrs)
    return model([node], [("x", T.FLOAT, list(shape))], inits, opset=opset)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean"])
@pytest.mark.parametrize("as_input", [False, True])
def test_reduba_every_axes_set(op, as_input):
    shape = (2, 3, 4, 5)
    count = 0
    for k in range(5):
        for axes, keep, noop in itertools.product(itertools.combinations(range(-4, 0), k), (0, 1), (0, 1)):
            if noop and not as_input:
                continue  # noop_with_empty_axes exists from the opset where axes became an input
            m = reduce_model(op, shape, list(axes) if k else None, keep, noop, as_input)
            new, sites = onnx_rw.apply(m, ["reduba"])
            assert sites[0].ok, sites[0].reason
            assert op not in onnx_rw.inventory(new)
            assert onnx_rw.compare(m, new) < 1e-5, (axes, keep, noop)
            count += 1
    assert count == (64 if as_input else 32)


def test_reduba_dynamic_kept_dims_and_refusals():
    m = reduce_model("ReduceSum", ["b", 3, "t", 5], [1, 3], 1, 0, True)  # non-contiguous: Transpose plan
    new, sites = onnx_rw.apply(m, ["reduba"])
    assert sites[0].detail["plan"] == "transpose" and onnx_rw.compare(m, new) < 1e-5
    m = reduce_model("ReduceMean", [2, "t", 4], [1], 0, 0, True)
    (site,) = onnx_rw.find_sites(m, "reduba")
    assert not site.ok and "dynamic" in site.reason
    node = h.make_node("ReduceSum", ["x", "ax"], ["y"])
    m = model([node], [("x", T.FLOAT, [3, 4]), ("ax", T.INT64, [1])], opset=13)
    (site,) = onnx_rw.find_sites(m, "reduba")
    assert not site.ok and "constant" in site.reason


def test_contraction_avoids_the_product():
    nodes = [h.make_node("Mul", ["a", "b"], ["p"]), h.make_node("ReduceSum", ["p", "ax"], ["y"], name="rs",
                                                                 keepdims=1)]
    for axes in ([-1], [1], [0, 2], [1, 2]):
        m = model(nodes, [("a", T.FLOAT, [3, 1, 8]), ("b", T.FLOAT, [6, 8])],
                  [nh.from_array(np.array(axes, np.int64), "ax")], opset=13)
        new, sites = onnx_rw.apply(m, ["contract", "reduba"])
        assert sites[0].rewrite == "contract" and sites[0].ok, sites[0].reason
        inv = onnx_rw.inventory(new)
        assert inv.get("Einsum") == 1 and "Mul" not in inv and "ReduceSum" not in inv
        assert onnx_rw.compare(m, new) < 1e-5
    m = model(nodes, [("a", T.FLOAT, [3, 8]), ("b", T.FLOAT, [3, 8])],
              [nh.from_array(np.array([-1], np.int64), "ax")], opset=13)
    (site,) = onnx_rw.find_sites(m, "contract")
    assert not site.ok and "broadcast" in site.reason


def _act_graph(kind: str):
    c = [nh.from_array(np.array(v, np.float32), n) for n, v in (("sq2", math.sqrt(2)), ("one", 1.0), ("half", .5))]
    if kind == "silu":
        return [h.make_node("Sigmoid", ["x"], ["s"]), h.make_node("Mul", ["s", "x"], ["y"], name="act")], c, 17
    if kind == "erf-gelu":
        return [h.make_node("Div", ["x", "sq2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
                h.make_node("Add", ["one", "e"], ["p"]), h.make_node("Mul", ["x", "half"], ["xh"]),
                h.make_node("Mul", ["xh", "p"], ["y"], name="act")], c, 17
    if kind == "gelu-op":
        return [h.make_node("Gelu", ["x"], ["y"], name="act")], [], 20
    op = {"softplus": "Softplus", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp"}[kind]
    return [h.make_node(op, ["x"], ["y"], name="act")], [], 17


@pytest.mark.parametrize("kind,fn", [("silu", "silu"), ("erf-gelu", "gelu"), ("gelu-op", "gelu"),
                                     ("softplus", "softplus"), ("sigmoid", "sigmoid"), ("tanh", "tanh"),
                                     ("exp", "exp")])
def test_actiba_within_table_error(kind, fn):
    pytest.importorskip("actiba.lower.onnx_lower")
    nodes, inits, opset = _act_graph(kind)
    m = model(nodes, [("x", T.FLOAT, [4, 64])], inits, opset=opset)
    new, sites = onnx_rw.apply(m, ["actiba"], tables={fn: TABLES[fn]})
    ok = [s for s in sites if s.ok]
    assert len(ok) == 1 and ok[0].detail["function"] == fn
    inv = onnx_rw.inventory(new)
    assert not {"Sigmoid", "Erf", "Gelu", "Softplus", "Tanh", "Exp"} & set(inv), inv
    err = TABLES[fn].error["max_abs"]
    scale = 20.0 if fn == "exp" else 1.0  # exp's error is relative to its size; x ~ N(0,1) stays < 3
    assert onnx_rw.compare(m, new) <= err * scale + 1e-5


def test_actiba_site_tables_and_mismatch():
    pytest.importorskip("actiba.lower.onnx_lower")
    nodes = [h.make_node("Tanh", ["x"], ["t"], name="enc/tanh"), h.make_node("Tanh", ["t"], ["y"], name="dec/tanh")]
    m = model(nodes, [("x", T.FLOAT, [8])])
    new, sites = onnx_rw.apply(m, ["actiba"], site_tables=[("enc/*", TABLES["tanh"])])
    assert [s.decision for s in sites] == ["rewrite", "skip"]
    assert "no table" in sites[1].reason and onnx_rw.inventory(new)["Tanh"] == 1
    _, sites = onnx_rw.apply(m, ["actiba"], tables={"tanh": TABLES["sigmoid"]})
    assert all(not s.ok and "approximates sigmoid" in s.reason for s in sites)
    swish = model([h.make_node("Swish", ["x"], ["y"], alpha=2.0)], [("x", T.FLOAT, [8])], opset=24)
    (site,) = onnx_rw.find_sites(swish, "actiba", {"silu": TABLES["silu"]})
    assert not site.ok and "beta" in site.reason


def test_site_selection_and_names():
    nodes = [h.make_node("CumSum", ["x", "ax"], ["c"], name="layer0/cs"),
             h.make_node("CumSum", ["c", "ax"], ["y"], name="layer1/cs")]
    m = model(nodes, [("x", T.FLOAT, [4, 4])], [nh.from_array(np.array(0, np.int64), "ax")])
    sites = spec.select(onnx_rw.find_sites(m, "cumba"), include=["layer1/*"])
    new, done = onnx_rw.apply(m, ["cumba"], sites=[s.name for s in sites if s.ok])
    assert [s.decision for s in done] == ["skip", "rewrite"]
    assert onnx_rw.inventory(new) == {"CumSum": 1, "MatMul": 1}
    assert onnx_rw.compare(m, new) < 1e-5


def test_dispatching_api():
    from actiba import rewrite

    m = cumsum_model([4, 4], -2, 0, 0)
    (site,) = rewrite.find_sites(m, "cumba")
    new, done = rewrite.apply(m, ["cumba"], sites=[site])
    assert done[0].ok and onnx_rw.inventory(new) == {"MatMul": 1}
    with pytest.raises(Exception, match="cannot rewrite"):
        rewrite.find_sites(object(), "cumba")
