"""Faults: a server killed mid-transfer (SIGKILL) keeps every stats line it wrote; a full
disk stops logging with a clear error while tunnels keep working; broken or missing GeoIP
files are reported and the server runs with region "None" until a good file appears."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import subprocess
import sys

import pytest

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.core.serverentry import decode_server_entry
from tests.helpers.net import free_port
from onehop.server.generate import generate_server, write_server_dir
from tests.helpers.waiting import wait_until
from tests.e2e.proxyclient import http_get_via_socks, socks5_connect
from tests.server.mmdb import city_record, write_mmdb

pytestmark = pytest.mark.e2e


def lines(path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines(keepends=True)


def named(path, name: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    found = []
    for line in lines(path):
        if line.endswith("\n"):
            record = json.loads(line)
            if record["event_name"] == name:
                found.append(record)
    return found


class Clients:
    """In-process clients that can be stopped one by one (which ends their tunnel)."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.running: list[tuple[Controller, asyncio.Task]] = []

    async def start(self, entry) -> Controller:
        config = ClientConfig(data_dir=str(self.tmp_path / f"c{len(self.running)}"), socks_port=0,
                              http_port=0, tunnel_connect_timeout=5.0, establish_pause=0.2)
        controller = Controller(config, MemoryStore([entry]), Notices(None))
        await controller.start_proxies()
        task = asyncio.get_running_loop().create_task(controller.run())
        self.running.append((controller, task))
        await wait_until(lambda: controller.active is not None, 20)
        return controller

    async def stop(self, controller: Controller) -> None:
        for c, task in self.running:
            if c is controller:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await c.close()

    async def stop_all(self) -> None:
        for controller, _ in list(self.running):
            await self.stop(controller)


@pytest.fixture
async def clients(tmp_path):
    found = Clients(tmp_path)
    yield found
    await found.stop_all()


async def endless_source() -> tuple[asyncio.AbstractServer, int]:
    """A TCP server that sends random bytes until the peer goes away."""
    chunk = os.urandom(65536)

    async def handle(reader, writer):
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(chunk)
                await writer.drain()
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_sigkill_mid_transfer_loses_no_stats_already_written(tmp_path, clients, page):
    ip = "127.0.0.30"
    generated = generate_server(ip, ossh_port=free_port(ip), allow_bogons=True, host_id="killed-host",
                                log_filename="events.log")
    config_path, _ = write_server_dir(tmp_path / "server", generated)
    log_path = tmp_path / "server" / "events.log"
    proc = await asyncio.to_thread(subprocess.Popen,
                                   [sys.executable, "-m", "onehop.cli", "server", "run", "--config", str(config_path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    source, source_port = await endless_source()
    try:
        entry = decode_server_entry(generated.encoded_entry)
        first = await clients.start(entry)  # the server needs a moment to start: the client retries
        body, page_port = page
        assert await http_get_via_socks(first.socks_port, "127.0.0.1", page_port) == body
        await clients.stop(first)
        await wait_until(lambda: named(log_path, "server_tunnel"), 10)

        second = await clients.start(entry)
        await wait_until(lambda: len(named(log_path, "unique_user")) == 2, 10)
        reader, writer, code = await socks5_connect(second.socks_port, "127.0.0.1", source_port)
        assert code == 0
        received = 0
        while received < 4_000_000:  # mid-transfer
            received += len(await reader.read(1 << 20))
        before = lines(log_path)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        writer.close()
    finally:
        source.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
    after = lines(log_path)
    assert after == before and after[-1].endswith("\n")
    records = [json.loads(line) for line in after]  # every line is whole
    assert sorted(r["event_name"] for r in records) == ["server_tunnel", "unique_user", "unique_user"]
    (tunnel,) = [r for r in records if r["event_name"] == "server_tunnel"]
    assert tunnel["bytes_down"] >= len(body) and tunnel["host_id"] == "killed-host"
    assert "127.0.0.1" not in "".join(after) + stderr


@contextlib.contextmanager
def tiny_disk(path):
    """A 64 KiB tmpfs at ``path`` (root only); skips the test when it cannot be mounted."""
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory) -> None:
    """Write a filler file until the file system is full."""
    with open(directory / "filler", "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 1024)


@pytest.mark.parametrize("disk", ["tmpfs", "dev-full"])
async def test_full_disk_stops_logging_clearly_and_tunnels_keep_working(tmp_path, network, clients, page,
                                                                        caplog, disk):
    body, page_port = page
    with contextlib.ExitStack() as stack:
        if disk == "tmpfs":
            log_path = stack.enter_context(tiny_disk(tmp_path / "disk")) / "events.log"
        else:
            log_path = "/dev/full"  # every write fails with ENOSPC
        running = await network.add(LogFilename=str(log_path))
        first = await clients.start(running.entry)
        if disk == "tmpfs":
            await wait_until(lambda: named(log_path, "unique_user"), 10)
            fill(tmp_path / "disk")
        with caplog.at_level(logging.ERROR, logger="onehop.server.events"):
            second = first
            for _ in range(12):  # the log's last page still has room: tunnels until it is gone
                await clients.stop(second)
                second = await clients.start(running.entry)
                with contextlib.suppress(AssertionError):
                    await wait_until(lambda: running.server.events.failed is not None, 0.5)
                    break
        assert os.strerror(errno.ENOSPC) in running.server.events.failed
        assert [r.levelname for r in caplog.records] == ["ERROR"]  # said once, clearly
        assert "keeps serving" in caplog.records[0].getMessage()
        assert await http_get_via_socks(second.socks_port, "127.0.0.1", page_port) == body
        third = await clients.start(running.entry)  # and new tunnels still come up
        assert await http_get_via_socks(third.socks_port, "127.0.0.1", page_port) == body
        if disk == "tmpfs":
            complete = [line for line in lines(log_path) if line.endswith("\n")]
            assert json.loads(complete[0])["event_name"] == "unique_user"  # what was written stays
        await clients.stop_all()
        await running.server.stop()


async def test_broken_geoip_means_region_none_until_a_good_file_arrives(tmp_path, network, clients, caplog):
    broken, missing = tmp_path / "city.mmdb", tmp_path / "isp.mmdb"
    broken.write_bytes(b"\x00" * 3000)
    log_path = tmp_path / "events.log"
    with caplog.at_level(logging.ERROR, logger="onehop.server.geoip"):
        running = await network.add(GeoIPDatabaseFilenames=[str(broken), str(missing)], LogFilename=str(log_path))
    errors = [r.getMessage() for r in caplog.records]
    assert len(errors) == 2 and str(broken) in errors[0] and str(missing) in errors[1]
    assert all('"None"' in e for e in errors)
    assert [e["database"] for e in named(log_path, "geoip_database_error")] == [str(broken), str(missing)]
    first = await clients.start(running.entry)
    assert first.active.handshake.client_region == "None"

    write_mmdb(tmp_path / "good.mmdb", {"127.0.0.0/8": city_record("DE", "Berlin")})
    os.replace(tmp_path / "good.mmdb", broken)
    running.server.reload_files()
    second = await clients.start(running.entry)
    assert second.active.handshake.client_region == "DE"
    await clients.stop_all()
    await wait_until(lambda: len(named(log_path, "server_tunnel")) == 2, 10)
    assert sorted(e["client_region"] for e in named(log_path, "server_tunnel")) == ["DE", "None"]
