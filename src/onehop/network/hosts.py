"""Hosts: the machines servers run on (provider, region, datacenter, management SSH
access with a pinned host key). Names are unique forever: a removed host stays in the
database, archived, so its servers' IDs stay resolvable and are never reused."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..configtools import ip_check
from ..errors import ConfigError, ConfigProblem
from . import audit, ids
from .errors import Conflict
from .models import Host, Server

_REGION = re.compile(r"[A-Z]{2}")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


def region_problem(region: str) -> str | None:
    return None if _REGION.fullmatch(region) else "must be a two-letter country code like DE"


def host_key_problem(key: str) -> str | None:
    """A pinned key as in known_hosts: ``<algorithm> <base64>``."""
    parts = key.split()
    if len(parts) != 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        return "must look like 'ssh-ed25519 AAAA...' (algorithm and base64 key)"
    try:
        base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return "the key part is not base64"
    return None


def provider_id(provider: str | None) -> str:
    """An opaque upper-hex provider ID for server entries (Psiphon's providerID)."""
    if not provider:
        return ""
    return hashlib.sha256(provider.strip().lower().encode("utf-8")).hexdigest()[:32].upper()


def _problems(name: str, ip: str, region: str, ssh_port: int, ssh_username: str,
              ssh_host_key: str | None) -> list[ConfigProblem]:
    checks = [("--name", ids.name_problem(name)), ("--ip", ip_check(ip)),
              ("--region", region_problem(region)),
              ("--ssh-port", None if 1 <= ssh_port <= 65535 else "must be a port number"),
              ("--ssh-user", None if _USER.fullmatch(ssh_username) else "not a user name"),
              ("--ssh-host-key", host_key_problem(ssh_host_key) if ssh_host_key else None)]
    return [ConfigProblem(key, message) for key, message in checks if message]


def add_host(session: Session, ctx: audit.Context, name: str, ip: str, region: str, *,
             provider: str | None = None, datacenter: str | None = None, ssh_port: int = 22,
             ssh_username: str = "root", ssh_host_key: str | None = None) -> Host:
    region = region.upper()
    problems = _problems(name, ip, region, ssh_port, ssh_username, ssh_host_key)
    if problems:
        raise ConfigError(problems)
    existing = session.scalars(select(Host).where(func.lower(Host.name) == name.lower())).first()
    if existing is not None:
        state = "a removed host (names are never reused)" if existing.deleted_at else "a host"
        raise Conflict(f"{name!r} is already the name of {state}")
    same_ip = session.scalars(select(Host).where(Host.ip_address == ip, Host.deleted_at.is_(None))).first()
    if same_ip is not None:
        raise Conflict(f"host {same_ip.name} already has this IP address")
    host = Host(name=name, ip_address=ip, region=region, provider=provider or None,
                datacenter=datacenter or None, ssh_port=ssh_port, ssh_username=ssh_username,
                ssh_host_key=ssh_host_key, next_server_number=1, created_at=ctx.now)
    session.add(host)
    session.flush()
    audit.record(session, ctx, "host.add", "host", [host.name], region=region, provider=provider)
    return host


def list_hosts(session: Session, include_deleted: bool = False) -> list[Host]:
    query = select(Host).order_by(Host.created_at, Host.name)
    if not include_deleted:
        query = query.where(Host.deleted_at.is_(None))
    return list(session.scalars(query))


def live_server_count(session: Session, host: Host) -> int:
    query = select(func.count()).select_from(Server).where(Server.host_id == host.id, Server.retired_at.is_(None))
    return session.scalar(query) or 0


def host_dict(host: Host, live_servers: int | None = None) -> dict:
    out = {"id": host.name, "name": host.name, "ip_address": host.ip_address, "region": host.region,
           "provider": host.provider, "datacenter": host.datacenter, "ssh_port": host.ssh_port,
           "ssh_username": host.ssh_username, "ssh_host_key": host.ssh_host_key,
           "created_at": host.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
           "deleted_at": host.deleted_at.strftime("%Y-%m-%dT%H:%M:%SZ") if host.deleted_at else None}
    if live_servers is not None:
        out["live_servers"] = live_servers
    return out


def set_host_key(session: Session, ctx: audit.Context, host: Host, key: str) -> Host:
    """Pin (or re-pin, after a reinstall checked out of band) the management host key."""
    problem = host_key_problem(key)
    if problem:
        raise ConfigError([ConfigProblem("--ssh-host-key", problem)])
    old = host.ssh_host_key
    host.ssh_host_key = " ".join(key.split())
    audit.record(session, ctx, "host.set-key", "host", [host.name], algorithm=key.split()[0],
                 replaced=old is not None)
    return host
