"""``onehop server run --workers 2``: real processes on loopback sockets.

Which worker accepts a connection is the kernel's choice; a test steers it by stopping
the other worker (SIGSTOP): a stopped worker does not accept, so the running one takes
every connection from the shared listening socket. Workers are found as the
supervisor's child processes (``/proc``), their ids in their command lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys

import pytest

from onehop.client.candidates import MemoryStore
from onehop.errors import OSSHReason
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.core.serverentry import decode_server_entry
from onehop.demo import free_port
from onehop.server.generate import generate_server, write_server_dir
from tests.e2e.conftest import wait_until
from tests.helpers.procs import child_states
from tests.e2e.proxyclient import http_get_via_socks
from tests.e2e.test_probes import probe, valid_first_flight

ONEHOP = [sys.executable, "-m", "onehop.cli"]
IP = "127.0.0.50"


def children(pid: int) -> list[int]:
    return [child for child, state in child_states(pid).items() if state != "Z"]


def descendants(pid: int) -> set[int]:
    found = set()
    for child in children(pid):
        found |= {child} | descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def worker_pids(supervisor: int) -> dict[int, int]:
    """worker id -> pid, from the workers' command lines."""
    found = {}
    for pid in children(supervisor):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
            if "onehop.server.worker" in argv:
                found[int(argv[argv.index("--worker-id") + 1])] = pid
    return found


class WorkerServer:
    def __init__(self, tmp_path, log_filename: str | None = "events.jsonl", **config) -> None:
        generated = generate_server(IP, ossh_port=free_port(IP), allow_bogons=True, host_id="multi",
                                    log_filename=log_filename)
        generated.config.update(SSHHandshakeTimeoutMilliseconds=1000, OSSHKeyDerivationWorkers=2, **config)
        self.config_path, _ = write_server_dir(tmp_path / "server", generated)
        self.dir = tmp_path / "server"
        self.entry = decode_server_entry(generated.encoded_entry)
        self.stderr: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    async def start(self, *extra: str) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *ONEHOP, *extra, "server", "run", "--config", str(self.config_path), "--workers", "2",
            stderr=asyncio.subprocess.PIPE)
        while not (start := (await asyncio.wait_for(self.proc.stderr.readline(), 60)).decode()).startswith(
                "onehop server:") and start:
            self.stderr.append(start)  # log lines (--log-level INFO) come first
        assert start.startswith(f"onehop server: serving OSSH (with and without prefix) on {IP}:"), start
        assert "2 worker processes" in start
        self._reader = asyncio.get_running_loop().create_task(self._read_stderr())
        await wait_until(lambda: len(self.workers()) == 2, 30)

    async def _read_stderr(self) -> None:
        while line := await self.proc.stderr.readline():
            self.stderr.append(line.decode("utf-8", "replace"))

    def workers(self) -> dict[int, int]:
        return worker_pids(self.proc.pid)

    def events(self, name: str | None = None) -> list[dict]:
        path = self.dir / "events.jsonl"
        if not path.exists():
            return []
        text = path.read_text()
        assert text == "" or text.endswith("\n")
        records = [json.loads(line) for line in text.splitlines()]  # every line is whole JSON
        return [r for r in records if name is None or r["event_name"] == name]

    @contextlib.contextmanager
    def only(self, worker_id: int):
        """Every new connection goes to ``worker_id``: the other workers are stopped meanwhile."""
        others = [pid for wid, pid in self.workers().items() if wid != worker_id]
        for pid in others:
            os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in others:
                os.kill(pid, signal.SIGCONT)

    async def stop(self) -> int:
        for pid in self.workers().values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), 60)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
            if self._reader is not None:
                await asyncio.gather(self._reader, return_exceptions=True)
        return code


@pytest.fixture
async def server(tmp_path):
    running = WorkerServer(tmp_path)
    yield running
    if running.proc is not None and running.proc.returncode is None:
        await running.stop()


