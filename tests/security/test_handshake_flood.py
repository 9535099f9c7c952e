"""Silent connections cannot lock legitimate clients out of a server.

Before: nothing capped connections still in the handshake. 150 silent TCP connections
against a server with 128 descriptors used them all: legitimate clients were locked out
until the handshake deadline, and asyncio wrote an ``accept() out of system resource``
traceback for every failed accept (74,735 of them, 33 MB, in 10 s).

The server runs in a subprocess with RLIMIT_NOFILE lowered to 128; the attacker keeps
150 connections open (re-opening those the server closes) while a real client dials.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import pytest

from onehop.client.config import ClientConfig
from onehop.client.dialer import dial
from onehop.core.serverentry import decode_server_entry
from tests.helpers.net import free_port
from onehop.net.dial import connect_socket

pytestmark = pytest.mark.e2e

NOFILE = 128
SILENT = 150
MAX_STDERR = 16 * 1024
ONEHOP = os.path.join(os.path.dirname(sys.executable), "onehop")
if not os.path.exists(ONEHOP):
    ONEHOP = shutil.which("onehop") or "onehop"


def _lower_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class Server:
    def __init__(self, tmp_path, handshake_ms: int) -> None:
        self.dir = tmp_path / "server"
        self.ports = {"OSSH": free_port("127.0.0.1"), "SSH": free_port("127.0.0.1")}
        subprocess.run([ONEHOP, "server", "generate", "--ip", "127.0.0.1",
                        "--ossh-port", str(self.ports["OSSH"]), "--ssh-port", str(self.ports["SSH"]),
                        "--allow-bogons", "--out", str(self.dir)], check=True, capture_output=True, timeout=60)
        config = json.loads((self.dir / "server.json").read_text())
        config.update(SSHHandshakeTimeoutMilliseconds=handshake_ms, LogFilename=str(self.dir / "events.jsonl"),
                      OSSHKeyDerivationWorkers=0)
        (self.dir / "server.json").write_text(json.dumps(config))
        self.entry = decode_server_entry((self.dir / "server-entry.dat").read_text().strip())
        self.stderr = open(self.dir / "stderr.txt", "wb")
        self.process = subprocess.Popen([ONEHOP, "server", "run", "--config",
                                         str(self.dir / "server.json")], stdout=subprocess.DEVNULL,
                                        stderr=self.stderr, preexec_fn=_lower_nofile)

    async def wait_listening(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.stderr_text()
            if "serving" in self.stderr_text():
                return
            await asyncio.sleep(0.1)
        raise AssertionError("server did not start: " + self.stderr_text())

    def stderr_text(self) -> str:
        if not self.stderr.closed:
            self.stderr.flush()
        return (self.dir / "stderr.txt").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.stderr.close()


class Flood:
    """``count`` silent connections to ``port``, each re-opened 0.2 s after the server closes it."""

    def __init__(self, port: int, sources: list[str], count: int) -> None:
        self.port, self.sources, self.count = port, sources, count
        self.stop = asyncio.Event()
        self.open = 0
        self.received = 0   # bytes the server sent on OSSH: must stay 0
        self.closed_by_server = 0
        self.tasks: list[asyncio.Task] = []

    async def _one(self, source: str) -> None:
        while not self.stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0)), 5)
            except (TimeoutError, OSError):
                await asyncio.sleep(0.2)
                continue
            self.open += 1
            try:
                reading = asyncio.ensure_future(reader.read(65536))
                stopping = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if reading.done() and not reading.cancelled() and reading.exception() is None:
                    self.received += len(reading.result())
                    self.closed_by_server += 1
                else:
                    reading.cancel()
            finally:
                self.open -= 1
                writer.close()
            await asyncio.sleep(0.2)

    async def start(self) -> None:
        self.tasks = [asyncio.ensure_future(self._one(self.sources[i % len(self.sources)]))
                      for i in range(self.count)]
        deadline = time.monotonic() + 10
        while self.open < self.count * 0.9 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 15)


async def tunnel_within(server: Server, protocol: str, seconds: float) -> float:
    started = time.monotonic()
    config = ClientConfig(tunnel_connect_timeout=seconds)
    tunnel = await asyncio.wait_for(dial(server.entry, protocol, config, os.urandom(16).hex(), connect_socket),
                                    seconds)
    tunnel.client.close()
    return time.monotonic() - started


@pytest.mark.parametrize("protocol", ["OSSH", "SSH"])
async def test_one_source_cannot_fill_the_server(tmp_path, protocol):
    server = Server(tmp_path, handshake_ms=30000)
    try:
        await server.wait_listening()
        flood = Flood(server.ports[protocol], ["127.0.0.5"], SILENT)
        await flood.start()
        await asyncio.sleep(1.0)
        took = await tunnel_within(server, protocol, 10.0)  # long before the 30 s deadline frees anything
        await flood.close()
        if protocol == "OSSH":
            assert flood.received == 0  # probe-silent: refused connections get no byte either
        assert flood.closed_by_server > 0
        print(f"{protocol}: tunnel in {took:.2f} s with {SILENT} silent connections from one source")
    finally:
        server.stop()
    text = server.stderr_text()
    assert len(text) < MAX_STDERR and "Traceback" not in text, text[-3000:]


async def test_many_sources_wait_in_the_backlog_not_in_descriptors(tmp_path):
    server = Server(tmp_path, handshake_ms=2000)
    try:
        await server.wait_listening()
        sources = [f"127.0.1.{i}" for i in range(1, SILENT + 1)]
        flood = Flood(server.ports["OSSH"], sources, SILENT)
        await flood.start()
        await asyncio.sleep(1.0)
        took = await tunnel_within(server, "OSSH", 25.0)
        await flood.close()
        assert flood.received == 0
        print(f"OSSH: tunnel in {took:.2f} s with {SILENT} silent connections from {SILENT} sources")
    finally:
        server.stop()
    text = server.stderr_text()
    assert len(text) < MAX_STDERR and "Traceback" not in text, text[-3000:]


async def test_accept_backs_off_on_emfile_with_one_log_line(monkeypatch, caplog):
    """asyncio logged a traceback for every failed accept(); the gate waits and says it once."""
    import errno
    import logging

    from onehop.net.acceptgate import AcceptGate, GatedServer

    loop = asyncio.get_running_loop()
    real_accept, failures = loop.sock_accept, [0]

    async def sock_accept(sock):
        if failures[0] < 6:
            failures[0] += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return await real_accept(sock)

    monkeypatch.setattr(loop, "sock_accept", sock_accept)
    made = []

    def factory(admission):
        protocol = asyncio.Protocol()
        made.append(admission)
        return protocol

    caplog.set_level(logging.WARNING, logger="onehop.net.acceptgate")
    gate = AcceptGate(max_pending=2, max_pending_per_source=2)
    server = await GatedServer(factory, gate, "OSSH").start("127.0.0.1", 0)
    started = time.monotonic()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        while not made and time.monotonic() - started < 10:
            await asyncio.sleep(0.02)
        waited = time.monotonic() - started
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert made and gate.pending == 1
    made[0].release()
    made[0].release()  # twice is harmless
    assert gate.pending == 0
    assert 0.3 < waited < 5  # 50+100+200+400+800 ms... capped: it waited, it did not spin
    lines = [r for r in caplog.records if r.name == "onehop.net.acceptgate"]
    assert len(lines) == 1 and "out of descriptors" in lines[0].getMessage()


async def test_established_tunnels_free_their_handshake_place(network):
    """The cap counts handshakes only: authenticated tunnels (OSSH and SSH) and closed
    connections give their place back, so a busy server never stops accepting."""
    running = await network.add(MaxConcurrentSSHHandshakes=2, MaxConcurrentSSHHandshakesPerClient=2)
    gate = running.server.accept_gate
    tunnels = []
    for protocol in ("OSSH", "SSH", "OSSH", "SSH", "OSSH"):  # more tunnels than the cap
        tunnels.append(await asyncio.wait_for(
            dial(running.entry, protocol, ClientConfig(), os.urandom(16).hex(), connect_socket), 20))
        assert gate.pending == 0
    for tunnel in tunnels:
        tunnel.client.close()
    _, writer = await asyncio.open_connection(running.entry.ip_address, running.entry.ssh_obfuscated_port)
    writer.close()
    deadline = time.monotonic() + 5
    while gate.pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert gate.pending == 0
