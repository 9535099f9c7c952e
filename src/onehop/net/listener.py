"""OSSH listener: the accept path with a handshake deadline and probe-silent failure.

A connection whose preamble is invalid, replayed, or simply incomplete gets no byte
back. The server keeps reading and discarding until the peer closes or the handshake
deadline passes, then sends FIN (never RST: everything received has been read) and
closes shortly after. The behaviour is identical whatever, and however much, was sent.
Rejections, timeouts and half-sent preambles are reported to ``on_irregular`` with the
peer's address (for a GeoIP region computed in memory; the address goes no further).
Key derivation can run in worker processes (``key_deriver``) instead of on the loop.
Connections still in the handshake (the preamble, then, when the SSH protocol takes an
``admission``, until SSH authentication) are capped, in total and per source, by an
:class:`~onehop.net.acceptgate.AcceptGate` (shared with the server's other listeners):
beyond the total cap nothing is accepted; beyond a source's cap a connection is held and
closed exactly as a failed probe is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from ..core.api.protocols import TunnelProtocol
from ..core.ossh import DEFAULT_SERVER_PREFIX_SPECS, PreambleReceived, ReplayHistory, SeedHistory, ServerObfuscator
from ..core.ossh.events import KeysNeeded
from ..core.sansio import drain
from ..errors import OSSHReason, ProtocolError, RemoteProtocolError
from .acceptgate import AcceptGate, Admission, GatedServer
from .keypool import KeyDeriver
from .ossh import ObfuscatedTransport, ObfuscatedWire

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT = 30.0
#: After our FIN, how long we wait for the peer's before closing anyway.
CLOSE_LINGER = 10.0

SSHFactory = Callable[[PreambleReceived, ObfuscatedTransport], asyncio.Protocol]
IrregularReport = Callable[[ProtocolError, str], None]


class ProbeSilentConnection(ObfuscatedWire):
    """One accepted OSSH connection."""

    def __init__(self, listener: OSSHListener, admission: Admission | None = None) -> None:
        obfuscator = ServerObfuscator(listener.keyword, replay_check=listener.replay_check,
                                      random_bytes=os.urandom, prefix_specs=listener.prefix_specs,
                                      defer_key_derivation=listener.deriver is not None)
        super().__init__(obfuscator, on_preamble=self._preamble, on_error=self._rejected,
                         on_event=self._other_event)
        self._server_obfuscator = obfuscator  # the same object, typed as the server side
        self._listener = listener
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._derivations: set[asyncio.Task] = set()
        self._admission = admission
        self.established = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._listener.handshake_timeout, self._deadline_passed)
        self._listener.connections.add(self)

    def _peer_ip(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return peer[0] if peer else ""

    def _preamble(self, event: PreambleReceived, transport: ObfuscatedTransport) -> asyncio.Protocol:
        self.established = True  # from here the SSH layer's own login timeout applies
        if self._deadline is not None:
            self._deadline.cancel()
        protocol = self._listener.ssh_factory(event, transport)
        admission, self._admission = self._admission, None
        if admission is not None:
            if hasattr(protocol, "admission"):  # the SSH layer holds the place until authentication
                protocol.admission = admission
            else:
                admission.release()
        return protocol

    def _other_event(self, event) -> None:
        deriver = self._listener.deriver
        if isinstance(event, KeysNeeded) and deriver is not None:
            task = asyncio.get_running_loop().create_task(self._derive(deriver, event.seed))
            self._derivations.add(task)
            task.add_done_callback(self._derivations.discard)

    async def _derive(self, deriver: KeyDeriver, seed: bytes) -> None:
        keys = await deriver.derive(seed, self._listener.keyword.encode("utf-8"))
        self._server_obfuscator.provide_keys(seed, *keys)
        if self.transport is None or self.transport.is_closing() or self.failed:
            self._record_seed()
            return
        self._drain_events()

    def _record_seed(self) -> None:
        """The connection is gone (or past its deadline) but what it sent still counts:
        validate its seed into the replay history, answering and reporting nothing. Keys
        derived on the loop would have recorded it on arrival; without this, a flight whose
        connection was cut while its keys derived could be replayed as a fresh one."""
        try:
            for event in drain(self._obfuscator):
                if isinstance(event, KeysNeeded):  # the real seed, behind a prefix
                    self._other_event(event)
        except ProtocolError:
            pass

    def _rejected(self, error: ProtocolError) -> None:
        self._listener.report_irregular(error, self._peer_ip())

    def _deadline_passed(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self.established and not self.failed:
            self._listener.report_irregular(
                RemoteProtocolError(OSSHReason.HANDSHAKE_TIMEOUT, "no complete preamble in time"), self._peer_ip())
        self.failed = True
        if transport.can_write_eof():
            transport.write_eof()  # FIN; we keep draining so close never resets
            self._linger = asyncio.get_running_loop().call_later(CLOSE_LINGER, transport.close)
        else:
            transport.close()

    def eof_received(self):
        if self.failed or not self.established:
            if not self.failed and self.bytes_received:
                self._listener.report_irregular(
                    RemoteProtocolError(OSSHReason.INCOMPLETE_PREAMBLE, "closed before a complete preamble"),
                    self._peer_ip())
            self.failed = True
            return None  # the peer gave up: close quietly
        return super().eof_received()

    def connection_lost(self, exc) -> None:
        for timer in (self._deadline, self._linger):
            if timer is not None:
                timer.cancel()
        # derivations run on: their seeds go into the replay history (see _record_seed)
        if self._admission is not None:
            self._admission.release()
        self._listener.connections.discard(self)
        super().connection_lost(exc)


class OSSHListener:
    """Accepts OSSH (with or without prefix) on one TCP port."""

    def __init__(self, keyword: str, ssh_factory: SSHFactory, *,
                 history: ReplayHistory | None = None,
                 handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
                 prefix_specs: Mapping[str, str] = DEFAULT_SERVER_PREFIX_SPECS,
                 on_irregular: IrregularReport | None = None,
                 key_deriver: KeyDeriver | None = None,
                 gate: AcceptGate | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.keyword = keyword
        self.ssh_factory = ssh_factory
        self.history = history if history is not None else SeedHistory()
        self.handshake_timeout = handshake_timeout
        self.prefix_specs = dict(prefix_specs)
        self.deriver = key_deriver
        self._on_irregular = on_irregular
        self._clock = clock
        self.connections: set[ProbeSilentConnection] = set()
        self.gate = gate
        self.server: GatedServer | None = None

    def replay_check(self, seed: bytes) -> bool:
        return self.history.add_new(seed, self._clock())

    def report_irregular(self, error: ProtocolError, peer_ip: str = "") -> None:
        log.info("irregular OSSH connection: %s", error.reason)
        if self._on_irregular is not None:
            self._on_irregular(error, peer_ip)

    async def start(self, host: str, port: int, sock: socket.socket | None = None) -> GatedServer:
        """``sock``: an already listening socket to accept on instead of binding ``host:port``."""
        if self.gate is None:
            self.gate = AcceptGate()
        gated = GatedServer(lambda admission: ProbeSilentConnection(self, admission), self.gate,
                            TunnelProtocol.OSSH, hold_for=self.handshake_timeout)
        self.server = await gated.start(host, port, backlog=1024, sock=sock)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
