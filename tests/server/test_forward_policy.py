"""ForwardPolicy: default deny. Only public unicast destinations that pass the port rules
and are not the server's own endpoints are allowed; allow_bogons lifts only the address rule."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.errors import ForwardReason
from onehop.server.policy import Decision, ForwardPolicy, is_bogon

PUBLIC_V4 = "8.8.8.8"
PUBLIC_V6 = "2001:4860:4860::8888"
DEFAULT = ForwardPolicy()


# psiphond's bogon ranges (psiphon/common/net.go), written out here as the test's own oracle.
PSIPHOND_BOGON_RANGES = [ipaddress.ip_network(n) for n in [
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "0.0.0.0/8", "169.254.0.0/16",
    "192.0.0.0/24", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "192.88.99.0/24", "198.18.0.0/15",
    "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32", "100.64.0.0/10",
    "::/128", "::1/128", "100::/64", "2001::/23", "2001:2::/48", "2001:db8::/32", "2001::/32",
    "fc00::/7", "fe80::/10", "ff00::/8", "2002::/16",
]]


def public_unicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """What the module docstrings promise: a public (global) unicast address outside
    reserved space and psiphond's bogons; an IPv4-mapped or NAT64 IPv6 address is judged
    by its IPv4 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("64:ff9b:1::/48"):
        return False  # RFC 8215 local-use NAT64
    if isinstance(ip, ipaddress.IPv6Address) and ip in ipaddress.ip_network("64:ff9b::/96"):
        return public_unicast(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if any(ip.version == net.version and ip in net for net in PSIPHOND_BOGON_RANGES):
        return False
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


@pytest.mark.parametrize("ip", [
    "127.0.0.1", "127.255.255.254",           # loopback v4
    "::1",                                    # loopback v6
    "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",  # RFC 1918
    "169.254.169.254",                        # link-local (cloud metadata)
    "fe80::1", "fe80::1%eth0",                # link-local v6, with a zone
    "224.0.0.1", "239.255.255.250", "ff02::1",  # multicast
    "0.0.0.0", "::",                          # unspecified
    "::ffff:127.0.0.1", "::ffff:10.0.0.1",    # IPv4-mapped IPv6 of bogons
    "100.64.0.1", "100.127.255.254",          # CGNAT 100.64/10
    "fc00::1", "fd12:3456::1",                # unique local v6
    "64:ff9b::a00:1",                         # NAT64 of 10.0.0.1 (reserved ::/8 space)
    "240.0.0.1", "255.255.255.255",           # reserved, broadcast
    "192.0.2.1", "198.51.100.1", "203.0.113.1",  # documentation nets
])
def test_non_public_destinations_are_denied(ip):
    decision = DEFAULT.check(ip, 443)
    assert decision == Decision(False, decision.reason) and not decision.allowed
    assert decision.reason is ForwardReason.NON_PUBLIC_DESTINATION


@pytest.mark.parametrize("ip", [PUBLIC_V4, "1.1.1.1", "100.128.0.1", "100.63.255.255", PUBLIC_V6, "::ffff:8.8.8.8"])
def test_public_destinations_are_allowed(ip):
    assert DEFAULT.check(ip, 443) == Decision.allow()


@pytest.mark.parametrize("text", ["example.com", "", "1.2.3", "[::1]", "8.8.8.8:80"])
def test_text_that_is_not_an_ip_is_denied(text):
    assert not DEFAULT.check(text, 443).allowed


@pytest.mark.parametrize("port", [0, -1, 65536, 100000])
def test_invalid_ports_are_denied_even_for_public_addresses(port):
    assert not DEFAULT.check(PUBLIC_V4, port).allowed
    assert not DEFAULT.check_port(port).allowed


def test_the_servers_own_endpoints_are_denied():
    policy = ForwardPolicy(own_endpoints=frozenset({(PUBLIC_V4, 443), (PUBLIC_V4, 22)}))
    assert policy.check(PUBLIC_V4, 443).reason is ForwardReason.OWN_PORT
    assert not policy.check(PUBLIC_V4, 22).allowed
    assert policy.check(PUBLIC_V4, 80).allowed        # another port of the same host
    assert policy.check("8.8.4.4", 443).allowed        # the same port elsewhere


def test_own_ipv6_endpoint_is_matched_in_any_spelling():
    policy = ForwardPolicy(own_endpoints=frozenset({(PUBLIC_V6, 443)}))
    assert not policy.check("2001:4860:4860:0:0:0:0:8888", 443).allowed
    assert not policy.check("2001:4860:4860::8888".upper(), 443).allowed


def test_own_endpoint_given_in_non_canonical_spelling_is_still_denied():
    policy = ForwardPolicy(own_endpoints=frozenset({("2001:4860:4860:0:0:0:0:8888", 443)}))
    assert not policy.check(PUBLIC_V6, 443).allowed


def test_own_endpoint_cannot_be_reached_through_its_ipv4_mapped_form():
    policy = ForwardPolicy(own_endpoints=frozenset({(PUBLIC_V4, 443)}))
    assert not policy.check("::ffff:" + PUBLIC_V4, 443).allowed


def test_a_listener_on_every_address_is_denied_by_any_loopback_address():
    policy = ForwardPolicy(allow_bogons=True, own_endpoints=frozenset({("0.0.0.0", 443), (PUBLIC_V4, 443)}))
    for ip in ("127.0.0.1", "127.0.0.5", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::", PUBLIC_V4):
        assert policy.check(ip, 443).reason == ForwardReason.OWN_PORT, ip
    assert policy.check("127.0.0.1", 444).allowed
    assert policy.check("10.0.0.1", 443).allowed  # a private address is not ours (bogons allowed here)


def test_the_same_port_on_another_loopback_address_is_not_the_servers():
    """A server on 127.0.0.2:P does not make 127.0.0.1:P its own (tests run servers on
    127.0.0.x and destinations on 127.0.0.1 with ports the kernel picks: they may match)."""
    policy = ForwardPolicy(allow_bogons=True, own_endpoints=frozenset({("127.0.0.2", 40000)}))
    assert policy.check("127.0.0.1", 40000).allowed
    assert not policy.check("127.0.0.2", 40000).allowed
    assert policy.check("0.0.0.0", 40000).allowed  # that goes to 127.0.0.1


def test_disallowed_ports_are_denied():
    policy = ForwardPolicy(disallow_ports=frozenset({25}))
    assert policy.check(PUBLIC_V4, 25).reason is ForwardReason.PORT_DISALLOWED
    assert policy.check(PUBLIC_V4, 587).allowed


def test_allow_list_limits_ports_and_disallow_wins():
    policy = ForwardPolicy(allow_ports=frozenset({80, 443}), disallow_ports=frozenset({443}))
    assert policy.check(PUBLIC_V4, 80).allowed
    assert policy.check(PUBLIC_V4, 22).reason is ForwardReason.PORT_NOT_ALLOWED
    assert not policy.check(PUBLIC_V4, 443).allowed


def test_allow_bogons_lifts_the_address_rule_only():
    policy = ForwardPolicy(allow_bogons=True, allow_ports=frozenset({80, 8080}),
                           disallow_ports=frozenset({8080}),
                           own_endpoints=frozenset({("127.0.0.1", 80)}))
    assert policy.check("10.0.0.1", 80).allowed
    assert policy.check("::ffff:10.0.0.2", 80).allowed
    assert policy.check("::1", 80).allowed              # the same port elsewhere: not the server
    assert not policy.check("0.0.0.0", 80).allowed      # goes to 127.0.0.1: the server's own endpoint
    assert not policy.check("127.0.0.2", 22).allowed    # not in the allow list
    assert not policy.check("127.0.0.2", 8080).allowed  # disallowed
    assert not policy.check("127.0.0.1", 80).allowed    # still the server's own endpoint
    assert not policy.check("localhost", 80).allowed    # still must be an IP


@given(st.ip_addresses(v=4), st.integers(1, 65535))
def test_ipv4_allowed_iff_ipaddress_says_global_and_unicast(ip, port):
    # For IPv4, ipaddress's is_global already excludes reserved space; multicast is
    # "global" to ipaddress but never a unicast destination.
    assert DEFAULT.check(str(ip), port).allowed == public_unicast(ip)
    assert is_bogon(ip) == (not public_unicast(ip))


@given(st.ip_addresses(v=4))
def test_ipv4_mapped_form_gets_the_same_decision(ip):
    mapped = ipaddress.IPv6Address("::ffff:" + str(ip))
    assert DEFAULT.check(str(mapped), 443).allowed == DEFAULT.check(str(ip), 443).allowed


@given(st.ip_addresses(), st.integers(1, 65535), st.frozensets(st.integers(1, 65535), max_size=5),
       st.frozensets(st.integers(1, 65535), max_size=5), st.booleans())
def test_decision_is_the_conjunction_of_port_and_address_rules(ip, port, allow, disallow, bogons):
    policy = ForwardPolicy(allow_bogons=bogons, allow_ports=allow, disallow_ports=disallow)
    port_ok = port not in disallow and (not allow or port in allow)
    address_ok = bogons or public_unicast(ip)
    assert policy.check(str(ip), port).allowed == (port_ok and address_ok)
