"""The local SOCKS proxy (SOCKS5, and SOCKS4/4a): CONNECT through the tunnel."""

from __future__ import annotations

from ..core.socks5 import ConnectReply, ConnectRequested, ReplyCode, Socks5Server
from .local_proxy import LocalProxyConnection
from .splice import OpenFailure

REPLY_FOR_FAILURE = {
    OpenFailure.GENERAL: ReplyCode.GENERAL_FAILURE,
    OpenFailure.NO_TUNNEL: ReplyCode.GENERAL_FAILURE,
    OpenFailure.NOT_ALLOWED: ReplyCode.NOT_ALLOWED,
    OpenFailure.NETWORK_UNREACHABLE: ReplyCode.NETWORK_UNREACHABLE,
    OpenFailure.HOST_UNREACHABLE: ReplyCode.HOST_UNREACHABLE,
    OpenFailure.REFUSED: ReplyCode.CONNECTION_REFUSED,
    OpenFailure.TIMEOUT: ReplyCode.TTL_EXPIRED,
}


class SocksConnection(LocalProxyConnection):
    REQUEST_EVENTS = (ConnectRequested,)

    def make_parser(self) -> Socks5Server:
        return Socks5Server()

    def reply_success(self, request) -> None:
        self._parser.send(ConnectReply(ReplyCode.SUCCEEDED))
        self.flush()

    def reply_failure(self, failure: OpenFailure) -> None:
        self._parser.send(ConnectReply(REPLY_FOR_FAILURE[failure]))
        self.flush()
