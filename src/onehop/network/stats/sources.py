"""Where event logs are read from: a local directory or a host over SSH.

Both give the same four operations, all on paths relative to the root:

* ``files()``: every regular file below the root (hidden names and compressed files
  skipped), with its size;
* ``first_lines(paths)``: each file's first line with its newline (or its first 64 KiB
  when the line is longer), the basis of a file's identity;
* ``prefix_sha256({path: n})``: the SHA-256 of each file's first ``n`` bytes (None when
  the file is shorter), to check that what was ingested before is still there;
* ``read(path, offset, size)``.

Over SSH the hashing runs on the host (``head -c N | sha256sum``) so only new bytes
cross the network; reads use SFTP. The host key is the one pinned in the database.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import NetworkError, RemoteError
from ..remote import RemoteHost, quote

FIRST_LINE_MAX = 64 * 1024
COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")
BATCH = 200


@dataclass(frozen=True)
class LogFile:
    path: str    # relative to the root, '/'-separated
    size: int


class LogSource(Protocol):
    description: str

    @property
    def host_name(self) -> str | None: ...

    async def files(self) -> list[LogFile]: ...

    async def first_lines(self, paths: Sequence[str]) -> dict[str, bytes]: ...

    async def prefix_sha256(self, sizes: dict[str, int]) -> dict[str, str | None]: ...

    async def read(self, path: str, offset: int, size: int) -> bytes: ...


def first_line_of(head: bytes) -> bytes:
    """The first line with its newline, or ``head`` itself when it holds no newline."""
    end = head.find(b"\n")
    return head[:end + 1] if end >= 0 else head


def wanted(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(COMPRESSED)


class LocalLogSource:
    """Files below a local directory (logs copied from hosts, or a host's own)."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.description = str(self.root)
        self.host_name = None
        self._hashers: dict[str, tuple[int, hashlib._Hash]] = {}
        if not self.root.is_dir():
            raise NetworkError(f"{self.root} is not a directory")

    async def files(self) -> list[LogFile]:
        found = []
        for directory, dirs, names in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                full = Path(directory) / name
                if wanted(name) and full.is_file() and not full.is_symlink():
                    found.append(LogFile(full.relative_to(self.root).as_posix(), full.stat().st_size))
        return found

    def _open(self, path: str):
        return open(self.root / path, "rb")

    async def first_lines(self, paths: Sequence[str]) -> dict[str, bytes]:
        out = {}
        for path in paths:
            with self._open(path) as f:
                out[path] = first_line_of(f.read(FIRST_LINE_MAX))
        return out

    async def prefix_sha256(self, sizes: dict[str, int]) -> dict[str, str | None]:
        return {path: self._prefix(path, n) for path, n in sizes.items()}

    def _prefix(self, path: str, n: int) -> str | None:
        """Hashes continue from the last call on the same file (ingest asks for growing
        prefixes, chunk after chunk), so a file is hashed about once per ingest."""
        done, hasher = self._hashers.get(path, (0, hashlib.sha256()))
        if done > n:
            done, hasher = 0, hashlib.sha256()
        hasher = hasher.copy()
        with self._open(path) as f:
            f.seek(done)
            while done < n:
                block = f.read(min(1 << 20, n - done))
                if not block:
                    return None
                hasher.update(block)
                done += len(block)
        self._hashers[path] = (n, hasher)
        return hasher.hexdigest()

    async def read(self, path: str, offset: int, size: int) -> bytes:
        with self._open(path) as f:
            f.seek(offset)
            return f.read(size)


class SshLogSource:
    """Files below a directory on a host, through an open management connection."""

    def __init__(self, host: RemoteHost, root: str) -> None:
        self.host = host
        self.root = root.rstrip("/") or "/"
        self.host_name = host.target.name
        self.description = f"ssh://{host.target.name}{self.root}"

    def _full(self, path: str) -> str:
        return f"{self.root}/{path}"

    async def files(self) -> list[LogFile]:
        command = (f"find {quote(self.root)} -mindepth 1 -name '.*' -prune -o -type f -printf '%s %P\\0'")
        result = await self.host.run(command, check=False, what=f"listing {self.root}")
        if result.exit_status != 0:
            raise RemoteError(f"{self.host.target.name}: cannot list {self.root}: "
                              f"{result.stderr.strip() or result.exit_status}")
        found = []
        for item in result.stdout.split(b"\0"):
            if not item:
                continue
            size, _, name = item.decode("utf-8", errors="surrogateescape").partition(" ")
            if all(wanted(part) for part in name.split("/")):
                found.append(LogFile(name, int(size)))
        return sorted(found, key=lambda f: f.path)

    async def _per_file(self, paths: Sequence[str], template: str, what: str) -> list[bytes]:
        """One output line per path, ``template`` formatted with the quoted full path."""
        lines: list[bytes] = []
        for start in range(0, len(paths), BATCH):
            batch = paths[start:start + BATCH]
            script = "; ".join(template.format(f=quote(self._full(p))) for p in batch)
            result = await self.host.run(script, what=what)
            got = result.stdout.split(b"\n")[:len(batch)]
            if len(got) != len(batch):
                raise RemoteError(f"{self.host.target.name}: {what}: unexpected output")
            lines += got
        return lines

    async def first_lines(self, paths: Sequence[str]) -> dict[str, bytes]:
        # Only {f} is filled in by _per_file; {{ }} are the shell's braces.
        template = "{{ head -n 1 -- {f} | head -c " + str(FIRST_LINE_MAX) + " | base64 -w0; echo; }}"
        encoded = await self._per_file(list(paths), template, "reading first lines")
        return {p: first_line_of(base64.b64decode(e)) for p, e in zip(paths, encoded, strict=True)}

    async def prefix_sha256(self, sizes: dict[str, int]) -> dict[str, str | None]:
        paths = list(sizes)
        lines: list[bytes] = []
        for start in range(0, len(paths), BATCH):
            batch = paths[start:start + BATCH]
            script = "; ".join(
                f"if [ \"$(stat -c %s -- {quote(self._full(p))} 2>/dev/null || echo 0)\" -ge {sizes[p]} ]; "
                f"then head -c {sizes[p]} -- {quote(self._full(p))} | sha256sum | cut -c1-64; else echo short; fi"
                for p in batch)
            result = await self.host.run(script, what="hashing ingested prefixes")
            lines += result.stdout.split(b"\n")[:len(batch)]
        return {p: (None if h.strip() in (b"short", b"") else h.strip().decode("ascii"))
                for p, h in zip(paths, lines, strict=True)}

    async def read(self, path: str, offset: int, size: int) -> bytes:
        return await self.host.read_file(self._full(path), offset, size) or b""
