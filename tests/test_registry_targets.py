"""Hardware targets as a registered extension: fitted through `actiba.fit(..., target=)` on top of the
float fitter (which no longer calls them), and their start tables' fallback."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import actiba
from actiba import fitting, functions, targets
from actiba.errors import InputError
from actiba.targets import float_start as start


def test_facade_target_fit_is_the_target_fit_stamped():
    t = actiba.fit("silu", 4, target="int8-lut", tails="free")
    direct = targets.get("int8-lut").fit(functions.get("silu"), 4, *functions.get("silu").default_range, "free", {})
    assert t.target == direct.target
    np.testing.assert_array_equal(t.intercepts, direct.intercepts)
    assert t.provenance["options"]["target"] == "int8-lut" and t.provenance["actiba"] == actiba.__version__


def test_float_fitter_takes_no_target():
    assert "target" not in inspect.signature(fitting.fit).parameters


@pytest.mark.parametrize(("kwargs", "message"), [({"max_error": 0.01}, "--target fits take --segments"),
                                                 ({}, "exactly one of")])
def test_target_fit_needs_segments(kwargs, message):
    with pytest.raises(InputError, match=message):
        actiba.fit("silu", target="npu-ppe", **kwargs)


def test_unknown_target_lists_the_known():
    with pytest.raises(InputError, match="unknown target 'nope'; known: .*npu-ppe"):
        actiba.fit("silu", 4, target="nope")


def test_start_table_falls_back_only_when_the_fitter_refuses(monkeypatch):
    act = functions.get("silu")

    def refuse(*a, **k):
        raise InputError("no such fit")

    monkeypatch.setattr(fitting, "fit", refuse)
    t = start.float_fit(act, 4, -8.0, 8.0)
    assert "no such fit" in t.provenance["start"] and t.segments == 4

    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(fitting, "fit", bug)
    with pytest.raises(ZeroDivisionError):
        start.float_fit(act, 4, -8.0, 8.0)
