"""The part both local proxies share: parse a request, then splice it into the tunnel.

A subclass names its sans-IO parser, which events ask for a connection, how to answer
success and failure, and which bytes go through the channel first.

Every connection is bounded (:class:`ConnectionLimits`): its whole request must arrive
within ``request_timeout``, and past ``max_connections`` concurrent connections a new
one is closed at once. :class:`AcceptErrors` turns asyncio's accept failures when the
process is out of descriptors (asyncio backs off and retries) into one rate-limited
notice instead of a traceback per retry.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from ..core.sansio import NEED_DATA, PAUSED
from ..errors import ProtocolError
from .splice import ChannelOpener, OpenFailure, splice


@dataclass
class ConnectionLimits:
    """Shared by both local proxies: the request deadline, the cap, the count now open."""

    request_timeout: float = 30.0
    max_connections: int = 500
    open: int = 0
    refused: int = 0


class AcceptErrors:
    """A loop exception handler: 'out of descriptors' on accept becomes one line a minute."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, previous: Callable | None, say: Callable[[str], Any], every: float = 60.0) -> None:
        self.previous, self.say, self.every = previous, say, every
        self._last: float | None = None

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if context.get("message") != self.MESSAGE:
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if self._last is None or now - self._last >= self.every:
            self._last = now
            exc = context.get("exception")
            self.say(f"local proxy cannot accept connections: out of file descriptors ({exc}); "
                     "retrying every second (close some connections or raise `ulimit -n`)")


class LocalProxyConnection(asyncio.Protocol):
    """One application connection to a local proxy port, until it is spliced."""

    REQUEST_EVENTS: tuple[type, ...] = ()

    def __init__(self, opener: ChannelOpener, tasks: set, limits: ConnectionLimits | None = None) -> None:
        self._opener = opener
        self._tasks = tasks
        self._limits = limits or ConnectionLimits()
        self._parser = self.make_parser()
        self._transport: asyncio.Transport | None = None
        self._counted = False
        self._deadline: asyncio.TimerHandle | None = None

    # -- what a proxy kind defines ------------------------------------------------------

    def make_parser(self):
        raise NotImplementedError

    def reply_success(self, request) -> None:
        raise NotImplementedError

    def reply_failure(self, failure: OpenFailure) -> None:
        raise NotImplementedError

    def first_bytes(self, request) -> bytes:
        return self._parser.trailing_data()

    # -- shared mechanics -----------------------------------------------------------------

    def connection_made(self, transport) -> None:
        limits = self._limits
        if limits.open >= limits.max_connections:
            limits.refused += 1
            transport.abort()  # over the cap: closed at once, its descriptor freed
            return
        limits.open += 1
        self._counted = True
        self._transport = transport
        self._deadline = asyncio.get_running_loop().call_later(limits.request_timeout, self._request_too_slow)

    def _request_too_slow(self) -> None:
        self._deadline = None
        if self._transport is not None:
            self._transport.abort()

    def _request_complete(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._parser.receive_data(data)
        self._advance()

    def eof_received(self):
        if self._transport is None:
            return None
        self._parser.receive_eof()
        self._advance()
        return None

    def flush(self) -> None:
        out = self._parser.data_to_send()
        if out and self._transport is not None:
            self._transport.write(out)

    def _advance(self) -> None:
        assert self._transport is not None
        try:
            event = self._parser.next_event()
        except ProtocolError:
            self.flush()  # parsers queue their error answer before raising
            self._transport.close()
            return
        self.flush()
        if isinstance(event, self.REQUEST_EVENTS):
            self._request_complete()
            self._transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._connect(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif event not in (NEED_DATA, PAUSED):
            self._transport.close()  # refused by the parser: its answer is out

    async def _connect(self, request) -> None:
        transport = self._transport
        assert transport is not None
        failure = await splice(transport, self._opener, request.host, request.port,
                               before_relay=lambda: self.reply_success(request),
                               counter=getattr(self._opener, "byte_counter", None),
                               first_bytes=self.first_bytes(request))
        if failure is not None and not transport.is_closing():
            self.reply_failure(failure)
            transport.close()

    def connection_lost(self, exc) -> None:
        self._transport = None
        self._request_complete()
        if self._counted:
            self._counted = False
            self._limits.open -= 1