async def tunnel_fetch(tmp_path, entry, page, name: str) -> None:
    """A client tunnel through the server fetches the page, then the client stops."""
    config = ClientConfig(data_dir=str(tmp_path / name), socks_port=0, http_port=0,
                          tunnel_connect_timeout=5.0, establish_pause=0.2)
    controller = Controller(config, MemoryStore([entry]), Notices(None))
    await controller.start_proxies()
    task = asyncio.get_running_loop().create_task(controller.run())
    try:
        await wait_until(lambda: controller.active is not None, 30)
        body, port = page
        assert await http_get_via_socks(controller.socks_port, "127.0.0.1", port) == body
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await controller.close()


async def test_tunnels_through_both_workers_and_whole_event_lines(server, tmp_path, page):
    await server.start()
    for worker_id in (0, 1):
        with server.only(worker_id):
            await tunnel_fetch(tmp_path, server.entry, page, f"client{worker_id}")
            await wait_until(lambda worker_id=worker_id: any(e["worker_id"] == worker_id
                                                             for e in server.events("server_tunnel")), 30)
    served = {e["worker_id"] for e in server.events("server_tunnel")}
    assert served == {0, 1}
    assert all(e["host_id"] == "multi" and e["worker_id"] in (0, 1) for e in server.events())
    assert await server.stop() == 0
    assert "127.0.0" not in (server.dir / "events.jsonl").read_text()  # no client address


async def test_a_preamble_replayed_to_the_other_worker_is_refused_silently(server):
    await server.start()
    flight = valid_first_flight(server.entry.ssh_obfuscated_key)
    port = server.entry.ssh_obfuscated_port
    with server.only(0):
        original, _, _ = await probe(IP, port, flight)
    assert len(original) > 20  # worker 0 answered: line padding and its identification line
    with server.only(1):
        replay, seconds, closed = await probe(IP, port, flight)
    assert replay == b"" and closed == "fin" and 0.9 <= seconds <= 3.0  # as any failed probe
    await wait_until(lambda: server.events("irregular_tunnel"), 10)
    (refused,) = server.events("irregular_tunnel")
    assert refused["tunnel_error"] == OSSHReason.DUPLICATE_SEED and refused["worker_id"] == 1


async def test_sighup_reaches_every_worker(tmp_path):
    rules = tmp_path / "server" / "rules.json"
    running = WorkerServer(tmp_path, TrafficRulesFilename="rules.json")
    rules.write_text("{}")
    await running.start("--log-level", "INFO")
    try:
        rules.write_text('{"DefaultRules": 5}')
        running.proc.send_signal(signal.SIGHUP)
        await wait_until(lambda: sum("SIGHUP: reloading" in line for line in running.stderr) == 2, 30)
        assert {re.search(r" worker (\d+) ", line).group(1)
                for line in running.stderr if "SIGHUP: reloading" in line} == {"0", "1"}
        await wait_until(lambda: len(running.events("traffic_rules_error")) == 2, 30)
        assert {e["worker_id"] for e in running.events("traffic_rules_error")} == {0, 1}
    finally:
        assert await running.stop() == 0


async def test_sigterm_stops_every_process(server):
    await server.start()
    family = descendants(server.proc.pid)
    assert len(family) == 4  # two workers, one key-derivation process each
    assert await server.stop() == 0
    assert not [pid for pid in family if alive(pid)]


async def test_a_killed_worker_is_restarted_and_serves(server, tmp_path, page):
    await server.start()
    before = server.workers()
    os.kill(before[1], signal.SIGKILL)
    await wait_until(lambda: server.workers().get(1) not in (None, before[1]), 30)
    assert server.workers()[0] == before[0]  # the other one kept serving
    with server.only(1):
        await tunnel_fetch(tmp_path, server.entry, page, "after-restart")
    await wait_until(lambda: server.events("server_tunnel"), 30)
    assert server.events("server_tunnel")[0]["worker_id"] == 1
    assert any("worker 1" in line and "killed by SIGKILL; restarting" in line for line in server.stderr)
    assert await server.stop() == 0


