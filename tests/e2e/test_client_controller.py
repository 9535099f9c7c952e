"""The client controller against hostile networks: dead, black-holed and resetting
servers, a remote server list when every embedded server is gone, upstream proxies,
egress regions, and no leaked sockets or tasks."""

from __future__ import annotations

import asyncio
import os

import pytest

from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.datastore import Datastore
from onehop.client.remote_lists import RemoteListFetcher
from onehop.client.transfer_urls import encode_transfer_url, parse_transfer_urls
from onehop.core.authpackage import compress_zlib, generate_rsa_keypair, make_package
from onehop.core.serverentry import encode_server_entry_fields
from onehop.core.upstreamproxy import ProxySpec
from tests.helpers.net import copy_stream
from tests.helpers.waiting import wait_until
from tests.e2e.fakes import Blackhole, CountingProxy, FileServer, Resetter
from tests.e2e.proxyclient import http_get_via_socks, socks5_connect
from datetime import UTC

pytestmark = pytest.mark.e2e


def fast_config(tmp_path, **overrides) -> ClientConfig:
    values = dict(data_dir=str(tmp_path / "client"), socks_port=0, http_port=0,
                  tunnel_connect_timeout=4.0, establish_pause=0.2)
    values.update(overrides)
    return ClientConfig(**values)


class Running:
    """Runs a controller in the background and cleans up after the test."""

    def __init__(self) -> None:
        self.items: list[tuple[Controller, asyncio.Task]] = []

    async def start(self, controller: Controller) -> Controller:
        await controller.start_proxies()
        self.items.append((controller, asyncio.get_running_loop().create_task(controller.run())))
        return controller

    async def close(self) -> None:
        for controller, task in self.items:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await controller.close()


@pytest.fixture
async def running():
    r = Running()
    yield r
    await r.close()


async def hostile_entries(template, count_each: int):
    """Entries pointing at closed ports, black holes and resetters, on distinct IPs."""
    fakes, entries = [], []
    for i in range(count_each):
        entries.append(template.with_fields({"ipAddress": f"127.0.1.{i + 1}"}))  # nothing listens
        hole = Blackhole()
        port = await hole.start(f"127.0.2.{i + 1}")
        entries.append(template.with_fields({"ipAddress": f"127.0.2.{i + 1}",
                                             "sshObfuscatedPort": port, "sshPort": port}))
        resetter = Resetter()
        port = await resetter.start(f"127.0.3.{i + 1}")
        entries.append(template.with_fields({"ipAddress": f"127.0.3.{i + 1}",
                                             "sshObfuscatedPort": port, "sshPort": port}))
        fakes += [hole, resetter]
    return fakes, entries


async def test_connects_when_most_servers_are_dead_blackholed_or_resetting(network, running, notice_log,
                                                                           tmp_path, page):
    good = await network.add()
    fakes, bad = await hostile_entries(good.entry, 6)
    store = Datastore(str(tmp_path / "store"))
    store.import_entries(bad + [good.entry], "EMBEDDED")
    controller = await running.start(Controller(fast_config(tmp_path, connection_workers=4), store,
                                                notice_log.notices))
    await wait_until(lambda: controller.active is not None, 20)
    assert controller.active.entry.ip_address == good.entry.ip_address
    body, port = page
    assert await http_get_via_socks(controller.socks_port, "127.0.0.1", port) == body
    for fake in fakes:
        fake.close()


