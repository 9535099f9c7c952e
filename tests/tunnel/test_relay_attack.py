"""Attacks on the gathered relay writes (net/gatherwrite.py, tunnel/relay.py, and the
payload views of asyncssh_compat's GCM receive path), through the whole data path:

    app socket <-> client splice (CountingForwarder) <-> tunnel channel <-> server
    PortForwards (RelaySide) <-> destination socket

Both ends are raw loopback sockets the test reads and writes itself: stalled, slow,
half-closed or reset readers and writers at either end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from onehop.client.splice import splice
from onehop.server.portforwards import PortForwards
from tests.server.seam_fakes import FakeForwardingSession
from tests.helpers.net import tcp_socket_pair
from tests.tunnel.test_asyncssh_compat import Loopback

pytestmark = pytest.mark.timeout(60)


def _small_buffers(sock: socket.socket, size: int = 64 * 1024) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class Relay:
    """One tunnelled TCP connection: ``app`` is the local application's socket, ``dest``
    the destination's; both non-blocking, driven by the test."""

    async def start(self, *, small: bool = True, rekey_bytes: int = 1 << 30) -> Relay:
        loop = asyncio.get_running_loop()
        self.errors: list[dict] = []
        loop.set_exception_handler(lambda _loop, context: self.errors.append(context))
        self.lb = Loopback()
        self.session = FakeForwardingSession()
        forwards = PortForwards(self.session)
        self.forwards = forwards

        async def open_forward(host, port, *, no_split=False):
            return await forwards.open_tcp(host, port)

        self.lb.policy.open_forward = open_forward
        client = await self.lb.start(rekey_bytes=rekey_bytes)
        self.client = client

        dest_listener = socket.create_server(("127.0.0.1", 0))
        dest_listener.setblocking(False)
        app, local_sock = tcp_socket_pair()
        if small:
            _small_buffers(app)
            _small_buffers(local_sock)
        self.local_transport, _ = await loop.create_connection(asyncio.Protocol, sock=local_sock)
        self.local_transport.pause_reading()
        accepting = asyncio.ensure_future(loop.sock_accept(dest_listener))
        failure = await splice(self.local_transport, client, "127.0.0.1", dest_listener.getsockname()[1],
                               before_relay=lambda: None)
        assert failure is None
        self.dest, _ = await asyncio.wait_for(accepting, 5)
        dest_listener.close()
        self.dest.setblocking(False)
        if small:
            _small_buffers(self.dest)
        self.app = app
        (self.server_conn,) = self.lb.server_conns
        return self

    @property
    def local(self):
        """The client's socket-side forwarder (writes the tunnel's bytes to the app)."""
        return self.local_transport.get_protocol()

    def client_held(self) -> int:
        """Bytes of this stream held in the client process on their way to the app."""
        local = self.local
        pending = sum(len(b) for b in (local._pending or ()))
        chans = list(self.client.conn._channels.values())
        recv = sum(len(d) for chan in chans for d, _ in chan._recv_buf)
        return self.local_transport.get_write_buffer_size() + pending + recv

    async def close(self) -> None:
        for sock in (self.app, self.dest):
            sock.close()
        try:
            await asyncio.wait_for(self.lb.close(), 3)
        except (OSError, TimeoutError, Exception):  # the test's verdict is made
            pass


async def send_all(sock: socket.socket, data: bytes, chunk: int = 256 * 1024) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    for start in range(0, len(data), chunk):
        await loop.sock_sendall(sock, view[start:start + chunk])


async def recv_exactly(sock: socket.socket, size: int, *, chunk: int = 1 << 20, delay: float = 0.0,
                       timeout: float = 30) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()

    async def run():
        while len(got) < size:
            data = await loop.sock_recv(sock, min(chunk, size - len(got)))
            if not data:
                break
            got.extend(data)
            if delay:
                await asyncio.sleep(delay)

    await asyncio.wait_for(run(), timeout)
    return bytes(got)


async def recv_until_eof(sock: socket.socket, timeout: float = 30) -> tuple[bytes, str]:
    """Everything until EOF or a reset: (bytes, 'eof' | 'reset')."""
    loop = asyncio.get_running_loop()
    got = bytearray()

    async def run() -> str:
        while True:
            try:
                data = await loop.sock_recv(sock, 1 << 20)
            except ConnectionResetError:
                return "reset"
            if not data:
                return "eof"
            got.extend(data)

    how = await asyncio.wait_for(run(), timeout)
    return bytes(got), how


@pytest.fixture
async def relay():
    r = await Relay().start()
    yield r
    await r.close()


# -- integrity ---------------------------------------------------------------------------------


