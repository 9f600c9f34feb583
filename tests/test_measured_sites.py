"""Per-site choice by measurement (`sites.measured_sites`): which site classes are kept, and the row."""

from __future__ import annotations

import types

import pytest

pytest.importorskip("torch")
pytest.importorskip("openvino")

from actiba.evaluate import sites  # noqa: E402
from actiba.evaluate.build import load_model, rewritten_onnx  # noqa: E402
from actiba.evaluate.configs import Config, from_dict  # noqa: E402
from actiba.rewrite import onnx_rw  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return load_model("random:tiny-mamba2")


def _fake_timing(monkeypatch, ratio_for: dict[str, float], halfwidth: float = 0.01):
    """Timings decided by which rewrite built the graph: ratio < 1 is faster than the baseline."""
    last = {}
    real_apply = onnx_rw.apply

    def apply(model, rewrites, *a, **k):
        last["rw"] = list(rewrites)[0]
        return real_apply(model, rewrites, *a, **k)

    def timing(compiled, reference, *a, **k):
        last["reference"] = reference
        r = ratio_for[last["rw"]]
        return types.SimpleNamespace(ratio_median=r, ratio_halfwidth=halfwidth,
                                     ratio_dict=lambda: {"median": r, "halfwidth_rel": halfwidth, "pairs": 4})

    monkeypatch.setattr(onnx_rw, "apply", apply)
    monkeypatch.setattr(sites.latency, "time_paired_adaptive", timing)
    return last


def _classes(lm, rw):
    base = rewritten_onnx(lm, Config("b"), 32)[0]
    return {(str(s.axis), str(s.shape)) for s in onnx_rw.find_sites(base, rw) if s.ok}


def test_keeps_only_classes_measured_faster(tiny, monkeypatch, tmp_path):
    _fake_timing(monkeypatch, {"cumba": 0.8, "reduba": 1.2})
    cfg = Config("m", cumba=True, reduba=True, measure_sites=True)
    chosen, records = sites.measured_sites(tiny, cfg, sites.Settings(seq_len=32), "f32", None, reference=object())
    assert {(r["axis"], r["shape"]) for r in records if r["rewrite"] == "cumba"} == _classes(tiny, "cumba")
    assert {(r["axis"], r["shape"]) for r in records if r["rewrite"] == "reduba"} == _classes(tiny, "reduba")
    assert all(r["kept"] == (r["rewrite"] == "cumba") for r in records)
    assert chosen.cumba and not chosen.reduba and not chosen.measure_sites
    n_cumba = sum(r["sites"] for r in records if r["rewrite"] == "cumba")
    assert len(chosen.sites["cumba"]) == n_cumba
    model, done = rewritten_onnx(tiny, chosen, 32)  # the explicit site list selects exactly those
    assert done == {"cumba": n_cumba}


def test_a_speedup_inside_the_noise_is_not_kept(tiny, monkeypatch):
    _fake_timing(monkeypatch, {"cumba": 0.99, "reduba": 0.99}, halfwidth=0.05)
    cfg = Config("m", cumba=True, reduba=True, measure_sites=True)
    chosen, records = sites.measured_sites(tiny, cfg, sites.Settings(seq_len=32), "f32", None, reference=object())
    assert records and not any(r["kept"] for r in records)
    assert chosen.is_baseline  # nothing kept: the configuration is the baseline graph


def test_classes_on_top_of_ssd_are_timed_against_the_ssd_graph(tiny, monkeypatch):
    """With SSD rewrites, a class's gain must be measured against the SSD graph, not the plain baseline
    (else every class inherits the SSD speed-up and is kept)."""
    last = _fake_timing(monkeypatch, {"cumba": 0.8, "reduba": 0.8})
    baseline = object()
    cfg = Config("m", ssd_d1=True, ssd_d2=True, cumba=True, reduba=True, measure_sites=True)
    sites.measured_sites(tiny, cfg, sites.Settings(seq_len=32), "f32", None, reference=baseline)
    assert last["reference"] is not baseline
    last = _fake_timing(monkeypatch, {"cumba": 0.8, "reduba": 0.8})
    sites.measured_sites(tiny, Config("m", cumba=True, measure_sites=True), sites.Settings(seq_len=32), "f32",
                         None, reference=baseline)
    assert last["reference"] is baseline


def test_config_key_validated():
    assert from_dict({"name": "m", "cumba": True, "measure_sites": True}).measure_sites
    from actiba.errors import InputError

    with pytest.raises(InputError):
        from_dict({"name": "m", "measure_sites": "yes"})


def test_a_class_already_timed_reuses_that_timing(tiny, monkeypatch):
    """A class whose graph is byte-identical to one the run already timed against the same reference (the
    `cumba` row, when every CumBA site is one class, as on the embedded Mamba) takes that paired ratio
    instead of compiling and timing it again; every other class is timed; against an SSD graph nothing is
    reused (the row timings are against the baseline)."""
    from actiba.evaluate.measure import graph_sha

    timings = []

    def timing(compiled, reference, *a, **k):
        timings.append(1)
        return types.SimpleNamespace(ratio_median=1.25, ratio_halfwidth=0.01,
                                     ratio_dict=lambda: {"median": 1.25, "halfwidth_rel": 0.01, "pairs": 4})

    monkeypatch.setattr(sites.latency, "time_paired_adaptive", timing)
    settings = sites.Settings(seq_len=32)
    base = rewritten_onnx(tiny, Config("b"), 32, logits=settings.prefill_logits)[0]  # the timed graph's mode
    by_class: dict = {}
    for st in onnx_rw.find_sites(base, "cumba"):
        if st.ok:
            by_class.setdefault((str(st.axis), str(st.shape)), []).append(st.name)
    assert len(by_class) >= 2
    first = next(iter(by_class))
    known = {graph_sha(onnx_rw.apply(base, ["cumba"], sites=by_class[first])[0]):
             {"median": 0.8, "halfwidth_rel": 0.01, "pairs": 9}}
    asked = []

    def timed(model):
        asked.append(1)
        return known.get(graph_sha(model))

    cfg = Config("m", cumba=True, measure_sites=True)
    chosen, records = sites.measured_sites(tiny, cfg, settings, "f32", None, reference=object(), timed=timed)
    assert len(asked) == len(by_class) == len(records)
    reused = [r for r in records if r.get("reused")]
    assert [(r["axis"], r["shape"]) for r in reused] == [first]
    assert reused[0]["latency_ratio"]["pairs"] == 9 and reused[0]["kept"]  # 1/0.8 = 1.25x: kept
    assert len(timings) == len(by_class) - 1  # the others were timed (at 1/1.25: slower, dropped)
    assert chosen.cumba and len(chosen.sites["cumba"]) == len(by_class[first])
    ssd_cfg = Config("m", cumba=True, ssd_d2=True, measure_sites=True)
    monkeypatch.setattr(sites.latency, "compile_model", lambda *a, **k: (object(), {}))
    asked.clear()
    sites.measured_sites(tiny, ssd_cfg, sites.Settings(seq_len=32), "f32", None, reference=object(), timed=timed)
    assert not asked
