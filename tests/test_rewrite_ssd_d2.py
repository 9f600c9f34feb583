"""Graph-level SSD rewrite d2 (ONNX and OpenVINO): matching, exactness, refusals.

References are independent of the rewrite: numpy's einsum over HF's repeated B/C for synthetic SSD
cores, and the HF torch model's logits for exported Mamba-2 graphs.
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

from actiba.rewrite import apply, find_sites, ssd_d2  # noqa: E402
from actiba.rewrite.onnx_rw import run  # noqa: E402

HF_EQS = ("bclhn,bcshn->bclsh", "bclsh,bcshp->bclhp", "bclhn,bclhp->bchpn", "bzch,bzhpn->bchpn",
          "bclhn,bchpn->bclhp")
RENAMED = ("zyxwv,zyuwv->zyxuw", "zyxuw,zyuwt->zyxwt", "zyxwv,zyxwt->zywtv", "zach,zahpn->zchpn",
           "zyxwv,zywtv->zyxwt")


def ssd_inputs(b: int, c: int, l_: int, h: int, n: int, p: int, pad: int, groups: int = 1, seed: int = 0,
               du_full: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    length = c * l_ - pad
    f = np.float32
    return {
        "C": rng.standard_normal((b, length, groups, n)).astype(f),
        "B": rng.standard_normal((b, length, groups, n)).astype(f),
        "X": rng.standard_normal((b, c, l_, h, p)).astype(f),
        "Lp": rng.uniform(0, 1, (b, c, l_, l_, h)).astype(f),
        "Du": rng.uniform(0, 1, (b, c, l_, h, n if du_full else 1)).astype(f),
        "Eu": rng.uniform(0, 1, (b, c, l_, h, 1)).astype(f),
        "Dc": rng.uniform(0, 1, (b, c + 1, c + 1, h)).astype(f),
        "prev": rng.standard_normal((b, 1, h, p, n)).astype(f),
    }


def ssd_reference(inp: dict[str, np.ndarray], c: int, l_: int, h: int) -> np.ndarray:
    """HF's chunk-scan einsums on B/C repeated to every head (float64)."""
    def chunked(t: np.ndarray) -> np.ndarray:
        b, length, g, n = t.shape
        t = np.repeat(t.astype(np.float64), h // g, axis=2)
        t = np.concatenate([t, np.zeros((b, c * l_ - length, h, n))], axis=1)
        return t.reshape(b, c, l_, h, n)

    C5, B5 = chunked(inp["C"]), chunked(inp["B"])
    X, Lp, Du, Eu = (inp[k].astype(np.float64) for k in ("X", "Lp", "Du", "Eu"))
    y_diag = np.einsum("bclsh,bcshp->bclhp", np.einsum("bclhn,bcshn->bclsh", C5, B5) * Lp, X)
    states = np.einsum("bclhn,bclhp->bchpn", B5 * Du, X)
    states = np.concatenate([inp["prev"].astype(np.float64), states], axis=1)
    states = np.einsum("bzch,bzhpn->bchpn", inp["Dc"].astype(np.float64), states)[:, :-1]
    return y_diag + np.einsum("bclhn,bchpn->bclhp", C5, states) * Eu


def ssd_graph(b: int, c: int, l_: int, h: int, n: int, p: int, pad: int, groups: int = 1,
              eqs: tuple[str, ...] = HF_EQS, swap: bool = False, dynamic: bool = False,
              du_full: bool = False, merged: bool = False) -> onnx.ModelProto:
    """HF's SSD core as the dynamo exporter writes it (repeat_interleave → Pad → chunk Reshape, 5 Einsums)."""
    length = c * l_ - pad
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.int64), name))
        return name

    def mul(a: str, b_: str, out: str) -> None:
        nodes.append(helper.make_node("Mul", [b_, a] if swap else [a, b_], [out]))

    for t in ("C", "B"):
        if merged:  # OpenVINO's form without padding: one Reshape from the expanded tensor to chunks
            nodes += [
                helper.make_node("Unsqueeze", [t, const(t + "_ax", [3])], [t + "_u"]),
                helper.make_node("Expand", [t + "_u", const(t + "_shp", [b, length, groups, h // groups, n])],
                                 [t + "_e"]),
                helper.make_node("Reshape", [t + "_e", const(t + "_ck", [b, c, l_, h, n])], [t + "5"]),
            ]
            continue
        nodes += [
            helper.make_node("Unsqueeze", [t, const(t + "_ax", [3])], [t + "_u"]),
            helper.make_node("Expand", [t + "_u", const(t + "_shp", [b, length, groups, h // groups, n])],
                             [t + "_e"]),
            helper.make_node("Reshape", [t + "_e", const(t + "_rs", [b, length, h, n])], [t + "_rep"]),
        ]
        src = t + "_rep"
        if pad:
            nodes.append(helper.make_node("Pad", [src, const(t + "_pads", [0, 0, 0, 0, 0, pad, 0, 0])],
                                          [t + "_pad"]))
            src = t + "_pad"
        nodes.append(helper.make_node("Reshape", [src, const(t + "_ck", [b, c, l_, h, n])], [t + "5"]))
    nodes.append(helper.make_node("Einsum", ["C5", "B5"], ["G"], equation=eqs[0]))
    mul("G", "Lp", "M")
    nodes.append(helper.make_node("Einsum", ["M", "X"], ["y_diag"], equation=eqs[1]))
    mul("B5", "Du", "Bd")
    nodes.append(helper.make_node("Einsum", ["Bd", "X"], ["st"], equation=eqs[2]))
    nodes.append(helper.make_node("Concat", ["prev", "st"], ["cat"], axis=1))
    nodes.append(helper.make_node("Einsum", ["Dc", "cat"], ["new_st"], equation=eqs[3]))
    nodes.append(helper.make_node("Slice", ["new_st", const("s0", [0]), const("s1", [-1]), const("s2", [1])],
                                  ["S"]))
    nodes.append(helper.make_node("Einsum", ["C5", "S"], ["y_off0"], equation=eqs[4]))
    mul("y_off0", "Eu", "y_off")
    nodes.append(helper.make_node("Add", ["y_diag", "y_off"], ["y"]))
    shapes = {k: v.shape for k, v in ssd_inputs(b, c, l_, h, n, p, pad, groups, du_full=du_full).items()}
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT,
                                         ["L" if dynamic and k in "CB" and i == 1 else d for i, d in enumerate(s)])
           for k, s in shapes.items()]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "ssd", ins, [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def _check(model: onnx.ModelProto, dims: tuple[int, ...], pad: int, atol: float = 1e-4,
           groups: int = 1) -> onnx.ModelProto:
    b, c, l_, h, n, p = dims
    new, done = apply(model, ["ssd-d2"])
    assert [s.decision for s in done] == ["rewrite"], [s.line() for s in done]
    assert done[0].detail["max_diff_random"] < atol
    ops = _ops(new)
    assert ops["Einsum"] == 1 and "Expand" not in ops  # only the inter-chunk recurrence stays an einsum
    inp = ssd_inputs(b, c, l_, h, n, p, pad, groups, seed=7)
    want = ssd_reference(inp, c, l_, h)
    np.testing.assert_allclose(run(new, inp)[0], want, atol=atol, rtol=1e-4)
    np.testing.assert_allclose(run(model, inp)[0], want, atol=atol, rtol=1e-4)  # the fixture is HF's math
    return new


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("eqs", [HF_EQS, RENAMED], ids=["hf", "renamed"])
@pytest.mark.parametrize("swap", [False, True])
def test_synthetic_core_matches_reference(pad: int, eqs: tuple[str, ...], swap: bool) -> None:
    dims = (1, 3, 8, 4, 5, 3)
    _check(ssd_graph(*dims, pad=pad, eqs=eqs, swap=swap), dims, pad)


def test_merged_reshape_without_pad() -> None:
    """OpenVINO drops a zero Pad and merges the two Reshapes; the match follows the shapes."""
    dims = (1, 2, 8, 4, 5, 3)
    _check(ssd_graph(*dims, pad=0, merged=True), dims, 0)


@settings(max_examples=12, deadline=None)
@given(b=st.integers(1, 2), c=st.integers(1, 3), l_=st.integers(2, 9), h=st.integers(1, 5),
       n=st.integers(1, 6), p=st.integers(1, 4), data=st.data())
def test_any_sizes_exact(b: int, c: int, l_: int, h: int, n: int, p: int, data) -> None:
    pad = data.draw(st.integers(0, l_ - 1))
    _check(ssd_graph(b, c, l_, h, n, p, pad), (b, c, l_, h, n, p), pad)


@pytest.mark.parametrize("groups,h", [(2, 4), (4, 4), (2, 6), (3, 6)])
@pytest.mark.parametrize("pad,merged", [(0, False), (3, False), (0, True)])
def test_grouped_core_matches_reference(groups: int, h: int, pad: int, merged: bool) -> None:
    """n_groups > 1: heads k·h/g … (k+1)·h/g − 1 share group k (the reference repeats each group)."""
    dims = (1, 3, 8, h, 5, 3)
    new = _check(ssd_graph(*dims, pad=pad, groups=groups, merged=merged), dims, pad, groups=groups)
    ops = _ops(new)
    assert ops["MatMul"] == 4 and ops["Einsum"] == 1  # C·Bᵀ once per group, as one batched MatMul


@settings(max_examples=10, deadline=None)
@given(b=st.integers(1, 2), c=st.integers(1, 3), l_=st.integers(2, 7), g=st.integers(1, 3), q=st.integers(1, 3),
       n=st.integers(1, 5), p=st.integers(1, 4), data=st.data())
def test_grouped_any_sizes_exact(b: int, c: int, l_: int, g: int, q: int, n: int, p: int, data) -> None:
    pad = data.draw(st.integers(0, l_ - 1))
    _check(ssd_graph(b, c, l_, g * q, n, p, pad, groups=g), (b, c, l_, g * q, n, p), pad, groups=g)


def test_grouped_reason_names_the_groups() -> None:
    sites = find_sites(ssd_graph(1, 2, 4, 4, 3, 2, 0, groups=2), "ssd-d2")
    assert len(sites) == 1 and sites[0].ok and "2 groups" in sites[0].reason


def test_dynamic_length_skipped_with_reason() -> None:
    sites = find_sites(ssd_graph(1, 2, 4, 4, 3, 2, 1, dynamic=True), "ssd-d2")
    assert len(sites) == 1 and not sites[0].ok and "static" in sites[0].reason


def test_decay_over_state_axis_skipped() -> None:
    """Du varying over n cannot move from B onto X: skipped, never rewritten wrongly."""
    sites = find_sites(ssd_graph(1, 2, 4, 2, 3, 2, 0, du_full=True), "ssd-d2")
    assert len(sites) == 1 and not sites[0].ok and "state axis" in sites[0].reason


def test_other_einsums_are_not_sites() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("Einsum", ["x", "x"], ["y"], equation="ij,kj->ik")], "g", [x], [y])
    assert find_sites(helper.make_model(g), "ssd-d2") == []


def test_canonical_equations() -> None:
    assert ssd_d2.canonical("bclhn,bcshn->bclsh") == ssd_d2.canonical(RENAMED[0]) == "abcde,abfde->abcfd"
    assert ssd_d2.canonical("ij,jk->ik") != ssd_d2.canonical("ij,kj->ik")


@pytest.mark.parametrize("groups", [1, 2])
def test_openvino_synthetic(tmp_path, groups: int) -> None:
    ov = pytest.importorskip("openvino")
    from actiba.rewrite.openvino_rw import inventory
    from actiba.rewrite.openvino_rw import run as ov_run

    dims, pad = (1, 3, 8, 4, 5, 3), 3
    path = tmp_path / "ssd.onnx"
    onnx.save(ssd_graph(*dims, pad=pad, groups=groups), str(path))
    model = ov.convert_model(str(path))
    new, done = apply(model, ["ssd-d2"])
    assert [s.decision for s in done] == ["rewrite"], [s.line() for s in done]
    assert inventory(new).get("Einsum") == 1 and "Broadcast" not in inventory(new)
    inp = ssd_inputs(*dims, pad, groups, seed=9)
    want = ssd_reference(inp, dims[1], dims[2], dims[3])
    feeds = [inp[p.get_friendly_name()] for p in new.get_parameters()]
    np.testing.assert_allclose(ov_run(new, feeds)[0], want, atol=1e-4, rtol=1e-4)


# --- exported models ---------------------------------------------------------------------------------

def test_exported_mamba2_onnx_d1_d2(tiny_mamba2) -> None:
    torch_model, model, _ = tiny_mamba2
    new, done = apply(model, ["ssd-d1", "ssd-d2"])
    assert sorted(s.rewrite for s in done if s.ok) == ["ssd-d1", "ssd-d1", "ssd-d2"], [s.line() for s in done]
    assert _ops(new)["Einsum"] == 1 and _ops(new)["Expand"] == _ops(model)["Expand"] - 4
    ids = np.random.default_rng(4).integers(0, 256, (1, 40)).astype(np.int64)
    np.testing.assert_allclose(run(new, {"input_ids": ids})[0], _torch_logits(torch_model, ids), atol=1e-4)


def test_exported_mamba2_openvino_d2(tiny_mamba2) -> None:
    ov = pytest.importorskip("openvino")
    from actiba.rewrite.openvino_rw import run as ov_run

    torch_model, _, path = tiny_mamba2
    ov_model = ov.convert_model(path)
    new, done = apply(ov_model, ["ssd-d2"], precision="bf16")  # d2 is exact in bf16: not refused
    assert [s.decision for s in done] == ["rewrite"] and done[0].detail["max_diff_real"] < 1e-4
    ids = np.random.default_rng(5).integers(0, 256, (1, 40)).astype(np.int64)
    np.testing.assert_allclose(ov_run(new, [ids])[0], _torch_logits(torch_model, ids), atol=1e-4)


@pytest.mark.slow  # ~9 s; test_exported_mamba2_openvino_d2 covers d2 in OpenVINO in the fast suite
def test_exported_mamba2_openvino_whole_chunks(tmp_path) -> None:
    """A length that is a multiple of the chunk size: OpenVINO's conversion has no Pad and one Reshape."""
    ov = pytest.importorskip("openvino")
    from actiba.evaluate.build import load_model
    from actiba.models.export import export_onnx
    from actiba.rewrite.openvino_rw import inventory
    from actiba.rewrite.openvino_rw import run as ov_run

    lm = load_model("random:tiny-mamba2")
    path = tmp_path / "t32.onnx"
    export_onnx(lm.model, path, seq_len=32, verbose=False)
    model = ov.convert_model(str(path))
    new, done = apply(model, ["ssd-d1", "ssd-d2"])
    assert sorted(s.rewrite for s in done if s.ok) == ["ssd-d1", "ssd-d1", "ssd-d2"], [s.line() for s in done]
    assert inventory(new)["Einsum"] == 1
    ids = np.random.default_rng(8).integers(0, 256, (1, 32)).astype(np.int64)
    np.testing.assert_allclose(ov_run(new, [ids])[0], _torch_logits(lm.model, ids), atol=1e-4)


def test_cli_ssd_d1_d2(tiny_mamba2, tmp_path, capsys) -> None:
    from actiba.cli import main

    model, original, path = tiny_mamba2
    out = tmp_path / "d12.onnx"
    code = main(["rewrite", path, "--ssd-d1", "--ssd-d2", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "ssd-d2" in err and "verified" in err
    new = onnx.load(str(out))
    assert _ops(new)["Einsum"] == 1 and _ops(new)["CumSum"] < _ops(original)["CumSum"]
    ids = np.random.default_rng(6).integers(0, 256, (1, 40)).astype(np.int64)
    np.testing.assert_allclose(run(new, {"input_ids": ids})[0], _torch_logits(model, ids), atol=1e-3)


@pytest.mark.slow  # the embedded model end to end (~10 s); the tiny exports above cover the rewrite
def test_embedded_mamba2_graph_d1_d2_keeps_predictions(tmp_path) -> None:
    """On the trained embedded Mamba-2 (4 layers, 2 chunks of 64 + padding): both SSD rewrites at the
    graph level, then onnxruntime against HF torch on held-out bytes."""
    from actiba import models
    from actiba.models.export import export_onnx
    from actiba.rewrite import onnx_ssd

    model = models.load("embedded:mamba2")
    path = tmp_path / "m2.onnx"
    export_onnx(model, path, seq_len=100, verbose=False)
    original = onnx.load(str(path))
    new, done = apply(original, ["ssd-d1", "ssd-d2"])
    assert sum(s.ok for s in done if s.rewrite == "ssd-d2") == 4, [s.line() for s in done]
    ids = onnx_ssd.real_inputs(original)["input_ids"]
    got, want = run(new, {"input_ids": ids})[0], _torch_logits(model, ids)
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert float(np.mean(got.argmax(-1) == want.argmax(-1))) == 1.0
