"""ONNX rewrites inside control-flow bodies (If branches, Loop / Scan bodies, nested), issue 4.

Every rewritten model is run with onnxruntime against the original (exact rewrites) or against the
canonical table evaluator applied in numpy (ActiBA); op counts inside bodies come from a recursive
counter written here, independent of `onnx_rw.inventory`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from actiba.rewrite import onnx_rw  # noqa: E402
from actiba.table import Table  # noqa: E402

F = T.FLOAT


def chord_table(f, function: str, lo: float = -8.0, hi: float = 8.0, n: int = 16) -> Table:
    """Interpolating table (independent of the fitter)."""
    b = np.linspace(lo, hi, n + 1)
    y = f(b)
    s = np.diff(y) / np.diff(b)
    c = y[:-1] - s * b[:-1]
    return Table(b, np.r_[s[0], s, s[-1]], np.r_[c[0], c, c[-1]], function=function)


def _sig(x):
    return 1 / (1 + np.exp(-x))


TABLES = {"softplus": chord_table(lambda x: np.logaddexp(0, x), "softplus"),
          "silu": chord_table(lambda x: x * _sig(x), "silu"),
          "tanh": chord_table(np.tanh, "tanh")}


# --- independent helpers ----------------------------------------------------------------------------

def count_ops(graph, path: str = "") -> Counter:
    """(scope path, op type) counts over the graph and all nested graph attributes."""
    c: Counter = Counter()
    for n in graph.node:
        c[(path, n.op_type)] += 1
        for a in n.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sub in subs:
                c += count_ops(sub, f"{path}{n.name}/{a.name}/")
    return c


def ops_in(model, scope: str) -> dict[str, int]:
    return {op: k for (p, op), k in count_ops(model.graph).items() if p == scope}


def defined_names(graph, nodes: bool = False) -> list[str]:
    """Every value defined anywhere (inputs, initializers, node outputs), or every node name; all scopes."""
    out = [] if nodes else [i.name for i in graph.input] + [t.name for t in graph.initializer]
    for n in graph.node:
        out += ([n.name] if n.name else []) if nodes else list(n.output)
        for a in n.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                out += defined_names(sub, nodes)
    return out


def run(model, feeds):
    return onnx_rw.run(model, feeds)


def check_valid(model, original):
    """The checker passes and the rewrite defined no name twice (values and node names, all scopes;
    names the original already repeats in sibling branches may stay)."""
    onnx.checker.check_model(model)
    for nodes in (False, True):
        before = Counter(defined_names(original.graph, nodes))
        dup = [n for n, k in Counter(defined_names(model.graph, nodes)).items() if k > max(1, before[n])]
        assert not dup, dup


def vi(name, shape=None, et=F):
    return h.make_tensor_value_info(name, et, shape)


def make(nodes, inputs, outputs, inits=(), opset=17):
    g = h.make_graph(nodes, "g", inputs, outputs, list(inits))
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def i64(name, v):
    return h.make_node("Constant", [], [name], value=nh.from_array(np.array(v, np.int64)), name=name)


RNG = np.random.default_rng(0)


# --- If ------------------------------------------------------------------------------------------

def if_model(computed: bool = False):
    """then: CumSum(x) + ReduceSum(x, -1, keepdims=1); else: Softplus(x) + x·Sigmoid(x).

    The condition is the input `c`, or with `computed` sum(x) > 0 (as torch.cond exports it)."""
    then = h.make_graph([h.make_node("CumSum", ["x", "ax1"], ["tc"], name="cs"),
                         h.make_node("ReduceSum", ["x", "axl"], ["tr"], name="rs", keepdims=1),
                         h.make_node("Add", ["tc", "tr"], ["t_out"], name="t_add")],
                        "then", [], [vi("t_out")])
    els = h.make_graph([h.make_node("Softplus", ["x"], ["sp"], name="sp"),
                        h.make_node("Sigmoid", ["x"], ["sg"], name="sg"),
                        h.make_node("Mul", ["x", "sg"], ["sl"], name="silu"),
                        h.make_node("Add", ["sp", "sl"], ["e_out"], name="e_add")],
                       "else", [], [vi("e_out")])
    nodes = [i64("ax1", 1), i64("axl", [-1]),
             h.make_node("If", ["c"], ["y"], name="If_0", then_branch=then, else_branch=els)]
    if computed:
        zero = nh.from_array(np.array(0, np.float32), "zero")
        nodes[-1:-1] = [h.make_node("ReduceSum", ["x"], ["sx"], name="sum", keepdims=0),
                        h.make_node("Greater", ["sx", "zero"], ["c"], name="gt")]
        return make(nodes, [vi("x", [3, 6])], [vi("y", [3, 6])], [zero])
    return make(nodes, [vi("x", [3, 6]), vi("c", [], T.BOOL)], [vi("y", [3, 6])])


def if_feeds(cond):
    return {"x": RNG.normal(0, 2, (3, 6)).astype(np.float32), "c": np.array(cond)}


def test_if_exact_rewrites_both_branches():
    m = if_model()
    sites = onnx_rw.find_sites(m, "cumba") + onnx_rw.find_sites(m, "reduba")
    assert {s.name: s.ok for s in sites} == {"If_0/then_branch/cs": True, "If_0/then_branch/rs": True}
    new, done = onnx_rw.apply(m, ["cumba", "reduba"])
    assert all(s.ok for s in done)
    check_valid(new, m)
    assert ops_in(m, "If_0/then_branch/").get("CumSum") == 1
    then_ops = ops_in(new, "If_0/then_branch/")
    assert "CumSum" not in then_ops and "ReduceSum" not in then_ops and then_ops["MatMul"] == 2, then_ops
    assert then_ops.get("Constant") == 2  # the body-local triangular and ones constants
    assert len(new.graph.initializer) == 0
    assert onnx_rw.inventory(new)["MatMul"] == 2 and onnx_rw.inventory(new, subgraphs=False).get("MatMul") is None
    for cond in (True, False):
        feeds = if_feeds(cond)
        x = feeds["x"]
        ref = np.cumsum(x, 1) + x.sum(-1, keepdims=True) if cond else run(m, feeds)[0]
        np.testing.assert_allclose(run(new, feeds)[0], ref, rtol=1e-5, atol=1e-5)


def test_if_actiba_matches_canonical_table():
    pytest.importorskip("actiba.lower.onnx_lower")
    m = if_model()
    new, done = onnx_rw.apply(m, ["actiba"], tables=TABLES)
    assert sorted(s.name for s in done if s.ok) == ["If_0/else_branch/silu", "If_0/else_branch/sp"]
    check_valid(new, m)
    els = ops_in(new, "If_0/else_branch/")
    assert not {"Softplus", "Sigmoid"} & set(els), els
    for cond in (True, False):
        feeds = if_feeds(cond)
        x = feeds["x"].astype(np.float64)
        ref = (np.cumsum(x, 1) + x.sum(-1, keepdims=True) if cond
               else TABLES["softplus"](x) + TABLES["silu"](x))
        np.testing.assert_allclose(run(new, feeds)[0], ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=12, deadline=None)
@given(rank=st.integers(1, 3), data=st.data(), exclusive=st.integers(0, 1), reverse=st.integers(0, 1),
       cond=st.booleans())
def test_if_cumsum_property(rank, data, exclusive, reverse, cond):
    shape = data.draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank))
    axis = data.draw(st.integers(-rank, rank - 1))
    then = h.make_graph([h.make_node("CumSum", ["x", "ax"], ["t"], name="cs", exclusive=exclusive,
                                     reverse=reverse)], "then", [], [vi("t")])
    els = h.make_graph([h.make_node("Neg", ["x"], ["e"])], "else", [], [vi("e")])
    m = make([i64("ax", axis), h.make_node("If", ["c"], ["y"], name="If", then_branch=then, else_branch=els)],
             [vi("x", shape), vi("c", [], T.BOOL)], [vi("y", shape)])
    new, (site,) = onnx_rw.apply(m, ["cumba"])
    assert site.ok and site.name == "If/then_branch/cs", site.line()
    assert "CumSum" not in ops_in(new, "If/then_branch/")
    x = RNG.normal(size=shape).astype(np.float32)
    got = run(new, {"x": x, "c": np.array(cond)})[0]
    if not cond:
        np.testing.assert_array_equal(got, -x)
        return
    flip = (lambda a: np.flip(a, axis)) if reverse else (lambda a: a)
    ref = flip(np.cumsum(flip(x.astype(np.float64)), axis))
    if exclusive:
        ref = ref - x
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_contract_and_erf_gelu_in_branches():
    """then: Mul -> ReduceSum (contraction); else: erf-GELU whose constants live in the outer graph.
    Both branches reuse the value names `p` and `out` (legal: siblings are separate scopes)."""
    pytest.importorskip("actiba.lower.onnx_lower")
    import math

    then = h.make_graph([h.make_node("Mul", ["a", "b"], ["p"], name="mul"),
                         h.make_node("ReduceSum", ["p", "axl"], ["out"], name="rs", keepdims=0)],
                        "then", [], [vi("out")])
    els = h.make_graph([h.make_node("Div", ["a", "sq2"], ["d"]), h.make_node("Erf", ["d"], ["e"]),
                        h.make_node("Add", ["one", "e"], ["p"]), h.make_node("Mul", ["a", "half"], ["ah"]),
                        h.make_node("Mul", ["ah", "p"], ["g"], name="gelu"),
                        h.make_node("Mul", ["g", "b"], ["gb"]),
                        h.make_node("ReduceMax", ["gb"], ["out"], name="mx", axes=[-1], keepdims=0)],
                       "else", [], [vi("out")])
    consts = [nh.from_array(np.array(v, np.float32), n) for n, v in (("sq2", math.sqrt(2)), ("one", 1.0),
                                                                     ("half", 0.5))]
    m = make([i64("axl", [-1]), h.make_node("If", ["c"], ["y"], name="If_0", then_branch=then, else_branch=els)],
             [vi("a", [3, 1, 8]), vi("b", [1, 4, 8]), vi("c", [], T.BOOL)], [vi("y", [3, 4])], consts)
    gelu = chord_table(lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), "gelu")
    new, done = onnx_rw.apply(m, ["contract", "actiba"], tables={"gelu": gelu})
    assert sorted(s.name for s in done if s.ok) == ["If_0/else_branch/gelu", "If_0/then_branch/rs"]
    check_valid(new, m)
    assert ops_in(new, "If_0/then_branch/").get("Einsum") == 1 and "Mul" not in ops_in(new, "If_0/then_branch/")
    assert "Erf" not in ops_in(new, "If_0/else_branch/")
    a = RNG.normal(size=(3, 1, 8)).astype(np.float32)
    b = RNG.normal(size=(1, 4, 8)).astype(np.float32)
    ad = a.astype(np.float64)
    got_t = run(new, {"a": a, "b": b, "c": np.array(True)})[0]
    np.testing.assert_allclose(got_t, (ad * b).sum(-1), rtol=1e-5, atol=1e-5)
    got_e = run(new, {"a": a, "b": b, "c": np.array(False)})[0]
    np.testing.assert_allclose(got_e, (gelu(ad) * b).max(-1), rtol=1e-5, atol=1e-5)


# --- Loop ----------------------------------------------------------------------------------------

def loop_model(declare_state: bool = False):
    """Body: xi = x·i; CumSum(xi); ReduceSum keepdims 1 and 0; Tanh and CumSum on the carried state."""
    body_nodes = [
        h.make_node("Identity", ["cin"], ["cout"]),
        h.make_node("Cast", ["i"], ["fi"], to=F),
        h.make_node("Mul", ["x", "fi"], ["xi"], name="xi"),
        h.make_node("CumSum", ["xi", "ax1"], ["cx"], name="cs_x"),
        h.make_node("ReduceSum", ["cx", "axl"], ["r1"], name="rs_keep", keepdims=1),
        h.make_node("ReduceSum", ["cx", "ax0"], ["r0"], name="rs_drop", keepdims=0),
        h.make_node("Tanh", ["s"], ["ts"], name="tanh_s"),
        h.make_node("CumSum", ["ts", "ax1"], ["cs"], name="cs_s"),
        h.make_node("Add", ["cs", "r1"], ["a1"]),
        h.make_node("Add", ["a1", "r0"], ["s2"]),
    ]
    state = vi("s", [3, 4] if declare_state else None)
    body = h.make_graph(body_nodes, "body", [vi("i", [], T.INT64), vi("cin", [], T.BOOL), state],
                       [vi("cout", [], T.BOOL), vi("s2"), vi("cx")])
    nodes = [i64("ax1", 1), i64("axl", [-1]), i64("ax0", [0]), i64("M", 3),
             h.make_node("Loop", ["M", "", "x"], ["z", "scan"], name="Loop_0", body=body)]
    return make(nodes, [vi("x", [3, 4])], [vi("z", [3, 4]), vi("scan", [3, 3, 4])])


def loop_reference(x, tanh=np.tanh):
    s, scans = x.astype(np.float64), []
    for i in range(3):
        cx = np.cumsum(x * i, 1)
        s = np.cumsum(tanh(s), 1) + cx.sum(-1, keepdims=True) + cx.sum(0)
        scans.append(cx)
    return s, np.stack(scans)


def test_loop_body_sites_and_values():
    pytest.importorskip("actiba.lower.onnx_lower")
    m = loop_model()
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    z, scan = run(m, {"x": x})
    rz, rscan = loop_reference(x)
    np.testing.assert_allclose(z, rz, rtol=1e-5, atol=1e-5)  # the test model is what we think it is

    sites = {s.name: s for s in onnx_rw.find_sites(m, "cumba") + onnx_rw.find_sites(m, "reduba")}
    assert sites["Loop_0/body/cs_x"].ok and sites["Loop_0/body/rs_keep"].ok and sites["Loop_0/body/rs_drop"].ok
    unknown = sites["Loop_0/body/cs_s"]  # CumSum of the Loop-carried state: shape not inferred
    assert not unknown.ok and "rank unknown" in unknown.reason and "Loop_0/body" in unknown.reason

    new, done = onnx_rw.apply(m, ["cumba", "reduba", "actiba"], tables={"tanh": TABLES["tanh"]})
    assert sorted(s.name for s in done if s.ok) == ["Loop_0/body/cs_x", "Loop_0/body/rs_drop",
                                                     "Loop_0/body/rs_keep", "Loop_0/body/tanh_s"]
    check_valid(new, m)
    body = ops_in(new, "Loop_0/body/")
    assert body.get("CumSum") == 1 and "ReduceSum" not in body and "Tanh" not in body, body
    z2, scan2 = run(new, {"x": x})
    np.testing.assert_allclose(scan2, rscan, rtol=1e-5, atol=1e-5)
    tz, _ = loop_reference(x, tanh=TABLES["tanh"])
    np.testing.assert_allclose(z2, tz, rtol=1e-5, atol=1e-5)


def test_loop_declared_state_shape_is_used():
    m = loop_model(declare_state=True)
    (site,) = [s for s in onnx_rw.find_sites(m, "cumba") if s.name == "Loop_0/body/cs_s"]
    assert site.ok and site.shape == (3, 4)
    new, _ = onnx_rw.apply(m, ["cumba"])
    assert "CumSum" not in ops_in(new, "Loop_0/body/")
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    for a, b in zip(run(m, {"x": x}), run(new, {"x": x}), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(op=st.sampled_from(["ReduceSum", "ReduceMean"]), data=st.data(), keep=st.integers(0, 1))
def test_loop_reduce_property(op, data, keep):
    """A reduction over random axes of x·i inside a Loop body, collected as a scan output."""
    shape = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    rank = len(shape)
    axes = data.draw(st.lists(st.integers(-rank, rank - 1), min_size=1, max_size=rank,
                              unique_by=lambda a: a % rank))
    body = h.make_graph([h.make_node("Identity", ["cin"], ["cout"]),
                         h.make_node("Cast", ["i"], ["fi"], to=F),
                         h.make_node("Mul", ["x", "fi"], ["xi"]),
                         h.make_node(op, ["xi", "axes"], ["r"], name="red", keepdims=keep)],
                        "body", [vi("i", [], T.INT64), vi("cin", [], T.BOOL)], [vi("cout", [], T.BOOL), vi("r")])
    m = make([i64("axes", axes), i64("M", 2), h.make_node("Loop", ["M", ""], ["rs"], name="L", body=body)],
             [vi("x", shape)], [vi("rs")], opset=18)
    new, (site,) = onnx_rw.apply(m, ["reduba"])
    assert site.ok and site.name == "L/body/red", site.line()
    assert op not in ops_in(new, "L/body/")
    x = RNG.normal(size=shape).astype(np.float32)
    red = np.sum if op == "ReduceSum" else np.mean
    ref = np.stack([red(x.astype(np.float64) * i, axis=tuple(axes), keepdims=bool(keep)) for i in range(2)])
    np.testing.assert_allclose(run(new, {"x": x})[0], ref, rtol=1e-5, atol=1e-5)


# --- Scan ----------------------------------------------------------------------------------------

def test_scan_body():
    pytest.importorskip("actiba.lower.onnx_lower")
    body = h.make_graph([h.make_node("CumSum", ["xs", "ax0"], ["c"], name="cs"),
                         h.make_node("ReduceMean", ["c"], ["r"], name="rm", axes=[0], keepdims=0),
                         h.make_node("Softplus", ["r"], ["p"], name="sp"),
                         h.make_node("Add", ["s", "p"], ["s2"]),
                         h.make_node("Identity", ["c"], ["c_out"])],
                        "body", [vi("s", [5]), vi("xs", [3, 5])], [vi("s2", [5]), vi("c_out", [3, 5])],
                        [nh.from_array(np.array(0, np.int64), "ax0")])
    m = make([h.make_node("Scan", ["s0", "x"], ["sN", "cs"], name="Scan_0", body=body, num_scan_inputs=1)],
             [vi("s0", [5]), vi("x", [4, 3, 5])], [vi("sN", [5]), vi("cs", [4, 3, 5])], opset=16)
    new, done = onnx_rw.apply(m, ["cumba", "reduba", "actiba"], tables={"softplus": TABLES["softplus"]})
    assert sorted(s.name for s in done if s.ok) == ["Scan_0/body/cs", "Scan_0/body/rm", "Scan_0/body/sp"]
    check_valid(new, m)
    body_ops = ops_in(new, "Scan_0/body/")
    assert not {"CumSum", "ReduceMean", "Softplus"} & set(body_ops), body_ops
    s0 = RNG.normal(size=5).astype(np.float32)
    x = RNG.normal(size=(4, 3, 5)).astype(np.float32)
    c = np.cumsum(x.astype(np.float64), 1)
    ref = s0 + TABLES["softplus"](c.mean(1)).sum(0)
    np.testing.assert_allclose(run(m, {"s0": s0, "x": x})[0], s0 + np.logaddexp(0, c.mean(1)).sum(0), rtol=1e-5)
    sN, cs = run(new, {"s0": s0, "x": x})
    np.testing.assert_allclose(cs, c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sN, ref, rtol=1e-5, atol=1e-5)


# --- nesting ---------------------------------------------------------------------------------------

def nested_model():
    """Loop body holding an If: then CumSum(x), else Softplus(x)·0.5 + ReduceSum(x); the If's cond is i even."""
    then = h.make_graph([h.make_node("CumSum", ["x", "ax1"], ["t"], name="cs")], "then", [], [vi("t")])
    els = h.make_graph([h.make_node("Softplus", ["x"], ["sp"], name="sp"),
                        h.make_node("ReduceSum", ["x", "axl"], ["rs"], name="rs", keepdims=1),
                        h.make_node("Add", ["sp", "rs"], ["e"])], "else", [], [vi("e")])
    body = h.make_graph([h.make_node("Identity", ["cin"], ["cout"]),
                         h.make_node("Mod", ["i", "two"], ["im"]),
                         h.make_node("Equal", ["im", "zero"], ["even"]),
                         h.make_node("If", ["even"], ["b"], name="If_1", then_branch=then, else_branch=els),
                         h.make_node("Add", ["s", "b"], ["s2"])],
                        "body", [vi("i", [], T.INT64), vi("cin", [], T.BOOL), vi("s")],
                        [vi("cout", [], T.BOOL), vi("s2")])
    nodes = [i64("ax1", 1), i64("axl", [-1]), i64("two", 2), i64("zero", 0), i64("M", 3),
             h.make_node("Loop", ["M", "", "x"], ["z"], name="Loop_0", body=body)]
    return make(nodes, [vi("x", [2, 5])], [vi("z", [2, 5])])


