"""SSH channels: ``record_channel_opens`` (which destinations a controller's tunnel was
asked for), and the ``random@psiphon.ca`` liveness stream that asyncssh has no public
call for (the client sends ``u`` random bytes, the server answers ``d`` random bytes and
closes)."""

from __future__ import annotations

import asyncio
import json
import os

import asyncssh


def record_channel_opens(controller) -> list[tuple[str, int]]:
    """The (host, port) of every channel ``controller.open_channel`` opens from now on."""
    opened: list[tuple[str, int]] = []
    original = controller.open_channel

    async def recording(factory, host, port):
        opened.append((host, port))
        return await original(factory, host, port)

    controller.open_channel = recording
    return opened


async def open_random_stream(conn: asyncssh.SSHClientConnection, upstream: int, downstream: int,
                             window: int | None = None,
                             session: asyncssh.SSHTCPSession | None = None) -> asyncssh.SSHTCPChannel:
    """The channel, open; ``session`` gets its data (the default drops it, never reading:
    the window stays at ``window`` until the caller calls ``resume_reading``)."""
    chan = conn.create_tcp_channel() if window is None else conn.create_tcp_channel(window=window)
    await chan._open(b"random@psiphon.ca", json.dumps({"u": upstream, "d": downstream}).encode())
    chan._session = session if session is not None else asyncssh.SSHTCPSession()
    chan._session.connection_made(chan)
    return chan


class _Counter(asyncssh.SSHTCPSession):
    def __init__(self) -> None:
        self.received = 0
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data, datatype) -> None:
        self.received += len(data)

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def random_stream_bytes(conn: asyncssh.SSHClientConnection, upstream: int, downstream: int,
                              timeout: float) -> int:
    """Send ``upstream`` random bytes on a new random stream; how many came back before the
    server closed it."""
    counter = _Counter()
    chan = await open_random_stream(conn, upstream, downstream, session=counter)
    chan.resume_reading()
    chan.write(os.urandom(upstream))
    await asyncio.wait_for(counter.closed, timeout)
    return counter.received
