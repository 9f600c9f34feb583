"""The report at a glance: every run's choice on top, a grid of panels, symlog loss, intervals shown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from actiba.evaluate.report import write_report
from actiba.evaluate.report_plot import _grid
from actiba.evaluate.report_text import delta_text, speedup_text
from actiba.evaluate.row import Row


def _run(model: str, precision: str, choice: str | None, usable: bool = True) -> dict:
    rng = np.random.default_rng(len(model) + len(precision))
    base_w = list(rng.uniform(300, 500, 16))
    rows = []
    for i, (name, loss, speed) in enumerate((("baseline", 0.0, 1.0), ("fast", 1e-8, 1.5), ("lossy", 0.05, 1.6))):
        rows.append(Row.from_dict({"name": name, "metric": 2.3 * (1 + loss), "metric_delta_rel": loss, "speedup": speed,
                     "metric_delta_halfwidth_rel": 1e-6 if i < 2 else 0.004, "pareto": i > 0, "error": None,
                     "latency_ms": {"median": 20.0 / speed, "p10": 19.0, "p90": 21.0, "seq_len": 64},
                     "latency_ratio": {"median": 1 / speed, "halfwidth_rel": 0.02, "pairs": 6} if i else None,
                     "metric_windows": base_w}))
    return {"model": model, "device": "CPU", "precision": precision, "metric": "bits_per_byte",
            "baseline": rows[0], "configs": rows, "settings": {"seq_len": 64},
            "null_control": {"speedup": 1.0, "halfwidth_rel": 0.01, "usable": usable},
            "choice": choice or "no recommendation: this run's latency is not usable", "choice_name": choice}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    runs = [_run("embedded:mamba2", "f32", "fast"), _run("embedded:mamba2", "bf16", "fast"),
            _run("embedded:mamba", "f32", "baseline"), _run("embedded:mamba", "bf16", None, usable=False)]
    write_report(out, runs, {"max_loss": 0.01})
    return out, runs


def test_head_states_every_runs_choice_before_the_plot(report):
    out, runs = report
    html = (out / "report.html").read_text()
    head = html[:html.index("pareto.png")]
    for run in runs:
        assert f"{run['model']} · CPU {run['precision']}" in head
    assert head.count("<li>") == len(runs) and "latency is not usable" in head


def test_grid_not_one_wide_row(report):
    from matplotlib.image import imread

    out, _ = report
    h, w = imread(out / "pareto.png").shape[:2]
    assert w / h < 2.0  # four panels as 2 x 2 (one row of four was 3080 x 528)
    assert _grid(1) == (1, 1) and _grid(2) == (1, 2) and _grid(3) == (2, 2) and _grid(4) == (2, 2)


def test_intervals_in_the_table_and_no_per_window_data_in_results(report):
    out, _ = report
    doc = json.loads((out / "results.json").read_text())
    assert all("metric_windows" not in r for run in doc["runs"] for r in run["configs"])
    assert doc["runs"][0]["configs"][2]["metric_delta_halfwidth_rel"] == 0.004
    html = (out / "report.html").read_text()
    assert "+5.000% ±0.400%" in html and "1.5× ±2.0%" in html
    assert delta_text(Row("r", metric_delta_rel=1e-8, metric_delta_halfwidth_rel=1e-6)) == "+0.000% ±<0.0001%"
    assert speedup_text(Row("r", speedup=1.0)) == "1×"


def test_plot_uses_symlog_loss_and_error_bars(monkeypatch, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    seen = {"yscale": [], "errorbar": 0}
    real_scale, real_err = Axes.set_yscale, Axes.errorbar

    def set_yscale(self, value, **kw):
        seen["yscale"].append(value)
        return real_scale(self, value, **kw)

    def errorbar(self, *a, **kw):
        assert kw.get("xerr") is not None and kw.get("yerr") is not None
        seen["errorbar"] += 1
        return real_err(self, *a, **kw)

    monkeypatch.setattr(Axes, "set_yscale", set_yscale)
    monkeypatch.setattr(Axes, "errorbar", errorbar)
    write_report(tmp_path, [_run("m", "f32", "fast")])
    assert seen["yscale"] == ["symlog"] and seen["errorbar"] >= 1
