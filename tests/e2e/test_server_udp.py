"""UDP through the tunnel: udpgw to the server's resolver (DNS flag) and to a UDP echo,
the client's local DNS forwarder, and the server's rules for udpgw channels and flows."""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import asyncssh
import pytest

from onehop.client.dns_forwarder import start_dns_forwarder
from onehop.client.udpgw import UdpgwClient
from onehop.errors import TunnelError
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.e2e

RESOLVER_IP = "127.0.0.5"
ANSWER_IP = "192.0.2.33"


def dns_query(name: str, query_id: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x01\x00\x01"


def dns_answer(query: bytes) -> bytes:
    """A response with one A record (``ANSWER_IP``) for the query's question."""
    (query_id,) = struct.unpack(">H", query[:2])
    question = query[12:]
    record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ANSWER_IP)
    return struct.pack(">HHHHHH", query_id, 0x8180, 1, 1, 0, 0) + question + record


class Responder(asyncio.DatagramProtocol):
    """A tiny DNS server (A records only) or, with ``echo``, a UDP echo server."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.seen: list[bytes] = []
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        self.seen.append(data)
        self.transport.sendto(data if self.echo else dns_answer(data), addr)


async def udp_server(host: str, echo: bool = False) -> tuple[Responder, int]:
    loop = asyncio.get_running_loop()
    responder = Responder(echo)
    transport, _ = await loop.create_datagram_endpoint(lambda: responder, local_addr=(host, 0))
    return responder, transport.get_extra_info("sockname")[1]


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data: bytes, addr) -> None:
        self.replies.put_nowait(data)


async def ask(port: int, query: bytes, timeout: float = 5.0) -> bytes:
    loop = asyncio.get_running_loop()
    collector = Collector()
    transport, _ = await loop.create_datagram_endpoint(lambda: collector, remote_addr=("127.0.0.1", port))
    try:
        transport.sendto(query)
        return await asyncio.wait_for(collector.replies.get(), timeout)
    finally:
        transport.close()


@pytest.fixture
async def resolver():
    responder, port = await udp_server(RESOLVER_IP)
    yield responder, port
    responder.transport.close()


@pytest.fixture
async def udp_echo():
    responder, port = await udp_server("127.0.0.1", echo=True)
    yield responder, port
    responder.transport.close()


def rules_file(tmp_path, rules: dict) -> str:
    path = tmp_path / "traffic-rules.json"
    path.write_text(json.dumps(rules))
    return str(path)


async def test_dns_through_the_local_forwarder_reaches_the_servers_resolver(network, make_client, resolver):
    responder, port = resolver
    running = await network.add(DNSResolverIPAddress=f"{RESOLVER_IP}:{port}")
    client = await make_client([running.entry])
    forwarder = await start_dns_forwarder(client, "127.0.0.1", 0)
    try:
        query = dns_query("example.com", 0x4242)
        answer = await ask(forwarder.port, query)
        assert answer[:2] == b"\x42\x42" and answer.endswith(socket.inet_aton(ANSWER_IP))
        assert responder.seen == [query]  # the resolver got the query byte for byte
        second = await ask(forwarder.port, dns_query("example.org", 7))  # same channel, new flow
        assert second[:2] == b"\x00\x07"
        (session,) = running.server.clients
        assert session.counters.udpgw_channels == 1 and session.counters.udp_forwards.opened == 2
        assert session.counters.udp_bytes.up == len(query) + len(dns_query("example.org", 7))
        assert session.counters.udp_bytes.down == len(answer) + len(second)
    finally:
        forwarder.close()


async def test_plain_udp_echo_over_one_channel_with_two_flows(network, make_client, udp_echo):
    responder, port = udp_echo
    running = await network.add()
    client = await make_client([running.entry])
    udpgw = await UdpgwClient.open(client)
    replies: dict[str, asyncio.Queue] = {"a": asyncio.Queue(), "b": asyncio.Queue()}
    flow_a = udpgw.open_flow("127.0.0.1", port, replies["a"].put_nowait)
    flow_b = udpgw.open_flow("127.0.0.1", port, replies["b"].put_nowait)
    big = bytes(range(256)) * 100
    assert flow_a.send(b"hello") and flow_b.send(big)
    assert await asyncio.wait_for(replies["a"].get(), 5) == b"hello"
    assert await asyncio.wait_for(replies["b"].get(), 5) == big
    assert sorted(responder.seen, key=len) == [b"hello", big]
    udpgw.close()


async def test_disallowed_udp_is_dropped_silently_and_dns_still_works(tmp_path, network, make_client,
                                                                      resolver, udp_echo):
    _, dns_port = resolver
    _, echo_port = udp_echo
    rules = rules_file(tmp_path, {"DefaultRules": {"AllowUDPPorts": [53]}})
    running = await network.add(DNSResolverIPAddress=f"{RESOLVER_IP}:{dns_port}", TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    udpgw = await UdpgwClient.open(client)
    echoed: asyncio.Queue = asyncio.Queue()
    assert udpgw.open_flow("127.0.0.1", echo_port, echoed.put_nowait).send(b"nope")
    answers: asyncio.Queue = asyncio.Queue()
    udpgw.open_flow("203.0.113.1", 53, answers.put_nowait, dns=True).send(dns_query("a.example", 1))
    assert (await asyncio.wait_for(answers.get(), 5))[:2] == b"\x00\x01"
    assert echoed.empty() and udpgw.is_open  # no reply, no error, channel still up
    (session,) = running.server.clients
    assert session.counters.udp_forwards.rejected == 1 and session.counters.udp_forwards.opened == 1
    udpgw.close()


async def test_a_new_udpgw_channel_replaces_the_old_one(network, make_client, udp_echo):
    _, port = udp_echo
    running = await network.add()
    client = await make_client([running.entry])
    first = await UdpgwClient.open(client)
    second = await UdpgwClient.open(client)
    await asyncio.wait_for(first.closed.wait(), 5)
    got: asyncio.Queue = asyncio.Queue()
    second.open_flow("127.0.0.1", port, got.put_nowait).send(b"still here")
    assert await asyncio.wait_for(got.get(), 5) == b"still here"
    (session,) = running.server.clients
    assert session.counters.udpgw_channels == 2 and session.udpgw is not None
    second.close()


async def test_idle_udp_flows_are_closed_on_the_server(tmp_path, network, make_client, udp_echo):
    _, port = udp_echo
    rules = rules_file(tmp_path, {"DefaultRules": {"IdleUDPPortForwardTimeoutMilliseconds": 300,
                                                   "MaxUDPPortForwardCount": 2}})
    running = await network.add(TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    udpgw = await UdpgwClient.open(client)
    got: asyncio.Queue = asyncio.Queue()
    for i in range(3):  # the third flow evicts the least recently active one
        udpgw.open_flow("127.0.0.1", port, got.put_nowait).send(b"x%d" % i)
        await asyncio.wait_for(got.get(), 5)
    (session,) = running.server.clients
    assert len(session.udpgw.flows) == 2 and session.counters.udp_forwards.opened == 3
    await wait_until(lambda: not session.udpgw.flows, 5)
    udpgw.close()


async def test_with_interception_off_the_udpgw_address_is_an_ordinary_destination(network, make_client):
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", 7300)) == 0:
            pytest.skip("something listens on 127.0.0.1:7300 here")
    running = await network.add(UDPInterceptUdpgwServerAddress="")  # UDP turned off
    client = await make_client([running.entry])
    with pytest.raises(asyncssh.ChannelOpenError, match="refused"):
        await UdpgwClient.open(client)  # dialled as TCP, and nothing listens there
    assert not running.server.clients.copy().pop().counters.udpgw_channels


async def test_forwarder_reopens_the_channel_after_it_closed(network, make_client, resolver):
    _, port = resolver
    running = await network.add(DNSResolverIPAddress=f"{RESOLVER_IP}:{port}")
    client = await make_client([running.entry])
    forwarder = await start_dns_forwarder(client, "127.0.0.1", 0)
    try:
        assert (await ask(forwarder.port, dns_query("a.example", 1)))[:2] == b"\x00\x01"
        (session,) = running.server.clients
        session.udpgw.close()  # as when the tunnel is lost
        await wait_until(lambda: session.udpgw is None, 5)
        await wait_until(lambda: not forwarder._flows.client.is_open, 5, "the forwarder to see the channel closed")
        assert (await ask(forwarder.port, dns_query("b.example", 2)))[:2] == b"\x00\x02"
        assert session.counters.udpgw_channels == 2
    finally:
        forwarder.close()


class NoTunnel:
    def __init__(self) -> None:
        self.calls = 0

    async def open_channel(self, session_factory, host, port):
        self.calls += 1
        raise TunnelError("no-tunnel", "no tunnel became available in time")


async def test_forwarder_without_a_tunnel_drops_queries_and_tries_again_later():
    opener = NoTunnel()
    forwarder = await start_dns_forwarder(opener, "127.0.0.1", 0)
    try:
        with pytest.raises(asyncio.TimeoutError):
            await ask(forwarder.port, dns_query("a.example", 1), timeout=0.3)
        assert forwarder.dropped == 1 and opener.calls == 1
        with pytest.raises(asyncio.TimeoutError):
            await ask(forwarder.port, dns_query("a.example", 1), timeout=0.3)
        assert opener.calls == 2
    finally:
        forwarder.close()
