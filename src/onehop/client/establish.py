"""One establishment round: many dials at once, the first complete tunnel wins.

A pool of workers takes candidates in order. The affinity server (the last good one)
gets a short head start. The first dial to finish SSH *and* the API handshake wins;
every other dial is cancelled at once and any tunnel that completes in the meantime is
closed, so no socket or task outlives the round.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

import asyncssh

from ..core.serverentry import ServerEntry
from ..errors import OnehopError
from . import notices as N
from .dialer import EstablishedTunnel, protocols_for
from .notices import Notices

log = logging.getLogger(__name__)

DialFunction = Callable[[ServerEntry, str, int], Awaitable[EstablishedTunnel]]


@dataclass
class RoundResult:
    tunnel: EstablishedTunnel | None
    attempted: int
    failures: list[tuple[str, str, str]]  # (diagnostic id, protocol, error)


class EstablishmentRound:
    def __init__(self, dial: DialFunction, notices: Notices, *, workers: int,
                 protocols: tuple[str, ...], affinity_grace: float, rng: random.Random) -> None:
        self._dial = dial
        self._notices = notices
        self._workers = max(1, workers)
        self._protocols = protocols
        self._grace = affinity_grace
        self._rng = rng
        self._winner: asyncio.Future[EstablishedTunnel] | None = None
        self.failures: list[tuple[str, str, str]] = []
        self.attempted = 0

    async def run(self, first: ServerEntry | None, rest: list[ServerEntry],
                  work_time: float) -> RoundResult:
        loop = asyncio.get_running_loop()
        self._winner = loop.create_future()
        queue: asyncio.Queue[tuple[int, ServerEntry]] = asyncio.Queue()
        number = 0
        affinity_task = None
        if first is not None:
            affinity_task = loop.create_task(self._attempt(number, first))
            number += 1
        for entry in rest:
            queue.put_nowait((number, entry))
            number += 1
        workers: list[asyncio.Task] = []
        try:
            if affinity_task is not None:
                await asyncio.wait([affinity_task, self._winner], timeout=self._grace,
                                   return_when=asyncio.FIRST_COMPLETED)
            workers = [loop.create_task(self._worker(queue)) for _ in range(self._workers)]
            all_done = loop.create_task(self._all_done(workers, affinity_task))
            await asyncio.wait([self._winner, all_done], timeout=work_time,
                               return_when=asyncio.FIRST_COMPLETED)
            all_done.cancel()
        finally:
            await self._cancel([*workers, *([affinity_task] if affinity_task else [])])
        winner = self._winner.result() if self._winner.done() and not self._winner.cancelled() else None
        return RoundResult(winner, self.attempted, self.failures)

    @staticmethod
    async def _all_done(workers: list[asyncio.Task], affinity: asyncio.Task | None) -> None:
        await asyncio.gather(*workers, *([affinity] if affinity else []), return_exceptions=True)

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _worker(self, queue: asyncio.Queue) -> None:
        assert self._winner is not None
        while not self._winner.done() and not queue.empty():
            number, entry = queue.get_nowait()
            await self._attempt(number, entry)

    async def _attempt(self, number: int, entry: ServerEntry) -> None:
        assert self._winner is not None
        protocols = protocols_for(entry, self._protocols)
        if not protocols or self._winner.done():
            return
        protocol = self._rng.choice(protocols)
        self.attempted += 1
        self._notices.emit(N.CONNECTING_SERVER, diagnosticID=entry.diagnostic_id,
                           region=entry.region, protocol=protocol, candidateNumber=number)
        try:
            tunnel = await self._dial(entry, protocol, number)
        except asyncio.CancelledError:
            raise
        except (OnehopError, asyncssh.Error, OSError, EOFError) as exc:
            self._failed(entry, protocol, str(exc) or type(exc).__name__)
            return
        except Exception as exc:  # a bug must not hide as a silent failed dial
            log.exception("unexpected error dialing %s", entry.diagnostic_id)
            self._failed(entry, protocol, f"internal error: {type(exc).__name__}: {exc}")
            return
        if self._winner.done():
            tunnel.client.close()  # lost the race: never keep a second tunnel
            return
        self._winner.set_result(tunnel)

    def _failed(self, entry: ServerEntry, protocol: str, error: str) -> None:
        self.failures.append((entry.diagnostic_id, protocol, error))
        self._notices.info("server connection failed", diagnosticID=entry.diagnostic_id,
                           protocol=protocol, error=error)
