"""Traffic rules (core.trafficrules): validation lists every problem with its key; the
first matching filtered rule overrides the fields it sets; port/subnet/ASN checks."""

from __future__ import annotations

import ipaddress
import json

import pytest

from onehop.core.trafficrules import (ClientFacts, EffectiveRules, TrafficRulesSet, parse_traffic_rules,
                                      port_in)
from onehop.errors import ConfigError, ForwardReason

# A file in Psiphon's layout, as operators write them.
PSIPHON_STYLE = {
    "DefaultRules": {
        "RateLimits": {"ReadUnthrottledBytes": 8000000, "ReadBytesPerSecond": 0,
                       "WriteUnthrottledBytes": 16000000, "WriteBytesPerSecond": 0},
        "IdleTCPPortForwardTimeoutMilliseconds": 30000,
        "IdleUDPPortForwardTimeoutMilliseconds": 30000,
        "MaxTCPPortForwardCount": 512,
        "MaxUDPPortForwardCount": 32,
        "AllowTCPPorts": [53, 80, 443, 554, 1935, 7070, 8000, 8001, 8080, 8443, [5000, 5100]],
        "AllowUDPPorts": [53, 123, 443],
        "AllowSubnets": ["100.64.0.0/10"],
    },
    "FilteredRules": [
        {"Filter": {"Regions": ["IR", "CN"], "TunnelProtocols": ["OSSH"]},
         "Rules": {"RateLimits": {"WriteBytesPerSecond": 250000}, "MaxTCPPortForwardCount": 64}},
        {"Filter": {"MinClientVersion": 100, "MaxClientVersion": 200},
         "ExceptFilter": {"HandshakeParameters": {"client_platform": ["Windows"]}},
         "Rules": {"RateLimits": {"ReadBytesPerSecond": 1000}}},
        {"Filter": {}, "Rules": {"DisableDiscovery": True}},
    ],
}


def facts(**kwargs) -> ClientFacts:
    return ClientFacts(**{"tunnel_protocol": "OSSH", **kwargs})


def handshaken(version: str, **params) -> ClientFacts:
    return facts(handshake_completed=True, handshake_params={"client_version": version, **params})


@pytest.fixture
def rules_set() -> TrafficRulesSet:
    return parse_traffic_rules(json.loads(json.dumps(PSIPHON_STYLE)), "rules.json")


def test_defaults_when_nothing_is_set():
    rules = TrafficRulesSet().select(facts())
    assert rules == EffectiveRules()
    assert (rules.max_tcp, rules.max_tcp_dialing, rules.max_udp) == (512, 64, 32)
    assert (rules.dial_tcp_timeout, rules.idle_tcp_timeout, rules.idle_udp_timeout) == (10.0, 30.0, 30.0)
    assert rules.permits("tcp", ipaddress.ip_address("198.51.100.1"), 25) == (True, ForwardReason.ALLOWED)


def test_default_rules_apply_to_an_unmatched_client(rules_set):
    rules = rules_set.select(facts(region="DE"))
    assert rules.write_unthrottled_bytes == 16000000 and rules.write_bytes_per_second == 0
    assert rules.max_tcp == 512 and rules.disable_discovery  # the catch-all third rule matched


def test_first_match_overrides_only_the_fields_it_sets(rules_set):
    rules = rules_set.select(facts(region="IR"))
    assert rules.write_bytes_per_second == 250000 and rules.max_tcp == 64
    assert rules.write_unthrottled_bytes == 16000000  # from DefaultRules.RateLimits
    assert rules.allow_udp_ports == ((53, 53), (123, 123), (443, 443))
    assert not rules.disable_discovery  # later rules are not consulted after the first match


def test_protocol_condition(rules_set):
    assert rules_set.select(facts(region="IR", tunnel_protocol="SSH")).write_bytes_per_second == 0


def test_client_version_conditions_need_the_handshake(rules_set):
    assert rules_set.select(facts(handshake_params={"client_version": "150"})).read_bytes_per_second == 0
    assert rules_set.select(handshaken("150")).read_bytes_per_second == 1000
    assert rules_set.select(handshaken("99")).read_bytes_per_second == 0
    assert rules_set.select(handshaken("201")).read_bytes_per_second == 0
    assert rules_set.select(handshaken("oops")).read_bytes_per_second == 0


def test_except_filter(rules_set):
    assert rules_set.select(handshaken("150", client_platform="Windows")).read_bytes_per_second == 0
    assert rules_set.select(handshaken("150", client_platform="Android")).read_bytes_per_second == 1000


