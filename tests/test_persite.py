"""Per-site ActiBA tables: torch scope and ONNX rewrite pick each call's table by its site id.

The reference is independent of the code under test: the lead's `observe_activations` (site ids) plus
the canonical evaluator `Table.__call__` in numpy, applied call by call. Tables differ deliberately per
site, so a swap or a shared table would move the logits far beyond float tolerance.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from actiba.errors import InputError  # noqa: E402
from actiba.rewrite import onnx_rw, torch_rw  # noqa: E402
from actiba.table import Table  # noqa: E402
from actiba.tableset import TableSet  # noqa: E402

SEQ = 24


def _f(fn):
    return {"silu": lambda v: v / (1 + np.exp(-v)), "softplus": lambda v: np.logaddexp(0, v)}[fn]


def _chord(fn: str, lo: float, hi: float, n: int) -> Table:
    """Chords of f on n equal pieces of [lo, hi], extended linearly: a valid but visibly different table."""
    b = np.linspace(lo, hi, n + 1)
    y = _f(fn)(b)
    s = np.diff(y) / np.diff(b)
    c = y[:-1] - s * b[:-1]
    return Table(b, np.r_[s[0], s, s[-1]], np.r_[c[0], c, c[-1]], function=fn, params={"beta": 1.0})


def _tiny(kind: str, layers: int = 2):
    from transformers import Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM

    torch.manual_seed(1)
    if kind == "mamba2":
        cfg = Mamba2Config(vocab_size=258, hidden_size=32, num_hidden_layers=layers, state_size=16, expand=2,
                           head_dim=16, num_heads=4, n_groups=1, chunk_size=8, use_cache=False)
        return Mamba2ForCausalLM(cfg).eval()
    cfg = MambaConfig(vocab_size=258, hidden_size=32, num_hidden_layers=layers, state_size=8, expand=2,
                      use_cache=False)
    return MambaForCausalLM(cfg).eval()


def _observed_ids(model, ids) -> list[str]:
    seen: list[str] = []
    with torch.inference_mode(), torch_rw.observe_activations(model, lambda s, f, b, x: seen.append(s) or None,
                                                              functions=("silu", "softplus")):
        model(input_ids=ids)
    return seen


def _distinct_tables(site_ids: list[str]) -> dict[str, Table]:
    """One different table per site (segment count and range vary with the site's position)."""
    out = {}
    for i, sid in enumerate(site_ids):
        fn = sid.split(":")[1].split("#")[0]
        out[sid] = _chord(fn, -3.0 - i, 2.0 + 0.7 * i, 2 + (i % 4))
    return out


def _reference_logits(model, ids, tables: dict[str, Table]) -> np.ndarray:
    """Logits with each site's table applied by the canonical numpy evaluator (exact elsewhere)."""

    def on_call(site, fn, beta, x):
        t = tables.get(site)
        if t is None:
            return None
        return torch.from_numpy(t(x.detach().double().numpy())).to(x.dtype)

    with torch.inference_mode(), torch_rw.observe_activations(model, on_call):
        return model(input_ids=ids).logits.numpy()


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """kind -> (tiny 2-layer torch model, its exported ONNX graph, input ids); exported once per module."""
    from actiba.models.export import export_onnx

    cache: dict[str, tuple] = {}

    def get(kind: str) -> tuple:
        if kind not in cache:
            model = _tiny(kind)
            path = tmp_path_factory.mktemp("persite") / f"{kind}.onnx"
            export_onnx(model, path, seq_len=SEQ, verbose=False, check_seq_len=SEQ)
            ids = torch.randint(0, 256, (1, SEQ), generator=torch.Generator().manual_seed(3))
            cache[kind] = (model, onnx.load(str(path)), ids)
        return cache[kind]

    return get


@pytest.fixture(params=["mamba2", pytest.param("mamba", marks=pytest.mark.slow)])  # Mamba v1 export: 16 s
def exported(request, exports):
    """Both architectures (Mamba v1 folds its SiLUActivation wrapper into the mixer's site ids)."""
    return exports(request.param)


@pytest.fixture
def exported2(exports):
    return exports("mamba2")


def test_torch_and_onnx_apply_each_site_its_own_table(exported):
    model, graph, ids = exported
    site_ids = _observed_ids(model, ids)
    assert len(site_ids) == len(set(site_ids)) >= 4  # 2 layers x (>= 2 SiLU + 1 Softplus)
    tables = _distinct_tables(site_ids)
    ref = _reference_logits(model, ids, tables)
    exact = model(input_ids=ids).logits.detach().numpy()
    scale = float(np.abs(ref).max())

    with torch.inference_mode(), torch_rw.actiba_scope(model, TableSet(dict(tables))) as mode:
        got_torch = model(input_ids=ids).logits.numpy()
    assert mode.calls == len(site_ids)
    np.testing.assert_allclose(got_torch, ref, atol=2e-5 * scale, rtol=0)

    new, sites = onnx_rw.apply(graph, ["actiba"], tables=TableSet(dict(tables)))
    picked = {s.detail["site_id"]: s.detail["table"] for s in sites if s.ok}
    assert set(picked) == set(site_ids) and all(picked[k] is tables[k] for k in picked)
    got_ort = onnx_rw.run(new, {"input_ids": ids.numpy()})[0]
    np.testing.assert_allclose(got_ort, ref, atol=2e-5 * scale, rtol=0)

    # the test can fail: the tables move the logits, and swapping two SiLU sites' tables shows
    assert np.abs(ref - exact).max() > 1e-3 * scale
    silus = [s for s in site_ids if ":silu#" in s]
    swapped = dict(tables)
    swapped[silus[0]], swapped[silus[1]] = tables[silus[1]], tables[silus[0]]
    assert np.abs(_reference_logits(model, ids, swapped) - ref).max() > 1e-3 * scale


def test_onnx_site_ids_equal_torch_site_ids(exported):
    model, graph, ids = exported
    want = sorted(_observed_ids(model, ids))
    sites = onnx_rw.find_sites(graph, "actiba", {})
    have = sorted(s.detail["site_id"] for s in sites if s.detail["function"] in ("silu", "softplus"))
    assert have == want
    assert all(s.name == s.detail["root"].name for s in sites)  # Site.name stays the node name


def test_site_ids_agree_for_every_function(exported):
    """exp included: exp(A_log) is a weight transform the exporter folds, so torch does not number it.
    (Mamba v1's exp calls belong to its scan, so torch runs the exported scan form: `export_view`.)"""
    from actiba.models.export import export_view

    model, graph, ids = exported
    seen: list[str] = []
    with torch.inference_mode(), export_view(model) as view, \
            torch_rw.observe_activations(view, lambda s, f, b, x: seen.append(s) or None):
        view(input_ids=ids)
    sites = onnx_rw.find_sites(graph, "actiba", {})
    have = sorted(s.detail["site_id"] for s in sites)
    assert any(":exp#" in s for s in seen) and sorted(seen) == have


def test_globs_and_function_fallback(exported2):
    """A shared glob serves every site of its function; function keys fill in for uncovered sites."""
    model, graph, ids = exported2
    site_ids = _observed_ids(model, ids)
    sp, si = _chord("softplus", -6, 2, 3), _chord("silu", -4, 4, 3)
    first_silu = next(s for s in site_ids if ":silu#" in s)
    special = _chord("silu", -1, 1, 2)
    mixed = {first_silu: special, "*:softplus#*": sp, "silu": si}
    want = {s: (special if s == first_silu else sp if ":softplus#" in s else si) for s in site_ids}
    ref = _reference_logits(model, ids, want)
    scale = float(np.abs(ref).max())
    with torch.inference_mode(), torch_rw.actiba_scope(model, mixed):
        np.testing.assert_allclose(model(input_ids=ids).logits.numpy(), ref, atol=2e-5 * scale, rtol=0)
    new, sites = onnx_rw.apply(graph, ["actiba"], tables=mixed)
    np.testing.assert_allclose(onnx_rw.run(new, {"input_ids": ids.numpy()})[0], ref, atol=2e-5 * scale, rtol=0)


def test_calls_without_a_table_stay_exact_and_dry_run_names_them():
    model = _tiny("mamba2", layers=1)
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(0))
    sid = "backbone.layers.0.mixer:softplus#0"
    t = _chord("softplus", -5, 3, 3)
    ref = _reference_logits(model, ids, {sid: t})
    with torch.inference_mode(), torch_rw.actiba_scope(model, {sid: t}) as mode:
        got = model(input_ids=ids).logits.numpy()
    assert mode.calls == 1
    np.testing.assert_allclose(got, ref, atol=1e-5 * float(np.abs(ref).max()), rtol=0)
    sites = torch_rw.find_actiba_sites(model, {sid: t, "backbone.layers.0.mixer:silu#0": _chord("silu", -4, 4, 3)},
                                       ids)
    by_id = {s.detail["site_id"]: s for s in sites}
    assert by_id[sid].ok and "set key " + sid in by_id[sid].reason
    assert not by_id["backbone.layers.0.mixer.norm:silu#0"].ok  # no table in the set: listed, kept exact
    assert not any(":exp#" in k for k in by_id)  # functions the set has no table for are not listed


