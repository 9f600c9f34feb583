"""The typed sweep row: its JSON is the report schema, and every committed row reads back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actiba.evaluate.row import Ratio, Row, Timing, finish_run, run_as_json

RESULTS = sorted((Path(__file__).parents[1] / "eval" / "results").rglob("results.json"))


def _rows(doc: dict) -> list[dict]:
    out = []
    for run in doc.get("runs") or [doc]:
        out.extend(run["configs"])
        if run.get("baseline"):
            out.append(run["baseline"])
    return out


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: str(p.parent.name))
def test_committed_rows_round_trip_key_for_key(path):
    """Every key comes back with its value (nested timings included); rows written before a field existed
    gain only that field's empty default (no rewrites list, no chunk, no paired interval)."""
    rows = _rows(json.loads(path.read_text()))
    assert rows
    for d in rows:
        back = Row.from_dict(d).to_dict()
        assert {k: back[k] for k in d} == d
        assert set(back) - set(d) <= {"rewrites", "ssd_chunk", "metric_delta_halfwidth_rel"}
        assert all(back[k] in ([], None) for k in set(back) - set(d))


def test_rows_the_current_sweep_wrote_round_trip_exactly():
    doc = json.loads((Path(__file__).parents[1] / "eval/results/pareto_cpu/results.json").read_text())
    for d in _rows(doc):
        assert Row.from_dict(d).to_dict() == d


def test_typed_fields_and_unknown_keys():
    d = {"name": "x", "metric": 2.0, "error": None, "latency_ms": {"median": 3.0, "p10": 2.0, "p90": 4.0,
                                                                    "seq_len": 64, "repeats": 5},
         "latency_ratio": {"median": 0.5, "halfwidth_rel": float("inf"), "pairs": 6}, "from_the_future": [1]}
    r = Row.from_dict(d)
    assert isinstance(r.latency_ms, Timing) and r.latency_ms.repeats == 5
    assert isinstance(r.latency_ratio, Ratio) and r.latency_ratio.halfwidth == 0.0  # not finite: says nothing
    assert r.extra == {"from_the_future": [1]}
    out = r.to_dict()
    assert out["from_the_future"] == [1] and "stopped_early" not in out["latency_ratio"]
    assert "metric_delta_rel" not in out  # not finished yet
    assert {"name", "metric", "latency_ms", "error", "activations"} <= set(out)


def test_finished_rows_always_say_their_relative_fields():
    rows = [Row("baseline", metric=2.0, metric_windows=[1.0, 2.0, 3.0], latency_ms=Timing(10.0)),
            Row("t", metric=2.2, metric_windows=[1.1, 2.2, 3.3], latency_ms=Timing(5.0),
                latency_ratio=Ratio(0.4, 0.01, 6)),
            Row("bad", error="E: boom")]
    base = finish_run(rows)
    assert base is rows[0] and rows[0].speedup == 1.0 and rows[1].speedup == pytest.approx(2.5)
    assert rows[1].metric_delta_rel == pytest.approx(0.1) and rows[2].pareto is False
    bad = rows[2].to_dict()
    assert bad["speedup"] is None and bad["pareto"] is False and "metric_delta_rel" in bad
    report = run_as_json({"baseline": base, "configs": rows}, cache=False)
    assert all("metric_windows" not in r for r in report["configs"])
    assert run_as_json({"baseline": base, "configs": rows})["configs"][1]["metric_windows"] == [1.1, 2.2, 3.3]
