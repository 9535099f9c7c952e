"""Replacing one file so that a crash leaves the old content or the new, never half.

Shared by every part that keeps state in files (server configs, the feedback queue, the
mail responder's attachments, installed client builds). It imports nothing from onehop.
The recipe: write a uniquely named temporary file in the target's directory with the
final mode, fsync it, rename it over the target, fsync the directory so the rename
itself survives a power cut. Files that hold secrets are written 0600 into directories
made by :func:`private_directory` (0700). Batches of many files (exports, publishing) use
``onehop.network.fileio`` instead, which makes them durable with one sync.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

StrPath = str | os.PathLike


def private_directory(directory: StrPath, *, tighten: bool = False) -> bool:
    """Create ``directory`` (mode 0700) for files that hold secrets; True if it is private.

    A directory that already exists keeps its mode unless ``tighten`` (for directories
    onehop owns: its default data directory, a server's directory in an export); the
    caller says something when False comes back.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    if mode & 0o077 and tighten:
        os.chmod(directory, 0o700)
        return True
    return not mode & 0o077


def open_directory_warning(directory: StrPath, what: str) -> str:
    """The one line said when secrets land in a directory others can read."""
    mode = stat.S_IMODE(os.stat(directory).st_mode)
    return (f"{directory} is mode {mode:04o} and now holds {what}: others on this machine can list it "
            f"(chmod 700 {directory})")


def fsync_directory(directory: StrPath) -> None:
    """Make renames in ``directory`` durable; best effort (some file systems refuse)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_beside(target: StrPath, data: bytes, mode: int, *, sync: bool = True) -> str:
    """A temporary file holding ``data`` with ``mode``, in ``target``'s directory.

    The caller renames it into place (or removes it). The name is unpredictable and the
    file is created with ``O_EXCL | O_NOFOLLOW`` (mkstemp), so a symlink planted in the
    directory can never redirect the write, and concurrent writers never share a
    temporary file; it starts with a dot. ``sync=False`` leaves the fsync to the caller
    (batches make many files durable with one ``sync``).
    """
    directory = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp creates 0600 whatever the umask
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


def link_beside(source: StrPath, target: StrPath) -> str:
    """A temporary name in ``target``'s directory for the same file as ``source``.

    A hard link under an unpredictable name (``link`` never follows an existing name: a
    planted one makes it fail, not write through it); where links fail (another file
    system), a copy made by :func:`write_beside`. The caller renames it into place.
    """
    directory = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(8)}.tmp")
    try:
        os.link(source, tmp)
        return tmp
    except OSError:
        pass
    with open(source, "rb") as f:
        data = f.read()
    return write_beside(target, data, stat.S_IMODE(os.stat(source).st_mode))


def replace_file(target: StrPath, data: bytes, mode: int = 0o644) -> None:
    """Atomically make ``target`` hold ``data`` with ``mode``; raises OSError, leaving no temp."""
    tmp = write_beside(target, data, mode)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(os.path.dirname(os.path.abspath(target)))