async def test_a_hung_worker_is_killed_and_restarted_and_a_quiet_one_is_not(tmp_path, page):
    """A worker whose event loop makes no progress (SIGSTOP here; a stuck loop looks the
    same from outside) is killed after WorkerHeartbeatTimeoutSeconds and restarted; the
    other one, idle all along, keeps its pid: idle is not hung."""
    running = WorkerServer(tmp_path, WorkerHeartbeatTimeoutSeconds=2)
    await running.start()
    try:
        before = running.workers()
        await asyncio.sleep(5)  # well past the timeout, with nothing to do
        assert running.workers() == before
        os.kill(before[1], signal.SIGSTOP)
        await wait_until(lambda: running.workers().get(1) not in (None, before[1]), 30)
        assert running.workers()[0] == before[0]
        assert any("worker 1" in line and "no heartbeat" in line for line in running.stderr)
        assert any("worker 1" in line and "killed by SIGKILL; restarting" in line for line in running.stderr)
        with running.only(1):
            await tunnel_fetch(tmp_path, running.entry, page, "after-hang")
    finally:
        assert await running.stop() == 0


async def test_a_stalled_supervisor_does_not_kill_its_healthy_workers(tmp_path):
    """Heartbeats that waited unread while the supervisor itself was stopped count: it must
    not take its own stall for its workers'."""
    running = WorkerServer(tmp_path, WorkerHeartbeatTimeoutSeconds=1)
    await running.start()
    try:
        before = running.workers()
        for _ in range(3):
            os.kill(running.proc.pid, signal.SIGSTOP)
            await asyncio.sleep(3)
            os.kill(running.proc.pid, signal.SIGCONT)
            await asyncio.sleep(1)
        assert running.workers() == before
        assert not any("no heartbeat" in line for line in running.stderr)
    finally:
        assert await running.stop() == 0


async def test_a_killed_supervisor_takes_its_workers_along(server):
    await server.start()
    family = descendants(server.proc.pid)
    server.proc.kill()
    await server.proc.wait()
    await wait_until(lambda: not [pid for pid in family if alive(pid)], 30)


async def test_a_killed_supervisor_takes_even_a_stopped_worker_along(server):
    """A stopped worker cannot notice the end of its stdin; the kernel kills it anyway."""
    await server.start()
    workers = server.workers()
    os.kill(workers[1], signal.SIGSTOP)
    server.proc.kill()
    await server.proc.wait()
    await wait_until(lambda: not alive(workers[1]) and not alive(workers[0]), 30)


async def test_workers_must_be_a_positive_count(server):
    proc = await asyncio.create_subprocess_exec(
        *ONEHOP, "server", "run", "--config", str(server.config_path), "--workers", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and "--workers" in err.decode() and "between 1 and" in err.decode()
    assert "Traceback" not in err.decode()


async def test_without_a_log_file_the_events_of_both_workers_reach_stderr_whole(tmp_path):
    running = WorkerServer(tmp_path, log_filename=None)
    await running.start()
    try:
        for worker_id in (0, 1):
            with running.only(worker_id):
                received, _, closed = await probe(IP, running.entry.ssh_obfuscated_port, os.urandom(100))
            assert received == b"" and closed == "fin"
        def logged() -> list[dict]:
            return [json.loads(line) for line in running.stderr if line.startswith("{")]
        await wait_until(lambda: len(logged()) == 2, 30)
    finally:
        assert await running.stop() == 0
    assert {(e["event_name"], e["worker_id"]) for e in logged()} == {("irregular_tunnel", 0), ("irregular_tunnel", 1)}
    assert all(line.startswith("{") and line.endswith("}\n") for line in running.stderr)
    assert "127.0.0" not in "".join(running.stderr)
