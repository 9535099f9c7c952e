"""Accepting TCP connections with a cap on those still in their handshake.

A connection that has not finished its handshake (the OSSH preamble, or SSH up to
authentication) costs a descriptor and memory and proves nothing. :class:`AcceptGate`
caps how many may be in that state at once, in total and per source address, shared by
every listener of a server:

* at the total cap the listeners stop calling ``accept()``: new connections wait in the
  kernel's backlog (to a peer, indistinguishable from a slow server) and are accepted as
  handshakes finish or time out;
* beyond the per-source cap a connection is closed the way a failed probe is closed: not
  a byte sent, what arrived is read first so the close is a FIN, never a reset. It is
  closed at once (holding it to the handshake deadline would keep the descriptor the cap
  is there to protect);
* ``accept()`` failing for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
  ENOMEM) backs off (50 ms doubling to 1 s) with one log line per minute, instead of
  asyncio's traceback per attempt.

The defaults follow RLIMIT_NOFILE (:func:`default_caps`). Source addresses are kept in
memory only, as counters, and never logged.
"""

from __future__ import annotations

import asyncio
import ipaddress
import errno
import logging
import resource
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
LOG_INTERVAL = 60.0
MIN_BACKOFF, MAX_BACKOFF = 0.05, 1.0
_DRAIN_READS = 16


