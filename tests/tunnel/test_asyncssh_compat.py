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
from asyncssh.channel import SSHChannel
from asyncssh.connection import SSHConnection, SSHServerConnection
from asyncssh.crypto.cipher import GCMCipher
from asyncssh.constants import MSG_CHANNEL_DATA, MSG_CHANNEL_WINDOW_ADJUST, MSG_KEXINIT, MSG_REQUEST_SUCCESS
from asyncssh.encryption import GCMEncryption
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger

from onehop.tunnel import asyncssh_compat
from onehop.tunnel.client import TunnelClient
from onehop.tunnel.server import PsiphonServerConnection, TunnelSSHServer, new_server_connection
from onehop.tunnel.tuning import WINDOW_ADJUST_AFTER, tune_client_connection

GCM = "aes128-gcm@openssh.com"


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


@pytest.mark.parametrize("owner, name, params", [
    (SSHConnection, "_make_global_request", ["self", "request", "args"]),
    (SSHConnection, "_report_global_response", ["self", "result"]),
    (SSHConnection, "_service_next_global_request", ["self"]),
    (SSHConnection, "_recv_data", ["self"]),
    (SSHConnection, "_recv_pkthdr", ["self"]),
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
        self.chan.write(data)


class Policy:
    def __init__(self) -> None:
        self.api_requests: list[tuple[str, bytes]] = []
        self.channels: list = []
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

    async def start(self, cipher: str = GCM, rekey_bytes: int = 1 << 30) -> TunnelClient:
        loop = asyncio.get_running_loop()
        key = asyncssh.generate_private_key("ssh-ed25519")
        options = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[key], server_factory=lambda: TunnelSSHServer(lambda conn: self.policy),
            config=None, encryption_algs=[cipher], rekey_bytes=rekey_bytes)

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

    async def echo(self, payload: bytes) -> bytes:
        """Send ``payload`` through a direct-tcpip channel to an echo session; return the echo."""
        got = bytearray()
        done = asyncio.Event()

        class Collect(asyncssh.SSHTCPSession):
            def data_received(self, data, datatype) -> None:
                got.extend(data)
                if len(got) >= len(payload):
                    done.set()

        chan, _ = await self.client.open_channel(Collect, "127.0.0.1", 9)
        chan.write(payload)
        await asyncio.wait_for(done.wait(), 20)
        chan.close()
        return bytes(got)

    async def close(self) -> None:
        self.client.close()
        await self.client.wait_closed()
        self.server.close()


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
                           ("_packet", bytes)):
            assert isinstance(getattr(conn, name), kind), name
        assert conn._compressor is None and conn._transport is not None
        cipher = conn._send_encryption._cipher
        assert isinstance(cipher, GCMCipher) and len(cipher._key) == 16 and len(cipher._iv) == 12
    assert isinstance(server_conn._owner, TunnelSSHServer) and server_conn._server_host_keys
    (chan,) = loopback.policy.channels
    assert chan._encoding is None and chan._session is not None and chan._conn is server_conn
    assert isinstance(chan._init_recv_window, int) and isinstance(chan._recv_window, int)
    assert isinstance(chan._recv_buf, list) and chan._send_state in ("open", "close_pending", "closed")


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
    await loopback.start()
    adjusts: list[int] = []
    reads = 0

    payload = os.urandom(1_000_000)
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
    data_received = server_conn.data_received

    def counting_data_received(data, datatype=None):
        nonlocal reads
        reads += 1
        data_received(data, datatype)

    server_conn.data_received = counting_data_received
    assert await task == payload
    assert adjusts and len(adjusts) <= reads
    assert all(n >= WINDOW_ADJUST_AFTER for n in adjusts)
    # every byte delivered was returned, none more: the window is whole again (or short
    # of at most one threshold's worth not yet due)
    assert 0 <= chan._init_recv_window - chan._recv_window < WINDOW_ADJUST_AFTER


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
    """Channel data goes through send_data_fast (asyncssh's own send_packet sees none of it
    until a rekey is due), its bytes still count towards the rekey limit, and the peer
    decrypts every packet."""
    stock = {MSG_CHANNEL_DATA: 0, MSG_KEXINIT: 0}
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
        assert stock == {MSG_CHANNEL_DATA: 0, MSG_KEXINIT: 2}  # one each way, at the start
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