async def test_remote_server_list_saves_the_day(network, running, notice_log, tmp_path, page):
    good = await network.add()
    dead = [good.entry.with_fields({"ipAddress": f"127.0.4.{i}"}) for i in range(1, 6)]
    private_pem, public_b64 = generate_rsa_keypair(2048)
    package = compress_zlib(make_package(encode_server_entry_fields(good.entry) + "\n", private_pem, public_b64))
    files = FileServer()
    await files.start()
    files.files["/server_list_compressed"] = package
    urls = parse_transfer_urls([encode_transfer_url(files.url("/server_list_compressed"))], "RemoteServerListURLs")
    store = Datastore(str(tmp_path / "store"))
    store.import_entries(dead, "EMBEDDED")
    fetcher = RemoteListFetcher(urls, public_b64, store, notice_log.notices, str(tmp_path / "store"))
    controller = await running.start(Controller(fast_config(tmp_path), store, notice_log.notices,
                                                remote_lists=fetcher))
    await wait_until(lambda: controller.active is not None, 30)
    assert controller.active.entry.ip_address == good.entry.ip_address
    assert controller.active.entry.local_source == "REMOTE"
    assert notice_log.of_type("RemoteServerListResourceDownloaded")
    body, port = page
    assert await http_get_via_socks(controller.socks_port, "127.0.0.1", port) == body
    await files.close()


async def test_a_tampered_remote_list_never_removes_stored_entries(tmp_path, notice_log):
    private_pem, public_b64 = generate_rsa_keypair(2048)
    from tests.helpers.builders import make_entry
    stored = make_entry("192.0.2.50")
    package = make_package(encode_server_entry_fields(make_entry("192.0.2.51")) + "\n", private_pem, public_b64)
    tampered = compress_zlib(package.replace(b"192.0.2.51".hex().encode(), b"192.0.2.52".hex().encode()))
    assert tampered != compress_zlib(package)
    files = FileServer()
    await files.start()
    files.files["/list"] = tampered
    store = Datastore(str(tmp_path))
    store.import_entries([stored], "EMBEDDED")
    fetcher = RemoteListFetcher(parse_transfer_urls([files.url("/list")], "k"), public_b64, store,
                                notice_log.notices, str(tmp_path))
    from onehop.net.dial import socket_opener
    assert await fetcher.fetch(socket_opener(None), tunneled=False) == 0
    assert [e.ip_address for e in store.entries()] == ["192.0.2.50"]
    assert any("rejected" in n["data"].get("message", "") for n in notice_log.of_type("Alert"))
    await files.close()


@pytest.mark.parametrize("kind", ["http", "socks5", "socks4a"])
async def test_upstream_proxy_carries_the_tunnel(network, running, notice_log, tmp_path, page, kind):
    good = await network.add()
    proxy = CountingProxy("socks5" if kind == "socks4a" else kind)
    if kind == "socks4a":
        proxy = Socks4aProxy()
    port = await proxy.start()
    config = fast_config(tmp_path, upstream_proxy=ProxySpec(kind, "127.0.0.1", port))
    from onehop.client.candidates import MemoryStore
    controller = await running.start(Controller(config, MemoryStore([good.entry]), notice_log.notices))
    await wait_until(lambda: controller.active is not None, 20)
    body, page_port = page
    assert await http_get_via_socks(controller.socks_port, "127.0.0.1", page_port) == body
    assert controller.active.client.conn.get_extra_info("peername")[1] == port  # TCP peer: the proxy
    assert proxy.bytes_relayed >= len(body)  # the page really crossed the proxy
    assert good.entry.ip_address in [host for host, _ in proxy.targets]
    proxy.close()


async def test_a_dead_upstream_proxy_gives_a_clear_notice(network, running, notice_log, tmp_path):
    good = await network.add()
    config = fast_config(tmp_path, upstream_proxy=ProxySpec("socks5", "127.0.0.1", 9))
    from onehop.client.candidates import MemoryStore
    await running.start(Controller(config, MemoryStore([good.entry]), notice_log.notices))
    await wait_until(lambda: notice_log.of_type("UpstreamProxyError"), 10)
    assert "unreachable" in notice_log.of_type("UpstreamProxyError")[0]["data"]["message"]


