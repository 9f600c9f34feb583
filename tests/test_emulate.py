"""Emulated bf16 / f16 graphs against an independent numpy model of "round every stored tensor".

The bf16 rounding here is written from the format's definition (round to nearest even on the upper 16
bits of the float32 pattern, NaN kept) and f16 uses numpy's float16 — neither comes from onnxruntime or
from `actiba.evaluate.emulate`.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from actiba.errors import InputError  # noqa: E402
from actiba.evaluate import emulate  # noqa: E402

T, D, H = 257, 3, 4  # T = 257 is not a bf16 number: rounding the shape path would break the Reshape


def bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> nearest bf16 (ties to even) -> float32, by bit arithmetic; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(x), x, r)


def f16(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


ROUND = {"bf16": bf16, "f16": f16}


def _run(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return emulate.session(model).run(None, feeds)


def _cast_graph():
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


_SESSIONS = {p: emulate.session(emulate.emulate_precision(_cast_graph(), p)) for p in emulate.PRECISIONS}


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bitwise equal, or both NaN."""
    return bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.17e-38, 3.4e38, -3.4e38, 65504.0,
                    65519.99, 65520.0, 6e-8, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], dtype=np.float32)


@pytest.mark.parametrize("precision", emulate.PRECISIONS)
@settings(max_examples=60, deadline=None)
@given(bits=st.lists(st.integers(0, 2 ** 32 - 1), min_size=1, max_size=200))
def test_rounding_matches_the_formats_definition(precision: str, bits: list[int]) -> None:
    x = np.concatenate([np.array(bits, dtype=np.uint32).view(np.float32), SPECIAL])
    got = _SESSIONS[precision].run(None, {"x": x})[0]
    assert _same(got, ROUND[precision](x))
    assert np.all(np.isnan(got[np.isnan(x)]))


def test_bf16_rounding_edges() -> None:
    """Independent of the helper: the overflow threshold and ties-to-even, from the bit patterns."""
    pat = np.array([0x7F7F7FFF, 0x7F7F8000, 0x3F808000, 0x3F818000, 0x00008000, 0x80018000], dtype=np.uint32)
    got = _SESSIONS["bf16"].run(None, {"x": pat.view(np.float32)})[0].view(np.uint32)
    assert list(got) == [0x7F7F0000, 0x7F800000, 0x3F800000, 0x3F820000, 0x00000000, 0x80020000]
    got16 = _SESSIONS["f16"].run(None, {"x": np.array([65519.0, 65520.0], dtype=np.float32)})[0]
    assert got16[0] == 65504.0 and np.isposinf(got16[1])


