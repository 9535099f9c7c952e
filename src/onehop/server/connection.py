"""The server's SSH connection: Psiphon's SSH protocol plus the upstream rate limit.

Reads from the client's socket are charged to the client's upstream token bucket
(``ReadBytesPerSecond``, as Psiphon throttles the whole connection); while the bucket
is in debt the socket is not read, so nothing piles up in the server: the client's
TCP window fills and it waits. Logins skip asyncssh's per-login config reload.
"""

from __future__ import annotations

import asyncio
from typing import Any
from collections.abc import Callable

import asyncssh

from ..net.bulkreads import read_in_bulk
from ..tunnel.server import PsiphonServerConnection
from .throttle import PausableReader


class ServerConnection(PsiphonServerConnection):
    #: Set by the session: charge n bytes read, get the seconds to pause reading.
    charge_upstream: Callable[[int], float] | None = None
    #: Set by a listener that caps connections in their handshake: released once the
    #: client has authenticated (``auth_completed``) or the connection is lost.
    admission: Any = None

    def auth_completed(self) -> None:
        if self.admission is not None:
            self.admission.release()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._upstream_reader = PausableReader()
        self._upstream_reader.attach(transport)
        read_in_bulk(transport)
        super().connection_made(transport)

    def read_small(self) -> None:
        """The client's upstream is rate-limited: read from its socket in small bursts."""
        self._upstream_reader.read_small()

    def pause_writing(self) -> None:
        # asyncssh ignores it: a client that never reads would have every answer (API
        # padding, keepalive replies) queued here. Stop reading it until they drain.
        super().pause_writing()
        self._upstream_reader.flow_pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._upstream_reader.flow_resume()

    def data_received(self, data: bytes, datatype=None) -> None:
        super().data_received(data, datatype)
        charge = self.charge_upstream
        if charge is not None:
            delay = charge(len(data))
            if delay > 0:
                self._upstream_reader.throttle(delay)

    def connection_lost(self, exc: Exception | None = None) -> None:
        self.auth_completed()  # gone: its place in the handshake cap is free either way
        self._upstream_reader.close()
        super().connection_lost(exc)

    async def reload_config(self) -> None:
        """Keep the options as they are.

        asyncssh re-evaluates OpenSSH-style config for every login: it rebuilds the whole
        options object in a worker thread, including a ``socket.getfqdn()`` DNS lookup.
        The server passes no config (``config=None``), so the result would be the same
        options; skipping it saves that work on every handshake and keeps logins from
        queueing behind a slow resolver.
        """


def new_connection(options: asyncssh.SSHServerConnectionOptions, **extra: Any) -> ServerConnection:
    """A server connection for an accepted stream; ``extra`` goes to get_extra_info."""
    conn = ServerConnection(asyncio.get_running_loop(), options)
    conn.set_extra_info(**extra)
    return conn
