"""Attacks on the worker watchdog of ``onehop server run --workers N`` (heartbeats on each
worker's stdin socket, a supervisor that kills a silent worker, PR_SET_PDEATHSIG).

Real processes on loopback, through the CLI (``WorkerServer``); each test is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal

import pytest

from tests.e2e.conftest import wait_until
from tests.e2e.test_probes import probe
from tests.e2e.test_server_workers import IP, ONEHOP, WorkerServer, alive, worker_pids


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
