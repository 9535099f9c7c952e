"""An asyncio event loop on a virtual clock, for unit tests of timers (deadlines,
lingers, write delays) without waiting for them.

``VirtualTimeLoop.time()`` starts at 0 and moves only when the loop would otherwise wait:
then it jumps straight to the next timer. Everything that is ready (callbacks, real file
descriptors such as the loop's self-pipe) still runs first, so the order of events is
the order a real loop gives, and ``asyncio.sleep(30)`` takes no real time. A loop with
nothing scheduled and nothing ready would wait for ever; it raises instead.

``run_in_virtual_time`` turns an ``async def`` test into a plain one run on this loop; it
fails the test if the loop reported an error (an exception in a callback or a task
nobody awaited), which a plain loop would only log.
"""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

#: How long (real seconds) an idle loop waits for a real file descriptor before it gives up.
IDLE_LIMIT = 5.0


class _JumpingSelector(selectors.BaseSelector):
    """A real selector that, instead of blocking for ``timeout``, advances the clock."""

    def __init__(self, clock: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._clock = clock

    def register(self, fileobj, events, data=None):
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._real.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._real.modify(fileobj, events, data)

    def get_map(self):
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()

    def select(self, timeout=None):
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only a real descriptor can wake us
            ready = self._real.select(IDLE_LIMIT)
            if not ready:
                raise RuntimeError("virtual-time loop idle: nothing scheduled and nothing ready")
            return ready
        self._clock.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


def run_in_virtual_time(test: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Decorate an ``async def`` test (fixtures still work) to run it on a VirtualTimeLoop."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        reported: list[dict] = []
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            runner.get_loop().set_exception_handler(lambda loop, context: reported.append(context))
            result = runner.run(test(*args, **kwargs))
        assert not reported, f"the event loop reported: {reported}"
        return result

    return run
