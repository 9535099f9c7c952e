"""Hostile authenticated peers against the tunnel data path (tunnel/asyncssh_compat.py).

An authenticated client holds the session keys and can send any packet: each malformed
CHANNEL_DATA packet must meet the same fate with the direct GCM receive path as with
asyncssh's own handling; a packet that ends the connection must be the last one acted
on; and a client that stops reading must not make the server buffer what its channels'
windows would allow (channels opened after the transport filled up included).
"""

from __future__ import annotations

import asyncio
import os

import asyncssh
import pytest
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_CHANNEL_EOF
from asyncssh.packet import String, UInt32
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from onehop.tunnel import asyncssh_compat
from tests.tunnel.test_asyncssh_compat import EchoSession, Loopback


async def open_echoed_channel(client, first: bytes):
    """A tunnel channel to the echo destination, once ``first`` has come back through it."""
    got = asyncio.Event()

    class Collect(asyncssh.SSHTCPSession):
        def data_received(self, data, datatype):
            got.set()

    chan, _ = await client.open_channel(Collect, "127.0.0.1", 9)
    chan.write(first)
    await asyncio.wait_for(got.wait(), 5)
    return chan


async def _close(lb: Loopback) -> None:
    """Close a loopback whose connection the server may have dropped already."""
    try:
        await asyncio.wait_for(lb.close(), 3)
    except (OSError, asyncssh.Error, TimeoutError):
        pass


# -- malformed channel data: the same fate either way ---------------------------------------


def send_raw(conn, plain: bytes) -> None:
    """Encrypt ``plain`` (padding length byte, payload, padding) as the client's next packet."""
    cipher = conn._send_encryption._cipher
    header = len(plain).to_bytes(4, "big")
    conn._send(header + AESGCM(cipher._key).encrypt(cipher._iv, plain, header))
    cipher._update_iv()
    conn._send_seq = (conn._send_seq + 1) & 0xffffffff


def data_plain(chan_no: int, data: bytes, padlen: int, datalen: int | None = None, extra: bytes = b"") -> bytes:
    datalen = len(data) if datalen is None else datalen
    return (bytes((padlen, MSG_CHANNEL_DATA)) + chan_no.to_bytes(4, "big") + datalen.to_bytes(4, "big")
            + data + extra + os.urandom(padlen))


CASES = {
    "padlen0": lambda n: data_plain(n, b"D" * 22, 0),
    "padlen1": lambda n: data_plain(n, b"D" * 21, 1),
    "padlen_too_big": lambda n: bytes((200,)) + data_plain(n, b"D" * 22, 4)[1:],
    "datalen_short": lambda n: data_plain(n, b"D" * 18, 4, datalen=17),
    "datalen_long": lambda n: data_plain(n, b"D" * 18, 4, datalen=19),
    "datalen_huge": lambda n: data_plain(n, b"D" * 18, 4, datalen=0xffffffff),
    "zero_data": lambda n: data_plain(n, b"", 6),
    "unknown_channel": lambda n: data_plain(n + 77, b"D" * 18, 4),
    "trailing_bytes": lambda n: data_plain(n, b"D" * 14, 4, extra=b"XXXX"),
}


async def run(monkeypatch, fast: bool, case: str, eof_first: bool = False):
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(asyncssh_compat, "_receive_whole_gcm_packet", lambda *a: None)
        delivered = bytearray()
        stock = EchoSession.data_received

        def recording(self, data, datatype):
            delivered.extend(data)
            stock(self, data, datatype)

        m.setattr(EchoSession, "data_received", recording)
        lb = Loopback()
        client = await lb.start()
        chan = await open_echoed_channel(client, b"ok")
        if eof_first:
            client.conn.send_packet(MSG_CHANNEL_EOF, UInt32(chan._send_chan))
        send_raw(client.conn, CASES[case](chan._send_chan))
        chan.write(b"!")  # a well-formed packet after it
        try:
            await asyncio.wait_for(lb.policy.closed.wait(), 0.3)
        except TimeoutError:
            pass
        closed = type(lb.policy.closed_with).__name__ if lb.policy.closed.is_set() else "open"
        await _close(lb)
        return closed, bytes(delivered)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("eof_first", [False, True])
