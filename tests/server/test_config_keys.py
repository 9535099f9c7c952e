"""The server.json keys of server operations: GeoIP files, traffic rules, udpgw, resolver."""

from __future__ import annotations

import pytest

from onehop.errors import ConfigError
from onehop.server.config import parse_host_port, parse_server_config
from onehop.server.udpgw import first_nameserver
from tests.helpers.builders import problem_keys, valid_server_config


def test_defaults():
    config = parse_server_config(valid_server_config())
    assert config.udpgw_server_address == ("127.0.0.1", 7300)  # as Psiphon's generate
    assert config.dns_resolver_address is None  # resolv.conf at start
    assert config.geoip_database_filenames == () and config.traffic_rules_filename is None


def test_values():
    config = parse_server_config(valid_server_config(
        GeoIPDatabaseFilenames=["city.mmdb", "/var/lib/isp.mmdb"], TrafficRulesFilename="rules.json",
        UDPInterceptUdpgwServerAddress="[::1]:7301", DNSResolverIPAddress="10.0.0.2"))
    assert config.geoip_database_filenames == ("city.mmdb", "/var/lib/isp.mmdb")
    assert config.udpgw_server_address == ("::1", 7301)
    assert config.dns_resolver_address == ("10.0.0.2", 53)
    assert parse_server_config(valid_server_config(UDPInterceptUdpgwServerAddress="")).udpgw_server_address is None
    assert parse_server_config(valid_server_config(
        DNSResolverIPAddress="127.0.0.5:5353")).dns_resolver_address == ("127.0.0.5", 5353)


def test_every_bad_key_is_reported():
    with pytest.raises(ConfigError) as info:
        parse_server_config(valid_server_config(
            GeoIPDatabaseFilenames=["ok.mmdb", ""], TrafficRulesFilename="",
            UDPInterceptUdpgwServerAddress="localhost:7300", DNSResolverIPAddress="8.8.8.8:0"))
    assert problem_keys(info.value) == ["DNSResolverIPAddress", "GeoIPDatabaseFilenames",
                                        "TrafficRulesFilename", "UDPInterceptUdpgwServerAddress"]


@pytest.mark.parametrize("text, default, expected", [
    ("1.2.3.4:5", None, ("1.2.3.4", 5)), ("1.2.3.4", 53, ("1.2.3.4", 53)), ("1.2.3.4", None, None),
    ("[2001:db8::1]:99", None, ("2001:db8::1", 99)), ("2001:db8::1", 53, ("2001:db8::1", 53)),
    ("[2001:db8::1]", 53, ("2001:db8::1", 53)), ("1.2.3.4:x", 53, None), ("host:1", None, None),
    ("1.2.3.4:70000", None, None),
])
def test_parse_host_port(text, default, expected):
    assert parse_host_port(text, default) == expected


def test_first_nameserver(tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("# comment\nsearch example\nnameserver bogus\nnameserver fe80::1%eth0\nnameserver 9.9.9.9\n")
    assert first_nameserver(str(path)) == ("fe80::1%eth0", 53)
    path.write_text("search example\n")
    assert first_nameserver(str(path)) is None
    assert first_nameserver(str(tmp_path / "missing")) is None
