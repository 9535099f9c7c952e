"""Atomic, change-only file writes for exports and directory publishing.

A :class:`FileBatch` stages every write as a temporary file next to its target and,
on commit, makes the data durable, then renames each into place: a reader (a server
reloading its psinet, a web server serving a list) sees the old file or the new one,
never half of one. Files whose content and mode are already right are not touched,
so servers do not reload needlessly. Many files are made durable with one ``sync``
instead of one ``fsync`` each. If anything fails before commit, the staged temporary
files are removed and the targets are untouched.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..atomicfile import fsync_directory, link_beside, write_beside

SMALL_BATCH = 16


def same_content(path: Path, data: bytes, mode: int) -> bool:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data) or stat.S_IMODE(info.st_mode) != mode:
            return False
        return path.read_bytes() == data
    except OSError:
        return False


def _can_link(source: Path, path: Path) -> bool:
    try:
        return os.stat(source).st_dev == os.stat(path.parent).st_dev
    except OSError:
        return False


class FileBatch:
    """Stage writes, then :meth:`commit` them all (or :meth:`abort`)."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []   # (temp, target)
        self._links: list[tuple[Path, Path]] = []    # (source, target)
        self.written: list[Path] = []
        self.unchanged = 0

    def __enter__(self) -> FileBatch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, path: Path, data: bytes, mode: int = 0o644) -> bool:
        """Stage ``data`` for ``path`` unless it already holds exactly that; True if staged."""
        if same_content(path, data, mode):
            self.unchanged += 1
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(write_beside(path, data, mode, sync=False))  # unpredictable name, O_EXCL|O_NOFOLLOW
        self._staged.append((tmp, path))
        return True

    def link(self, source: Path, path: Path) -> None:
        """After commit, make ``path`` the same file as ``source`` (a copy where links fail)."""
        self._links.append((source, path))

    def _make_durable(self) -> None:
        if len(self._staged) > SMALL_BATCH:
            os.sync()
            return
        for tmp, _ in self._staged:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def commit(self) -> None:
        self._make_durable()
        dirs = set()
        for tmp, path in self._staged:
            os.replace(tmp, path)
            self.written.append(path)
            dirs.add(path.parent)
        for source, path in self._links:
            if self._place_link(source, path):
                dirs.add(path.parent)
        self._staged, self._links = [], []
        if len(dirs) > SMALL_BATCH:
            os.sync()
        else:
            for directory in dirs:
                fsync_directory(directory)

    def _place_link(self, source: Path, path: Path) -> bool:
        try:
            if path.exists() and os.path.samefile(source, path):
                self.unchanged += 1
                return False
        except OSError:
            pass
        if not _can_link(source, path) and same_content(path, source.read_bytes(),
                                                        stat.S_IMODE(source.stat().st_mode)):
            self.unchanged += 1  # another file system: a copy that is already right stays
            return False
        tmp = link_beside(source, path)  # a hard link or a copy under an unpredictable name
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.written.append(path)
        return True

    def abort(self) -> None:
        for tmp, _ in self._staged:
            try:
                tmp.unlink()
            except OSError:
                pass
        self._staged, self._links = [], []


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> bool:
    """One file, atomically; False if it already held ``data``."""
    with FileBatch() as batch:
        changed = batch.write(path, data, mode)
        batch.commit()
    return changed