async def test_fast_path_matches_asyncssh(monkeypatch, case, eof_first):
    stock = await run(monkeypatch, False, case, eof_first)
    fast = await run(monkeypatch, True, case, eof_first)
    assert fast == stock, f"fast path {fast} vs asyncssh {stock}"


# -- nothing after a fatal packet ------------------------------------------------------------


@pytest.mark.parametrize("fast_path", [True, False])
async def test_no_packet_is_acted_on_after_a_fatal_one_split_across_reads(monkeypatch, fast_path):
    loopback = Loopback()
    if not fast_path:
        monkeypatch.setattr(asyncssh_compat, "_receive_whole_gcm_packet", lambda *a: None)
    delivered: list[bytes] = []
    stock = EchoSession.data_received

    def recording(self, data, datatype):
        delivered.append(bytes(data))
        stock(self, data, datatype)

    monkeypatch.setattr(EchoSession, "data_received", recording)
    client = await loopback.start()
    chan = await open_echoed_channel(client, b"before")
    assert delivered == [b"before"]

    conn = client.conn
    transport = conn._transport
    write = transport.write
    captured: list[bytes] = []
    transport.write = lambda data: captured.append(bytes(data))
    conn.send_packet(MSG_CHANNEL_DATA, UInt32(999), String(b"x" * 100))  # A: unknown channel: fatal
    first = len(captured)
    chan.write(b"after the fatal packet")  # B: data for a live tunnel channel
    transport.write = write
    a = b"".join(captured[:first])
    b = b"".join(captured[first:])
    write(a[:-5])
    await asyncio.sleep(0.2)  # the server reads A's beginning alone
    write(a[-5:] + b)  # A's end and B: one read
    await asyncio.wait_for(loopback.policy.closed.wait(), 5)
    await asyncio.sleep(0.2)
    assert isinstance(loopback.policy.closed_with, asyncssh.ProtocolError)
    assert delivered == [b"before"]  # B must not reach the destination
    await _close(loopback)


# -- a client that never reads ---------------------------------------------------------------


CHUNK = 256 * 1024
LIMIT = 48 * 1024 * 1024  # stop the source here: the server must never get near it


class FastSource(asyncssh.SSHTCPSession):
    """A destination that writes as fast as it is allowed (a forwarder reading a fast socket)."""

    produced = 0

    def connection_made(self, chan) -> None:
        self.chan, self.paused = chan, False
        asyncio.get_running_loop().call_soon(self.pump)

    def pump(self) -> None:
        if self.paused or FastSource.produced >= LIMIT or self.chan._send_state != "open":
            return
        self.chan.write(b"\0" * CHUNK)
        FastSource.produced += CHUNK
        asyncio.get_running_loop().call_soon(self.pump)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        asyncio.get_running_loop().call_soon(self.pump)


def server_buffered(conn) -> int:
    chans = sum(chan._send_buf_len for chan in conn._channels.values())
    return conn._transport.get_write_buffer_size() + chans if conn._transport else chans


@pytest.mark.parametrize("open_after_pause", [False, True])
async def test_server_memory_stays_bounded_when_the_client_never_reads(open_after_pause):
    FastSource.produced = 0
    lb = Loopback()

    async def open_forward(host, port, *, no_split=False):
        return FastSource()

    lb.policy.open_forward = open_forward
    client = await lb.start()
    (server_conn,) = lb.server_conns
    conn = client.conn
    huge = 2**32 - 1
    if not open_after_pause:
        for _ in range(4):
            await conn.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", 9, window=huge)
        conn._transport.pause_reading()
    else:
        await conn.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", 9, window=huge)
        conn._transport.pause_reading()
        await asyncio.sleep(1)  # the server's transport is full and paused by now
        assert server_conn.__dict__.get("_onehop_writing_paused")
        opens = [asyncio.ensure_future(conn.create_connection(asyncssh.SSHTCPSession, "127.0.0.1", 9, window=huge))
                 for _ in range(3)]  # opens need no answer read: the server starts sending at once
    await asyncio.sleep(2)
    buffered = server_buffered(server_conn)
    produced = FastSource.produced
    conn._transport.resume_reading()
    conn.abort()
    lb.server.close()
    if open_after_pause:
        for opened in opens:
            opened.cancel()
    assert buffered < 16 * 1024 * 1024, f"server buffers {buffered} bytes of {produced} produced"
