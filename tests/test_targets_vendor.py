"""Vendor comparison (slow suite; `python -m pytest -m slow tests/test_targets_vendor.py`, needs the
`vendor` extra). Arm's Vela compiler (PyPI ethos-u-vela) generates the int16 and int8 LUTs it puts
on Ethos-U: its generators run here on the same quantization and our unoptimised tables (`naive`)
must be Vela's bit for bit, our fitted ones at least as accurate over every input code. LiteRT (PyPI
ai-edge-litert, the TFLite runtime) runs one-op .tflite models built here: its int8 LOGISTIC/TANH must
equal our int8-lut on every code, and our tflite-int16 fits must be at least as accurate as its int16
kernels on all 65536 codes (ratios printed). The TOSA reference model (tosa-tools) is not used: its
pins conflict with onnx (see setup.cfg)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from actiba import functions, targets

pytestmark = pytest.mark.slow
vela_lut = pytest.importorskip("ethosu.vela.lut")
from ethosu.vela.data_type import DataType  # noqa: E402


class _Quant:
    def __init__(self, scale: float, zero_point: int) -> None:
        self.scale_f32, self.zero_point = scale, zero_point


class _Tensor:
    def __init__(self, scale: float, zero_point: int, dtype) -> None:
        self.quantization, self.dtype = _Quant(scale, zero_point), dtype


class _Op:
    def __init__(self, s_in, z_in, s_out, z_out, dtype) -> None:
        self.ifm, self.ofm, self.name = _Tensor(s_in, z_in, dtype), _Tensor(s_out, z_out, dtype), "op"


def _vela(monkeypatch, make, op, fn) -> list[int]:
    """Vela's LUT values for `fn` (its generator's output, before it is attached to the graph)."""
    monkeypatch.setattr(vela_lut, "convert_to_lut", lambda _op, values, _name: list(values))
    return make(op, fn, "f")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


CASES16 = [("tanh", math.tanh, 4.0 / 32768, 1.0 / 32768), ("sigmoid", _sigmoid, 8.0 / 32768, 1.0 / 32768),
           ("tanh", math.tanh, 3.0 / 32768, 1.0 / 32768)]


@pytest.mark.parametrize("name,fn,s_in,s_out", CASES16)
def test_ethosu_int16_naive_is_velas_lut_and_the_fit_beats_it(monkeypatch, capsys, name, fn, s_in, s_out):
    words = _vela(monkeypatch, vela_lut.create_lut_int16_op, _Op(s_in, 0, s_out, 0, DataType.int16), fn)
    E, act = targets.get("ethosu-int16"), functions.get(name)
    # Vela's (TFLite's) range convention: input to 32767 s, output [-32768 s, 32767 s]
    p = {"input_min": s_in * -32768, "input_max": s_in * 32767, "output_min": s_out * -32768,
         "output_max": s_out * 32767}
    naive = E.check(E.naive(act, 512, 0, 0, params=p))
    assert naive.lut == [w % 2**32 for w in words]  # every one of the 512 words
    # accuracy as the hardware dequantizes: x = s_in * q, y = s_out * out (the tensors' true scales;
    # TFLite's range convention builds its table for a 65535/65536 scale, ours from the scales)
    q = np.arange(-32768, 32768)
    theirs = float(np.max(np.abs(s_out * E.simulate(naive, q) - act(s_in * q))))
    fit = E.check(E.fit(act, 512, 0, 0, params={"input_scale": s_in, "output_scale": s_out}))
    ours = float(np.max(np.abs(s_out * E.simulate(fit, q) - act(s_in * q))))
    assert ours == pytest.approx(E.error(fit, act)["max_abs"], rel=1e-12)  # the same grid and scales
    assert ours <= theirs
    with capsys.disabled():
        print(f"\n{name} int16 s_in={s_in:.3g}: Vela max-abs {theirs:.3e}, actiba fit {ours:.3e} "
              f"({theirs / ours:.2f}x better) over all 65536 codes")


@pytest.mark.parametrize("name,fn,s_in,z_in,s_out,z_out", [
    ("tanh", math.tanh, 4.0 / 128, 0, 1.0 / 128, 0), ("sigmoid", _sigmoid, 8.0 / 128, -3, 1.0 / 256, -128),
    ("sigmoid", _sigmoid, 16.0 / 255, 0, 1.0 / 4096, -128)])
def test_int8_lut_is_velas_on_every_code(monkeypatch, name, fn, s_in, z_in, s_out, z_out):
    vals = _vela(monkeypatch, vela_lut.create_lut_8bit_op, _Op(s_in, z_in, s_out, z_out, DataType.int8), fn)
    L = targets.get("int8-lut")
    cfg = L.check(L.fit(functions.get(name), 256, 0, 1, params={
        "input_scale": s_in, "input_zero_point": z_in, "output_scale": s_out, "output_zero_point": z_out}))
    assert cfg.lut == [int(v) for v in vals]
    assert np.array_equal(L.simulate(cfg, np.arange(-128, 128)), np.array(vals))


# -- LiteRT (PyPI ai-edge-litert): the TFLite runtime's own int8 / int16 LOGISTIC and TANH kernels ---
def _tflite_model(op: int, ttype: int, n: int, s_in: float, z_in: int, s_out: float, z_out: int) -> bytes:
    """A one-operator .tflite flatbuffer y = op(x), x and y quantized, built with the schema classes
    Vela ships (no TensorFlow needed)."""
    import flatbuffers
    from ethosu.vela.tflite import Buffer, Model, Operator, OperatorCode, SubGraph, Tensor
    from ethosu.vela.tflite import QuantizationParameters as QP

    b = flatbuffers.Builder(1024)

    def vec(start, items, add):
        start(b, len(items))
        for v in reversed(items):
            add(v)
        return b.EndVector()

    def tensor(name: str, buf: int, s: float, z: int):
        sc, zp = vec(QP.StartScaleVector, [s], b.PrependFloat32), vec(QP.StartZeroPointVector, [z], b.PrependInt64)
        QP.Start(b)
        QP.AddScale(b, sc)
        QP.AddZeroPoint(b, zp)
        q = QP.End(b)
        nm, sh = b.CreateString(name), vec(Tensor.StartShapeVector, [n], b.PrependInt32)
        Tensor.Start(b)
        Tensor.AddShape(b, sh)
        Tensor.AddType(b, ttype)
        Tensor.AddBuffer(b, buf)
        Tensor.AddName(b, nm)
        Tensor.AddQuantization(b, q)
        return Tensor.End(b)

    t0, t1 = tensor("x", 1, s_in, z_in), tensor("y", 2, s_out, z_out)
    ins, outs = vec(Operator.StartInputsVector, [0], b.PrependInt32), vec(Operator.StartOutputsVector, [1],
                                                                           b.PrependInt32)
    Operator.Start(b)
    Operator.AddOpcodeIndex(b, 0)
    Operator.AddInputs(b, ins)
    Operator.AddOutputs(b, outs)
    o = Operator.End(b)
    tens = vec(SubGraph.StartTensorsVector, [t0, t1], b.PrependUOffsetTRelative)
    gi, go = vec(SubGraph.StartInputsVector, [0], b.PrependInt32), vec(SubGraph.StartOutputsVector, [1],
                                                                        b.PrependInt32)
    opsv = vec(SubGraph.StartOperatorsVector, [o], b.PrependUOffsetTRelative)
    SubGraph.Start(b)
    SubGraph.AddTensors(b, tens)
    SubGraph.AddInputs(b, gi)
    SubGraph.AddOutputs(b, go)
    SubGraph.AddOperators(b, opsv)
    sg = SubGraph.End(b)
    OperatorCode.Start(b)
    OperatorCode.AddDeprecatedBuiltinCode(b, op)
    OperatorCode.AddBuiltinCode(b, op)
    OperatorCode.AddVersion(b, 3)
    oc = OperatorCode.End(b)
    bufs = []
    for _ in range(3):
        Buffer.Start(b)
        bufs.append(Buffer.End(b))
    bv = vec(Model.StartBuffersVector, bufs, b.PrependUOffsetTRelative)
    ocv = vec(Model.StartOperatorCodesVector, [oc], b.PrependUOffsetTRelative)
    sgv = vec(Model.StartSubgraphsVector, [sg], b.PrependUOffsetTRelative)
    Model.Start(b)
    Model.AddVersion(b, 3)
    Model.AddOperatorCodes(b, ocv)
    Model.AddSubgraphs(b, sgv)
    Model.AddBuffers(b, bv)
    b.Finish(Model.End(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def _litert(model: bytes, x: np.ndarray) -> np.ndarray:
    interp = pytest.importorskip("ai_edge_litert.interpreter").Interpreter(model_content=model)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).astype(np.int64)


def _ops():
    from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator
    from ethosu.vela.tflite.TensorType import TensorType

    return BuiltinOperator, TensorType


@pytest.mark.parametrize("name,s_in,z_in,s_out,z_out", [("sigmoid", 8 / 128, -3, 1 / 256, -128),
                                                        ("tanh", 4 / 128, 0, 1 / 128, 0),
                                                        ("sigmoid", 16 / 128, 5, 1 / 256, -128)])
def test_int8_lut_matches_litert_on_every_code(name, s_in, z_in, s_out, z_out):
    BO, TT = _ops()
    op = BO.LOGISTIC if name == "sigmoid" else BO.TANH
    q = np.arange(-128, 128, dtype=np.int8)
    theirs = _litert(_tflite_model(op, TT.INT8, 256, s_in, z_in, s_out, z_out), q)
    L = targets.get("int8-lut")
    cfg = L.check(L.fit(functions.get(name), 256, 0, 1, params={
        "input_scale": s_in, "input_zero_point": z_in, "output_scale": s_out, "output_zero_point": z_out}))
    assert np.array_equal(L.simulate(cfg, q.astype(np.int64)), theirs)


@pytest.mark.parametrize("name,s_in", [("sigmoid", 8 / 32768), ("sigmoid", 4 / 32768), ("tanh", 4 / 32768),
                                       ("tanh", 8 / 32768)])
def test_tflite_int16_fit_beats_litert_kernels(capsys, name, s_in):
    """LiteRT's int16 LOGISTIC / TANH (TFLite's integer kernels; output scale 1/32768 as it requires)
    against our tflite-int16 fit at the same scales, on all 65536 codes."""
    BO, TT = _ops()
    s_out = 1 / 32768
    q = np.arange(-32768, 32768)
    op = BO.LOGISTIC if name == "sigmoid" else BO.TANH
    theirs_out = _litert(_tflite_model(op, TT.INT16, q.size, s_in, 0, s_out, 0), q.astype(np.int16))
    act = functions.get(name)
    ref = act(s_in * q)
    theirs = float(np.max(np.abs(s_out * theirs_out - ref)))
    T = targets.get("tflite-int16")
    cfg = T.check(T.fit(act, 512, 0, 0, params={"input_scale": s_in, "output_scale": s_out}))
    ours = float(np.max(np.abs(s_out * T.simulate(cfg, q) - ref)))
    assert ours <= theirs
    with capsys.disabled():
        print(f"\nLiteRT int16 {name} s_in={s_in * 32768:g}/32768: LiteRT max-abs {theirs:.3e}, actiba "
              f"tflite-int16 fit {ours:.3e} ({theirs / ours:.2f}x) over all 65536 codes")
