"""Closing what has been idle too long, with one timer that re-arms itself lazily."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

#: When the timeout is 0 (no limit), look again this much later: the rules may change.
RECHECK_WITHOUT_LIMIT = 60.0


class IdleTimer:
    """Calls ``on_idle`` once nothing called ``touch`` for ``timeout()`` seconds.

    ``touch`` only records the time; the timer fires at the earliest possible expiry
    and re-arms for the remainder, so busy relays cost one timer per timeout period.
    """

    __slots__ = ("_loop", "_on_idle", "_timeout", "_timer", "last_activity")

    def __init__(self, timeout: Callable[[], float], on_idle: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._on_idle = on_idle
        self._timer: asyncio.TimerHandle | None = None
        self.last_activity = self._loop.time()

    def start(self) -> None:
        self._arm(self._timeout())

    def touch(self) -> None:
        self.last_activity = self._loop.time()

    def _arm(self, after: float) -> None:
        self._timer = self._loop.call_later(after if after > 0 else RECHECK_WITHOUT_LIMIT, self._check)

    def _check(self) -> None:
        self._timer = None
        timeout = self._timeout()
        if timeout <= 0:
            self._arm(0)
            return
        idle = self._loop.time() - self.last_activity
        if idle >= timeout:
            self._on_idle()
        else:
            self._arm(timeout - idle)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
