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
from typing import Any
from collections.abc import Awaitable, Callable

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
    """Dials candidates with ``workers`` active slots.

    A dial that has not finished after ``stall_release`` seconds (a blackhole that
    accepted and never answered, or a slow server) gives its slot to the next candidate
    and keeps going in the background until its own timeout; at most ``max_dials``
    dials are open at once. This keeps a list full of blackholes from stalling a round.
    """

    def __init__(self, dial: DialFunction, notices: Notices, *, workers: int,
                 protocols: tuple[str, ...], affinity_grace: float, rng: random.Random,
                 stall_release: float = 1.0, max_dials: int | None = None,
                 on_failure: Callable[[ServerEntry, str, BaseException], None] | None = None) -> None:
        self._dial = dial
        self._notices = notices
        self._workers = max(1, workers)
        self._protocols = protocols
        self._grace = affinity_grace
        self._rng = rng
        self._stall_release = stall_release
        self._max_dials = max_dials or self._workers * 4
        self._on_failure = on_failure
        self._winner: asyncio.Future[EstablishedTunnel] | None = None
        self._tasks: set[asyncio.Task] = set()
        self.failures: list[tuple[str, str, str]] = []
        self.attempted = 0

    async def run(self, first: ServerEntry | None, rest: list[ServerEntry],
                  work_time: float) -> RoundResult:
        """Dial until one tunnel wins, every candidate failed, or ``work_time`` passed."""
        loop = asyncio.get_running_loop()
        self._winner = loop.create_future()
        dispatcher = loop.create_task(self._dispatch(first, rest))
        exhausted = loop.create_task(self._exhausted(dispatcher))
        waited: list[asyncio.Future[Any]] = [self._winner, exhausted]  # a tunnel, or None when all failed
        try:
            await asyncio.wait(waited, timeout=work_time,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self._cancel([exhausted, dispatcher, *self._tasks])
        winner = self._winner.result() if self._winner.done() and not self._winner.cancelled() else None
        return RoundResult(winner, self.attempted, self.failures)

    async def _exhausted(self, dispatcher: asyncio.Task) -> None:
        await dispatcher
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(pending)

    async def _dispatch(self, first: ServerEntry | None, rest: list[ServerEntry]) -> None:
        assert self._winner is not None
        slots = asyncio.Semaphore(self._workers)
        dials = asyncio.Semaphore(self._max_dials)
        number = 0
        if first is not None:
            task = await self._start(slots, dials, number, first)
            number += 1
            await asyncio.wait([task, self._winner], timeout=self._grace,
                               return_when=asyncio.FIRST_COMPLETED)
        for entry in rest:
            if self._winner.done():
                return
            await self._start(slots, dials, number, entry)
            number += 1

    async def _start(self, slots, dials, number: int, entry: ServerEntry) -> asyncio.Task:
        await slots.acquire()
        await dials.acquire()
        loop = asyncio.get_running_loop()
        released = False

        def release_slot() -> None:
            nonlocal released
            if not released:
                released = True
                slots.release()

        timer = loop.call_later(self._stall_release, release_slot)

        async def attempt() -> None:
            try:
                await self._attempt(number, entry)
            finally:
                timer.cancel()
                release_slot()
                dials.release()

        task = loop.create_task(attempt())
        self._tasks.add(task)
        return task

    @staticmethod
    async def _cancel(tasks) -> None:
        tasks = list(tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

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
            self._failed(entry, protocol, exc, str(exc) or type(exc).__name__)
            return
        except Exception as exc:  # a bug must not hide as a silent failed dial
            log.exception("unexpected error dialing %s", entry.diagnostic_id)
            self._failed(entry, protocol, exc, f"internal error: {type(exc).__name__}: {exc}")
            return
        if self._winner.done():
            tunnel.client.close()  # lost the race: never keep a second tunnel
            return
        self._winner.set_result(tunnel)

    def _failed(self, entry: ServerEntry, protocol: str, exc: BaseException, error: str) -> None:
        self.failures.append((entry.diagnostic_id, protocol, error))
        self._notices.info("server connection failed", diagnosticID=entry.diagnostic_id,
                           protocol=protocol, error=error)
        if self._on_failure is not None:
            self._on_failure(entry, protocol, exc)