def test_if_nested_in_loop_body():
    pytest.importorskip("actiba.lower.onnx_lower")
    m = nested_model()
    names = {s.name: s.ok for rw in ("cumba", "reduba", "actiba")
             for s in onnx_rw.find_sites(m, rw, TABLES)}
    assert names == {"Loop_0/body/If_1/then_branch/cs": True, "Loop_0/body/If_1/else_branch/rs": True,
                     "Loop_0/body/If_1/else_branch/sp": True}
    new, done = onnx_rw.apply(m, ["cumba", "reduba", "actiba"], tables=TABLES)
    assert all(s.ok for s in done) and len(done) == 3
    check_valid(new, m)
    assert ops_in(new, "Loop_0/body/If_1/then_branch/") == {"Constant": 1, "MatMul": 1}
    inner = ops_in(new, "Loop_0/body/If_1/else_branch/")
    assert not {"Softplus", "ReduceSum"} & set(inner), inner
    x = RNG.normal(size=(2, 5)).astype(np.float32)
    s = x.astype(np.float64)
    for i in range(3):  # i = 0, 2 even: CumSum; i = 1: table softplus + row sum
        s = s + (np.cumsum(x, 1) if i % 2 == 0 else TABLES["softplus"](x) + x.sum(-1, keepdims=True))
    np.testing.assert_allclose(run(new, {"x": x})[0], s, rtol=1e-5, atol=1e-5)


