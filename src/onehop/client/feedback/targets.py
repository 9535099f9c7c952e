"""Where feedback goes: Psiphon's ``FeedbackUploadURLs`` TransferURLs, with their extras.

Beyond the common TransferURL members (``URL``, ``OnlyAfterAttempts``, ``SkipVerify``)
a feedback URL may carry ``RequestHeaders`` (S3 wants ``x-amz-acl`` on a PUT) and its
own ``B64EncodedPublicKey``; otherwise the config's ``FeedbackEncryptionPublicKey``
applies. The object is PUT at the URL's path joined with the caller's upload path and
the upload ID, as Psiphon does (``path.Join``).
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...core.authpackage import public_key_digest
from ...errors import ConfigError, ConfigProblem
from ..transfer_urls import parse_transfer_urls

CONFIG_KEY = "FeedbackUploadURLs"


@dataclass(frozen=True)
class UploadTarget:
    url: str
    public_key: str
    only_after_attempts: int = 0
    skip_verify: bool = False
    headers: tuple[tuple[str, str], ...] = field(default=())

    @property
    def key_digest(self) -> str:
        return public_key_digest(self.public_key)


def _headers(item: Any, index: int, problems: list[ConfigProblem]) -> tuple[tuple[str, str], ...]:
    raw = item.get("RequestHeaders") if isinstance(item, dict) else None
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        problems.append(ConfigProblem(f"{CONFIG_KEY}[{index}].RequestHeaders", "must map names to strings"))
        return ()
    return tuple(sorted(raw.items()))


def parse_upload_targets(items: Sequence[Any], default_public_key: str) -> tuple[UploadTarget, ...]:
    """Validate the config's list; ConfigError lists every problem (a URL without a key too)."""
    urls = parse_transfer_urls(items, CONFIG_KEY)
    problems: list[ConfigProblem] = []
    targets = []
    for index, (item, url) in enumerate(zip(items, urls)):
        key = item.get("B64EncodedPublicKey") if isinstance(item, dict) else None
        key = key if isinstance(key, str) and key else default_public_key
        if not key:
            problems.append(ConfigProblem(f"{CONFIG_KEY}[{index}]", "no B64EncodedPublicKey and no "
                                          "FeedbackEncryptionPublicKey to encrypt to"))
        targets.append(UploadTarget(url.url, key, url.only_after_attempts, url.skip_verify,
                                    _headers(item, index, problems)))
    if problems:
        raise ConfigError(problems)
    return tuple(targets)


def encryption_key(targets: Sequence[UploadTarget], default_public_key: str) -> str:
    """The key a new package is encrypted to: the config's, else the first URL's."""
    if default_public_key:
        return default_public_key
    if targets:
        return targets[0].public_key
    raise ConfigError([ConfigProblem("FeedbackEncryptionPublicKey", "no feedback key configured")])


def choose(targets: Sequence[UploadTarget], key_digest: str, attempt: int,
           rng: random.Random) -> UploadTarget | None:
    """A random target allowed at ``attempt`` whose key matches the package's."""
    allowed = [t for t in targets if t.only_after_attempts <= attempt and t.key_digest == key_digest]
    if not allowed:  # Psiphon: when nothing is allowed yet, any matching URL will do
        allowed = [t for t in targets if t.key_digest == key_digest]
    return rng.choice(allowed) if allowed else None


def upload_url(base: str, upload_path: str, upload_id: str) -> str:
    """``base`` with its path joined with ``upload_path`` and ``upload_id``."""
    parts = urlsplit(base)
    path = posixpath.join(parts.path or "/", upload_path.lstrip("/"), upload_id)
    return urlunsplit((parts.scheme, parts.netloc, posixpath.normpath(path), parts.query, ""))
