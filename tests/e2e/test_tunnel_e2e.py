"""End to end on loopback: real servers, a real client, pages through both proxies."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import asyncssh
import pytest

from onehop.client.dialer import dial
from onehop.net.dial import connect_socket
from onehop.client.config import ClientConfig
from tests.conftest import vector_cases
from tests.helpers.channels import random_stream_bytes
from tests.helpers.waiting import wait_until
from tests.e2e.proxyclient import (connect_via_http_proxy, http_get_via_http_proxy,
                                   http_get_via_socks, socks5_connect)
from datetime import UTC

pytestmark = pytest.mark.e2e


def sessions(running):
    return list(running.server.clients)


@pytest.mark.parametrize("protocol", ["OSSH", "OSSH-PREFIX", "SSH"])
async def test_page_through_socks_and_http_proxy(network, make_client, page, protocol):
    running = await network.add()
    client = await make_client([running.entry], protocols=(protocol,))
    body, port = page
    assert await http_get_via_socks(client.socks_port, "127.0.0.1", port) == body
    assert await http_get_via_http_proxy(client.http_port, "127.0.0.1", port) == body
    (session,) = sessions(running)
    expected_relay = "SSH" if protocol == "SSH" else "OSSH"
    assert session.tunnel_protocol == expected_relay
    assert session.handshake.params["relay_protocol"] == expected_relay
    assert session.handshake.params.get("ossh_prefix") == ("http-get" if protocol == "OSSH-PREFIX" else None)
    assert session.ossh_prefix == ("http-get" if protocol == "OSSH-PREFIX" else None)
    assert session.bytes.down >= 2 * len(body)


async def test_connect_through_http_proxy_and_socks_domain(network, make_client, echo_server):
    running = await network.add()
    client = await make_client([running.entry])
    reader, writer, head = await connect_via_http_proxy(client.http_port, "127.0.0.1", echo_server)
    assert head.startswith(b"HTTP/1.1 200")
    payload = os.urandom(200_000)
    writer.write(payload)
    assert await reader.readexactly(len(payload)) == payload
    writer.close()
    reader, writer, code = await socks5_connect(client.socks_port, "localhost", echo_server)
    assert code == 0  # the name was resolved on the server side
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    writer.close()


@pytest.mark.parametrize("protocol", ["OSSH", "SSH"])
async def test_keyed_connections_receive_without_copying_their_reads(network, make_client, echo_server,
                                                                      protocol, monkeypatch):
    """tunnel/asyncssh_compat.py keeps asyncssh's receive buffer as a view of the last read
    once GCM keys are in use; both ends must take that path (a packet left incomplete at the
    end of a read stays a view), and the bytes must come through intact."""
    from onehop.tunnel import asyncssh_compat

    left_as_view: set[int] = set()
    receive = asyncssh_compat.receive

    def spy(conn, data, data_received):
        receive(conn, data, data_received)
        if type(conn._inpbuf) is memoryview:
            left_as_view.add(id(conn))

    monkeypatch.setattr(asyncssh_compat, "receive", spy)
    running = await network.add()
    client = await make_client([running.entry], protocols=(protocol,))
    reader, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
    assert code == 0
    (session,) = sessions(running)
    both = {id(client.active.client.conn), id(session.conn)}
    for n in range(200):  # where reads end is up to the kernel: rounds until both ends saw one
        payload = os.urandom(1_000_000 + 7919 * n)  # many packets; sizes vary where batches end
        writer.write(payload)
        assert await reader.readexactly(len(payload)) == payload
        if left_as_view >= both:
            break
    writer.close()
    assert left_as_view == both


async def test_socks_reply_codes_for_refused_and_forbidden(network, make_client):
    open_server = await network.add(allow_bogons=True)
    closed_port = network.servers[0].entry.ssh_obfuscated_port + 1000
    client = await make_client([open_server.entry])
    _, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", closed_port)
    writer.close()
    assert code == 0x05  # connection refused, as the server saw it

    strict = await network.add(allow_bogons=False)
    strict_client = await make_client([strict.entry])
    _, writer, code = await socks5_connect(strict_client.socks_port, "127.0.0.1", closed_port)
    writer.close()
    assert code == 0x02  # not allowed: loopback is a bogon
    _, writer, code = await socks5_connect(strict_client.socks_port, "127.0.0.1",
                                           strict.entry.ssh_obfuscated_port)
    writer.close()
    assert code == 0x02


async def test_the_servers_port_on_another_loopback_address_is_reachable(network, make_client):
    """The server's own listeners are denied by the addresses they listen on: with the
    server on 127.0.0.x:P, 127.0.0.1:P is someone else's (tests pick such ports at random,
    and a clash once made a test through 127.0.0.1 fail)."""
    running = await network.add(allow_bogons=True)
    port = running.entry.ssh_obfuscated_port

    async def echo(reader, writer):
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    echo_server = await asyncio.start_server(echo, "127.0.0.1", port)
    try:
        client = await make_client([running.entry])
        reader, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", port)
        assert code == 0
        writer.write(b"ping")
        assert await reader.read(100) == b"ping"
        writer.close()
        _, writer, code = await socks5_connect(client.socks_port, running.entry.ip_address, port)
        writer.close()
        assert code == 0x02  # the server's own endpoint: not allowed
    finally:
        echo_server.close()


async def test_notices_follow_psiphon_names(network, make_client, notice_log):
    running = await network.add(region="DE")
    await make_client([running.entry])
    for name in ("ListeningSocksProxyPort", "ListeningHttpProxyPort", "ConnectingServer",
                 "ActiveTunnel", "Tunnels", "ClientRegion", "AvailableEgressRegions"):
        assert notice_log.of_type(name), name
    assert notice_log.of_type("Tunnels")[-1]["data"] == {"count": 1}
    assert notice_log.of_type("AvailableEgressRegions")[-1]["data"] == {"regions": ["DE"]}


async def test_first_good_server_wins_among_dead_ones(network, make_client, page):
    good = await network.add()
    dead = []
    for i in range(6):  # entries pointing at closed ports
        entry = good.entry.with_fields({"ipAddress": f"127.0.0.{200 + i}"})
        dead.append(entry)
    client = await make_client(dead + [good.entry], connection_workers=4)
    assert client.active.entry.ip_address == good.entry.ip_address
    body, port = page
    assert await http_get_via_socks(client.socks_port, "127.0.0.1", port) == body


async def test_unreachable_server_keeps_client_trying(network, make_client, notice_log):
    running = await network.add()
    ghost = running.entry.with_fields({"ipAddress": "127.0.0.250"})
    client = await make_client([ghost], wait_for_tunnel=False)
    await wait_until(lambda: len(notice_log.of_type("ConnectingServer")) >= 3, 10)
    failures = [n for n in notice_log.of_type("Info") if n["data"].get("message") == "server connection failed"]
    assert failures and client.active is None


async def test_reconnects_after_server_dies(network, make_client, page, notice_log):
    first = await network.add()
    second = await network.add()
    client = await make_client([first.entry, second.entry])
    victim = next(r for r in (first, second) if r.entry.ip_address == client.active.entry.ip_address)
    await victim.server.stop()
    await wait_until(lambda: client.active is not None
                     and client.active.entry.ip_address != victim.entry.ip_address, 20)
    body, port = page
    assert await http_get_via_socks(client.socks_port, "127.0.0.1", port) == body
    assert {"count": 0} in [n["data"] for n in notice_log.of_type("Tunnels")]


async def test_same_session_id_replaces_older_connection(network):
    running = await network.add()
    config = ClientConfig(protocols=("OSSH",))
    session_id = os.urandom(16).hex()
    first = await dial(running.entry, "OSSH", config, session_id, connect_socket)
    second = await dial(running.entry, "OSSH", config, session_id, connect_socket)
    await asyncio.wait_for(first.client.wait_closed(), 5)
    assert len(sessions(running)) == 1
    second.client.close()


async def test_forwards_need_a_handshake_and_api_order_is_enforced(network, echo_server):
    running = await network.add()
    from onehop.tunnel.client import open_tunnel
    from onehop.client.dialer import _dial_target
    from onehop.core import api
    password = api.encode_ssh_password(api.SSHPasswordPayload(os.urandom(16).hex(), running.entry.ssh_password))
    target = _dial_target(running.entry, "SSH", password, ClientConfig())
    tunnel = await open_tunnel(target, connect_socket)
    with pytest.raises(asyncssh.ChannelOpenError):
        await tunnel.conn.open_connection("127.0.0.1", echo_server)
    with pytest.raises(Exception):
        await tunnel.api_request("psiphon-status", b"{}")
    tunnel.close()


CBOR_REQUEST = vector_cases("api", name="handshake_request")[0]
CBOR_PARAMS = json.loads(CBOR_REQUEST["json_payload"])


@pytest.mark.parametrize("encoding", ["cbor", "json"])
async def test_server_answers_psiphons_own_handshake_payload(network, encoding):
    """The Go client's exact handshake bytes (from the vectors) get a valid answer."""
    from onehop.tunnel.client import open_tunnel
    from onehop.client.dialer import _dial_target
    from onehop.core import api
    running = await network.add()
    payload = api.SSHPasswordPayload(os.urandom(16).hex(), running.entry.ssh_password, ("server-requests",),
                                     "0123456789ABCDEF")
    target = _dial_target(running.entry, "OSSH", api.encode_ssh_password(payload), ClientConfig())
    tunnel = await open_tunnel(target, connect_socket)
    if encoding == "cbor":  # asks for a CBOR answer (psiphon_api_response_version 1)
        request = bytes.fromhex(CBOR_REQUEST["cbor_payload"])
    else:  # the same parameters as legacy JSON, without the response version
        request = CBOR_REQUEST["json_payload"].replace('"psiphon_api_response_version":"1",', "").encode()
    raw = await tunnel.api_request("psiphon-handshake", request)
    assert (raw[:1] == b"{") == (encoding == "json")
    response = api.decode_handshake_response(raw)
    assert response.client_region == "None"
    assert response.client_address.startswith("127.0.0.1:")
    assert response.server_timestamp.endswith("Z")
    base = {name: CBOR_PARAMS[name] for name in ("propagation_channel_id", "sponsor_id",
                                                  "client_version", "client_platform")}
    connected = await tunnel.api_request("psiphon-connected", api.encode_request_params(
        {**base, "last_connected": "None"}, packed=True))
    assert api.decode_connected_response(connected).connected_timestamp.endswith(":00:00Z")
    tunnel.close()