# --- outer-scope references keep nodes alive -------------------------------------------------------

def test_outer_scope_use_is_not_pruned():
    """Top-level SiLU whose Sigmoid output is also read inside a Loop body's nested If (no explicit input)."""
    pytest.importorskip("actiba.lower.onnx_lower")
    then = h.make_graph([h.make_node("Identity", ["sg"], ["t"])], "then", [], [vi("t")])
    els = h.make_graph([h.make_node("Neg", ["sg"], ["e"])], "else", [], [vi("e")])
    body = h.make_graph([h.make_node("Identity", ["cin"], ["cout"]),
                         h.make_node("If", ["c"], ["b"], name="If_1", then_branch=then, else_branch=els),
                         h.make_node("Add", ["s", "b"], ["s2"])],
                        "body", [vi("i", [], T.INT64), vi("cin", [], T.BOOL), vi("s")],
                        [vi("cout", [], T.BOOL), vi("s2")])
    nodes = [h.make_node("Sigmoid", ["x"], ["sg"], name="sg"),
             h.make_node("Mul", ["x", "sg"], ["y"], name="silu"),
             i64("M", 2),
             h.make_node("Loop", ["M", "", "y"], ["z"], name="Loop_0", body=body)]
    m = make(nodes, [vi("x", [2, 5]), vi("c", [], T.BOOL)], [vi("z", [2, 5])])
    new, done = onnx_rw.apply(m, ["actiba"], tables=TABLES)
    assert [s.name for s in done if s.ok] == ["silu"]
    check_valid(new, m)
    assert ops_in(new, "").get("Sigmoid") == 1  # kept: the nested If still reads its output
    x = RNG.normal(size=(2, 5)).astype(np.float32)
    xd = x.astype(np.float64)
    for cond in (True, False):
        sg = _sig(xd)
        ref = TABLES["silu"](xd) + 2 * (sg if cond else -sg)
        np.testing.assert_allclose(run(new, {"x": x, "c": np.array(cond)})[0], ref, rtol=1e-5, atol=1e-5)

    # a body-local SiLU whose Sigmoid is read by an If nested in that body: also kept
    inner = h.make_graph([h.make_node("Identity", ["bs"], ["t"])], "then", [], [vi("t")])
    inner_else = h.make_graph([h.make_node("Neg", ["bs"], ["e"])], "else", [], [vi("e")])
    body2 = h.make_graph([h.make_node("Identity", ["cin"], ["cout"]),
                          h.make_node("Sigmoid", ["s"], ["bs"], name="bs"),
                          h.make_node("Mul", ["bs", "s"], ["bm"], name="bsilu"),
                          h.make_node("If", ["c"], ["b"], name="If_2", then_branch=inner, else_branch=inner_else),
                          h.make_node("Add", ["bm", "b"], ["s2"])],
                         "body", [vi("i", [], T.INT64), vi("cin", [], T.BOOL), vi("s")],
                         [vi("cout", [], T.BOOL), vi("s2")])
    m2 = make([i64("M", 2), h.make_node("Loop", ["M", "", "x"], ["z"], name="Loop_0", body=body2)],
              [vi("x", [2, 5]), vi("c", [], T.BOOL)], [vi("z", [2, 5])])
    new2, done2 = onnx_rw.apply(m2, ["actiba"], tables=TABLES)
    assert [s.name for s in done2 if s.ok] == ["Loop_0/body/bsilu"]
    check_valid(new2, m2)
    assert ops_in(new2, "Loop_0/body/").get("Sigmoid") == 1
    for cond in (True, False):
        s = xd
        for _ in range(2):
            s = TABLES["silu"](s) + (_sig(s) if cond else -_sig(s))
        np.testing.assert_allclose(run(new2, {"x": x, "c": np.array(cond)})[0], s, rtol=1e-5, atol=1e-5)


