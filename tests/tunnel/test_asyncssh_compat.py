"""What tunnel/asyncssh_compat.py relies on in asyncssh, checked against the installed release.

The first tests look for every private attribute and method by name and signature; the
rest run a onehop server connection and a tuned client connection over loopback and
check that each function still does what onehop needs. When an asyncssh upgrade fails
here, fix asyncssh_compat.py (nothing else in onehop reaches into asyncssh).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os

import asyncssh
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from asyncssh.channel import SSHChannel
from asyncssh.connection import SSHConnection, SSHServerConnection
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.constants import (
    MSG_CHANNEL_DATA, MSG_CHANNEL_WINDOW_ADJUST, MSG_KEXINIT, MSG_REQUEST_SUCCESS,
)
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger

from onehop.tunnel import asyncssh_compat
from onehop.tunnel.client import TunnelClient
from onehop.tunnel.server import PsiphonServerConnection, TunnelSSHServer, new_server_connection
from onehop.tunnel.tuning import CHANNEL_WINDOW, tune_client_connection

GCM = "aes128-gcm@openssh.com"


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


@pytest.mark.parametrize("owner, name, params", [
    (SSHConnection, "_make_global_request", ["self", "request", "args"]),
    (SSHConnection, "_report_global_response", ["self", "result"]),
    (SSHConnection, "_service_next_global_request", ["self"]),
    (SSHConnection, "_recv_data", ["self"]),
    (SSHConnection, "_recv_pkthdr", ["self"]),
    (SSHConnection, "_recv_packet", ["self"]),
    (SSHConnection, "_reset_keepalive_timer", ["self"]),
    (SSHConnection, "_keepalive_timer_callback", ["self"]),
    (SSHConnection, "data_received", ["self", "data", "datatype"]),
    (SSHServerConnection, "_process_direct_tcpip_open", ["self", "packet"]),
    (SSHServerConnection, "choose_server_host_key", ["self", "peer_host_key_algs"]),
    (SSHChannel, "_deliver_data", ["self", "data", "datatype"]),
    (SSHChannel, "_accept_data", ["self", "data", "datatype"]),
    (SSHChannel, "send_packet", ["self", "pkttype", "args"]),
    (SSHPacketLogger, "log_received_packet", ["self", "pkttype", "pktid", "packet", "note"]),
    (SSHPacketLogger, "log_sent_packet", ["self", "pkttype", "pktid", "packet", "note"]),
    (GCMEncryption, "decrypt_packet", ["self", "seq", "first", "rest", "header_len", "mac"]),
    (SSHConnection, "_send", ["self", "data"]),
    (GCMCipher, "_update_iv", ["self"]),
])
def test_private_methods_exist_with_the_expected_parameters(owner, name, params):
    assert _params(getattr(owner, name)) == params


def test_handler_names_and_debug_level_are_where_they_were():
    assert asyncssh_compat.map_handler_name("random@psiphon.ca") == "random_at_psiphon_dot_ca"
    assert callable(SSHConnection._process_keepalive_at_openssh_dot_com_global_request)
    assert isinstance(SSHLogger._debug_level, int)
    assert PsiphonServerConnection._process_psiphon_status_global_request is PsiphonServerConnection._answer_status
    assert PsiphonServerConnection._process_random_at_psiphon_dot_ca_open is \
        PsiphonServerConnection._open_random_stream


class EchoSession(asyncssh.SSHTCPSession):
    """The destination of a forward: echoes what it receives."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def connection_made(self, chan) -> None:
        self.chan = chan
        self.policy.channels.append(chan)

    def data_received(self, data, datatype) -> None:
        self.policy.kinds.add(type(data))
        self.chan.write(data)


class Policy:
    def __init__(self) -> None:
        self.api_requests: list[tuple[str, bytes]] = []
        self.channels: list = []
        self.kinds: set[type] = set()  # of the data the echo sessions were handed
        self.closed = asyncio.Event()
        self.closed_with: Exception | None = None

    def authenticate(self, username: str, password: str) -> bool:
        return password == "secret"

    async def api_request(self, name: str, payload: bytes) -> bytes:
        self.api_requests.append((name, payload))
        return b"answer to " + payload

    async def open_forward(self, host: str, port: int, *, no_split: bool = False):
        return EchoSession(self)

    def random_stream_allowed(self) -> bool:
        return True

    def charge_upstream(self, n: int) -> float:
        return 0.0

    def charge_downstream(self, n: int) -> float:
        return 0.0

    def connection_closed(self, exc) -> None:
        self.closed_with = exc
        self.closed.set()


