"""``net.ossh`` unit tests: ``ObfuscatedWire`` and its ``ObfuscatedTransport`` between a
fake socket transport and a fake SSH protocol, with the real sans-IO OSSH core on both
sides (no sockets; timers run on a virtual clock)."""

from __future__ import annotations

import asyncio
import os

import pytest

from onehop.core.ossh import DataReceived, PreambleReceived, ServerObfuscator
from onehop.core.sansio import drain
from onehop.errors import OSSHReason, RemoteProtocolError
from onehop.net.ossh import ObfuscatedTransport, ObfuscatedWire
from onehop.net.ownedbuffer import OwnedBuffer
from tests.helpers.virtualtime import run_in_virtual_time
from tests.net.adapter_fakes import (CLIENT_LINE, KEXINIT, KEXINIT_PAYLOAD, KEYWORD, NEWKEYS, PEER_IP,
                                     SERVER_LINE, FakeSeedHistory, FakeSSH, FakeWire, first_flight,
                                     ossh_client, packet_payloads)


def plaintext(obfuscator) -> bytes:
    """The SSH bytes a sans-IO OSSH endpoint has for its SSH layer now."""
    return b"".join(e.data for e in drain(obfuscator) if isinstance(e, DataReceived))


class ServerSide:
    """An ObfuscatedWire in the server role on a FakeWire; the SSH protocol it makes on a
    valid preamble is a FakeSSH."""

    def __init__(self) -> None:
        self.history = FakeSeedHistory()
        self.preambles: list[tuple[PreambleReceived, ObfuscatedTransport]] = []
        self.errors: list[RemoteProtocolError] = []
        self.ssh = FakeSSH()
        obfuscator = ServerObfuscator(KEYWORD, replay_check=lambda seed: self.history.add_new(seed, 0.0),
                                      random_bytes=os.urandom)
        self.protocol = ObfuscatedWire(obfuscator, on_preamble=self._preamble, on_error=self.errors.append)
        self.wire = FakeWire()
        self.wire.connect(self.protocol)

    def _preamble(self, event, transport):
        self.preambles.append((event, transport))
        return self.ssh

    @property
    def transport(self) -> ObfuscatedTransport:
        assert self.protocol.upstream_transport is not None
        return self.protocol.upstream_transport


def established() -> tuple[ServerSide, object]:
    """A server-side wire past both NEWKEYS (both directions pass through), and the client."""
    server, client = ServerSide(), ossh_client()
    server.wire.feed(first_flight(client))
    server.transport.write(SERVER_LINE + KEXINIT + NEWKEYS)
    client.receive_data(server.wire.sent)
    assert plaintext(client).startswith(SERVER_LINE)
    client.send(NEWKEYS)
    server.wire.feed(client.data_to_send())
    assert server.transport._obfuscator.write_passthrough and server.transport._obfuscator.read_passthrough
    return server, client


# -- server role: the preamble and the obfuscated KEX ------------------------------------


@pytest.mark.parametrize("chunk", [None, 1, 7], ids=["whole", "bytewise", "7-bytes"])
@run_in_virtual_time
async def test_a_valid_preamble_makes_the_ssh_protocol_and_it_gets_the_plaintext(chunk):
    server, client = ServerSide(), ossh_client()
    flight = first_flight(client)
    for start in range(0, len(flight), chunk or len(flight)):
        server.wire.feed(flight[start:start + (chunk or len(flight))])
    [(event, transport)] = server.preambles
    assert event == PreambleReceived(client.padding_length, None)
    assert transport is server.transport and server.ssh.transport is transport
    assert server.ssh.calls == ["connection_made"]
    received = bytes(server.ssh.received)
    assert received.startswith(CLIENT_LINE)
    assert packet_payloads(received[len(CLIENT_LINE):]) == [KEXINIT_PAYLOAD]
    assert server.history.asked == [(flight[:16], 0.0)]
    assert server.errors == [] and server.wire.writes == []  # the server speaks only when SSH does


@run_in_virtual_time
async def test_kex_writes_are_obfuscated_and_written_at_once():
    server, client = ServerSide(), ossh_client()
    server.wire.feed(first_flight(client))
    server.transport.write(SERVER_LINE + KEXINIT + NEWKEYS)
    assert server.wire.writes, "KEX writes are not held for the end of the loop turn"
    assert SERVER_LINE not in server.wire.sent and KEXINIT_PAYLOAD not in server.wire.sent
    client.receive_data(server.wire.sent)
    received = plaintext(client)
    assert received.startswith(SERVER_LINE)
    assert packet_payloads(received[len(SERVER_LINE):]) == [KEXINIT_PAYLOAD, b"\x15"]


