"""``provider add``, ``host launch`` and ``host destroy``: machines from providers, recorded
so the database always says what exists at the provider.

``host launch`` (one machine):

1. a ``launches`` row (``pending``) and its audit record, committed first;
2. the provider creates the machine; every resource is stored the moment it exists,
   each in its own short transaction (``provider_resources``);
3. "wait until it answers" is a pluggable step (:data:`READINESS`): by default the
   machine's management SSH port must accept connections; it returns how to reach the
   machine (tests map a launched instance, which moto never boots, to a loopback sshd);
4. one transaction records the host (region = the provider region's country,
   datacenter = the provider region, pinned host key = the one the network made and put
   in the machine's cloud-init) and closes the launch.

When the provider fails (an error, a quota), what was created is released at once and
the launch is closed as ``failed`` with the error; whatever could not be released stays
listed, unreleased, for ``host destroy``/a rerun. ``host destroy`` archives the host,
retires its servers and releases exactly the resources of its launch.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import ConfigError, ConfigProblem, OnehopError
from . import audit, hosts, ids
from .db import Database
from .errors import Conflict, NotFound
from .models import Host, Launch, Provider, ProviderResource, Server, StatsEvent
from .providers import Answer, LaunchRequest, Machine, ProviderError, Resource, make_provider, module_for

ANSWER_TIMEOUT = 300.0


def _ssh_identification(host: str, port: int, wait: float = 10.0) -> bytes:
    """The first line the SSH port sends (a bare accepted connect proves nothing: a middlebox
    or a captive proxy accepts too)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.settimeout(wait)
        line = b""
        while not line.endswith(b"\n") and len(line) < 255:
            chunk = sock.recv(255 - len(line))
            if not chunk:
                break
            line += chunk
        return line


