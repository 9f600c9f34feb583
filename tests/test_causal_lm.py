"""ActiBA on causal LMs without SSM (Llama, Qwen2, Qwen3, Gemma, GPT-2): registry entries against the
installed transformers, export at a fixed length, the MLP activation found as one site per layer with the
same id in torch and ONNX, the rewritten graph against torch with the same tables, the sweep, the refusal
of an MLP activation actiba has no table for. Tiny random models from the registry's `tiny` configs.
The end-to-end `actiba pareto` / `actiba eval` runs on saved folders are slow:
``python -m pytest tests/test_causal_lm.py -m slow``.
"""

from __future__ import annotations

import fnmatch
import json
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from _cli import one_line, run  # noqa: E402

from actiba.models import arch  # noqa: E402

FAMILIES = tuple(t for t, a in arch.ARCHITECTURES.items() if a.ssm == arch.NONE)
# one family per MLP form runs in the fast suite (SiLU gate, tanh-GELU both ways, erf-GELU; Gemma 2 for
# the soft-capped logits and sliding-window layers); the
# others repeat Llama's form and are slow (each export costs ~2-3 s)
FAST = ("llama", "qwen2", "qwen3", "gemma", "gemma2", "gpt2", "gpt_neox")
SEQ = 16


def test_the_families_the_brief_names_are_registered():
    assert {"llama", "qwen2", "qwen3", "gemma", "gpt2"} <= set(FAMILIES)


def _tiny(model_type: str, **over):
    entry = arch.ARCHITECTURES[model_type]
    cfg = transformers.AutoConfig.for_model(model_type, **{**entry.tiny, **over})
    torch.manual_seed(0)
    return entry, transformers.AutoModelForCausalLM.from_config(cfg).eval()


def _function_by_value(module) -> str:
    """Which function an activation module computes, told by its values against torch's own functions
    (independent of the registry's name mapping)."""
    x = torch.linspace(-6, 6, 2001)
    with torch.no_grad():
        y = module(x)
    refs = {"silu": torch.nn.functional.silu(x), "gelu": torch.nn.functional.gelu(x),
            "gelu-tanh": torch.nn.functional.gelu(x, approximate="tanh"), "relu": torch.relu(x)}
    errs = {k: float((y - r).abs().max()) for k, r in refs.items()}
    best = min(errs, key=errs.get)
    assert errs[best] < 1e-5, errs
    return best


def _mlps(model):
    """(path, activation module) of every module holding a transformers activation as a child."""
    return [(p, c) for p, m in model.named_modules() for c in m.children()
            if type(c).__module__ == "transformers.activations"]


def _ids(seed: int = 1):
    return torch.randint(0, 300, (1, SEQ), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", params=[t if t in FAST else pytest.param(t, marks=pytest.mark.slow)
                                        for t in FAMILIES])
def built(request, tmp_path_factory):
    """(entry, model, path of its ONNX export at SEQ tokens with every position's logits)."""
    from actiba.models.export import export_onnx

    entry, model = _tiny(request.param)
    path = tmp_path_factory.mktemp(request.param) / "model.onnx"
    export_onnx(model, path, seq_len=SEQ, verbose=False)
    return entry, model, path


def test_entry_matches_the_model(built):
    entry, model, _ = built
    assert type(model).__name__ == entry.causal_lm and entry.ssm == arch.NONE
    assert entry.mixers(model) == [] and entry.end_to_end
    assert arch.require(model.config, "m") is entry
    mlps = _mlps(model)
    assert len(mlps) == model.config.num_hidden_layers
    assert set(FAST) <= set(FAMILIES)
    in_paths = [p for p, _ in model.named_modules() if any(fnmatch.fnmatchcase(p, g) for g in entry.mlp_paths)]
    assert [p for p, _ in mlps] == in_paths
    assert {_function_by_value(a) for _, a in mlps} == {entry.mlp_function(model.config)}
    assert arch.mlp_functions(model) == (entry.mlp_function(model.config),)
    names = [p for p, _ in model.named_modules()]
    for glob in entry.attention_paths:
        assert sum(fnmatch.fnmatchcase(p, glob) for p in names) == model.config.num_hidden_layers


