"""The local HTTP proxy: CONNECT and absolute-form plain HTTP through the tunnel."""

from __future__ import annotations

import asyncio

from ..core import httpproxy
from ..core.httpproxy import (ErrorResponse, HttpProxyServer, HttpRequestReceived, TargetConnected,
                              TunnelRequested)
from ..errors import ProtocolError
from .splice import ChannelOpener, OpenFailure, splice

STATUS_FOR_FAILURE = {
    OpenFailure.NOT_ALLOWED: 403,
    OpenFailure.TIMEOUT: 504,
    OpenFailure.NO_TUNNEL: 503,
}


class HttpProxyConnection(asyncio.Protocol):
    """One application connection to the local HTTP proxy port, until it is spliced."""

    def __init__(self, opener: ChannelOpener, tasks: set) -> None:
        self._opener = opener
        self._tasks = tasks
        self._parser = HttpProxyServer()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._parser.receive_data(data)
        self._advance()

    def eof_received(self):
        self._parser.receive_eof()
        self._advance()
        return None

    def _flush(self) -> None:
        out = self._parser.data_to_send()
        if out and self._transport is not None:
            self._transport.write(out)

    def _advance(self) -> None:
        assert self._transport is not None
        try:
            event = self._parser.next_event()
        except ProtocolError:
            self._flush()  # the parser queued a 400/431 before raising
            self._transport.close()
            return
        self._flush()
        if isinstance(event, (TunnelRequested, HttpRequestReceived)):
            self._transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._connect(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif event not in (httpproxy.NEED_DATA, httpproxy.PAUSED):
            self._transport.close()

    async def _connect(self, request) -> None:
        transport = self._transport
        assert transport is not None
        first = self._parser.trailing_data()
        if isinstance(request, HttpRequestReceived):
            first = request.upstream_head + first

        def reply_success() -> None:
            self._parser.send(TargetConnected())
            self._flush()

        failure = await splice(transport, self._opener, request.host, request.port,
                               before_relay=reply_success, counter=getattr(self._opener, "byte_counter", None),
                               first_bytes=first)
        if failure is not None and not transport.is_closing():
            self._parser.send(ErrorResponse(STATUS_FOR_FAILURE.get(failure, 502), failure.value))
            self._flush()
            transport.close()

    def connection_lost(self, exc) -> None:
        self._transport = None
