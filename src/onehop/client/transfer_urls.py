"""Psiphon's TransferURL lists: where remote lists, upgrades and feedback go.

Each item is ``{"URL": base64 of the URL, "OnlyAfterAttempts": n, "SkipVerify": bool}``
(a plain URL string is accepted too). An attempt picks at random among the URLs allowed
at that attempt number; the first URL with OnlyAfterAttempts 0 is the canonical one
(the key under which an ETag is remembered).
"""

from __future__ import annotations

import base64
import binascii
import random
from dataclasses import dataclass
from typing import Any
from collections.abc import Sequence

from ..errors import ConfigError, ConfigProblem


@dataclass(frozen=True)
class TransferURL:
    url: str
    only_after_attempts: int = 0
    skip_verify: bool = False


def parse_transfer_urls(items: Sequence[Any], key: str) -> tuple[TransferURL, ...]:
    """Validate a TransferURL list; ConfigError lists every bad item under ``key``."""
    urls, problems = [], []
    for index, item in enumerate(items):
        try:
            urls.append(_parse_one(item))
        except ValueError as exc:
            problems.append(ConfigProblem(f"{key}[{index}]", str(exc)))
    if problems:
        raise ConfigError(problems)
    return tuple(urls)


def _parse_one(item: Any) -> TransferURL:
    if isinstance(item, str):
        return TransferURL(_checked(item))
    if not isinstance(item, dict) or not isinstance(item.get("URL"), str):
        raise ValueError('expected {"URL": base64 URL, ...} or a URL string')
    try:
        url = base64.b64decode(item["URL"], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("URL must be the base64 encoding of a URL") from None
    attempts = item.get("OnlyAfterAttempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise ValueError("OnlyAfterAttempts must be a non-negative integer")
    return TransferURL(_checked(url), attempts, bool(item.get("SkipVerify", False)))


def _checked(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {url[:60]!r}")
    return url


def encode_transfer_url(url: str, only_after_attempts: int = 0, skip_verify: bool = False) -> dict:
    return {"URL": base64.b64encode(url.encode()).decode("ascii"),
            "OnlyAfterAttempts": only_after_attempts, "SkipVerify": skip_verify}


def pick(urls: Sequence[TransferURL], attempt: int, rng: random.Random) -> TransferURL | None:
    allowed = [u for u in urls if u.only_after_attempts <= attempt]
    return rng.choice(allowed) if allowed else None


def canonical(urls: Sequence[TransferURL]) -> TransferURL:
    """The first URL allowed from the first attempt (else the first URL); ``urls`` must not be empty."""
    if not urls:
        raise ValueError("no transfer URLs")
    return next((u for u in urls if u.only_after_attempts == 0), urls[0])