def default_caps(nofile: int | None = None) -> tuple[int, int]:
    """(total, per source) handshake caps for a process allowed ``nofile`` descriptors:
    a quarter of them in handshakes at most (8..1024), an eighth of that per source (2..32)."""
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if nofile == resource.RLIM_INFINITY:
            nofile = 1 << 20
    total = max(8, min(1024, nofile // 4))
    return total, max(2, min(32, total // 8))


class RateLimitedLog:
    """At most one line per ``interval`` seconds; the lines in between are counted."""

    def __init__(self, interval: float = LOG_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self._clock = interval, clock
        self._last = -interval
        self._suppressed = 0

    def warning(self, message: str) -> bool:
        now = self._clock()
        if now - self._last < self.interval:
            self._suppressed += 1
            return False
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        log.warning("%s%s", message, more)
        self._last, self._suppressed = now, 0
        return True


class Admission:
    """One connection's place in the handshake cap; :meth:`release` once it is through
    (or gone). Releasing twice is harmless."""

    __slots__ = ("_gate", "_source")

    def __init__(self, gate: AcceptGate, source: str) -> None:
        self._gate: AcceptGate | None = gate
        self._source = source

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._release(self._source)


class AcceptGate:
    """The handshake caps shared by a server's listeners."""

    def __init__(self, max_pending: int | None = None, max_pending_per_source: int | None = None) -> None:
        total, per_source = default_caps()
        self.max_pending = max_pending or total
        self.max_pending_per_source = max_pending_per_source or per_source
        self.pending = 0
        self._by_source: dict[str, int] = {}
        self._room = asyncio.Event()
        self._room.set()
        self.refused = 0
        self._refusals = RateLimitedLog()

    def admit(self, source: str) -> Admission | None:
        """A place for a connection from ``source``, or None beyond its cap."""
        held = self._by_source.get(source, 0)
        if held >= self.max_pending_per_source:
            self.refused += 1
            self._refusals.warning(f"closing connections beyond {self.max_pending_per_source} handshakes "
                                   f"in progress from one source")
            return None
        self._by_source[source] = held + 1
        self.pending += 1
        if self.pending >= self.max_pending:
            self._room.clear()
        return Admission(self, source)

    def _release(self, source: str) -> None:
        held = self._by_source.get(source, 0) - 1
        if held > 0:
            self._by_source[source] = held
        else:
            self._by_source.pop(source, None)
        self.pending -= 1
        if self.pending < self.max_pending:
            self._room.set()

    async def wait_for_room(self) -> None:
        await self._room.wait()


def source_key(ip: str) -> str:
    """What the per-source cap counts by: the IPv4 address, or the /64 of an IPv6 address
    (one host gets a whole /64, so counting addresses would not cap it)."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def close_silently(conn: socket.socket) -> None:
    """Close an accepted socket without a byte: read what arrived (so the close is a FIN,
    not a reset), send FIN, close."""
    try:
        conn.setblocking(False)
        for _ in range(_DRAIN_READS):
            if not conn.recv(65536):
                break
    except OSError:
        pass
    try:
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    conn.close()


class ReleasingProtocol(asyncio.Protocol):
    """Wraps a protocol that cannot hold an admission itself (a library's, with
    ``__slots__``): everything is passed on, and the admission is released when the
    connection is lost. For listeners whose whole connection counts against the cap."""

    def __init__(self, inner: asyncio.Protocol, admission: Admission) -> None:
        self._inner, self._admission = inner, admission

    def connection_made(self, transport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self):
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc) -> None:
        self._admission.release()
        self._inner.connection_lost(exc)


ProtocolFactory = Callable[[Admission], asyncio.Protocol]

#: After our FIN, how long a held connection waits for the peer's before closing anyway.
HOLD_LINGER = 10.0


class HeldConnection(asyncio.Protocol):
    """A connection beyond its source's cap, treated as any failed probe is: everything it
    sends is read and dropped, nothing is sent, and at the handshake deadline it gets a FIN
    (or, if the peer closes first, a quiet close). Closing it at once instead would tell a
    prober holding many connections where the cap is."""

    def __init__(self, hold_for: float, on_lost: Callable[[], None]) -> None:
        self._hold_for, self._on_lost = hold_for, on_lost
        self._transport: asyncio.Transport | None = None
        self._timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._timers.append(asyncio.get_running_loop().call_later(self._hold_for, self._deadline))

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self):
        return None  # the peer gave up: close quietly, as the listeners do

    def _deadline(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
            self._timers.append(asyncio.get_running_loop().call_later(HOLD_LINGER, transport.close))
        else:
            transport.close()

    def connection_lost(self, exc) -> None:
        for timer in self._timers:
            timer.cancel()
        self._transport = None
        self._on_lost()


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    return socket.create_server((host, port), family=family, backlog=backlog)


class GatedServer:
    """A listening socket served by an accept loop that honours an :class:`AcceptGate`.

    It offers what the server uses of ``asyncio.Server``: ``sockets``, ``close()``,
    ``wait_closed()``, ``is_serving()``. ``factory(admission)`` makes the protocol of each
    admitted connection; the protocol releases the admission when its handshake is done
    and when the connection is lost.
    """

    def __init__(self, factory: ProtocolFactory, gate: AcceptGate, name: str,
                 hold_for: float | None = None) -> None:
        """``hold_for``: hold connections beyond a source's cap this long, as a failed probe
        is held (None: close them at once, for listeners that are not probe-resistant)."""
        self._factory, self.gate, self.name = factory, gate, name
        self._hold_for = hold_for
        self.held = 0
        self._sock: socket.socket | None = None
        self._task: asyncio.Task | None = None
        self._connecting: set[asyncio.Task] = set()
        self._exhausted = RateLimitedLog()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return (self._sock,) if self._sock is not None else ()

    def is_serving(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self, host: str, port: int, backlog: int = 1024,
                    sock: socket.socket | None = None) -> GatedServer:
        """Listen on ``host:port``, or accept on ``sock``, a listening socket made elsewhere
        (a server's worker processes accept on the one socket their supervisor bound)."""
        if sock is None:
            sock = listening_socket(host, port, backlog)
        sock.setblocking(False)
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._serve(sock))
        return self

    async def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        delay = 0.0
        while True:
            await self.gate.wait_for_room()
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno == errno.ECONNABORTED:
                    continue
                delay = min(MAX_BACKOFF, max(MIN_BACKOFF, delay * 2))
                what = "out of descriptors or memory" if exc.errno in EXHAUSTED else "failed"
                self._exhausted.warning(f"{self.name}: accept() {what} ({exc.strerror or exc}); "
                                        f"pausing accepts up to {MAX_BACKOFF:g} s at a time")
                await asyncio.sleep(delay)
                continue
            delay = 0.0
            admission = self.gate.admit(source_key(address[0]) if isinstance(address, tuple) else "")
            if admission is None:
                self._refuse(conn)
                continue
            task = loop.create_task(self._connect(conn, admission))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    def _refuse(self, conn: socket.socket) -> None:
        """Beyond a source's cap: held like a failed probe while the held ones stay within
        the total cap (so descriptors stay bounded), else closed at once."""
        if self._hold_for is None or self.held >= self.gate.max_pending:
            close_silently(conn)
            return
        self.held += 1
        task = asyncio.get_running_loop().create_task(self._hold(conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _hold(self, conn: socket.socket) -> None:
        hold_for = self._hold_for
        assert hold_for is not None  # _refuse holds only when a hold time is set
        def lost() -> None:
            self.held -= 1
        try:
            conn.setblocking(False)
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: HeldConnection(hold_for, lost), sock=conn)
        except BaseException as exc:
            lost()
            conn.close()
            if not isinstance(exc, (OSError, asyncio.CancelledError)):
                raise

    async def _connect(self, conn: socket.socket, admission: Admission) -> None:
        try:
            conn.setblocking(False)
            await asyncio.get_running_loop().connect_accepted_socket(lambda: self._factory(admission), sock=conn)
        except BaseException as exc:
            admission.release()
            conn.close()
            if not isinstance(exc, (OSError, asyncio.CancelledError)):
                raise

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._connecting):
            task.cancel()
        if self._sock is not None and self._sock.fileno() >= 0:
            try:
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            except RuntimeError:  # no running loop: nothing is registered
                pass
            self._sock.close()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
