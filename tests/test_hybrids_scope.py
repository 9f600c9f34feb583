"""The mixer scope from the architecture registry: torch-level ActiBA, fine-tuning and the sweep's graph
tables approximate the same sites (the SSM mixers, found by path *and* class), and calibration site ids
name the same calls in torch and in the exported ONNX graph of every hybrid.

The graph tests export a tiny model each (~5-15 s): every hybrid ``-m slow``, a one-layer Falcon-H1 (its
MLP SiLUs lie outside the mixer) in the fast suite (8 s at load 4 on 2 cores).
"""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_hybrids import _tiny  # noqa: E402

from actiba.errors import InputError  # noqa: E402
from actiba.models import arch, mixer_scope  # noqa: E402
from actiba.rewrite import site_ids, torch_rw  # noqa: E402

SSM_FAMILIES = tuple(t for t, a in arch.ARCHITECTURES.items() if a.ssm != arch.NONE)
HYBRIDS = tuple(t for t in SSM_FAMILIES if t not in ("mamba", "mamba2"))
SEQ = 32
FUNCS = ("silu", "softplus")


def test_in_scope_covers_the_module_and_its_submodules():
    scope = ["model.layers.0.mamba", "backbone.layers.*.mixer"]
    assert site_ids.in_scope("model.layers.0.mamba:silu#1", scope)
    assert site_ids.in_scope("model.layers.0.mamba.norm:silu#0", scope)  # the gated norm inside the mixer
    assert site_ids.in_scope("backbone.layers.7.mixer:softplus#0", scope)
    assert not site_ids.in_scope("model.layers.0.mamba2:silu#0", scope)  # a prefix is not a parent
    assert not site_ids.in_scope("model.layers.1.feed_forward:silu#0", scope)
    assert not site_ids.in_scope(":silu#0", scope) and site_ids.in_scope(":silu#0", ["*"])


@pytest.mark.parametrize("model_type", sorted(SSM_FAMILIES))
def test_mixer_scope_is_the_mixers_by_path_and_class(model_type):
    entry, model = _tiny(model_type)
    by_class = [p for p, m in model.named_modules() if type(m).__name__ == entry.mixer_class]
    assert list(mixer_scope(model)) == by_class and by_class
    if model_type == "nemotron_h":  # its attention and MLP blocks are `.mixer`s too, and stay outside
        others = [p for p, m in model.named_modules() if p.endswith(".mixer") and p not in by_class]
        assert others


@pytest.mark.parametrize("model_type", sorted(t for t, a in arch.ARCHITECTURES.items() if a.ssm == arch.NONE))
def test_scope_of_a_causal_lm_without_ssm_is_its_mlp_blocks(model_type):
    entry, model = _tiny(model_type)
    want = [p for p, _ in model.named_modules() if any(fnmatch.fnmatchcase(p, g) for g in entry.mlp_paths)]
    assert list(mixer_scope(model)) == want and len(want) == model.config.num_hidden_layers


def test_mixer_scope_refuses_what_the_registry_does_not_know():
    with pytest.raises(InputError, match="not an architecture actiba knows"):
        mixer_scope(torch.nn.Linear(2, 2))


def _tables():
    from actiba.evaluate.tables import fitted_table

    return {"silu": fitted_table("silu", 4), "softplus": fitted_table("softplus", 4)}


def _observed(model, ids) -> list[str]:
    from actiba.models.export import export_view

    seen: list[str] = []
    with torch.inference_mode(), export_view(model) as view, \
            torch_rw.observe_activations(view, lambda s, f, b, x: seen.append(s) or None, FUNCS):
        view(input_ids=ids)
    return seen


def _ids():
    return torch.randint(0, 256, (1, SEQ), generator=torch.Generator().manual_seed(3))


def test_torch_tables_apply_inside_the_mixers_only():
    """GraniteMoeHybrid: its shared-MLP and expert SiLUs are sites, but outside the default scope."""
    from actiba.evaluate.perplexity import tables_applied

    entry, model = _tiny("granitemoehybrid")
    ids, tables = _ids(), _tables()
    scope = mixer_scope(model)
    every = _observed(model, ids)
    outside = [s for s in every if not site_ids.in_scope(s, scope)]
    assert outside and len(outside) < len(every)
    sites = torch_rw.find_actiba_sites(model, tables, ids, include=scope)
    assert sorted(s.detail["site_id"] for s in sites if s.ok) == sorted(set(every) - set(outside))
    with torch.inference_mode():
        exact = model(input_ids=ids).logits
        with tables_applied(model, tables):  # the default scope is the registry's
            default = model(input_ids=ids).logits
        with tables_applied(model, tables, scope):
            mixers = model(input_ids=ids).logits
        with tables_applied(model, tables, ["*"]):
            everywhere = model(input_ids=ids).logits
    assert torch.equal(default, mixers)
    assert (default - exact).abs().max() > 0 and (everywhere - default).abs().max() > 0


