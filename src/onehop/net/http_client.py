"""One HTTP(S) request over a socket from any opener (direct, upstream proxy, tunnel).

Used for remote server lists, upgrade downloads and feedback uploads. The response
body streams to a ``sink`` (a file being resumed, for instance) so large downloads are
never held in memory. TLS uses the system trust store unless ``verify_tls`` is off (a
TransferURL's SkipVerify: the payload is authenticated by its signature anyway).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from ..core.http1 import BodyData, ResponseComplete, ResponseHead, ResponseParser, build_request
from ..core.sansio import NEED_DATA
from ..errors import OnehopError, ProtocolError, TransferError, TunnelError

SocketOpener = Callable[[str, int], Awaitable]
READ_SIZE = 65536
ERROR_BODY_LIMIT = 64 * 1024  # what is kept of an answer that does not go to the sink


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransferError(f"not an http(s) URL: {url!r}", retryable=False)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TransferError(f"bad port in URL {url!r}", retryable=False) from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path)


def _tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def request(method: str, url: str, open_socket: SocketOpener, *,
                  headers: Mapping[str, str] | None = None, body: bytes | None = None,
                  sink: Callable[[bytes], None] | None = None,
                  on_head: Callable[[ResponseHead], None] | None = None, timeout: float = 30.0,
                  verify_tls: bool = True, max_body: int = 256 * 1024 * 1024) -> tuple[ResponseHead, bytes]:
    """Send one request; returns (head, body). With a ``sink`` the body goes there instead."""
    target = parse_url(url)
    try:
        async with asyncio.timeout(timeout):
            return await _exchange(method, target, open_socket, headers, body, sink, on_head,
                                   verify_tls, max_body)
    except TimeoutError:
        raise TransferError(f"{method} {url}: timed out after {timeout:g}s") from None
    except ProtocolError as exc:
        raise TransferError(f"{method} {url}: bad response ({exc})") from None
    except TunnelError as exc:
        raise TransferError(f"{method} {url}: {exc.message}") from None
    except (OSError, ssl.SSLError, EOFError) as exc:
        raise TransferError(f"{method} {url}: {exc or type(exc).__name__}") from None


async def _exchange(method, target: Target, open_socket, headers, body, sink, on_head, verify_tls, max_body):
    sock = await open_socket(target.host, target.port)
    tls = _tls_context(verify_tls) if target.scheme == "https" else None
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=tls, server_hostname=target.host if tls else None)
    except BaseException:
        sock.close()
        raise
    try:
        writer.write(build_request(method, target.path, target.host_header, headers,
                                   len(body) if body is not None else None))
        if body:
            writer.write(body)
        await writer.drain()
        return await _read_response(reader, ResponseParser(head_only=method == "HEAD"), sink, on_head, max_body)
    finally:
        writer.close()


async def _read_response(reader, parser: ResponseParser, sink, on_head, max_body: int):
    head: ResponseHead | None = None
    collected = bytearray()
    received = 0
    while True:
        event = parser.next_event()
        if event is NEED_DATA:
            data = await reader.read(READ_SIZE)
            if data:
                parser.receive_data(data)
            else:
                parser.receive_eof()
        elif isinstance(event, ResponseHead):
            head = event
            if on_head is not None:
                on_head(head)
        elif isinstance(event, BodyData):
            received += len(event.data)
            if received > max_body:
                raise TransferError(f"response body larger than {max_body} bytes", retryable=False)
            if sink is not None and head is not None and 200 <= head.status < 300:
                sink(event.data)
            else:
                collected += event.data
                if sink is not None and len(collected) >= ERROR_BODY_LIMIT:
                    assert head is not None  # an error page never fills memory: keep its start, stop
                    return head, bytes(collected[:ERROR_BODY_LIMIT])
        elif isinstance(event, ResponseComplete):
            assert head is not None
            return head, bytes(collected)


__all__ = ["request", "parse_url", "Target", "OnehopError"]
