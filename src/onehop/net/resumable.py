"""Resumable downloads to a ``.part`` file, as Psiphon's client does them.

A partial download is continued with ``Range: bytes=N-`` and ``If-Match`` the ETag it
started with; an ETag change (412) discards the partial file; ``If-None-Match`` with
the last complete ETag turns an unchanged resource into a cheap 304. A failed or
truncated transfer keeps its partial file for the next attempt.

``max_size`` bounds the *file*, not one attempt: a mirror that claims to resume anywhere
and then floods, or declares more than fits, is cut off before the ``.part`` file passes
the limit, and that file is discarded (its content can never verify). Bytes past a
declared Content-Length are never read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import IO, Any

from ..errors import TransferError
from .http_client import SocketOpener, request

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
DEFAULT_MAX_SIZE = 256 * 1024 * 1024


@dataclass(frozen=True)
class Download:
    """``path`` holds the complete body unless ``not_modified``."""

    path: str
    etag: str | None
    not_modified: bool = False
    bytes_received: int = 0


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _write(path: str, text: str) -> None:
    with _open_private(path, "w") as f:
        f.write(text)


def _open_private(path: str, mode: str) -> IO[Any]:
    """Downloads may be server lists in a private data directory: 0600, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    encoding = None if "b" in mode else "utf-8"
    f = os.fdopen(os.open(path, flags, 0o600), mode, encoding=encoding)
    if os.stat(f.fileno()).st_mode & 0o077:
        os.fchmod(f.fileno(), 0o600)  # a file left by an older version
    return f


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


async def download(url: str, path: str, open_socket: SocketOpener, *, if_none_match: str | None = None,
                   timeout: float = 30.0, verify_tls: bool = True,
                   max_size: int = DEFAULT_MAX_SIZE) -> Download:
    """Fetch ``url`` into ``path`` (renamed from ``path.part`` once complete), at most ``max_size`` bytes."""
    part, part_etag_path = path + ".part", path + ".part.etag"
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if offset > max_size:  # left by an older, unbounded version: it can never be completed
        _remove(part, part_etag_path)
        offset = 0
    part_etag = _read(part_etag_path) if offset else None
    headers = {"User-Agent": "onehop"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if part_etag:
            headers["If-Match"] = part_etag
    elif if_none_match:
        headers["If-None-Match"] = if_none_match
    sink = _PartSink(part, part_etag_path, offset, max_size)
    try:
        head, _ = await request("GET", url, open_socket, headers=headers, sink=sink.write,
                                on_head=sink.on_head, timeout=timeout, verify_tls=verify_tls,
                                max_body=max_size)
    finally:
        sink.close()
        if sink.too_large:
            _remove(part, part_etag_path)
    return _finish(head, url, path, part, part_etag_path, offset, sink)


class _PartSink:
    """Writes the body to the part file, deciding on the first chunk whether to append."""

    def __init__(self, part: str, etag_path: str, offset: int, max_size: int) -> None:
        self.part, self.etag_path, self.offset, self.max_size = part, etag_path, offset, max_size
        self.file: IO[Any] | None = None
        self.received = 0
        self.mode = "ab"
        self.too_large = False

    def on_head(self, head) -> None:
        if 200 <= head.status < 300:
            self.prepare(head.status, head.header("etag"), head.header("content-range"))
            self._check_declared(head.header("content-length"), head.header("content-range"))

    def _check_declared(self, length: str | None, content_range: str | None) -> None:
        """Refuse before writing a byte when the answer says it will not fit."""
        match = _CONTENT_RANGE.fullmatch(content_range or "") if self.offset else None
        total = match.group(3) if match else None
        declared = [self.offset + int(length)] if length and length.isdigit() else []
        declared += [int(total)] if total and total.isdigit() else []
        if any(size > self.max_size for size in declared):
            self._refuse(max(declared))

    def _refuse(self, size: int) -> None:
        self.too_large = True
        raise TransferError(f"file would be {size} bytes, over the {self.max_size}-byte limit", retryable=False)

    def prepare(self, status: int, etag: str | None, content_range: str | None) -> None:
        if status == 200 or self.offset == 0:
            self.mode, self.offset = "wb", 0
        elif status == 206:
            match = _CONTENT_RANGE.fullmatch(content_range or "")
            if not match or int(match.group(1)) != self.offset:
                raise TransferError(f"server resumed at the wrong offset ({content_range!r})")
        if etag:
            _write(self.etag_path, etag)

    def write(self, data: bytes) -> None:
        if self.offset + self.received + len(data) > self.max_size:
            self._refuse(self.offset + self.received + len(data))
        if self.file is None:
            self.file = _open_private(self.part, self.mode)
        self.file.write(data)
        self.received += len(data)

    def close(self) -> None:
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            self.file = None


def _finish(head, url, path, part, part_etag_path, offset, sink) -> Download:
    etag = head.header("etag")
    if head.status == 304:
        _remove(part, part_etag_path)
        return Download(path, etag, not_modified=True)
    if head.status == 412:
        _remove(part, part_etag_path)  # the resource changed under us: start over next time
        raise TransferError(f"GET {url}: resource changed during download (412)")
    if head.status == 416 and offset:
        pass  # we already have every byte
    elif head.status not in (200, 206):
        raise TransferError(f"GET {url}: HTTP {head.status}", status=head.status,
                            retryable=head.status >= 500 or head.status in (408, 429))
    etag = etag or _read(part_etag_path)
    if not os.path.exists(part):
        _open_private(part, "wb").close()  # an empty body is still a complete file
    os.replace(part, path)
    _remove(part_etag_path)
    return Download(path, etag, bytes_received=sink.received)
