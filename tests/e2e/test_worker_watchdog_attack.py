"""Attacks on the worker watchdog of ``onehop server run --workers N`` (heartbeats on each
worker's stdin socket, a supervisor that kills a silent worker, PR_SET_PDEATHSIG).

Real processes on loopback, through the CLI (``WorkerServer``); each test is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal

import pytest

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from tests.e2e.conftest import wait_until
from tests.helpers.procs import child_states
from tests.e2e.proxyclient import http_get_via_socks
from tests.e2e.test_probes import probe
from tests.e2e.test_server_workers import (
    IP, ONEHOP, WorkerServer, alive, descendants, worker_pids)


def edit_config(running: WorkerServer, **changes) -> None:
    config = json.loads(running.config_path.read_text())
    config.update(changes)
    running.config_path.write_text(json.dumps(config))


@pytest.mark.parametrize("new_timeout", [0, 60])
async def test_a_worker_restarted_after_server_json_changed_is_not_killed_again_and_again(tmp_path, new_timeout):
    """A restarted worker reads server.json again, the supervisor does not: an operator who
    turns the watchdog off (0) or back to its default (60, heartbeats every 5 s) while the
    server runs must not have every later restart of a worker end in a heartbeat kill."""
    running = WorkerServer(tmp_path, WorkerHeartbeatTimeoutSeconds=2)
    await running.start()
    try:
        edit_config(running, WorkerHeartbeatTimeoutSeconds=new_timeout)
        before = running.workers()
        os.kill(before[1], signal.SIGKILL)  # any restart: a crash, an out-of-memory kill
        await wait_until(lambda: running.workers().get(1) not in (None, before[1]), 30)
        restarted = running.workers()[1]
        await asyncio.sleep(7)  # the new worker serves for over three timeouts
        assert not any("no heartbeat" in line for line in running.stderr), running.stderr
        assert running.workers() == {0: before[0], 1: restarted}
    finally:
        assert await running.stop() == 0


async def test_a_supervisor_killed_while_its_workers_start_takes_them_along(tmp_path):
    """PR_SET_PDEATHSIG only arms for a parent still alive when the worker calls prctl,
    about half a second into its start (the interpreter and its imports come first). A
    supervisor killed in that window must not leave a worker behind that goes on starting
    (a start may take minutes: STARTUP_ALLOWANCE; here its GeoIP file, a FIFO, never comes)
    holding the listening ports."""
    running = WorkerServer(tmp_path, GeoIPDatabaseFilenames=["geo.mmdb"])
    os.mkfifo(running.dir / "geo.mmdb")
    proc = await asyncio.create_subprocess_exec(
        *ONEHOP, "server", "run", "--config", str(running.config_path), "--workers", "2",
        stderr=asyncio.subprocess.DEVNULL)
    seen: set[int] = set()
    try:
        for _ in range(5000):
            seen |= set(worker_pids(proc.pid).values())
            if seen:
                break
            await asyncio.sleep(0.001)
        proc.kill()  # just after it forked its first worker
        await proc.wait()
        assert seen
        await asyncio.sleep(3)
        assert not [pid for pid in seen if alive(pid)]
    finally:
        for pid in seen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_worker_killed_after_the_event_stream_broke_is_still_restarted(tmp_path):
    """Without LogFilename the supervisor copies events to its stderr. Once that is gone
    (the reader of a pipe exited, journald restarted) an event must not take the copying
    down with it: a worker that then dies (or hangs on a pipe nobody reads, and is killed
    for it) is restarted like any other."""
    running = WorkerServer(tmp_path, log_filename=None, WorkerHeartbeatTimeoutSeconds=2)
    await running.start()
    try:
        running._reader.cancel()
        await asyncio.gather(running._reader, return_exceptions=True)
        running._reader = None
        running.proc._transport.get_pipe_transport(2).close()  # stderr now fails with EPIPE
        await asyncio.sleep(0.1)
        before = running.workers()
        for _ in range(3):
            with running.only(1):
                await probe(IP, running.entry.ssh_obfuscated_port, os.urandom(100))  # an event
        os.kill(before[1], signal.SIGKILL)
        await wait_until(lambda: running.workers().get(1) not in (None, before[1]), 10)
        assert running.workers()[0] == before[0]
    finally:
        running.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(running.proc.wait(), 30)
    assert code == 0  # no supervisor task ended in an exception


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def zombies(pid: int) -> list[int]:
    return [child for child, state in child_states(pid).items() if state == "Z"]


async def test_workers_that_hang_again_at_once_back_off_and_leak_nothing(tmp_path):
    """Both workers hang (are stopped) as soon as they serve, every time: each is killed
    after the 1 s timeout and restarted after a delay that doubles, per worker; the
    supervisor keeps no descriptor, zombie or grandchild from the killed ones and still
    stops cleanly."""
    running = WorkerServer(tmp_path, WorkerHeartbeatTimeoutSeconds=1)
    await running.start("--log-level", "INFO")
    sup = running.proc.pid
    await asyncio.sleep(0.5)
    fds_before = open_fds(sup)
    family: set[int] = set()
    stopped: set[int] = set()
    seen = 0
    pid_of: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 13
    try:
        while loop.time() < deadline:
            for line in running.stderr[seen:]:
                if m := re.search(r"worker (\d) started \(pid (\d+)\)", line):
                    pid_of[m[1]] = int(m[2])
                elif (m := re.search(r" worker (\d) onehop.server.service: serving", line)) and m[1] in pid_of:
                    pid = pid_of.pop(m[1])  # it serves (and says so just before "ready")
                    family |= {pid} | descendants(pid)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGSTOP)
                    stopped.add(pid)
            seen = len(running.stderr)
            await asyncio.sleep(0.02)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    delays: dict[str, list[float]] = {"0": [], "1": []}
    for line in running.stderr:
        if m := re.search(r"worker (\d) \(pid \d+\) killed by SIGKILL; restarting it in ([0-9.]+) s", line):
            delays[m[1]].append(float(m[2]))
    kills = sum("no heartbeat" in line for line in running.stderr)
    assert kills >= 6 and len(delays["0"]) >= 3 and len(delays["1"]) >= 3, running.stderr
    for each in delays.values():
        assert each == [round(0.1 * 2 ** i, 1) for i in range(len(each))], delays
    await wait_until(lambda: len(running.workers()) == 2, 30)
    await asyncio.sleep(1.5)  # the last killed ones' key-derivation processes see their pipes close
    assert open_fds(sup) == fds_before
    assert not zombies(sup)
    current = set(running.workers().values())
    assert not [pid for pid in family - current if alive(pid)]
    assert await running.stop() == 0
    assert not [pid for pid in family if alive(pid)]


async def test_a_server_frozen_whole_kills_no_worker_when_it_thaws(tmp_path):
    """Every process of the server stopped together and continued (a cgroup freezer:
    `docker pause`/`unpause`, `systemctl freeze`/`thaw`; a debugger): no heartbeat waits
    unread, as the workers were frozen too, and the supervisor must not count the freeze
    as their silence, whichever process runs first after the thaw (workers continued first
    here)."""
    running = WorkerServer(tmp_path, WorkerHeartbeatTimeoutSeconds=2)
    await running.start()
    try:
        before = running.workers()
        for _ in range(3):
            family = [running.proc.pid, *descendants(running.proc.pid)]
            for pid in family:
                os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(3.5)
            for pid in reversed(family):
                os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(1.5)
        assert not any("no heartbeat" in line for line in running.stderr), running.stderr
        assert running.workers() == before
    finally:
        assert await running.stop() == 0


async def test_a_busy_worker_at_the_shortest_timeout_is_not_taken_for_a_hung_one(tmp_path, page):
    """At WorkerHeartbeatTimeoutSeconds 1 (a beat every 0.25 s), workers kept busy by
    tunnels carrying parallel downloads, and by the handshakes before, on a machine whose
    cores the test shares, still beat in time. (Not steered with ``only``: a worker stopped
    for it would count as hung.)"""
    running = WorkerServer(tmp_path, WorkerHeartbeatTimeoutSeconds=1)
    await running.start()
    controllers = []
    tasks = []
    fetched = 0
    try:
        before = running.workers()
        body, port = page

        async def fetch_for(seconds: float, socks_port: int) -> None:
            nonlocal fetched
            end = asyncio.get_running_loop().time() + seconds
            while asyncio.get_running_loop().time() < end:
                assert await http_get_via_socks(socks_port, "127.0.0.1", port) == body
                fetched += 1
                await asyncio.sleep(0.05)  # busy, not a benchmark: about 40 MB/s in all

        for n in range(3):  # three tunnels, each with its handshake (to either worker)
            config = ClientConfig(data_dir=str(tmp_path / f"client{n}"), socks_port=0, http_port=0,
                                  tunnel_connect_timeout=5.0, establish_pause=0.2)
            controller = Controller(config, MemoryStore([running.entry]), Notices(None))
            controllers.append(controller)
            await controller.start_proxies()
            tasks.append(asyncio.get_running_loop().create_task(controller.run()))
        for controller in controllers:
            await wait_until(lambda controller=controller: controller.active is not None, 30)
        await asyncio.gather(*(fetch_for(6, c.socks_port) for c in controllers for _ in range(2)))
        assert fetched >= 6
        assert not any("no heartbeat" in line for line in running.stderr), running.stderr
        assert running.workers() == before
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for controller in controllers:
            await controller.close()
        assert await running.stop() == 0
    carried = sum(e["bytes_down"] for e in running.events("server_tunnel"))
    assert carried >= fetched * len(body)  # the downloads did go through the workers
