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
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return "plain"
    try:  # the eval extra installs rich; without it a terminal gets the plain lines
        import rich  # noqa: F401
    except ImportError:
        return "plain"
    return "live"


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
        self._live: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.mode == "live":
            from rich.console import Console, Group
            from rich.live import Live
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress
            from rich.text import Text

            console = Console(file=self.stream, force_terminal=True)
            self._progress = RichProgress(
                BarColumn(bar_width=30), MofNCompleteColumn(), TextColumn(self.label + "s"),
                TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=console)
            self._task = self._progress.add_task("", total=self.total)
            owner = self

            class _View:  # what is running on one line, the bar (i of n, elapsed, ETA) on the next
                def __rich__(self) -> Group:
                    what = " · ".join(x for x in (owner.title, owner._what, owner._step) if x)
                    return Group(Text(what, style="bold", overflow="ellipsis", no_wrap=True),
                                 owner._progress.get_renderable())

            self._live = Live(_View(), console=console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._live.stop()
            self._progress = None

    def _refresh(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task, total=self.total)

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
            self._live.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def advance(self, text: str = "", n: int = 1) -> None:
        """`n` units finished; in plain mode print `text` (with i/n and elapsed) for every `every`-th."""
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
            if text:
                self._live.console.print(self._line(text), markup=False, highlight=False)
            return
        if self.mode == "plain" and (self.done % self.every == 0 or self.done == self.total):
            print(self._line(text), file=self.stream, flush=True)

    def update_to(self, done: int, total: int | None = None, text: str = "") -> None:
        """Set the count (for callbacks that report `done of total`); plain mode: a line per `every`."""
        if total is not None and total != self.total:
            self.total = total
            self._refresh()
        if done <= self.done:
            return
        if self._progress is not None:
            self.advance(text, done - self.done)
            return
        crossed = done // self.every > self.done // self.every or done == self.total
        self.done = done
        if self.mode == "plain" and crossed:
            print(self._line(text), file=self.stream, flush=True)

    def _line(self, text: str) -> str:
        of = f"/{self.total}" if self.total else ""
        elapsed = time.monotonic() - self.start
        eta = ""
        if self.total and 0 < self.done < self.total:
            eta = f", ETA {_fmt_seconds(elapsed / self.done * (self.total - self.done))}"
        head = f"[{self.done}{of} {self.label}{'s' if self.total != 1 else ''}, {_fmt_seconds(elapsed)}{eta}]"
        return " ".join(x for x in (head, self.title, text) if x)
