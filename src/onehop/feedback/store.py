"""Where collected feedback lives: the ``FeedbackStore`` interface and its record.

The collector needs three operations (``exists``, ``add``, ``list``); anything that
provides them will do (tests pass a dictionary-backed fake). The SQL version on the
network database is :class:`onehop.feedback.sqlstore.SqlFeedbackStore`; it lives apart
so that this module, and the collector, load without SQLAlchemy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class FeedbackRecord:
    """One decrypted, redacted upload."""

    upload_id: str
    blob_sha256: str
    document: str
    stored_at: datetime
    feedback_id: str = ""
    platform: str = ""
    format_version: str = ""
    client_version: str = ""
    email: str = ""
    message: str = ""
    server_ids: tuple[str, ...] = field(default=())
    received_at: datetime | None = None
    id: int | None = None

    def as_dict(self) -> dict:
        return {"id": self.id, "upload_id": self.upload_id, "feedback_id": self.feedback_id,
                "platform": self.platform, "format_version": self.format_version,
                "client_version": self.client_version, "email": self.email, "message": self.message,
                "server_ids": list(self.server_ids), "blob_sha256": self.blob_sha256,
                "received_at": _iso(self.received_at), "stored_at": _iso(self.stored_at),
                "document": json.loads(self.document)}


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


class FeedbackStore(Protocol):
    def exists(self, upload_id: str) -> bool: ...

    def add(self, record: FeedbackRecord) -> bool:
        """Store ``record``; False when its upload was already stored."""

    def list(self, limit: int = 100, offset: int = 0) -> list[FeedbackRecord]:
        """Newest first."""
