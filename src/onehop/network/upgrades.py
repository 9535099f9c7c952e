"""Client versions with builds: signed upgrade packages made once, published to mirrors.

``client-version add --platform P --file BUILD`` signs the full upgrade package of BUILD
(Psiphon's envelope, with the version and P signed in) with the network's upgrade key and, when the
platform's previous version was added with a build too, a bsdiff4 delta from it (kept only when
smaller than the full package; ``onehop.upgrade.artifacts``). The build and the packages are stored with the version, in
the same transaction, so the next version can diff against this build and ``publish``
can upload the packages without the file.

Published layout: ``<site>/<name>.upgrade`` and ``<site>/<name>.<from>-<to>.delta.upgrade``,
where ``<site>`` is a random prefix per platform (kept across versions, so a client's
``UpgradeDownloadURLs`` entry, ``.../<site>/<name>.upgrade``, stays valid) and ``<name>``
the build's file name. Only the newest version of each platform is published; the
handshake offers it (psinet ``client_versions``) to every older client of the platform.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..core.authpackage import load_private_key
from ..errors import ConfigError, ConfigProblem
from ..upgrade.artifacts import UpgradeArtifact, upgrade_artifacts
from . import audit, ids
from .keys import KeyPair
from .models import ClientBuild, ClientVersion, UpgradePackage
from .versions import add_version, check_request, latest

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")


@dataclass(frozen=True)
class VersionPlan:
    platform: str
    version: int
    site_id: str
    previous: tuple[int, bytes] | None


@dataclass(frozen=True)
class PublishedPackage:
    platform: str
    version: int
    path: str
    kind: str
    from_version: str | None
    data: bytes


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name) or name.endswith(".upgrade"):
        raise ConfigError([ConfigProblem("--name", "a file name of letters, digits, '.', '_' and '-' "
                                                   "(not ending in .upgrade)")])
    return name


def _newest_build(session: Session, platform: str) -> ClientBuild | None:
    query = (select(ClientBuild).join(ClientVersion).where(ClientVersion.platform == platform)
             .order_by(ClientVersion.version.desc()).limit(1))
    return session.scalars(query).first()


def plan_version(session: Session, platform: str, version: int | None) -> VersionPlan:
    """The version number to add and what its packages build on (read only)."""
    check_request(platform, version)
    current = latest(session, platform)
    number = version if version is not None else (current or 0) + 1
    previous = _newest_build(session, platform)
    return VersionPlan(platform, number, previous.site_id if previous else ids.site_id(),
                       (previous.client_version.version, previous.data) if previous else None)


def make_packages(name: str, build: bytes, plan: VersionPlan, key: KeyPair) -> tuple[UpgradeArtifact, ...]:
    """The full package and the useful delta (RSA signatures, bsdiff4: seconds for big builds)."""
    previous = [plan.previous] if plan.previous else []
    return upgrade_artifacts(name, build, plan.version, load_private_key(key.private_key), key.public_key, previous,
                             platform=plan.platform)


def store(session: Session, ctx: audit.Context, plan: VersionPlan, description: str, name: str, build: bytes,
          artifacts: tuple[UpgradeArtifact, ...]) -> ClientVersion:
    """The version, its build and its packages, in the caller's transaction."""
    row = add_version(session, ctx, plan.platform, plan.version, description)
    stored = ClientBuild(client_version_id=row.id, name=name, site_id=plan.site_id,
                         sha256=hashlib.sha256(build).hexdigest(), size=len(build), data=build, created_at=ctx.now)
    session.add(stored)
    session.flush()
    for artifact in artifacts:
        session.add(UpgradePackage(client_build_id=stored.id, name=artifact.name, kind=artifact.kind,
                                   from_version=artifact.from_version or None, sha256=artifact.sha256,
                                   size=artifact.size, data=artifact.data, created_at=ctx.now))
    audit.record(session, ctx, "client-version.build", "client_version", [f"{plan.platform}:{plan.version}"],
                 name=name, sha256=stored.sha256, size=len(build),
                 packages=[{"name": a.name, "kind": a.kind, "size": a.size} for a in artifacts])
    return row


def packages_dict(plan: VersionPlan, name: str, build: bytes, artifacts: tuple[UpgradeArtifact, ...]) -> dict:
    full = next(a for a in artifacts if a.kind == "full")
    return {"build": {"name": name, "size": len(build), "sha256": hashlib.sha256(build).hexdigest(),
                      "site_id": plan.site_id},
            "upgrade_packages": [{"name": a.name, "path": f"{plan.site_id}/{a.name}", "kind": a.kind,
                                  "from_version": a.from_version or None, "size": a.size, "sha256": a.sha256,
                                  "saving": (None if a.kind == "full" else round(1 - a.size / full.size, 3))}
                                 for a in artifacts]}


def published_packages(session: Session) -> list[PublishedPackage]:
    """The packages of every platform's newest version that has a build."""
    out = []
    for platform in sorted(set(session.scalars(select(ClientVersion.platform)))):
        build = _newest_build(session, platform)
        if build is None:
            continue
        query = select(UpgradePackage).where(UpgradePackage.client_build_id == build.id).order_by(UpgradePackage.id)
        out += [PublishedPackage(platform, build.client_version.version, f"{build.site_id}/{p.name}", p.kind,
                                 p.from_version, p.data) for p in session.scalars(query)]
    return out


def builds_by_version(session: Session) -> dict[int, dict]:
    """{client version id: {name, size, site_id}} without loading the builds themselves."""
    query = select(ClientBuild.client_version_id, ClientBuild.name, ClientBuild.size, ClientBuild.site_id)
    return {row[0]: {"name": row[1], "size": row[2], "site_id": row[3]} for row in session.execute(query)}