def _model(opset: int = 18):
    """y = MatMul(x, W) + b -> Softplus -> CumSum over T -> Reshape by a float-computed shape; plus
    an int64 output (the length) and the length computed in float (Cast, Mul) then cast back."""
    rng = np.random.default_rng(0)
    # |x|, |W|, |b| in [0.5, 2): once rounded, products and 3-term sums are exact in float32, so
    # MatMul's accumulation order (FMA or not) cannot change the result
    w = (rng.uniform(0.5, 2, (D, H)) * rng.choice([-1, 1], (D, H))).astype(np.float32)
    b = (rng.uniform(0.5, 2, H) * rng.choice([-1, 1], H)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["y"]),
        helper.make_node("Softplus", ["y"], ["s"]),
        helper.make_node("Constant", [], ["axis"], value=numpy_helper.from_array(np.array(1, np.int64))),
        helper.make_node("CumSum", ["s", "axis"], ["c"]),
        helper.make_node("Shape", ["x"], ["shp"]),
        helper.make_node("Gather", ["shp", "one"], ["len"], axis=0),
        helper.make_node("Cast", ["len"], ["len_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["len_f", "fone"], ["len_f2"]),
        helper.make_node("Cast", ["len_f2"], ["len_i"], to=TensorProto.INT64),
        helper.make_node("Concat", ["len_i", "hh"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["c", "newshape"], ["out"]),
    ]
    f = TensorProto.FLOAT
    g = helper.make_graph(
        nodes, "synthetic", [helper.make_tensor_value_info("x", f, [1, T, D])],
        [helper.make_tensor_value_info(n, f, None) for n in ("mm", "y", "s", "c", "out")]
        + [helper.make_tensor_value_info("len", TensorProto.INT64, None)],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"),
         numpy_helper.from_array(np.array([1], np.int64), "one"),
         numpy_helper.from_array(np.array(1.0, np.float32), "fone"),
         numpy_helper.from_array(np.array([H], np.int64), "hh")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), w, b


def _x() -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.uniform(0.5, 2, (1, T, D)) * rng.choice([-1, 1], (1, T, D))).astype(np.float32)


def _softplus(y: np.ndarray) -> np.ndarray:
    """Softplus in float64 (the reference), as float32."""
    y = y.astype(np.float64)
    return (np.maximum(y, 0) + np.log1p(np.exp(-np.abs(y)))).astype(np.float32)


@pytest.mark.parametrize("precision", emulate.PRECISIONS)
def test_graph_equals_numpy_rounding_each_intermediate(precision: str) -> None:
    r = ROUND[precision]
    model, w, b = _model()
    emu = emulate.emulate_precision(model, precision)
    x = _x()
    mm, y, s, c, out, n = _run(emu, {"x": x})
    mm_ref = r(r(x)[0] @ r(w))  # exact products and sums (see _model), then rounded
    assert _same(mm[0], mm_ref)
    y_ref = r(mm_ref + r(b))
    assert _same(y[0], y_ref)
    # Softplus: onnxruntime's float32 result may differ from float64 by an ulp, which can move the
    # rounding only where the exact value is within a few float32 ulps of a midpoint between grid points
    s_ref = r(_softplus(y_ref))
    hi = r(np.nextafter(_softplus(y_ref), np.float32(np.inf)))
    lo = r(np.nextafter(_softplus(y_ref), np.float32(-np.inf)))
    ok = (s[0] == s_ref) | (s[0] == hi) | (s[0] == lo)
    assert ok.all() and (s[0] == s_ref).mean() > 0.99
    assert _same(s, r(s))  # every stored tensor is on the grid
    c_ref = r(np.cumsum(s[0], axis=0, dtype=np.float32))  # sequential float32 sum, then rounded
    assert _same(c[0], c_ref)
    assert _same(out, c)  # the float shape path was not rounded: 257 survived
    assert n.dtype == np.int64 and n.tolist() == [T]
    # the f32 original differs wherever values are not representable
    mm0, *_ = _run(model, {"x": x})
    assert np.abs(mm0 - mm).max() > 0 and not _same(mm0, r(mm0))


def test_integer_and_shape_paths_untouched() -> None:
    model, _, _ = _model()
    emu = emulate.emulate_precision(model, "bf16")
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             onnx.shape_inference.infer_shapes(model).graph.value_info}
    casts_of = {n.input[0] for n in emu.graph.node if n.op_type == "Cast" and n.attribute[0].i == TensorProto.BFLOAT16}
    for name in ("len", "shp", "newshape", "len_i", "len_f", "len_f2", "one", "hh", "axis", "fone"):
        assert not any(c == name or c.startswith(name + "__") for c in casts_of), name
    assert types["len_f"] == TensorProto.FLOAT  # a float tensor, left alone because it is shape arithmetic
    meta = {p.key: p.value for p in emu.metadata_props}
    assert meta["actiba.emulated_precision"] == "bf16" and meta["actiba.emulated_untyped"] == "0"
    # x, W, b, mm, y, s, c, out are rounded (8 tensors); the scale 1.0 on the length is not
    assert int(meta["actiba.emulated_tensors"]) == 8
    assert len(model.graph.node) == 12  # the input model is not modified


def test_keep_leaves_those_outputs_in_f32() -> None:
    model, _, _ = _model()
    emu = emulate.emulate_precision(model, "bf16", keep=("Softplus",))
    mm, y, s, c, out, _ = _run(emu, {"x": _x()})
    s_f32 = _run(model, {"x": _x()})[2]
    assert _same(y, bf16(y))
    assert not _same(s, bf16(s))  # Softplus's output was not rounded
    assert np.abs(s - s_f32).max() > 0  # ... but its input was
    assert _same(c[0], bf16(np.cumsum(s[0], axis=0, dtype=np.float32)))