def test_export_sites_and_tables_agree_with_torch(built, tmp_path, capsys):
    """The MLP activation is one site per layer, named the same by the torch scope and the ONNX rule;
    `actiba rewrite` (verified) replaces exactly those, and the rewritten graph (all positions, the
    last position, OpenVINO IR) computes what torch computes with the same table in the same place."""
    from actiba.evaluate.build import to_openvino
    from actiba.evaluate.perplexity import tables_applied
    from actiba.evaluate.tables import fitted_table
    from actiba.models.export import compile_openvino, last_logits_graph
    from actiba.rewrite import onnx_rw, torch_rw

    entry, model, path = built
    fn = entry.mlp_function(model.config)
    proto = onnx.load(str(path))
    assert "CumSum" not in {n.op_type for n in proto.graph.node}  # why the sweep has no CumBA row
    table = fitted_table(fn, 8)  # coarse: its error shows in the logits, so "same sites" is tested
    want = sorted(f"{g.replace('*', str(i))}:{fn}#0" for g in entry.mlp_paths
                  for i in range(model.config.num_hidden_layers))
    onnx_ids = sorted(s.detail["site_id"] for s in onnx_rw.find_sites(proto, "actiba", tables={fn: table}) if s.ok)
    torch_ids = sorted(s.detail["site_id"] for s in torch_rw.find_actiba_sites(
        model, {fn: table}, _ids(), include=entry.activation_scope()))
    assert onnx_ids == torch_ids == want

    table_path = tmp_path / "t.json"
    table.save(table_path)
    out = tmp_path / "rw.onnx"
    rc, stdout, err = run(capsys, "rewrite", path, "--act", f"{fn}={table_path}", "-o", out)
    assert rc == 0, err
    rewritten = onnx.load(str(out))
    ids = _ids(2)
    with torch.inference_mode():
        exact = model(input_ids=ids, use_cache=False).logits.float().numpy()
        with tables_applied(model, {fn: table}):
            scoped = model(input_ids=ids, use_cache=False).logits.float().numpy()
    scale = max(1.0, float(np.abs(exact).max()))
    got = ort.InferenceSession(rewritten.SerializeToString()).run(None, {"input_ids": ids.numpy()})[0]
    assert np.abs(got - scoped).max() <= 1e-5 * scale
    assert np.abs(scoped - exact).max() > 20 * np.abs(got - scoped).max()  # the table did change the logits
    last = last_logits_graph(rewritten)
    got_last = ort.InferenceSession(last.SerializeToString()).run(None, {"input_ids": ids.numpy()})[0]
    assert got_last.shape == (1, 1, exact.shape[-1])
    assert np.abs(got_last - scoped[:, -1:]).max() <= 1e-5 * scale
    compiled = compile_openvino(to_openvino(last), "f32", threads=1)
    got_ov = compiled({0: ids.numpy()})[compiled.output(0)]
    assert np.abs(got_ov - scoped[:, -1:]).max() <= 1e-4 * scale


SOFTCAPPED = [t if t in FAST else pytest.param(t, marks=pytest.mark.slow)
              for t in FAMILIES if arch.ARCHITECTURES[t].logit_softcap]