async def test_egress_region_is_honoured_and_an_empty_region_is_a_notice(network, running, notice_log, tmp_path):
    de = await network.add(region="DE")
    jp = await network.add(region="JP")
    from onehop.client.candidates import MemoryStore
    controller = await running.start(Controller(fast_config(tmp_path, egress_region="JP"),
                                                MemoryStore([de.entry, jp.entry]), notice_log.notices))
    await wait_until(lambda: controller.active is not None, 20)
    assert controller.active.entry.region == "JP"
    assert {"DE", "JP"} == set(notice_log.of_type("AvailableEgressRegions")[-1]["data"]["regions"])
    lonely = await running.start(Controller(fast_config(tmp_path / "b", egress_region="FR"),
                                            MemoryStore([de.entry]), notice_log.notices))
    await wait_until(lambda: any("FR" in n["data"].get("message", "") for n in notice_log.of_type("Alert")), 5)
    assert lonely.active is None


async def test_no_socket_or_task_outlives_an_establishment_round(network, running, notice_log, tmp_path):
    good = await network.add()
    fakes, bad = await hostile_entries(good.entry, 5)
    before = len(os.listdir("/proc/self/fd"))
    from onehop.client.candidates import MemoryStore
    controller = await running.start(Controller(fast_config(tmp_path, connection_workers=8),
                                                MemoryStore(bad + [good.entry]), notice_log.notices))
    await wait_until(lambda: controller.active is not None, 20)
    await wait_until(lambda: not [t for t in asyncio.all_tasks() if "_attempt" in repr(t.get_coro())], 10,
                     "the losing dials to end")
    # The tunnel (both ends live in this process), the two proxy listeners and the
    # datastore-free controller: every losing dial is closed on both sides.
    leaked = len(os.listdir("/proc/self/fd")) - before
    assert leaked <= 4, f"{leaked} descriptors still open"
    dialing = [t for t in asyncio.all_tasks() if "_attempt" in repr(t.get_coro())]
    assert dialing == []
    for fake in fakes:
        fake.close()


async def test_requests_during_tunnel_loss_wait_and_use_the_new_tunnel(network, running, notice_log,
                                                                       tmp_path, echo_server):
    first = await network.add()
    second = await network.add()
    from onehop.client.candidates import MemoryStore
    controller = await running.start(Controller(fast_config(tmp_path), MemoryStore([first.entry, second.entry]),
                                                notice_log.notices))
    await wait_until(lambda: controller.active is not None, 20)
    victim = next(r for r in (first, second) if r.entry.ip_address == controller.active.entry.ip_address)
    await victim.server.stop()
    reader, writer, code = await socks5_connect(controller.socks_port, "127.0.0.1", echo_server)
    assert code == 0
    writer.write(b"still here")
    assert await reader.readexactly(10) == b"still here"
    assert controller.active.entry.ip_address != victim.entry.ip_address
    writer.close()


class Socks4aProxy(CountingProxy):
    """SOCKS4a server side, counting bytes."""

    def __init__(self) -> None:
        super().__init__("socks4a")

    async def _socks5(self, reader, writer):  # dispatched as the non-http kind
        head = await reader.readexactly(8)
        port = int.from_bytes(head[2:4], "big")
        await reader.readuntil(b"\x00")  # the SOCKS4 user id, unused
        host = await reader.readuntil(b"\x00") if head[4:7] == b"\x00\x00\x00" else None
        address = host[:-1].decode() if host else ".".join(str(b) for b in head[4:8])
        writer.write(b"\x00\x5a" + b"\x00" * 6)
        return address, port


