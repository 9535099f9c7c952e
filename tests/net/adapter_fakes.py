"""Fakes for unit tests of the OSSH asyncio adapters (``net.ossh``, ``net.listener``):
the socket's transport, the SSH protocol above the obfuscator, a key deriver the test
releases, a seed history, and the SSH bytes a client's first flight carries."""

from __future__ import annotations

import asyncio
import os
import struct

from onehop.core.ossh import ClientObfuscator, default_client_prefix
from onehop.core.ossh.sshframing import parse_packet_header
from onehop.net.keypool import derive_inline

KEYWORD = "3c5a9e01" * 8
PEER_IP = "203.0.113.77"
CLIENT_LINE = b"SSH-2.0-OpenSSH_8.9\r\n"
SERVER_LINE = b"SSH-2.0-OpenSSH_7.7\r\n"


def ssh_packet(payload: bytes, block: int = 8) -> bytes:
    padding = block - (5 + len(payload)) % block
    if padding < 4:
        padding += block
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + b"\xaa" * padding


KEXINIT_PAYLOAD = b"\x14" + bytes(range(16)) + b"\x00" * 60
KEXINIT = ssh_packet(KEXINIT_PAYLOAD)
NEWKEYS = ssh_packet(b"\x15")


def packet_payloads(data: bytes) -> list[bytes]:
    """The payloads of the SSH binary packets ``data`` holds (padding may differ from what
    was sent: OSSH re-pads KEX packets)."""
    payloads = []
    while data:
        header = parse_packet_header(data)
        assert header is not None and len(data) >= header.total_length
        payloads.append(data[5:5 + header.payload_length])
        data = data[header.total_length:]
    return payloads


def ossh_client(keyword: str = KEYWORD, prefix: bool = False, max_padding: int | None = None) -> ClientObfuscator:
    return ClientObfuscator(keyword, seed=os.urandom(16), padding_prng_seed=os.urandom(32), max_padding=max_padding,
                            prefix=default_client_prefix() if prefix else None,
                            prefix_seed=os.urandom(32) if prefix else None)


def first_flight(client: ClientObfuscator) -> bytes:
    """What a client sends first: its preamble, then its obfuscated line and KEXINIT."""
    client.send(CLIENT_LINE + KEXINIT)
    return client.data_to_send()


class FakeWire(asyncio.Transport):
    """The socket's transport. ``log`` lists ``(loop time, what)`` for every write, EOF,
    close, abort and reading change; like asyncio's own transports, ``close`` and
    ``abort`` tell the protocol ``connection_lost`` on the next loop turn, and writing
    after ``write_eof`` raises."""

    def __init__(self, peer: tuple[str, int] | None = (PEER_IP, 51515), can_write_eof: bool = True) -> None:
        super().__init__()
        self.protocol: asyncio.Protocol | None = None
        self.peer = peer
        self.writes: list[bytes] = []
        self.log: list[tuple[float, str]] = []
        self.kernel_buffered = 0  # what get_write_buffer_size reports for the socket itself
        self.limits: tuple[int, int] | None = None
        self._can_write_eof = can_write_eof
        self._eof_written = False
        self._closing = False
        self._reading = True

    # -- driving the protocol, as the loop would -------------------------------------

    def connect(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol
        protocol.connection_made(self)

    def feed(self, data: bytes) -> None:
        assert self.protocol is not None and not self._closing
        self.protocol.data_received(data)

    def feed_eof(self) -> None:
        assert self.protocol is not None
        if not self.protocol.eof_received():
            self.close()

    def reset_by_peer(self) -> None:
        """The peer's RST: the transport is closed and the protocol told, with the error."""
        assert self.protocol is not None and not self._closing
        self._closing = True
        self._record("reset_by_peer")
        asyncio.get_running_loop().call_soon(self.protocol.connection_lost, ConnectionResetError())

    # -- what the tests read -----------------------------------------------------------

    @property
    def sent(self) -> bytes:
        return b"".join(self.writes)

    def actions(self) -> list[str]:
        return [what for _, what in self.log]

    def _record(self, what: str) -> None:
        self.log.append((asyncio.get_running_loop().time(), what))

    # -- asyncio.Transport ---------------------------------------------------------------

    def get_extra_info(self, name, default=None):
        return {"peername": self.peer}.get(name, default) if self.peer else default

    def write(self, data) -> None:
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        assert not self._closing, "write after close"
        self.writes.append(bytes(data))
        self._record("write")

    def write_eof(self) -> None:
        self._eof_written = True
        self._record("write_eof")

    def can_write_eof(self) -> bool:
        return self._can_write_eof

    def close(self) -> None:
        self._end("close")

    def abort(self) -> None:
        self._end("abort")

    def _end(self, how: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._record(how)
        if self.protocol is not None:
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self._reading = False
        self._record("pause_reading")

    def resume_reading(self) -> None:
        self._reading = True
        self._record("resume_reading")

    def is_reading(self) -> bool:
        return self._reading

    def get_write_buffer_size(self) -> int:
        return self.kernel_buffered

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.limits = (high, low)

    def get_write_buffer_limits(self):
        return self.limits


class FakeSSH(asyncio.Protocol):
    """The SSH library's protocol above the obfuscator: records what it is given."""

    def __init__(self, keep_open_on_eof: bool = True) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.calls: list[str] = []
        self.lost: list[BaseException | None] = []
        self.keep_open = keep_open_on_eof

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.calls.append("connection_made")

    def data_received(self, data: bytes) -> None:
        self.received += data

    def eof_received(self):
        self.calls.append("eof_received")
        return self.keep_open

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")

    def connection_lost(self, exc) -> None:
        self.calls.append("connection_lost")
        self.lost.append(exc)


class FakeSSHFactory:
    """The listener's ``ssh_factory``: records each call and makes a FakeSSH."""

    def __init__(self, with_admission_slot: bool = False) -> None:
        self.calls: list[tuple[object, asyncio.Transport]] = []
        self.protocols: list[FakeSSH] = []
        self._with_admission_slot = with_admission_slot

    def __call__(self, event, transport) -> FakeSSH:
        protocol = FakeSSH()
        if self._with_admission_slot:
            protocol.admission = None  # type: ignore[attr-defined]
        self.calls.append((event, transport))
        self.protocols.append(protocol)
        return protocol


class GatedKeyDeriver:
    """A ``KeyDeriver`` whose ``derive`` waits until the test calls ``release()``; then it
    derives the real keys. Records every request and every cancellation."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes]] = []
        self.cancelled = 0
        self.started = asyncio.Event()
        self._released = asyncio.Event()

    def release(self) -> None:
        self._released.set()

    async def derive(self, seed: bytes, keyword: bytes) -> tuple[bytes, bytes]:
        self.requests.append((seed, keyword))
        self.started.set()
        try:
            await self._released.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return derive_inline(seed, keyword)


class FakeSeedHistory:
    """A ``SeedHistory``: fresh the first time a seed is seen, a replay after; records
    ``(seed, now)`` for every question."""

    def __init__(self) -> None:
        self.asked: list[tuple[bytes, float]] = []
        self._seen: set[bytes] = set()

    def add_new(self, seed: bytes, now: float) -> bool:
        self.asked.append((seed, now))
        fresh = seed not in self._seen
        self._seen.add(seed)
        return fresh
