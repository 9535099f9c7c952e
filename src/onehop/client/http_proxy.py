"""The local HTTP proxy: CONNECT and absolute-form plain HTTP through the tunnel."""

from __future__ import annotations

from ..core.httpproxy import (ErrorResponse, HttpProxyServer, HttpRequestReceived, TargetConnected,
                              TunnelRequested)
from .local_proxy import LocalProxyConnection
from .splice import OpenFailure

STATUS_FOR_FAILURE = {
    OpenFailure.NOT_ALLOWED: 403,
    OpenFailure.TIMEOUT: 504,
    OpenFailure.NO_TUNNEL: 503,
}


class HttpProxyConnection(LocalProxyConnection):
    REQUEST_EVENTS = (TunnelRequested, HttpRequestReceived)

    def make_parser(self) -> HttpProxyServer:
        return HttpProxyServer()

    def first_bytes(self, request) -> bytes:
        # A plain request goes upstream as its rewritten origin-form head, then any body.
        rest = self._parser.trailing_data()
        return request.upstream_head + rest if isinstance(request, HttpRequestReceived) else rest

    def reply_success(self, request) -> None:
        self._parser.send(TargetConnected())
        self.flush()

    def reply_failure(self, failure: OpenFailure) -> None:
        self._parser.send(ErrorResponse(STATUS_FOR_FAILURE.get(failure, 502), failure.value))
        self.flush()
