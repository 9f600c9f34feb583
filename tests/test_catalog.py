"""The committed fits/ catalog is what `python -m actiba.catalog` produces, and every table in it is valid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import actiba
from actiba import catalog

FITS = Path(__file__).resolve().parent.parent / "fits"


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fits")
    catalog.generate(out)
    return out


@pytest.mark.slow  # regenerates the whole catalog (~20 s): python -m pytest -m slow tests/test_catalog.py
def test_same_files(regenerated: Path) -> None:
    assert sorted(p.name for p in regenerated.iterdir()) == sorted(p.name for p in FITS.iterdir())


def test_same_tables(regenerated: Path) -> None:
    for new in sorted(regenerated.glob("*.json")):
        old = json.loads((FITS / new.name).read_text())
        cur = json.loads(new.read_text())
        assert old.keys() == cur.keys(), new.name
        assert old["function"] == cur["function"] and old["target"] == cur["target"], new.name
        assert len(old["slopes"]) == len(cur["slopes"]), new.name
        span = cur["domain"][1] - cur["domain"][0]
        np.testing.assert_allclose(old["breakpoints"], cur["breakpoints"], rtol=0, atol=1e-6 * span,
                                   err_msg=new.name)
        np.testing.assert_allclose(old["error"]["max_abs"], cur["error"]["max_abs"], rtol=1e-4, err_msg=new.name)
        # the committed table evaluates like the regenerated one
        xs = np.linspace(*cur["domain"], 2001)
        a, b = actiba.Table.from_dict(old), actiba.Table.from_dict(cur)
        np.testing.assert_allclose(a(xs), b(xs), rtol=0, atol=1e-5 * max(1.0, float(np.max(np.abs(b(xs))))),
                                   err_msg=new.name)


def test_index_lists_every_table(regenerated: Path) -> None:
    index = (FITS / "INDEX.md").read_text()
    assert index == (regenerated / "INDEX.md").read_text()
    for p in FITS.glob("*.json"):
        assert f"({p.name})" in index


def test_catalog_tables_load_and_meet_their_stated_error() -> None:
    for p in sorted(FITS.glob("*-continuous-asymptote.json")):
        t = actiba.load(p)
        act = actiba.functions.get(t.function)
        lo, hi = t.domain
        xs = np.linspace(lo, hi, 20001)
        err = float(np.max(np.abs(t(xs) - act.f(xs))))
        assert err <= t.error["max_abs"] * (1 + 1e-9), p.name
        if t.error["over"] == "real-line":  # the bound must hold far outside the range too
            far = np.concatenate([np.linspace(-1e4, lo, 2001), np.linspace(hi, 1e4, 2001)])
            assert float(np.max(np.abs(t(far) - act.f(far)))) <= t.error["max_abs"] * (1 + 1e-9), p.name
