"""What the worker processes of one server share: the seed-replay table (across processes),
each worker's share of the caps, and the ``Workers`` key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from onehop.errors import ConfigError
from onehop.net.acceptgate import default_caps
from onehop.server.config import parse_server_config
from onehop.server.sharedhistory import BUCKET_SLOTS, SharedSeedHistory
from onehop.server.workers import (
    HEARTBEAT_INTERVAL, STARTUP_ALLOWANCE, _has_spoken, allowed_silence, describe_exit, heartbeat_interval,
    Supervisor, worker_config,
)
from onehop.server.worker import parse_args as parse_worker_args
from tests.helpers.builders import problem_keys, valid_server_config

DAY = 24 * 60 * 60


@pytest.fixture
def table():
    history = SharedSeedHistory.create(buckets=64)
    yield history
    history.close()


def test_a_seed_is_fresh_once_then_a_replay(table):
    seed = os.urandom(16)
    assert table.add_new(seed, 1000.0) is True
    assert table.add_new(seed, 1001.0) is False
    assert table.add_new(os.urandom(16), 1001.0) is True
    assert len(table) == 2


def test_a_seed_is_forgotten_after_the_ttl(table):
    seed = os.urandom(16)
    assert table.add_new(seed, 1000.0)
    assert table.add_new(seed, 1000.0 + DAY - 1) is False
    assert table.add_new(seed, 1000.0 + DAY + 1) is True


def test_a_full_bucket_forgets_its_oldest_seed():
    history = SharedSeedHistory.create(buckets=1)
    try:
        seeds = [os.urandom(16) for _ in range(BUCKET_SLOTS + 1)]
        for t, seed in enumerate(seeds):
            assert history.add_new(seed, 1000.0 + t)
        assert len(history) == BUCKET_SLOTS == history.capacity
        assert history.add_new(seeds[-1], 2000.0) is False  # the newest are remembered
        assert history.add_new(seeds[1], 2000.0) is False
        assert history.add_new(seeds[0], 2000.0) is True  # the oldest made room
    finally:
        history.close()


def test_another_process_sees_the_seeds_and_its_own_are_seen(table):
    first, second = os.urandom(16), os.urandom(16)
    assert table.add_new(first, 1000.0)
    code = ("import sys; from onehop.server.sharedhistory import SharedSeedHistory\n"
            f"t = SharedSeedHistory({table.fd})\n"
            f"print(t.add_new(bytes.fromhex('{first.hex()}'), 1001.0),"
            f" t.add_new(bytes.fromhex('{second.hex()}'), 1001.0))")
    done = subprocess.run([sys.executable, "-c", code], pass_fds=(table.fd,), capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["False", "True"], done.stderr
    assert table.add_new(second, 1002.0) is False


def test_a_file_that_is_not_a_table_is_refused(tmp_path):
    fd = os.open(tmp_path / "junk", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"\0" * 4096)
    with pytest.raises(ValueError):
        SharedSeedHistory(fd)
    os.close(fd)


def test_each_worker_gets_its_share_of_the_caps():
    config = parse_server_config(valid_server_config(
        MaxConcurrentSSHHandshakes=100, MaxConcurrentSSHHandshakesPerClient=9, OSSHKeyDerivationWorkers=3))
    share = worker_config(config, 2)
    assert (share.max_concurrent_handshakes, share.max_concurrent_handshakes_per_source) == (50, 4)
    assert share.ossh_key_workers == 2  # rounded up: key derivation is not a cap
    assert worker_config(config, 1) == config
    defaults = worker_config(parse_server_config(valid_server_config(OSSHKeyDerivationWorkers=0)), 4)
    total, per_source = default_caps()
    assert defaults.max_concurrent_handshakes == total // 4
    assert defaults.max_concurrent_handshakes_per_source == max(1, per_source // 4)
    assert defaults.ossh_key_workers == 0


def test_workers_key():
    assert parse_server_config(valid_server_config()).workers == len(os.sched_getaffinity(0))
    assert parse_server_config(valid_server_config(Workers=1)).workers == 1
    for bad in (0, 257, "2"):
        with pytest.raises(ConfigError) as info:
            parse_server_config(valid_server_config(Workers=bad))
        assert problem_keys(info.value) == ["Workers"]


def test_worker_heartbeat_timeout_key():
    assert parse_server_config(valid_server_config()).worker_heartbeat_timeout == 60
    assert parse_server_config(valid_server_config(WorkerHeartbeatTimeoutSeconds=0)).worker_heartbeat_timeout == 0
    for bad in (-1, 86401, "60", 1.5):
        with pytest.raises(ConfigError) as info:
            parse_server_config(valid_server_config(WorkerHeartbeatTimeoutSeconds=bad))
        assert problem_keys(info.value) == ["WorkerHeartbeatTimeoutSeconds"]


def test_heartbeats_come_several_times_per_timeout():
    assert heartbeat_interval(60) == HEARTBEAT_INTERVAL
    assert heartbeat_interval(2) == 0.5
    for timeout in (1, 2, 7, 20, 60, 86400):
        assert heartbeat_interval(timeout) <= timeout / 4


def test_a_starting_worker_gets_longer_than_a_running_one():
    assert allowed_silence(60, ready=True) == 60
    assert allowed_silence(60, ready=False) == STARTUP_ALLOWANCE > 60  # a slow load is not a hang
    assert allowed_silence(3600, ready=False) == 3600


def test_unread_words_from_a_worker_are_seen_and_left_for_the_reader():
    supervisor_end, worker_end = socket.socketpair()
    with supervisor_end, worker_end:
        assert not _has_spoken(supervisor_end)
        worker_end.send(b".")
        assert _has_spoken(supervisor_end)
        assert supervisor_end.recv(16) == b"."  # still there for _listen
        worker_end.close()
        assert not _has_spoken(supervisor_end)  # end of file is not a word


def test_a_worker_woken_on_stdin_with_nothing_to_read_keeps_running():
    """Its stdin (the supervisor's socket) is non-blocking: a wakeup that finds no bytes is
    not the end of file that means the supervisor is gone."""
    script = (
        "import os, socket\n"
        "from onehop.server import worker\n"
        "mine, theirs = socket.socketpair()\n"
        "os.dup2(mine.fileno(), 0)\n"
        "os.set_blocking(0, False)\n"
        "worker._on_stdin()\n"
        "print('still running')\n"
        "theirs.close()\n"
        "worker._on_stdin()\n"
        "print('not reached: end of file ends the worker')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout == "still running\n"
    assert done.returncode == 1


def test_exits_are_described():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit status 3"


@pytest.mark.parametrize(("timeout", "interval"), [(0, 0.0), (1, 0.25), (2, 0.5), (60, HEARTBEAT_INTERVAL)])
def test_a_worker_is_told_the_heartbeat_interval_and_its_supervisor(table, timeout, interval):
    """Not left to a server.json the worker reads again when restarted (it may have been
    edited since); the supervisor's pid, for a worker that starts after it died."""
    config = parse_server_config(valid_server_config(WorkerHeartbeatTimeoutSeconds=timeout))
    supervisor = Supervisor("/x/server.json", config, 2)
    supervisor.history = table
    command = supervisor._command(1)
    assert float(command[command.index("--heartbeat-interval") + 1]) == interval
    assert int(command[command.index("--supervisor-pid") + 1]) == os.getpid()
    args = parse_worker_args(command[command.index("onehop.server.worker") + 1:])
    assert args.heartbeat_interval == interval and args.supervisor_pid == os.getpid()


def test_a_heartbeat_that_finds_the_socket_full_is_skipped_and_a_closed_one_ends_the_worker():
    """The worker's stdin socket full (a supervisor stalled for minutes): the heartbeat is
    dropped (those queued still count) and the worker goes on; the supervisor gone: it ends."""
    code = ("import os\n"
            "from onehop.server.worker import _tell_supervisor\n"
            "os.set_blocking(0, False)\n"
            "for _ in range(100000):\n"
            "    _tell_supervisor(b'.')\n"
            "print('alive', flush=True)\n"
            )
    supervisor_end, worker_end = socket.socketpair()
    with supervisor_end, worker_end:
        child = subprocess.run([sys.executable, "-c", code], stdin=worker_end, capture_output=True,
                               timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert child.returncode == 0 and child.stdout == b"alive\n", child.stderr
        queued = len(supervisor_end.recv(1 << 20, socket.MSG_DONTWAIT))
        assert 0 < queued < 100000  # the buffer filled; the rest were skipped
    supervisor_end, worker_end = socket.socketpair()
    with worker_end:
        supervisor_end.close()
        child = subprocess.run([sys.executable, "-c", code], stdin=worker_end, capture_output=True,
                               timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert child.returncode == 1 and child.stdout == b""
