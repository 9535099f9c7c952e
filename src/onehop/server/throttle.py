"""Rate limits: a token bucket per client and direction, applied by pausing reads.

Psiphon's RateLimits give each direction an unthrottled allowance (bytes since the
tunnel started) and then a rate in bytes per second (0 = unlimited). ``TokenBucket``
does the accounting: ``consume(n)`` charges bytes that were already read and says how
long the reader must pause so the average stays within the rate; the balance may go
into debt, so a reader never holds data back, it stops reading (the peer's TCP window
or the SSH channel window does the rest). ``PausableReader`` applies that delay to one
transport alongside any other reason to pause it (flow control).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..net.bulkreads import THROTTLED_READ_SIZE, read_in_chunks_of

#: Seconds of traffic the bucket may save up while a reader is idle.
BURST_SECONDS = 0.1


class TokenBucket:
    def __init__(self, rate: int = 0, unthrottled: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.total = 0
        self.rate = 0
        self.unthrottled = 0
        self._tokens = 0.0
        self._last = clock()
        self.configure(rate, unthrottled)

    @property
    def limited(self) -> bool:
        return self.rate > 0

    @property
    def allowance_exhausted(self) -> bool:
        return self.total >= self.unthrottled

    def configure(self, rate: int, unthrottled: int) -> None:
        """New limits (rules re-selected); the allowance counts from the tunnel's start."""
        if rate != self.rate:
            self._refill()
            was_unlimited, self.rate = self.rate <= 0, max(0, rate)
            self._tokens = self._burst() if was_unlimited else min(self._tokens, self._burst())
        self.unthrottled = max(0, unthrottled)

    def _burst(self) -> float:
        return self.rate * BURST_SECONDS

    def _refill(self) -> None:
        now = self._clock()
        if self.rate > 0:
            self._tokens = min(self._burst(), self._tokens + (now - self._last) * self.rate)
        self._last = now

    def consume(self, n: int) -> float:
        """Charge ``n`` bytes; the seconds to pause before reading more (0: go on)."""
        before, self.total = self.total, self.total + n
        if self.rate <= 0:
            return 0.0
        charged = n - max(0, min(n, self.unthrottled - before))
        if charged <= 0:
            return 0.0
        self._refill()
        self._tokens -= charged
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class PausableReader:
    """Pauses a transport for throttling without undoing a flow-control pause."""

    __slots__ = ("_flow_paused", "_reads_small", "_throttle_timer", "_transport")

    def __init__(self) -> None:
        self._transport: asyncio.BaseTransport | None = None
        self._flow_paused = False
        self._reads_small = False
        self._throttle_timer: asyncio.TimerHandle | None = None

    def attach(self, transport: asyncio.BaseTransport | None) -> None:
        self._transport = transport

    def _apply(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._flow_paused or self._throttle_timer is not None:
            transport.pause_reading()  # type: ignore[attr-defined]
        else:
            transport.resume_reading()  # type: ignore[attr-defined]

    def flow_pause(self) -> None:
        self._flow_paused = True
        self._apply()

    def flow_resume(self) -> None:
        self._flow_paused = False
        self._apply()

    def throttle(self, delay: float) -> None:
        """Stop reading for ``delay`` seconds (extending a pause already running)."""
        if delay <= 0:
            return
        self.read_small()
        if self._throttle_timer is not None:
            self._throttle_timer.cancel()
        self._throttle_timer = asyncio.get_running_loop().call_later(delay, self._throttle_done)
        self._apply()

    def read_small(self) -> None:
        """Read THROTTLED_READ_SIZE at a time from now on: a limit charges a read after it,
        so the read size is the burst it lets through (a read of up to 1 MiB before the
        first pause would let a whole transfer pass unpaid)."""
        if not self._reads_small:
            self._reads_small = True
            read_in_chunks_of(self._transport, THROTTLED_READ_SIZE)

    def _throttle_done(self) -> None:
        self._throttle_timer = None
        self._apply()

    def close(self) -> None:
        if self._throttle_timer is not None:
            self._throttle_timer.cancel()
            self._throttle_timer = None
        self._transport = None
