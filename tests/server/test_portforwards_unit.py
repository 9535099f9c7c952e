"""PortForwards against a fake session and a fake dialler (no sockets): refused and
split-tunnel destinations are never dialled, each is counted once, bytes of an open
forward are counted both ways and the destination's are charged to the client's
downstream limit, and MaxTCPPortForwardCount closes the least recently active forward."""

from __future__ import annotations

import pytest
from asyncssh.misc import ChannelOpenError

from onehop.core.trafficrules import EffectiveRules
from onehop.server import portforwards
from onehop.server.forwarding import OPEN_ADMINISTRATIVELY_PROHIBITED
from onehop.server.portforwards import PortForwards
from onehop.server.splittunnel import CHANNEL_REJECT_REASON_SPLIT_TUNNEL
from tests.server.seam_fakes import FakeForwardingSession, FakeTransport


class FakeDialler:
    """Stands in for ``forwarding.dial``: connects the relay's destination side to a FakeTransport."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, int]] = []
        self.transports: list[FakeTransport] = []
        self.protocols: list = []  # the destination sides of the relays

    async def __call__(self, ip, port, protocol_factory, timeout):
        self.dialled.append((ip, port))
        protocol = protocol_factory()
        self.protocols.append(protocol)
        transport = FakeTransport()
        self.transports.append(transport)
        protocol.connection_made(transport)
        return protocol


@pytest.fixture
def dialler(monkeypatch):
    fake = FakeDialler()
    monkeypatch.setattr(portforwards, "dial", fake)
    return fake


async def test_a_refused_destination_is_not_dialled_and_counted_as_rejected(dialler):
    session = FakeForwardingSession(refused_ports=frozenset({25}))
    forwards = PortForwards(session)
    with pytest.raises(ChannelOpenError) as refused:
        await forwards.open_tcp("192.0.2.1", 25)
    assert refused.value.code == OPEN_ADMINISTRATIVELY_PROHIBITED
    assert dialler.dialled == [] and session.decisions == [("tcp", "192.0.2.1", 25)]
    counts = session.counters.tcp_forwards
    assert (counts.rejected, counts.opened) == (1, 0) and forwards.gate.active == 0


async def test_a_split_tunnel_destination_gets_psiphons_answer_unless_the_client_insists(dialler):
    session = FakeForwardingSession(split_ips=frozenset({"192.0.2.80"}))
    forwards = PortForwards(session)
    with pytest.raises(ChannelOpenError) as split:
        await forwards.open_tcp("192.0.2.80", 443)
    assert split.value.code == CHANNEL_REJECT_REASON_SPLIT_TUNNEL and dialler.dialled == []
    counts = session.counters.tcp_forwards
    assert (counts.split, counts.rejected) == (1, 0)  # not a refusal: the client goes direct
    await forwards.open_tcp("192.0.2.80", 443, no_split=True)
    assert dialler.dialled == [("192.0.2.80", 443)] and counts.opened == 1


async def test_bytes_are_counted_both_ways_and_downstream_is_charged(dialler):
    session = FakeForwardingSession()
    forwards = PortForwards(session)
    up = await forwards.open_tcp("[2001:db8::5]", 80)
    assert dialler.dialled == [("2001:db8::5", 80)]
    (destination,) = dialler.transports
    assert destination.paused  # nothing is read from the destination before the channel is open
    channel = FakeTransport()
    up.connection_made(channel)
    assert not destination.paused
    up.data_received(b"GET / HTTP/1.0\r\n\r\n")
    assert bytes(destination.written) == b"GET / HTTP/1.0\r\n\r\n"
    dialler.protocols[0].data_received(b"HTTP/1.0 200 OK\r\n")
    assert bytes(channel.written) == b"HTTP/1.0 200 OK\r\n"
    tcp = session.counters.tcp_bytes
    assert (tcp.up, tcp.down) == (18, 17) and session.downstream_charged == [17]
    assert session.counters.tcp_forwards.opened == 1 and session.counters.tcp_forwards.peak == 1


async def test_bytes_from_the_destination_are_dropped_once_the_tunnel_is_closing(dialler):
    session = FakeForwardingSession()
    forwards = PortForwards(session)
    up = await forwards.open_tcp("192.0.2.1", 80)
    channel = FakeTransport()
    up.connection_made(channel)
    session.closing = True  # e.g. the charge ended the tunnel
    dialler.protocols[0].data_received(b"late")
    assert channel.written == b"" and session.downstream_charged == [4]


async def test_the_forward_limit_closes_the_least_recently_active_forward(dialler):
    session = FakeForwardingSession(rules=EffectiveRules(max_tcp=2))
    forwards = PortForwards(session)
    first = await forwards.open_tcp("192.0.2.1", 80)
    second = await forwards.open_tcp("192.0.2.2", 80)
    first.connection_made(FakeTransport())
    second.connection_made(FakeTransport())
    first.data_received(b"still here")  # the first is now the more recently active one
    await forwards.open_tcp("192.0.2.3", 80)
    closed = [t.closed for t in dialler.transports]
    assert closed == [False, True, False] and len(forwards.relays) == 2
    counts = session.counters.tcp_forwards
    assert (counts.opened, counts.peak) == (3, 2)
    forwards.close_all()
    assert not forwards.relays and all(t.closed for t in dialler.transports)
