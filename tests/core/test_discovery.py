"""Discovery strategies against Psiphon's vectors (vectors/discovery.json)."""

import bisect
import ipaddress
import json
import math
from datetime import datetime, timedelta, timezone, UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import discovery as dv
from onehop.core.xxhash64 import xxhash64
from onehop.errors import LocalProtocolError
from tests.conftest import vector_cases

CLASSIC = vector_cases("discovery", strategy="classic")
CONSISTENT = vector_cases("discovery", strategy="consistent")


def _servers(case):
    return [dv.DiscoveryServer(s["ip_address"], f"entry-{s['index']}", s["range_start_unix"], s["range_end_unix"])
            for s in case["servers"]]


def _any_time_in_all_windows(case) -> int:
    return max(s["range_start_unix"] for s in case["servers"])


# ----------------------------------------------------------------------- xxhash64

@pytest.mark.parametrize("data, expected", [
    (b"", 0xEF46DB3751D8E999), (b"a", 0xD24EC4F1A98C6E5B), (b"as", 0x1C330FB2D66BE179),
    (b"asd", 0x631C37CE72A97393), (b"asdf", 0x415872F599CEA71E),
    (b"Call me Ishmael. Some years ago--never mind how long precisely-", 0x02A2E85470D6FD96),
])
def test_xxhash64_published_values(data, expected):
    assert xxhash64(data) == expected  # cespare/xxhash's own test table


@given(st.binary(max_size=200))
def test_xxhash64_agrees_with_c_implementation(data):
    xxhash = pytest.importorskip("xxhash")  # optional oracle, not a dependency
    assert xxhash64(data) == xxhash.xxh64_intdigest(data)


# ----------------------------------------------------------------------- classic

@pytest.mark.parametrize("case", CLASSIC, ids=lambda c: c["name"])
def test_classic_vectors(case):
    servers = _servers(case)
    buckets = dv.ClassicBuckets.build(servers)
    for q in case["queries"]:
        assert dv.client_ip_text(q["client_ip"]) == q["client_ip_hmac_message"]
        assert dv.discovery_value(case["hmac_key"], q["client_ip"]) == q["discovery_value"]
        assert dv.bucket_count(len(servers)) == q["bucket_count"] == len(buckets.buckets)
        for selected in (dv.select_classic(servers, case["hmac_key"], q["client_ip"], q["unix_time"]),
                         dv.select_classic(buckets, case["hmac_key"], q["client_ip"], q["unix_time"]),
                         buckets.select(q["discovery_value"], q["unix_time"])):
            assert selected is servers[q["selected_index"]]
            assert selected.ip_address == q["selected_ip_address"]


@pytest.mark.parametrize("case", CLASSIC, ids=lambda c: c["name"])
def test_classic_through_discovery_object(case):
    discovery = dv.Discovery(_servers(case), dv.Strategy.CLASSIC, hmac_key=case["hmac_key"])
    for q in case["queries"]:
        now = datetime.fromtimestamp(q["unix_time"], UTC)
        assert discovery.select(q["client_ip"], now).ip_address == q["selected_ip_address"]


def test_bucketize_rounds_half_up_not_to_even():
    servers = [dv.DiscoveryServer(f"10.0.0.{i}", "", 0, 10) for i in range(10)]
    sizes = [len(b) for b in dv.bucketize(servers, 4)]  # d = 2.5: bounds 0, 3, 5, 8, 10
    assert sizes == [3, 2, 3, 2]
    assert [len(b) for b in dv.bucketize(servers[:7], 3)] == [2, 3, 2]


def test_classic_hour_rotates_within_bucket():
    servers = [dv.DiscoveryServer(f"10.0.0.{i}", "", 0, 10 ** 10) for i in range(9)]
    buckets = dv.ClassicBuckets.build(servers)
    picks = [buckets.select(4, hour * 3600 + 1800).ip_address for hour in range(6)]
    assert picks == ["10.0.0.3", "10.0.0.4", "10.0.0.5"] * 2  # bucket 4 % 3 = 1


# ----------------------------------------------------------------------- consistent

@pytest.mark.parametrize("case", CONSISTENT, ids=lambda c: c["name"])
def test_consistent_vectors(case):
    servers = _servers(case)
    now = _any_time_in_all_windows(case)
    ring = dv.ConsistentRing.build(servers)
    assert [ring.owner(p).ip_address for p in range(len(servers))] == case["partition_owners"]
    discovery = dv.Discovery(servers)  # consistent is the default strategy
    for q in case["queries"]:
        assert dv.client_ip_key(q["client_ip"]).hex() == q["hash_key"]
        assert ring.partition_of(q["client_ip"]) == q["partition_id"]
        for selected in (ring.select(q["client_ip"], now), dv.select_consistent(servers, q["client_ip"], now),
                         discovery.select(q["client_ip"], now)):
            assert selected is servers[q["selected_index"]]
            assert selected.ip_address == q["selected_ip_address"]


def _reference_owners(names, partitions, load):
    """The library's algorithm written naively: walk the ring until a member has room."""
    ring = {xxhash64((n + "0").encode()): n for n in names}
    points = sorted(ring)
    capacity = math.ceil(partitions / len(names) * load)
    loads = dict.fromkeys(names, 0)
    owners = []
    for p in range(partitions):
        i = bisect.bisect_left(points, xxhash64(p.to_bytes(8, "little"))) % len(points)
        while loads[ring[points[i]]] + 1 > capacity:
            i = (i + 1) % len(points)
        loads[ring[points[i]]] += 1
        owners.append(ring[points[i]])
    return owners


