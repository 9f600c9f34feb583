"""The Python API's niceties: a real signature, value equality, short repr, summary, input checks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import actiba
from actiba.errors import InputError


@pytest.fixture(scope="module")
def t16():
    return actiba.fit("silu", 16)


def test_fit_signature_shows_the_real_parameters():
    params = inspect.signature(actiba.fit).parameters
    for name in ("func", "segments", "max_error", "range", "metric", "continuous", "tails", "beta",
                 "weight", "target", "target_params"):
        assert name in params
    assert "kwargs" not in params
    assert "actiba.fitting.fit" in actiba.fit.__doc__
    from actiba import fitting

    assert callable(fitting.fit)  # the name the docstring points at exists


def test_table_equality_is_by_value(t16):
    back = actiba.Table.from_json(t16.to_json())
    assert back == t16 and not (back != t16)
    other = actiba.Table.from_json(t16.to_json())
    other.slopes = other.slopes.copy()
    other.slopes[3] = np.nextafter(other.slopes[3], np.inf)
    assert other != t16
    assert t16 != "not a table"


def test_repr_is_short_and_str_report_is_the_summary(t16):
    r = repr(t16)
    assert r.startswith("Table(silu, 16 segments, continuous") and len(r) < 120 and "array" not in r
    assert str(t16.report) == t16.report.summary("silu")


@pytest.mark.parametrize("bad", [4.5, 4.0, "4", True])
def test_non_integer_segments_are_refused(bad):
    with pytest.raises(InputError):
        actiba.fit("silu", bad)


def test_numpy_integer_segments_are_fine():
    assert actiba.fit("tanh", np.int64(3)).segments == 3


def test_scalar_in_float_out_array_in_array_out(t16):
    y = t16(0.5)
    assert type(y) is float and y == float(t16(np.array([0.5]))[0])
    assert isinstance(t16(np.array([0.5, 1.0])), np.ndarray)
    assert np.isnan(t16(float("nan")))