def wait_for_ssh(machine: Machine, timeout: float = ANSWER_TIMEOUT, interval: float = 2.0) -> Answer:
    """The default readiness step: the machine's management SSH port sends an SSH
    identification line (``SSH-2.0-...``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if _ssh_identification(machine.public_ip, machine.ssh_port).startswith(b"SSH-"):
                return Answer(machine.public_ip, machine.ssh_port, machine.ssh_host_key, machine.public_ip)
            problem = "something answered, but not SSH"
        except OSError as exc:
            problem = exc.strerror or str(exc)
        if time.monotonic() > deadline:
            raise ProviderError(f"the machine {machine.id} did not answer on SSH within {timeout:g}s "
                                f"({problem})")
        time.sleep(interval)


#: "wait until it answers": replaced in tests (moto's instances never boot).
READINESS: Callable[[Machine], Answer] = wait_for_ssh


def _openssh_pair() -> tuple[str, str]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    public = " ".join(key.export_public_key("openssh").decode("ascii").split()[:2])
    return key.export_private_key("openssh").decode("ascii"), public


# -- providers ---------------------------------------------------------------------

def add_provider(session: Session, ctx: audit.Context, name: str, kind: str, settings: dict) -> Provider:
    problems = [ConfigProblem("--name", p) for p in [ids.name_problem(name)] if p]
    try:
        problems += module_for(kind).settings_problems(settings)
    except ProviderError as exc:
        problems.append(ConfigProblem("--kind", str(exc)))
    if problems:
        raise ConfigError(problems)
    if session.scalars(select(Provider).where(Provider.name == name)).first() is not None:
        raise Conflict(f"{name!r} is already the name of a provider")
    private, public = _openssh_pair()
    row = Provider(name=name, kind=kind, settings=settings, ssh_private_key=private, ssh_public_key=public,
                   created_at=ctx.now)
    session.add(row)
    session.flush()
    audit.record(session, ctx, "provider.add", "provider", [name], kind=kind, settings=sorted(settings))
    return row


def provider_by_name(session: Session, name: str) -> Provider:
    row = session.scalars(select(Provider).where(Provider.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"unknown provider {name!r} (provider list)")
    return row


def provider_dict(row: Provider) -> dict:
    return {"name": row.name, "kind": row.kind, "settings": row.settings, "ssh_public_key": row.ssh_public_key,
            "created_at": row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")}


def unreleased(session: Session, launch_id: int) -> list[ProviderResource]:
    return list(session.scalars(select(ProviderResource).where(
        ProviderResource.launch_id == launch_id, ProviderResource.released_at.is_(None))
        .order_by(ProviderResource.id)))


def open_provider(session: Session, row: Provider):
    """The provider object; an ssh pool learns which of its machines live launches hold."""
    provider = make_provider(row.kind, row.settings)
    if hasattr(provider, "in_use"):
        held = session.scalars(select(ProviderResource.resource_id).join(Launch).where(
            Launch.provider_id == row.id, ProviderResource.released_at.is_(None)))
        provider.in_use = set(held)
    return provider


# -- launch ------------------------------------------------------------------------

@dataclass(frozen=True)
class Launched:
    host: str
    launch_id: int
    region: str
    country: str
    public_ip: str

    def as_dict(self) -> dict:
        return {"host": self.host, "launch": self.launch_id, "region": self.region, "country": self.country}


def _host_name(session: Session, provider: str, region: str) -> str:
    while True:
        name = f"{provider}-{region}-{secrets.token_hex(3)}".lower()[:63]
        taken = session.scalars(select(Host.id).where(func.lower(Host.name) == name)).first() is not None
        if not taken and session.scalars(select(Launch.id).where(Launch.host_name == name)).first() is None:
            return name


class _Recorder:
    """Stores each resource in its own transaction the moment the provider reports it."""

    def __init__(self, db: Database, launch_id: int, ctx: audit.Context) -> None:
        self.db, self.launch_id, self.ctx = db, launch_id, ctx

    def created(self, resource: Resource) -> None:
        with self.db.transaction() as session:
            row = session.scalars(select(ProviderResource).where(
                ProviderResource.launch_id == self.launch_id, ProviderResource.kind == resource.kind,
                ProviderResource.resource_id == resource.id)).first()
            if row is None:
                session.add(ProviderResource(launch_id=self.launch_id, kind=resource.kind,
                                             resource_id=resource.id, details=resource.details,
                                             created_at=audit.utc_now()))
            else:
                row.details = resource.details

    def released(self, resource: Resource) -> None:
        with self.db.transaction() as session:
            for row in session.scalars(select(ProviderResource).where(
                    ProviderResource.launch_id == self.launch_id, ProviderResource.kind == resource.kind,
                    ProviderResource.resource_id == resource.id, ProviderResource.released_at.is_(None))):
                row.released_at = audit.utc_now()


def _release(db: Database, provider, launch_id: int, ctx: audit.Context) -> list[str]:
    """Release what a launch still holds; returns the kinds left unreleased (empty: all gone)."""
    recorder = _Recorder(db, launch_id, ctx)
    with db.transaction() as session:
        held = [Resource(r.kind, r.resource_id, r.details) for r in unreleased(session, launch_id)]
    try:
        provider.release(held, recorder.released)
    except ProviderError:
        pass  # what is left stays listed
    with db.transaction() as session:
        return [f"{r.kind} {r.resource_id}" for r in unreleased(session, launch_id)]


def _fail(db: Database, provider, launch_id: int, ctx: audit.Context, error: ProviderError) -> None:
    left = _release(db, provider, launch_id, ctx)
    with db.transaction() as session:
        launch = session.get_one(Launch, launch_id)
        launch.state, launch.error, launch.finished_at = "failed", str(error), audit.utc_now()
        audit.record(session, ctx, "host.launch-failed", "launch", [launch.host_name, launch.provider.name],
                     error=str(error)[:500], quota=error.quota, unreleased=left)


def launch_host(db: Database, ctx: audit.Context, provider_name: str, region: str, *,
                ports: tuple[int, ...] = (443,), readiness: Callable[[Machine], Answer] | None = None) -> Launched:
    with db.transaction() as session:
        row = provider_by_name(session, provider_name)
        provider = open_provider(session, row)
        country = provider.country(region)
        if not country:
            raise ConfigError([ConfigProblem("--region", f"{region!r} is not a region of provider {row.name} "
                                                         f"({row.kind})")])
        name = _host_name(session, row.name, region)
        host_private, host_public = _openssh_pair() if row.kind != "ssh" else ("", "")
        launch = Launch(provider_id=row.id, host_name=name, region=region, state="pending",
                        ssh_host_key=host_public or None, created_at=ctx.now)
        session.add(launch)
        session.flush()
        launch_id, public_key = launch.id, row.ssh_public_key
        audit.record(session, ctx, "host.launch-start", "launch", [name, row.name], region=region)
    request = LaunchRequest(name, region, tuple(ports), public_key, host_private, host_public)
    try:
        machine = provider.launch(request, _Recorder(db, launch_id, ctx).created)
        answer = (readiness or READINESS)(machine)
        with db.transaction() as session:
            launch = session.get_one(Launch, launch_id)
            hosts.add_host(session, ctx, name, answer.management_ip, country, provider=provider_name,
                           datacenter=region, ssh_port=answer.ssh_port, ssh_username=machine.ssh_username,
                           ssh_host_key=answer.ssh_host_key)
            launch.state, launch.finished_at = "done", audit.utc_now()
            audit.record(session, ctx, "host.launch", "host", [name, provider_name], region=region,
                         resources=[r.kind for r in unreleased(session, launch_id)])
    except OnehopError as error:  # the provider, the readiness step, or recording the host said no
        _fail(db, provider, launch_id, ctx, error if isinstance(error, ProviderError) else ProviderError(str(error)))
        raise
    return Launched(name, launch_id, region, country, answer.public_ip)


def launch_of(session: Session, host_name: str) -> Launch | None:
    return session.scalars(select(Launch).where(Launch.host_name == host_name)).one_or_none()


def recent_connections(session: Session, host: Host, days: int = 2) -> int:
    """Completed tunnels of the host's servers on the last ``days`` days with stats."""
    last = session.scalar(select(func.max(StatsEvent.day)))
    if last is None:
        return 0
    from datetime import timedelta
    server_ids = select(Server.id).where(Server.host_id == host.id)
    return session.scalar(select(func.count()).select_from(StatsEvent).where(
        StatsEvent.server_id.in_(server_ids), StatsEvent.event_name == "server_tunnel",
        func.coalesce(StatsEvent.handshake_completed, True), StatsEvent.day >= last - timedelta(days=days - 1),
        StatsEvent.client_platform != "onehop_deploy_check")) or 0


