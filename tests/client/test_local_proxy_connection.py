"""``LocalProxyConnection`` (through its SOCKS kind) with a fake transport and a fake
channel opener: the request is parsed, reading pauses while the channel opens, the
answer goes out, early bytes go through the channel first, failures are answered in
SOCKS, and the limits (cap, request deadline, count) hold. No sockets, no tunnel."""

from __future__ import annotations

import asyncio
import socket
import struct

import asyncssh

from onehop.client.local_proxy import ConnectionLimits
from onehop.client.socks_proxy import SocksConnection
from onehop.errors import TunnelError
from onehop.tunnel.relay import ByteCounter
from tests.helpers.waiting import wait_until

GREETING = b"\x05\x01\x00"                      # SOCKS5, one method: no authentication
CHOSEN = b"\x05\x00"


def connect_request(host: str, port: int) -> bytes:
    name = host.encode()
    return b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", port)


def connect_request_ipv4(ip: str, port: int) -> bytes:
    return b"\x05\x01\x00\x01" + socket.inet_aton(ip) + struct.pack(">H", port)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.paused = False
        self.closing = False
        self.aborted = asyncio.Event()
        self.closed = asyncio.Event()
        self.protocol = None

    def write(self, data) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.closed.set()

    def abort(self) -> None:
        self.closing = True
        self.aborted.set()

    def set_protocol(self, protocol) -> None:
        self.protocol = protocol

    def get_protocol(self):
        return self.protocol