class SilenceableRelay:
    """A TCP relay in front of a server that can start dropping everything (a censor's
    sudden black hole on an established flow)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.silent = False
        self.server = None

    async def start(self, host: str) -> int:
        def pipe(reader, writer):
            return copy_stream(reader, writer, lambda data: None if self.silent else data)

        async def handle(reader, writer):
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.server = await asyncio.start_server(handle, host, 0)
        return self.server.sockets[0].getsockname()[1]


async def test_a_silently_dead_server_is_detected_by_keepalive(network, running, notice_log, tmp_path):
    first = await network.add()
    relay = SilenceableRelay(first.entry.ip_address, first.entry.ssh_obfuscated_port)
    port = await relay.start("127.0.7.1")
    via_relay = first.entry.with_fields({"ipAddress": "127.0.7.1", "sshObfuscatedPort": port,
                                         "capabilities": ["OSSH", "ssh-api-requests"]})
    second = await network.add()
    from onehop.client.candidates import MemoryStore
    store = MemoryStore([via_relay])
    controller = await running.start(Controller(fast_config(tmp_path, keepalive_interval=0.5), store,
                                                notice_log.notices))
    await wait_until(lambda: controller.active is not None, 20)
    store.import_entries([second.entry], "REMOTE")
    relay.silent = True  # no FIN, no RST: only keepalives can tell
    started = asyncio.get_running_loop().time()
    await wait_until(lambda: controller.active is not None
                     and controller.active.entry.ip_address == second.entry.ip_address, 20)
    assert asyncio.get_running_loop().time() - started < 10
    relay.server.close()


async def test_status_request_prunes_what_the_server_reports_invalid(network, tmp_path, notice_log):
    import json
    from datetime import datetime, timedelta
    from onehop.client.api_calls import base_params
    from onehop.client.status import send_status
    from tests.helpers.builders import make_entry
    gone, kept = make_entry("192.0.2.60"), make_entry("192.0.2.61")
    store = Datastore(str(tmp_path / "store"))
    store.import_entries([gone, kept], "EMBEDDED", datetime.now(UTC) - timedelta(days=10))
    kept_tag = next(e.tag for e in store.entries() if e.ip_address == "192.0.2.61")
    (tmp_path / "psinet.json").write_text(json.dumps({"valid_server_entry_tags": {kept_tag: True}}))
    running_server = await network.add(PsinetDatabaseFilename="psinet.json")
    from onehop.client.candidates import MemoryStore
    controller = Controller(fast_config(tmp_path), MemoryStore([running_server.entry]), notice_log.notices)
    await controller.start_proxies()
    tunnel = await controller.establish()
    store.add_stat("remote_server_list", {"url": "https://example.org/list", "etag": "x",
                                          "client_download_timestamp": "2026-11-25T12:00:00Z"})
    assert await send_status(tunnel, store, base_params(controller.config)) == 1
    assert [e.ip_address for e in store.entries()] == ["192.0.2.61"]
    assert store.pending_stats() == []  # shipped, so no longer pending
    tunnel.client.close()
    await controller.close()


async def test_no_server_entries_is_said_once_with_the_fix_then_retried_quietly(running, notice_log, tmp_path):
    """Issue 16: `no server entries to try` came every 2 s forever and never said what to do."""
    from onehop.client.candidates import MemoryStore
    store = MemoryStore([])
    controller = await running.start(Controller(fast_config(tmp_path, establish_pause=0.05), store,
                                                notice_log.notices))
    await wait_until(lambda: len(notice_log.of_type("CandidateServers")) >= 5, 10)
    (alert,) = [n for n in notice_log.of_type("Alert") if "no server entries" in n["data"]["message"]]
    for fix in ("--target-server-entry", "--server-list", "RemoteServerListURLs",
                "RemoteServerListSignaturePublicKey"):
        assert fix in alert["data"]["hint"]
    assert controller.active is None


async def test_a_refused_forward_is_a_notice_once_per_destination(network, running, notice_log, tmp_path, page):
    """Issue 16: without AllowBogons a local page failed as a bare SOCKS error, and the client said nothing."""
    from onehop.client.candidates import MemoryStore
    strict = await network.add(allow_bogons=False)
    controller = await running.start(Controller(fast_config(tmp_path), MemoryStore([strict.entry]),
                                                notice_log.notices))
    await wait_until(lambda: controller.active is not None, 20)
    _, port = page
    for _ in range(3):
        _, writer, code = await socks5_connect(controller.socks_port, "127.0.0.1", port)
        writer.close()
        assert code == 2  # SOCKS "connection not allowed by ruleset"
    refused = [n for n in notice_log.of_type("Alert") if "refused to forward" in n["data"]["message"]]
    assert len(refused) == 1
    assert refused[0]["data"]["destination"] == f"127.0.0.1:{port}"
    assert "AllowBogons" in refused[0]["data"]["message"] and "--allow-bogons" in refused[0]["data"]["message"]
