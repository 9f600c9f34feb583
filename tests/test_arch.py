"""The architecture registry against the installed transformers: every field of every entry is
checked on a tiny random model of that family, so a wrong path, class or config name fails here."""

import fnmatch
import importlib

import pytest

from actiba.errors import InputError
from actiba.models import arch

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _tiny(entry):
    cfg = transformers.AutoConfig.for_model(entry.model_type, **entry.tiny)
    torch.manual_seed(0)
    return cfg, transformers.AutoModelForCausalLM.from_config(cfg)


@pytest.fixture(scope="module", params=sorted(t for t, a in arch.ARCHITECTURES.items() if a.ssm != arch.NONE))
def built(request):  # the SSM families; tests/test_causal_lm.py checks the causal LMs without SSM
    entry = arch.ARCHITECTURES[request.param]
    cfg, model = _tiny(entry)
    return entry, cfg, model


def test_class_and_module(built):
    entry, cfg, model = built
    assert type(model).__name__ == entry.causal_lm
    mod = importlib.import_module(entry.hf_module)
    assert hasattr(mod, entry.mixer_class)
    if entry.ssm == arch.SSD:  # the chunk scan the SSD rewrites patch lives beside the mixer
        assert callable(getattr(mod, "segment_sum", None))


def test_mixer_paths_find_exactly_the_mixers(built):
    entry, cfg, model = built
    by_class = [p for p, m in model.named_modules() if type(m).__name__ == entry.mixer_class]
    assert by_class, "the tiny config builds no SSM mixer"
    assert [p for p, _ in entry.mixers(model)] == by_class
    # every glob is needed: each matches at least one mixer
    for glob in entry.mixer_paths:
        assert any(fnmatch.fnmatchcase(p, glob) for p in by_class), glob


def test_config_fields_are_what_the_mixer_reads(built):
    entry, cfg, model = built
    _, mixer = entry.mixers(model)[0]
    if entry.ssm == arch.SSD:
        assert entry.chunk_size(cfg) == mixer.chunk_size
        assert entry.n_groups(cfg) == mixer.n_groups
    else:
        assert entry.chunk_size_field is None and entry.n_groups_field is None
    for norm in entry.scan_norms:
        assert isinstance(getattr(mixer, norm), torch.nn.Module), norm


def test_block_paths_exist(built):
    entry, cfg, model = built
    names = [p for p, _ in model.named_modules()]
    for glob in (*entry.attention_paths, *entry.mlp_paths, *entry.moe_paths):
        assert any(fnmatch.fnmatchcase(p, glob) for p in names), glob
    if entry.logit_scale:
        attr, op = entry.logit_scale
        assert isinstance(getattr(cfg, attr), (int, float)) and op in ("mul", "div")


def test_require_refuses_with_the_reason(monkeypatch):
    import dataclasses

    cfg = transformers.AutoConfig.for_model("bamba", **arch.ARCHITECTURES["bamba"].tiny)
    assert arch.require(cfg, "m").model_type == "bamba"
    monkeypatch.setitem(arch.ARCHITECTURES, "bamba",
                        dataclasses.replace(arch.ARCHITECTURES["bamba"], missing=("the flux capacitor",)))
    with pytest.raises(InputError, match="BambaForCausalLM.*lacks the flux capacitor.*Supported: mamba, mamba2, "
                                         "falcon_mamba, jamba, granitemoehybrid"):
        arch.require(cfg, "m")
    with pytest.raises(InputError, match="type .opt.; actiba supports mamba, mamba2, falcon_mamba"):
        arch.require(transformers.AutoConfig.for_model("opt"), "m")
    assert arch.require(transformers.AutoConfig.for_model("mamba2"), "m").ssm == arch.SSD
    with pytest.raises(InputError, match="known: mamba, mamba2"):
        arch.get("opt")


@pytest.mark.slow
def test_falcon_mamba_folder_end_to_end(tmp_path, capsys):
    """A saved FalconMamba folder runs through `actiba eval`: the OpenVINO graph (compact scan with
    FalconMamba's B/C/dt norms) scores what torch scores."""
    import re

    from actiba.cli import main

    entry = arch.ARCHITECTURES["falcon_mamba"]
    cfg = transformers.AutoConfig.for_model("falcon_mamba", **dict(entry.tiny, vocab_size=258))
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp_path / "fm")
    rc = main(["eval", str(tmp_path / "fm"), "--seq-len", "64", "--eval-bytes", "1024", "--repeats", "5",
               "--backend", "torch"])
    out = capsys.readouterr().out
    assert rc == 0, out
    ov, pt = map(float, re.search(r"bits/byte ([\d.]+) ±[\d.]+ torch ([\d.]+)", out).groups())
    assert ov == pytest.approx(pt, rel=1e-4)