async def test_both_directions_arrive_whole_and_in_order(relay):
    down = os.urandom(24 << 20)
    up = os.urandom(8 << 20)
    results = await asyncio.gather(
        send_all(relay.dest, down), send_all(relay.app, up),
        recv_exactly(relay.app, len(down)), recv_exactly(relay.dest, len(up)))
    assert results[2] == down
    assert results[3] == up
    assert relay.errors == []


@pytest.fixture
def writev_calls(monkeypatch):
    """The number of buffers of every gathered write (to show a test went that way)."""
    from onehop.net import gatherwrite

    calls: list[int] = []
    writev = os.writev

    def counting(fd, buffers):
        calls.append(len(buffers))
        return writev(fd, buffers)

    monkeypatch.setattr(gatherwrite, "_writev", counting)
    return calls


async def test_a_slow_app_reader_gets_every_byte_in_order(relay, writev_calls):
    down = os.urandom(12 << 20)
    sending = asyncio.ensure_future(send_all(relay.dest, down))
    got = await recv_exactly(relay.app, len(down), chunk=7777, delay=0.0005, timeout=50)
    await sending
    assert got == down
    assert writev_calls  # the gathered path was taken
    assert relay.errors == []


async def test_views_survive_rekeys_mid_transfer(writev_calls, monkeypatch):
    """Keys change every 2 MiB while payload views of packets decrypted under the old
    and the new keys wait in one flush list."""
    from asyncssh.connection import SSHConnection

    kexinits: list[object] = []
    stock = SSHConnection._send_kexinit
    monkeypatch.setattr(SSHConnection, "_send_kexinit", lambda self: (kexinits.append(self), stock(self))[1])
    relay = await Relay().start(rekey_bytes=2 << 20)
    at_start = len(kexinits)
    try:
        down = os.urandom(20 << 20)
        sending = asyncio.ensure_future(send_all(relay.dest, down))
        got = await recv_exactly(relay.app, len(down), chunk=100_000, delay=0.0002, timeout=50)
        await sending
        assert got == down
        assert len(kexinits) - at_start >= 8  # the keys changed along the way
        assert writev_calls
        assert relay.errors == []
    finally:
        await relay.close()


async def test_the_tunnel_dying_mid_download_ends_the_app_connection_with_a_clean_prefix(relay):
    data = os.urandom(32 << 20)
    sending = asyncio.ensure_future(push_until_stalled(relay.dest, data, stall=1))
    first = await recv_exactly(relay.app, 2 << 20)
    relay.server_conn.abort()  # the server side of the tunnel goes away
    rest, how = await recv_until_eof(relay.app, 10)
    sending.cancel()
    await asyncio.gather(sending, return_exceptions=True)
    got = first + rest
    assert got == data[:len(got)]
    assert relay.errors == []
    assert relay.local_transport.is_closing()


# -- a reader that stops: backpressure still engages -----------------------------------------


LIMIT = 64 << 20  # the most a stalled test ever tries to push


async def push_until_stalled(sock: socket.socket, data: bytes, stall: float = 1.5) -> int:
    """Send ``data`` until no byte has gone out for ``stall`` seconds; the bytes sent
    (exactly: each send() is counted)."""
    loop = asyncio.get_running_loop()
    sent = 0
    view = memoryview(data)
    last = loop.time()
    while sent < len(data):
        try:
            n = sock.send(view[sent:sent + 65536])
        except ConnectionError:
            return sent  # the relay reset this end: nothing more goes
        except BlockingIOError:
            if loop.time() - last > stall:
                return sent
            await asyncio.sleep(0.005)
            continue
        sent += n
        last = loop.time()
        await asyncio.sleep(0)
    return sent


async def test_an_app_that_stops_reading_holds_the_download_back(relay, writev_calls):
    """The app reads nothing: the client must not hold more than the channel window (8 MiB)
    plus about one transport high-water mark, and the destination must be stopped at the
    window plus socket buffers, not at LIMIT. Then everything arrives, in order."""
    data = os.urandom(LIMIT)
    sent = await push_until_stalled(relay.dest, data)
    held = relay.client_held()
    assert sent < 24 << 20, f"the destination pushed {sent} bytes into a stalled relay"
    assert held <= (8 << 20) + (1 << 20), f"the client holds {held} bytes"
    assert relay.local_transport.get_write_buffer_size() <= 2 << 20
    buffered = [d for chan in relay.client.conn._channels.values() for d, _ in chan._recv_buf]
    assert buffered and not any(isinstance(d, memoryview) for d in buffered)  # copies, no pinned packets
    more = data[sent:sent + (1 << 20)]
    sending = asyncio.ensure_future(send_all(relay.dest, more))
    got = await recv_exactly(relay.app, sent + len(more))
    await sending
    assert got == data[:sent + len(more)]
    assert relay.errors == []


