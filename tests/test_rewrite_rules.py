"""The rule set and the activation registry: one order, one condition per rewrite, lists derived once."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

from actiba import activations, rewrite
from actiba.errors import InputError
from actiba.rewrite import spec
from actiba.rewrite.rules import RULES


def test_rule_order_and_registry():
    names = RULES.names()
    assert names[:2] == ("ssd-d1", "ssd-d2")  # SSD first: d1 removes the T×T CumSums CumBA would take
    assert names.index("contract") < names.index("reduba") and names[-1] == "actiba"
    assert set(names) == set(rewrite.SPECS)
    for rule in RULES:
        assert rule.name in rewrite.SPECS and rule.stage in ("ssd", "exact", "approx") and rule.passes
    assert [r.name for r in RULES.ordered(["actiba", "cumba", "ssd-d2"])] == ["ssd-d2", "cumba", "actiba"]
    with pytest.raises(InputError, match="unknown rewrite 'cumbaa'; known: actiba, contract, cumba, reduba, ssd-d1"):
        RULES.get("cumbaa")


def test_importing_registries_loads_no_backend():
    code = ("import sys, actiba.activations, actiba.rewrite.rules, actiba.rewrite.spec; "
            "print(sorted(m for m in ('torch', 'onnx', 'openvino') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_activation_lists_derive_from_the_registry():
    from actiba import functions
    from actiba.evaluate import configs
    from actiba.recover import tune

    assert spec.ACT_FUNCTIONS == activations.NAMES and tune._EXACT_ACTS == activations.NAMES
    assert configs.ACT_NAMES == activations.SWEEP_NAMES == ("silu", "softplus", "gelu", "gelu-tanh")
    for act in activations.ACTIVATIONS:
        functions.get(act.name)  # every registered function can be fitted
        for alias in act.aliases:
            assert activations.canonical(alias.upper()) == act.name == spec.canonical_function(alias)
    with pytest.raises(InputError, match="known: silu, softplus, gelu"):
        activations.get("relu")


def test_cli_help_lists_the_registry(capsys):
    from actiba.cli import main

    with pytest.raises(SystemExit):
        main(["rewrite", "--help"])
    help_text = " ".join(capsys.readouterr().out.split()).replace("- ", "-")  # argparse wraps at hyphens
    assert activations.help_names() in help_text and "--allow-noop" in help_text


def test_torch_callables_map_to_registry_entries():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from actiba.rewrite.torch_rw import _function_of

    x = torch.zeros(3)
    assert _function_of(F.silu, (x,), {}) == ("silu", 1.0)
    assert _function_of(F.softplus, (x,), {"beta": 2.0}) == ("softplus", 2.0)
    assert _function_of(F.gelu, (x,), {"approximate": "tanh"}) == ("gelu-tanh", None)
    assert _function_of(F.gelu, (x,), {}) == ("gelu", None)
    assert _function_of(torch.Tensor.exp, (x,), {}) == ("exp", None)
    assert _function_of(torch.exp, (torch.nn.Parameter(x),), {}) is None  # weights are no sites
    assert _function_of(torch.relu, (x,), {}) is None
    for act in activations.ACTIVATIONS:
        assert act.torch, act.name
        for dotted in act.torch:
            mod, _, attr = dotted.rpartition(".")
            try:
                owner = importlib.import_module(mod)
            except ImportError:  # torch._C._nn / torch.Tensor: attributes of an imported module
                head, _, sub = mod.rpartition(".")
                owner = getattr(importlib.import_module(head), sub)
            assert callable(getattr(owner, attr)), dotted


def _cumsum_views(shape, axis):
    """The same CumSum as an ONNX graph and an OpenVINO model, each with its View."""
    pytest.importorskip("onnx")
    ov = pytest.importorskip("openvino")
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh
    from openvino import opset13 as ops

    from actiba.rewrite.onnx_view import OnnxView, _Graph
    from actiba.rewrite.openvino_view import OvView

    g = h.make_graph([h.make_node("CumSum", ["x", "ax"], ["y"], name="cs")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)],
                     [nh.from_array(np.array(axis, np.int64), "ax")])
    onnx_view = OnnxView(_Graph(h.make_model(g, opset_imports=[h.make_opsetid("", 17)])))
    x = ops.parameter(ov.PartialShape([d if isinstance(d, int) else -1 for d in shape]), np.float32, name="x")
    cs = ops.cumsum(x, ops.constant(np.int64(axis)))
    cs.set_friendly_name("cs")
    ov_view = OvView(ov.Model([ops.result(cs)], [x]))
    return [(onnx_view, onnx_view.nodes()[0]),
            (ov_view, next(n for n in ov_view.nodes() if n.get_type_name() == "CumSum"))]


@pytest.mark.parametrize("shape,axis", [((2, 8, 5), -2), ((2, 8, 5), -1), ((2, 3, 8, 5), 1), ((2, "n", 5), 1),
                                        ((2, 8, 5), 7)])
def test_one_condition_for_both_backends(shape, axis):
    from actiba.rewrite.rules import cumba
    from actiba.rewrite.rules.base import Context, Skip

    results = [cumba.match(v, node, Context()) for v, node in _cumsum_views(shape, axis)]
    kinds = {type(r).__name__ for r in results}
    assert len(kinds) == 1
    if isinstance(results[0], Skip):  # the same words, up to how each backend names a dynamic dim
        assert results[0].reason.replace("(n)", "(?)") == results[1].reason
    else:
        assert results[0].reason == results[1].reason and results[0].report() == results[1].report()
        assert results[0].report()["n"] == shape[axis]


def test_site_detail_is_plain_and_the_match_is_typed():
    pytest.importorskip("onnx")
    from actiba.rewrite import onnx_rw
    from actiba.rewrite.rules.cumba import CumbaMatch

    (view, node), _ = _cumsum_views((2, 8, 5), -2)
    (site,) = onnx_rw.find_sites(view.g.model, "cumba")
    assert isinstance(site.match, CumbaMatch) and site.detail["root"] is site.match.head.root
    plain = (str, int, float, bool)
    assert all(isinstance(v, plain) for v in dict(site.detail).values())
    assert site.as_dict()["detail"] == dict(site.detail)


NEG_RULE = '''
from dataclasses import dataclass
from typing import Any

import numpy as np

from actiba.rewrite.rules.base import Head, Match, Rule, float_check, handle
from actiba.rewrite.spec import RewriteSpec


@dataclass(kw_only=True)
class NegMatch(Match):
    x: Any = handle()


def match(v, node, ctx):
    x = v.ins(node)[0]
    h = Head(node, v.native(node), v.shape(x), v.type_name(x))
    why = float_check(v, x)
    return h.skip(why) if why else NegMatch(head=h, reason="0 - x", replaces=(v.out(node),), x=x)


def build(b, m):
    return (b.sub(b.const(np.zeros(1), m.x), m.x),)


SPEC = RewriteSpec("neg", ("Neg(x)",), ("float",), "0 - x", {}, 1e-6)
RULE = Rule("neg", "exact", (("Neg",),), match, build, spec=SPEC, order=45)
'''


def test_a_new_rewrite_is_one_module(tmp_path, monkeypatch):
    """A rule module dropped into a rules package is discovered, ordered, described and run end to end."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto as T
    from onnx import helper as h

    from actiba.rewrite import onnx_rw
    from actiba.rewrite.pipeline import Request, rewrite_model
    from actiba.rewrite.rules import RuleSet

    pkg = tmp_path / "more_rules"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "neg.py").write_text(NEG_RULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = RuleSet("more_rules", [str(pkg)])
    merged = {**{r.name: r for r in RULES}, **{r.name: r for r in extra}}
    monkeypatch.setattr(RULES, "_rules", dict(sorted(merged.items(), key=lambda kv: kv[1].order)))
    monkeypatch.setattr(RULES.registry, "_entries", {**RULES.registry._entries, "neg": merged["neg"]})
    monkeypatch.setattr(RULES.registry, "_loaded", {})
    assert RULES.names().index("neg") == RULES.names().index("cumba") + 1 and rewrite.SPECS["neg"].math == "0 - x"

    g = h.make_graph([h.make_node("Neg", ["x"], ["y"], name="neg0")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [3, 4])], [h.make_tensor_value_info("y", T.FLOAT, None)])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    result = rewrite_model(m, Request(rewrites=("neg",)))
    assert result.counts() == {"neg": 1} and result.stages[0].ok
    assert onnx_rw.inventory(result.model) == {"Sub": 1} and onnx_rw.compare(m, result.model) == 0
    assert isinstance(result.model, onnx.ModelProto)
