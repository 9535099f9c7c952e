"""Attacks on net/gatherwrite.py and the relay's flush (tunnel/relay.py) over real loopback
sockets: descriptor reuse, closes between a write and its flush, more buffers than
IOV_MAX, empty buffers, EOF behind a partial write, and random interleavings of writes,
loop turns and partial reads, checked byte for byte (with the pause/resume calls the
relay makes on its peer)."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onehop.net import gatherwrite
from onehop.net.gatherwrite import IOV_MAX, GatherWriter
from onehop.tunnel.relay import CountingForwarder
from tests.helpers.net import tcp_socket_pair

pytestmark = [pytest.mark.skipif(not hasattr(os, "writev"), reason="no os.writev here"), pytest.mark.timeout(60)]


async def _socket_pair(sndbuf: int | None = None):
    """(the writing transport with a plain protocol, the raw non-blocking reading socket)."""
    loop = asyncio.get_running_loop()
    mine, theirs = tcp_socket_pair()
    if sndbuf is not None:
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)  # (a small receive buffer
        # too would make loopback TCP crawl at a delayed ACK per segment)
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=mine)
    return transport, theirs


def drain(sock: socket.socket, limit: int = 1 << 30) -> bytes:
    """What ``sock`` holds now (without waiting), up to ``limit`` bytes."""
    got = bytearray()
    while len(got) < limit:
        try:
            data = sock.recv(min(1 << 20, limit - len(got)))
        except BlockingIOError:
            break
        if not data:
            break
        got += data
    return bytes(got)


async def read_until_eof(sock: socket.socket, timeout: float = 10) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()

    async def run():
        while data := await loop.sock_recv(sock, 1 << 20):
            got.extend(data)

    await asyncio.wait_for(run(), timeout)
    return bytes(got)


class Peer:
    """The channel side a socket-side forwarder pauses and resumes."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.paused = False

    def set_peer(self, peer) -> None:
        pass

    def pause_reading(self) -> None:
        self.calls.append("pause")
        self.paused = True

    def resume_reading(self) -> None:
        self.calls.append("resume")
        self.paused = False

    def was_eof_received(self) -> bool:
        return False

    def close(self) -> None:
        self.calls.append("close")


def _side(transport) -> tuple[CountingForwarder, Peer]:
    peer = Peer()
    side = CountingForwarder(peer, direction="down")  # type: ignore[arg-type]
    transport.set_protocol(side)
    side.connection_made(transport)
    return side, peer


# -- descriptors -------------------------------------------------------------------------------


def _reuse(fd: int, address) -> socket.socket:
    """A new connection to ``address`` whose socket has descriptor ``fd`` (free now)."""
    mine = socket.socket()
    assert mine.fileno() == fd, "the test needs the descriptor reused"
    mine.connect(address)
    return mine


async def test_a_writer_never_writes_to_a_descriptor_reused_after_its_socket_closed():
    transport, theirs = await _socket_pair()
    writer = GatherWriter.for_transport(transport)
    assert writer is not None
    old_fd = transport.get_extra_info("socket").fileno()
    listener = socket.create_server(("127.0.0.1", 0))
    transport.abort()
    await asyncio.sleep(0.01)  # the transport closes its socket
    other = _reuse(old_fd, listener.getsockname())
    other_peer, _ = listener.accept()
    other_peer.setblocking(False)
    try:
        buffers = [b"not for this connection"]
        assert writer.write(buffers) is buffers
        await asyncio.sleep(0.05)
        assert drain(other_peer) == b""
    finally:
        for sock in (other, other_peer, listener, theirs):
            sock.close()


async def test_a_flush_after_the_transport_closed_writes_nothing_anywhere():
    """A payload written to the relay, then the app's transport aborts before the flush and
    its descriptor is reused at once: the flush must not reach the new connection."""
    transport, theirs = await _socket_pair()
    side, _peer = _side(transport)
    old_fd = transport.get_extra_info("socket").fileno()
    listener = socket.create_server(("127.0.0.1", 0))
    side.write(memoryview(b"xx secret payload xx")[3:-3])
    transport.abort()
    transport._sock.close()  # (abort closes it a turn later: close it now, before the flush)
    other = _reuse(old_fd, listener.getsockname())
    other_peer, _ = listener.accept()
    other_peer.setblocking(False)
    try:
        await asyncio.sleep(0.05)  # the scheduled flush runs
        assert drain(other_peer) == b""
    finally:
        for sock in (other, other_peer, listener, theirs):
            sock.close()


# -- many, empty, and partially written buffers --------------------------------------------------


@pytest.mark.parametrize("count", [IOV_MAX - 1, IOV_MAX, IOV_MAX + 1, 3 * IOV_MAX])
@pytest.mark.parametrize("sndbuf", [None, 4096])
async def test_many_payloads_in_one_turn_arrive_in_order(count, sndbuf):
    transport, theirs = await _socket_pair(sndbuf)
    side, _peer = _side(transport)
    packets = [os.urandom(1 + i % 300) for i in range(count)]
    for p in packets:
        side.write(memoryview(b"h" + p + b"t")[1:-1])
    side.write_eof()
    assert await read_until_eof(theirs) == b"".join(packets)
    transport.close()
    theirs.close()