class Loopback:
    """A onehop server connection and a tuned asyncssh client connection on 127.0.0.1."""

    def __init__(self) -> None:
        self.policy = Policy()
        self.server_conns: list[PsiphonServerConnection] = []

    async def start(self, cipher: str = GCM, rekey_bytes: int = 1 << 30,
                    keepalive_interval: float = 0) -> TunnelClient:
        loop = asyncio.get_running_loop()
        key = asyncssh.generate_private_key("ssh-ed25519")
        options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[key], server_factory=lambda: TunnelSSHServer(lambda conn: self.policy),
            config=None, encryption_algs=[cipher], rekey_bytes=rekey_bytes, keepalive_interval=keepalive_interval)

        def accept():
            conn = new_server_connection(options)
            self.server_conns.append(conn)
            return conn

        self.server = await loop.create_server(accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]

        class Tuned:
            async def create_connection(self, session_factory, host, port):
                return await loop.create_connection(lambda: tune_client_connection(session_factory()), host, port)

        conn = await asyncssh.connect(
            "127.0.0.1", port, tunnel=Tuned(), config=None, known_hosts=None, username="u", password="secret",
            client_keys=None, agent_path=None, preferred_auth="password", encryption_algs=[cipher],
            rekey_bytes=rekey_bytes)
        self.client = TunnelClient(conn, None)
        return self.client

    async def echo(self, payload: bytes, *, accepts_views: bool = False, kinds: set | None = None) -> bytes:
        """Send ``payload`` through a direct-tcpip channel to an echo session; return the echo.
        ``kinds`` collects the types of what the client's session was handed."""
        got = bytearray()
        done = asyncio.Event()
        seen = kinds if kinds is not None else set()

        class Collect(asyncssh.SSHTCPSession):
            def data_received(self, data, datatype) -> None:
                seen.add(type(data))
                got.extend(data)
                if len(got) >= len(payload):
                    done.set()

        Collect.accepts_views = accepts_views  # type: ignore[attr-defined]
        chan, _ = await self.client.open_channel(Collect, "127.0.0.1", 9)
        chan.write(payload)
        await asyncio.wait_for(done.wait(), 20)
        chan.close()
        return bytes(got)

    async def close(self) -> None:
        self.client.close()
        await self.client.wait_closed()
        self.server.close()


class ReadCount:
    count = 0


def count_reads(conn) -> ReadCount:
    """Count the reads handed to ``conn.data_received`` from now on."""
    reads = ReadCount()
    data_received = conn.data_received

    def counting(data, datatype=None):
        reads.count += 1
        data_received(data, datatype)

    conn.data_received = counting
    return reads


@pytest.fixture
async def loopback():
    lb = Loopback()
    yield lb
    await lb.close()


async def test_live_connections_and_channels_have_the_attributes_relied_on(loopback):
    await loopback.start()
    assert await loopback.echo(b"z") == b"z"
    (server_conn,) = loopback.server_conns
    for conn in (server_conn, loopback.client.conn):
        for name, kind in (("_recv_encryption", GCMEncryption), ("_send_encryption", GCMEncryption),
                           ("_kex_complete", bool), ("_auth_complete", bool), ("_rekey_bytes_sent", int),
                           ("_rekey_bytes", int), ("_rekey_seconds", (int, float)), ("_rekey_time", float),
                           ("_send_blocksize", int), ("_send_enchdrlen", int), ("_send_seq", int),
                           ("_global_request_queue", list), ("_inpbuf", (bytes, memoryview)),
                           ("_packet", bytes), ("_recv_seq", int), ("_recv_blocksize", int),
                           ("_max_recv_pktlen", int), ("_pktlen", int), ("_channels", dict),
                           ("_auth_final", bool), ("_keepalive_interval", (int, float)),
                           ("_loop", asyncio.AbstractEventLoop)):
            assert isinstance(getattr(conn, name), kind), name
        assert conn._decompressor is None and conn._keepalive_timer is None  # no keepalives asked for
        assert conn._compressor is None and conn._transport is not None
        cipher = conn._send_encryption._cipher
        assert isinstance(cipher, GCMCipher) and len(cipher._key) == 16 and len(cipher._iv) == 12
    assert isinstance(server_conn._owner, TunnelSSHServer) and server_conn._server_host_keys
    (chan,) = loopback.policy.channels
    assert chan._encoding is None and chan._session is not None and chan._conn is server_conn
    assert isinstance(chan._init_recv_window, int) and isinstance(chan._recv_window, int)
    assert isinstance(chan._recv_buf, list) and chan._send_state in ("open", "close_pending", "closed")
    assert chan._recv_state in ("open", "eof_pending", "eof", "close_pending", "closed")
    assert server_conn._channels[chan._recv_chan] is chan


