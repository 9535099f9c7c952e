"""The client's feedback API (what ``onehop feedback send`` and a UI call).

* :func:`prepare_feedback` gathers and redacts diagnostics, builds the document,
  encrypts it and saves it as pending (no network);
* :func:`flush_feedback` uploads everything pending (retries, backoff);
* :func:`send_feedback` does both;
* :func:`send_feedback_from` and :func:`upload_leftovers` take a running client's
  controller (``client.ports.FeedbackClient``; the store, tunnel and byte counts are read
  when present) so the
  upload goes through the tunnel when one is up.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...core.authpackage import public_key_digest
from ...core.feedbackcrypto import encrypt
from ...core.redact import Redactor
from ...errors import ConfigError, ConfigProblem
from ...net.dial import socket_opener
from ..ports import FeedbackClient, OutboundClient
from .diagnostics import gather_diagnostics
from .document import encode_document, feedback_document, platform_name
from .noticelog import read_notice_log
from .queue import FeedbackQueue, PendingFeedback
from .targets import encryption_key, parse_upload_targets
from .upload import DEFAULT_POLICY, UploadPolicy, UploadReport, upload_pending

NO_UPLOAD_URL = ("no feedback upload URL configured: the network's operator sets one with `onehop network "
                 "settings set feedback-upload-url URL` (for a directory: `onehop feedback receive --listen "
                 "HOST:PORT --to DIR`) and makes the client build again (`onehop network build-client` or "
                 "`publish`); or give FeedbackUploadURLs and FeedbackEncryptionPublicKey in --config")


@dataclass(frozen=True)
class SendResult:
    upload_id: str
    pending_path: str
    uploaded: bool
    report: UploadReport


def _targets(config: Any):
    if not config.feedback_upload_urls:
        raise ConfigError([ConfigProblem("FeedbackUploadURLs", NO_UPLOAD_URL)])
    return parse_upload_targets(config.feedback_upload_urls, config.feedback_encryption_public_key)


def prepare_feedback(config: Any, message: str, *, email: str = "", include_diagnostics: bool = True,
                     notices: Iterable[Mapping] | None = None, keep_ips: Collection[str] = (),
                     extra_stats: Mapping[str, Any] | None = None, installation: str = "",
                     random_bytes: Callable[[int], bytes] = os.urandom) -> PendingFeedback:
    """Encrypt the feedback and save it under ``<data dir>/feedback/pending/``.

    ``notices`` defaults to the notice log in the data directory; ``keep_ips`` are the
    client's server addresses (left for the operators to map to server IDs).
    """
    targets = _targets(config)
    key = encryption_key(targets, config.feedback_encryption_public_key)
    upload_id = random_bytes(8).hex()
    document = feedback_preview(config, message, email=email, include_diagnostics=include_diagnostics,
                                notices=notices, keep_ips=keep_ips, extra_stats=extra_stats,
                                installation=installation, feedback_id=upload_id)
    blob = encrypt(encode_document(document), key, random_bytes)
    return FeedbackQueue(config.data_dir).add(upload_id, public_key_digest(key), blob)


def feedback_preview(config: Any, message: str, *, email: str = "", include_diagnostics: bool = True,
                     notices: Iterable[Mapping] | None = None, keep_ips: Collection[str] = (),
                     extra_stats: Mapping[str, Any] | None = None, installation: str = "",
                     feedback_id: str = "") -> dict:
    """The document exactly as it is encrypted and sent, after redaction (a UI shows it)."""
    diagnostics = None
    if include_diagnostics:
        history = read_notice_log(config.data_dir) if notices is None else list(notices)
        diagnostics = gather_diagnostics(config, history, keep_ips=keep_ips, extra_stats=extra_stats,
                                         installation=installation)
    redactor = Redactor(keep=keep_ips)
    return feedback_document(redactor.text(message), email.strip(), diagnostics,
                             feedback_id=feedback_id, platform=platform_name(sys.platform))


async def flush_feedback(config: Any, get_opener: Callable[[], Any] | None = None, *,
                         policy: UploadPolicy = DEFAULT_POLICY, rng: random.Random | None = None,
                         sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                         on_event: Callable[[str, dict], None] | None = None) -> UploadReport:
    """Upload every pending package; without ``get_opener``: direct or the upstream proxy."""
    targets = _targets(config)
    if get_opener is None:
        opener = socket_opener(config.upstream_proxy)

        def direct_opener() -> Any:
            return opener

        get_opener = direct_opener
    return await upload_pending(FeedbackQueue(config.data_dir), targets, get_opener, policy=policy,
                                rng=rng, sleep=sleep, on_event=on_event)


async def send_feedback(config: Any, message: str, *, get_opener: Callable[[], Any] | None = None,
                        policy: UploadPolicy = DEFAULT_POLICY, rng: random.Random | None = None,
                        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                        on_event: Callable[[str, dict], None] | None = None, **prepare: Any) -> SendResult:
    """:func:`prepare_feedback` then :func:`flush_feedback` (``prepare`` takes its options)."""
    pending = prepare_feedback(config, message, **prepare)
    report = await flush_feedback(config, get_opener, policy=policy, rng=rng, sleep=sleep, on_event=on_event)
    return SendResult(pending.upload_id, pending.path, pending.upload_id in report.uploaded, report)


# -- a running client -----------------------------------------------------------------

def server_addresses(controller: FeedbackClient) -> list[str]:
    """The addresses of the controller's server entries (kept for server-ID mapping)."""
    store = getattr(controller, "store", None)
    try:
        return [e.ip_address for e in store.entries()] if store is not None else []
    except Exception:  # a store that cannot be read must not stop feedback
        return []