def test_unknown_site_key_is_an_error_where_all_sites_are_known(exported2):
    model, graph, ids = exported2
    bad = {"backbone.layers.7.mixer:softplus#0": _chord("softplus", -5, 3, 3)}
    with pytest.raises(InputError, match="match no activation site"):
        onnx_rw.find_sites(graph, "actiba", bad)
    with pytest.raises(InputError, match="match no activation site"):
        torch_rw.find_actiba_sites(model, bad, ids)
    with warnings.catch_warnings(record=True) as w:  # the scope cannot know before the forward: it warns
        warnings.simplefilter("always")
        with torch.inference_mode(), torch_rw.actiba_scope(model, bad):
            model(input_ids=ids)
    assert any("matched no activation call" in str(x.message) for x in w)


def test_set_from_another_model_is_refused():
    calibrate = pytest.importorskip("actiba.calibrate")
    model, other = _tiny("mamba2", layers=1), _tiny("mamba2", layers=2)
    ids = torch.randint(0, 256, (1, 16))
    ts = TableSet({"*:softplus#*": _chord("softplus", -5, 3, 3)}, model=calibrate.model_fingerprint(other))
    with pytest.raises(InputError, match="not this one"):
        with torch_rw.actiba_scope(model, ts):
            model(input_ids=ids)
    ts.model = calibrate.model_fingerprint(model)
    with torch.inference_mode(), torch_rw.actiba_scope(model, ts) as mode:
        model(input_ids=ids)
    assert mode.calls == 1


