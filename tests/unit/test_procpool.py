"""onehop.procpool: calls, exceptions, a dead worker, and no worker outliving its parent."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from onehop.net.keypool import KeyDeriver, derive_inline
from onehop.procpool import PoolClosed, ProcessPool, WorkerDied
from tests.helpers.procs import pid_alive
from tests.helpers.waiting import poll_until, wait_until

_state: list[str] = []


def _init(value: str) -> None:
    _state.append(value)


def _initialized() -> list[str]:
    return list(_state)


def _fail() -> None:
    raise ValueError("from the worker")


async def test_calls_run_in_initialized_workers_and_raise_their_exceptions():
    pool = ProcessPool(2, _init, ("ready",))
    await pool.start()
    try:
        assert len(set(pool.pids)) == 2 and os.getpid() not in pool.pids
        assert await pool.call(_initialized) == ["ready"]  # once per worker, in the worker
        assert await pool.call(divmod, 7, 2) == (3, 1)
        with pytest.raises(ValueError, match="from the worker"):
            await pool.call(_fail)
    finally:
        await pool.close()
    assert _state == []


async def test_a_killed_worker_fails_its_call_and_is_replaced():
    pool = ProcessPool(1)
    await pool.start()
    try:
        (pid,) = pool.pids
        pending = asyncio.ensure_future(pool.call(time.sleep, 30))
        await wait_until(lambda: pool._workers[0].pending, 5, "the call to reach the worker")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerDied):
            await pending
        assert await pool.call(divmod, 9, 4) == (2, 1)
        assert pool.pids and pool.pids != [pid]
    finally:
        await pool.close()


async def test_key_deriver_answers_as_inline_derivation():
    deriver = KeyDeriver(1)
    await deriver.start()
    try:
        seed, keyword = os.urandom(16), b"obfuscation keyword"
        assert await deriver.derive(seed, keyword) == derive_inline(seed, keyword)
        (pid,) = deriver._pool.pids
        os.kill(pid, signal.SIGKILL)
        await wait_until(lambda: not deriver._pool.pids, 5, "the worker's death to be seen")
        assert await deriver.derive(seed, keyword) == derive_inline(seed, keyword)
    finally:
        await deriver.close()


async def test_a_call_after_close_starts_no_worker(caplog):
    """A handshake still in flight when the server stops must not start a worker that
    nobody will close (it outlived `onehop demo` and failed to import from a deleted venv)."""
    pool = ProcessPool(1)
    await pool.start()
    (pid,) = pool.pids
    await pool.close()
    assert not pid_alive(pid)
    with pytest.raises(PoolClosed):
        await pool.call(divmod, 9, 4)
    assert pool.pids == [] and pool._workers == []
    deriver = KeyDeriver(1)
    await deriver.start()
    await deriver.close()
    seed, keyword = os.urandom(16), b"obfuscation keyword"
    assert await deriver.derive(seed, keyword) == derive_inline(seed, keyword)  # inline, quietly
    assert deriver._pool._workers == []
    assert "key worker unavailable" not in caplog.text


def test_workers_die_with_a_killed_parent():
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import asyncio, sys, time
        from onehop.procpool import ProcessPool
        async def main():
            pool = ProcessPool(2)
            await pool.start()
            print(*pool.pids, flush=True)
            time.sleep(60)
        asyncio.run(main())
    """)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        parent.kill()
        parent.wait()
    poll_until(lambda: not any(pid_alive(p) for p in pids), 10, "the workers to exit")


def test_a_worker_whose_parent_stopped_reading_exits_quietly():
    # the demo's last key derivation answered after the pool was closed: a traceback on stderr
    import pickle
    import subprocess
    import sys

    from onehop.procworker import frame
    call = frame(pickle.dumps((1, len, ("abc",))))
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read the answer
    done = subprocess.run([sys.executable, "-m", "onehop.procworker"], input=call, stdout=write_end,
                          stderr=subprocess.PIPE, timeout=30)
    os.close(write_end)
    assert done.returncode == 0
    assert done.stderr == b""
