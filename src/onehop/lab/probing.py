"""The prober's I/O: connect to a server, send a probe, time its reaction.

``ProberDriver`` runs beside the middlebox: it polls the sans-IO ``ActiveProber`` for
due probes, sends them concurrently from the censor's vantage point (sockets come from
the topology, so in namespaces they start in the censor's namespace) and records each
reaction back into the prober.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

from .flows import Endpoint
from .prober import ActiveProber, ProbeTask, Reaction

log = logging.getLogger(__name__)

SocketFactory = Callable[[], socket.socket]
POLL_INTERVAL = 0.05


async def send_probe(new_socket: SocketFactory, target: Endpoint, payload: bytes, *,
                     window: float, connect_timeout: float = 3.0) -> Reaction:
    """Connect, send ``payload`` (nothing for an empty probe), read until the server
    closes or ``window`` seconds pass; the bytes read, the close kind and its time."""
    loop = asyncio.get_running_loop()
    sock = new_socket()
    sock.setblocking(False)
    started = time.monotonic()
    received = 0
    try:
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (target.ip, target.port)), connect_timeout)
        except ConnectionRefusedError:
            return Reaction(0, "refused", time.monotonic() - started)
        except (TimeoutError, OSError):
            return Reaction(0, "timeout", time.monotonic() - started)
        try:
            if payload:
                await loop.sock_sendall(sock, payload)
            while (remaining := started + window - time.monotonic()) > 0:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), remaining)
                if not chunk:
                    return Reaction(received, "fin", time.monotonic() - started)
                received += len(chunk)
        except TimeoutError:
            pass
        except ConnectionResetError:
            return Reaction(received, "rst", time.monotonic() - started)
        except OSError as exc:
            log.debug("probe to %s: %s", target, exc)
            return Reaction(received, "rst", time.monotonic() - started)
        return Reaction(received, "timeout", window)
    finally:
        sock.close()


class ProberDriver:
    def __init__(self, prober: ActiveProber, new_socket: SocketFactory, *, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.prober = prober
        self.new_socket = new_socket
        self.window = window
        self.clock = clock
        self.sent: list[tuple[ProbeTask, Reaction]] = []
        self._task: asyncio.Task | None = None
        self._in_flight: set[asyncio.Task] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            for task in self.prober.due(self.clock()):
                probe = asyncio.get_running_loop().create_task(self._probe(task))
                self._in_flight.add(probe)
                probe.add_done_callback(self._in_flight.discard)
            await asyncio.sleep(POLL_INTERVAL)

    async def _probe(self, task: ProbeTask) -> None:
        reaction = await send_probe(self.new_socket, task.target, task.probe.payload, window=self.window)
        self.sent.append((task, reaction))
        self.prober.record(task, reaction)

    async def settle(self, timeout: float) -> bool:
        """Wait until every server seen so far has been judged; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.prober.pending or self._in_flight:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_INTERVAL)
        return True

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
