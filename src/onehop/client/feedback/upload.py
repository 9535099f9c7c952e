"""Uploading pending feedback: HTTP PUT, retried with a random backoff, as Psiphon does.

Each round tries every pending package once, each through the way out that
``get_opener()`` returns *at that moment* (the tunnel when one is up, else direct or
the upstream proxy), to a URL picked among those allowed at this attempt and
encrypted to the same key. A package is removed only after a 200. Between rounds the
uploader sleeps a random time in ``backoff`` (Psiphon: 1-5 minutes); after
``max_attempts`` rounds what is left stays on disk for the next start.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import OnehopError, TransferError
from ...net.http_client import request
from .queue import FeedbackQueue, PendingFeedback
from .targets import UploadTarget, choose, upload_url

MAX_ATTEMPTS = 5
BACKOFF = (60.0, 300.0)
ATTEMPT_TIMEOUT = 30.0


@dataclass(frozen=True)
class UploadReport:
    uploaded: tuple[str, ...]
    pending: tuple[str, ...]
    attempts: int
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class UploadPolicy:
    max_attempts: int = MAX_ATTEMPTS
    backoff: tuple[float, float] = BACKOFF
    timeout: float = ATTEMPT_TIMEOUT
    upload_path: str = ""


DEFAULT_POLICY = UploadPolicy()


async def put_once(item: PendingFeedback, target: UploadTarget, open_socket, policy: UploadPolicy) -> None:
    """One PUT; TransferError (or another OnehopError) unless the server said 200."""
    url = upload_url(target.url, policy.upload_path, item.upload_id)
    headers = {"User-Agent": "onehop", "Content-Type": "application/json", **dict(target.headers)}
    head, _ = await request("PUT", url, open_socket, headers=headers, body=item.blob,
                            timeout=policy.timeout, verify_tls=not target.skip_verify, max_body=64 * 1024)
    if head.status != 200:
        raise TransferError(f"PUT {url}: HTTP {head.status}", status=head.status)


async def upload_pending(queue: FeedbackQueue, targets: Sequence[UploadTarget],
                         get_opener: Callable[[], Any], *, policy: UploadPolicy = DEFAULT_POLICY,
                         rng: random.Random | None = None,
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                         on_event: Callable[[str, dict], None] | None = None) -> UploadReport:
    """Upload everything pending; returns what went and what stays."""
    rng = rng or random.Random()
    uploaded: list[str] = []
    errors: list[str] = []
    attempt = 0
    while attempt < policy.max_attempts:
        left = queue.pending()
        if not left:
            break
        if attempt:
            await sleep(rng.uniform(*policy.backoff))
        for item in left:
            error = await _try(item, targets, get_opener(), policy, attempt, rng)
            if error is None:
                queue.remove(item)
                uploaded.append(item.upload_id)
                _event(on_event, "uploaded", uploadId=item.upload_id, attempt=attempt + 1)
            else:
                errors.append(error)
                _event(on_event, "failed", uploadId=item.upload_id, attempt=attempt + 1, error=error)
        attempt += 1
    remaining = tuple(p.upload_id for p in queue.pending())
    return UploadReport(tuple(uploaded), remaining, attempt, tuple(errors))


async def _try(item: PendingFeedback, targets, opener, policy: UploadPolicy, attempt: int,
               rng: random.Random) -> str | None:
    target = choose(targets, item.key_digest, attempt, rng)
    if target is None:
        return f"{item.upload_id}: no upload URL takes packages encrypted to this key"
    try:
        await put_once(item, target, opener, policy)
    except OnehopError as exc:
        return f"{item.upload_id}: {exc}"
    return None


def _event(callback, kind: str, **data) -> None:
    if callback is not None:
        callback(kind, data)
