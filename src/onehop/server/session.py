"""One client's SSH connection as the server sees it: the policy the tunnel layer asks.

Credentials are checked in constant time; the session ID from the JSON password makes
this the only live connection for that session. Forwards need a completed handshake.
The peer address is kept in memory for GeoIP, discovery and the handshake's
client_address, and is never logged.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import TYPE_CHECKING

import asyncssh

from ..core.api import parse_ssh_password
from ..errors import RemoteProtocolError
from ..tunnel.relay import ByteCounter
from .forwarding import open_forward, prohibited

if TYPE_CHECKING:
    from .api import HandshakeState
    from .service import TunnelServer

log = logging.getLogger(__name__)

MAX_RANDOM_STREAMS_BEFORE_HANDSHAKE = 1


class ClientSession:
    def __init__(self, server: "TunnelServer", conn: asyncssh.SSHServerConnection) -> None:
        self.server = server
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("", 0)
        self.peer_ip: str = peer[0]
        self.peer_port: int = peer[1]
        self.tunnel_protocol: str = conn.get_extra_info("tunnel_protocol") or "SSH"
        self.ossh_prefix: str | None = conn.get_extra_info("ossh_prefix")
        self.session_id: str | None = None
        self.sponsor_id: str | None = None
        self.handshake: "HandshakeState | None" = None
        self.started = time.time()
        self.bytes = ByteCounter()
        self.forwards_opened = 0
        self.forwards_rejected = 0
        self._random_streams = 0
        server.clients.add(self)

    # -- TunnelServerPolicy -----------------------------------------------------------

    def authenticate(self, username: str, password: str) -> bool:
        cfg = self.server.config
        user_ok = hmac.compare_digest(username.encode("utf-8", "replace"), cfg.ssh_username.encode())
        try:
            payload = parse_ssh_password(password)
        except RemoteProtocolError:
            return False
        password_ok = hmac.compare_digest(payload.ssh_password.encode("utf-8", "replace"),
                                          cfg.ssh_password.encode())
        if not (user_ok and password_ok):
            return False
        self.session_id = payload.session_id
        self.sponsor_id = payload.sponsor_id
        self.server.sessions.register(payload.session_id, self.close)
        return True

    async def api_request(self, name: str, payload: bytes) -> bytes | None:
        return await self.server.api.handle(self, name, payload)

    async def open_forward(self, host: str, port: int):
        if self.handshake is None:
            self.forwards_rejected += 1
            raise prohibited()
        try:
            forwarder = await open_forward(self.server.forward_policy, host, port, counter=self.bytes)
        except asyncssh.ChannelOpenError:
            self.forwards_rejected += 1
            raise
        self.forwards_opened += 1
        return forwarder

    def random_stream_allowed(self) -> bool:
        if self.handshake is not None:
            return True
        self._random_streams += 1
        return self._random_streams <= MAX_RANDOM_STREAMS_BEFORE_HANDSHAKE

    def connection_closed(self, exc: Exception | None) -> None:
        if self.session_id is not None:
            self.server.sessions.unregister(self.session_id, self.close)
        self.server.clients.discard(self)
        self.server.events.server_tunnel(self)

    # -- helpers ----------------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()
