"""A small sans-IO HTTP/1.1 client: build requests, parse responses.

Enough for what the client downloads and uploads (remote server lists, upgrades,
feedback): one request per connection, Content-Length, chunked or close-delimited
bodies, bounded head size. Events: ``ResponseHead``, ``BodyData``, ``ResponseComplete``;
``next_event`` speaks ``core.sansio``'s dialect (``NEED_DATA``, then ``PAUSED`` once complete).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Callable, Mapping

from ..errors import HTTPReason, LocalProtocolError, RemoteProtocolError, UsageReason
from .sansio import NEED_DATA, PAUSED, Pending

MAX_HEAD_SIZE = 64 * 1024
MAX_CHUNK_LINE = 1024
_STATUS = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True)
class ResponseHead:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # lower-cased names, in order

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default


@dataclass(frozen=True)
class BodyData:
    data: bytes


@dataclass(frozen=True)
class ResponseComplete:
    pass


ResponseEvent = ResponseHead | BodyData | ResponseComplete


def build_request(method: str, target: str, host: str, headers: Mapping[str, str] | None = None,
                  body_length: int | None = None) -> bytes:
    """A request head; ``target`` is the path and query, ``host`` the Host header value."""
    if not _TOKEN.fullmatch(method):
        raise LocalProtocolError(HTTPReason.BAD_METHOD, method)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    for name, value in (headers or {}).items():
        if not _TOKEN.fullmatch(name) or "\r" in value or "\n" in value:
            raise LocalProtocolError(HTTPReason.BAD_HEADER, name)
        lines.append(f"{name}: {value}")
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class ResponseParser:
    """Parses one response. ``head_only`` for HEAD requests (no body follows)."""

    def __init__(self, head_only: bool = False, max_head_size: int = MAX_HEAD_SIZE) -> None:
        self._buffer = bytearray()
        self._head: ResponseHead | None = None
        self._head_only = head_only
        self._max_head = max_head_size
        self._remaining: int | None = None   # bytes left in a Content-Length body / chunk
        self._mode = "head"                   # head, length, chunk-size, chunk-data, chunk-end, trailer, close, done
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            raise LocalProtocolError(UsageReason.DATA_AFTER_EOF, "receive_data after receive_eof")
        self._buffer += data

    def receive_eof(self) -> None:
        self._eof = True

    def next_event(self) -> ResponseEvent | Pending:
        """ResponseHead, BodyData, ResponseComplete, NEED_DATA or PAUSED; RemoteProtocolError on bad input."""
        state: Callable[[], ResponseEvent | Pending] = getattr(self, "_state_" + self._mode.replace("-", "_"))
        return state()

    def _need(self) -> Pending:
        if self._eof:
            raise RemoteProtocolError(HTTPReason.TRUNCATED, f"connection closed in state {self._mode}")
        return NEED_DATA

    def _state_head(self) -> ResponseEvent | Pending:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > self._max_head:
                raise RemoteProtocolError(HTTPReason.HEAD_TOO_LARGE, f"more than {self._max_head} bytes")
            return self._need()
        raw = bytes(self._buffer[:end])
        del self._buffer[:end + 4]
        self._head = _parse_head(raw)
        self._mode = self._body_mode(self._head)
        return self._head

    def _body_mode(self, head: ResponseHead) -> str:
        if self._head_only or head.status in (204, 304) or 100 <= head.status < 200:
            return "done"
        encoding = (head.header("transfer-encoding") or "").lower()
        if encoding:
            if encoding != "chunked":
                raise RemoteProtocolError(HTTPReason.UNSUPPORTED_ENCODING, f"unsupported transfer-encoding {encoding}")
            return "chunk-size"
        length = head.header("content-length")
        if length is not None:
            if not length.isdigit() or len(length) > 18:
                raise RemoteProtocolError(HTTPReason.BAD_CONTENT_LENGTH, f"bad content-length {length!r}")
            self._remaining = int(length)
            return "length" if self._remaining else "done"
        return "close"

    def _state_length(self) -> ResponseEvent | Pending:
        return self._take_body(then="done")

    def _state_close(self) -> ResponseEvent | Pending:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return BodyData(data)
        if self._eof:
            self._mode = "finished"
            return ResponseComplete()
        return NEED_DATA

    def _state_chunk_size(self) -> ResponseEvent | Pending:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_CHUNK_LINE:
                raise RemoteProtocolError(HTTPReason.BAD_CHUNK, "chunk size line too long")
            return self._need()
        line = bytes(self._buffer[:end]).split(b";", 1)[0].strip()
        del self._buffer[:end + 2]
        try:
            size = int(line, 16)
        except ValueError:
            raise RemoteProtocolError(HTTPReason.BAD_CHUNK, f"bad chunk size {line[:20]!r}") from None
        if size < 0 or len(line) > 15:
            raise RemoteProtocolError(HTTPReason.BAD_CHUNK, "bad chunk size")
        self._remaining = size
        self._mode = "chunk-data" if size else "trailer"
        return self.next_event()

    def _state_chunk_data(self) -> ResponseEvent | Pending:
        return self._take_body(then="chunk-end")

    def _take_body(self, then: str) -> BodyData | Pending:
        """Up to ``_remaining`` bytes of a sized body or chunk; mode ``then`` once all came."""
        if not self._buffer:
            return self._need()
        remaining = self._remaining or 0  # set with the mode that leads here
        take = bytes(self._buffer[:remaining])
        del self._buffer[:len(take)]
        self._remaining = remaining - len(take)
        if self._remaining == 0:
            self._mode = then
        return BodyData(take)

    def _state_chunk_end(self) -> ResponseEvent | Pending:
        if len(self._buffer) < 2:
            return self._need()
        if self._buffer[:2] != b"\r\n":
            raise RemoteProtocolError(HTTPReason.BAD_CHUNK, "missing CRLF after chunk")
        del self._buffer[:2]
        self._mode = "chunk-size"
        return self.next_event()

    def _state_trailer(self) -> ResponseEvent | Pending:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > self._max_head:
                raise RemoteProtocolError(HTTPReason.BAD_CHUNK, "trailer too large")
            return self._need()
        del self._buffer[:end + 2]
        if end == 0:
            self._mode = "done"
        return self.next_event()

    def _state_done(self) -> ResponseEvent | Pending:
        self._mode = "finished"
        return ResponseComplete()

    def _state_finished(self) -> ResponseEvent | Pending:
        return PAUSED  # the response is complete: nothing more to parse


def _parse_head(raw: bytes) -> ResponseHead:
    lines = raw.split(b"\r\n")
    match = _STATUS.fullmatch(lines[0])
    if match is None:
        raise RemoteProtocolError(HTTPReason.BAD_STATUS_LINE, f"bad status line {lines[0][:60]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise RemoteProtocolError(HTTPReason.BAD_HEADER, f"bad header line {line[:60]!r}")
        try:
            headers.append((name.decode("ascii").lower(), value.strip().decode("latin-1")))
        except UnicodeDecodeError:
            raise RemoteProtocolError(HTTPReason.BAD_HEADER, "non-ASCII header name") from None
    reason = (match.group(2) or b"").decode("latin-1")
    return ResponseHead(int(match.group(1)), reason, tuple(headers))