@pytest.mark.parametrize("flt, client, matches", [
    ({"ISPs": ["Example_ISP"]}, facts(isp="Example_ISP"), True),
    ({"ISPs": ["Example_ISP"]}, facts(isp="Other"), False),
    ({"ASNs": ["64500"]}, facts(asn="64500"), True),
    ({"Cities": ["Berlin"]}, facts(city="Paris"), False),
    ({"APIProtocol": "ssh"}, facts(), False),
    ({"APIProtocol": "ssh"}, handshaken("1"), True),
    ({"APIProtocol": "web"}, handshaken("1"), False),
    ({"AuthorizedAccessTypes": ["x"]}, handshaken("1"), False),      # onehop has no authorizations
    ({"AuthorizationsRevoked": False}, handshaken("1"), True),
    ({"AuthorizationsRevoked": True}, handshaken("1"), False),
    ({"ProviderIDs": ["p"]}, handshaken("1"), False),
    ({"Regions": []}, facts(), True),                                 # empty list = no condition
])
def test_filter_conditions(flt, client, matches):
    rules_set = parse_traffic_rules({"FilteredRules": [{"Filter": flt, "Rules": {"MaxUDPPortForwardCount": 1}}]})
    assert (rules_set.select(client).max_udp == 1) is matches


def test_establishment_rates_before_the_handshake_and_first_tunnel_allowance():
    rules_set = parse_traffic_rules({"DefaultRules": {"RateLimits": {
        "ReadBytesPerSecond": 100, "EstablishmentReadBytesPerSecond": 7, "ReadUnthrottledBytes": 50,
        "UnthrottleFirstTunnelOnly": True}}})
    assert rules_set.select(facts()).read_bytes_per_second == 7
    first = rules_set.select(handshaken("1", established_tunnels_count="0"))
    assert (first.read_bytes_per_second, first.read_unthrottled_bytes) == (100, 50)
    later = rules_set.select(handshaken("1", established_tunnels_count="3"))
    assert later.read_unthrottled_bytes == 0


def test_port_subnet_and_asn_checks(rules_set):
    rules = rules_set.select(facts(region="DE"))
    public, carrier = ipaddress.ip_address("198.51.100.9"), ipaddress.ip_address("100.64.1.1")
    assert rules.permits("tcp", public, 443)[0] and rules.permits("tcp", public, 5050)[0]
    assert rules.permits("tcp", public, 22) == (False, ForwardReason.RULES_TCP_PORT_NOT_ALLOWED)
    assert rules.permits("tcp", carrier, 22)[0]  # AllowSubnets lifts the port list
    assert rules.permits("udp", public, 123)[0] and not rules.permits("udp", public, 443 + 1)[0]
    strict = parse_traffic_rules({"DefaultRules": {
        "DisallowTCPPorts": [25, [6000, 6010]], "AllowSubnets": ["198.51.100.0/24"],
        "DisallowSubnets": ["198.51.100.128/25"], "DisallowASNs": ["64501"], "AllowTCPPorts": []}}).select(facts())
    assert not strict.permits("tcp", public, 25)[0]          # disallowed port beats an allowed subnet
    assert not strict.permits("tcp", public, 6005)[0]
    assert strict.permits("tcp", public, 22)[0]               # empty allow list, allowed subnet
    assert not strict.permits("tcp", ipaddress.ip_address("198.51.100.200"), 22)[0]
    assert not strict.permits("tcp", ipaddress.ip_address("203.0.113.1"), 22)[0]
    assert not strict.permits("tcp", public, 22, asn="64501")[0]
    assert strict.permits("tcp", ipaddress.ip_address("2001:db8::1"), 25) == (
        False, ForwardReason.RULES_TCP_PORT_DISALLOWED)


def test_port_ranges():
    assert port_in(((80, 80), (1000, 2000)), 1500) and not port_in(((80, 80),), 81)


def test_every_problem_is_reported_with_its_key():
    raw = {
        "DefaultRules": {"RateLimits": {"ReadBytesPerSecond": -1, "Bogus": 1},
                         "AllowTCPPorts": [80, "443", [9, 1]], "AllowSubnets": ["10.0.0.0/33"],
                         "MaxTCPPortForwardCount": "many"},
        "FilteredRules": [
            {"Filter": {"Regions": "IR", "MinClientVersion": True}, "Rules": {"DisableDiscovery": 1}},
            "not an object",
            {"Filter": {"HandshakeParameters": {"client_platform": "Windows"}}, "Typo": {}},
        ],
        "Extra": 1,
    }
    with pytest.raises(ConfigError) as info:
        parse_traffic_rules(raw, "rules.json")
    keys = sorted(p.key for p in info.value.problems)
    assert keys == sorted([
        "DefaultRules.RateLimits.ReadBytesPerSecond", "DefaultRules.RateLimits.Bogus",
        "DefaultRules.AllowTCPPorts", "DefaultRules.AllowSubnets", "DefaultRules.MaxTCPPortForwardCount",
        "FilteredRules[0].Filter.Regions", "FilteredRules[0].Filter.MinClientVersion",
        "FilteredRules[0].Rules.DisableDiscovery", "FilteredRules[1]",
        "FilteredRules[2].Filter.HandshakeParameters", "FilteredRules[2].Typo", "Extra",
    ])
    assert "rules.json" in str(info.value)


def test_a_missing_filter_matches_everyone():
    rules_set = parse_traffic_rules({"FilteredRules": [{"Rules": {"MaxTCPPortForwardCount": 3}}]})
    assert rules_set.select(facts()).max_tcp == 3
