"""Evaluator: Pareto flags and choice, report schema, resume, failing rows, latency stats, CLI exit codes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from actiba.evaluate.pareto import choose, dominates, mark_pareto, pareto_flags, parse_loss
from actiba.evaluate.row import Row


def _typed(rows: list[dict]) -> list[Row]:
    return [Row.from_dict(r) for r in rows]

# --- Pareto on hand-constructed points -------------------------------------------------------------------


def test_pareto_flags_basic_ties_and_duplicates():
    pts = [(0.0, 1.0),    # baseline
           (0.0, 1.5),    # dominates the baseline
           (0.01, 2.0),   # front
           (0.01, 2.0),   # exact duplicate: also front (neither dominates the other)
           (0.02, 2.0),   # same speed, more loss: dominated
           (0.05, 1.2),   # dominated
           (0.03, 3.0),   # front
           None]          # failed
    assert pareto_flags(pts) == [False, True, True, True, False, False, True, False]
    assert not dominates((0.01, 2.0), (0.01, 2.0))
    assert dominates((0.0, 2.0), (0.0, 1.0))


def test_pareto_flags_all_equal_and_empty():
    assert pareto_flags([(0.1, 1.0)] * 3) == [True, True, True]
    assert pareto_flags([]) == []


def _rows():
    return _typed([{"name": "baseline", "metric_delta_rel": 0.0, "speedup": 1.0},
            {"name": "a", "metric_delta_rel": 0.004, "speedup": 1.3},
            {"name": "b", "metric_delta_rel": 0.02, "speedup": 2.0},
            {"name": "c", "metric_delta_rel": 0.009, "speedup": 1.3},
            {"name": "slow", "metric_delta_rel": -0.001, "speedup": 0.8},
            {"name": "bad", "metric_delta_rel": None, "speedup": None, "error": "boom"}])


def test_choose_within_budget_never_slower():
    rows = _rows()
    mark_pareto(rows)
    assert [r.name for r in rows if r.pareto] == ["baseline", "a", "b", "slow"]
    assert choose(rows, 0.01).name == "a"  # tie on speed-up: the smaller loss
    assert choose(rows, 0.05).name == "b"
    assert choose(rows, 0.0).name == "baseline"  # 'slow' has no loss but is slower: never chosen
    assert parse_loss("1%") == pytest.approx(0.01) and parse_loss("0.02") == 0.02


def test_choose_ignores_speedups_inside_the_timing_noise():
    rows = _typed([{"name": "baseline", "metric_delta_rel": 0.0, "speedup": 1.0},
            {"name": "noisy", "metric_delta_rel": 0.0, "speedup": 1.03,
             "latency_ratio": {"median": 1 / 1.03, "halfwidth_rel": 0.05}},
            {"name": "tight", "metric_delta_rel": 0.0, "speedup": 1.02,
             "latency_ratio": {"median": 1 / 1.02, "halfwidth_rel": 0.005}}])
    assert choose(rows, 0.01).name == "tight"
    rows[2].latency_ratio.halfwidth_rel = 0.03
    assert choose(rows, 0.01).name == "baseline"


def test_choose_needs_more_than_the_null_control():
    """A speed-up inside what two compiles of the baseline differ by is not recommended."""
    from actiba.evaluate.pareto import null_noise, surely_faster

    rows = _typed([{"name": "baseline", "metric_delta_rel": 0.0, "speedup": 1.0},
            {"name": "small", "metric_delta_rel": 0.0, "speedup": 1.03,
             "latency_ratio": {"median": 1 / 1.03, "halfwidth_rel": 0.005}},
            {"name": "big", "metric_delta_rel": 0.002, "speedup": 1.6,
             "latency_ratio": {"median": 1 / 1.6, "halfwidth_rel": 0.02}}])
    assert choose(rows[:2], 0.01).name == "small"
    floor = null_noise({"speedup": 1.02, "halfwidth_rel": 0.01})
    assert floor == pytest.approx(0.03)
    assert null_noise({"speedup": 0.98, "halfwidth_rel": 0.01}) == pytest.approx(0.03)  # either direction
    assert null_noise(None) == 0.0 and null_noise({"error": "x"}) == 0.0
    assert choose(rows[:2], 0.01, noise=floor).name == "baseline"
    assert choose(rows, 0.01, noise=floor).name == "big"
    assert not surely_faster(rows[1], floor) and surely_faster(rows[1], 0.0)


def test_parse_loss_bad():
    from actiba.errors import InputError

    with pytest.raises(InputError):
        parse_loss("lots")


# --- latency stats ------------------------------------------------------------------------------------

def test_latency_stats_and_tiny_model_timing():
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    from actiba.evaluate import latency

    s = latency.stats([1.0, 2.0, 3.0, 4.0, 100.0], 7)
    assert s.median == 3.0 and s.p10 < s.median < s.p90 and s.seq_len == 7 and s.repeats == 5
    x = ops.parameter([1, 16], np.int64, name="ids")
    y = ops.multiply(ops.convert(x, "f32"), ops.constant(np.float32(2.0)))
    model = ov.Model([y], [x])
    compiled, notes = latency.compile_model(model, "CPU", "f32", threads=1)
    assert notes["precision_hint"] == "f32" and notes["precision_used"] == "f32"
    st = latency.time_compiled(compiled, latency.random_ids(16, 258), warmup=1, repeats=5)
    assert st.repeats == 5 and 0 < st.p10 <= st.median <= st.p90
    compiled_p, _ = latency.compile_model(model, "CPU", "f32", threads=1, profile=True)
    prof = latency.profile_by_type(compiled_p, latency.random_ids(16, 258), runs=1)
    assert prof and all(v >= 0 for v in prof.values())


def test_unknown_device_and_precision():
    from actiba.errors import InputError
    from actiba.evaluate import latency

    with pytest.raises(InputError, match="unknown device"):
        latency.check_device("TPU9")
    assert "f32" in latency.supported_precisions("CPU")


# --- configs -----------------------------------------------------------------------------------------

def test_config_parsing(tmp_path):
    from actiba.errors import InputError
    from actiba.evaluate import configs

    p = tmp_path / "c.json"
    p.write_text(json.dumps({"configs": [{"name": "x", "cumba": True, "activations": {"silu": 8}},
                                         {"name": "y", "activations": {"softplus": {"table": "relu"}}}]}))
    got = configs.read_file(p)
    assert got[0].activations == {"silu": {"segments": 8}} and got[1].activations["softplus"]["table"] == "relu"
    assert got[0].key() != got[1].key()
    for bad in ({"name": "z", "nope": 1}, {"name": "z", "activations": {"tanh": 8}},
                {"name": "z", "activations": {"silu": {"table": "relu"}}}, {"cumba": True}):
        with pytest.raises(InputError):
            configs.from_dict(bad)
    assert len(configs.default_sweep("mamba2", full=True)) > len(configs.default_sweep("mamba", full=True)) > 10


@pytest.mark.slow  # two SSD exports (~10 s); chunk lengths are checked at torch level in test_rewrite_torch
def test_ssd_chunk_config_parses_and_exports_exactly():
    """`ssd_chunk`: validated, in the default Mamba-2 sweep relative to the model's chunk, and the exported
    graph computes the same logits as the baseline graph (onnxruntime), with a different chunking."""
    import onnx

    from actiba.errors import InputError
    from actiba.evaluate import configs
    from actiba.evaluate.build import load_model, rewritten_onnx
    from actiba.rewrite.onnx_rw import run

    c = configs.from_dict({"name": "q", "ssd_d1": True, "ssd_d2": True, "ssd_chunk": 8})
    assert c.ssd_chunk == 8 and c.key() != configs.from_dict({"name": "q", "ssd_d1": True, "ssd_d2": True}).key()
    for bad in (0, -4, 2.5, True, "8"):
        with pytest.raises(InputError, match="ssd_chunk"):
            configs.from_dict({"name": "q", "ssd_chunk": bad})
    names = [x.name for x in configs.default_sweep("mamba2", chunk_size=256, full=True)]
    assert "ssd-d1+d2+chunk128" in names and "ssd-d1+d2+chunk64" in names
    assert not any("chunk" in x.name for x in configs.default_sweep("mamba2", chunk_size=16))
    assert not any(x.ssd_chunk for x in configs.default_sweep("mamba"))

    lm = load_model("random:tiny-mamba2")  # chunk 16; 40 tokens
    base, _ = rewritten_onnx(lm, configs.baseline(), 40)
    for q in (8, 16):
        new, _ = rewritten_onnx(lm, configs.Config("q", ssd_d1=True, ssd_d2=True, ssd_chunk=q), 40)
        ids = np.random.default_rng(q).integers(0, 256, (1, 40)).astype(np.int64)
        np.testing.assert_allclose(run(new, {"input_ids": ids})[0], run(base, {"input_ids": ids})[0], atol=1e-4)
        shapes = {tuple(int(d.dim_value) for d in v.type.tensor_type.shape.dim)
                  for v in onnx.shape_inference.infer_shapes(new).graph.value_info}
        assert any(len(t) == 5 and t[1:3] == (-(-40 // q), q) for t in shapes)  # (b, chunks, q, ...)
    with pytest.raises(InputError, match="Mamba-2 only"):
        rewritten_onnx(load_model("random:tiny-mamba"), configs.Config("q", ssd_chunk=8), 40)


# --- a sweep on a tiny random model: schema, resume, failing row ------------------------------------------

SCHEMA_ROW = {"name", "cumba", "reduba", "activations", "metric", "metric_delta_rel", "latency_ms", "speedup",
              "pareto"}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from actiba.evaluate.build import load_model
    from actiba.evaluate.configs import Config
    from actiba.evaluate.sweep import Settings, run_one

    out = tmp_path_factory.mktemp("sweep")
    lm = load_model("random:tiny-mamba2")
    configs = [Config("baseline"), Config("softplus-relu", activations={"softplus": {"table": "relu"}}),
               Config("broken", ssd_d1=True, cumba=True, sites={"cumba": ["no-such-site"]})]
    data = bytes(range(32, 127)) * 4
    settings = Settings(seq_len=32, eval_bytes=len(data), warmup=1, repeats=3)
    run = run_one(lm, configs, settings, "f32", out, data=data)
    return lm, configs, settings, out, data, run


def test_sweep_rows_and_failing_config(tiny_run):
    _, _, _, _, _, run = tiny_run
    names = [r.name for r in run["configs"]]
    assert names == ["baseline", "softplus-relu", "broken"]
    base, relu, broken = (r.to_dict() for r in run["configs"])
    assert base["metric"] > 0 and base["metric_delta_rel"] == 0.0 and base["speedup"] == 1.0
    assert base["profile_ms"]
    assert relu["error"] is None and relu["metric"] != base["metric"] and relu["sites_rewritten"]["actiba"] >= 1
    assert broken["error"] and broken["metric"] is None and broken["pareto"] is False


def test_sweep_resumes_from_cache(tiny_run):
    from actiba.evaluate.sweep import run_one

    lm, configs, settings, out, data, run = tiny_run
    again = run_one(lm, configs, settings, "f32", out, data=data)
    assert again["resumed"] == 2  # the two finished rows; the failed one is retried
    assert [r.metric for r in again["configs"][:2]] == [r.metric for r in run["configs"][:2]]


def test_report_files_match_schema(tiny_run, tmp_path):
    from actiba.evaluate.report import CSV_COLUMNS, write_report

    run = tiny_run[-1]
    write_report(tmp_path, [run], {"max_loss": 0.01})
    doc = json.loads((tmp_path / "results.json").read_text())
    for k in ("model", "device", "precision", "metric", "baseline", "configs"):
        assert k in doc
    assert doc["metric"] in ("bits_per_byte", "perplexity") and doc["device"] == "CPU"
    for row in doc["configs"]:
        assert SCHEMA_ROW <= set(row)
        if not row.get("error"):
            assert set(row["latency_ms"]) >= {"median", "p10", "p90", "seq_len"}
            assert isinstance(row["metric"], float) and isinstance(row["speedup"], float)
    relu = next(r for r in doc["configs"] if r["name"] == "softplus-relu")
    assert relu["activations"] == {"softplus": {"segments": 2, "table": "relu"}}
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 3
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    html = (tmp_path / "report.html").read_text()
    for word in ("Machine", "openvino", "precision", "RANDOM weights", "pareto.png"):
        assert word in html


def test_rolling_windows_match_lm_eval():
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    from actiba.evaluate.perplexity import rolling_windows

    toks = list(range(1, 40))
    for L in (1, 5, 13, 39, 50):
        ours = rolling_windows(toks, 0, L)
        theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(toks, 0, L, 1)]
        assert len(ours) == len(theirs)
        for (inp, tgt), (ctx, cont) in zip(ours, theirs, strict=True):
            assert tgt == cont and inp == (ctx + cont)[-(L + 1):][:-1]


# --- CLI: bad input is one line and exit 2 -------------------------------------------------------------

@pytest.mark.parametrize("argv, needle", [
    (["eval", "no/such/folder/x"], "does not exist"),
    (["eval", "random:tiny-mamba2", "--device", "TPU9"], "unknown device"),
    (["eval", "random:tiny-mamba2", "--task", "nope"], "unknown task"),
    (["pareto", "random:tiny-mamba2", "--out", "/proc/actiba-nope"], "cannot write"),
    (["pareto", "--out", "x", "--max-loss", "lots"], "max-loss"),
    (["pareto", "--out", "x", "--emulate", "fp8"], "--emulate: unknown precision"),
])
def test_cli_bad_input_exit_2(argv, needle, capsys):
    from actiba.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_cli_eval_failing_config_exit_2(tmp_path, capsys):
    from actiba.cli import main

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"name": "d1-on-mamba", "ssd_d1": True}))
    assert main(["eval", "random:tiny-mamba", "--config", str(cfg), "--seq-len", "16", "--repeats", "2"]) == 2
    captured = capsys.readouterr()
    assert "d1-on-mamba" in captured.err and "Mamba-2 only" in captured.err


@pytest.mark.slow
def test_native_bpb_equals_lm_eval():
    from actiba.evaluate.build import load_model
    from actiba.evaluate.lm_eval_model import run_task
    from actiba.evaluate.perplexity import rolling_bits_per_byte, torch_logits_fn
    from actiba.models.tokenizer import build_tokenizer

    lm = load_model("random:tiny-mamba2")
    docs = [b"To-morrow, and to-morrow, and to-morrow,\nCreeps in this petty pace from day to day.\n" * 3,
            b"We are such stuff as dreams are made on.\n" * 4]
    got = run_task(lm.model, "actiba_heldout", None, seq_len=64, docs=docs, tokenizer=build_tokenizer())
    native = rolling_bits_per_byte(torch_logits_fn(lm.model), docs, 64)
    assert got["bits_per_byte"] == pytest.approx(native, rel=1e-5)
    assert {"word_perplexity", "byte_perplexity"} <= set(got)


def test_speedup_uses_the_interleaved_baseline_when_present():
    """A row timed next to the baseline is compared with that window's baseline, not the baseline row's
    (which was timed at another moment and another load)."""
    from actiba.evaluate.row import finish_run

    def lat(ms):
        return {"median": ms, "p10": ms, "p90": ms, "seq_len": 8}

    rows = _typed([{"name": "baseline", "metric": 2.0, "latency_ms": lat(10.0), "error": None},
                   {"name": "paired", "metric": 2.0, "latency_ms": lat(4.0), "baseline_latency_ms": lat(6.0),
                    "error": None},
                   {"name": "unpaired", "metric": 2.0, "latency_ms": lat(5.0), "error": None}])
    finish_run(rows)
    assert rows[1].speedup == 6.0 / 4.0
    assert rows[2].speedup == 10.0 / 5.0


def test_time_paired_alternates_and_counts():
    ov = pytest.importorskip("openvino")
    import numpy as np

    from actiba.evaluate import latency

    p = ov.opset13.parameter([1, 8], ov.Type.f32)
    compiled = ov.Core().compile_model(ov.Model([ov.opset13.relu(p)], [p]), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    a, b = latency.time_paired(compiled, compiled, np.zeros((1, 8), np.float32), warmup=1, repeats=6)
    assert a.repeats == b.repeats == 6 and a.median > 0 and b.median > 0


def test_cli_eval_states_the_timed_prefill_output(tmp_path, capsys):
    """`actiba eval` says which prefill output it timed, and --prefill-logits changes the timed graph."""
    from actiba.cli import main

    lines = {}
    for mode in ("last", "all"):
        out = tmp_path / f"{mode}.json"
        assert main(["eval", "random:tiny-mamba2", "--seq-len", "16", "--repeats", "2",
                     "--prefill-logits", mode, "--json", str(out)]) == 0
        lines[mode] = capsys.readouterr().out
        doc = json.loads(out.read_text())
        assert doc["prefill_logits"] == mode and doc["settings"]["prefill_logits"] == mode
        assert f"{mode}-position logits timed" in lines[mode]
        base = doc["configs"][0]
        lines[mode + "-sha"] = base["graph_sha"]
    assert lines["last-sha"] != lines["all-sha"]


@pytest.mark.parametrize("text, want", [("bf16", ["bf16"]), ("none", []), ("", []), ("f16, bf16", ["f16", "bf16"]),
                                        ("bf16,bf16", ["bf16"])])
def test_pareto_emulate_option(text, want):
    from actiba.cli.pareto_cmd import _emulate

    assert _emulate(text) == want


def test_cli_pareto_bad_model_leaves_no_output_folder(tmp_path, capsys):
    from actiba.cli import main

    out = tmp_path / "report"
    assert main(["pareto", "no/such/model", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()
