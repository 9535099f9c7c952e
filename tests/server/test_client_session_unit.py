"""ClientSession against a fake server process and a fake connection (no sockets):
credentials and the session registry, forwards refused before the handshake, the
destination decision (server policy, then the client's rules), rules re-selected by the
handshake, rate limits charged, udpgw channels counted, and the tunnel's end logged."""

from __future__ import annotations

import asyncssh
import pytest
from asyncssh.misc import ChannelOpenError

from onehop.errors import ForwardReason
from onehop.core.api import SSHPasswordPayload, encode_ssh_password
from onehop.core.trafficrules import ClientFacts, EffectiveRules
from onehop.server.forwarding import OPEN_ADMINISTRATIVELY_PROHIBITED
from onehop.server.policy import ForwardPolicy
from onehop.server.session import ClientSession
from onehop.server.tunnelstate import HandshakeState
from onehop.server.udpgw import UdpgwChannel
from tests.server.seam_fakes import GERMANY, FakeConn, FakeGeo, FakeHost

PEER = ("198.51.100.7", 50123)
SESSION_ID = "0123456789abcdef" * 2


def password(secret: str = "secret") -> str:
    return encode_ssh_password(SSHPasswordPayload(SESSION_ID, secret))


def new_session(host: FakeHost | None = None, conn: FakeConn | None = None) -> tuple[ClientSession, FakeHost, FakeConn]:
    host = host or FakeHost(geoip=FakeGeo({PEER[0]: GERMANY}))
    conn = conn or FakeConn(PEER)
    return ClientSession(host, conn), host, conn


def handshake(session: ClientSession, **params: str) -> None:
    session.complete_handshake(HandshakeState(dict(params), "DE", 0.0), frozenset())


def test_a_new_session_is_one_of_the_servers_clients_with_rules_for_its_connection():
    session, host, _ = new_session()
    assert session in host.clients
    (facts,) = host.facts_seen
    assert facts == ClientFacts("OSSH", "DE", "Berlin", "Example_ISP", "64500", handshake_completed=False,
                                handshake_params={})
    assert session.peer_address == PEER and session.geoip == GERMANY


def test_credentials_register_the_session_id_and_wrong_ones_register_nothing():
    session, host, _ = new_session()
    assert not session.authenticate("user", password("wrong"))
    assert not session.authenticate("someone", password())
    assert not session.authenticate("user", "not a password payload")
    assert host.registered == {} and session.session_id is None
    assert session.authenticate("user", password())
    assert session.session_id == SESSION_ID and host.registered[SESSION_ID] == session.close


async def test_forwards_before_the_handshake_are_refused_and_counted():
    session, _, _ = new_session()
    with pytest.raises(ChannelOpenError) as refused:
        await session.open_forward("93.184.216.34", 443)
    assert refused.value.code == OPEN_ADMINISTRATIVELY_PROHIBITED
    assert session.counters.tcp_forwards.rejected == 1 and session.counters.tcp_forwards.opened == 0


def test_the_server_policy_decides_first_then_the_clients_rules():
    host = FakeHost(forward_policy=ForwardPolicy(own_endpoints=frozenset({("93.184.216.34", 443)})),
                    rules_for=lambda facts: EffectiveRules(disallow_tcp_ports=((25, 25),)))
    session, _, _ = new_session(host)
    assert session.forward_decision("tcp", "93.184.216.34", 443).reason == ForwardReason.OWN_PORT
    assert session.forward_decision("tcp", "10.0.0.1", 80).reason == ForwardReason.NON_PUBLIC_DESTINATION
    assert not session.forward_decision("tcp", "93.184.216.34", 25).allowed  # the client's rules
    assert session.forward_decision("tcp", "93.184.216.34", 80).allowed
    # the server's own resolver skips the server policy (a private address), not the rules
    assert session.forward_decision("udp", "10.0.0.53", 53, dns=True).allowed


def test_the_handshake_reselects_the_rules_with_what_it_said():
    rules_by_version = {"170": EffectiveRules(write_bytes_per_second=1000)}
    host = FakeHost(rules_for=lambda facts: rules_by_version.get(facts.handshake_params.get("client_version"),
                                                                 EffectiveRules()))
    session, _, _ = new_session(host)
    assert session.rules.write_bytes_per_second == 0
    handshake(session, client_version="170")
    assert host.facts_seen[-1].handshake_completed and session.rules.write_bytes_per_second == 1000
    assert session.write_bucket.rate == 1000
    assert session.random_stream_allowed()


def test_a_downstream_rate_limit_is_charged_after_the_allowance():
    host = FakeHost(rules_for=lambda facts: EffectiveRules(write_bytes_per_second=1000,
                                                           write_unthrottled_bytes=500))
    session, _, conn = new_session(host)
    assert session.charge_downstream(500) == 0  # the allowance
    assert session.charge_downstream(1000) > 0  # then the rate: a pause
    assert not conn.closed


def test_an_exhausted_allowance_ends_the_tunnel_when_the_rules_say_so():
    host = FakeHost(rules_for=lambda facts: EffectiveRules(read_unthrottled_bytes=100, close_after_exhausted=True))
    session, _, conn = new_session(host)
    session.charge_upstream(60)
    assert not conn.closed
    session.charge_upstream(60)
    assert conn.closed and session.closing


def test_one_random_stream_before_the_handshake():
    session, _, _ = new_session()
    assert session.random_stream_allowed()
    assert not session.random_stream_allowed()


async def test_udpgw_channels_replace_each_other_and_are_counted():
    session, host, _ = new_session()
    handshake(session)
    first = await session.open_forward(*host.udpgw_address)
    second = await session.open_forward(*host.udpgw_address)
    assert isinstance(first, UdpgwChannel) and session.udpgw is second
    assert session.counters.udpgw_channels == 2
    session.udpgw_closed(first)  # the old one's close arrives late: the new one stays
    assert session.udpgw is second


def test_split_regions_come_from_the_handshake():
    host = FakeHost(geoip=FakeGeo({PEER[0]: GERMANY, "192.0.2.80": GERMANY}))
    session, _, _ = new_session(host)
    assert not session.in_split_region("192.0.2.80")
    session.complete_handshake(HandshakeState({}, "DE", 0.0), frozenset({"DE"}))
    assert session.in_split_region("192.0.2.80") and not session.in_split_region("203.0.113.1")


async def test_api_requests_go_to_the_servers_handler_with_this_session():
    session, host, _ = new_session()
    assert await session.api_request("psiphon-handshake", b"{}") == b"psiphon-handshake"
    assert host.api.requests == [(session, "psiphon-handshake", b"{}")]


def test_the_end_of_an_authenticated_tunnel_is_logged_with_its_counts():
    session, host, _ = new_session()
    session.authenticate("user", password())
    session.counters.tcp_bytes.up, session.counters.udp_bytes.down = 10, 7
    session.connection_closed(None)
    assert session not in host.clients and host.registered == {}
    (tunnel,) = host.events.tunnels
    assert tunnel["session_id"] == SESSION_ID and tunnel["client_region"] == "DE"
    assert (tunnel["bytes_up"], tunnel["bytes_down"]) == (10, 7) and tunnel["handshake_completed"] is False
    assert "198.51.100.7" not in repr(tunnel)  # the address is never logged
    assert host.irregulars == []


def test_a_peer_speaking_broken_ssh_is_an_irregular_connection_not_a_tunnel():
    session, host, _ = new_session()
    session.connection_closed(asyncssh.ProtocolError("bad packet"))
    assert host.irregulars == [("OSSH", "ssh_protocol_error", PEER[0])] and host.events.tunnels == []
