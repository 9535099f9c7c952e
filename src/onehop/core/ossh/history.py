"""Seed-replay history: a replayed OSSH seed message is a probe, not a client.

Only seeds whose magic value validated are recorded, so garbage cannot fill the
history. Entries live 24 hours; memory is bounded by ``capacity`` (oldest evicted
first). Time is a parameter: the caller passes ``now`` in seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

DEFAULT_TTL_SECONDS = 24 * 60 * 60
DEFAULT_CAPACITY = 1_000_000


class ReplayHistory(Protocol):
    """What the OSSH listener needs of a replay history (this module's, or one shared
    between a server's worker processes)."""

    def add_new(self, seed: bytes, now: float) -> bool: ...


class SeedHistory:
    """Remembers recently seen seeds; ``add_new`` says whether a seed is fresh."""

    def __init__(self, ttl_seconds: float = DEFAULT_TTL_SECONDS,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.ttl_seconds = ttl_seconds
        self.capacity = capacity
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # seed -> first seen, oldest first

    def __len__(self) -> int:
        return len(self._seen)

    def add_new(self, seed: bytes, now: float) -> bool:
        """Record ``seed``; True if it was not seen within the TTL, False for a replay."""
        self._expire(now)
        key = bytes(seed)
        if key in self._seen:
            return False
        self._seen[key] = now
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        cutoff = now - self.ttl_seconds
        seen = self._seen
        while seen:
            oldest_time = next(iter(seen.values()))
            if oldest_time > cutoff:
                break
            seen.popitem(last=False)
