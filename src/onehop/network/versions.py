"""Client versions per platform class (Android, iOS, Windows, Other): monotonic
integers; the handshake offers the newest as an upgrade, builds embed it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import ConfigError, ConfigProblem
from . import audit
from .errors import Conflict
from .models import ClientVersion
from .settings import PLATFORMS


def latest(session: Session, platform: str) -> int | None:
    query = select(func.max(ClientVersion.version)).where(ClientVersion.platform == platform)
    return session.scalar(query)


def check_request(platform: str, version: int | None) -> None:
    problems = []
    if platform not in PLATFORMS:
        problems.append(ConfigProblem("--platform", f"must be one of {', '.join(PLATFORMS)}"))
    if version is not None and not 1 <= version < 10 ** 18:
        problems.append(ConfigProblem("--version", "must be a positive whole number"))
    if problems:
        raise ConfigError(problems)


def add_version(session: Session, ctx: audit.Context, platform: str, version: int | None = None,
                description: str = "") -> ClientVersion:
    check_request(platform, version)
    current = latest(session, platform)
    if version is None:
        version = (current or 0) + 1
    elif current is not None and version <= current:
        raise Conflict(f"{platform} is already at version {current}: versions only grow")
    row = ClientVersion(platform=platform, version=version, description=description, created_at=ctx.now)
    session.add(row)
    session.flush()
    audit.record(session, ctx, "client-version.add", "client_version", [f"{platform}:{version}"])
    return row


def list_versions(session: Session) -> list[ClientVersion]:
    query = select(ClientVersion).order_by(ClientVersion.platform, ClientVersion.version)
    return list(session.scalars(query))


def by_platform(session: Session) -> dict[str, list[int]]:
    table: dict[str, list[int]] = {}
    for row in list_versions(session):
        table.setdefault(row.platform, []).append(row.version)
    return table


def version_dict(row: ClientVersion) -> dict:
    return {"id": f"{row.platform}:{row.version}", "platform": row.platform, "version": row.version,
            "description": row.description,
            "created_at": row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