@pytest.mark.parametrize("built", SOFTCAPPED, indirect=True)
def test_softcapped_logits_stay_in_the_graph(built):
    """Gemma 2 / 3 soft-cap their logits (cap·tanh(z / cap)): the export, its last-position graph and the
    OpenVINO IR equal torch with the cap, and torch without it is far off (so the check can fail); the
    Tanh calls (the logit cap, Gemma 2's attention caps) have the same site ids in torch and ONNX."""
    from actiba.evaluate.build import to_openvino
    from actiba.evaluate.tables import fitted_table
    from actiba.models.export import compile_openvino, last_logits_graph
    from actiba.rewrite import onnx_rw, torch_rw

    entry, model, path = built
    cap = getattr(model.config, entry.logit_softcap)
    assert isinstance(cap, float) and cap > 0
    ids = _ids(3)
    with torch.inference_mode():
        capped = model(input_ids=ids, use_cache=False).logits.numpy()
        setattr(model.config, entry.logit_softcap, None)
        try:
            uncapped = model(input_ids=ids, use_cache=False).logits.numpy()
        finally:
            setattr(model.config, entry.logit_softcap, cap)
    assert np.abs(capped).max() < cap < np.abs(uncapped).max()
    gap = float(np.abs(uncapped - capped).max())
    attn = [m for m in model.modules() if getattr(m, "attn_logit_softcapping", None)]  # Gemma 2 only
    if attn:
        attn_cap = attn[0].attn_logit_softcapping
        with torch.inference_mode():
            for m in attn:
                m.attn_logit_softcapping = None
            try:
                attn_uncapped = model(input_ids=ids, use_cache=False).logits.numpy()
            finally:
                for m in attn:
                    m.attn_logit_softcapping = attn_cap
        gap = min(gap, float(np.abs(attn_uncapped - capped).max()))
    proto = onnx.load(str(path))
    got = ort.InferenceSession(proto.SerializeToString()).run(None, {"input_ids": ids.numpy()})[0]
    assert np.abs(got - capped).max() <= 1e-5 and gap > 100 * np.abs(got - capped).max()
    last = last_logits_graph(proto)
    producers = {o: n for n in last.graph.node for o in n.output}
    tail, name = [], last.graph.output[0].name
    while name in producers and len(tail) < 4:
        tail.append(producers[name].op_type)
        name = producers[name].input[0]
    assert tail == ["Mul", "Tanh", "Div", "MatMul"]
    got_last = ort.InferenceSession(last.SerializeToString()).run(None, {"input_ids": ids.numpy()})[0]
    assert np.abs(got_last - capped[:, -1:]).max() <= 1e-5
    compiled = compile_openvino(to_openvino(last), "f32", threads=1)
    assert np.abs(compiled({0: ids.numpy()})[compiled.output(0)] - capped[:, -1:]).max() <= 1e-4

    fn = entry.mlp_function(model.config)
    tables = {"tanh": fitted_table("tanh", 8), fn: fitted_table(fn, 8)}
    onnx_tanh = sorted(s.detail["site_id"] for s in onnx_rw.find_sites(proto, "actiba", tables=tables)
                       if s.ok and s.detail.get("function") == "tanh")
    torch_tanh = sorted(s.detail["site_id"] for s in torch_rw.find_actiba_sites(model, tables, _ids())
                        if s.op == "tanh")
    assert onnx_tanh == torch_tanh and len(torch_tanh) == (model.config.num_hidden_layers if attn else 0) + 1


def test_gpt2_gelu_new_is_one_call_in_torch():
    """GPT-2's NewGELUActivation writes tanh-GELU out with torch.tanh / torch.pow; inside the scope it is
    one gelu-tanh call (what the ONNX rule sees), with a tanh table present it is still not a tanh site,
    and the module is restored afterwards."""
    from transformers.activations import NewGELUActivation

    from actiba.evaluate.tables import fitted_table
    from actiba.rewrite import torch_rw

    _, model = _tiny("gpt2")
    tables = {"gelu-tanh": fitted_table("gelu-tanh", 8), "tanh": fitted_table("tanh", 8)}
    sites = torch_rw.find_actiba_sites(model, tables, _ids())
    assert sorted(s.detail["site_id"] for s in sites) == ["transformer.h.0.mlp:gelu-tanh#0",
                                                          "transformer.h.1.mlp:gelu-tanh#0"]
    acts = [m for m in model.modules() if isinstance(m, NewGELUActivation)]
    assert acts and all("forward" not in vars(m) for m in acts)
    x = torch.linspace(-5, 5, 101)
    with torch_rw.as_activation_calls(model) as n:
        assert n == len(acts)
        assert torch.allclose(acts[0](x), torch.nn.functional.gelu(x, approximate="tanh"), atol=0)