def server_held(relay: Relay) -> int:
    """Bytes of this stream held in the server process on their way to the destination."""
    (forward,) = relay.forwards.relays
    down = forward._down
    pending = sum(len(b) for b in (down._pending or ()))
    chans = list(relay.server_conn._channels.values())
    recv = sum(len(d) for chan in chans for d, _ in chan._recv_buf)
    return down._transport.get_write_buffer_size() + pending + recv


async def test_a_destination_that_stops_reading_holds_the_upload_back(relay, writev_calls):
    data = os.urandom(LIMIT)
    sent = await push_until_stalled(relay.app, data)
    held = server_held(relay)
    assert sent < 24 << 20, f"the app pushed {sent} bytes into a stalled relay"
    assert held <= (8 << 20) + (1 << 20), f"the server holds {held} bytes"
    got = await recv_exactly(relay.dest, sent)
    assert got == data[:sent]
    assert relay.errors == []


async def test_shut_rd_app_is_a_stalled_reader_not_a_leak(relay):
    relay.app.shutdown(socket.SHUT_RD)
    data = os.urandom(LIMIT)
    sent = await push_until_stalled(relay.dest, data)
    assert sent < 24 << 20, f"the destination pushed {sent} bytes into an app that shut reading"
    assert relay.client_held() <= (8 << 20) + (1 << 20)


# -- EOF and close ordering --------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 1000, 70_000, 3 << 20])
async def test_destination_eof_comes_after_every_byte(relay, size):
    data = os.urandom(size)
    await send_all(relay.dest, data)
    relay.dest.shutdown(socket.SHUT_WR)
    got, how = await recv_until_eof(relay.app)
    assert (len(got), how) == (size, "eof")
    assert got == data
    # the app may still answer after the destination's EOF
    await send_all(relay.app, b"answer")
    assert await recv_exactly(relay.dest, 6) == b"answer"
    assert relay.errors == []


@pytest.mark.parametrize("size", [1, 1000, 3 << 20])
async def test_app_eof_comes_after_every_byte(relay, size):
    data = os.urandom(size)
    await send_all(relay.app, data)
    relay.app.shutdown(socket.SHUT_WR)
    got, how = await recv_until_eof(relay.dest)
    assert (len(got), how) == (size, "eof")
    assert got == data
    await send_all(relay.dest, b"answer")
    assert await recv_exactly(relay.app, 6) == b"answer"
    assert relay.errors == []


async def test_destination_closes_right_after_sending(relay):
    data = os.urandom(5 << 20)
    await send_all(relay.dest, data)
    relay.dest.close()
    got, how = await recv_until_eof(relay.app)
    assert how == "eof" and got == data
    assert relay.errors == []


async def test_app_half_closes_while_the_download_flows(relay):
    down = os.urandom(16 << 20)
    sending = asyncio.ensure_future(send_all(relay.dest, down))
    first = await recv_exactly(relay.app, 1 << 20)
    relay.app.shutdown(socket.SHUT_WR)
    reading = asyncio.ensure_future(recv_until_eof(relay.app))
    assert await recv_until_eof(relay.dest, 10) == (b"", "eof")
    await sending  # the download goes on after the app's EOF
    relay.dest.shutdown(socket.SHUT_WR)
    rest, how = await reading
    assert how == "eof" and first + rest == down
    assert relay.errors == []


# -- resets ------------------------------------------------------------------------------------


def reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def test_destination_reset_mid_download(relay):
    data = os.urandom(16 << 20)
    sending = asyncio.ensure_future(push_until_stalled(relay.dest, data, stall=0.5))
    first = await recv_exactly(relay.app, 1 << 20)
    sending.cancel()
    await asyncio.gather(sending, return_exceptions=True)
    reset(relay.dest)
    rest, how = await recv_until_eof(relay.app, 10)
    got = first + rest
    assert got == data[:len(got)]  # a prefix, nothing else
    assert relay.errors == []
    await asyncio.sleep(0.2)
    assert not relay.forwards.relays  # the forward is gone
    assert not relay.client.conn._channels


async def test_app_reset_mid_download(relay):
    data = os.urandom(LIMIT)
    sending = asyncio.ensure_future(push_until_stalled(relay.dest, data, stall=2))
    await recv_exactly(relay.app, 1 << 20)
    reset(relay.app)
    sent = await asyncio.wait_for(sending, 20)  # the destination is stopped: reset or stalled
    assert sent < 32 << 20
    got, how = await recv_until_eof(relay.dest, 10)
    assert relay.errors == []
    await asyncio.sleep(0.2)
    assert relay.local_transport.is_closing()
    assert not relay.client.conn._channels


async def test_app_reset_while_upload_in_flight(relay):
    data = os.urandom(4 << 20)
    await send_all(relay.app, data)
    reset(relay.app)
    got, how = await recv_until_eof(relay.dest, 10)
    assert got == data[:len(got)]
    assert relay.errors == []


