"""Progress (DESIGN §3): plain lines per finished unit off a terminal, a live display on one."""

from __future__ import annotations

import io

from actiba.cli._progress import Progress, mode


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_one_line_per_finished_unit(monkeypatch):
    monkeypatch.delenv("ACTIBA_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress(3, "config", stream=out, title="m f32") as p:
        for name in ("a", "b", "c"):
            p.begin(name)
            p.step("accuracy")
            p.advance(f"{name}: 1.2x")
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("[1/3 configs,") and "ETA" in lines[0]
    assert lines[-1].endswith("m f32 c: 1.2x") and "ETA" not in lines[-1]


def test_plain_every_nth_for_many_small_units(monkeypatch):
    monkeypatch.delenv("ACTIBA_PROGRESS", raising=False)
    out = io.StringIO()
    with Progress(None, "batch", stream=out, every=10) as p:
        for done in range(1, 101):
            p.update_to(done, 100)
    assert len(out.getvalue().splitlines()) == 10


def test_live_display_on_a_terminal(monkeypatch):
    monkeypatch.delenv("ACTIBA_PROGRESS", raising=False)
    tty = _Tty()
    assert mode(tty) == "live" and mode(io.StringIO()) == "plain"
    with Progress(2, "config", stream=tty, title="embedded:mamba2 f32") as p:
        p.begin("cumba")
        p.step("timing")
        p._live.refresh()
        p.advance("cumba: 1.06x")
    text = tty.getvalue()
    assert "\x1b[" in text and "embedded:mamba2 f32 · cumba · timing" in text and "1/2" in text
    monkeypatch.setenv("ACTIBA_PROGRESS", "plain")
    assert mode(tty) == "plain"
