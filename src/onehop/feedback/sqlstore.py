"""The ``FeedbackStore`` on the network database (SQLite or PostgreSQL).

Records live in the ``feedback_records`` table (``onehop.network.feedback_records``),
whose migrations own it (revision ``0003_feedback``): the store never creates it, and
:meth:`SqlFeedbackStore.open` refuses a database whose schema is not at the head
revision (``onehop network init``). ``add`` commits before it returns, and a second
``add`` of the same upload is a no-op (the unique ``upload_id``), so a collector that
crashed between storing and deleting an upload never duplicates it. Library exceptions
become :class:`~onehop.client.feedback.errors.FeedbackError` here.

Needs the ``network`` extra (SQLAlchemy): only ``onehop feedback collect`` and ``list``
import this module, when they run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ..client.feedback.errors import FeedbackError
from ..network.db import Database, default_url
from ..network.feedback_records import feedback_records as t
from ..network.keys import private_keys
from ..network.servers import server_ids_by_ip
from .store import FeedbackRecord


def default_db_url() -> str:
    """The network database's default (``$XDG_DATA_HOME/onehop/network.db``)."""
    return default_url()


class SqlFeedbackStore:
    """``FeedbackStore`` on the network database's engine (SQLite or PostgreSQL)."""

    def __init__(self, engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str | None = None) -> SqlFeedbackStore:
        """The store of the network database at ``url`` (default: the network's default
        database); its schema must be at the head revision (SchemaError otherwise)."""
        return cls(Database.open(url or default_db_url()).engine)

    def close(self) -> None:
        self.engine.dispose()

    def exists(self, upload_id: str) -> bool:
        with _db_errors(), self.engine.connect() as connection:
            return connection.execute(select(t.c.id).where(t.c.upload_id == upload_id)).first() is not None

    def add(self, record: FeedbackRecord) -> bool:
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
        query = select(t).order_by(t.c.stored_at.desc(), t.c.id.desc()).limit(limit).offset(offset)
        with _db_errors(), self.engine.connect() as connection:
            return [_record(row) for row in connection.execute(query).mappings()]


def network_facts(store: SqlFeedbackStore, with_keys: bool) -> tuple[list[str], dict[str, str]]:
    """(the network's feedback private keys, active first; {server IP: server ID})."""
    with Session(store.engine) as session:
        keys = private_keys(session, "feedback") if with_keys else []
        return keys, server_ids_by_ip(session)


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
    try:
        yield
    except passing:
        raise
    except SQLAlchemyError as exc:
        raise FeedbackError(f"feedback database error: {_short(exc)}") from None
