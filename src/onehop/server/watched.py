"""Files the server re-reads when they change (GeoIP databases, traffic rules)."""

from __future__ import annotations

import os


class WatchedFile:
    """``changed()`` is True the first time and whenever the file's identity changes.

    The identity is (inode, size, modification time in ns), so a file replaced by a
    rename is noticed as well as one rewritten in place; a missing file is a state too.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple | None = None

    def _current(self) -> tuple:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            return ("error", exc.errno)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def changed(self) -> bool:
        stamp = self._current()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return True
