"""The noise-aware front: accuracy differences inside their paired uncertainty are ties."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from actiba.evaluate import accuracy
from actiba.evaluate.pareto import choose, mark_pareto, null_usable, within_budget
from actiba.evaluate.row import Row


def _row(name, windows, base_windows, speed):
    delta = (math.fsum(windows) - math.fsum(base_windows)) / math.fsum(base_windows)
    return Row(name=name, metric=1.0 + delta, metric_windows=windows, speedup=speed, metric_delta_rel=delta,
               metric_delta_halfwidth_rel=accuracy.paired_halfwidth(windows, base_windows))


def test_paired_halfwidth_matches_the_spread_over_text_samples():
    """Resampling the text (new windows, same per-window effect) moves the delta by about the half-width."""
    rng = np.random.default_rng(0)
    deltas, hws = [], []
    for _ in range(400):
        text = rng.uniform(300.0, 500.0, 64)
        effect = rng.normal(0.02, 0.2, 64)  # a table's per-window effect, in nats
        base, row = list(text), list(text + effect)
        deltas.append((sum(row) - sum(base)) / sum(base))
        hws.append(accuracy.paired_halfwidth(row, base))
    covered = np.mean(np.abs(np.array(deltas) - np.mean(deltas)) <= np.array(hws))
    assert 0.9 < covered < 0.99  # ~95 %


def test_paired_is_much_tighter_than_unpaired_and_has_a_floor():
    rng = np.random.default_rng(1)
    text = list(rng.uniform(300.0, 500.0, 64))
    shifted = [t + 1e-7 * rng.normal() for t in text]  # roundoff-sized differences
    assert accuracy.paired_halfwidth(shifted, text) == accuracy.LOSS_RESOLUTION
    own_rel = accuracy.own_halfwidth(text, 256) / (math.fsum(text) / len(text) / math.log(2) / 256)
    table = [t + rng.normal(0.0, 0.5) for t in text]
    assert accuracy.paired_halfwidth(table, text) < own_rel / 20
    assert accuracy.paired_halfwidth([1.0], [1.0]) is None and accuracy.paired_halfwidth([1, 2], [1]) is None


def test_a_slower_row_whose_lower_loss_is_noise_leaves_the_front():
    rng = np.random.default_rng(2)
    text = rng.uniform(300.0, 500.0, 64)
    base = list(text)
    noisy_better = list(text * (1 - 1.6e-4) + rng.normal(0.0, 0.6, 64))  # -0.016 %, inside the noise
    real_better = list(text * (1 - 5e-3) + rng.normal(0.0, 0.05, 64))  # -0.5 %, far outside it
    exact_a = [t + 1e-9 for t in text]
    exact_b = [t - 1e-9 for t in text]
    rows = [_row("baseline", base, base, 1.0), _row("act-both-32", noisy_better, base, 0.70),
            _row("better", real_better, base, 0.60), _row("ssd-d1", exact_a, base, 1.15),
            _row("ssd-d1+d2+chunk32", exact_b, base, 1.66)]
    assert rows[1].metric_delta_rel < 0  # lower loss by the point estimate ...
    mark_pareto(rows, rows[0])
    front = {r.name for r in rows if r.pareto}
    assert front == {"ssd-d1+d2+chunk32", "better"}  # ... but a tie: the faster rows dominate it
    exact = [dataclasses.replace(r, metric_windows=None, metric_delta_halfwidth_rel=None) for r in rows]
    mark_pareto(exact)  # without uncertainties: the old exact comparison keeps the noise winners
    assert {r.name for r in exact if r.pareto} > {"act-both-32"}


def test_recommendation_uses_the_same_tie_rule_for_the_budget():
    base = Row.from_dict({"name": "baseline", "metric_delta_rel": 0.0, "speedup": 1.0, "error": None})
    lossless = Row.from_dict({"name": "exact", "metric_delta_rel": 3e-8, "speedup": 1.5, "error": None,
                              "metric_delta_halfwidth_rel": 1e-6, "latency_ratio": {"halfwidth_rel": 0.01}})
    assert within_budget(lossless, 0.0)
    assert not within_budget(dataclasses.replace(lossless, metric_delta_halfwidth_rel=0.0), 0.0)
    assert choose([base, lossless], 0.0).name == "exact"


@pytest.mark.parametrize("null, ok", [(None, True), ({"error": "x"}, True),
                                      ({"speedup": 1.01, "halfwidth_rel": 0.01}, True),
                                      ({"speedup": 1.117, "halfwidth_rel": 0.14}, False),
                                      ({"speedup": 1.0, "halfwidth_rel": 0.08}, False)])
def test_a_too_wide_null_control_makes_latency_unusable(null, ok):
    assert null_usable(null) is ok


def _timed(row: Row, halfwidth: float) -> Row:
    from actiba.evaluate.row import Ratio

    row.latency_ratio = Ratio.from_dict({"median": 1.0 / row.speedup, "halfwidth_rel": halfwidth})
    return row


def test_speed_ups_inside_their_intervals_and_the_null_control_tie():
    """softplus-relu at 1.010x ±1.9 % with a (slightly lower) loss inside the noise is no faster than the
    baseline: it leaves the front; an exact comparison of speeds keeps it there."""
    rng = np.random.default_rng(3)
    text = rng.uniform(300.0, 500.0, 64)
    base = list(text)
    tie = list(text - 0.05 + rng.normal(0.0, 0.6, 64))  # lower by ~0.012 %, inside the noise
    rows = [_row("baseline", base, base, 1.0), _timed(_row("softplus-relu", tie, base, 1.010), 0.019)]
    assert rows[1].metric_delta_rel < 0
    assert accuracy.tolerance(rows[0], rows[1], math.fsum(base)) >= abs(rows[1].metric_delta_rel)  # a loss tie
    mark_pareto(rows, rows[0], noise=0.032)
    assert [r.pareto for r in rows] == [True, False]
    mark_pareto(rows, rows[0], noise=0.0)  # without the null control's floor 1.010 is inside its own ±1.9 %
    assert [r.pareto for r in rows] == [True, False]
    exact = [dataclasses.replace(r, latency_ratio=None) for r in rows]
    mark_pareto(exact, exact[0])  # exact speeds: 1.010 > 1.0 at a tied loss dominates the baseline
    assert [r.pareto for r in exact] == [False, True]


def test_overlapping_speed_intervals_keep_both_rows():
    rng = np.random.default_rng(5)
    text = rng.uniform(300.0, 500.0, 64)
    base = list(text)
    exact = [t + 1e-9 for t in text]
    rows = [_row("baseline", base, base, 1.0), _timed(_row("ssd-d1+d2", exact, base, 1.641), 0.049),
            _timed(_row("ssd-d1+d2+chunk32", exact, base, 1.567), 0.008),
            _timed(_row("cumba", exact, base, 1.077), 0.017)]
    mark_pareto(rows, rows[0], noise=0.032)
    assert {r.name for r in rows if r.pareto} == {"ssd-d1+d2", "ssd-d1+d2+chunk32"}
    mark_pareto(rows, rows[0], noise=0.0)
    assert {r.name for r in rows if r.pareto} == {"ssd-d1+d2", "ssd-d1+d2+chunk32"}  # 1.641/1.567 < 1.057
    rows[2].latency_ratio.halfwidth_rel = rows[1].latency_ratio.halfwidth_rel = 0.001
    mark_pareto(rows, rows[0], noise=0.0)  # tight intervals: the faster one alone
    assert {r.name for r in rows if r.pareto} == {"ssd-d1+d2"}


def test_a_row_slower_than_the_baseline_beyond_the_noise_never_ties_it():
    rng = np.random.default_rng(4)
    text = rng.uniform(300.0, 500.0, 64)
    base = list(text)
    better = list(text * (1 - 5e-3) + rng.normal(0.0, 0.05, 64))  # -0.5 %: a real accuracy gain
    rows = [_row("baseline", base, base, 1.0), _timed(_row("slow-but-better", better, base, 0.80), 0.02)]
    mark_pareto(rows, rows[0], noise=0.03)
    assert [r.pareto for r in rows] == [True, True]  # a trade-off, not a tie
    rows[1].metric_delta_rel = 0.0  # the same row without its accuracy gain: the baseline dominates it
    rows[1].metric_windows = base
    mark_pareto(rows, rows[0], noise=0.03)
    assert [r.pareto for r in rows] == [True, False]
