"""Downloading an upgrade file from Psiphon's ``UpgradeDownloadURLs``, resumably.

Each attempt picks a URL allowed at that attempt number (mirrors carry
``OnlyAfterAttempts`` > 0), takes the way out that ``get_opener()`` gives at that
moment (the tunnel when one is up, else direct or the upstream proxy), and continues
the ``.part`` file with Range + If-Match (``onehop.net.resumable``): a cut connection
keeps what arrived, a changed ETag (412) starts over. No If-None-Match: as Psiphon,
upgrade ETags are not remembered. Once the complete file exists nothing is fetched
again, until the caller removes it (after a failed verification, for instance).
``FetchPolicy.max_size`` bounds the file across all attempts (a mirror that keeps
"resuming" is cut off at the limit), and a leftover file over it is fetched afresh.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...errors import OnehopError, TransferError
from ...net.http_client import request
from ...net.resumable import DEFAULT_MAX_SIZE, download
from ..transfer_urls import TransferURL, pick
from .package import UPGRADE_SUFFIX, delta_name

POLL_INTERVAL = 0.2


@dataclass(frozen=True)
class FetchPolicy:
    max_attempts: int = 5
    retry_delay: float = 30.0     # Psiphon: 30 s between attempts
    timeout: float = 60.0         # Psiphon: 60 s per attempt
    delta_attempts: int = 2
    max_size: int = DEFAULT_MAX_SIZE  # bytes of one downloaded file, however many attempts


DEFAULT_POLICY = FetchPolicy()


@dataclass(frozen=True)
class Fetched:
    path: str
    url: str
    bytes_received: int
    size: int


def file_name(url: str) -> str:
    """The last path segment of a URL ('upgrade' when there is none)."""
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    return name or "upgrade"


def delta_url(url: str, from_version: str, to_version: str) -> str | None:
    """The delta next to a ``.upgrade`` URL on the same mirror, or None."""
    parts = urlsplit(url)
    head, _, name = parts.path.rpartition("/")
    if not name.endswith(UPGRADE_SUFFIX):
        return None
    path = f"{head}/{delta_name(name, from_version, to_version)}"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class Downloader:
    def __init__(self, urls: Sequence[TransferURL], directory: str, get_opener: Callable[[], Any], *,
                 policy: FetchPolicy = DEFAULT_POLICY, rng: random.Random | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, progress=None) -> None:
        self.urls, self.directory, self.get_opener = tuple(urls), directory, get_opener
        self.policy, self.rng, self.sleep, self.progress = policy, rng or random.Random(), sleep, progress

    async def fetch(self, filename: str, url_for: Callable[[TransferURL], str | None] = lambda t: t.url, *,
                    attempts: int | None = None, final_statuses: frozenset[int] = frozenset()) -> Fetched:
        """Download to ``<directory>/<filename>``; TransferError once attempts run out.

        A status in ``final_statuses`` (404 for an optional delta) ends at once.
        """
        path = os.path.join(self.directory, filename)
        os.makedirs(self.directory, mode=0o700, exist_ok=True)  # beside the client's private datastore
        if os.path.exists(path):
            if os.path.getsize(path) <= self.policy.max_size:
                return Fetched(path, "", 0, os.path.getsize(path))
            os.remove(path)  # never read into memory: fetch a fresh copy within the limit
        last: TransferError | None = None
        for attempt in range(attempts or self.policy.max_attempts):
            chosen = pick(self.urls, attempt, self.rng)
            url = url_for(chosen) if chosen is not None else None
            if chosen is None or url is None:
                raise TransferError(f"no download URL for {filename}", retryable=False)
            if attempt:
                await self.sleep(self.policy.retry_delay)
            try:
                received = await self._attempt(url, path, chosen)
                return Fetched(path, url, received, os.path.getsize(path))
            except TransferError as exc:
                last = exc  # another attempt may pick another mirror, so even a 404 is retried
                if exc.status in final_statuses:
                    raise
            except OnehopError as exc:  # the way out failed (proxy refused, tunnel gone)
                last = TransferError(f"GET {url}: {exc}")
        assert last is not None
        raise last

    async def _attempt(self, url: str, path: str, chosen: TransferURL) -> int:
        opener = self.get_opener()
        verify = not chosen.skip_verify
        poller = None
        if self.progress is not None:
            total = await self._total(url, opener, verify) if self.progress.wants_total else None
            part = path + ".part"
            self.progress.start(os.path.basename(path), total, _size(part))
            poller = asyncio.get_running_loop().create_task(self._poll(part))
        try:
            result = await download(url, path, opener, timeout=self.policy.timeout, verify_tls=verify,
                                    max_size=self.policy.max_size)
        finally:
            if poller is not None:
                poller.cancel()
                self.progress.finish()
        return result.bytes_received

    async def _total(self, url: str, opener, verify: bool) -> int | None:
        try:
            head, _ = await request("HEAD", url, opener, headers={"User-Agent": "onehop"},
                                    timeout=min(10.0, self.policy.timeout), verify_tls=verify)
            length = head.header("content-length")
            return int(length) if head.status == 200 and length and length.isdigit() else None
        except OnehopError:
            return None

    async def _poll(self, part: str) -> None:
        while True:
            self.progress.update(_size(part))
            await asyncio.sleep(POLL_INTERVAL)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
