"""Server side of our local HTTP proxy: CONNECT tunnels and absolute-form plain requests.

Sans-IO: ``HttpProxyServer`` takes the client's bytes through ``receive_data`` /
``receive_eof``, reports one request head through ``next_event`` and queues our answers
for ``data_to_send``. It never touches a socket.

- ``CONNECT host:port`` (IPv6 as ``[addr]:port``) gives ``TunnelRequested``; the caller
  answers ``send(TargetConnected())`` (queues ``200 Connection established``) or
  ``send(ErrorResponse(502))``.
- ``GET http://host[:port]/path HTTP/1.1`` (any method, absolute form) gives
  ``HttpRequestReceived`` with ``upstream_head``: the origin-form head to write upstream,
  with hop-by-hop headers removed, ``Host`` set from the request target and
  ``Connection: close`` added, because we relay one request per connection.
- Requests we do not proxy (origin form, other schemes) give ``RequestRefused``, with the
  error response already queued.
- A malformed or oversized head raises ``RemoteProtocolError``; a 400 (or 431) response is
  queued first, so flushing ``data_to_send()`` before closing tells the browser why.

Bytes after the head (a request body, a TLS ClientHello sent early) are kept:
``trailing_data()`` hands them over exactly once. The head is bounded by
``max_head_size`` (64 KiB by default).
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass

from onehop.core.sansio import NEED_DATA, PAUSED, ByteStream, Pending
from onehop.core.socks5 import format_ip
from onehop.errors import HTTPReason, LocalProtocolError, RemoteProtocolError

__all__ = [
    "NEED_DATA", "PAUSED", "MAX_HEAD_SIZE", "CONNECTION_ESTABLISHED", "State",
    "TunnelRequested", "HttpRequestReceived", "RequestRefused", "TargetConnected",
    "ErrorResponse", "HttpProxyServer", "error_response",
]

MAX_HEAD_SIZE = 64 * 1024
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
HOP_BY_HOP = frozenset({
    "connection", "proxy-connection", "keep-alive", "proxy-authorization",
    "proxy-authenticate", "te", "upgrade",
})
# Never dropped even when listed in Connection: they frame the body we relay verbatim.
_PROTECTED = frozenset({"host", "content-length", "transfer-encoding"})
_REASONS = {
    400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed",
    431: "Request Header Fields Too Large", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_NOT_BLANK = re.compile(rb"[^\r\n]")
_LINE_BREAK = re.compile(rb"\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # control characters except HTAB
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_REG_NAME = re.compile(r"[A-Za-z0-9._~\-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_DIGITS = re.compile(r"[0-9]{1,19}")


class State(enum.Enum):
    REQUEST_HEAD = "request head"
    AWAITING_REPLY = "awaiting reply"
    RELAY = "relay"
    CLOSED = "closed"
    ERROR = "error"


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class TunnelRequested:
    """The client sent ``CONNECT host:port``."""

    host: str
    port: int
    headers: Headers


@dataclass(frozen=True)
class HttpRequestReceived:
    """The client sent a plain request for ``http://host:port``; write ``upstream_head`` there."""

    method: str
    host: str
    port: int
    upstream_head: bytes
    headers: Headers


@dataclass(frozen=True)
class RequestRefused:
    """A well-formed request we do not proxy; the ``status`` response is queued, state CLOSED."""

    status: int
    detail: str


@dataclass(frozen=True)
class TargetConnected:
    """Sent by the caller once the target is reachable (queues 200 for CONNECT)."""


@dataclass(frozen=True)
class ErrorResponse:
    """Sent by the caller to answer with an error (400, 403, 502, 504, ...) and close."""

    status: int
    detail: str = ""


def _printable(text: str, limit: int = 200) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def error_response(status: int, detail: str = "") -> bytes:
    """A complete ``Connection: close`` response with a short plain-text body."""
    reason = _REASONS.get(status)
    if reason is None:
        raise LocalProtocolError(HTTPReason.BAD_STATUS, f"no error response for status {status!r}")
    body = f"{status} {reason}\n" + (f"{_printable(detail)}\n" if detail else "")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return (head + body).encode("ascii")


def _bad(reason: HTTPReason, detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason, detail)


# -- head parsing (pure functions) -----------------------------------------------------

@dataclass(frozen=True)
class _Head:
    method: str
    target: str
    version: str
    headers: Headers


