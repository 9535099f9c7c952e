"""Download progress: a rich progress bar on a terminal, Info notices otherwise.

Progress is read from the size of the ``.part`` file the resumable download writes, so
the download code needs no hook; the bar's total comes from a HEAD request when one is
answered (the bar is indeterminate otherwise).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress as Bar
    from rich.progress import TaskID

NOTICE_STEP = 0.25           # one notice per quarter of the download
NOTICE_STEP_UNKNOWN = 8 << 20  # or per 8 MiB when the size is unknown


class Progress(Protocol):
    wants_total: bool

    def start(self, label: str, total: int | None, already: int = 0) -> None: ...

    def update(self, done: int) -> None: ...

    def finish(self) -> None: ...

    def note(self, text: str, **data: Any) -> None: ...


class NoticeProgress:
    """Info notices at each quarter (or every 8 MiB), and for notes."""

    wants_total = False

    def __init__(self, notices: Any) -> None:
        self.notices = notices
        self.label, self.mark = "", 0
        self.total: int | None = None

    def _mark(self, done: int) -> int:
        if self.total:
            return min(done, self.total) * int(1 / NOTICE_STEP) // self.total
        return done // NOTICE_STEP_UNKNOWN

    def start(self, label: str, total: int | None, already: int = 0) -> None:
        self.label, self.total = label, total
        self.mark = self._mark(already)

    def update(self, done: int) -> None:
        mark = self._mark(done)
        if mark <= self.mark:
            return
        self.mark = mark
        if self.notices is not None:
            self.notices.info("upgrade download progress", file=self.label, bytes=done, total=self.total)

    def finish(self) -> None:
        pass

    def note(self, text: str, **data: Any) -> None:
        if self.notices is not None:
            self.notices.info(text, **data)


class TerminalProgress(NoticeProgress):
    """A rich bar on standard error; notes are printed there and still sent as notices."""

    wants_total = True

    def __init__(self, notices: Any, console=None) -> None:
        super().__init__(notices)
        from rich.console import Console
        self.console = console or Console(stderr=True)
        self._bar: Bar | None = None
        self._task: TaskID | None = None  # set with _bar

    def start(self, label: str, total: int | None, already: int = 0) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bar
        self.finish()
        bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=True)
        bar.start()
        self._bar, self._task = bar, bar.add_task(label, total=total, completed=already)

    def update(self, done: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def note(self, text: str, **data: Any) -> None:
        self.console.print(text, markup=False, highlight=False)
        super().note(text, **data)


def make_progress(notices: Any, terminal: bool | None = None) -> NoticeProgress:
    """The bar when ``terminal`` (default: standard error is a terminal), else notices."""
    if terminal is None:
        terminal = sys.stderr.isatty()
    return TerminalProgress(notices) if terminal else NoticeProgress(notices)
