"""Traffic rules end to end: rate limits measured through the tunnel (and reported in the
handshake), port rules by region, forward counts and idle timeouts, and rules reloaded
without a restart (a broken file keeps the rules in force)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time

import pytest

from onehop.demo import serve_page
from onehop.errors import ConfigError
from onehop.net.bulkreads import THROTTLED_READ_SIZE
from onehop.server import service
from tests.helpers.waiting import wait_until
from tests.e2e.proxyclient import http_get_via_socks, socks5_connect
from tests.server.mmdb import city_record, write_mmdb

pytestmark = pytest.mark.e2e

RATE = 400_000
ALLOWANCE = 200_000
#: A reader pays for a chunk after reading it, so the last chunk (a throttled reader reads
#: at most THROTTLED_READ_SIZE) goes unpaid: the shortest possible transfer is that much quicker.
LAST_CHUNK = THROTTLED_READ_SIZE


def write_rules(path, rules: dict) -> str:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(rules, f)
    os.replace(tmp, path)
    return str(path)


def german_geoip(tmp_path) -> list[str]:
    path = tmp_path / "city.mmdb"
    write_mmdb(path, {"127.0.0.0/8": city_record("DE", "Berlin")})
    return [str(path)]


@pytest.fixture
async def big_page():
    body = os.urandom(1_200_000)
    server, port = await serve_page(body)
    yield body, port
    server.close()


async def echo_roundtrip(writer, reader, data: bytes) -> bytes:
    writer.write(data)
    return await reader.readexactly(len(data))


async def test_downstream_rate_limit_after_the_allowance(tmp_path, network, make_client, big_page):
    rules = write_rules(tmp_path / "rules.json", {"DefaultRules": {"RateLimits": {
        "WriteBytesPerSecond": RATE, "WriteUnthrottledBytes": ALLOWANCE}}})
    running = await network.add(TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    assert client.active.handshake.downstream_bytes_per_second == RATE
    assert client.active.handshake.upstream_bytes_per_second == 0
    body, port = big_page
    started = time.monotonic()
    assert await http_get_via_socks(client.socks_port, "127.0.0.1", port) == body
    elapsed = time.monotonic() - started
    expected = (len(body) - ALLOWANCE) / RATE  # 2.5 s
    assert (len(body) - ALLOWANCE - LAST_CHUNK) / RATE * 0.9 <= elapsed <= expected * 2.0, elapsed


async def test_upstream_rate_limit_pauses_the_client(tmp_path, network, make_client, echo_server):
    rules = write_rules(tmp_path / "rules.json", {"DefaultRules": {"RateLimits": {
        "ReadBytesPerSecond": RATE, "ReadUnthrottledBytes": ALLOWANCE}}})
    running = await network.add(TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    assert client.active.handshake.upstream_bytes_per_second == RATE
    reader, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
    assert code == 0
    payload = os.urandom(1_200_000)
    started = time.monotonic()
    assert await echo_roundtrip(writer, reader, payload) == payload
    elapsed = time.monotonic() - started
    (session,) = running.server.clients
    charged = session.read_bucket.total - ALLOWANCE  # SSH overhead counts too, as in Psiphon
    assert (charged - LAST_CHUNK) / RATE * 0.9 <= elapsed <= charged / RATE * 2.0, elapsed
    writer.close()


async def test_port_rules_by_region_reload_without_a_restart(tmp_path, network, make_client, echo_server,
                                                             page, caplog):
    path = tmp_path / "rules.json"
    body, page_port = page
    deny_echo = {"FilteredRules": [{"Filter": {"Regions": ["DE"]}, "Rules": {"DisallowTCPPorts": [echo_server]}}]}
    running = await network.add(TrafficRulesFilename=write_rules(path, deny_echo),
                                GeoIPDatabaseFilenames=german_geoip(tmp_path),
                                LogFilename=str(tmp_path / "events.log"))
    client = await make_client([running.entry])
    assert client.active.handshake.client_region == "DE"
    _, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
    writer.close()
    assert code == 0x02  # not allowed
    assert await http_get_via_socks(client.socks_port, "127.0.0.1", page_port) == body

    deny_echo["FilteredRules"][0]["Filter"]["Regions"] = ["FR"]
    write_rules(path, deny_echo)
    running.server.reload_files()  # what the periodic check does
    reader, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
    assert code == 0 and await echo_roundtrip(writer, reader, b"ping") == b"ping"
    writer.close()

    write_rules(path, {"DefaultRules": {"AllowTCPPorts": "all of them", "MaxTCPPortForwardCount": -1}})
    with caplog.at_level(logging.ERROR):
        running.server.reload_files()
    assert "keeping the rules in force" in caplog.text and "MaxTCPPortForwardCount" in caplog.text
    reader, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
    assert code == 0
    writer.close()
    await running.server.stop()
    with open(tmp_path / "events.log") as f:
        errors = [json.loads(line) for line in f if "traffic_rules_error" in line]
    assert errors and sorted(p.split(":")[0] for p in errors[0]["problems"]) == [
        "DefaultRules.AllowTCPPorts", "DefaultRules.MaxTCPPortForwardCount"]


async def test_reloaded_rate_limits_reach_live_tunnels(tmp_path, network, make_client):
    path = tmp_path / "rules.json"
    running = await network.add(TrafficRulesFilename=write_rules(path, {}))
    await make_client([running.entry])
    (session,) = running.server.clients
    assert session.write_bucket.rate == 0
    write_rules(path, {"DefaultRules": {"RateLimits": {"WriteBytesPerSecond": 1234, "ReadBytesPerSecond": 99}}})
    running.server.reload_files()
    assert (session.write_bucket.rate, session.read_bucket.rate) == (1234, 99)


async def test_least_recently_active_forward_makes_room(tmp_path, network, make_client, echo_server):
    rules = write_rules(tmp_path / "rules.json", {"DefaultRules": {"MaxTCPPortForwardCount": 2}})
    running = await network.add(TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    streams = []
    for i in range(3):
        reader, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
        assert code == 0 and await echo_roundtrip(writer, reader, b"x%d" % i) == b"x%d" % i
        streams.append((reader, writer))
        await asyncio.sleep(0.05)
    assert await asyncio.wait_for(streams[0][0].read(), 5) == b""  # the oldest was closed
    for reader, writer in streams[1:]:
        assert await echo_roundtrip(writer, reader, b"alive") == b"alive"
        writer.close()
    (session,) = running.server.clients
    assert session.forwards.counts.opened == 3 and session.forwards.counts.peak == 2


async def test_idle_forwards_are_closed_and_busy_ones_kept(tmp_path, network, make_client, echo_server):
    rules = write_rules(tmp_path / "rules.json", {"DefaultRules": {"IdleTCPPortForwardTimeoutMilliseconds": 400}})
    running = await network.add(TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    idle_reader, idle_writer, _ = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
    busy_reader, busy_writer, _ = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)
    started = time.monotonic()
    for _ in range(12):
        assert await echo_roundtrip(busy_writer, busy_reader, b"tick") == b"tick"
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    assert time.monotonic() - started >= 0.4 - 0.05
    assert await echo_roundtrip(busy_writer, busy_reader, b"still") == b"still"
    busy_writer.close()
    idle_writer.close()


async def test_close_after_exhausted_ends_the_tunnel(tmp_path, network, make_client, page):
    rules = write_rules(tmp_path / "rules.json", {"DefaultRules": {"RateLimits": {
        "WriteUnthrottledBytes": 100_000, "WriteBytesPerSecond": 1, "CloseAfterExhausted": True}}})
    running = await network.add(TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    body, port = page
    (session,) = running.server.clients
    try:
        got = await http_get_via_socks(client.socks_port, "127.0.0.1", port)
    except AssertionError:  # not even the response head came through
        got = b""
    assert len(got) < 100_000  # 300 KB page, 100 KB allowance
    await wait_until(lambda: not running.server.clients, 5)
    assert session.closing and session.write_bucket.allowance_exhausted


async def test_invalid_rules_stop_the_server_from_starting(tmp_path, network):
    rules = write_rules(tmp_path / "rules.json", {"DefaultRules": {"MaxUDPPortForwardCount": "x"},
                                                  "FilteredRules": [{"Filter": {"Regions": 5}}]})
    with pytest.raises(ConfigError) as info:
        await network.add(TrafficRulesFilename=rules)
    assert sorted(p.key for p in info.value.problems) == [
        "DefaultRules.MaxUDPPortForwardCount", "FilteredRules[0].Filter.Regions"]


async def test_the_server_notices_a_changed_rules_file_by_itself(tmp_path, network, make_client, monkeypatch):
    monkeypatch.setattr(service, "RELOAD_INTERVAL", 0.05)
    path = tmp_path / "rules.json"
    running = await network.add(TrafficRulesFilename=write_rules(path, {}))
    await make_client([running.entry])
    (session,) = running.server.clients
    write_rules(path, {"DefaultRules": {"MaxTCPPortForwardCount": 7}})
    await wait_until(lambda: session.rules.max_tcp == 7, 5)


def unanswered_port() -> tuple[socket.socket, list[socket.socket], int]:
    """A port whose accept queue is full, so a new connection attempt hangs (SYN dropped)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    return listener, fillers, port


async def test_dial_timeout_and_dialing_limit(tmp_path, network, make_client, echo_server):
    rules = write_rules(tmp_path / "rules.json", {"DefaultRules": {
        "DialTCPPortForwardTimeoutMilliseconds": 500, "MaxTCPDialingPortForwardCount": 1}})
    running = await network.add(TrafficRulesFilename=rules)
    client = await make_client([running.entry])
    listener, fillers, port = unanswered_port()
    try:
        started = time.monotonic()
        hanging = asyncio.ensure_future(socks5_connect(client.socks_port, "127.0.0.1", port))
        await asyncio.sleep(0.1)
        _, writer, code = await socks5_connect(client.socks_port, "127.0.0.1", echo_server)  # waits its turn
        writer.close()
        assert code == 0 and time.monotonic() - started >= 0.4  # after the hanging dial gave up
        _, writer, code = await hanging
        writer.close()
        assert code != 0 and time.monotonic() - started < 3
        (session,) = running.server.clients
        assert session.forwards.counts.rejected == 1 and session.forwards.gate.active == 0
    finally:
        for sock in [listener, *fillers]:
            sock.close()
