"""The local SOCKS proxy (SOCKS5, and SOCKS4/4a): CONNECT through the tunnel."""

from __future__ import annotations

import asyncio
import logging

from ..core import socks5
from ..core.socks5 import ConnectReply, ConnectRequested, ReplyCode, Socks5Server
from ..errors import ProtocolError
from .splice import ChannelOpener, OpenFailure, splice

log = logging.getLogger(__name__)

REPLY_FOR_FAILURE = {
    OpenFailure.GENERAL: ReplyCode.GENERAL_FAILURE,
    OpenFailure.NO_TUNNEL: ReplyCode.GENERAL_FAILURE,
    OpenFailure.NOT_ALLOWED: ReplyCode.NOT_ALLOWED,
    OpenFailure.NETWORK_UNREACHABLE: ReplyCode.NETWORK_UNREACHABLE,
    OpenFailure.HOST_UNREACHABLE: ReplyCode.HOST_UNREACHABLE,
    OpenFailure.REFUSED: ReplyCode.CONNECTION_REFUSED,
    OpenFailure.TIMEOUT: ReplyCode.TTL_EXPIRED,
}


class SocksConnection(asyncio.Protocol):
    """One application connection to the local SOCKS port, until it is spliced."""

    def __init__(self, opener: ChannelOpener, tasks: set) -> None:
        self._opener = opener
        self._tasks = tasks
        self._parser = Socks5Server()
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
            self._flush()
            self._transport.close()
            return
        self._flush()
        if isinstance(event, ConnectRequested):
            self._transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._connect(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif event not in (socks5.NEED_DATA, socks5.PAUSED):
            self._transport.close()  # greeting or request refused: the reply is out

    async def _connect(self, request: ConnectRequested) -> None:
        transport = self._transport
        assert transport is not None

        def reply_success() -> None:
            self._parser.send(ConnectReply(ReplyCode.SUCCEEDED))
            self._flush()

        failure = await splice(transport, self._opener, request.host, request.port,
                               before_relay=reply_success, counter=getattr(self._opener, "byte_counter", None),
                               first_bytes=self._parser.trailing_data())
        if failure is not None and not transport.is_closing():
            self._parser.send(ConnectReply(REPLY_FOR_FAILURE[failure]))
            self._flush()
            transport.close()

    def connection_lost(self, exc) -> None:
        self._transport = None
