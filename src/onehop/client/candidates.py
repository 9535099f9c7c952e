"""Where candidates come from, and the order they are tried in.

``CandidateSource`` is what the controller needs from a server-entry store; the SQLite
datastore implements it, ``MemoryStore`` does for lists given on the command line, and
``TargetStore`` puts a target server in front of the datastore.
``order_candidates`` puts the affinity server first and shuffles the rest, as Psiphon.
"""

from __future__ import annotations

import random
from typing import Protocol
from collections.abc import Iterable

from ..core.serverentry import ServerEntry, has_ssh_api_requests
from .dialer import protocols_for


class CandidateSource(Protocol):
    def entries(self) -> list[ServerEntry]: ...

    def affinity(self) -> str | None: ...

    def set_affinity(self, ip_address: str) -> None: ...

    def import_entries(self, entries: Iterable[ServerEntry], source: str) -> int: ...


class MemoryStore:
    """Entries kept in memory, keyed by IP (used for --target-server-entry)."""

    def __init__(self, entries: Iterable[ServerEntry] = ()) -> None:
        self._entries: dict[str, ServerEntry] = {}
        self._affinity: str | None = None
        self.import_entries(entries, "TARGET")

    def entries(self) -> list[ServerEntry]:
        return list(self._entries.values())

    def affinity(self) -> str | None:
        return self._affinity

    def set_affinity(self, ip_address: str) -> None:
        self._affinity = ip_address

    def import_entries(self, entries: Iterable[ServerEntry], source: str) -> int:
        count = 0
        for entry in entries:
            self._entries[entry.ip_address] = entry
            count += 1
        return count


class TargetStore:
    """``--target-server-entry`` as Psiphon's client does it: the target is the only
    candidate and is never stored or promoted, while everything else (the last connected
    time, discovered entries, persistent stats, small state) lives in the datastore, so a
    server counts a returning user once, not on every run."""

    def __init__(self, target: ServerEntry, store) -> None:
        self._target = target
        self._store = store

    def entries(self) -> list[ServerEntry]:
        return [self._target]

    def affinity(self) -> str | None:
        return None

    def set_affinity(self, ip_address: str) -> None:
        pass  # connecting to a target server does not change the ranking

    def __getattr__(self, name: str):
        return getattr(self._store, name)  # import_entries, get/set, stats, tags, close


def usable(entry: ServerEntry, region: str, protocols: tuple[str, ...]) -> bool:
    """The entry can be dialled under the user's region and protocol limits."""
    if region and entry.region != region:
        return False
    return has_ssh_api_requests(entry) and bool(protocols_for(entry, protocols))


def order_candidates(entries: list[ServerEntry], affinity: str | None,
                     rng: random.Random) -> tuple[ServerEntry | None, list[ServerEntry]]:
    """(the affinity entry if present, the others shuffled)."""
    first = next((e for e in entries if e.ip_address == affinity), None)
    rest = [e for e in entries if e is not first]
    rng.shuffle(rest)
    return first, rest


def available_regions(entries: Iterable[ServerEntry]) -> list[str]:
    return sorted({e.region for e in entries if e.region})
