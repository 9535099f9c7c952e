"""The server end of a udpgw channel with a fake SSH channel and real loopback UDP:
flows per conn_id, rebind, destination mismatch and refused packets dropped silently,
replies framed with the address the client asked for, bad framing closes the channel."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from onehop.core.trafficrules import EffectiveRules
from onehop.core.udpgw import FLAG_DNS, FLAG_REBIND, PacketReceived, UdpgwParser, encode_packet
from onehop.server.policy import Decision
from onehop.server.tunnelstate import TunnelCounters
from onehop.server.udpgw import UdpgwChannel
from tests.helpers.waiting import wait_until


class FakeChannel:
    def __init__(self, channel: UdpgwChannel) -> None:
        self.channel = channel
        self.parser = UdpgwParser()
        self.closed = False
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.parser.receive_data(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def close(self) -> None:
        self.closed = True
        self.channel.connection_lost(None)

    def replies(self) -> list[PacketReceived]:
        return self.parser.events()


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.transport.sendto(b"echo:" + data, addr)


@pytest.fixture
async def echo():
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    yield transport.get_extra_info("sockname")[1]
    transport.close()


def fake_session(resolver=None, refuse=()):
    closed = []
    session = SimpleNamespace(
        dns_resolver=resolver, rules=EffectiveRules(max_udp=3),
        counters=TunnelCounters(), closing=False,
        charge_downstream=lambda n: 0.0, udpgw_closed=closed.append,
        forward_decision=lambda kind, ip, port, dns=False: Decision(port not in refuse, "test"))
    return session, closed


def opened(session):
    channel = UdpgwChannel(session)
    chan = FakeChannel(channel)
    channel.connection_made(chan)
    return channel, chan


LOOPBACK = bytes([127, 0, 0, 1])


async def test_flows_rebind_and_mismatches(echo):
    session, _ = fake_session()
    channel, chan = opened(session)
    channel.data_received(encode_packet(1, LOOPBACK, echo, b"a") + encode_packet(2, LOOPBACK, echo, b"b"), None)
    await wait_until(lambda: chan.parser.buffered >= 2 * 16, 5)
    replies = sorted(chan.replies(), key=lambda r: r.conn_id)
    assert [(r.conn_id, r.address, r.port, r.payload, r.flags) for r in replies] == [
        (1, LOOPBACK, echo, b"echo:a", 0), (2, LOOPBACK, echo, b"echo:b", 0)]
    channel.data_received(encode_packet(1, LOOPBACK, echo + 1, b"elsewhere"), None)  # bound to echo: dropped
    assert session.counters.udp_forwards.opened == 2 and session.counters.udp_bytes.up == 2
    channel.data_received(encode_packet(1, LOOPBACK, echo, b"c", FLAG_REBIND), None)  # rebind: a new flow
    await wait_until(lambda: chan.parser.buffered, 5)
    assert [r.payload for r in chan.replies()] == [b"echo:c"] and session.counters.udp_forwards.opened == 3
    channel.close()
    assert not channel.flows


async def test_dns_flag_goes_to_the_resolver_and_replies_keep_the_asked_address(echo):
    session, _ = fake_session(resolver=("127.0.0.1", echo))
    channel, chan = opened(session)
    channel.data_received(encode_packet(9, bytes(16), 53, b"q", FLAG_DNS), None)  # asked [::]:53
    await wait_until(lambda: chan.parser.buffered, 5)
    (reply,) = chan.replies()
    assert (reply.address, reply.port, reply.payload, reply.ipv6) == (bytes(16), 53, b"echo:q", True)
    channel.close()


async def test_refused_and_resolverless_packets_are_dropped(echo):
    session, _ = fake_session(resolver=None, refuse=(echo,))
    channel, chan = opened(session)
    channel.data_received(encode_packet(1, LOOPBACK, echo, b"x") + encode_packet(2, LOOPBACK, 53, b"q", FLAG_DNS), None)
    await wait_until(lambda: session.counters.udp_forwards.rejected == 2, 5, "both packets refused")
    assert not chan.parser.buffered and not channel.flows and not chan.closed


async def test_backed_up_channel_drops_replies(echo):
    session, _ = fake_session()
    channel, chan = opened(session)
    chan.buffered = 10**6
    channel.data_received(encode_packet(1, LOOPBACK, echo, b"x"), None)
    await asyncio.sleep(0.1)
    assert not chan.parser.buffered and session.counters.udp_bytes.down == 0
    channel.close()


async def test_bad_framing_closes_the_channel_and_every_flow(echo):
    session, closed = fake_session()
    channel, chan = opened(session)
    channel.data_received(encode_packet(1, LOOPBACK, echo, b"x"), None)
    channel.data_received(b"\xff\xff\x00", None)  # size beyond the maximum
    assert chan.closed and not channel.flows and closed == [channel]


async def test_flow_limit_evicts_the_least_recently_active(echo):
    session, _ = fake_session()
    channel, _ = opened(session)
    for conn_id in range(4):
        channel.data_received(encode_packet(conn_id, LOOPBACK, echo, b"x"), None)
        await asyncio.sleep(0.01)
    assert sorted(channel.flows) == [1, 2, 3] and session.counters.udp_forwards.peak == 3
    channel.close()