@run_in_virtual_time
async def test_after_the_peers_newkeys_received_bytes_go_up_unchanged():
    server, _ = established()
    before = len(server.ssh.received)
    server.wire.feed(b"\x00ciphertext\xff")
    assert bytes(server.ssh.received[before:]) == b"\x00ciphertext\xff"


# -- server role: passthrough writes, coalesced per loop turn -----------------------------


@run_in_virtual_time
async def test_passthrough_writes_of_one_loop_turn_go_out_as_one_write_counted_until_then():
    server, client = established()
    transport, wire = server.transport, server.wire
    wire.kernel_buffered = 100
    written = len(wire.writes)
    mutable = bytearray(b"beta")
    transport.write(b"alpha")
    transport.write(mutable)
    transport.writelines([b"gam", memoryview(b"ma")])
    mutable[:] = b"XXXX"  # a caller may reuse its buffer once write() returned
    assert len(wire.writes) == written
    assert transport.get_write_buffer_size() == 100 + len(b"alphabetagamma")
    await asyncio.sleep(0)
    assert wire.writes[written:] == [b"alphabetagamma"]
    assert transport.get_write_buffer_size() == 100
    client.receive_data(wire.writes[-1])
    assert plaintext(client) == b"alphabetagamma"  # passthrough: the SSH cipher is the only one


@run_in_virtual_time
async def test_an_owned_buffer_waits_for_the_flush_uncopied():
    server, _ = established()
    transport, wire = server.transport, server.wire
    owned, mutable = OwnedBuffer(b"batch"), bytearray(b"reused")
    transport.write(owned)
    transport.write(mutable)
    pending = transport._pending
    assert pending is not None and pending[0] is owned  # handed over: kept as it is
    assert type(pending[1]) is bytes  # a plain bytearray may change after write(): copied
    await asyncio.sleep(0)
    assert wire.writes[-1] == b"batchreused"


@run_in_virtual_time
async def test_pending_writes_go_out_before_write_eof():
    server, _ = established()
    server.transport.write(b"last words")
    server.transport.write_eof()
    assert server.wire.writes[-1] == b"last words"
    assert server.wire.actions()[-2:] == ["write", "write_eof"]
    await asyncio.sleep(0)
    assert server.wire.actions()[-1] == "write_eof"


@run_in_virtual_time
async def test_pending_writes_go_out_before_close():
    server, _ = established()
    server.transport.write(b"goodbye")
    server.transport.close()
    assert server.transport.is_closing()
    assert server.wire.writes[-1] == b"goodbye" and server.wire.actions()[-2:] == ["write", "close"]
    await asyncio.sleep(0)
    assert server.ssh.calls[-1] == "connection_lost" and server.ssh.lost == [None]
    assert server.wire.actions()[-1] == "close"


@run_in_virtual_time
async def test_pending_writes_are_dropped_on_abort():
    server, _ = established()
    written = len(server.wire.writes)
    server.transport.write(b"never sent")
    server.transport.abort()
    assert server.transport.is_closing() and server.transport.get_write_buffer_size() == 0
    await asyncio.sleep(0)
    assert len(server.wire.writes) == written and server.wire.actions()[-1] == "abort"
    assert server.ssh.calls[-1] == "connection_lost"


# -- server role: what passes through to the socket and back ------------------------------


@run_in_virtual_time
async def test_reading_pause_and_resume_and_buffer_limits_pass_through():
    server, _ = established()
    transport, wire = server.transport, server.wire
    transport.pause_reading()
    assert not wire.is_reading() and not transport.is_reading()
    transport.resume_reading()
    assert wire.is_reading() and transport.is_reading()
    assert wire.actions()[-2:] == ["pause_reading", "resume_reading"]
    transport.set_write_buffer_limits(high=4096, low=1024)
    assert wire.limits == (4096, 1024) and transport.get_write_buffer_limits() == (4096, 1024)
    assert transport.get_extra_info("peername") == (PEER_IP, 51515)
    assert transport.can_write_eof()


@run_in_virtual_time
async def test_the_sockets_write_flow_control_reaches_the_ssh_protocol():
    server, _ = established()
    server.protocol.pause_writing()
    server.protocol.resume_writing()
    assert server.ssh.calls[-2:] == ["pause_writing", "resume_writing"]


@pytest.mark.parametrize("keep_open", [True, False])
@run_in_virtual_time
async def test_the_peers_eof_reaches_the_ssh_protocol_which_decides_on_closing(keep_open):
    server, _ = established()
    server.ssh.keep_open = keep_open
    server.wire.feed_eof()
    assert server.ssh.calls[-1] == "eof_received"
    assert server.wire.is_closing() is not keep_open


# -- server role: invalid bytes ------------------------------------------------------------


