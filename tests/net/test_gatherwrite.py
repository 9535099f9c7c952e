"""net/gatherwrite.py: several buffers to a socket transport in one writev, in order, none lost."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onehop.net import gatherwrite
from onehop.net.gatherwrite import GatherWriter, _unsent
from onehop.tunnel.relay import CountingForwarder

pytestmark = pytest.mark.skipif(not hasattr(os, "writev"), reason="no os.writev here")


class Sink(asyncio.Protocol):
    def __init__(self) -> None:
        self.got = bytearray()
        self.more = asyncio.Event()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.got += data
        self.more.set()

    async def until(self, size: int) -> bytes:
        while len(self.got) < size:
            self.more.clear()
            await asyncio.wait_for(self.more.wait(), 10)
        return bytes(self.got)


async def _pair(sndbuf: int | None = None, *, paused_sink: bool = False):
    """(the writing transport, the sink protocol) over a loopback TCP connection."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    theirs_fut = loop.sock_accept(listener)
    mine = socket.create_connection(listener.getsockname())
    theirs, _ = await theirs_fut
    listener.close()
    if sndbuf is not None:
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sink = Sink()
    sink_transport, _ = await loop.create_connection(lambda: sink, sock=theirs)
    if paused_sink:
        sink_transport.pause_reading()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=mine)
    return transport, sink


class WritevCount:
    def __init__(self, monkeypatch) -> None:
        self.calls: list[int] = []
        writev = os.writev

        def counting(fd, buffers):
            self.calls.append(len(buffers))
            return writev(fd, buffers)

        monkeypatch.setattr(gatherwrite, "_writev", counting)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), max_size=8), st.data())
def test_what_is_left_is_exactly_the_unsent_tail(chunks, data):
    buffers = [c if i % 2 else memoryview(c) for i, c in enumerate(chunks)]
    whole = b"".join(chunks)
    sent = data.draw(st.integers(min_value=0, max_value=len(whole)))
    rest = _unsent(buffers, sent)
    assert b"".join(bytes(b) for b in rest) == whole[sent:]


async def test_buffers_go_out_in_one_writev_in_order(monkeypatch):
    counted = WritevCount(monkeypatch)
    transport, sink = await _pair()
    writer = GatherWriter.for_transport(transport)
    assert writer is not None
    parts = [os.urandom(n) for n in (10, 65536, 1, 30000)]
    buffers = [parts[0], memoryview(parts[1]), parts[2], memoryview(b"xx" + parts[3])[2:]]
    assert writer.write(buffers) == ()
    assert counted.calls == [4]
    assert await sink.until(sum(map(len, parts))) == b"".join(parts)
    transport.close()


async def test_bytes_queued_in_the_transport_go_first(monkeypatch):
    """With the transport holding bytes, the writer sends nothing: the caller queues behind them."""
    counted = WritevCount(monkeypatch)
    transport, sink = await _pair(sndbuf=65536, paused_sink=True)
    writer = GatherWriter.for_transport(transport)
    first = os.urandom(4 << 20)
    transport.write(first)
    assert transport.get_write_buffer_size() > 0
    later = [os.urandom(1000), os.urandom(2000)]
    assert writer.write(later) is later
    assert counted.calls == []
    transport.write(b"".join(later))
    sink.transport.resume_reading()
    assert await sink.until(len(first) + 3000) == first + b"".join(later)
    transport.close()


async def test_a_partial_write_returns_the_rest_and_the_stream_stays_whole():
    transport, sink = await _pair(sndbuf=65536, paused_sink=True)
    writer = GatherWriter.for_transport(transport)
    parts = [os.urandom(1 << 20) for _ in range(4)]
    rest = writer.write([memoryview(p) for p in parts])
    left = sum(len(b) for b in rest)
    assert 0 < left < sum(map(len, parts))  # the socket took some, not all
    transport.write(b"".join(rest))
    sink.transport.resume_reading()
    assert await sink.until(4 << 20) == b"".join(parts)
    transport.close()


async def test_a_closed_socket_leaves_everything_to_the_transport():
    transport, _sink = await _pair()
    writer = GatherWriter.for_transport(transport)
    transport.abort()
    await asyncio.sleep(0)  # the transport closes its socket
    buffers = [b"abc"]
    assert writer.write(buffers) is buffers  # no write to a closed (or reused) descriptor


async def test_only_asyncios_plain_socket_transport_qualifies():
    transport, _sink = await _pair()
    assert GatherWriter.for_transport(transport) is not None

    class Wrapper(asyncio.Transport):  # an obfuscating or TLS layer over the same socket
        def get_extra_info(self, name, default=None):
            return transport.get_extra_info(name, default)

    assert GatherWriter.for_transport(Wrapper()) is None
    transport.close()


async def test_a_relay_writes_one_reads_payloads_in_one_call_without_joining(monkeypatch):
    """The socket side of a relay, handed several payload views in one loop turn, sends
    them with one writev (no join), and the bytes arrive in order."""
    counted = WritevCount(monkeypatch)
    transport, sink = await _pair()
    side = CountingForwarder(direction="down")
    side.connection_made(transport)
    joined: list[int] = []
    monkeypatch.setattr(CountingForwarder.__mro__[1], "write",
                        lambda self, data: (joined.append(len(data)), transport.write(data)))
    packets = [os.urandom(70_000) for _ in range(5)]
    for p in packets:
        side.write(memoryview(b"header" + p + b"pad")[6:-3])
    await sink.until(sum(map(len, packets)))
    assert bytes(sink.got) == b"".join(packets)
    assert counted.calls == [5]
    assert joined == []  # nothing went through the transport's write (or a join)
    transport.close()
