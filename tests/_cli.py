"""Shared helpers for the CLI tests: run a command in-process, and check the one-line error contract."""

from __future__ import annotations

from actiba.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(rc: int, err: str) -> str:
    """The single `actiba: error: ...` line of an exit-2 failure (no traceback, no warnings before it)."""
    assert rc == 2, err
    assert "Traceback" not in err and "Warning" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("actiba: error: "), err
    return lines[0]