def _tanh_gelu_graph(c_inner: float, x_first: bool):
    """x·0.5·(1+tanh(c·(x+0.044715·x³))) in the two association orders the exporters write."""
    from onnx import TensorProto, helper

    def k(name, v):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.FLOAT, [], [v]))

    nodes = [k("three", 3.0), k("a", 0.044715), k("c", c_inner), k("one", 1.0), k("half", 0.5),
             helper.make_node("Pow", ["x", "three"], ["x3"]),
             helper.make_node("Mul", ["a", "x3"] if x_first else ["x3", "a"], ["ax3"]),
             helper.make_node("Add", ["x", "ax3"] if x_first else ["ax3", "x"], ["inner"]),
             helper.make_node("Mul", ["c", "inner"] if x_first else ["inner", "c"], ["u"]),
             helper.make_node("Tanh", ["u"], ["t"]),
             helper.make_node("Add", ["t", "one"], ["p"])]
    if x_first:  # Gemma's F.gelu(approximate="tanh"): ((1 + t)·0.5)·x
        nodes += [helper.make_node("Mul", ["p", "half"], ["h"]), helper.make_node("Mul", ["x", "h"], ["y"])]
    else:        # GPT-2's gelu_new: (0.5·x)·(1 + t)
        nodes += [helper.make_node("Mul", ["half", "x"], ["hx"]), helper.make_node("Mul", ["hx", "p"], ["y"])]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 64]) for n in ("x", "y")]
    g = helper.make_graph(nodes, "g", [vi[0]], [vi[1]])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("x_first", [True, False])
def test_tanh_gelu_pattern(x_first):
    """Found as one gelu-tanh site on ONNX and on the unfused OpenVINO model (`Core.read_model`, what the
    sweep compiles), rewritten to the table; a Tanh with another constant is a tanh site."""
    from actiba.evaluate.build import to_openvino
    from actiba.evaluate.tables import fitted_table
    from actiba.models.export import compile_openvino
    from actiba.rewrite import onnx_rw, openvino_rw

    tables = {"gelu-tanh": fitted_table("gelu-tanh", 8), "tanh": fitted_table("tanh", 8)}
    m = _tanh_gelu_graph(float(np.sqrt(2 / np.pi)), x_first)
    sites = onnx_rw.find_sites(m, "actiba", tables=tables)
    assert [(s.detail.get("function"), s.ok) for s in sites] == [("gelu-tanh", True)]
    out, _ = onnx_rw.apply(m, ["actiba"], tables=tables)
    x = np.random.default_rng(0).normal(0, 3, (4, 64)).astype(np.float32)
    y = ort.InferenceSession(out.SerializeToString()).run(None, {"x": x})[0]
    assert np.abs(y - tables["gelu-tanh"](x.astype(np.float64))).max() < 1e-5
    ov_model = to_openvino(m)
    assert "Tanh" in {o.get_type_name() for o in ov_model.get_ops()}  # unfused: the pattern, not Gelu
    ov_out, ov_sites = openvino_rw.apply(ov_model, ["actiba"], tables=tables)
    assert [(s.detail.get("function"), s.ok) for s in ov_sites] == [("gelu-tanh", True)]
    compiled = compile_openvino(ov_out, "f32", threads=1)
    assert np.abs(compiled({0: x})[compiled.output(0)] - tables["gelu-tanh"](x.astype(np.float64))).max() < 1e-5
    near_miss = _tanh_gelu_graph(0.7, x_first)  # not GELU: the Tanh is a tanh site of its own
    assert [s.detail.get("function") for s in onnx_rw.find_sites(near_miss, "actiba", tables=tables)] == ["tanh"]


