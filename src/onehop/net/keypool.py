"""OSSH key derivation in worker processes, so a burst of handshakes (or probes) cannot
stall the event loop: each preamble costs 2 x 6000 SHA-1 rounds, about 5 ms of pure
Python, which the workers spread over the other cores.

Workers are plain subprocesses (``onehop.net.keyworker``) fed through pipes; they exit
when the pipe closes, so they never outlive the server. If a worker dies, its pending
requests are derived on the event loop instead: slower, never wrong.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys

from ..core.ossh.cipher import derive_key
from ..core.ossh.constants import CLIENT_TO_SERVER_LABEL, SERVER_TO_CLIENT_LABEL
from .keyworker import ANSWER_SIZE, REQUEST_HEAD

log = logging.getLogger(__name__)


def derive_inline(seed: bytes, keyword: bytes) -> tuple[bytes, bytes]:
    return (derive_key(seed, keyword, CLIENT_TO_SERVER_LABEL),
            derive_key(seed, keyword, SERVER_TO_CLIENT_LABEL))


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[bytes, asyncio.Future] = {}
        self.reader = asyncio.get_running_loop().create_task(self._read_answers())

    async def _read_answers(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        try:
            while True:
                answer = await stdout.readexactly(ANSWER_SIZE)
                future = self.pending.pop(answer[:8], None)
                if future is not None and not future.done():
                    future.set_result((answer[8:24], answer[24:40]))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("key worker exited"))
            self.pending.clear()

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.reader.done()


class KeyDeriver:
    """A few worker processes behind one ``derive(seed, keyword)`` coroutine."""

    def __init__(self, workers: int) -> None:
        self._count = workers
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._next = 0

    async def start(self) -> None:
        for _ in range(self._count):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "onehop.net.keyworker",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            self._workers.append(_Worker(process))

    async def derive(self, seed: bytes, keyword: bytes) -> tuple[bytes, bytes]:
        live = [w for w in self._workers if w.alive]
        if not live:
            return derive_inline(seed, keyword)
        worker = live[self._next % len(live)]
        self._next += 1
        request_id = next(self._ids).to_bytes(8, "big")
        future = asyncio.get_running_loop().create_future()
        worker.pending[request_id] = future
        try:
            assert worker.process.stdin is not None
            worker.process.stdin.write(REQUEST_HEAD.pack(request_id, seed, len(keyword)) + keyword)
            return await future
        except (ConnectionError, RuntimeError):
            worker.pending.pop(request_id, None)
            log.warning("key worker unavailable, deriving on the event loop")
            return derive_inline(seed, keyword)

    async def close(self) -> None:
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), 2)
            except asyncio.TimeoutError:
                worker.process.kill()
            worker.reader.cancel()
        self._workers.clear()