@pytest.mark.parametrize("n, partitions, load", [(300, None, 1.0), (50, 271, 1.25), (37, 100, 1.0), (3, 271, 1.0)])
def test_ring_matches_naive_reference(n, partitions, load):
    servers = [dv.DiscoveryServer(f"198.18.{i // 256}.{i % 256}", "", 0, 1) for i in range(n)]
    ring = dv.ConsistentRing.build(servers, partition_count=partitions, load=load)
    expected = _reference_owners([s.ip_address for s in servers], partitions or n, load)
    assert [ring.owner(p).ip_address for p in range(len(ring.owners))] == expected


def test_ring_of_100k_servers_builds_and_every_server_owns_one_partition():
    servers = [dv.DiscoveryServer(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", "", 0, 10) for i in range(100_000)]
    ring = dv.ConsistentRing.build(servers)
    assert sorted(ring.owners) == list(range(100_000))
    for ip in ("192.0.2.1", "2001:db8::1", "8.8.8.8"):
        selected = ring.select(ip, 5)
        assert selected is servers[ring.owners[xxhash64(dv.client_ip_key(ip)) % 100_000]]


def test_ring_rejects_duplicates_and_impossible_loads():
    servers = [dv.DiscoveryServer("10.0.0.1", "", 0, 1)] * 2
    with pytest.raises(LocalProtocolError):
        dv.ConsistentRing.build(servers)
    with pytest.raises(LocalProtocolError):
        dv.ConsistentRing.build(servers[:1], partition_count=0)
    with pytest.raises(LocalProtocolError):
        dv.ConsistentRing.build(servers[:1], load=0.0)


# ----------------------------------------------------------------------- windows and IPs

def _window_servers():
    day = 86400
    return [dv.DiscoveryServer("10.0.0.1", "a", 0, 10 * day),
            dv.DiscoveryServer("10.0.0.2", "b", 5 * day, 20 * day),
            dv.DiscoveryServer("10.0.0.3", "c", 30 * day, 40 * day)]


def test_window_filtering_and_boundaries():
    servers = _window_servers()
    day = 86400
    assert dv.discoverable(servers, 0) == (servers[0],)
    assert dv.discoverable(servers, 5 * day) == tuple(servers[:2])
    assert dv.discoverable(servers, 10 * day) == (servers[1],)  # end is exclusive
    assert dv.discoverable(servers, 25 * day) == ()
    assert dv.window_boundaries(servers, 7 * day) == (dv.to_datetime(5 * day), dv.to_datetime(10 * day))
    assert dv.window_boundaries(servers, 50 * day) == (dv.to_datetime(40 * day), None)


@pytest.mark.parametrize("name", ["classic", "consistent"])
def test_a_strategy_is_its_settings_string(name):
    """Settings and psinet carry the strategy as a plain string; the enum must stand for it."""
    strategy = dv.Strategy(name)
    assert strategy == name and strategy.value == name and isinstance(strategy, str)
    assert json.dumps({"strategy": strategy}) == json.dumps({"strategy": name})
    assert {name: 1}[strategy] == 1
    assert dv.Discovery([], strategy, hmac_key="key").strategy is strategy


@pytest.mark.parametrize("strategy", list(dv.Strategy))
def test_discovery_follows_windows_over_time(strategy):
    servers = _window_servers()
    discovery = dv.Discovery(servers, strategy, hmac_key="key")
    day = 86400
    assert discovery.select("192.0.2.1", 1).ip_address == "10.0.0.1"
    assert discovery.select("192.0.2.1", 12 * day).ip_address == "10.0.0.2"
    assert discovery.select("192.0.2.1", 25 * day) is None
    assert discovery.select("192.0.2.1", 35 * day).ip_address == "10.0.0.3"
    assert discovery.select("192.0.2.1", 45 * day) is None
    assert discovery.select("192.0.2.1", 1).ip_address == "10.0.0.1"  # going back rebuilds too


def test_prebuilt_structures_refuse_servers_outside_their_window():
    servers = _window_servers()[:1]
    assert dv.ClassicBuckets.build(servers).select(0, 86400 * 11) is None
    assert dv.ConsistentRing.build(servers).select("192.0.2.1", 86400 * 11) is None
    assert dv.ClassicBuckets.build([]).select(0, 0) is None
    assert dv.ConsistentRing.build([]).select("192.0.2.1", 0) is None
    assert dv.select_classic([], "k", "192.0.2.1", 0) is None


def test_time_inputs():
    moment = datetime(2025, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert dv.unix_seconds(moment) == 1735687800
    assert dv.unix_seconds(-1) == -1
    for bad in (datetime(2025, 1, 1), 1.5, True, "2025", 10 ** 20):
        with pytest.raises(LocalProtocolError):
            dv.to_datetime(bad)
    with pytest.raises(LocalProtocolError):
        dv.Discovery([], dv.Strategy.CLASSIC)


def test_ipv4_mapped_ipv6_is_the_same_client_as_ipv4():
    assert dv.client_ip_text("::ffff:192.0.2.1") == "192.0.2.1"
    assert dv.client_ip_key("::ffff:192.0.2.1") == dv.client_ip_key("192.0.2.1")
    assert dv.client_ip_key(ipaddress.ip_address("192.0.2.1")).hex() == "00000000000000000000ffffc0000201"
    assert dv.client_ip_text("2001:DB8:0:0:1:0:0:1") == "2001:db8::1:0:0:1"
    assert dv.client_ip_text("2001:db8:0:1:1:1:1:1") == "2001:db8:0:1:1:1:1:1"


@given(st.text(max_size=45) | st.ip_addresses().map(str))
def test_fuzz_client_ip_parsing(text):
    ring = dv.ConsistentRing.build(_window_servers())
    try:
        ring.select(text, 86400)
        dv.discovery_value("k", text)
    except LocalProtocolError as exc:
        assert exc.reason == "invalid_client_ip"
