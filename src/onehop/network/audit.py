"""The audit trail: who (OS user), what, when, which objects; never secrets or IPs.

``Context`` carries the actor and the time every operation stamps its records with;
``record`` adds the audit row to the same session (so the same transaction) as the
change it describes.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, field
from datetime import datetime, UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuditRecord


def current_actor() -> str:
    """The OS user running the command (``unknown`` if it cannot be told)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    """Who is acting and the time the operation happens at (aware UTC)."""

    actor: str = field(default_factory=current_actor)
    now: datetime = field(default_factory=utc_now)


def record(session: Session, ctx: Context, action: str, object_type: str,
           object_ids: list[str] | tuple[str, ...], **details: Any) -> AuditRecord:
    entry = AuditRecord(at=ctx.now, actor=ctx.actor[:100], action=action, object_type=object_type,
                        object_ids=[str(i) for i in object_ids], details=details)
    session.add(entry)
    return entry


def recent(session: Session, limit: int = 50) -> list[AuditRecord]:
    query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
    return list(session.scalars(query))


def as_dict(entry: AuditRecord) -> dict:
    return {"id": entry.id, "at": entry.at.strftime("%Y-%m-%dT%H:%M:%SZ"), "actor": entry.actor,
            "action": entry.action, "object_type": entry.object_type,
            "object_ids": entry.object_ids, "details": entry.details}
