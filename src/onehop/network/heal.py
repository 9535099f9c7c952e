"""``onehop network heal``: replace blocked servers, get the replacements to the users
who lost them, without revealing more of the network than a normal replacement does.

**Plan** (``--dry-run`` prints it), from ``stats report``'s likely-block flags, one
decision per flagged server:

* ``replace``: a ``likely block`` (the server still logs events, its connections from a
  region collapsed): launch a host with the provider and provider region the blocked
  server's host came from (hosts added by hand: ``--provider`` and a region of it in the
  host's country), add a server of the same channel, kind and ports, and take the
  blocked one out of circulation: an embedded server is un-embedded (it keeps serving
  clients elsewhere that know it), a discovery server's window ends (the new one gets
  what was left of it);
* ``leave``: ``silent`` servers (down, or their logs were not ingested: not a block),
  servers already out of the builds, servers heal already replaced, servers without a
  provider to launch from, and what exceeds the cap (``--max-hosts``, default the
  ``heal-max-hosts-per-run`` setting): those wait for the next run.

**Run**: every step is committed and audited as it happens (``heal.*`` actions) and its
progress kept per server (``heal_actions``: planned -> launched -> replaced -> done), so
a run that a provider error or quota stopped is finished by running heal again, never
doubled. Then export (``--export DIR``), publish the lists (``--publish-to``), and
deploy each new host. A host is destroyed only when heal replaced all its servers and
the last stats show no connection on it (never a host that still carries users).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import OnehopError
from . import audit, launch, servers
from .db import Database
from .models import HealAction, Host, Launch, Server
from .providers import Answer, Machine
from .stats.report import BlockCriteria, likely_blocks

if TYPE_CHECKING:
    from .deploy.run import DeployOptions

DEFAULT_MAX_HOSTS = 3
FINISHED = ("done",)


@dataclass
class Decision:
    server: str
    host: str
    channel: str
    kind: str
    regions: list[str]
    action: str                      # replace | leave
    reason: str
    provider: str | None = None
    provider_region: str | None = None
    state: str | None = None         # progress of an earlier run, if any

    def as_dict(self) -> dict:
        return asdict(self)


def _launch_source(session: Session, host: Host, fallback: str | None) -> tuple[str | None, str | None]:
    """(provider, provider region) for a replacement of a server on ``host``."""
    row = launch.launch_of(session, host.name)
    if row is not None:
        return row.provider.name, row.region
    if fallback is None:
        return None, None
    provider = launch.open_provider(session, launch.provider_by_name(session, fallback))
    return fallback, provider.region_for(host.region)


def _progress(session: Session, server_id: str) -> HealAction | None:
    return session.scalars(select(HealAction).where(HealAction.server_id == server_id)
                           .order_by(HealAction.id.desc())).first()


def plan(session: Session, until: date, criteria: BlockCriteria, max_hosts: int,
         fallback_provider: str | None = None) -> list[Decision]:
    flagged: dict[str, dict] = {}
    for row in likely_blocks(session, until, criteria):
        item = flagged.setdefault(row["server"], {"kinds": set(), "regions": []})
        item["kinds"].add(row["kind"])
        item["regions"].append(row["region"])
    decisions, budget = [], max_hosts
    for server_id, item in sorted(flagged.items()):
        server = session.get_one(Server, server_id)
        if server is None:
            continue
        decision = Decision(server.id, server.host.name, server.channel_id, servers.server_kind(server),
                            sorted(item["regions"]), "leave", "")
        decisions.append(decision)
        progress = _progress(session, server.id)
        decision.state = progress.state if progress else None
        if progress is not None and progress.state in FINISHED:
            decision.reason = f"already replaced by {progress.replacement_id}"
        elif progress is not None and progress.state == "replaced":
            decision.action, decision.reason = "replace", f"replaced by {progress.replacement_id}; deploy pending"
        elif "likely block" not in item["kinds"]:
            decision.reason = "silent: no events lately (down, or logs not ingested), not a block"
        elif decision.kind in ("retired", "propagation"):
            decision.reason = f"{decision.kind}: already out of the builds and the discovery pool"
        else:
            decision.provider, decision.provider_region = _launch_source(session, server.host, fallback_provider)
            if decision.provider is None or decision.provider_region is None:
                decision.reason = ("no provider to launch a replacement from (host added by hand: "
                                   "give --provider with a region in its country)")
            elif budget <= 0 and (progress is None or progress.state == "planned"):
                decision.reason = f"cap reached ({max_hosts} hosts per run): next run"
            else:
                if progress is None or progress.state == "planned":
                    budget -= 1
                decision.action = "replace"
                decision.reason = f"blocked in {', '.join(decision.regions)}"
    return decisions


# -- run --------------------------------------------------------------------------

@dataclass
class HealOptions:
    until: date
    criteria: BlockCriteria = field(default_factory=BlockCriteria)
    max_hosts: int = DEFAULT_MAX_HOSTS
    provider: str | None = None
    export_dir: Path | None = None
    publish_to: str | None = None
    base_url: str | None = None
    s3_endpoint: str | None = None
    deploy: bool = True
    deploy_options: DeployOptions | None = None
    source: str | None = None
    readiness: Callable[[Machine], Answer] | None = None


@dataclass
class HealResult:
    plan: list[dict]
    replaced: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    deployed: list[dict] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    exported: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _begin(db: Database, ctx: audit.Context, decision: Decision) -> int:
    with db.transaction() as session:
        action = _progress(session, decision.server)
        if action is None or action.state in FINISHED:
            server = session.get_one(Server, decision.server)
            action = HealAction(server_id=server.id, region=",".join(decision.regions)[:8], action="replace",
                                state="planned", attempts=0, created_at=ctx.now, updated_at=ctx.now)
            session.add(action)
        action.attempts += 1
        action.updated_at = audit.utc_now()
        session.flush()
        audit.record(session, ctx, "heal.start", "server", [decision.server], regions=decision.regions,
                     state=action.state, attempt=action.attempts)
        return action.id


def _set_error(db: Database, ctx: audit.Context, action_id: int, step: str, error: Exception) -> dict:
    with db.transaction() as session:
        action = session.get_one(HealAction, action_id)
        action.error, action.updated_at = f"{step}: {error}"[:1000], audit.utc_now()
        audit.record(session, ctx, f"heal.{step}-failed", "server", [action.server_id],
                     error=str(error)[:500], state=action.state, quota=getattr(error, "quota", False))
        return {"server": action.server_id, "step": step, "error": str(error),
                "quota": getattr(error, "quota", False)}


def _launch(db: Database, ctx: audit.Context, action_id: int, decision: Decision, options: HealOptions) -> str:
    with db.transaction() as session:
        server = session.get_one(Server, decision.server)
        ports = tuple(p for p in (server.ossh_port, server.ssh_port) if p)
    if decision.provider is None or decision.provider_region is None:
        raise OnehopError(f"no provider to launch a replacement for {decision.server}")
    done = launch.launch_host(db, ctx, decision.provider, decision.provider_region, ports=ports,
                              readiness=options.readiness)
    with db.transaction() as session:
        action = session.get_one(HealAction, action_id)
        action.launch_id, action.state, action.error, action.updated_at = done.launch_id, "launched", None, \
            audit.utc_now()
        audit.record(session, ctx, "heal.launched", "server", [decision.server, done.host])
    return done.public_ip


def _replace(db: Database, ctx: audit.Context, action_id: int, public_ip: str | None) -> str:
    """Add the replacement server on the launched host; take the blocked one out."""
    with db.transaction() as session:
        action = session.get_one(HealAction, action_id)
        old = session.get_one(Server, action.server_id)
        host = session.scalars(select(Host).where(
            Host.name == session.get_one(Launch, action.launch_id).host_name)).one()
        days = None
        if old.discovery_start is not None:
            left = (old.discovery_end or ctx.now) - ctx.now
            days = max(1, min(servers.MAX_DISCOVERY_DAYS, left.days + (1 if left.seconds else 0)))
        spec = servers.ServerSpec(ip=public_ip or host.ip_address, ossh_port=old.ossh_port, ssh_port=old.ssh_port,
                                  discovery_days=days, permanent=old.is_permanent, allow_bogons=old.allow_bogons)
        new = servers.add_server(session, ctx, host, old.channel, spec)
        if old.is_embedded:
            old.is_embedded, old.unembedded_at = False, ctx.now
        if old.discovery_end is not None and old.discovery_end > ctx.now:
            old.discovery_end = max(ctx.now, old.discovery_start or ctx.now)
        action.replacement_id, action.state, action.error, action.updated_at = new.id, "replaced", None, \
            audit.utc_now()
        audit.record(session, ctx, "heal.replace", "server", [old.id, new.id, host.name],
                     kind=servers.server_kind(new), old_kind=servers.server_kind(old))
        return new.id


def _step_server(db: Database, ctx: audit.Context, decision: Decision, options: HealOptions,
                 result: HealResult) -> None:
    action_id = _begin(db, ctx, decision)
    with db.transaction() as session:
        state = session.get_one(HealAction, action_id).state
    public_ip = None
    if state == "planned":
        try:
            public_ip = _launch(db, ctx, action_id, decision, options)
        except OnehopError as exc:
            result.errors.append(_set_error(db, ctx, action_id, "launch", exc))
            return
        state = "launched"
    if state == "launched":
        try:
            new_id = _replace(db, ctx, action_id, public_ip)
        except OnehopError as exc:
            result.errors.append(_set_error(db, ctx, action_id, "replace", exc))
            return
        result.replaced.append({"server": decision.server, "replacement": new_id})


def _pending_hosts(db: Database) -> dict[str, list[int]]:
    """Launched hosts whose replacement servers still wait for a deploy."""
    with db.transaction() as session:
        pending: dict[str, list[int]] = {}
        for action in session.scalars(select(HealAction).where(HealAction.state == "replaced")):
            host = session.get_one(Launch, action.launch_id).host_name
            pending.setdefault(host, []).append(action.id)
        return pending


def _publish(db: Database, ctx: audit.Context, options: HealOptions, result: HealResult) -> None:
    from .publish import Publisher, record
    from .state import load_state
    from .targets import open_target
    assert options.publish_to, "run() publishes only when publish_to is set"
    target = open_target(options.publish_to, base_url=options.base_url, s3_endpoint=options.s3_endpoint)
    with db.transaction() as session:
        state = load_state(session, ctx.now)
    items = Publisher(state, target, None, []).run()
    with db.transaction() as session:
        record(session, ctx, target, items)
        audit.record(session, ctx, "heal.publish", "publish", [], target=target.name,
                     changed=[i.path for i in items if i.changed])
    result.published = [i.url for i in items if i.kind == "remote-server-list"]


def _export(db: Database, ctx: audit.Context, options: HealOptions, result: HealResult) -> None:
    from .export import export_network
    from .state import load_state
    with db.transaction() as session:
        state = load_state(session, ctx.now)
    assert options.export_dir is not None, "run() exports only when export_dir is set"
    done = export_network(state, options.export_dir)
    with db.transaction() as session:
        audit.record(session, ctx, "heal.export", "export", [], servers=len(done.servers), written=len(done.written))
    result.exported = len(done.servers)


def _deploy(db: Database, ctx: audit.Context, options: HealOptions, host_name: str, action_ids: list[int],
            result: HealResult) -> None:
    from .deploy.bundles import from_state
    from .deploy.run import DeployOptions, deploy_host
    from .deploy.wheel import constraints, local_wheel
    from .remote import ssh_target
    from .state import load_state
    with db.transaction() as session:
        host = session.scalars(select(Host).where(Host.name == host_name)).one()
        target = ssh_target(host)
        row = launch.launch_of(session, host_name)
        if row is None:
            raise OnehopError(f"host {host_name} has no launch record to deploy with")
        key = row.provider.ssh_private_key
        bundles = from_state(load_state(session, ctx.now), host_name)
    base = options.deploy_options or DeployOptions()
    with tempfile.TemporaryDirectory(prefix="onehop-heal-") as tmp:
        key_file = os.path.join(tmp, "management_key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(key)
        deploy_options = DeployOptions(**{**asdict(base), "ssh_keys": (key_file, *base.ssh_keys),
                                          "root": base.root.replace("{host}", host_name)})
        try:
            done = asyncio.run(deploy_host(target, bundles, lambda: local_wheel(options.source),
                                           constraints(True), deploy_options))
        except OnehopError as exc:
            for action_id in action_ids:
                result.errors.append(_set_error(db, ctx, action_id, "deploy", exc))
            return
    data = done.as_dict()
    with db.transaction() as session:
        for action_id in action_ids:
            action = session.get_one(HealAction, action_id)
            if done.ok:
                action.state, action.error, action.updated_at = "done", None, audit.utc_now()
        audit.record(session, ctx, "heal.deploy", "host", [host_name], servers=[s["server"] for s in data["servers"]],
                     ok=done.ok)
    result.deployed.append({"host": host_name, "ok": done.ok, "servers": data["servers"]})
    if not done.ok:
        result.errors.append({"server": None, "step": "deploy", "error": f"host {host_name}: a check failed",
                              "quota": False})


def _destroy_idle(db: Database, ctx: audit.Context, result: HealResult) -> None:
    """Hosts whose every live server heal took out of circulation and that carry no users."""
    with db.transaction() as session:
        candidates = []
        for action in session.scalars(select(HealAction).where(HealAction.state == "done")):
            host = session.get_one(Server, action.server_id).host
            if host.deleted_at is None and launch.launch_of(session, host.name) is not None:
                candidates.append(host)
        idle = []
        for host in {h.id: h for h in candidates}.values():
            live = [s for s in session.scalars(select(Server).where(Server.host_id == host.id,
                                                                    Server.retired_at.is_(None)))]
            healed = {a.server_id for a in session.scalars(select(HealAction).where(HealAction.state == "done"))}
            if all(s.id in healed for s in live) and launch.recent_connections(session, host) == 0:
                idle.append(host.name)
    for name in idle:
        try:
            launch.destroy_host(db, ctx, name)
            result.destroyed.append(name)
        except OnehopError as exc:
            result.errors.append({"server": None, "step": "destroy", "error": str(exc), "quota": False})


def run(db: Database, ctx: audit.Context, options: HealOptions, dry_run: bool = False) -> HealResult:
    if not dry_run:
        launch.cleanup_failed(db, ctx)
    with db.transaction() as session:
        decisions = plan(session, options.until, options.criteria, options.max_hosts, options.provider)
        if not dry_run:
            audit.record(session, ctx, "heal.plan", "heal", [d.server for d in decisions if d.action == "replace"],
                         left={d.server: d.reason for d in decisions if d.action != "replace"})
    result = HealResult([d.as_dict() for d in decisions])
    if dry_run:
        return result
    for decision in decisions:
        if decision.action == "replace":
            _step_server(db, ctx, decision, options, result)
    pending = _pending_hosts(db)
    if pending or result.replaced:
        if options.export_dir is not None:
            _export(db, ctx, options, result)
        if options.publish_to:
            _publish(db, ctx, options, result)
        if options.deploy:
            for host_name, action_ids in sorted(pending.items()):
                _deploy(db, ctx, options, host_name, action_ids, result)
    _destroy_idle(db, ctx, result)
    return result
