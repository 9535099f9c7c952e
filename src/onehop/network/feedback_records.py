"""The ``feedback_records`` table of the network database (SQLAlchemy Core), where
``onehop feedback collect`` stores uploads (``onehop.feedback.sqlstore``).

The network database's migrations create it (revision ``0003_feedback``;
``onehop.network.models.schema_metadata`` adds it to the schema a
test compares with the migrations): portable types only (no JSON/JSONB: documents are
JSON text), explicit constraint names, no foreign keys.
One row per collected upload; ``upload_id`` (the object's key below the collected
directory or S3 prefix) is unique, which is what makes collection idempotent. Every
text column holds redacted data only: no client address is ever stored.
"""

from __future__ import annotations

from sqlalchemy import (
                        Column,
                        DateTime,
                        Index,
                        Integer,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "pk": "pk_%(table_name)s"}
metadata = MetaData(naming_convention=NAMING)

UPLOAD_ID_LENGTH = 512

feedback_records = Table(
    "feedback_records", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("upload_id", String(UPLOAD_ID_LENGTH), nullable=False),
    Column("blob_sha256", String(64), nullable=False),
    Column("feedback_id", String(64), nullable=False, default=""),
    Column("platform", String(64), nullable=False, default=""),
    Column("format_version", String(16), nullable=False, default=""),
    Column("client_version", String(64), nullable=False, default=""),
    Column("email", String(320), nullable=False, default=""),
    Column("message", Text, nullable=False, default=""),
    Column("server_ids", Text, nullable=False, default="[]"),   # JSON list of server IDs mentioned
    Column("document", Text, nullable=False),                   # the redacted document, JSON
    Column("received_at", DateTime(timezone=True), nullable=True),
    Column("stored_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("upload_id"),
    Index("ix_feedback_records_stored_at", "stored_at"),
    Index("ix_feedback_records_blob_sha256", "blob_sha256"),
)
