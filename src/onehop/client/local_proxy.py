"""The part both local proxies share: parse a request, then splice it into the tunnel.

A subclass names its sans-IO parser, which events ask for a connection, how to answer
success and failure, and which bytes go through the channel first.
"""

from __future__ import annotations

import asyncio

from ..core.sansio import NEED_DATA, PAUSED
from ..errors import ProtocolError
from .splice import ChannelOpener, OpenFailure, splice


class LocalProxyConnection(asyncio.Protocol):
    """One application connection to a local proxy port, until it is spliced."""

    REQUEST_EVENTS: tuple[type, ...] = ()

    def __init__(self, opener: ChannelOpener, tasks: set) -> None:
        self._opener = opener
        self._tasks = tasks
        self._parser = self.make_parser()
        self._transport: asyncio.Transport | None = None

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
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._parser.receive_data(data)
        self._advance()

    def eof_received(self):
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
