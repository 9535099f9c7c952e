"""Where collected feedback lives: the ``FeedbackStore`` interface and its SQL version.

The collector needs three operations (``exists``, ``add``, ``list``); anything that
provides them will do. :class:`SqlFeedbackStore` keeps records in the
``feedback_records`` table (``onehop.feedback.models``) of the network database
(SQLite or PostgreSQL), whose migrations own the table (revision ``0003_feedback``):
the store never creates it, and :meth:`SqlFeedbackStore.open` refuses a database whose
schema is not at the head revision (``onehop network init``). ``add`` commits before it returns, and
a second ``add`` of the same upload is a no-op (the unique ``upload_id``), so a
collector that crashed between storing and deleting an upload never duplicates it.
Library exceptions become :class:`~onehop.feedback.errors.FeedbackError` here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from .errors import FeedbackError


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


def default_db_url() -> str:
    """The network database's default (``$XDG_DATA_HOME/onehop/network.db``)."""
    from ..network.db import default_url
    return default_url()


class SqlFeedbackStore:
    """``FeedbackStore`` on the network database's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> SqlFeedbackStore:
        """The store of the network database at ``url`` (default: the network's default
        database); its schema must be at the head revision (SchemaError otherwise)."""
        from ..network.db import Database
        return cls(Database.open(url or default_db_url()).engine)

    def close(self) -> None:
        self.engine.dispose()

    def exists(self, upload_id: str) -> bool:
        from sqlalchemy import select

        from .models import feedback_records as t
        with _db_errors(), self.engine.connect() as connection:
            return connection.execute(select(t.c.id).where(t.c.upload_id == upload_id)).first() is not None

    def add(self, record: FeedbackRecord) -> bool:
        from sqlalchemy.exc import IntegrityError

        from .models import feedback_records as t
        values = _row(record)
        try:
            with _db_errors(IntegrityError), self.engine.begin() as connection:
                connection.execute(t.insert().values(**values))
        except IntegrityError:
            if self.exists(record.upload_id):
                return False  # stored before (a crash between store and delete, or a race)
            raise FeedbackError(f"cannot store feedback {record.upload_id!r}: constraint violated") from None
        return True

    def list(self, limit: int = 100, offset: int = 0) -> list[FeedbackRecord]:
        from sqlalchemy import select

        from .models import feedback_records as t
        query = select(t).order_by(t.c.stored_at.desc(), t.c.id.desc()).limit(limit).offset(offset)
        with _db_errors(), self.engine.connect() as connection:
            return [_record(row) for row in connection.execute(query).mappings()]


def _row(record: FeedbackRecord) -> dict:
    return {"upload_id": record.upload_id, "blob_sha256": record.blob_sha256,
            "feedback_id": record.feedback_id[:64], "platform": record.platform[:64],
            "format_version": record.format_version[:16], "client_version": record.client_version[:64],
            "email": record.email[:320], "message": record.message,
            "server_ids": json.dumps(list(record.server_ids)), "document": record.document,
            "received_at": record.received_at, "stored_at": record.stored_at}


def _record(row) -> FeedbackRecord:
    return FeedbackRecord(
        id=row["id"], upload_id=row["upload_id"], blob_sha256=row["blob_sha256"], document=row["document"],
        stored_at=row["stored_at"], feedback_id=row["feedback_id"], platform=row["platform"],
        format_version=row["format_version"], client_version=row["client_version"], email=row["email"],
        message=row["message"], server_ids=tuple(json.loads(row["server_ids"] or "[]")),
        received_at=row["received_at"])


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:300]


@contextmanager
def _db_errors(*passing: type[BaseException]) -> Iterator[None]:
    """Library exceptions become FeedbackError (except the ``passing`` ones)."""
    from sqlalchemy.exc import SQLAlchemyError
    try:
        yield
    except passing:
        raise
    except SQLAlchemyError as exc:
        raise FeedbackError(f"feedback database error: {_short(exc)}") from None