@run_in_virtual_time
async def test_a_replayed_preamble_is_reported_once_and_everything_after_it_is_discarded():
    first, client = ServerSide(), ossh_client()
    flight = first_flight(client)
    first.wire.feed(flight)
    server = ServerSide()
    server.history = first.history  # the same server, a second connection
    server.wire.feed(flight)
    [error] = server.errors
    assert isinstance(error, RemoteProtocolError) and error.reason is OSSHReason.DUPLICATE_SEED
    assert server.protocol.failed and server.preambles == []
    server.wire.feed(b"more" * 100)
    assert len(server.errors) == 1 and server.protocol.bytes_received == len(flight) + 400
    assert server.protocol.eof_received() is None  # nothing keeps a failed connection open
    assert server.wire.writes == [] and not server.wire.is_closing()  # closing is the listener's call


# -- client role ----------------------------------------------------------------------------


class ClientSide:
    def __init__(self, prefix: bool = False, split_delay: float = 0.0) -> None:
        self.obfuscator = ossh_client(prefix=prefix)
        self.ssh = FakeSSH()
        self.protocol = ObfuscatedWire(self.obfuscator, upstream=self.ssh, split_delay=split_delay)
        self.wire = FakeWire()
        self.wire.connect(self.protocol)
        self.server = ServerObfuscator(KEYWORD, replay_check=lambda seed: True, random_bytes=os.urandom)


@run_in_virtual_time
async def test_client_role_the_ssh_protocol_is_connected_at_once_and_its_first_write_is_the_preamble():
    client = ClientSide()
    assert client.ssh.calls == ["connection_made"]
    assert isinstance(client.ssh.transport, ObfuscatedTransport)
    client.ssh.transport.write(CLIENT_LINE + KEXINIT)
    client.server.receive_data(client.wire.sent)
    events = list(drain(client.server))
    assert isinstance(events[0], PreambleReceived)
    received = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert received.startswith(CLIENT_LINE) and packet_payloads(received[len(CLIENT_LINE):]) == [KEXINIT_PAYLOAD]
    client.server.send(SERVER_LINE)
    client.wire.feed(client.server.data_to_send())
    assert bytes(client.ssh.received) == SERVER_LINE


@run_in_virtual_time
async def test_client_role_a_broken_server_stream_aborts_the_connection():
    client = ClientSide()
    client.ssh.transport.write(CLIENT_LINE)
    client.wire.feed(os.urandom(2048))  # no identification line within 1024 bytes
    assert client.protocol.failed and client.wire.actions()[-1] == "abort"
    assert client.ssh.received == bytearray()
    await asyncio.sleep(0)
    assert client.ssh.calls[-1] == "connection_lost"


SPLIT = 0.25


@run_in_virtual_time
async def test_client_role_a_split_delay_holds_everything_after_the_prefix():
    client = ClientSide(prefix=True, split_delay=SPLIT)
    client.ssh.transport.write(CLIENT_LINE + KEXINIT)
    client.ssh.transport.write(NEWKEYS)  # queued behind the held writes, in order
    assert [when for when, _ in client.wire.log] == [0.0]
    await asyncio.sleep(1)
    assert [when for when, _ in client.wire.log][1:] == [SPLIT] * (len(client.wire.log) - 1)
    assert client.wire.writes[0].startswith(b"GET /")  # the generated prefix, alone
    client.server.receive_data(client.wire.sent)
    events = list(drain(client.server))
    assert events[0] == PreambleReceived(client.obfuscator.padding_length, "http-get")
    received = b"".join(e.data for e in events if isinstance(e, DataReceived))
    assert packet_payloads(received[len(CLIENT_LINE):]) == [KEXINIT_PAYLOAD, b"\x15"]


@run_in_virtual_time
async def test_client_role_close_during_the_split_delay_closes_after_the_held_writes():
    client = ClientSide(prefix=True, split_delay=SPLIT)
    client.ssh.transport.write(CLIENT_LINE)
    client.ssh.transport.close()
    assert client.wire.log == [(0.0, "write")]
    await asyncio.sleep(1)
    assert client.wire.log[-1] == (SPLIT, "close") and client.wire.log[-2] == (SPLIT, "write")


@run_in_virtual_time
async def test_client_role_abort_during_the_split_delay_drops_the_held_writes():
    client = ClientSide(prefix=True, split_delay=SPLIT)
    client.ssh.transport.write(CLIENT_LINE)
    client.ssh.transport.abort()
    await asyncio.sleep(1)
    assert client.wire.log == [(0.0, "write"), (0.0, "abort")]


@run_in_virtual_time
async def test_client_role_write_eof_during_the_split_delay_follows_the_held_writes():
    client = ClientSide(prefix=True, split_delay=SPLIT)
    client.ssh.transport.write(CLIENT_LINE)
    client.ssh.transport.write_eof()
    await asyncio.sleep(1)
    assert [what for when, what in client.wire.log if when == 0.0] == ["write"]
    assert client.wire.log[-2:] == [(SPLIT, "write"), (SPLIT, "write_eof")]