def test_openvino_refuses_per_site_keys_but_takes_shared_ones(exported2):
    pytest.importorskip("openvino")
    from actiba.evaluate.build import to_openvino
    from actiba.rewrite import openvino_rw

    _, graph, _ = exported2
    ov_model = to_openvino(graph)
    with pytest.raises(InputError, match="need the ONNX graph"):
        openvino_rw.find_sites(ov_model, "actiba", {"backbone.layers.0.mixer:softplus#0": _chord("softplus", -5, 3, 3)})
    sites = openvino_rw.find_sites(ov_model, "actiba", TableSet({"*:softplus#*": _chord("softplus", -5, 3, 3)}))
    assert sum(s.ok for s in sites) == 2 and all(s.detail["function"] == "softplus" for s in sites if s.ok)


def test_cli_act_set(exported2, tmp_path):
    from actiba.cli import main

    model, graph, ids = exported2
    site_ids = _observed_ids(model, ids)
    tables = _distinct_tables(site_ids)
    src, out, set_path = tmp_path / "m.onnx", tmp_path / "out.onnx", tmp_path / "set.json"
    onnx.save(graph, str(src))
    TableSet(dict(tables)).save(set_path)
    assert main(["rewrite", str(src), "--act-set", str(set_path), "--act-tolerance", "100", "-o", str(out)]) == 0
    ref = _reference_logits(model, ids, tables)
    got = onnx_rw.run(onnx.load(str(out)), {"input_ids": ids.numpy()})[0]
    np.testing.assert_allclose(got, ref, atol=2e-5 * float(np.abs(ref).max()), rtol=0)
    TableSet({"x.y:silu#0": tables[site_ids[0]]}).save(set_path)
    assert main(["rewrite", str(src), "--act-set", str(set_path), "-o", str(out)]) == 2


# --- configurations: calibrated specs, user table sets -------------------------------------------------------

