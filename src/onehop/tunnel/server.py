"""asyncssh server connections that speak Psiphon's SSH-level protocol.

``PsiphonServerConnection`` adds the Psiphon API global requests
(``psiphon-handshake``, ``psiphon-connected``, ``psiphon-status`` and the legacy
``psiphon-client-verification``) and the ``random@psiphon.ca`` channel to asyncssh's
server connection. Every decision (credentials, API answers, which forwards to open)
is delegated to a ``TunnelServerPolicy`` through ``TunnelSSHServer``: this module only
moves bytes between asyncssh and that policy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
from typing import Any, ClassVar, Protocol
from collections.abc import Awaitable

import asyncssh
from asyncssh.misc import ChannelOpenError
from asyncssh.packet import SSHPacket

from ..core.api.keepalive import MAX_KEEPALIVE_PADDING, encode_keepalive_response
from ..core.api.names import REQUEST_CLIENT_VERIFICATION, REQUEST_CONNECTED, REQUEST_HANDSHAKE, REQUEST_STATUS
from . import asyncssh_compat as compat
from .tuning import CHANNEL_MAX_PACKET, CHANNEL_WINDOW, is_filler_ignore, tune_tunnel_channel

log = logging.getLogger(__name__)

RANDOM_STREAM_MAX_BYTES = 10 * 1024 * 1024
#: Random streams one connection may have open at once (a liveness test needs one).
MAX_OPEN_RANDOM_STREAMS = 4
RANDOM_STREAM_CHUNK = 16384
random_bytes = os.urandom  # one name, so tests can count what random streams make
OPEN_ADMINISTRATIVELY_PROHIBITED = 1


class TunnelServerPolicy(Protocol):
    """What the SSH layer asks the server application, once per SSH connection."""

    def authenticate(self, username: str, password: str) -> bool: ...

    def api_request(self, name: str, payload: bytes) -> Awaitable[bytes | None]: ...

    def open_forward(self, host: str, port: int, *, no_split: bool = False) -> Awaitable[asyncssh.SSHTCPSession]: ...

    def random_stream_allowed(self) -> bool: ...

    def charge_upstream(self, n: int) -> float: ...

    def charge_downstream(self, n: int) -> float: ...

    def connection_closed(self, exc: Exception | None) -> None: ...


class TunnelSSHServer(asyncssh.SSHServer):
    """asyncssh's per-connection server object, forwarding every decision to a policy."""

    def __init__(self, policy_factory) -> None:
        self._policy_factory = policy_factory
        self.policy: Any = None
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self.policy = self._policy_factory(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.policy is not None:
            self.policy.connection_closed(exc)

    def begin_auth(self, username: str) -> bool:
        return True

    def auth_completed(self) -> None:
        hook = getattr(self._conn, "auth_completed", None)  # the server's connection frees its handshake place
        if hook is not None:
            hook()

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return self.policy.authenticate(username, password)

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        # Our own channel: asyncssh's would have 32 KiB packets whatever the options say.
        assert self._conn is not None
        chan = self._conn.create_tcp_channel(window=CHANNEL_WINDOW, max_pktsize=CHANNEL_MAX_PACKET)
        tune_tunnel_channel(chan)
        no_split = getattr(self._conn, "opening_no_split_forward", False)
        return chan, self.policy.open_forward(dest_host, dest_port, no_split=no_split)

    def server_requested(self, listen_host, listen_port):
        return False  # no remote port forwarding

    def unix_connection_requested(self, dest_path):
        return False

    def unix_server_requested(self, listen_path):
        return False

    def session_requested(self):
        return False  # no shells or commands: this is a proxy, not a login


class PsiphonServerConnection(compat.Handlers, compat.GlobalRequestsWaitForWriting, compat.ZeroCopyReceive,
                              compat.LazyKeepaliveTimer, compat.QuietPacketLog, asyncssh.SSHServerConnection):
    """An asyncssh server connection with Psiphon's API requests and random channel.

    Global requests already read wait while the client leaves our answers unread
    (``GlobalRequestsWaitForWriting``): each answer may be far larger than its request.
    The receive buffer, keepalive timer and packet logging are tuned as tuning.py describes.
    """

    GLOBAL_REQUESTS: ClassVar[dict[str, str]] = {
        REQUEST_HANDSHAKE: "_answer_handshake",
        REQUEST_CONNECTED: "_answer_connected",
        REQUEST_STATUS: "_answer_status",
        REQUEST_CLIENT_VERIFICATION: "_answer_client_verification",
        "keepalive@openssh.com": "_answer_keepalive",
    }
    CHANNEL_OPENS: ClassVar[dict[str, str]] = {
        "direct-tcpip-no-split-tunnel@psiphon.ca": "_open_no_split_forward",
        "random@psiphon.ca": "_open_random_stream",
    }

    def send_packet(self, pkttype: int, *args: bytes, handler=None) -> None:
        # see tuning.py: no filler IGNOREs, channel data through the cheaper GCM path
        if not is_filler_ignore(pkttype, args) and not compat.send_data_fast(self, pkttype, args, handler):
            super().send_packet(pkttype, *args, handler=handler)

    def choose_server_host_key(self, peer_host_key_algs) -> bool:
        return compat.choose_own_host_key(self, peer_host_key_algs)

    def _answer_api_request(self, name: str, packet: SSHPacket) -> None:
        payload = packet.get_remaining_payload()
        self.create_task(self._finish_api_request(name, payload))

    async def _finish_api_request(self, name: str, payload: bytes) -> None:
        response: bytes | None = None
        try:
            response = await compat.server_object(self).policy.api_request(name, payload)
        except Exception as exc:  # the policy reports; a failure answer is all we owe
            log.debug("API request %s failed: %s", name, exc)
        if compat.is_attached(self):
            compat.answer_global_request(self, response if response else False)

    def _answer_handshake(self, packet: SSHPacket) -> None:
        self._answer_api_request(REQUEST_HANDSHAKE, packet)

    def _answer_connected(self, packet: SSHPacket) -> None:
        self._answer_api_request(REQUEST_CONNECTED, packet)

    def _answer_status(self, packet: SSHPacket) -> None:
        self._answer_api_request(REQUEST_STATUS, packet)

    def _answer_client_verification(self, packet: SSHPacket) -> None:
        self._answer_api_request(REQUEST_CLIENT_VERIFICATION, packet)

    def _answer_keepalive(self, packet: SSHPacket) -> None:
        # Psiphon's client pads keepalives (asyncssh's own handler disconnects on any payload)
        # and reads the reply as a speed-test sample: a timestamp and random padding.
        padding = os.urandom(secrets.randbelow(MAX_KEEPALIVE_PADDING + 1))
        compat.answer_global_request(self, encode_keepalive_response(time.time(), padding))

    def _open_no_split_forward(self, packet: SSHPacket):
        # Psiphon clients use this for forwards that split tunnelling must never divert:
        # an ordinary direct-tcpip forward, flagged for connection_requested (called from here).
        self.opening_no_split_forward = True
        try:
            return compat.open_direct_tcpip(self, packet)
        finally:
            self.opening_no_split_forward = False

    def _open_random_stream(self, packet: SSHPacket):
        try:
            request = json.loads(packet.get_remaining_payload() or b"{}")
            upstream = int(request.get("u", 0))
            downstream = int(request.get("d", 0))
        except (ValueError, TypeError, AttributeError):
            raise ChannelOpenError(OPEN_ADMINISTRATIVELY_PROHIBITED, "administratively prohibited") from None
        open_streams = getattr(self, "_open_random_streams", 0)
        policy = compat.server_object(self).policy
        if not (0 <= upstream <= RANDOM_STREAM_MAX_BYTES and 0 <= downstream <= RANDOM_STREAM_MAX_BYTES) \
                or open_streams >= MAX_OPEN_RANDOM_STREAMS or not policy.random_stream_allowed():
            raise ChannelOpenError(OPEN_ADMINISTRATIVELY_PROHIBITED, "administratively prohibited")
        self._open_random_streams = open_streams + 1
        chan = self.create_tcp_channel()
        tune_tunnel_channel(chan)
        return chan, RandomStreamSession(upstream, downstream, policy, on_closed=self._random_stream_closed)

    def _random_stream_closed(self) -> None:
        self._open_random_streams -= 1


class RandomStreamSession(asyncssh.SSHTCPSession):
    """Psiphon's liveness test: discard ``upstream`` bytes, send ``downstream`` random ones.

    Random bytes are made only as the channel's window takes them (asyncssh pauses writing
    when its send buffer is full) and are charged to the client's traffic rules both ways,
    so a client cannot make the server buffer or send more than its rules allow.
    """

    def __init__(self, upstream: int, downstream: int, policy: TunnelServerPolicy,
                 on_closed=lambda: None) -> None:
        self._expect = upstream
        self._send = downstream
        self._policy = policy
        self._on_closed = on_closed
        self._chan: asyncssh.SSHTCPChannel | None = None
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, chan) -> None:
        self._chan = chan

    def session_started(self) -> None:
        self._pump()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def _pump(self) -> None:
        self._timer = None
        while self._send > 0 and not self._paused and self._chan is not None:
            chunk = min(self._send, RANDOM_STREAM_CHUNK)
            self._send -= chunk
            self._chan.write(random_bytes(chunk))
            delay = self._policy.charge_downstream(chunk)
            if delay > 0:  # throttled: come back when the rules allow more
                self._timer = asyncio.get_running_loop().call_later(delay, self._pump)
                return
        self._maybe_close()

    def data_received(self, data: bytes, datatype) -> None:
        self._expect -= len(data)
        self._policy.charge_upstream(len(data))
        self._maybe_close()

    def _maybe_close(self) -> None:
        if self._expect <= 0 and self._send <= 0 and self._chan is not None:
            self._chan.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._chan = None
        self._on_closed()


def new_server_connection(options: asyncssh.SSHServerConnectionOptions,
                          **extra: Any) -> PsiphonServerConnection:
    """Create a server connection for an accepted stream; ``extra`` goes to get_extra_info."""
    conn = PsiphonServerConnection(asyncio.get_running_loop(), options)
    conn.set_extra_info(**extra)
    return conn
