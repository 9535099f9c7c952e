"""Attachment snapshots: ``<state dir>/attachments/<sha256>``, content-addressed.

When a configuration is loaded, every attachment is copied here once (atomically: a
temporary file, fsync, rename). A queued reply names its blob, so it is still sent
with the build it was queued with after ``onehop network export`` replaces or removes
the file. ``gc`` removes blobs that neither the configuration nor a queued reply uses.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..atomicfile import replace_file
from .store import StoreError

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class Blobs:
    def __init__(self, state_dir: str | os.PathLike) -> None:
        self.directory = Path(state_dir) / "attachments"
        self._known: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> sha256

    def path(self, sha256: str) -> Path:
        if not _SHA256_RE.fullmatch(sha256):
            raise StoreError(f"not a blob name: {sha256!r}")
        return self.directory / sha256

    def snapshot(self, source: Path) -> str:
        """Copy ``source`` in (unless already there); its sha256 hex digest."""
        try:
            st = source.stat()
            key = (str(source), st.st_ino, st.st_size, st.st_mtime_ns)
            known = self._known.get(key)
            if known and self.path(known).exists():
                return known
            data = source.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if not self.path(digest).exists():
                self._write(digest, data)
        except OSError as exc:
            raise StoreError(f"cannot snapshot {source}: {exc.strerror or exc}") from None
        self._known[key] = digest
        return digest

    def _write(self, digest: str, data: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        replace_file(self.path(digest), data, 0o600)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def read(self, sha256: str) -> bytes:
        """The blob's bytes, checked against its name."""
        try:
            data = self.path(sha256).read_bytes()
        except OSError as exc:
            raise StoreError(f"attachment blob {sha256}: {exc.strerror or exc}") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"attachment blob {sha256} is corrupt")
        return data

    def gc(self, keep: set[str]) -> int:
        """Remove blobs not in ``keep`` (and stale temporary files); how many went."""
        removed = 0
        try:
            entries = list(self.directory.iterdir())
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise StoreError(f"cannot list {self.directory}: {exc.strerror}") from None
        for entry in entries:
            if entry.name in keep:
                continue
            try:
                entry.unlink()
                removed += 1
            except OSError:
                pass  # tried again at the next collection
        self._known = {k: v for k, v in self._known.items() if v in keep}
        return removed
