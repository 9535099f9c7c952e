"""The feedback document: Psiphon's JSON shape, built and read back (pure).

::

    {"Metadata": {"platform": "linux", "version": 1, "id": "<16 hex>"},
     "DiagnosticInfo": {...},
     "Feedback": {"email": "...", "Message": {"text": "..."}}}

``Metadata.version`` is the version of this document format (an integer, as Psiphon's
apps send it), not the client's version, which is in
``DiagnosticInfo.SystemInformation`` (``clientVersion`` from onehop,
``PsiphonInfo.CLIENT_VERSION`` from Psiphon's Android and Windows apps). ``Metadata.id``
is the upload ID, so an operator can match a stored record to the object it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 1
MAX_MESSAGE_CHARS = 20_000
MAX_EMAIL_CHARS = 320


def platform_name(sys_platform: str) -> str:
    """Psiphon-style lower-case platform name from ``sys.platform``."""
    if sys_platform.startswith("win"):
        return "windows"
    if sys_platform == "darwin":
        return "macos"
    return sys_platform.rstrip("0123456789") or "unknown"


def feedback_document(message: str, email: str, diagnostics: Mapping[str, Any] | None, *,
                      feedback_id: str, platform: str) -> dict:
    """The document a client encrypts; ``diagnostics`` None sends an empty DiagnosticInfo."""
    return {
        "Metadata": {"platform": platform, "version": FORMAT_VERSION, "id": feedback_id},
        "DiagnosticInfo": dict(diagnostics or {}),
        "Feedback": {"email": email[:MAX_EMAIL_CHARS], "Message": {"text": message[:MAX_MESSAGE_CHARS]}},
    }


def encode_document(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


@dataclass(frozen=True)
class FeedbackSummary:
    """The fields an operator lists, read leniently from any decrypted document."""

    feedback_id: str = ""
    platform: str = ""
    format_version: str = ""
    client_version: str = ""
    email: str = ""
    message: str = ""


def _dig(value: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def summarize(document: Any) -> FeedbackSummary:
    """Pick the listed fields out of a document of Psiphon's shape (missing ones are '')."""
    system = _dig(document, "DiagnosticInfo", "SystemInformation")
    # onehop's own field; then Psiphon's apps (Android and Windows): PsiphonInfo.CLIENT_VERSION
    client_version = (_dig(system, "clientVersion") or _dig(system, "PsiphonInfo", "CLIENT_VERSION")
                      or _dig(system, "build") or "")
    return FeedbackSummary(
        feedback_id=_text(_dig(document, "Metadata", "id")),
        platform=_text(_dig(document, "Metadata", "platform")),
        format_version=_text(_dig(document, "Metadata", "version")),
        client_version=_text(client_version),
        email=_text(_dig(document, "Feedback", "email")),
        message=_text(_dig(document, "Feedback", "Message", "text")),
    )