def destroy_host(db: Database, ctx: audit.Context, host_name: str, *, force: bool = False) -> dict:
    """Archive the host, retire its servers, release what its launch created (and only that)."""
    from . import lifecycle
    with db.transaction() as session:
        host = session.scalars(select(Host).where(func.lower(Host.name) == host_name.lower())).one_or_none()
        launch = launch_of(session, host.name) if host is not None else None
        if host is None or launch is None:
            raise NotFound(f"{host_name!r} is not a host launched from a provider (host remove archives "
                           "others; their machines are yours to wipe)")
        users = recent_connections(session, host)
        if users and not force and host.deleted_at is None:
            raise Conflict(f"host {host.name} still carries users ({users} connections in the last stats): "
                           "not destroyed (--force to destroy anyway)")
        retired = lifecycle.remove_host(session, ctx, host) if host.deleted_at is None else []
        launch.state = "destroying"
        provider = open_provider(session, launch.provider)
        launch_id, name = launch.id, host.name
    left = _release(db, provider, launch_id, ctx)
    with db.transaction() as session:
        launch = session.get_one(Launch, launch_id)
        released = [r.kind for r in session.scalars(select(ProviderResource).where(
            ProviderResource.launch_id == launch_id, ProviderResource.released_at.is_not(None)))]
        if not left:
            launch.state = "destroyed"
        audit.record(session, ctx, "host.destroy" if not left else "host.destroy-incomplete", "host",
                     [name] + retired, released=released, unreleased=left)
    if left:
        raise ProviderError(f"host {name}: could not release {', '.join(left)}; run host destroy again")
    return {"host": name, "retired_servers": retired, "released": released}


STALE_PENDING = 3600.0  # a launch pending this long was interrupted (the process died)


def cleanup_failed(db: Database, ctx: audit.Context) -> list[str]:
    """Release what failed launches still hold (a rerun finishing the job); a launch left
    ``pending`` by a process that died is closed as failed first."""
    from datetime import timedelta
    with db.transaction() as session:
        cutoff = ctx.now - timedelta(seconds=STALE_PENDING)
        for stale in session.scalars(select(Launch).where(Launch.state == "pending", Launch.created_at < cutoff)):
            stale.state, stale.error, stale.finished_at = "failed", "interrupted while pending", ctx.now
            audit.record(session, ctx, "host.launch-failed", "launch", [stale.host_name, stale.provider.name],
                         error="interrupted while pending", quota=False, unreleased=[
                             f"{r.kind} {r.resource_id}" for r in unreleased(session, stale.id)])
    with db.transaction() as session:
        failed = [(row.id, open_provider(session, row.provider)) for row in session.scalars(
            select(Launch).where(Launch.state == "failed"))
            if unreleased(session, row.id)]
    left = []
    for launch_id, provider in failed:
        left += _release(db, provider, launch_id, ctx)
    return left


def settings_json(text: str | None) -> dict:
    return json.loads(text) if text else {}
