"""Vendor comparison (slow suite; `python -m pytest -m slow tests/test_targets_vendor.py`, needs the
`vendor` extra). Arm's Vela compiler (PyPI ethos-u-vela) generates the int16 and int8 LUTs it puts
on Ethos-U: its generators run here on the same quantization and our unoptimised tables (`naive`)
must be Vela's bit for bit, our fitted ones at least as accurate over every input code. LiteRT (PyPI
ai-edge-litert, the TFLite runtime) runs one-op .tflite models built here: its int8 LOGISTIC/TANH must
equal our int8-lut on every code, and our tflite-int16 fits must be at least as accurate as its int16
kernels on all 65536 codes (ratios printed). Arm's TOSA reference model (PyPI tosa-tools) runs
one-op TABLE graphs (int16 TABLE alone, the raw int32 of tflite-int16 mode=tosa; TABLE + RESCALE by
2^-7, mode=tflite; int8 TABLE, int8-lut) on every input code: its outputs must be ours bit for bit, and
our fits at least as accurate as the tables TensorFlow's TOSA legalization generates. tosa-tools cannot
share the project venv (its pins conflict with onnx; see scripts/setup_tosa.sh), so it runs in a venv
of its own (`bash scripts/setup_tosa.sh`, found through $ACTIBA_TOSA_VENV, default
~/.cache/actiba/tosa-venv) via scripts/tosa_table.py; those tests skip, saying so, without it."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from actiba import functions, targets
from actiba.data import cache_root
from actiba.errors import InputError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vela():
    """Vela's LUT module and DataType (the Vela tests skip without the `vendor` extra; the TOSA ones
    need only their own venv)."""
    lut = pytest.importorskip("ethosu.vela.lut")
    from ethosu.vela.data_type import DataType

    return lut, DataType


class _Quant:
    def __init__(self, scale: float, zero_point: int) -> None:
        self.scale_f32, self.zero_point = scale, zero_point


class _Tensor:
    def __init__(self, scale: float, zero_point: int, dtype) -> None:
        self.quantization, self.dtype = _Quant(scale, zero_point), dtype


class _Op:
    def __init__(self, s_in, z_in, s_out, z_out, dtype) -> None:
        self.ifm, self.ofm, self.name = _Tensor(s_in, z_in, dtype), _Tensor(s_out, z_out, dtype), "op"


def _vela(monkeypatch, vela_lut, make, op, fn) -> list[int]:
    """Vela's LUT values for `fn` (its generator's output, before it is attached to the graph)."""
    monkeypatch.setattr(vela_lut, "convert_to_lut", lambda _op, values, _name: list(values))
    return make(op, fn, "f")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


CASES16 = [("tanh", math.tanh, 4.0 / 32768, 1.0 / 32768), ("sigmoid", _sigmoid, 8.0 / 32768, 1.0 / 32768),
           ("tanh", math.tanh, 3.0 / 32768, 1.0 / 32768)]


@pytest.mark.parametrize("name,fn,s_in,s_out", CASES16)
def test_ethosu_int16_naive_is_velas_lut_and_the_fit_beats_it(monkeypatch, capsys, vela, name, fn, s_in, s_out):
    vela_lut, DataType = vela
    words = _vela(monkeypatch, vela_lut, vela_lut.create_lut_int16_op, _Op(s_in, 0, s_out, 0, DataType.int16), fn)
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
def test_int8_lut_is_velas_on_every_code(monkeypatch, vela, name, fn, s_in, z_in, s_out, z_out):
    vela_lut, DataType = vela
    vals = _vela(monkeypatch, vela_lut, vela_lut.create_lut_8bit_op, _Op(s_in, z_in, s_out, z_out, DataType.int8),
                 fn)
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
    pytest.importorskip("ethosu.vela.tflite")  # the .tflite schema classes come with Vela
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


# -- TOSA reference model (PyPI tosa-tools, in its own venv: bash scripts/setup_tosa.sh) -------------
RUNNER = Path(__file__).resolve().parents[1] / "scripts" / "tosa_table.py"
Q16, Q8 = np.arange(-32768, 32768, dtype=np.int64), np.arange(-128, 128, dtype=np.int64)


@pytest.fixture(scope="module")
def tosa(tmp_path_factory):
    """`tosa([(table, codes, rescale), ...])` runs each TABLE graph on the reference model and returns
    its outputs as int64 arrays (or the graph status, e.g. "TOSA_UNPREDICTABLE", for a graph it
    rejects); one subprocess per call."""
    venv = Path(os.environ.get("ACTIBA_TOSA_VENV") or cache_root() / "tosa-venv").expanduser()
    py = venv / "bin" / "python"
    if not py.is_file():
        pytest.skip(f"no TOSA reference model venv at {venv}: create it with `bash scripts/setup_tosa.sh` "
                    f"(or point ACTIBA_TOSA_VENV at one)")
    probe = subprocess.run([str(py), "-c", "import tosa_reference_model, tosa_serializer"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode:
        pytest.skip(f"{py} cannot import the TOSA reference model ({probe.stderr.strip()[-200:]}); "
                    f"rerun `bash scripts/setup_tosa.sh`")
    root, count = tmp_path_factory.mktemp("tosa"), itertools.count()

    def run(jobs):
        specs = []
        for table, codes, rescale in jobs:
            k = next(count)
            np.save(root / f"t{k}.npy", np.asarray(table, dtype=np.int64))
            np.save(root / f"x{k}.npy", np.asarray(codes, dtype=np.int64))
            specs.append({"table": f"t{k}.npy", "input": f"x{k}.npy", "output": f"y{k}.npy", "rescale": rescale})
        (root / "jobs.json").write_text(json.dumps(specs))
        r = subprocess.run([str(py), str(RUNNER), str(root / "jobs.json")], capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        res = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        assert [x["output"] for x in res] == [s["output"] for s in specs], r.stdout[-2000:]
        return [np.load(root / s["output"]) if x["status"] == "TOSA_VALID" else x["status"]
                for s, x in zip(specs, res, strict=True)]

    return run


FUNCS16 = [("silu", -8.0, 8.0), ("sigmoid", -8.0, 8.0), ("tanh", -4.0, 4.0), ("gelu", -6.0, 6.0),
           ("exp", -8.0, 2.0)]


@pytest.mark.parametrize("name,lo,hi", FUNCS16)
def test_tflite_int16_is_the_tosa_reference_models_table_on_every_code(tosa, capsys, name, lo, hi):
    """Fitted and gen_lut tables in both modes: mode=tosa is TABLE's raw int32, mode=tflite is TABLE then
    RESCALE by 2^-7 (round half up), the reference model's output equal to `simulate` on all 65536
    codes; and the float table is that output dequantized (tosa: to float64 rounding; tflite: within
    half an output step, the rounding the float table leaves out)."""
    T, act = targets.get("tflite-int16"), functions.get(name)
    tables = [(mode, how, getattr(T, how)(act, 512, lo, hi, params={"mode": mode}))
              for mode in ("tosa", "tflite") for how in ("fit", "naive")]
    cfgs = [T.check(t) for _, _, t in tables]
    outs = tosa([(c.lut, Q16, c.mode == "tflite") for c in cfgs])
    for (mode, how, table), cfg, out in zip(tables, cfgs, outs, strict=True):
        assert isinstance(out, np.ndarray), f"{name} {mode} {how}: reference model says {out}"
        assert np.array_equal(out, T.simulate(cfg, Q16)), f"{name} {mode} {how}"
        y = T.dequant_out(cfg, out)
        step = (cfg.output_max - cfg.output_min) / 65536
        gap = float(np.max(np.abs(table(T.dequant_in(cfg, Q16)) - y)))
        assert gap <= (1e-12 * max(1.0, float(np.max(np.abs(y)))) if mode == "tosa" else step / 2 * (1 + 1e-9))
    with capsys.disabled():
        print(f"\nTOSA reference model: {name} tflite-int16 fit and gen_lut, modes tosa and tflite: "
              f"{len(outs)} x 65536 codes bit-exact")


def _legalize_table16(f, s_in: float, z_in: int, s_out: float) -> list[int]:
    """The int16 table TensorFlow's TFLite-to-TOSA legalization builds (getTosaConst16bitTable), as a
    scalar transcription: input range [s (-32768 - z), s (32767 - z)], output range 65535 s_out, 512
    steps, each entry the sample minus half its midpoint interpolation error, C `round`."""
    def rnd(v: float) -> float:
        return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)

    def g(x: float) -> float:
        return float(f(np.array([x]))[0])

    in_min, in_max = s_in * (-32768 - z_in), s_in * (32767 - z_in)
    inv = 65536 / (s_out * 32767 - s_out * -32768)
    step = (in_max - in_min) / 512
    table = []
    for i in range(512):
        sample = rnd(g(in_min + i * step) * inv)
        interp = rnd((g(in_min + (i + 1) * step) * inv + sample) / 2)
        bias = rnd((interp - rnd(g(in_min + i * step + step / 2) * inv)) / 2)
        table.append(int(min(max(sample - bias, -32768), 32767)))
    table.append(int(min(max(rnd(g(in_max) * inv), -32768), 32767)))
    return table


@pytest.mark.parametrize("mode", ["tflite", "tosa"])
@pytest.mark.parametrize("name,s_in,z_in,s_out", [("silu", 8 / 32768, 0, 8 / 32768),
                                                  ("sigmoid", 8 / 32768, 0, 1 / 32768),
                                                  ("tanh", 4 / 32768, 0, 1 / 32768),
                                                  ("gelu", 6 / 32768, 0, 6 / 32768),
                                                  ("exp", 5 / 32768, 19661, 8 / 32768)])
def test_tflite_int16_fit_beats_the_tosa_legalization_table(tosa, capsys, mode, name, s_in, z_in, s_out):
    """Accuracy through the reference model: the table TensorFlow's TOSA legalization generates against
    our fit for the same tensor scales, both run as TOSA graphs over all 65536 codes and measured
    as the tensors dequantize (x = s_in (q - z_in), y = s_out * out, / 128 for the raw int32)."""
    T, act = targets.get("tflite-int16"), functions.get(name)
    fit = T.check(T.fit(act, 512, 0, 0, params={"input_scale": s_in, "input_zero_point": z_in,
                                                "output_scale": s_out, "mode": mode}))
    theirs, ours = tosa([(_legalize_table16(act, s_in, z_in, s_out), Q16, mode == "tflite"),
                         (fit.lut, Q16, mode == "tflite")])
    assert np.array_equal(ours, T.simulate(fit, Q16))
    ref, per = act(s_in * (Q16 - z_in)), (128 if mode == "tosa" else 1)
    e_theirs = float(np.max(np.abs(s_out / per * theirs - ref)))
    e_ours = float(np.max(np.abs(s_out / per * ours - ref)))
    assert e_ours == pytest.approx(T.error(fit, act)["max_abs"], rel=1e-9)  # the same grid and scales
    assert e_ours <= e_theirs
    with capsys.disabled():
        print(f"\nTOSA reference model {name} int16 ({mode}): legalization table max-abs {e_theirs:.3e}, "
              f"actiba fit {e_ours:.3e} ({e_theirs / e_ours:.2f}x) over all 65536 codes")


def _legalize_table8(f, s_in: float, z_in: int, s_out: float, z_out: int) -> list[int]:
    """The int8 table of TensorFlow's TOSA legalization (getTosaConst8bitTable): round each code's
    f(s_in (q - z_in)) / s_out (C `round`), add z_out, clamp to int8."""
    out = []
    for q in range(-128, 128):
        v = float(f(np.array([s_in * (q - z_in)]))[0]) / s_out
        out.append(int(min(max(math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1) + z_out, -128), 127)))
    return out


@pytest.mark.parametrize("name,s_in,z_in,s_out,z_out,qmin", [
    ("sigmoid", 8 / 128, -3, 1 / 256, -128, None), ("tanh", 4 / 128, 0, 1 / 128, 0, None),
    ("silu", 8 / 128, 0, 8 / 128, 0, None), ("gelu", 6 / 128, 10, 7 / 128, -20, None),
    ("exp", 8 / 128, 96, 1 / 32, -128, None), ("sigmoid", 16 / 255, 0, 1 / 4096, -128, None),
    ("tanh", 4 / 128, 0, 1 / 128, 0, -127), ("silu", 6 / 128, 0, 6 / 127, 0, -127)])
def test_int8_lut_is_the_tosa_reference_models_table(tosa, name, s_in, z_in, s_out, z_out, qmin):
    """int8 TABLE on all 256 codes equals int8-lut; it equals the legalization's table too (per-entry
    rounding is optimal, so there is nothing to beat), except that a restricted output range
    (qmin = -127) never produces -128, where the legalization's clamp to int8 does."""
    L, act = targets.get("int8-lut"), functions.get(name)
    p = {"input_scale": s_in, "input_zero_point": z_in, "output_scale": s_out, "output_zero_point": z_out}
    cfg = L.check(L.fit(act, 256, 0, 1, params={**p, **({} if qmin is None else {"output_qmin": qmin})}))
    legal = _legalize_table8(act, s_in, z_in, s_out, z_out)
    ours, theirs = tosa([(cfg.lut, Q8, False), (legal, Q8, False)])
    assert np.array_equal(ours, L.simulate(cfg, Q8))
    assert np.array_equal(ours, np.clip(theirs, -128 if qmin is None else qmin, 127))
    if qmin is not None:
        assert ours.min() >= qmin


