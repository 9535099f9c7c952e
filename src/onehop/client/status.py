"""Periodic status requests: ship persistent stats, prune what the server says is gone.

Every 5-10 minutes (5-10 seconds while stats wait to be reported), as Psiphon's client:
the request carries stored ``remote_server_list`` and ``failed_tunnel`` records and a
sample of stored server entry tags to check; tags the server reports invalid are pruned.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from ..core import api
from ..errors import OnehopError
from .dialer import EstablishedTunnel

LONG_PERIOD = (300.0, 600.0)
SHORT_PERIOD = (5.0, 10.0)
CHECK_TAGS = 100


@runtime_checkable
class StatusStore(Protocol):
    """A store that keeps persistent stats and entry tags (the SQLite ``Datastore``; the
    in-memory store of ``--target-server-entry`` does not, and sends no status requests)."""

    def pending_stats(self, limit: int = 100) -> list[tuple[int, str, dict]]: ...

    def delete_stats(self, ids: Iterable[int]) -> None: ...

    def tags(self, limit: int = 1000) -> list[str]: ...

    def prune_tags(self, tags: Iterable[str]) -> int: ...


async def send_status(tunnel: EstablishedTunnel, store: StatusStore, base_params: api.RequestParams) -> int:
    """One status request; returns how many entries were pruned."""
    pending = store.pending_stats()
    status_data = {
        "remote_server_list_stats": [r for _, kind, r in pending if kind == "remote_server_list"],
        "failed_tunnel_stats": [r for _, kind, r in pending if kind == "failed_tunnel"],
        "check_server_entry_tags": store.tags(CHECK_TAGS),
    }
    params = api.StatusParams(**api.base_fields(base_params), status_data=status_data)
    payload = params.encode(packed=tunnel.packed_api)
    raw = await tunnel.client.api_request(api.REQUEST_STATUS, payload)
    response = api.decode_status_response(raw)
    store.delete_stats([row_id for row_id, _, _ in pending])
    return store.prune_tags(response.invalid_server_entry_tags)


MAX_FAILURES_WITH_STATS = 3


async def status_loop(tunnel: EstablishedTunnel, store: StatusStore, base_params: api.RequestParams,
                      rng: random.Random, on_pruned=None) -> None:
    """Runs for the tunnel's lifetime. Stats a server keeps refusing are dropped after
    a few tries rather than re-sent every few seconds."""
    failures = 0
    while True:
        short = store.pending_stats(1) and failures < MAX_FAILURES_WITH_STATS
        await asyncio.sleep(rng.uniform(*(SHORT_PERIOD if short else LONG_PERIOD)))
        try:
            pruned = await send_status(tunnel, store, base_params)
        except OnehopError:
            failures += 1
            if failures == MAX_FAILURES_WITH_STATS:
                store.delete_stats([row_id for row_id, _, _ in store.pending_stats()])
            continue
        failures = 0
        if pruned and on_pruned is not None:
            on_pruned(pruned)