async def test_api_requests_travel_as_raw_payloads_and_are_answered_later(loopback):
    client = await loopback.start()
    assert await client.api_request("psiphon-status", b'{"x":1}') == b'answer to {"x":1}'
    assert loopback.policy.api_requests == [("psiphon-status", b'{"x":1}')]


async def test_padded_keepalives_get_a_timestamped_answer(loopback):
    client = await loopback.start()
    pkttype, packet = await asyncssh_compat.send_global_request(client.conn, b"keepalive@openssh.com", b"pad" * 10)
    assert pkttype == MSG_REQUEST_SUCCESS and len(packet.get_remaining_payload()) >= 8


@pytest.mark.parametrize("cipher", [GCM, "chacha20-poly1305@openssh.com", "aes128-ctr"])
async def test_bulk_data_survives_every_cipher(loopback, cipher):
    await loopback.start(cipher)
    payload = os.urandom(3_000_000)
    assert await loopback.echo(payload) == payload


async def test_with_gcm_an_incomplete_packet_waits_as_a_view_of_the_read(loopback, monkeypatch):
    views: set[int] = set()
    receive = asyncssh_compat.receive

    def spy(conn, data, data_received):
        receive(conn, data, data_received)
        if type(conn._inpbuf) is memoryview:
            assert isinstance(conn._recv_encryption, GCMEncryption)
            views.add(id(conn))
        assert type(conn._packet) is bytes  # what asyncssh's GCM decryption joins onto

    monkeypatch.setattr(asyncssh_compat, "receive", spy)
    await loopback.start()
    payload = os.urandom(2_000_000)
    assert await loopback.echo(payload) == payload
    (server_conn,) = loopback.server_conns
    assert views == {id(loopback.client.conn), id(server_conn)}


async def test_rekeys_in_the_middle_of_a_read_keep_the_stream_intact(loopback):
    await loopback.start(rekey_bytes=256 * 1024)
    payload = os.urandom(2_000_000)
    assert await loopback.echo(payload) == payload