def test_tflite_int16_reads_exactly_the_luts_the_tosa_reference_model_runs(tosa):
    """The int16 slope bound: TOSA REQUIREs lut[i+1] - lut[i] in [-32768, 32767]. A LUT with steps of
    exactly -32768 and +32767 (one in the last interval) runs and is ours on every code in both modes;
    steps of +32768 or -32769 make the graph UNPREDICTABLE and our reader refuses them."""
    T = targets.get("tflite-int16")
    ok = np.zeros(513, dtype=np.int64)
    ok[3:6], ok[300:302], ok[511:] = [32767, -1, 32766], [-32768, -1], [32767, -1]
    bad = [np.zeros(513, dtype=np.int64) for _ in range(2)]
    bad[0][7:9], bad[1][7:9] = [-32768, 0], [32767, -2]
    raw, rounded, *rejected = tosa([(ok, Q16, False), (ok, Q16, True)] + [(b, Q16, False) for b in bad])

    def cfg(lut, mode):
        return T.config_from_dict({"name": "tflite-int16", "input_min": -8.0, "input_max": 8.0,
                                   "output_min": -8.0, "output_max": 8.0, "mode": mode, "lut": lut.tolist()})

    assert np.array_equal(raw, T.simulate(cfg(ok, "tosa"), Q16))
    assert np.array_equal(rounded, T.simulate(cfg(ok, "tflite"), Q16))
    assert rejected == ["TOSA_UNPREDICTABLE"] * 2
    for b in bad:
        with pytest.raises(InputError, match="overflows the int16 slope"):
            cfg(b, "tosa")
