"""Delivering the outbox through the relay (aiosmtplib).

Due replies are grouped by request and shared among up to ``relay_connections``
connections; a request's replies go in order over one connection. For each reply: render
and DKIM-sign it (``renderer``: a worker process; the next reply is rendered while this
one travels), hand it to the relay, and as soon as the relay says 250 delete the row in
its own transaction. Failures:

* relay unreachable or the connection drops: the batch stops, nothing is marked, and
  the task waits 1, 2, 4 ... seconds (``relay_backoff_max``) before trying again;
* the relay answers 4xx for a reply: that reply waits ``retry_initial`` doubling up to
  ``retry_max``; 5xx: the same, and after ``max_refusals`` 5xx answers it is dropped;
* a reply older than ``queue_lifetime`` is dropped (privacy: the requester's address
  must not sit on disk for ever).

Exactly once: the Message-ID was fixed when the reply was queued. The remaining window is
between the relay's 250 and our commit (one SQLite transaction) or a connection lost
while the 250 is on its way; a crash there resends the same message with the same
Message-ID after the restart (providers that de-duplicate by Message-ID show it once).
Relay answers are logged by code only: their text may quote the requester's address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import aiosmtplib

from ..errors import MailReason, OnehopError
from .options import RunOptions
from .renderer import Renderer, RendererCrashed
from .store import AsyncStore, OutboxRow, StoreError

log = logging.getLogger("onehop.mail")

BATCH = 50


class RelayUnavailable(OnehopError):
    """The relay could not be reached or dropped the connection."""


class Sender:
    def __init__(self, *, options: RunOptions, renderer: Renderer, store: AsyncStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.options = options
        self.renderer = renderer
        self.store = store
        self.clock = clock
        self.delivered = 0
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._last_housekeeping = 0.0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the reply in hand, then return from ``run``."""
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = self.options.relay_backoff_initial
        while not self._stop.is_set():
            try:
                delivered = await self._round()
            except RelayUnavailable as exc:
                log.warning("relay %s:%d unavailable (%s); next try in %.1fs", *self.options.relay, exc, backoff)
            except (StoreError, RendererCrashed) as exc:  # rows stay where they are: try again later
                log.error("cannot deliver now (%s); next try in %.1fs", exc, backoff)
            else:
                if delivered:
                    backoff = self.options.relay_backoff_initial
                continue
            await self._pause(backoff)
            backoff = min(backoff * 2, self.options.relay_backoff_max)

    async def _round(self) -> bool:
        """Deliver what is due, or wait for work; True if a batch went through."""
        await self._housekeeping()
        self._wake.clear()  # before looking: a request queued after this wakes us
        rows = await self.store.run(self.store.store.due, self.clock(), BATCH)
        if not rows:
            await self._idle()
            return False
        await self._deliver_batch(rows)
        return True

    async def _idle(self) -> None:
        next_due = await self.store.run(self.store.store.next_due)
        timeout = self.options.housekeeping_interval
        if next_due is not None:
            timeout = min(timeout, max(0.0, next_due - self.clock()))
        await _wait(self._wake, timeout)

    async def _pause(self, seconds: float) -> None:
        """Wait out a relay backoff; new requests do not shorten it, stopping does."""
        await _wait(self._stop, seconds)

    async def _housekeeping(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_housekeeping < self.options.housekeeping_interval:
            return
        self._last_housekeeping = now
        s = self.store.store
        for row in await self.store.run(s.expired, now, self.options.queue_lifetime):
            await self.store.run(s.drop, row, MailReason.EXPIRED, now)
            log.warning("dropped an undelivered %s reply for %s: older than %.0fs", row.kind, row.address,
                        self.options.queue_lifetime)
        await self.store.run(s.purge_senders, now)
        await self.store.run(s.flush)
        await self.store.run(s.scrub, True)

    async def _deliver_batch(self, rows: list[OutboxRow]) -> None:
        """Up to ``relay_connections`` connections take requests (their replies in order)
        from one queue; if one finds the relay unavailable the others finish theirs."""
        groups = deque(_by_request(rows))
        workers = min(self.options.relay_connections, len(groups))
        results = await asyncio.gather(*(self._connection(groups) for _ in range(workers)),
                                       return_exceptions=True)
        await self.store.run(self.store.store.scrub)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, RelayUnavailable):
                raise result
        unavailable = [r for r in results if isinstance(r, RelayUnavailable)]
        if unavailable:
            raise unavailable[0]

    async def _connection(self, groups: deque[list[OutboxRow]]) -> None:
        host, port = self.options.relay
        smtp = aiosmtplib.SMTP(hostname=host, port=port, timeout=self.options.relay_timeout,
                               start_tls=False, local_hostname=self.options.hostname)
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise RelayUnavailable(_describe(exc)) from None
        try:
            while groups and not self._stop.is_set():
                await self._deliver_group(smtp, groups.popleft())
        finally:
            await _close(smtp)

    def _start_build(self, row: OutboxRow) -> asyncio.Future:
        return self.renderer.submit(row.spec)

    async def _deliver_group(self, smtp: aiosmtplib.SMTP, rows: list[OutboxRow]) -> None:
        builds = [self._start_build(rows[0])]
        try:
            for i, row in enumerate(rows):
                if i + 1 < len(rows):  # render the next reply while this one travels
                    builds.append(self._start_build(rows[i + 1]))
                await self._deliver(smtp, row, builds[i])
        finally:
            for build in builds:
                build.cancel()
            await asyncio.gather(*builds, return_exceptions=True)

    async def _deliver(self, smtp: aiosmtplib.SMTP, row: OutboxRow, build: asyncio.Future) -> None:
        try:
            spec, message = await self.renderer.result(build)
        except (StoreError, ValueError, KeyError, TypeError) as exc:
            await self.store.run(self.store.store.drop, row, MailReason.UNRENDERABLE, self.clock())
            log.error("dropped a %s reply for %s that cannot be rendered: %s", row.kind, row.address, exc)
            return
        try:
            await smtp.sendmail("", [spec.to], message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            await self._refused(row, exc.recipients[0].code if exc.recipients else 550)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError,
                aiosmtplib.SMTPTimeoutError, OSError, TimeoutError) as exc:
            raise RelayUnavailable(_describe(exc)) from None
        except aiosmtplib.SMTPResponseException as exc:
            await self._refused(row, exc.code)
        except ValueError:  # aiosmtplib refused the address itself
            await self.store.run(self.store.store.drop, row, MailReason.BAD_ADDRESS, self.clock())
        else:
            await self.store.run(self.store.store.mark_sent, row, self.clock())  # the window
            self.delivered += 1
            log.info("delivered the %s reply for a request to %s (%s)", row.kind, row.address, spec.language)

    async def _refused(self, row: OutboxRow, code: int) -> None:
        now = self.clock()
        refusals = row.attempts + 1
        if code >= 500 and refusals >= self.options.max_refusals:
            await self.store.run(self.store.store.drop, row, MailReason.RELAY_REFUSED, now)
            log.warning("dropped a %s reply for %s: the relay refused it %d times (last %d)",
                        row.kind, row.address, refusals, code)
            return
        delay = min(self.options.retry_max, self.options.retry_initial * 2 ** row.attempts)
        await self.store.run(self.store.store.defer, row, now + delay, f"relay answered {code}")
        log.warning("the relay answered %d for a %s reply for %s; retrying in %.0fs", code, row.kind,
                    row.address, delay)

    async def flush(self) -> None:
        """Final housekeeping before the store closes."""
        await self._housekeeping(force=True)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass


def _by_request(rows: list[OutboxRow]) -> list[list[OutboxRow]]:
    """Consecutive rows queued together for one address: the replies to one request."""
    groups: list[list[OutboxRow]] = []
    for row in rows:
        if groups and (groups[-1][-1].queued_at, groups[-1][-1].address) == (row.queued_at, row.address) \
                and groups[-1][-1].id + 1 == row.id:
            groups[-1].append(row)
        else:
            groups.append([row])
    return groups


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}" + (f" {code}" if code else "")


async def _close(smtp: aiosmtplib.SMTP) -> None:
    try:
        if smtp.is_connected:
            await smtp.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        smtp.close()
