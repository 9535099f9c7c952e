"""Dialing one tunnel: TCP (maybe via an upstream proxy), OSSH unless plain SSH, then SSH.

The server's host key is pinned from its entry (no other key is accepted, whatever the
address), keepalives detect a dead server, and API requests travel as SSH global
requests whose payload bytes follow the want-reply flag directly (Psiphon's framing).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from collections.abc import Awaitable, Callable

import asyncssh
from asyncssh.constants import MSG_REQUEST_SUCCESS

from ..core.ossh import ClientObfuscator, PrefixSpec
from ..errors import TunnelError
from ..net.bulkreads import read_in_bulk
from ..net.ossh import ObfuscatedWire
from . import asyncssh_compat
from .algorithms import COMPRESSION_ALGS, ENCRYPTION_ALGS, KEX_ALGS, MAC_ALGS
from .tuning import CHANNEL_MAX_PACKET, CHANNEL_WINDOW, tune_tunnel_channel, tune_client_connection

log = logging.getLogger(__name__)

SocketOpener = Callable[[str, int], Awaitable[socket.socket]]


@dataclass(frozen=True)
class ObfuscationParams:
    """Everything random about one OSSH dial, drawn by the caller."""

    keyword: str
    seed: bytes
    padding_prng_seed: bytes
    prefix: PrefixSpec | None = None
    prefix_seed: bytes | None = None
    prefix_split_delay: float = 0.0


@dataclass(frozen=True)
class DialTarget:
    """Where and how to dial: ``obfuscation`` None means plain SSH."""

    host: str
    port: int
    username: str
    password: str
    host_key: asyncssh.SSHKey
    client_version: str
    obfuscation: ObfuscationParams | None = None


class _StreamConnector:
    """asyncssh 'tunnel' object: opens the byte stream asyncssh runs SSH over."""

    def __init__(self, target: DialTarget, open_socket: SocketOpener) -> None:
        self._target = target
        self._open_socket = open_socket
        self.obfuscator: ClientObfuscator | None = None

    async def create_connection(self, session_factory, host: str, port: int):
        loop = asyncio.get_running_loop()
        sock = await self._open_socket(self._target.host, self._target.port)
        params = self._target.obfuscation
        if params is None:
            transport, conn = await loop.create_connection(lambda: tune_client_connection(session_factory()),
                                                           sock=sock)
            read_in_bulk(transport)
            return transport, conn
        self.obfuscator = ClientObfuscator(params.keyword, seed=params.seed,
                                           padding_prng_seed=params.padding_prng_seed,
                                           prefix=params.prefix, prefix_seed=params.prefix_seed)
        conn = tune_client_connection(session_factory())
        wire = ObfuscatedWire(self.obfuscator, upstream=conn, split_delay=params.prefix_split_delay)
        await loop.create_connection(lambda: wire, sock=sock)
        assert wire.upstream_transport is not None
        return wire.upstream_transport, conn


class TunnelClient:
    """An established SSH tunnel: API requests and direct-tcpip channels."""

    def __init__(self, conn: asyncssh.SSHClientConnection, obfuscator: ClientObfuscator | None) -> None:
        self.conn = conn
        self.obfuscator = obfuscator

    @property
    def upstream_ossh_padding(self) -> int | None:
        return self.obfuscator.padding_length if self.obfuscator else None

    async def api_request(self, name: str, payload: bytes, timeout: float = 10.0) -> bytes:
        """Send a Psiphon API request; return the raw response bytes."""
        try:
            pkttype, packet = await asyncio.wait_for(
                asyncssh_compat.send_global_request(self.conn, name.encode("ascii"), payload), timeout)
        except TimeoutError:
            raise TunnelError("api", f"{name}: no reply within {timeout:g}s") from None
        if pkttype != MSG_REQUEST_SUCCESS:
            raise TunnelError("api", f"{name}: the server refused the request")
        return packet.get_remaining_payload()

    async def open_channel(self, session_factory, host: str, port: int):
        """Open a direct-tcpip channel to (host, port); raises asyncssh.ChannelOpenError."""
        chan, session = await self.conn.create_connection(session_factory, host, port, window=CHANNEL_WINDOW,
                                                          max_pktsize=CHANNEL_MAX_PACKET)
        tune_tunnel_channel(chan)  # see tuning.py: Go peers may believe a smaller window
        return chan, session

    def close(self) -> None:
        self.conn.close()

    async def wait_closed(self) -> None:
        await self.conn.wait_closed()


async def open_tunnel(target: DialTarget, open_socket: SocketOpener, *,
                      keepalive_interval: float = 60.0, keepalive_count_max: int = 1,
                      timeout: float = 20.0) -> TunnelClient:
    """Dial, obfuscate and authenticate one tunnel within ``timeout`` seconds."""
    connector = _StreamConnector(target, open_socket)
    try:
        conn = await asyncio.wait_for(asyncssh.connect(
            target.host, target.port, tunnel=connector, config=None,
            username=target.username, password=target.password,
            known_hosts=([target.host_key], [], []), client_version=target.client_version,
            encryption_algs=list(ENCRYPTION_ALGS), mac_algs=list(MAC_ALGS),
            kex_algs=list(KEX_ALGS), compression_algs=list(COMPRESSION_ALGS),
            preferred_auth="password", client_keys=None, agent_path=None,
            gss_auth=False, kbdint_auth=False, public_key_auth=False,
            keepalive_interval=keepalive_interval, keepalive_count_max=keepalive_count_max,
            connect_timeout=None, login_timeout=timeout), timeout)
    except TimeoutError:
        raise TunnelError("connect", f"no SSH session within {timeout:g}s") from None
    except asyncssh.PermissionDenied:
        raise TunnelError("ssh-auth", "the server refused our credentials") from None
    except asyncssh.HostKeyNotVerifiable:
        raise TunnelError("ssh-host-key", "host key does not match the server entry") from None
    except (asyncssh.Error, OSError, EOFError) as exc:
        raise TunnelError("connect", str(exc) or type(exc).__name__) from None
    return TunnelClient(conn, connector.obfuscator)
