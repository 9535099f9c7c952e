"""The project's one process pool: CPU-bound pure Python (the server's OSSH key
derivation, the mail responder's rendering and DKIM signing) in worker processes, so it
cannot stall an event loop.

Workers are plain subprocesses (``onehop.procworker``) fed pickled calls through pipes;
they exit when the pipe closes, so they never outlive their parent, not even one killed
by SIGKILL (``concurrent.futures`` process pools leave theirs running). Each worker runs
``initializer(*initargs)`` first. Calls go round-robin to live workers. A worker that
dies fails its pending calls with ``WorkerDied`` (the caller decides: derive on the
event loop, keep the reply queued) and is replaced at the next call.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import sys
from typing import Any
from collections.abc import Callable

from .procworker import LENGTH_BYTES, frame

log = logging.getLogger(__name__)


class WorkerDied(ConnectionError):
    """The worker process running a call exited before answering."""


class PoolClosed(WorkerDied):
    """A call after ``close()``: no worker is started for it (it would outlive the pool)."""


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[int, asyncio.Future] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read_answers())

    async def _read_answers(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                length = int.from_bytes(await stdout.readexactly(LENGTH_BYTES), "big")
                call_id, ok, value = pickle.loads(await stdout.readexactly(length))
                future = self.pending.pop(call_id, None)
                if future is not None and not future.done():
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(WorkerDied("worker process exited"))
            self.pending.clear()

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.reader.done()

    def send(self, call_id: int, function: Callable, args: tuple) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(frame(pickle.dumps((call_id, function, args),
                                                        protocol=pickle.HIGHEST_PROTOCOL)))
        except (ConnectionError, RuntimeError):
            self.pending.pop(call_id, None)
            future.set_exception(WorkerDied("worker process unavailable"))
        return future


class ProcessPool:
    """``await pool.call(function, *args)`` in one of ``workers`` processes."""

    def __init__(self, workers: int, initializer: Callable | None = None, initargs: tuple = ()) -> None:
        self._count = workers
        self._initializer, self._initargs = initializer, initargs
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._next = 0
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive]

    async def start(self) -> None:
        """Start the workers (and their initializer) now rather than at the first call."""
        async with self._lock:
            await self._fill()

    async def _fill(self) -> None:
        if self._closed:
            raise PoolClosed("the pool is closed")
        self._workers = [w for w in self._workers if w.alive]
        started = []
        while len(self._workers) < self._count:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "onehop.procworker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            worker = _Worker(process)
            self._workers.append(worker)
            if self._initializer is not None:
                started.append(worker.send(next(self._ids), self._initializer, self._initargs))
        await asyncio.gather(*started)

    async def call(self, function: Callable, *args: Any) -> Any:
        """``function(*args)`` in a worker: its result, or its exception, or ``WorkerDied``
        (``PoolClosed`` once the pool is closed)."""
        if self._closed:
            raise PoolClosed("the pool is closed")
        if len([w for w in self._workers if w.alive]) < self._count:
            async with self._lock:
                await self._fill()
        live = [w for w in self._workers if w.alive]
        if not live:
            raise WorkerDied("no worker process")
        worker = live[self._next % len(live)]
        self._next += 1
        return await worker.send(next(self._ids), function, args)

    async def close(self) -> None:
        self._closed = True
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 2)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            worker.reader.cancel()
        self._workers.clear()
