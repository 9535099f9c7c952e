"""OSSH key derivation in worker processes (``onehop.procpool``), so a burst of
handshakes (or probes) cannot stall the event loop: each preamble costs 2 x 6000 SHA-1
rounds, about 5 ms of pure Python, which the workers spread over the other cores.

If a worker dies, its pending requests are derived on the event loop instead (slower,
never wrong) and the pool starts a new worker at the next request.
"""

from __future__ import annotations

import logging

from ..core.ossh.cipher import derive_key
from ..core.ossh.constants import CLIENT_TO_SERVER_LABEL, SERVER_TO_CLIENT_LABEL
from ..procpool import PoolClosed, ProcessPool

log = logging.getLogger(__name__)


def derive_inline(seed: bytes, keyword: bytes) -> tuple[bytes, bytes]:
    return (derive_key(seed, keyword, CLIENT_TO_SERVER_LABEL),
            derive_key(seed, keyword, SERVER_TO_CLIENT_LABEL))


class KeyDeriver:
    """A few worker processes behind one ``derive(seed, keyword)`` coroutine."""

    def __init__(self, workers: int) -> None:
        self._pool = ProcessPool(workers)

    async def start(self) -> None:
        await self._pool.start()

    async def derive(self, seed: bytes, keyword: bytes) -> tuple[bytes, bytes]:
        try:
            return await self._pool.call(derive_inline, seed, keyword)
        except PoolClosed:  # the server is stopping: a handshake still in flight is derived here
            return derive_inline(seed, keyword)
        except (ConnectionError, OSError):  # WorkerDied, or no new worker could start
            log.warning("key worker unavailable, deriving on the event loop")
            return derive_inline(seed, keyword)

    async def close(self) -> None:
        await self._pool.close()