# -- many tiny packets in one read ---------------------------------------------------------------


class TinySource:
    """A server-side session that writes ``count`` tiny payloads in one loop turn, then EOF."""

    def __init__(self, payloads: list[bytes]) -> None:
        self.payloads = payloads

    def connection_made(self, chan) -> None:
        self.chan = chan

    def session_started(self) -> None:
        for p in self.payloads:
            self.chan.write(p)  # one CHANNEL_DATA packet each
        self.chan.write_eof()

    def data_received(self, data, datatype) -> None:
        pass

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


@pytest.mark.parametrize("count", [1000, 1100, 20_000])
async def test_thousands_of_tiny_packets_in_one_read_arrive_whole(monkeypatch, count):
    from onehop.net.gatherwrite import GatherWriter

    seen: list[int] = []
    stock = GatherWriter.write

    def recording(self, buffers):
        seen.append(len(buffers))
        return stock(self, buffers)

    monkeypatch.setattr(GatherWriter, "write", recording)
    payloads = [bytes([i % 251]) * (1 + i % 5) for i in range(count)]
    lb = Loopback()

    async def open_forward(host, port, *, no_split=False):
        return TinySource(payloads)

    lb.policy.open_forward = open_forward
    client = await lb.start()
    loop = asyncio.get_running_loop()
    app, local_sock = tcp_socket_pair()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=local_sock)
    transport.pause_reading()
    assert await splice(transport, client, "127.0.0.1", 9, before_relay=lambda: None) is None
    try:
        got, how = await recv_until_eof(app, 20)
        assert how == "eof" and got == b"".join(payloads)
        assert max(seen) > 1  # several payloads in one flush
        if count >= 20_000:
            assert max(seen) > 1024  # and more than IOV_MAX of them at least once
    finally:
        app.close()
        await lb.close()


# -- what a read of tiny packets costs in memory -------------------------------------------------


def held_by(pending) -> int:
    """Memory a flush's pending list keeps alive: each entry, and for a view the object it
    pins (one decrypted packet each)."""
    import sys

    total = sys.getsizeof(pending)
    for buf in pending:
        total += sys.getsizeof(buf)
        if isinstance(buf, memoryview):
            total += sys.getsizeof(buf.obj)
    return total


async def test_tiny_packets_do_not_make_a_read_cost_many_times_its_size(relay, monkeypatch):
    """A client (any authenticated peer) sends a read's worth of minimal CHANNEL_DATA packets
    (1 payload byte in 36 bytes on the wire). Until the next loop turn the server's relay
    holds each payload in its flush list: that list must not cost much more memory than the
    bytes read that carried it (2x here). A memoryview per payload (about 184 bytes, and
    it pins its 49-byte decrypted packet) costs 6.5x; a copy of the byte costs about 1x."""
    from asyncssh.constants import MSG_CHANNEL_DATA
    from asyncssh.packet import String, UInt32

    from onehop.tunnel.relay import CountingForwarder

    flushes: list[tuple[int, int]] = []  # (payloads, memory held)
    stock = CountingForwarder._flush

    def measuring(self):
        if self._pending:
            flushes.append((len(self._pending), held_by(self._pending)))
        stock(self)

    monkeypatch.setattr(CountingForwarder, "_flush", measuring)
    conn = relay.client.conn
    (chan,) = conn._channels.values()
    transport = conn._transport
    write = transport.write
    captured: list[bytes] = []
    transport.write = lambda data: captured.append(bytes(data))
    count = 20_000
    for _ in range(count):
        conn.send_packet(MSG_CHANNEL_DATA, UInt32(chan._send_chan), String(b"x"))
    transport.write = write
    wire = b"".join(captured)
    per_packet_on_wire = len(wire) / count
    write(wire)
    assert await recv_exactly(relay.dest, count) == b"x" * count
    payloads, held = max(flushes)
    assert payloads > 1000  # many in one flush: the case this is about
    assert held <= 2 * payloads * per_packet_on_wire, \
        f"{payloads} payloads of one byte held {held} bytes ({held / payloads:.0f} per payload, " \
        f"{per_packet_on_wire:.0f} on the wire)"


async def test_small_payloads_are_copied_and_bulk_ones_viewed():
    lb = Loopback()
    await lb.start()
    try:
        small: set[type] = set()
        assert await lb.echo(b"s" * 100, accepts_views=True, kinds=small) == b"s" * 100
        assert small == {bytes}
        bulk: set[type] = set()
        payload = os.urandom(1_000_000)
        assert await lb.echo(payload, accepts_views=True, kinds=bulk) == payload
        assert memoryview in bulk
    finally:
        await lb.close()