class FakeChannel:
    """The tunnel side of a spliced connection: what was written to the destination."""

    def __init__(self) -> None:
        self.written = bytearray()

    def get_extra_info(self, name: str, default=None):
        return default

    def write(self, data) -> None:
        self.written += data

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeOpener:
    """``open_channel``: answers once the test releases it, with a channel or an error."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.asked: list[tuple[str, int]] = []
        self.asked_event = asyncio.Event()
        self.go = asyncio.Event()
        self.channel = FakeChannel()
        self.byte_counter = ByteCounter()
        self.remote = None

    async def open_channel(self, session_factory, host: str, port: int):
        self.asked.append((host, port))
        self.asked_event.set()
        await self.go.wait()
        if self.error is not None:
            raise self.error
        self.remote = session_factory()
        self.remote.connection_made(self.channel)
        return self.channel, self.remote


async def wait_for_tasks(tasks: set) -> None:
    """Until every connection task ended (an error in one fails the test)."""
    while tasks:
        await asyncio.gather(*list(tasks))


def accepted(opener, limits=None):
    tasks: set = set()
    connection = SocksConnection(opener, tasks, limits)
    transport = FakeTransport()
    transport.set_protocol(connection)
    connection.connection_made(transport)
    return connection, transport, tasks


async def test_a_request_is_spliced_into_a_channel_with_the_early_bytes_first():
    opener = FakeOpener()
    limits = ConnectionLimits()
    connection, transport, tasks = accepted(opener, limits)
    connection.data_received(GREETING)
    assert bytes(transport.written) == CHOSEN
    connection.data_received(connect_request("example.com", 443) + b"early bytes")
    await opener.asked_event.wait()
    assert opener.asked == [("example.com", 443)]
    assert transport.paused  # nothing more is read until the channel is open
    assert bytes(transport.written) == CHOSEN  # no answer before the channel exists
    opener.go.set()
    await wait_for_tasks(tasks)
    reply = bytes(transport.written[len(CHOSEN):])
    assert reply[:2] == b"\x05\x00"  # succeeded
    assert bytes(opener.channel.written) == b"early bytes"
    assert not transport.paused and transport.protocol is not connection
    transport.protocol.data_received(b"more")  # the application's next bytes: relayed, counted
    opener.remote.data_received(b"answer")     # the destination's: back to the application
    assert bytes(opener.channel.written) == b"early bytesmore"
    # writes towards the application are coalesced into one per event-loop turn
    await wait_until(lambda: bytes(transport.written).endswith(b"answer"), 5, "the answer relayed")
    assert (opener.byte_counter.up, opener.byte_counter.down) == (len(b"early bytesmore"), len(b"answer"))
    assert limits.open == 1
    connection.connection_lost(None)
    assert limits.open == 0


async def test_a_refused_channel_is_answered_in_socks_and_closed():
    refused = asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "Connection refused")
    opener = FakeOpener(error=refused)
    opener.go.set()
    connection, transport, tasks = accepted(opener)
    connection.data_received(GREETING + connect_request_ipv4("192.0.2.1", 80))
    await wait_for_tasks(tasks)
    reply = bytes(transport.written[len(CHOSEN):])
    assert reply[:2] == b"\x05\x05"  # connection refused
    assert transport.closed.is_set()
    assert opener.channel.written == b""


async def test_no_tunnel_is_a_general_failure():
    opener = FakeOpener(error=TunnelError("no-tunnel", "no tunnel within 1 s"))
    opener.go.set()
    connection, transport, tasks = accepted(opener)
    connection.data_received(GREETING + connect_request("example.com", 80))
    await wait_for_tasks(tasks)
    assert bytes(transport.written[len(CHOSEN):])[:2] == b"\x05\x01"
    assert transport.closed.is_set()


async def test_an_application_gone_before_the_channel_opened_gets_nothing():
    opener = FakeOpener()
    connection, transport, tasks = accepted(opener)
    connection.data_received(GREETING + connect_request("example.com", 80))
    await opener.asked_event.wait()
    transport.close()
    connection.connection_lost(None)
    opener.go.set()
    await wait_for_tasks(tasks)
    assert bytes(transport.written) == CHOSEN  # no success reply to a closed connection
    assert transport.protocol is connection     # never spliced


async def test_a_malformed_request_gets_the_parsers_answer_and_is_closed():
    opener = FakeOpener()
    connection, transport, tasks = accepted(opener)
    connection.data_received(b"\x05\x01\x02")  # offers only username/password
    assert bytes(transport.written) == b"\x05\xff"  # no acceptable method
    assert transport.closed.is_set()
    assert opener.asked == [] and not tasks


async def test_over_the_cap_a_connection_is_aborted_at_once():
    limits = ConnectionLimits(max_connections=1)
    opener = FakeOpener()
    first, first_transport, _ = accepted(opener, limits)
    second, second_transport, _ = accepted(opener, limits)
    assert second_transport.aborted.is_set() and not first_transport.aborted.is_set()
    assert (limits.open, limits.refused) == (1, 1)
    second.data_received(GREETING)
    assert second_transport.written == b""  # an aborted connection is not parsed
    second.connection_lost(None)
    assert limits.open == 1  # only counted connections are uncounted
    first.connection_lost(None)
    assert limits.open == 0


async def test_a_request_that_does_not_arrive_in_time_is_aborted():
    limits = ConnectionLimits(request_timeout=0.05)
    connection, transport, _ = accepted(FakeOpener(), limits)
    connection.data_received(GREETING[:2])  # half a greeting, then nothing
    await asyncio.wait_for(transport.aborted.wait(), timeout=5)
    connection.connection_lost(None)
    assert limits.open == 0


async def test_a_complete_request_stops_the_deadline():
    limits = ConnectionLimits(request_timeout=0.05)
    opener = FakeOpener()
    connection, transport, tasks = accepted(opener, limits)
    connection.data_received(GREETING + connect_request("example.com", 80))
    await opener.asked_event.wait()
    asyncio.get_running_loop().call_later(0.2, opener.go.set)  # the channel opens past the deadline
    await wait_for_tasks(tasks)
    # an aborted connection would have got no answer (splice skips a closing transport)
    assert bytes(transport.written[len(CHOSEN):])[:2] == b"\x05\x00"
    assert not transport.aborted.is_set() and transport.protocol is not connection
