"""Handlers of the file-producing verbs: export, publish, build-client, discovery simulate.

They read the database once into a :class:`~onehop.network.state.NetworkState`, do
the (possibly long) file work outside any transaction, and record what they did
(publications, the audit trail) in a short transaction afterwards.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from ..core.discovery import DiscoveryServer
from ..errors import ConfigError, ConfigProblem
from . import audit, lookup
from .builds import UPGRADE_SUFFIX, Builder, default_cache_dir
from .commands import session_for
from .entries import EntryBook
from .export import export_network
from .lists import discovery_pool
from .publish import Publisher, build_format, build_path, build_spec, record, remote_list_path
from .render import output, table
from .render import record as render_record
from .simulate import random_hmac_key, simulate, synthetic_pool
from .state import NetworkState, load_state
from .targets import join_url, open_target
from .upgrades import published_packages


def _cache(args) -> Path:
    return Path(args.build_cache).expanduser() if args.build_cache else default_cache_dir()


def _wheels(args) -> str:
    """Where the builds' pinned runtime comes from: installed | pypi | a wheelhouse directory."""
    wheels = getattr(args, "wheels", None) or "installed"
    if wheels not in ("installed", "pypi"):
        wheels = str(Path(wheels).expanduser().resolve())
        if not Path(wheels).is_dir():
            raise ConfigError([ConfigProblem("--wheels", f"{wheels} is not a directory of wheels")])
    return wheels


def export(args) -> int:
    ctx = audit.Context()
    with session_for(args) as session:
        state = load_state(session, ctx.now)
    result = export_network(state, Path(args.out).expanduser(), base_url=args.base_url, cache_dir=_cache(args))
    with session_for(args) as session:
        audit.record(session, ctx, "export", "export", [], out_dir=str(Path(args.out).resolve()),
                     servers=len(result.servers), written=len(result.written), removed=list(result.removed))
    human = (f"exported {len(result.servers)} servers to {result.out_dir}: {len(result.written)} files written, "
             f"{result.unchanged} unchanged, {len(result.removed)} retired server dirs removed, "
             f"{result.responder_addresses} responder addresses ({result.attachments} attachments)")
    output(args.json, result.as_dict(), human)
    return 0


def publish(args) -> int:
    ctx = audit.Context()
    target = open_target(args.to, base_url=args.base_url, s3_endpoint=args.s3_endpoint)
    with session_for(args) as session:
        state = load_state(session, ctx.now)
        packages = [] if args.no_builds else published_packages(session)
    builder = None if args.no_builds else Builder(_cache(args), _wheels(args))
    publisher = Publisher(state, target, builder, packages, getattr(args, "format", None))
    for warning in publisher.warnings:
        print(f"onehop: warning: {warning}", file=sys.stderr)
    try:
        items = publisher.run()
    finally:
        if builder is not None:
            builder.close()
    with session_for(args) as session:
        record(session, ctx, target, items)
    rows = [item.as_dict() for item in items]
    output(args.json, rows, table(rows, [("KIND", "kind"), ("CHANNEL", "channel"), ("CHANGED", "changed"),
                                         ("URL", "url")]))
    return 0


def _published_urls(state: NetworkState, kind: str, channel_id: str, campaign_ids: set[str]) -> tuple[str, ...]:
    newest: dict[str, tuple] = {}
    for item in state.publications:
        if item.kind == kind and item.channel_id == channel_id and (
                kind == "remote-server-list" or item.campaign_id in campaign_ids):
            newest[item.target] = (item.published_at, item.url)
    return tuple(url for _, url in sorted(newest.values(), reverse=True))


def _client_urls(state: NetworkState, channel_id: str, sponsor_id: str, base_url: str | None,
                 fmt: str = "zipapp") -> tuple[tuple[str, ...], tuple[str, ...]]:
    campaigns = [c for c in state.campaigns if c.channel_id == channel_id and c.sponsor_id == sponsor_id]
    if base_url:
        remote = (join_url(base_url, remote_list_path(state.channel(channel_id).site_id)),)
        upgrade = tuple(join_url(base_url, build_path(c.site_id, fmt) + UPGRADE_SUFFIX)
                        for c in campaigns[:1])
        return remote, upgrade
    ids = {c.id for c in campaigns}
    return (_published_urls(state, "remote-server-list", channel_id, ids),
            _published_urls(state, "upgrade-package", channel_id, ids))