def test_bad_requests() -> None:
    model, _, _ = _model()
    with pytest.raises(InputError, match="precision"):
        emulate.emulate_precision(model, "fp8")
    with pytest.raises(InputError, match="opset"):
        emulate.emulate_precision(_model(opset=12)[0], "bf16")
    with pytest.raises(InputError, match="ModelProto"):
        emulate.emulate_precision("model.onnx", "bf16")


def _tiny_lm(seq_len: int, scale: float):
    """A fixed-length token model: logits = scale * Gather(E, ids) @ U (vocab 258)."""
    rng = np.random.default_rng(2)
    e = rng.normal(size=(258, 8)).astype(np.float32)
    u = rng.normal(size=(8, 258)).astype(np.float32) * scale
    g = helper.make_graph(
        [helper.make_node("Gather", ["E", "ids"], ["h"]), helper.make_node("MatMul", ["h", "U"], ["logits"])],
        "lm", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, seq_len])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, seq_len, 258])],
        [numpy_helper.from_array(e, "E"), numpy_helper.from_array(u, "U")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), e, u


def test_scoring_matches_numpy() -> None:
    """bits/byte and top-1 agreement against a direct numpy computation on the same windows."""
    seq = 16
    model, e, u = _tiny_lm(seq, 0.5)
    data = bytes(np.random.default_rng(3).integers(0, 256, 3 * seq + 5, dtype=np.uint8))
    windows = [np.frombuffer(data[i:i + seq], np.uint8).astype(np.int64) for i in range(0, 3 * seq, seq)]
    nats, agree = 0.0, 0
    emu_u = bf16(u)
    for w in windows:
        ids = np.concatenate([[256], w[:-1]])
        logits = (e[ids].astype(np.float64) @ u.astype(np.float64))
        lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        nats -= (logits[np.arange(seq), w] - lse).sum()
        emu_logits = bf16((bf16(e)[ids] @ emu_u).astype(np.float32))
        agree += int((logits.argmax(-1) == emu_logits.argmax(-1)).sum())
    want = nats / np.log(2) / (3 * seq)
    assert emulate.bits_per_byte_onnx(model, data, seq) == pytest.approx(want, rel=1e-5)
    emu = emulate.emulate_precision(model, "bf16")
    got = emulate.top1_agreement(model, emu, data, seq)
    assert abs(got - agree / (3 * seq)) <= 2 / (3 * seq)  # ties in bf16 logits may count either way
    assert emulate.top1_agreement(model, model, data, seq) == 1.0
    ref_bpb, ref = emulate.window_logits(model, data, seq)
    cmp = emulate.compare(emu, ref, data, seq)
    assert cmp.positions == 3 * seq and cmp.max_abs_logit_diff > 0 and ref_bpb == pytest.approx(want, rel=1e-5)
    with pytest.raises(InputError, match=r"\[1, 32\]"):
        emulate.bits_per_byte_onnx(model, data, 32)


def test_exported_mamba2_graph(tmp_path) -> None:
    """A real exported Mamba-2 graph (tiny, random weights): every float tensor gets a type and is rounded,
    the emulated logits sit on the bf16 grid and differ from f32, and the f32 graph scores like torch."""
    pytest.importorskip("torch")
    from actiba.evaluate.build import load_model
    from actiba.models.export import export_onnx
    from actiba.models.scoring import score_bits_per_byte

    lm = load_model("random:tiny-mamba2")
    seq = 32
    export_onnx(lm.model, tmp_path / "m.onnx", seq_len=seq, verbose=False)
    model = onnx.load(str(tmp_path / "m.onnx"))
    emu = emulate.emulate_precision(model, "bf16")
    meta = {p.key: p.value for p in emu.metadata_props}
    assert meta["actiba.emulated_untyped"] == "0" and int(meta["actiba.emulated_tensors"]) > 50
    data = bytes(np.random.default_rng(4).integers(0, 256, 2 * seq, dtype=np.uint8))
    ids = np.concatenate([[256], np.frombuffer(data[:seq - 1], np.uint8)]).astype(np.int64)[None]
    got = _run(emu, {"input_ids": ids})[0]
    want = _run(model, {"input_ids": ids})[0]
    assert _same(got, bf16(got)) and np.abs(got - want).max() > 0
    assert emulate.bits_per_byte_onnx(model, data, seq) == pytest.approx(
        score_bits_per_byte(lm.model, data, seq, batch_size=1), rel=1e-4)
