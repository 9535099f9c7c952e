"""Joining an accepted local connection to a channel through the tunnel.

Both local proxies parse a request with a sans-IO parser, then call ``splice``: open a
direct-tcpip channel via the ``ChannelOpener`` (the controller, which waits a bounded
time for a tunnel), swap the local transport's protocol for a forwarder, and hand over
any bytes that arrived after the request. Failures come back as ``OpenFailure`` so each
proxy can answer in its own protocol (a SOCKS reply code, an HTTP status).
"""

from __future__ import annotations

import asyncio
import enum
from typing import Any, Protocol
from collections.abc import Awaitable, Callable

import asyncssh

from ..errors import TunnelError
from ..tunnel.relay import ByteCounter, CountingForwarder


class OpenFailure(enum.Enum):
    GENERAL = "general failure"
    NOT_ALLOWED = "not allowed by the server"
    NETWORK_UNREACHABLE = "network unreachable"
    HOST_UNREACHABLE = "host unreachable"
    REFUSED = "connection refused"
    TIMEOUT = "timed out"
    NO_TUNNEL = "no tunnel available"


class ChannelSession(Protocol):
    """What asyncssh drives on a channel's session: an ``SSHTCPSession`` or a forwarder
    (``CountingForwarder`` is an asyncssh ``SSHForwarder``, not an ``SSHTCPSession``)."""

    def connection_made(self, chan: Any) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def data_received(self, data: bytes, datatype: Any) -> None: ...


class ChannelOpener(Protocol):
    def open_channel(self, session_factory: Callable[[], ChannelSession],
                     host: str, port: int) -> Awaitable[tuple]: ...


def classify(exc: BaseException) -> OpenFailure:
    """Map a channel-open error to what the local proxy should tell the application."""
    if isinstance(exc, asyncssh.ChannelOpenError):
        if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
            return OpenFailure.NOT_ALLOWED
        reason = exc.reason.lower()
        for text, failure in (("refused", OpenFailure.REFUSED), ("timed out", OpenFailure.TIMEOUT),
                              ("network unreachable", OpenFailure.NETWORK_UNREACHABLE),
                              ("host unreachable", OpenFailure.HOST_UNREACHABLE),
                              ("name resolution", OpenFailure.HOST_UNREACHABLE)):
            if text in reason:
                return failure
        return OpenFailure.GENERAL
    if isinstance(exc, TunnelError) and exc.stage == "no-tunnel":
        return OpenFailure.NO_TUNNEL
    if isinstance(exc, asyncio.TimeoutError):
        return OpenFailure.TIMEOUT
    return OpenFailure.GENERAL


async def splice(transport: asyncio.Transport, opener: ChannelOpener, host: str, port: int, *,
                 before_relay: Callable[[], None], first_bytes: bytes = b"",
                 counter: ByteCounter | None = None) -> OpenFailure | None:
    """Open a channel to (host, port) and relay ``transport`` through it.

    ``before_relay`` runs once the channel is open (the proxy writes its success reply);
    ``first_bytes`` are sent through the channel first. Returns None on success.
    """
    counter = counter if counter is not None else ByteCounter()
    local = CountingForwarder(counter=counter, direction="up")
    try:
        _, remote = await opener.open_channel(
            lambda: CountingForwarder(local, counter=counter, direction="down"), host, port)
    except (TimeoutError, asyncssh.Error, OSError, TunnelError) as exc:
        return classify(exc)
    if transport.is_closing():
        remote.close()
        return None
    before_relay()
    transport.set_protocol(local)
    local.connection_made(transport)
    if first_bytes:
        local.data_received(first_bytes)
    transport.resume_reading()
    return None
