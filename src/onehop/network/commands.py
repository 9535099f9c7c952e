"""Handlers of the database verbs of ``onehop network`` (parsers are in ``cli``).

Each handler opens the database (checking the schema is at head), does its work in
one transaction together with its audit record, and prints only after the commit:
a table for people or, with ``--json``, the record(s) for scripts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from ..errors import ConfigError, ConfigProblem
from . import audit, channels, hosts, keys, lifecycle, lookup, servers, settings, sponsors, upgrades, versions
from .db import Database
from .render import output, record, table

SERVER_COLUMNS = [("ID", "id"), ("KIND", "kind"), ("CHANNEL", "channel_name"), ("HOST", "host"),
                  ("REGION", "region"), ("OSSH", "ossh_port"), ("SSH", "ssh_port"),
                  ("DISCOVERY UNTIL", "discovery_end")]


@contextmanager
def session_for(args, *, check_schema: bool = True) -> Iterator[Session]:
    db = Database.open(args.db, check_schema=check_schema)
    try:
        with db.transaction() as session:
            yield session
    finally:
        db.close()


def run(args, work: Callable[[Session, audit.Context], Any], human: Callable[[Any], str]) -> int:
    """Do ``work`` in one transaction, then print its result."""
    with session_for(args) as session:
        result = work(session, audit.Context())
    output(args.json, result, human(result))
    return 0


# -- init, keys, settings, audit ------------------------------------------------------

def init(args) -> int:
    keys.check_rsa_bits(args.rsa_bits)
    ctx = audit.Context()
    db = Database.open(args.db, create=True, check_schema=False)
    try:
        before, head = db.upgrade(lambda s, old, new: audit.record(
            s, ctx, "schema.upgrade", "schema", [new], previous=old))
        with db.transaction() as session:
            created = keys.ensure_keys(session, ctx, args.rsa_bits)
    finally:
        db.close()
    result = {"database": db.where, "previous_revision": before, "revision": head, "keys_created": created}
    human = (f"{db.where}: schema at {head}" + (f" (was {before})" if before and before != head else "")
             + (f"; created keys: {', '.join(created)}" if created else ""))
    output(args.json, result, human)
    return 0


def keys_show(args) -> int:
    with session_for(args) as session:
        public = keys.load(session).public_keys()
    output(args.json, public, record(public))
    return 0


def keys_rotate(args) -> int:
    def work(session, ctx):
        new = keys.rotate(session, ctx, args.kind, args.rsa_bits)
        return {"kind": new.kind, "id": new.id, "public_key": new.public_key or None}
    return run(args, work, lambda r: f"rotated the {r['kind']} key; clients need new builds for "
               "signature and encryption keys, servers a new export")


def settings_show(args) -> int:
    with session_for(args) as session:
        values = settings.all_settings(session)
    output(args.json, values, record(values))
    return 0


def settings_set(args) -> int:
    return run(args, lambda s, ctx: {args.name: settings.put(s, ctx, args.name, args.value)},
               lambda r: record(r))


def audit_list(args) -> int:
    with session_for(args) as session:
        rows = [audit.as_dict(r) for r in audit.recent(session, max(1, args.limit))]
    output(args.json, rows, table(rows, [("AT", "at"), ("ACTOR", "actor"), ("ACTION", "action"),
                                        ("OBJECTS", "object_ids"), ("DETAILS", "details")]))
    return 0


# -- sponsors, channels, campaigns ----------------------------------------------------------

def sponsor_add(args) -> int:
    return run(args, lambda s, ctx: sponsors.as_dict(sponsors.add_sponsor(
        s, ctx, args.name, args.home_page, args.mobile_home_page)), record)


def sponsor_list(args) -> int:
    with session_for(args) as session:
        rows = [sponsors.as_dict(s) for s in sponsors.list_sponsors(session)]
    output(args.json, rows, table(rows, [("ID", "id"), ("NAME", "name"), ("HOME PAGES", "home_pages")]))
    return 0


def sponsor_homepage(args) -> int:
    def work(session, ctx):
        sponsor = lookup.sponsor(session, args.sponsor)
        if args.add:
            sponsors.add_home_page(session, ctx, sponsor, args.add, args.mobile)
        elif args.remove:
            sponsors.remove_home_page(session, ctx, sponsor, args.remove, args.region, args.mobile)
        return sponsors.as_dict(sponsor)
    return run(args, work, lambda r: record(r, ["id", "name", "home_pages", "mobile_home_pages"]))


def channel_add(args) -> int:
    return run(args, lambda s, ctx: channels.channel_dict(channels.add_channel(
        s, ctx, args.name, args.max_discovery_age_days, args.max_propagation_age_days)), record)


def _counts(session: Session, channel) -> dict[str, int]:
    kinds = [servers.server_kind(s) for s in servers.list_servers(session, channel)]
    return {kind: kinds.count(kind) for kind in ("embedded", "permanent", "discovery", "propagation")}


def channel_list(args) -> int:
    with session_for(args) as session:
        rows = [channels.channel_dict(c, _counts(session, c)) for c in channels.list_channels(session)]
    output(args.json, rows, table(rows, [("ID", "id"), ("NAME", "name"), ("EMBEDDED", "embedded"),
                                         ("PERMANENT", "permanent"), ("DISCOVERY", "discovery"),
                                         ("PROPAGATION", "propagation")]))
    return 0


def channel_replace(args) -> int:
    def work(session, ctx):
        channel = lookup.channel(session, args.channel)
        result = lifecycle.replace(session, ctx, channel, [lookup.server(session, i) for i in args.server])
        return {"channel": channel.id, "unembedded": list(result.unembedded),
                "windows_ended": list(result.windows_ended)}
    return run(args, work, record)


def campaign_add(args) -> int:
    def work(session, ctx):
        campaign = channels.add_campaign(session, ctx, lookup.channel(session, args.channel),
                                         lookup.sponsor(session, args.sponsor), args.mechanism,
                                         args.email, args.language)
        return channels.campaign_dict(campaign)
    return run(args, work, record)


def campaign_list(args) -> int:
    with session_for(args) as session:
        channel = lookup.channel(session, args.channel) if args.channel else None
        rows = [channels.campaign_dict(c) for c in channels.list_campaigns(session, channel)]
    output(args.json, rows, table(rows, [("ID", "id"), ("CHANNEL", "channel_name"), ("SPONSOR", "sponsor_name"),
                                         ("MECHANISM", "mechanism"), ("ADDRESS", "email_address")]))
    return 0


# -- hosts, servers, lifecycle ---------------------------------------------------------

def host_add(args) -> int:
    return run(args, lambda s, ctx: hosts.host_dict(hosts.add_host(
        s, ctx, args.name, args.ip, args.region, provider=args.provider, datacenter=args.datacenter,
        ssh_port=args.ssh_port, ssh_username=args.ssh_user, ssh_host_key=args.ssh_host_key)), record)


def host_list(args) -> int:
    with session_for(args) as session:
        rows = [hosts.host_dict(h, hosts.live_server_count(session, h))
                for h in hosts.list_hosts(session, args.all)]
    output(args.json, rows, table(rows, [("NAME", "name"), ("REGION", "region"), ("PROVIDER", "provider"),
                                         ("DATACENTER", "datacenter"), ("SERVERS", "live_servers"),
                                         ("REMOVED", "deleted_at")]))
    return 0


def host_remove(args) -> int:
    def work(session, ctx):
        host = lookup.host(session, args.name)
        return {"host": host.name, "retired_servers": lifecycle.remove_host(session, ctx, host)}
    return run(args, work, record)


def server_add(args) -> int:
    spec = servers.ServerSpec(ip=args.ip, listen_ip=args.listen_ip,
                              ossh_port=None if args.no_ossh else args.ossh_port, ssh_port=args.ssh_port,
                              discovery_days=args.discovery_days, permanent=args.permanent,
                              allow_bogons=args.allow_bogons)

    def work(session, ctx):
        host, channel = lookup.host(session, args.host), lookup.channel(session, args.channel)
        server = servers.add_server(session, ctx, host, channel, spec)
        if args.replace:
            lifecycle.replace(session, ctx, channel, [server])
        return servers.server_dict(server)
    return run(args, work, record)


def server_list(args) -> int:
    with session_for(args) as session:
        channel = lookup.channel(session, args.channel) if args.channel else None
        rows = [servers.server_dict(s) for s in servers.list_servers(session, channel, args.all)]
    output(args.json, rows, table(rows, SERVER_COLUMNS))
    return 0


def server_retire(args) -> int:
    return run(args, lambda s, ctx: servers.server_dict(lifecycle.retire(
        s, ctx, lookup.server(s, args.server), args.reason)), record)


def prune(args) -> int:
    def work(session, ctx):
        result = lifecycle.prune(session, ctx, args.dry_run)
        return {"dry_run": args.dry_run, "retired": result.details, "hosts_removed": list(result.hosts_removed)}
    return run(args, work, record)


def _read_build(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError([ConfigProblem("--file", f"cannot read {path}: {exc.strerror}")]) from None
    if not data:
        raise ConfigError([ConfigProblem("--file", f"{path} is empty")])
    from .builds import format_of, verify_build  # the build tooling, only when a build is added
    from .errors import BuildError
    if format_of(data) == "standalone":
        try:
            verify_build(data, "standalone")  # a damaged or tampered standalone is never signed
        except BuildError as exc:
            raise ConfigError([ConfigProblem("--file", f"{path}: {exc}")]) from None
    return data


def _version_with_build(args) -> int:
    name = upgrades.check_name(args.name or os.path.basename(args.file))
    build = _read_build(args.file)
    with session_for(args) as session:
        plan = upgrades.plan_version(session, args.platform, args.version)
        upgrade_key = keys.load(session).upgrade
    artifacts = upgrades.make_packages(name, build, plan, upgrade_key)  # outside any transaction: slow
    ctx = audit.Context()
    with session_for(args) as session:
        row = upgrades.store(session, ctx, plan, args.description, name, build, artifacts)
        result = {**versions.version_dict(row), **upgrades.packages_dict(plan, name, build, artifacts)}
    lines = [record(result, ["id", "platform", "version", "description", "created_at"]),
             f"build: {name}, {len(build)} bytes"]
    for package in result["upgrade_packages"]:
        saving = f", {package['saving']:.0%} smaller than the full package" if package["saving"] is not None else ""
        lines.append(f"{package['kind']} package: {package['path']} ({package['size']} bytes{saving})")
    lines.append("publish uploads them; export makes servers offer the version to older clients")
    output(args.json, result, "\n".join(lines))
    return 0


def version_add(args) -> int:
    if args.file:
        return _version_with_build(args)
    if args.name:
        raise ConfigError([ConfigProblem("--name", "only with --file")])
    return run(args, lambda s, ctx: versions.version_dict(versions.add_version(
        s, ctx, args.platform, args.version, args.description)), record)


def version_list(args) -> int:
    with session_for(args) as session:
        built = upgrades.builds_by_version(session)
        rows = [{**versions.version_dict(v), "build": built.get(v.id)} for v in versions.list_versions(session)]
    for row in rows:
        row["build_text"] = f"{row['build']['name']} ({row['build']['size']} bytes)" if row["build"] else None
    output(args.json, [{k: v for k, v in r.items() if k != "build_text"} for r in rows],
           table(rows, [("PLATFORM", "platform"), ("VERSION", "version"), ("BUILD", "build_text"),
                        ("DESCRIPTION", "description"), ("ADDED", "created_at")]))
    return 0
