"""Fetching the signed remote server list, even when every known server is blocked.

Fetched when an establishment round finds no candidates or fails, at most once per
stale period after a success (6 hours, as Psiphon), from a URL picked at random among
those allowed at this attempt; through the tunnel when one is up, else directly or via
the upstream proxy. The download resumes, the list is verified as an authenticated
package before anything is imported, and a bad or truncated list never removes a
stored entry. The file is bounded (``max_size``, across resumed attempts) and read in
chunks into a bounded decompressor, off the event loop: it is never held whole.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from datetime import datetime, UTC

from ..core.authpackage import DEFAULT_MAX_SIZE, read_package_chunks
from ..core.serverentry import decode_server_list
from ..errors import OnehopError, TransferError
from ..net.resumable import download
from . import notices as N
from .datastore import Datastore
from .notices import Notices
from .transfer_urls import TransferURL, canonical, pick

log = logging.getLogger(__name__)

STALE_PERIOD = 6 * 3600.0
RETRY_PERIOD = 30.0
FETCH_TIMEOUT = 30.0
LAST_FETCH_KEY = "remote_server_list_last_fetch"
MAX_SIZE = DEFAULT_MAX_SIZE  # the compressed list can never usefully exceed its decompressed bound
READ_CHUNK = 64 * 1024


class RemoteListFetcher:
    def __init__(self, urls: tuple[TransferURL, ...], public_key: str, store: Datastore,
                 notices: Notices, download_dir: str, *, rng: random.Random | None = None,
                 clock=time.time, max_size: int = MAX_SIZE) -> None:
        self.urls = urls
        self.max_size = max_size
        self.public_key = public_key
        self.store = store
        self.notices = notices
        self.path = os.path.join(download_dir, "remote_server_list")
        self._rng = rng or random.Random()
        self._clock = clock
        self._attempt = 0
        self._last_try = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.urls and self.public_key)

    def due(self) -> bool:
        """True when a fetch is allowed now (stale since the last success, not retried too fast)."""
        if not self.enabled:
            return False
        now = self._clock()
        last_success = float(self.store.get(LAST_FETCH_KEY) or 0)
        return now - last_success >= STALE_PERIOD and now - self._last_try >= RETRY_PERIOD

    async def fetch(self, open_socket, tunneled: bool) -> int:
        """One attempt; returns the number of entries imported (0 when unchanged or failed)."""
        self._last_try = self._clock()
        chosen = pick(self.urls, self._attempt, self._rng)
        self._attempt += 1
        if chosen is None:
            return 0
        etag_key = f"remote_server_list_etag:{canonical(self.urls).url}"
        started = time.monotonic()
        self.notices.info("remote server list download started", url=chosen.url)  # the UI's progress
        try:
            result = await download(chosen.url, self.path, open_socket, if_none_match=self.store.get(etag_key),
                                    timeout=FETCH_TIMEOUT, verify_tls=not chosen.skip_verify,
                                    max_size=self.max_size)
        except OnehopError as exc:
            self.notices.info("remote server list download failed", url=chosen.url, error=str(exc))
            return 0
        if result.not_modified:
            self.store.set(LAST_FETCH_KEY, str(self._clock()))
            return 0
        imported = await self._verify_and_import(chosen.url, tunneled)
        if imported is None:
            return 0
        if result.etag:
            self.store.set(etag_key, result.etag)  # only after a verified import
        self.store.set(LAST_FETCH_KEY, str(self._clock()))
        self.store.add_stat("remote_server_list", {
            "client_download_timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:00:00Z"),
            "url": chosen.url, "etag": result.etag or "", "bytes": str(result.bytes_received),
            "duration": str(int((time.monotonic() - started) * 1000)),
            "tunneled": "1" if tunneled else "0", "authenticated": "1"})
        self.notices.emit(N.REMOTE_SERVER_LIST_DOWNLOADED, url=chosen.url, imported=imported)
        return imported

    async def _verify_and_import(self, url: str, tunneled: bool) -> int | None:
        try:
            data = await asyncio.to_thread(self._read_verified)
        except (OnehopError, OSError) as exc:
            self.notices.alert("remote server list rejected: stored servers kept", url=url, error=str(exc))
            _remove(self.path)
            return None
        entries, errors = decode_server_list(data)
        if errors:
            self.notices.info("remote server list had invalid entries", invalid=len(errors))
        return self.store.import_entries(entries, "REMOTE")

    def _read_verified(self) -> str:
        return read_package_chunks(_chunks(self.path, self.max_size), self.public_key, compression="zlib",
                                   max_size=max(self.max_size, MAX_SIZE))


def _chunks(path: str, limit: int):
    """The file in bounded pieces; refused outright when it is over ``limit``."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise TransferError(f"remote server list is {size} bytes, over the {limit}-byte limit",
                                retryable=False)
        while chunk := f.read(min(READ_CHUNK, limit)):
            yield chunk


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