async def test_window_comes_back_once_per_read_and_only_for_delivered_bytes(loopback):
    """Both ends opened with 8 MiB: window goes back a quarter of it at a time, at most once
    per read, and only for bytes the session has."""
    await loopback.start()
    adjusts: list[int] = []

    payload = os.urandom(6_000_000)
    task = asyncio.ensure_future(loopback.echo(payload))
    while not loopback.policy.channels:
        await asyncio.sleep(0)  # wait for the server's channel: no time passes
    chan = loopback.policy.channels[0]
    send_packet = chan.send_packet

    def counting_send_packet(pkttype, *args):
        if pkttype == MSG_CHANNEL_WINDOW_ADJUST:
            adjusts.append(int.from_bytes(args[0], "big"))
        send_packet(pkttype, *args)

    chan.send_packet = counting_send_packet
    (server_conn,) = loopback.server_conns
    reads = count_reads(server_conn)
    assert await task == payload
    quarter = CHANNEL_WINDOW // 4
    assert 2 <= len(adjusts) <= min(reads.count, len(payload) // quarter)
    assert all(n >= quarter for n in adjusts)
    # every byte delivered was returned, none more: the window is whole again (or short
    # of at most one threshold's worth not yet due)
    assert 0 <= chan._init_recv_window - chan._recv_window < quarter


@pytest.mark.parametrize("own_window", [4 * 32768, CHANNEL_WINDOW], ids=["as-go", "large-own-window"])
async def test_a_peer_that_believes_a_small_window_gets_window_back_in_time(loopback, own_window):
    """Psiphon's Go code opens with a 128 KiB window of its own and believes ours to be no
    larger: the server returns window every WINDOW_ADJUST_AFTER bytes, and an upload from
    such a peer runs to the end instead of stalling at 128 KiB. A peer that opens with a
    large window of its own yet believes a small one gets window back by the stall guard."""
    client = await loopback.start()
    got = bytearray()
    done = asyncio.Event()
    payload = os.urandom(1_000_000)

    class Collect(asyncssh.SSHTCPSession):
        def data_received(self, data, datatype) -> None:
            got.extend(data)
            if len(got) >= len(payload):
                done.set()

    go_window = 4 * 32768
    chan, _ = await client.conn.create_connection(Collect, "127.0.0.1", 9, window=own_window, max_pktsize=32768)
    chan._send_window = min(chan._send_window, go_window)  # what Go believes it was granted
    chan.write(payload)
    await asyncio.wait_for(done.wait(), 10)
    assert bytes(got) == payload


async def test_packets_are_logged_when_packet_logging_is_on(loopback, caplog):
    asyncssh.set_debug_level(3)
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncssh"):
            await loopback.start()
            assert await loopback.echo(b"x" * 1000) == b"x" * 1000
    finally:
        asyncssh.set_debug_level(1)
    assert any("Received MSG_CHANNEL_DATA" in r.getMessage() for r in caplog.records)
    assert any("Sent MSG_CHANNEL_DATA" in r.getMessage() for r in caplog.records)


async def test_packet_log_calls_are_skipped_when_packet_logging_is_off(loopback, monkeypatch):
    calls = []
    monkeypatch.setattr(SSHPacketLogger, "_log_packet", lambda *args: calls.append(args))
    await loopback.start()
    assert await loopback.echo(b"y" * 200_000) == b"y" * 200_000
    # the handshake and channel opens log (kex, auth and a channel not tuned yet): data does not
    assert [c for c in calls if c[2] in (MSG_CHANNEL_DATA, MSG_CHANNEL_WINDOW_ADJUST)] == []


async def test_host_key_choice_is_per_connection(loopback):
    await loopback.start()
    (server_conn,) = loopback.server_conns
    assert server_conn.get_server_host_key() is not None
    assert asyncssh_compat.is_attached(server_conn)
    assert isinstance(asyncssh_compat.server_object(server_conn), TunnelSSHServer)


@pytest.mark.parametrize("rekey_bytes", [1 << 30, 200_000])
async def test_gcm_channel_data_skips_asyncssh_send_packet_and_still_rekeys(loopback, monkeypatch, rekey_bytes):
    """Channel data and window updates go through send_data_fast (asyncssh's own send_packet
    sees none of them until a rekey is due), their bytes still count towards the rekey
    limit, and the peer decrypts every packet."""
    stock = {MSG_CHANNEL_DATA: 0, MSG_CHANNEL_WINDOW_ADJUST: 0, MSG_KEXINIT: 0}
    send_packet = SSHConnection.send_packet

    def counting(self, pkttype, *args, handler=None):
        if pkttype in stock:
            stock[pkttype] += 1
        send_packet(self, pkttype, *args, handler=handler)

    monkeypatch.setattr(SSHConnection, "send_packet", counting)
    await loopback.start(rekey_bytes=rekey_bytes)
    payload = os.urandom(1_500_000)
    assert await loopback.echo(payload) == payload
    if rekey_bytes > 2 * len(payload):
        # one KEXINIT each way, at the start; window updates took the fast path too
        assert stock == {MSG_CHANNEL_DATA: 0, MSG_CHANNEL_WINDOW_ADJUST: 0, MSG_KEXINIT: 2}
    else:
        # rekeys (a KEXINIT each way) at least every two limits' worth: without counting the
        # fast path's bytes there would be none
        assert stock[MSG_KEXINIT] >= 2 + 2 * (len(payload) // rekey_bytes // 2)


async def test_gcm_packets_are_decrypted_where_they_lie_in_the_read(loopback, monkeypatch):
    """Most packets arrive whole in one read and skip asyncssh's decrypt_packet (which joins
    copies); those spread over reads fall back to it; all arrive intact."""
    fallbacks = 0
    stock = GCMEncryption.decrypt_packet

    def counting(self, *args):
        nonlocal fallbacks
        fallbacks += 1
        return stock(self, *args)

    monkeypatch.setattr(GCMEncryption, "decrypt_packet", counting)
    await loopback.start()
    payload = os.urandom(4_000_000)
    assert await loopback.echo(payload) == payload
    packets_each_way = len(payload) // (64 * 1024)
    assert fallbacks < packets_each_way  # of about twice as many packets received


async def test_a_tampered_packet_fails_the_mac_check(loopback):
    client = await loopback.start()
    assert await loopback.echo(b"before") == b"before"
    chan, _ = await client.open_channel(asyncssh.SSHTCPSession, "127.0.0.1", 9)
    transport = client.conn._transport
    write = transport.write
    transport.write = lambda data: write(data[:-20] + bytes([data[-20] ^ 1]) + data[-19:])
    chan.write(b"x" * 100_000)
    await asyncio.wait_for(loopback.policy.closed.wait(), 10)
    assert isinstance(loopback.policy.closed_with, asyncssh.MACError)


class DispatchCount:
    """Channel packets that went through asyncssh's dispatch (process_packet), by type."""

    def __init__(self, monkeypatch) -> None:
        self.by_type: dict[int, int] = {}
        process_packet = SSHChannel.process_packet

        def counting(chan, pkttype, pktid, packet):
            self.by_type[pkttype] = self.by_type.get(pkttype, 0) + 1
            return process_packet(chan, pkttype, pktid, packet)

        monkeypatch.setattr(SSHChannel, "process_packet", counting)


@pytest.mark.parametrize("cipher", [GCM, "chacha20-poly1305@openssh.com"])
async def test_gcm_tunnel_channel_data_skips_asyncssh_dispatch(loopback, monkeypatch, cipher):
    """Under GCM a tunnel channel's data goes from the read to the channel directly; under
    any other cipher (the control: the count works) through asyncssh's dispatch."""
    dispatched = DispatchCount(monkeypatch)
    await loopback.start(cipher)
    payload = os.urandom(2_000_000)
    assert await loopback.echo(payload) == payload
    data_packets = dispatched.by_type.get(MSG_CHANNEL_DATA, 0)
    if cipher == GCM:
        assert data_packets == 0
        assert dispatched.by_type.get(MSG_CHANNEL_WINDOW_ADJUST, 0) >= 1  # other channel packets still go there
    else:
        assert data_packets >= 2 * len(payload) // (64 * 1024)


@pytest.mark.parametrize("cipher", [GCM, "chacha20-poly1305@openssh.com"])
async def test_sessions_that_accept_views_get_payloads_as_views_and_others_bytes(loopback, cipher):
    """Under GCM a session that ``accepts_views`` is handed views of the decrypted packets
    (no copy); every other session, and every session under another cipher, gets bytes."""
    await loopback.start(cipher)
    payload = os.urandom(1_000_000)
    viewer: set[type] = set()
    assert await loopback.echo(payload, accepts_views=True, kinds=viewer) == payload
    assert viewer == ({memoryview} if cipher == GCM else {bytes})
    plain: set[type] = set()
    assert await loopback.echo(payload, kinds=plain) == payload
    assert plain == {bytes}
    assert loopback.policy.kinds == {bytes}  # the server's echo sessions do not accept views


async def test_packets_split_anywhere_across_reads_arrive_intact(loopback, monkeypatch):
    """Reads cut inside the length field, inside the tag, a byte after a packet: packets
    begun in one read are completed from the next, and still skip asyncssh's dispatch."""
    dispatched = DispatchCount(monkeypatch)
    await loopback.start()
    (server_conn,) = loopback.server_conns
    data_received = server_conn.data_received
    cuts = [1, 3, 17, 30_000, 300_000]
    reads = 0

    reads_seen: set[int] = set()  # ids of the bytes objects handed to data_received
    kept: list[bytes] = []  # (alive, so that no copy can be given one of their ids)
    from_the_read = from_a_copy = 0
    whole_packet = asyncssh_compat._receive_whole_gcm_packet

    def spy(conn, enc, buf):
        nonlocal from_the_read, from_a_copy
        done = whole_packet(conn, enc, buf)
        if done and conn is server_conn:
            if id(buf.obj) in reads_seen:
                from_the_read += 1
            else:
                from_a_copy += 1
        return done

    def fragmenting(data, datatype=None):
        nonlocal reads
        view = memoryview(data)
        while view:
            size = cuts[reads % len(cuts)]
            reads += 1
            piece = bytes(view[:size])
            reads_seen.add(id(piece))
            kept.append(piece)
            data_received(piece, datatype)
            view = view[size:]

    monkeypatch.setattr(asyncssh_compat, "_receive_whole_gcm_packet", spy)
    server_conn.data_received = fragmenting
    payload = os.urandom(3_000_000)
    assert await loopback.echo(payload) == payload
    assert reads > 20
    assert dispatched.by_type.get(MSG_CHANNEL_DATA, 0) == 0
    # a packet begun in one read is completed alone: the packets after it are decrypted
    # from the read itself, not from a copy of the read joined onto the remainder
    assert from_the_read > from_a_copy > 0


async def test_other_packets_in_the_same_read_as_data_reach_asyncssh(loopback):
    """An API request written right behind channel data (one read at the server) is decrypted
    with the data and answered by asyncssh's own handling; the data arrives intact."""
    client = await loopback.start()
    got = bytearray()
    payload = os.urandom(300_000)

    class Collect(asyncssh.SSHTCPSession):
        def data_received(self, data, datatype) -> None:
            got.extend(data)

    chan, _ = await client.open_channel(Collect, "127.0.0.1", 9)
    chan.write(payload)
    answer = await asyncio.wait_for(client.api_request("psiphon-status", b"{}"), 10)
    chan.write_eof()
    assert answer == b"answer to {}"
    for _ in range(200):
        if len(got) >= len(payload):
            break
        await asyncio.sleep(0.01)
    assert bytes(got) == payload


async def test_keepalive_timer_is_not_rescheduled_on_every_read(loopback, monkeypatch):
    resets = 0
    stock_reset = SSHConnection._reset_keepalive_timer

    def counting(self):
        nonlocal resets
        if isinstance(self, PsiphonServerConnection) and self._auth_complete:
            resets += 1
        stock_reset(self)

    monkeypatch.setattr(SSHConnection, "_reset_keepalive_timer", counting)
    await loopback.start(keepalive_interval=30)
    (server_conn,) = loopback.server_conns
    first_timer = server_conn._keepalive_timer
    reads = count_reads(server_conn)
    payload = os.urandom(2_000_000)
    assert await loopback.echo(payload) == payload
    assert reads.count >= 8
    assert resets <= 1  # asyncssh's own reset ran at most once (not once per read)
    assert server_conn._keepalive_timer is first_timer and first_timer is not None
    assert first_timer.when() > asyncio.get_running_loop().time() + 20


async def test_keepalives_go_out_after_silence_and_not_during_traffic(loopback, monkeypatch):
    sent: list[float] = []
    make_request = SSHConnection._make_keepalive_request

    async def recording(self):
        if isinstance(self, PsiphonServerConnection):
            sent.append(asyncio.get_running_loop().time())
        await make_request(self)

    monkeypatch.setattr(SSHConnection, "_make_keepalive_request", recording)
    interval = 0.3
    client = await loopback.start(keepalive_interval=interval)
    loop = asyncio.get_running_loop()
    chan, _ = await client.open_channel(asyncssh.SSHTCPSession, "127.0.0.1", 9)
    busy_until = loop.time() + 4 * interval
    while loop.time() < busy_until:  # data every 50 ms: the server never goes quiet
        chan.write(b"k" * 1000)
        last_write = loop.time()
        await asyncio.sleep(0.05)
    assert sent == []
    await asyncio.sleep(3.5 * interval)
    assert sent, "no keepalive after silence"
    assert sent[0] >= last_write + interval * 0.9
    (server_conn,) = loopback.server_conns
    assert asyncssh_compat.is_attached(server_conn)  # the client answered: still connected


class BatchCount:
    """Batches ``_send_data_batch`` sent (more than 0 bytes), by connection role."""

    def __init__(self, monkeypatch) -> None:
        self.server = self.client = 0
        batch = asyncssh_compat._send_data_batch

        def counting(chan, data):
            sent = batch(chan, data)
            if sent:
                if isinstance(chan._conn, PsiphonServerConnection):
                    self.server += 1
                else:
                    self.client += 1
            return sent

        monkeypatch.setattr(asyncssh_compat, "_send_data_batch", counting)


async def test_a_tunnel_channel_write_goes_out_as_one_batch(loopback, monkeypatch):
    """One write of 1 MiB: all its packets in one write to the transport, intact at the peer."""
    batches = BatchCount(monkeypatch)
    await loopback.start()
    transport_writes: list[int] = []
    send = loopback.client.conn._send

    def counting_send(data):
        transport_writes.append(len(data))
        send(data)

    loopback.client.conn._send = counting_send
    payload = os.urandom(1 << 20)
    assert await loopback.echo(payload) == payload
    assert batches.client >= 1 and batches.server >= 1
    assert max(transport_writes) > len(payload)  # 16 packets of 64 KiB, headers and tags: one write


async def test_what_the_window_does_not_take_waits_in_asyncssh(loopback, monkeypatch):
    """A peer granting a 100 kB window: the first batch takes that much, the rest waits in
    asyncssh's buffer and goes out as window comes back; every byte arrives in order."""
    batches = BatchCount(monkeypatch)
    client = await loopback.start()
    got = bytearray()
    payload = os.urandom(1_000_000)
    done = asyncio.Event()

    class Collect(asyncssh.SSHTCPSession):
        def data_received(self, data, datatype) -> None:
            got.extend(data)
            if len(got) >= len(payload):
                done.set()

    # an asyncssh channel as it comes (not a tuned one): it grants 100 kB and returns it late
    chan, _ = await client.conn.create_connection(Collect, "127.0.0.1", 9, window=100_000, max_pktsize=32768)
    (server_chan,) = loopback.policy.channels
    chan.write(payload)  # the server's echo session writes it back through a batching channel
    await asyncio.wait_for(done.wait(), 20)
    assert bytes(got) == payload
    assert batches.server >= 2  # the first write, then writes after window came back
    assert server_chan._send_pktsize == 32768


async def test_packet_logging_turns_batches_off(loopback, monkeypatch, caplog):
    batches = BatchCount(monkeypatch)
    asyncssh.set_debug_level(3)
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncssh"):
            await loopback.start()
            assert await loopback.echo(b"q" * 100_000) == b"q" * 100_000
    finally:
        asyncssh.set_debug_level(1)
    assert batches.server == batches.client == 0


class Producer(asyncssh.SSHTCPSession):
    """A forward's destination that sends as fast as its channel lets it: one 256 KiB write
    per loop turn (as a socket read would), stopping while paused."""

    CHUNK = 256 * 1024

    def __init__(self, total: int) -> None:
        self.total, self.sent = total, 0
        self.paused = False
        self.pauses = 0
        self.largest_buffer = 0

    def connection_made(self, chan) -> None:
        self.chan = chan

    def pause_writing(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_writing(self) -> None:
        if self.paused:
            self.paused = False
            asyncio.get_running_loop().call_soon(self.produce)

    def produce(self) -> None:
        if self.paused or self.sent >= self.total:
            return
        self.chan.write(b"p" * self.CHUNK)
        self.sent += self.CHUNK
        transport = self.chan.get_extra_info("connection")._transport
        self.largest_buffer = max(self.largest_buffer, transport.get_write_buffer_size())
        asyncio.get_running_loop().call_soon(self.produce)


async def test_a_full_transport_pauses_tunnel_channel_sources(loopback):
    """The client stops reading: the server's channel source is paused once its transport's
    buffer is full, rather than filling it up to the channel's 8 MiB window; once the client
    reads again every byte arrives."""
    total = 12 * 1024 * 1024
    producer = Producer(total)

    async def open_forward(host, port, *, no_split=False):
        return producer

    loopback.policy.open_forward = open_forward
    client = await loopback.start()
    got = 0
    done = asyncio.Event()

    class Count(asyncssh.SSHTCPSession):
        def data_received(self, data, datatype) -> None:
            nonlocal got
            got += len(data)
            if got >= total:
                done.set()

    await client.open_channel(Count, "127.0.0.1", 9)
    client.conn._transport.pause_reading()
    producer.produce()
    for _ in range(200):  # until the kernel's buffers are full and the source has stopped
        await asyncio.sleep(0.01)
        if producer.paused and producer.sent < total:
            break
    await asyncio.sleep(0.2)
    assert producer.paused and producer.pauses >= 1
    assert producer.largest_buffer < 2 * 1024 * 1024  # without the hold: several MiB
    client.conn._transport.resume_reading()
    await asyncio.wait_for(done.wait(), 30)
    assert got == total


async def test_holding_respects_a_channels_own_pause(loopback):
    """Resuming the transport resumes only sources it paused; a channel whose own send
    buffer keeps its source paused stays paused."""
    await loopback.start()
    assert await loopback.echo(b"warm") == b"warm"
    (server_conn,) = loopback.server_conns
    calls: list[str] = []
    payload = b"x"
    task = asyncio.ensure_future(loopback.echo(payload))
    while len(loopback.policy.channels) < 2:
        await asyncio.sleep(0)
    chan = loopback.policy.channels[1]
    session = chan._session
    session.pause_writing = lambda: calls.append("pause")
    session.resume_writing = lambda: calls.append("resume")
    server_conn.pause_writing()
    assert calls == ["pause"]
    chan._pause_resume_writing()  # asyncssh's own check while the connection is paused: held still
    assert calls[-1] == "pause"
    chan._send_paused = True  # as if its own send buffer were over its high-water mark
    server_conn.resume_writing()
    assert "resume" not in calls
    chan._send_paused = False
    server_conn.pause_writing()
    server_conn.resume_writing()
    assert calls[-1] == "resume"
    assert await task == payload


async def test_the_tuned_client_connection_holds_its_channels_too(loopback):
    client = await loopback.start()
    calls: list[str] = []

    class Recording(asyncssh.SSHTCPSession):
        def pause_writing(self) -> None:
            calls.append("pause")

        def resume_writing(self) -> None:
            calls.append("resume")

    await client.open_channel(Recording, "127.0.0.1", 9)
    client.conn.pause_writing()
    client.conn.resume_writing()
    assert calls == ["pause", "resume"]


async def test_without_encrypt_into_writes_take_asyncssh_path(loopback, monkeypatch):
    """cryptography before 47 has no AESGCM.encrypt_into: no batches, the same bytes."""
    monkeypatch.setattr(asyncssh_compat, "CAN_ENCRYPT_INTO", False)
    batches = BatchCount(monkeypatch)
    await loopback.start()
    payload = os.urandom(1_000_000)
    assert await loopback.echo(payload) == payload
    assert batches.server == batches.client == 0


async def _echo_with_reads_cut(cuts: list[int], size: int) -> tuple[bytes, bytes, int]:
    """A fresh loopback whose server gets its input cut at ``cuts`` (cycled): (sent, echoed,
    data packets asyncssh's own dispatch saw)."""
    lb = Loopback()
    await lb.start()
    seen: dict[int, int] = {}
    process_packet = SSHChannel.process_packet

    def counting(chan, pkttype, pktid, packet):
        seen[pkttype] = seen.get(pkttype, 0) + 1
        return process_packet(chan, pkttype, pktid, packet)

    (server_conn,) = lb.server_conns
    data_received = server_conn.data_received
    reads = 0

    def fragmenting(data, datatype=None):
        nonlocal reads
        view = memoryview(data)
        while view:
            size_now = cuts[reads % len(cuts)]
            reads += 1
            data_received(bytes(view[:size_now]), datatype)
            view = view[size_now:]

    server_conn.data_received = fragmenting
    SSHChannel.process_packet = counting  # type: ignore[method-assign]
    try:
        payload = os.urandom(size)
        echoed = await lb.echo(payload)
    finally:
        SSHChannel.process_packet = process_packet  # type: ignore[method-assign]
        await lb.close()
    return payload, echoed, seen.get(MSG_CHANNEL_DATA, 0)


@settings(max_examples=25)
@given(cuts=st.lists(st.integers(min_value=1, max_value=200_000), min_size=1, max_size=8),
       size=st.integers(min_value=1, max_value=400_000))
def test_any_cutting_of_the_input_into_reads_delivers_the_stream_intact(cuts, size):
    payload, echoed, dispatched = asyncio.run(_echo_with_reads_cut(cuts, size))
    assert echoed == payload
    assert dispatched == 0  # every data packet, however it was cut, took the direct path