def controller_stats(controller: FeedbackClient) -> dict:
    counter = getattr(controller, "byte_counter", None)
    stats = {"tunnelUp": getattr(controller, "active", None) is not None,
             "tunnelsEstablishedThisRun": getattr(controller, "tunnels_established", 0)}
    if counter is not None:
        stats.update(bytesUp=getattr(counter, "up", 0), bytesDown=getattr(counter, "down", 0))
    return stats


def _notify(notices: Any) -> Callable[[str, dict], None]:
    def on_event(kind: str, data: dict) -> None:
        if notices is not None:
            notices.info(f"feedback upload {kind}", **data)
    return on_event


def preview_from(controller: FeedbackClient, message: str, *, email: str = "",
                 include_diagnostics: bool = True) -> dict:
    """What :func:`send_feedback_from` would send now (its ID is chosen when sending)."""
    notices = getattr(controller, "notices", None)
    return feedback_preview(controller.config, message, email=email, include_diagnostics=include_diagnostics,
                            notices=list(getattr(notices, "recent", ())),
                            keep_ips=server_addresses(controller), extra_stats=controller_stats(controller))


async def send_feedback_from(controller: FeedbackClient, message: str, *, email: str = "",
                             include_diagnostics: bool = True,
                             policy: UploadPolicy = DEFAULT_POLICY) -> SendResult:
    """Feedback from inside a running client: its recent notices, its tunnel."""
    notices = getattr(controller, "notices", None)
    return await send_feedback(
        controller.config, message, email=email, include_diagnostics=include_diagnostics,
        notices=list(getattr(notices, "recent", ())), keep_ips=server_addresses(controller),
        extra_stats=controller_stats(controller), get_opener=controller.outbound_opener,
        policy=policy, on_event=_notify(notices))


async def upload_leftovers(controller: OutboundClient, *, policy: UploadPolicy = DEFAULT_POLICY) -> UploadReport | None:
    """Upload packages earlier runs left behind; None when there is nothing to do."""
    config = controller.config
    if not config.feedback_upload_urls or not FeedbackQueue(config.data_dir).pending():
        return None
    return await flush_feedback(config, controller.outbound_opener, policy=policy,
                                on_event=_notify(getattr(controller, "notices", None)))