def test_config_calibrated_specs_validate_and_describe(tmp_path):
    from actiba.evaluate import configs, tables

    c = configs.from_dict({"name": "c", "activations": {
        "silu": {"segments": 8, "calibrated": "per-site", "weighting": "density"},
        "softplus": {"segments": 4, "calibrated": "shared", "percentiles": [1, 99]}}})
    d = tables.describe_activations(c)
    assert d["silu"] == {"segments": 8, "table": "calibrated:per-site/density/p0.1-99.9"}
    assert d["softplus"] == {"segments": 4, "table": "calibrated:shared/density/p1-99"}  # the fitted default
    shared = configs.from_dict({"name": "c", "activations": {
        "silu": {"segments": 8, "calibrated": "shared", "weighting": "density"},
        "softplus": {"segments": 4, "calibrated": "shared", "percentiles": [1, 99]}}})
    assert shared.key() != c.key()
    with pytest.raises(InputError, match="need the model"):
        tables.tables_for(c)
    for spec in ({"segments": 8, "calibrated": "yes"}, {"segments": 8, "weighting": "range"},
                 {"table": "relu", "calibrated": "shared"}, {"segments": 8, "calibrated": "shared", "weighting": "l2"},
                 {"segments": 8, "calibrated": "shared", "percentiles": [99, 1]}, {"segments": 8, "nope": 1}):
        with pytest.raises(InputError):
            configs.from_dict({"name": "bad", "activations": {"softplus": spec}})
    full, quick = configs.default_sweep("mamba2", full=True), configs.default_sweep("mamba2", quick=True)
    cal = [x for x in full if any(s.get("calibrated") for s in x.activations.values())]
    assert len(cal) == 2 and {x.activations["silu"]["segments"] for x in cal} == {4, 8}
    assert all(s["calibrated"] == "shared" for x in cal for s in x.activations.values())  # per-site: --sweep
    assert not any(any(s.get("calibrated") for s in x.activations.values()) for x in quick)


def test_config_user_table_set(tmp_path):
    from actiba.evaluate import configs, tables

    sp, si = _chord("softplus", -5, 3, 3), _chord("silu", -4, 4, 5)
    path = tmp_path / "set.json"
    TableSet({"backbone.layers.0.mixer:softplus#0": sp, "*:silu#*": si}).save(path)
    c = configs.from_dict({"name": "s", "activations": {"softplus": {"table": str(path)}}})
    got = tables.tables_for(c)
    assert list(got) == ["backbone.layers.0.mixer:softplus#0"]  # only the spec's function
    assert got["backbone.layers.0.mixer:softplus#0"].breakpoints.tolist() == sp.breakpoints.tolist()
    assert tables.describe_activations(c)["softplus"] == {"segments": sp.segments, "table": f"set:{path}"}
    calibrate = pytest.importorskip("actiba.calibrate")
    from actiba.evaluate.build import load_model

    lm = load_model("random:tiny-mamba2")
    TableSet({"*:softplus#*": sp}, model=calibrate.model_fingerprint(_tiny("mamba2", 1))).save(path)
    with pytest.raises(InputError, match="not random:tiny-mamba2"):
        tables.tables_for(c, lm)


def test_calibrated_tables_for_config_end_to_end(tmp_path, monkeypatch):
    """Calibrated per-site / shared tables: keys are the model's site ids (or function globs), cached, and
    the ONNX build gives every site the table fitted for it."""
    pytest.importorskip("actiba.fitting.calibrated")
    from actiba.evaluate import build, configs, tables

    monkeypatch.setattr(tables, "_calibration_dir", lambda: tmp_path / "cal")
    monkeypatch.setattr(tables, "_MEMO", {})
    monkeypatch.setattr(tables, "CALIB_BYTES", 2048)  # 4 pieces of 2 windows: enough for a tiny model
    monkeypatch.setattr(tables, "CALIB_CHUNKS", 4)
    lm = build.load_model("random:tiny-mamba2")
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(0))
    spec = {"segments": 4, "calibrated": "per-site"}
    per_site = configs.from_dict({"name": "p", "activations": {"silu": dict(spec), "softplus": dict(spec)}})
    got = tables.tables_for(per_site, lm)
    assert sorted(got) == sorted(_observed_ids(lm.model, ids))
    assert len({tuple(t.breakpoints) for t in got.values()}) == len(got)  # fitted per site: all different
    cached = [p.name for p in (tmp_path / "cal").iterdir()]
    assert sum(n.endswith(".stats.json") for n in cached) == 1 and sum(n.endswith(".set.json") for n in cached) == 2
    shared = configs.from_dict({"name": "s", "activations": {"softplus": {"segments": 4, "calibrated": "shared"}}})
    assert list(tables.tables_for(shared, lm)) == ["*:softplus#*"]
    model, done = build.rewritten_onnx(lm, per_site, seq_len=16)
    assert done == {"actiba": len(got)}
    sites = onnx_rw.find_sites(model, "actiba", {})  # rewritten: no activation op is left to match
    assert not any(s.detail["function"] in ("silu", "softplus") for s in sites)
    base = build._onnx_base(lm, per_site, 16, "f32", None)
    picked = {s.detail["site_id"]: s.detail["table"] for s in onnx_rw.find_sites(base, "actiba", got) if s.ok}
    assert picked.keys() == got.keys() and all(picked[k] is got[k] for k in got)
