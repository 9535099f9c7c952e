"""Finding records by the references operators type: IDs or names (case-insensitive
hex IDs, exact names). A miss is a :class:`NotFound` that says what was looked for."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import NotFound
from .models import Campaign, Channel, Host, Server, Sponsor


def _by_id_or_name(session: Session, model, ref: str, what: str):
    record = session.get(model, ref.upper()) if len(ref) == 16 else None
    if record is None:
        record = session.scalars(select(model).where(model.name == ref)).one_or_none()
    if record is None:
        raise NotFound(f"unknown {what} {ref!r} (give its ID or its exact name)")
    return record


def sponsor(session: Session, ref: str) -> Sponsor:
    return _by_id_or_name(session, Sponsor, ref, "sponsor")


def channel(session: Session, ref: str) -> Channel:
    return _by_id_or_name(session, Channel, ref, "channel")


def campaign(session: Session, ref: str) -> Campaign:
    record = session.get(Campaign, ref.upper())
    if record is None:
        raise NotFound(f"unknown campaign {ref!r}")
    return record


def host(session: Session, name: str, *, include_deleted: bool = False) -> Host:
    record = session.scalars(select(Host).where(func.lower(Host.name) == name.lower())).one_or_none()
    if record is None or (record.deleted_at is not None and not include_deleted):
        state = "removed" if record is not None else "unknown"
        raise NotFound(f"{state} host {name!r}")
    return record


def server(session: Session, server_id: str) -> Server:
    record = session.get(Server, server_id.lower())
    if record is None:
        raise NotFound(f"unknown server {server_id!r}")
    return record