def test_sweeps_have_activation_rows_only():
    from actiba.evaluate import configs as cfgs

    for fn in ("silu", "gelu-tanh"):
        for name in cfgs.SWEEPS:
            sweep = cfgs.builtin_sweep(name, "gemma", functions=(fn,))
            assert sweep[0].is_baseline and len(sweep) >= 3
            for c in sweep[1:]:
                assert not c.rewrites and c.ssd_chunk is None and not c.measure_sites
                assert set(c.activations) == {fn} and c.name.startswith(f"act-{fn}-")
    assert {c.activations["silu"]["segments"] for c in cfgs.builtin_sweep("full", "llama", functions=("silu",))
            if c.activations} == set(cfgs.SEGMENTS)
    assert any(c.cumba for c in cfgs.builtin_sweep("default", "mamba2"))  # the SSM families keep theirs
    with pytest.raises(ValueError):
        cfgs.builtin_sweep("default", "llama")  # a causal LM's sweep needs its MLP function
    cfg = cfgs.from_dict({"name": "g", "activations": {"gelu-tanh": {"segments": 8}}})
    assert cfg.activations == {"gelu-tanh": {"segments": 8}}


def test_an_mlp_activation_without_a_table_is_refused(tmp_path, capsys):
    """A ReLU MLP (OPT-style): nothing to replace and no SSM rewrite, so one line naming what actiba can
    replace instead of a sweep of baselines."""
    _, model = _tiny("llama", hidden_act="relu")
    model.save_pretrained(tmp_path / "relu-llama")
    capsys.readouterr()  # the save's progress bar
    rc, _, err = run(capsys, "eval", tmp_path / "relu-llama")
    line = one_line(rc, err)
    assert "hidden_act='relu'" in line
    assert all(name in line for name in ("silu", "gelu", "gelu_new", "gelu_pytorch_tanh"))


@pytest.mark.slow
@pytest.mark.parametrize("model_type", FAMILIES)
def test_pareto_and_eval_on_a_saved_folder(model_type, tmp_path, capsys):
    """`actiba pareto FOLDER --quick` gives the baseline and ActiBA rows, each table on every layer's MLP,
    with decode-step latency; `actiba eval --backend torch` scores the same bits/byte in torch (scoped
    tables) and OpenVINO (rewritten graph)."""
    entry, model = _tiny(model_type)
    folder = tmp_path / model_type
    model.save_pretrained(folder)
    capsys.readouterr()
    fn = entry.mlp_function(model.config)
    rc, out, err = run(capsys, "pareto", folder, "--quick", "--out", tmp_path / "p", "--precision", "f32")
    assert rc == 0, err
    run_ = json.loads((tmp_path / "p" / "results.json").read_text())["runs"][0]
    rows = {r["name"]: r for r in run_["configs"]}
    assert set(rows) == {"baseline", f"act-{fn}-8", f"act-{fn}-4"}
    layers = model.config.num_hidden_layers
    for name, r in rows.items():
        assert r["error"] is None and r["metric"] is not None and r.get("decode_latency_ms"), (name, r)
        if name != "baseline":
            assert r["sites_rewritten"] == {"actiba": layers} and r["decode_sites_rewritten"] == layers
    sweep = tmp_path / "s.json"
    sweep.write_text(json.dumps({"configs": [{"name": "t", "activations": {fn: {"segments": 4}}}]}))
    rc, out, err = run(capsys, "eval", folder, "--config", sweep, "--seq-len", "32", "--eval-bytes", "512",
                       "--repeats", "3", "--backend", "torch")
    assert rc == 0, err
    ov, pt = map(float, re.search(r"^t: bits/byte ([\d.]+) .* torch ([\d.]+)", out, re.M).groups())
    base = float(re.search(r"^baseline: bits/byte ([\d.]+)", out, re.M).group(1))
    assert ov == pytest.approx(pt, rel=1e-5) and ov != base
