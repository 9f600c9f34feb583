"""`actiba show` plotting choices: range when no domain is stored, rugs for many breakpoints, log-y."""

from __future__ import annotations

import numpy as np
import pytest

from actiba import functions
from actiba.cli.show_cmd import MAX_BREAK_LINES, plot, plot_range
from actiba.table import Table


def interp_table(name: str, lo: float, hi: float, n: int, metric: str = "max-abs") -> Table:
    k = np.linspace(lo, hi, n + 1)
    v = functions.get(name).f(k)
    s = np.diff(v) / np.diff(k)
    return Table(k[1:-1], s, v[:-1] - s * k[:-1], function=name, domain=(lo, hi),
                 provenance={"options": {"metric": metric}})


def test_range_without_domain_is_chosen_around_the_breakpoints_and_said():
    t = interp_table("silu", -4, 4, 8)
    t.domain = None
    lo, hi, note = plot_range(t, functions.get("silu"))
    assert lo < t.breakpoints[0] and hi > t.breakpoints[-1] and (lo, hi) != (-1.0, 1.0)
    assert "no domain stored" in note
    one = Table([], [0.5], [0.25], function="silu")
    lo, hi, note = plot_range(one, functions.get("silu"))
    assert (lo, hi) == functions.get("silu").default_range and note


@pytest.mark.parametrize("n,metric,log_y", [(MAX_BREAK_LINES * 8, "max-abs", False), (8, "max-rel", False),
                                            (16, "max-abs", True)])
def test_plots_are_written(tmp_path, n, metric, log_y):
    name, lo, hi = ("exp", -16.0, 0.0) if metric == "max-rel" or log_y else ("silu", -8.0, 8.0)
    t = interp_table(name, lo, hi, n, metric)
    out = tmp_path / "p.png"
    plot(t, functions.get(name), lo, hi, str(out), log_y=log_y)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