def build_client(args) -> int:
    with session_for(args) as session:
        channel, sponsor = lookup.channel(session, args.channel), lookup.sponsor(session, args.sponsor)
        state = load_state(session, audit.utc_now())
    fmt = build_format(state, getattr(args, "format", None))
    remote, upgrade = _client_urls(state, channel.id, sponsor.id, args.base_url, fmt)
    spec = build_spec(state, EntryBook.build(state.servers, state.keys), channel.id, sponsor.id, remote, upgrade)
    with Builder(_cache(args), _wheels(args)) as builder:
        result = builder.build(spec, state.keys, Path(args.out).expanduser(), fmt)
    data = {"path": str(result.path), "format": fmt, "channel": channel.id, "sponsor": sponsor.id,
            "sha256": result.sha256,
            "size": result.size, "client_version": spec.client_version, "servers": len(spec.server_list),
            "remote_server_list_urls": list(spec.remote_list_urls), "upgrade_urls": list(spec.upgrade_urls),
            "cached": result.cached}
    if not spec.remote_list_urls:
        print("onehop: warning: the build has no http(s) remote server list URL (publish to a public "
              "target or give --base-url)", file=sys.stderr)
    if not spec.server_list:
        print("onehop: warning: the build embeds no server (add one: `onehop network server add --host H "
              f"--channel {channel.name}`)" + ("; it cannot connect at all" if not spec.remote_list_urls
                                              else "; it connects only after fetching the remote server list"),
              file=sys.stderr)
    output(args.json, data, render_record(data))
    return 0


def _simulation_problems(args) -> list[ConfigProblem]:
    problems = []
    if not 1 <= args.attacker_ips <= 1_000_000:
        problems.append(ConfigProblem("--attacker-ips", "must be between 1 and 1000000"))
    if not 1 <= args.days <= 3650:
        problems.append(ConfigProblem("--days", "must be between 1 and 3650"))
    if any(n < 1 or n > 1_000_000 for n in args.servers or []):
        problems.append(ConfigProblem("--servers", "must be between 1 and 1000000"))
    return problems


def discovery_simulate(args) -> int:
    problems = _simulation_problems(args)
    if problems:
        raise ConfigError(problems)
    now = audit.utc_now().replace(minute=0, second=0, microsecond=0)
    rng = random.Random(args.seed)
    pools: list[tuple[list[DiscoveryServer], str]] = []
    if args.servers:
        pools = [(synthetic_pool(n, now, args.days), random_hmac_key(rng)) for n in args.servers]
    else:
        with session_for(args) as session:
            state = load_state(session, now)
        pool = [DiscoveryServer(s.ip_address, "", s.discovery_start, s.discovery_end) for s in discovery_pool(state)
                if s.discovery_start and s.discovery_end]  # always, in the pool; said again for the types
        if not pool:
            raise ConfigError([ConfigProblem("--servers", "the database has no discovery servers: "
                                             "add some or simulate a pool with --servers N")])
        pools = [(pool, state.keys.discovery_hmac.private_key)]
    strategies = ("classic", "consistent") if args.strategy == "both" else (args.strategy,)
    rows = [simulate(pool, strategy, key, args.attacker_ips, args.days, now, random.Random(args.seed)).as_dict()
            for pool, key in pools for strategy in strategies]
    human = table(rows, [("STRATEGY", "strategy"), ("POOL", "pool"), ("BUCKETS", "buckets"),
                         ("ATTACKER IPS", "attacker_ips"), ("DAYS", "days"), ("ATTACKER LEARNS", "attacker_learned"),
                         ("FRACTION", "attacker_fraction"), ("ORDINARY USER LEARNS", "ordinary_user_learned")])
    output(args.json, rows, human + "\n" + "\n".join(_summary(row) for row in rows))
    return 0


def _summary(row: dict) -> str:
    return (f"{row['strategy']}, {row['pool']} servers: an adversary with {row['attacker_ips']} addresses in "
            f"distinct /24s learns {row['attacker_learned']} ({row['attacker_fraction']:.0%}) in {row['days']} "
            f"days; an ordinary user learns {row['ordinary_user_learned']}")