def _graph_matches_torch(model_type, tmp_path, **config):
    """ONNX site ids = torch site ids (calibration), and the sweep's scoped graph tables = torch's."""
    import onnx
    import onnxruntime as ort

    from actiba.evaluate.perplexity import tables_applied
    from actiba.models.export import export_onnx, export_view
    from actiba.rewrite import onnx_rw
    from actiba.rewrite.pipeline import Request, rewrite_model

    entry, model = _tiny(model_type, **config)
    ids, tables = _ids(), _tables()
    export_onnx(model, tmp_path / "m.onnx", seq_len=SEQ, verbose=False, check_seq_len=SEQ)
    graph = onnx.load(str(tmp_path / "m.onnx"))
    every = _observed(model, ids)
    found = onnx_rw.find_sites(graph, "actiba", {})
    assert sorted(s.detail["site_id"] for s in found if s.detail["function"] in FUNCS) == sorted(every)

    scope = mixer_scope(model)
    res = rewrite_model(graph, Request(tables=tables, verify=False, act_scope=scope))
    done = sorted(s.detail["site_id"] for s in res.sites if s.rewrite == "actiba" and s.ok)
    assert done == sorted(s for s in every if site_ids.in_scope(s, scope))
    sess = ort.InferenceSession(res.model.SerializeToString())
    got = sess.run(None, {sess.get_inputs()[0].name: ids.numpy()})[0]
    with torch.inference_mode(), export_view(model) as view:
        exact = view(input_ids=ids, use_cache=False).logits.numpy()
        with tables_applied(view, tables):
            want = view(input_ids=ids, use_cache=False).logits.numpy()
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= 1e-4 * scale < np.abs(exact - want).max()


def test_one_layer_falcon_h1_graph_sites_and_tables_match_torch(tmp_path):
    """The fast variant: one Falcon-H1 layer (attention, mixer and MLP side by side)."""
    _graph_matches_torch("falcon_h1", tmp_path, num_hidden_layers=1)


@pytest.mark.slow
@pytest.mark.parametrize("model_type", HYBRIDS)
def test_hybrid_graph_sites_and_tables_match_torch(model_type, tmp_path):
    _graph_matches_torch(model_type, tmp_path)


def test_calibrated_tables_come_from_the_mixer_sites_only(monkeypatch, tmp_path):
    """The sweep's calibrated sets fit (per site) or pool (shared) only the sites the tables replace:
    Granite's MLP / expert SiLU statistics are captured but must not shape a mixer table."""
    import numpy as np

    from actiba.evaluate import tables
    from actiba.evaluate.build import LoadedModel
    from actiba.fitting.calibrated import fit_sites

    monkeypatch.setattr(tables, "_MEMO", {})
    monkeypatch.setattr(tables, "_calibration_dir", lambda: tmp_path)
    monkeypatch.setattr(tables, "calibration_data", lambda: bytes(range(256)) * 4)
    entry, model = _tiny("granitemoehybrid")
    lm = LoadedModel("granite-tiny", model, "granitemoehybrid", False, 300)
    scope = mixer_scope(model)
    stats = tables.calibration_stats(lm)
    silu = {k for k, s in stats.sites.items() if s.function == "silu"}
    inside = {k for k in silu if site_ids.in_scope(k, scope)}
    assert inside and silu - inside
    assert set(tables.calibrated_set(lm, "silu", 4, "per-site").tables) == inside
    (shared,) = tables.calibrated_set(lm, "silu", 4, "shared").tables.values()
    (pooled_all,) = fit_sites(stats, "silu", 4, per_site=False, weighting=tables.DEFAULT_WEIGHTING,
                              percentiles=tables.DEFAULT_PERCENTILES).tables.values()
    assert not np.array_equal(shared.breakpoints, pooled_all.breakpoints)


def test_a_hybrid_is_the_same_model_bare_or_loaded():
    """A hybrid's causal LM has a `.model` (its base model): fingerprints and calibration site ids must still
    be those of the whole LM, whether it comes bare or wrapped in a LoadedModel."""
    from actiba.calibrate import calibrate
    from actiba.evaluate.build import LoadedModel
    from actiba.fingerprint import model_fingerprint

    entry, model = _tiny("bamba")
    lm = LoadedModel("bamba-tiny", model, "bamba", False, 300)
    assert model_fingerprint(model)["sha256"] == model_fingerprint(lm)["sha256"]
    data = bytes(range(256)) * 2
    bare, loaded = (set(calibrate(m, data, seq_len=64).sites) for m in (model, lm))
    assert bare == loaded and all(s.startswith("model.layers.") for s in bare)
    assert {f"{p}:softplus#0" for p in mixer_scope(model)} <= bare