def _parse_head(raw: bytes) -> _Head:
    lines = _LINE_BREAK.split(raw)
    while lines and not lines[-1]:
        lines.pop()
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise _bad(HTTPReason.BAD_REQUEST_LINE, "expected 'METHOD target HTTP/1.x'")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise _bad(HTTPReason.BAD_REQUEST_LINE, "invalid method")
    if not _TARGET.fullmatch(target):
        raise _bad(HTTPReason.BAD_REQUEST_LINE, "invalid characters in the request target")
    if not _VERSION.fullmatch(version):
        raise _bad(HTTPReason.BAD_REQUEST_LINE, "only HTTP/1.0 and HTTP/1.1 are supported")
    headers = tuple(_parse_field(line) for line in lines[1:])
    if sum(1 for name, _ in headers if name.lower() == "host") > 1:
        raise _bad(HTTPReason.BAD_HEADER, "more than one Host header")
    return _Head(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"), headers)


def _parse_field(line: bytes) -> tuple[str, str]:
    if line[:1] in (b" ", b"\t"):
        raise _bad(HTTPReason.BAD_HEADER, "obsolete line folding is not accepted")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise _bad(HTTPReason.BAD_HEADER, "malformed header line")
    value = value.strip(b" \t")
    if _BAD_VALUE.search(value):
        raise _bad(HTTPReason.BAD_HEADER, f"control character in header {name.decode('ascii')}")
    return name.decode("ascii"), value.decode("latin-1")


def _split_authority(authority: str, default_port: int | None) -> tuple[str, int]:
    """``host[:port]`` or ``[v6]:port`` -> (host text, port); IPv6 as RFC 5952 text."""
    if authority.startswith("["):
        literal, close, rest = authority[1:].partition("]")
        if not close:
            raise _bad(HTTPReason.BAD_TARGET, "unterminated IPv6 literal")
        host = _ipv6_text(literal)
    else:
        host = authority.partition(":")[0]
        rest = authority[len(host):]
        if not _REG_NAME.fullmatch(host):
            raise _bad(HTTPReason.BAD_TARGET, f"invalid host {_printable(host, 80)!r}")
    return host, _port(rest, default_port)


def _ipv6_text(literal: str) -> str:
    try:
        if "%" in literal:
            raise ValueError("zone identifiers are not accepted")
        return format_ip(ipaddress.IPv6Address(literal).packed)
    except ValueError:
        raise _bad(HTTPReason.BAD_TARGET, f"invalid IPv6 address {_printable(literal, 80)!r}") from None


def _port(rest: str, default_port: int | None) -> int:
    if rest in ("", ":") and default_port is not None:
        return default_port
    if rest.startswith(":") and _PORT.fullmatch(rest[1:]) and 0 < int(rest[1:]) <= 0xFFFF:
        return int(rest[1:])
    if not rest:
        raise _bad(HTTPReason.BAD_TARGET, "CONNECT needs host:port")
    raise _bad(HTTPReason.BAD_TARGET, f"invalid port {_printable(rest, 20)!r}")


def _split_absolute(rest: str) -> tuple[str, str]:
    """``host:port/path?query#frag`` (after ``http://``) -> (authority, origin-form)."""
    cut = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, origin = rest[:cut], rest[cut:].partition("#")[0]
    if "@" in authority:
        raise _bad(HTTPReason.BAD_TARGET, "user information in the request target is not accepted")
    if not origin.startswith("/"):
        origin = "/" + origin
    return authority, origin


def _check_framing(headers: Headers) -> None:
    """Reject the framing ambiguities that enable request smuggling."""
    lengths = [v for n, v in headers if n.lower() == "content-length"]
    chunked = any(n.lower() == "transfer-encoding" for n, _ in headers)
    if lengths and chunked:
        raise _bad(HTTPReason.BAD_FRAMING, "both Content-Length and Transfer-Encoding")
    values = {part.strip() for value in lengths for part in value.split(",")}
    if len(values) > 1 or not all(_DIGITS.fullmatch(v) for v in values):
        raise _bad(HTTPReason.BAD_FRAMING, "invalid or conflicting Content-Length")


def _host_header(host: str, port: int) -> str:
    text = f"[{host}]" if ":" in host else host
    return text if port == 80 else f"{text}:{port}"


def _upstream_head(head: _Head, origin: str, host_value: str) -> bytes:
    """The origin-form head for the target: hop-by-hop removed, Host set, one request only."""
    listed = {token.strip().lower() for name, value in head.headers
              if name.lower() == "connection" for token in value.split(",")}
    drop = HOP_BY_HOP | (listed - _PROTECTED)
    lines = [f"{head.method} {origin} {head.version}", f"Host: {host_value}"]
    lines += [f"{name}: {value}" for name, value in head.headers
              if name.lower() not in drop and name.lower() != "host"]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- the server ------------------------------------------------------------------------

class HttpProxyServer(ByteStream):
    """One client connection to our HTTP proxy: one request head, then relay."""

    def __init__(self, max_head_size: int = MAX_HEAD_SIZE) -> None:
        super().__init__()
        self._max_head_size = max_head_size
        self._state = State.REQUEST_HEAD
        self._is_tunnel = False
        self._head_start: int | None = None
        self._scan_from = 0

    @property
    def state(self) -> State:
        return self._state

    def trailing_data(self) -> bytes:
        """Client bytes after the request head; returned once, then cleared."""
        if self._state in (State.REQUEST_HEAD, State.ERROR):
            raise LocalProtocolError(HTTPReason.NO_TRAILING_DATA, f"no request head parsed (state {self._state.name})")
        out = bytes(self._buffer)
        self._buffer.clear()
        return out

    def next_event(self) -> TunnelRequested | HttpRequestReceived | RequestRefused | Pending:
        if self._state is State.ERROR:
            raise LocalProtocolError(HTTPReason.ERROR_STATE, "the connection already failed")
        if self._state is not State.REQUEST_HEAD:
            return PAUSED
        try:
            event = self._parse()
        except RemoteProtocolError as error:
            status = 431 if error.reason == HTTPReason.HEAD_TOO_LARGE else 400
            self._outgoing += error_response(status, error.detail)
            self._state = State.ERROR
            raise
        if event is NEED_DATA and self._eof:
            self._state = State.ERROR
            raise RemoteProtocolError(HTTPReason.EOF,
                                      f"client closed after {len(self._buffer)} byte(s) of request head")
        return event

    def send(self, message: TargetConnected | ErrorResponse) -> None:
        """Answer the request: ``TargetConnected`` enters RELAY, ``ErrorResponse`` CLOSED."""
        if self._state is not State.AWAITING_REPLY:
            raise LocalProtocolError(HTTPReason.UNEXPECTED_SEND, f"cannot answer in state {self._state.name}")
        if isinstance(message, TargetConnected):
            if self._is_tunnel:
                self._outgoing += CONNECTION_ESTABLISHED
            self._state = State.RELAY
        elif isinstance(message, ErrorResponse):
            self._outgoing += error_response(message.status, message.detail)
            self._state = State.CLOSED
        else:
            raise LocalProtocolError(HTTPReason.UNEXPECTED_SEND, f"cannot send {type(message).__name__}")

    def _parse(self) -> TunnelRequested | HttpRequestReceived | RequestRefused | Pending:
        located = self._locate_head()
        if located is None:
            return NEED_DATA
        start, end = located
        head = _parse_head(bytes(self._buffer[start:end]))
        del self._buffer[:end]
        if head.method == "CONNECT":
            host, port = _split_authority(head.target, None)
            self._is_tunnel = True
            self._state = State.AWAITING_REPLY
            return TunnelRequested(host, port, head.headers)
        return self._forward(head)

    def _forward(self, head: _Head) -> HttpRequestReceived | RequestRefused:
        scheme = _SCHEME.match(head.target)
        if scheme is None:
            return self._refuse(400, "this is a proxy: the request target must be absolute (http://host/path)")
        if scheme[1].lower() != "http":
            return self._refuse(501, f"scheme {scheme[1]!r} is not proxied; use CONNECT for TLS")
        authority, origin = _split_absolute(head.target[scheme.end():])
        host, port = _split_authority(authority, 80)
        _check_framing(head.headers)
        upstream = _upstream_head(head, origin, _host_header(host, port))
        self._state = State.AWAITING_REPLY
        return HttpRequestReceived(head.method, host, port, upstream, head.headers)

    def _refuse(self, status: int, detail: str) -> RequestRefused:
        self._outgoing += error_response(status, detail)
        self._state = State.CLOSED
        return RequestRefused(status, detail)

    def _locate_head(self) -> tuple[int, int] | None:
        """(start, end) of the head once its blank line arrived; leading blank lines skipped."""
        buf = self._buffer
        if self._head_start is None:
            found = _NOT_BLANK.search(buf, self._scan_from)
            if found is None:
                self._scan_from = len(buf)
                return self._incomplete()
            self._head_start = self._scan_from = found.start()
        found = _HEAD_END.search(buf, max(self._head_start, self._scan_from - 3))
        if found is None:
            self._scan_from = len(buf)
            return self._incomplete()
        if found.end() > self._max_head_size:
            raise _too_large(self._max_head_size)
        return self._head_start, found.end()

    def _incomplete(self) -> tuple[int, int] | None:
        if len(self._buffer) >= self._max_head_size:
            raise _too_large(self._max_head_size)
        return None


def _too_large(limit: int) -> RemoteProtocolError:
    return RemoteProtocolError(HTTPReason.HEAD_TOO_LARGE, f"request head exceeds {limit} bytes")
