"""The OSSH listener as the server runs it: irregular connections reported with their source.

``net.listener`` reports a rejected preamble without its peer; the server wants the
source's GeoIP region in the ``irregular_tunnel`` event (computed in memory, the
address itself goes nowhere), so this subclass hands the peer address to the callback.
It also reports probes that never complete a preamble in time (``handshake_timeout``,
also when nothing was sent) or close after part of one (``incomplete_preamble``); a
connection that opens and closes without a byte (a port scan) is not reported.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from ..errors import ProtocolError, RemoteProtocolError
from ..net.listener import OSSHListener, ProbeSilentConnection

log = logging.getLogger(__name__)


class _Connection(ProbeSilentConnection):
    """Also reports connections that never complete a preamble (timeout, early close)."""

    def _report(self, error: ProtocolError) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        self._listener.report_irregular_from(error, peer[0] if peer else "")  # type: ignore[attr-defined]

    def _rejected(self, error: ProtocolError) -> None:
        self._report(error)

    def _deadline_passed(self) -> None:
        if not self.established and not self.failed:
            self._report(RemoteProtocolError("handshake_timeout", "no complete preamble in time"))
        super()._deadline_passed()

    def eof_received(self):
        if not self.established and not self.failed and self.bytes_received:
            self._report(RemoteProtocolError("incomplete_preamble", "closed before a complete preamble"))
        return super().eof_received()


class ServerOSSHListener(OSSHListener):
    def __init__(self, *args, on_irregular_from: Callable[[ProtocolError, str], None], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_irregular_from = on_irregular_from

    def report_irregular_from(self, error: ProtocolError, peer_ip: str) -> None:
        log.info("irregular OSSH connection: %s", error.reason)
        self._on_irregular_from(error, peer_ip)

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Connection(self), host, port,
                                               reuse_address=True, backlog=1024)
        return self.server