async def test_empty_buffers_anywhere_are_harmless():
    transport, theirs = await _socket_pair()
    side, _peer = _side(transport)
    parts = [b"", memoryview(b""), b"a", b"", memoryview(b"bc")[1:], memoryview(b"x")[1:], b"def", b""]
    for p in parts:
        side.write(p)
    await asyncio.sleep(0.01)
    side.write(b"")  # a turn of nothing but empties
    side.write(memoryview(b""))
    side.write_eof()
    assert await read_until_eof(theirs) == b"acdef"
    transport.close()
    theirs.close()


async def test_eof_behind_a_partial_gathered_write_comes_after_every_byte():
    transport, theirs = await _socket_pair(sndbuf=4096)
    side, peer = _side(transport)
    parts = [os.urandom(300_000) for _ in range(6)]
    for p in parts:
        side.write(memoryview(p))
    side.write_eof()  # flushes now: the socket takes part, the transport queues the rest
    assert transport.get_write_buffer_size() > 0
    assert "pause" in peer.calls  # the queued rest is above the high-water mark
    assert await read_until_eof(theirs) == b"".join(parts)
    assert peer.calls[-1] == "resume"
    transport.close()
    theirs.close()


async def test_close_with_payloads_pending_sends_them_first():
    transport, theirs = await _socket_pair(sndbuf=4096)
    side, _peer = _side(transport)
    parts = [os.urandom(200_000) for _ in range(4)]
    for p in parts:
        side.write(memoryview(p))
    side.close()
    assert await read_until_eof(theirs) == b"".join(parts)
    theirs.close()


async def test_an_error_on_the_gathered_write_closes_the_transport_its_usual_way():
    """The reader resets: the gathered write meets the error, hands everything back, and
    the transport's own write closes the transport (the relay is not left half alive)."""
    transport, theirs = await _socket_pair()
    side, peer = _side(transport)
    errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _l, c: errors.append(c))
    side.write(b"first")
    await asyncio.sleep(0.01)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
    theirs.close()
    await asyncio.sleep(0.01)
    side.write(os.urandom(100_000))
    await asyncio.sleep(0.05)
    assert transport.is_closing()
    assert "close" in peer.calls  # connection_lost closed the relay's other side
    assert [c for c in errors if "exception" in c and not isinstance(c["exception"], ConnectionError)] == []


# -- random interleavings --------------------------------------------------------------------------


ops = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(0, 70_000), st.booleans()),
    st.tuples(st.just("turn"), st.just(0), st.just(False)),
    st.tuples(st.just("read"), st.integers(1, 200_000), st.just(False)),
), min_size=1, max_size=40)


@settings(max_examples=int(os.environ.get("ATTACK_EXAMPLES", 60)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops, st.sampled_from([None, 4096, 65536]), st.sampled_from(["eof", "close"]))
def test_random_interleavings_keep_the_stream_whole(script, sndbuf, end):
    async def run():
        transport, theirs = await _socket_pair(sndbuf)
        side, peer = _side(transport)
        expected = bytearray()
        got = bytearray()
        for op, n, view in script:
            if op == "write":
                data = os.urandom(n)
                expected += data
                side.write(memoryview(b"##" + data + b"#")[2:-1] if view else data)
            elif op == "turn":
                await asyncio.sleep(0)
            else:
                got += drain(theirs, n)
            assert transport.get_write_buffer_size() <= 4 * 70_000 * 40
        if end == "eof":
            side.write_eof()
        else:
            side.close()
        got += await read_until_eof(theirs)
        assert got == expected
        # pause and resume alternate, starting with a pause; the last pause may be left
        # unanswered only by a close (the relay's sides are closed together)
        calls = [c for c in peer.calls if c != "close"]
        pauses = calls.count("pause")
        assert calls in (["pause", "resume"] * pauses, (["pause", "resume"] * pauses)[:-1] if end == "close" else None)
        transport.close()
        theirs.close()

    asyncio.run(run())


async def test_a_view_is_sent_as_it_was_when_written(monkeypatch):
    """The relay keeps payload views until its flush: they must be views of immutable
    bytes. A payload handed over as a view of a buffer its owner reuses would be sent
    as it is at the flush, not as it was when written."""
    transport, theirs = await _socket_pair()
    side, _peer = _side(transport)
    buf = bytearray(b"first")
    side.write(bytes(buf))
    buf[:] = b"XXXXX"
    side.write_eof()
    assert await read_until_eof(theirs) == b"first"
    transport.close()
    theirs.close()


def test_iov_max_is_the_systems():
    assert os.sysconf("SC_IOV_MAX") == IOV_MAX
    assert gatherwrite._writev is os.writev
