"""IPv6 forms that carry a bogon IPv4 address are bogons (the review reached
[2002:7f00:1::]:18080 through the SOCKS proxy: 6to4 of 127.0.0.1 passed ``is_global``)."""

from __future__ import annotations

import ipaddress

import pytest

from onehop.server.policy import ForwardPolicy, is_bogon

# psiphond's own bogon list (psiphon/common/net.go), one address from each range.
PSIPHOND_BOGONS = ["10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "0.1.2.3", "169.254.1.1",
                   "192.0.0.8", "192.0.2.1", "198.51.100.1", "203.0.113.1", "192.88.99.1",
                   "198.18.0.1", "224.0.0.1", "240.0.0.1", "255.255.255.255", "100.64.0.1", "::",
                   "::1", "100::1", "2001:1::1", "2001:2::1", "2001:db8::1", "2001::1", "fc00::1",
                   "fe80::1", "ff02::1", "2002::1"]


@pytest.mark.parametrize("address", PSIPHOND_BOGONS + [
    "2002:7f00:1::", "2002:0a00:0001::", "2002:c0a8:0101::1",     # 6to4 of loopback and private
    "2001:0:4136:e378:8000:63bf:80ff:fffe",                        # Teredo, client 127.0.0.1
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b:1::c0a8:101",     # NAT64 of loopback/private
    "64:ff9b:1:7f00:0:100:808:808", "64:ff9b:1::808:808",          # local-use NAT64: never global
    "::ffff:127.0.0.1", "::ffff:10.0.0.1",                          # IPv4-mapped
])
def test_bogon(address):
    assert is_bogon(ipaddress.ip_address(address))
    assert not ForwardPolicy().check(address, 80).allowed


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "64:ff9b::808:808",
                                     "2a00:1450:4001::200e"])
def test_public(address):
    assert not is_bogon(ipaddress.ip_address(address))
    assert ForwardPolicy().check(address, 443).allowed
