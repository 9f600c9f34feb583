"""OpenVINO rewrites verified on CPU in f32 against the original model, every attribute combination."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

ov = pytest.importorskip("openvino")
from openvino import opset13 as ops  # noqa: E402

from actiba.errors import InputError  # noqa: E402
from actiba.rewrite import openvino_rw  # noqa: E402
from actiba.table import Table  # noqa: E402


def _model(y, x):
    return ov.Model([ops.result(y)], [x])


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4, 5)])
def test_cumba_every_axis_and_flag(shape):
    # one model with an output per combination: one compile per side keeps the test fast
    rank = len(shape)
    x = ops.parameter(list(shape), np.float32, name="x")
    combos = list(itertools.product(range(-rank, rank), (False, True), (False, True)))
    outs = [ops.result(ops.cumsum(x, ops.constant(np.int64(a)), exclusive=e, reverse=r)) for a, e, r in combos]
    m = ov.Model(outs, [x])
    new, sites = openvino_rw.apply(m, ["cumba"])
    assert len(sites) == len(combos) and all(s.ok for s in sites)
    inv = openvino_rw.inventory(new)
    assert "CumSum" not in inv and "Transpose" not in inv
    assert openvino_rw.compare(m, new) < 1e-5


def test_cumba_dynamic():
    x = ops.parameter(ov.PartialShape([-1, 4, 6]), np.float32, name="x")
    m = _model(ops.cumsum(x, ops.constant(np.int64(1))), x)
    new, sites = openvino_rw.apply(m, ["cumba"])
    assert sites[0].ok and openvino_rw.compare(m, new) < 1e-5
    x = ops.parameter(ov.PartialShape([2, -1, 6]), np.float32, name="x")
    m = _model(ops.cumsum(x, ops.constant(np.int64(1))), x)
    _, sites = openvino_rw.apply(m, ["cumba"])
    assert not sites[0].ok and "dynamic" in sites[0].reason


@pytest.mark.parametrize("op", [ops.reduce_sum, ops.reduce_mean])
def test_reduba_every_axes_set(op):
    x = ops.parameter([2, 3, 4, 5], np.float32, name="x")
    combos = [(axes, keep) for k in range(1, 5) for axes in itertools.combinations(range(-4, 0), k)
              for keep in (False, True)]
    m = ov.Model([ops.result(op(x, ops.constant(np.array(a, np.int64)), k)) for a, k in combos], [x])
    new, sites = openvino_rw.apply(m, ["reduba"])
    assert len(sites) == 30 and all(s.ok for s in sites)
    assert not {"ReduceSum", "ReduceMean"} & set(openvino_rw.inventory(new))
    assert openvino_rw.compare(m, new) < 1e-5


def test_reduba_empty_axes_is_identity():
    x = ops.parameter([2, 3], np.float32, name="x")
    m = _model(ops.reduce_sum(x, ops.constant(np.array([], np.int64)), False), x)
    new, sites = openvino_rw.apply(m, ["reduba"])
    assert sites[0].ok and sites[0].detail["plan"] == "identity"
    feeds = openvino_rw.random_inputs(new)
    np.testing.assert_array_equal(openvino_rw.run(new, feeds)[0], feeds[0])


def _chord(f, function, n=32):
    b = np.linspace(-8, 8, n + 1)
    y = f(b)
    s = np.diff(y) / np.diff(b)
    c = y[:-1] - s * b[:-1]
    t = Table(b, np.r_[s[0], s, s[-1]], np.r_[c[0], c, c[-1]], function=function)
    xs = np.linspace(-8, 8, 20001)
    t.error = {"max_abs": float(np.abs(t(xs) - f(xs)).max()), "max_rel": None, "rms": None, "over": "domain"}
    return t


def test_actiba_patterns():
    pytest.importorskip("actiba.lower.openvino_lower")
    silu = _chord(lambda v: v / (1 + np.exp(-v)), "silu")
    tanh = _chord(np.tanh, "tanh")
    x = ops.parameter([4, 64], np.float32, name="x")
    s = ops.multiply(x, ops.sigmoid(x))  # the SiLU pattern as ONNX imports it
    s.set_friendly_name("mixer/silu")
    t = ops.tanh(ops.swish(s))  # Swish (beta 1) feeding Tanh
    m = _model(t, x)
    new, sites = openvino_rw.apply(m, ["actiba"], tables={"silu": silu, "tanh": tanh})
    assert sorted(s.op for s in sites if s.ok) == ["Multiply(x,Sigmoid(x))", "Swish", "Tanh"]
    inv = openvino_rw.inventory(new)
    assert not {"Sigmoid", "Swish", "Tanh"} & set(inv), inv
    # errors compose through three tables; each is < 0.02 on N(0,1) inputs
    assert openvino_rw.compare(m, new) < 3 * max(silu.error["max_abs"], tanh.error["max_abs"]) + 1e-4


def test_save_atomic_and_bad_files(tmp_path):
    x = ops.parameter([4, 8], np.float32, name="x")
    m = _model(ops.cumsum(x, ops.constant(np.int64(0))), x)
    new, _ = openvino_rw.apply(m, ["cumba"])
    out = tmp_path / "m.xml"
    openvino_rw.save_model(new, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    back = openvino_rw.load_model(out)
    assert openvino_rw.compare(m, back) < 1e-5
    (tmp_path / "bad.xml").write_text("<net>")
    with pytest.raises(InputError, match="cannot read"):
        openvino_rw.load_model(tmp_path / "bad.xml")
    with pytest.raises(InputError, match="does not exist"):
        openvino_rw.load_model(tmp_path / "missing.xml")
    with pytest.raises(InputError, match="does not exist"):
        openvino_rw.save_model(new, tmp_path / "no" / "m.xml")