def test_contract_refuses_product_read_in_a_body():
    """Mul -> ReduceSum whose product is also read inside an If branch: not contracted."""
    then = h.make_graph([h.make_node("Identity", ["p"], ["t"])], "then", [], [vi("t")])
    els = h.make_graph([h.make_node("Neg", ["p"], ["e"])], "else", [], [vi("e")])
    nodes = [h.make_node("Mul", ["a", "b"], ["p"], name="mul"),
             h.make_node("ReduceSum", ["p", "ax"], ["r"], name="rs", keepdims=1),
             h.make_node("If", ["c"], ["q"], name="If_0", then_branch=then, else_branch=els),
             h.make_node("Add", ["q", "r"], ["y"])]
    m = make(nodes, [vi("a", [3, 1, 8]), vi("b", [1, 4, 8]), vi("c", [], T.BOOL)], [vi("y", [3, 4, 8])],
             [nh.from_array(np.array([-1], np.int64), "ax")])
    (site,) = onnx_rw.find_sites(m, "contract")
    assert not site.ok and "other consumers" in site.reason


def test_cli_dry_run_lists_body_sites(tmp_path, capsys):
    from actiba.cli import main

    path = tmp_path / "loop.onnx"
    onnx.save(loop_model(), str(path))
    out = tmp_path / "out.onnx"
    assert main(["rewrite", str(path), "--cumba", "--reduba", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "Loop_0/body/cs_x" in err and "Loop_0/body/rs_keep" in err and "rank unknown" in err
    assert main(["rewrite", str(path), "--cumba", "--reduba", "-o", str(out)]) == 0
    new = onnx.load(str(out))
    assert ops_in(new, "Loop_0/body/").get("CumSum") == 1


@pytest.mark.parametrize("computed", [False, True])
def test_compare_checks_both_branches(computed):
    """A difference confined to one branch is seen whichever way the random condition falls."""
    m = if_model(computed)

    def broken(branch: str, edit) -> onnx.ModelProto:
        out = onnx.ModelProto.FromString(m.SerializeToString())
        edit(next(a.g for a in out.graph.node[-1].attribute if a.name == branch).node[0])
        return out

    relu = broken("else_branch", lambda n: setattr(n, "op_type", "Relu"))  # Softplus -> Relu
    excl = broken("then_branch", lambda n: n.attribute.append(h.make_attribute("exclusive", 1)))
    for seed in range(4):
        assert onnx_rw.compare(m, relu, seed=seed) > 0.1
        assert onnx_rw.compare(m, excl, seed=seed) > 0.1
        assert onnx_rw.compare(m, m, seed=seed) == 0.0


def test_cli_rewrites_if_branches(tmp_path, capsys):
    pytest.importorskip("actiba.lower.onnx_lower")
    from actiba.cli import main

    path, out, table = tmp_path / "if.onnx", tmp_path / "out.onnx", tmp_path / "sp.json"
    onnx.save(if_model(), str(path))
    TABLES["softplus"].save(table)
    assert main(["rewrite", str(path), "--cumba", "--reduba", "--act", f"softplus={table}", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "If_0/then_branch/cs" in err and "If_0/else_branch/sp" in err
    assert "3 of 4 sites rewritten" in err  # the SiLU has no table
    new = onnx.load(str(out))
    assert "CumSum" not in ops_in(new, "If_0/then_branch/") and "Softplus" not in ops_in(new, "If_0/else_branch/")
    feeds = if_feeds(False)
    x = feeds["x"].astype(np.float64)
    np.testing.assert_allclose(run(new, feeds)[0], TABLES["softplus"](x) + x * _sig(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_torch_cond_export(tmp_path, capsys):
    """A real exported torch.cond (dynamo exporter): both branches rewritten and verified by the CLI."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("actiba.lower.onnx_lower")
    from actiba.cli import main

    class Cond(torch.nn.Module):
        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda v: torch.cumsum(v, 1) + v.sum(-1, keepdim=True),
                              lambda v: torch.nn.functional.softplus(v), (x,))

    path, out, table = tmp_path / "cond.onnx", tmp_path / "out.onnx", tmp_path / "sp.json"
    torch.onnx.export(Cond(), (torch.randn(3, 6),), dynamo=True, verbose=False).save(str(path))
    TABLES["softplus"].save(table)
    assert main(["rewrite", str(path), "--cumba", "--reduba", "--act", f"softplus={table}", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "/then_branch/" in err and "/else_branch/" in err
    new = onnx.load(str(out))
    assert not {"CumSum", "Softplus"} & {op for (_, op) in count_ops(new.graph)}
    for sign in (1, -1):
        x = sign * np.abs(RNG.normal(size=(3, 6))).astype(np.float32)
        xd = x.astype(np.float64)
        ref = np.cumsum(xd, 1) + xd.sum(-1, keepdims=True) if sign > 0 else TABLES["softplus"](xd)
        np.testing.assert_allclose(run(new, {new.graph.input[0].name: x})[0], ref, rtol=1e-5, atol=1e-5)
