"""Payload classifiers as deployed DPI does them: SSH banner matching, HTTP whitelisting.

``SSHBannerDPI`` is the l7-filter pattern ``^ssh-[12]\\.[0-9]`` (case-insensitive), which
is also what nDPI's first stage keys on (a payload starting with ``SSH-``), applied to
the first payload of either direction. ``HTTPWhitelist`` lets a flow through only when
its first client payload is an HTTP request (request line ``METHOD SP target SP
HTTP/1.x CRLF``, as nDPI confirms HTTP) and, optionally, the server's first payload is
an HTTP response; a server that speaks first is not HTTP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .flows import PASS, Action, Censor, DataSeen, Verdict, block

SSH_BANNER = re.compile(rb"^ssh-[12]\.[0-9]", re.IGNORECASE)

HTTP_METHODS = (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
_REQUEST_LINE = re.compile(rb"([A-Z]+) ([\x21-\x7e]+) HTTP/1\.[01]\r\n")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\t]*)")
_RESPONSE_LINE = re.compile(rb"HTTP/1\.[01] [1-5][0-9]{2}[ \r]")
MAX_HEAD = 8192


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    complete: bool        # the blank line ending the head was seen
    trailing: int         # bytes after the head in the same payload

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def parse_request_head(payload: bytes) -> RequestHead | None:
    """The HTTP request head at the start of ``payload``, or None if it is not one."""
    match = _REQUEST_LINE.match(payload)
    if match is None or match.group(1) not in HTTP_METHODS:
        return None
    end = payload.find(b"\r\n\r\n", match.end() - 2)
    head_end = end + 4 if end >= 0 else len(payload)
    lines = payload[match.end():end if end >= 0 else len(payload)].split(b"\r\n")
    headers = []
    for index, line in enumerate(lines):
        if not line:
            continue
        header = _HEADER.fullmatch(line)
        if header is None:
            if end >= 0 or index != len(lines) - 1:
                return None  # a malformed header line inside the head
            break  # the last, partial line of an unfinished head
        headers.append((header.group(1).decode("ascii"), header.group(2).decode("ascii").strip()))
    return RequestHead(match.group(1).decode("ascii"), match.group(2).decode("ascii"),
                       tuple(headers), end >= 0, len(payload) - head_end)


def looks_like_http_response(payload: bytes) -> bool:
    return _RESPONSE_LINE.match(payload) is not None


class SSHBannerDPI(Censor):
    """Blocks a flow whose first payload in either direction is an SSH identification."""

    name = "ssh-dpi"

    def __init__(self, action: Action = Action.RESET) -> None:
        self.action = action

    def on_data(self, event: DataSeen) -> Verdict:
        if event.first and SSH_BANNER.match(event.data):
            who = "client" if event.from_client else "server"
            return block(self.action, f"SSH banner from the {who}: {event.data[:20]!r}")
        return PASS


class HTTPWhitelist(Censor):
    """Only HTTP passes.

    ``require_host``: the request head must carry a Host header (within the first
    payload). ``check_response``: the server's first payload must be an HTTP status
    line. ``single_message``: the first client payload must be exactly one complete
    request head with nothing after it (a reassembling DPI that rejects binary bytes
    glued to a request without a body) -- what a prefix split with a delay defeats.
    """

    name = "http-whitelist"

    def __init__(self, *, require_host: bool = True, check_response: bool = True,
                 single_message: bool = False, action: Action = Action.DROP) -> None:
        self.require_host = require_host
        self.check_response = check_response
        self.single_message = single_message
        self.action = action
        self._client_spoke: set[int] = set()

    def on_data(self, event: DataSeen) -> Verdict:
        if not event.first:
            return PASS
        if not event.from_client:
            if event.flow.id not in self._client_spoke:
                return block(self.action, "the server spoke first: not HTTP")
            if self.check_response and not looks_like_http_response(event.data):
                return block(self.action, f"not an HTTP response: {event.data[:16]!r}")
            return PASS
        self._client_spoke.add(event.flow.id)
        return self._judge_request(event.data)

    def _judge_request(self, payload: bytes) -> Verdict:
        head = parse_request_head(payload[:MAX_HEAD])
        if head is None:
            return block(self.action, f"not an HTTP request: {payload[:16]!r}")
        if self.require_host and not head.header("Host"):
            return block(self.action, "HTTP request without a Host header")
        if self.single_message and (not head.complete or head.trailing):
            return block(self.action, f"{head.trailing} bytes glued to a body-less request"
                         if head.complete else "incomplete request head")
        return PASS

    def on_close(self, event) -> None:
        self._client_spoke.discard(event.flow.id)

    def describe(self) -> str:
        return self.name + ("(single message)" if self.single_message else "")
