"""Configurations: labels that say what is fitted, and the committed default sweep files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actiba.evaluate import configs

ROOT = Path(__file__).resolve().parents[1]


def test_calibrated_label_names_the_weighting_actually_fitted(monkeypatch):
    """No weighting given: the label must name the one `calibrated_set` is called with (the default)."""
    seen = {}

    class _Set:
        tables: dict = {}

    def fake_set(lm, fn, segments, mode, weighting, percentiles):
        seen[fn] = weighting
        return _Set()

    monkeypatch.setattr(configs, "calibrated_set", fake_set)
    c = configs.from_dict({"name": "c", "activations": {"softplus": {"segments": 4, "calibrated": "shared"}}})
    configs.tables_for(c, lm=object())
    label = configs.describe_activations(c)["softplus"]["table"]
    assert label.split("/")[1] == seen["softplus"] == configs.DEFAULT_WEIGHTING
    explicit = configs.from_dict({"name": "r", "activations": {
        "softplus": {"segments": 4, "calibrated": "shared", "weighting": "range"}}})
    assert configs.describe_activations(explicit)["softplus"]["table"].split("/")[1] == "range"