async def test_many_parallel_streams_are_intact(network, make_client, echo_server):
    running = await network.add()
    client = await make_client([running.entry])

    async def one(size):
        reader, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
        assert code == 0
        data = os.urandom(size)
        writer.write(data)
        got = await reader.readexactly(size)
        writer.close()
        return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()

    results = await asyncio.gather(*(one(50_000 + i * 7919) for i in range(20)))
    assert all(results)


@pytest.mark.parametrize("strategy", ["classic", "consistent"])
async def test_handshake_brings_homepages_upgrade_and_one_discovered_server(
        network, make_client, notice_log, tmp_path, strategy):
    from datetime import datetime, timedelta
    import json
    hidden = await network.add(region="JP")
    now = datetime.now(UTC)
    window = [(now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              (now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")]
    from onehop.core.serverentry import encode_server_entry_fields
    psinet = {
        "default_sponsor_id": "0000000000000000",
        "sponsors": {"0000000000000000": {"home_pages": {"None": [
            {"region": "None", "url": "https://home.example/?client_region=XX"}]}}},
        "client_versions": {"Other": [{"version": "1"}, {"version": "7"}]},
        "discovery_servers": [{"discovery_date_range": window,
                               "encoded_server_entry": encode_server_entry_fields(hidden.entry)}],
        "discovery": {"strategy": strategy, "hmac_key": "test-hmac-key"},
    }
    (tmp_path / "psinet.json").write_text(json.dumps(psinet))
    entry_server = await network.add(PsinetDatabaseFilename="psinet.json")
    client = await make_client([entry_server.entry])
    assert [n["data"]["url"] for n in notice_log.of_type("Homepage")] == ["https://home.example/?client_region=None"]
    assert notice_log.of_type("ClientUpgradeAvailable")[-1]["data"] == {"version": "7"}
    discovered = {e.ip_address: e for e in client.store.entries()}
    assert hidden.entry.ip_address in discovered
    assert discovered[hidden.entry.ip_address].local_source == "DISCOVERY"


async def test_psiphon_channel_types_no_split_tunnel_and_random(network, echo_server):
    """Psiphon clients open direct-tcpip-no-split-tunnel@psiphon.ca forwards and
    random@psiphon.ca liveness streams; both work on our server."""
    from onehop.client.dialer import dial
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    conn = tunnel.client.conn
    chan = conn.create_tcp_channel()
    received = bytearray()
    done = asyncio.get_running_loop().create_future()

    class Collect(asyncssh.SSHTCPSession):
        def data_received(self, data, datatype):
            received.extend(data)
            if len(received) >= 5 and not done.done():
                done.set_result(None)

    await chan._open_tcp(Collect, b"direct-tcpip-no-split-tunnel@psiphon.ca", "127.0.0.1", echo_server, "", 0)
    chan.write(b"hello")
    await asyncio.wait_for(done, 5)
    assert bytes(received) == b"hello"
    chan.close()

    assert await random_stream_bytes(conn, 1000, 70000, 5) == 70000
    tunnel.client.close()


async def test_operator_defined_prefixes_on_both_ends(network, make_client, page):
    """OSSHPrefixSpecs on the client and ServerOSSHPrefixSpecs on the server: a TLS-looking
    first flight, answered with a TLS-looking server flight."""
    from onehop.core.ossh import ClientObfuscator, PrefixSpec
    client_pattern = r"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03[\x00-\xff]{32}"
    server_pattern = r"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03[\x00-\xff]{32}"
    running = await network.add(ServerOSSHPrefixSpecs={"tls-ish": server_pattern})
    probe = ClientObfuscator(running.entry.ssh_obfuscated_key, seed=os.urandom(16),
                             padding_prng_seed=os.urandom(32), prefix=PrefixSpec("tls-ish", client_pattern),
                             prefix_seed=os.urandom(32))
    probe.send(b"SSH-2.0-OpenSSH_8.9\r\n")
    reader, writer = await asyncio.open_connection(running.entry.ip_address, running.entry.ssh_obfuscated_port)
    writer.write(probe.data_to_send())
    first = await asyncio.wait_for(reader.readexactly(5), 5)
    assert first == b"\x16\x03\x03\x00\x5a"
    writer.close()
    client = await make_client([running.entry], protocols=("OSSH-PREFIX",),
                               ossh_prefix_specs={"tls-ish": client_pattern}, ossh_prefix_spec="tls-ish")
    body, port = page
    assert await http_get_via_socks(client.socks_port, "127.0.0.1", port) == body
    assert sessions(running)[0].ossh_prefix == "tls-ish"


async def test_padded_keepalive_gets_a_speed_test_reply_and_keeps_the_tunnel(network):
    """Psiphon's client pads keepalive@openssh.com with 0-256 bytes; asyncssh's own handler
    disconnected on any payload, dropping every Psiphon tunnel at its first keepalive."""
    import time
    from onehop.core.api.keepalive import go_time_binary
    running = await network.add()
    tunnel = await dial(running.entry, "OSSH", ClientConfig(), os.urandom(16).hex(), connect_socket)
    for padding in (b"", os.urandom(1), os.urandom(256)):
        reply = await tunnel.client.api_request("keepalive@openssh.com", padding)
        hour = int(time.time()) - int(time.time()) % 3600
        assert reply[0] == 15 and reply[1:16] in (go_time_binary(hour), go_time_binary(hour - 3600))
        assert len(reply) <= 16 + 256
    assert not tunnel.client.conn.is_closed()
    tunnel.client.close()
