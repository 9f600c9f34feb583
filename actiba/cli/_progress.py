"""Progress for long commands (DESIGN §3): one live display on a terminal, plain lines otherwise.

Why rich: one `Live` display can show the whole sweep (what runs, i of n, its current step, elapsed, an
ETA from the rows done) and redraws in place; it is well kept and already a dependency of the eval
extra. Why plain lines when stderr is not a terminal: a log or CI captures one line per finished unit of
work, not escape codes; `ACTIBA_PROGRESS=live|plain|off` overrides the choice (tests, `script` runs).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO


def mode(stream: TextIO | None = None) -> str:
    """'live' (a terminal), 'plain' (anything else), or what ACTIBA_PROGRESS says."""
    forced = os.environ.get("ACTIBA_PROGRESS", "").strip().lower()
    if forced in ("live", "plain", "off"):
        return forced
    stream = stream or sys.stderr
    return "live" if hasattr(stream, "isatty") and stream.isatty() else "plain"


def _fmt_seconds(s: float) -> str:
    s = max(0, int(round(s)))
    return f"{s // 60}:{s % 60:02d}"


class Progress:
    """Units of work with a live bar (terminal) or one line per finished unit (elsewhere).

    `label` names the unit ("config", "batch", "step"); `every` (plain mode) prints only every n-th
    unit and the last, for commands with hundreds of tiny units. Use as a context manager.
    """

    def __init__(self, total: int | None, label: str, stream: TextIO | None = None, every: int = 1,
                 title: str = "") -> None:
        self.total, self.label, self.every, self.title = total, label, max(1, every), title
        self.stream = stream or sys.stderr
        self.mode = mode(self.stream)
        self.done = 0
        self.start = time.monotonic()
        self._what = ""
        self._step = ""
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            console = Console(file=self.stream, force_terminal=True)
            self._progress = RichProgress(
                TextColumn("[bold]{task.fields[title]}[/]"), BarColumn(bar_width=24), MofNCompleteColumn(),
                TextColumn(self.label), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("{task.fields[what]}"), console=console, transient=False, refresh_per_second=4)
            self._progress.start()
            self._task = self._progress.add_task("", total=self.total, title=self.title, what="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _refresh(self) -> None:
        if self._progress is not None:
            what = " · ".join(x for x in (self._what, self._step) if x)
            self._progress.update(self._task, title=self.title, what=what, total=self.total)

    def set_title(self, title: str) -> None:
        """What the following units belong to (e.g. model and precision)."""
        self.title = title
        self._refresh()

    def begin(self, what: str) -> None:
        """A unit starts: its name."""
        self._what, self._step = what, ""
        self._refresh()

    def step(self, step: str) -> None:
        """The current unit's step (export, compile, accuracy, timing ...)."""
        self._step = step
        self._refresh()

    def log(self, text: str) -> None:
        """A line that stays (above the live display, or plain)."""
        if self.mode == "off":
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def advance(self, text: str = "", n: int = 1) -> None:
        """`n` units finished; in plain mode print `text` (with i/n and elapsed) for every `every`-th."""
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
            if text:
                self._progress.console.print(self._line(text), markup=False, highlight=False)
            return
        if self.mode == "plain" and (self.done % self.every == 0 or self.done == self.total):
            print(self._line(text), file=self.stream, flush=True)

    def update_to(self, done: int, total: int | None = None, text: str = "") -> None:
        """Set the count (for callbacks that report `done of total`)."""
        if total is not None:
            self.total = total
            self._refresh()
        if done > self.done:
            step = done - self.done
            crossed = self.mode == "plain" and (
                done // self.every > self.done // self.every or done == self.total)
            if self._progress is not None or crossed:
                self.advance(text, step) if self._progress is not None else self._plain(done, text)
            else:
                self.done = done

    def _plain(self, done: int, text: str) -> None:
        self.done = done
        print(self._line(text), file=self.stream, flush=True)

    def _line(self, text: str) -> str:
        of = f"/{self.total}" if self.total else ""
        elapsed = time.monotonic() - self.start
        eta = ""
        if self.total and 0 < self.done < self.total:
            eta = f", ETA {_fmt_seconds(elapsed / self.done * (self.total - self.done))}"
        head = f"[{self.done}{of} {self.label}{'s' if self.total != 1 else ''}, {_fmt_seconds(elapsed)}{eta}]"
        return " ".join(x for x in (head, self.title, text) if x)
