"""Server lifecycle: replacing a channel's servers, retiring, pruning, removing hosts.

As Psiphon's operators did it: new embedded servers for a channel *un-embed* its old
non-permanent ones (which keep running for clients that know them: "propagation"
servers), new discovery servers *end* the channel's current discovery windows. Prune
retires discovery servers whose window ended long ago and propagation servers
un-embedded long ago (ages per channel), and archives hosts left without servers.
Nothing is deleted: retired servers and removed hosts keep their IDs forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .errors import Conflict
from .hosts import live_server_count
from .models import Channel, Host, Server


@dataclass(frozen=True)
class ReplaceResult:
    unembedded: tuple[str, ...]
    windows_ended: tuple[str, ...]


def _live(session: Session, channel: Channel) -> list[Server]:
    query = select(Server).where(Server.channel_id == channel.id, Server.retired_at.is_(None))
    return list(session.scalars(query.order_by(Server.created_at, Server.id)))


def replace(session: Session, ctx: audit.Context, channel: Channel, new: list[Server]) -> ReplaceResult:
    """Make ``new`` (servers of ``channel``) the channel's current servers."""
    for server in new:
        if server.channel_id != channel.id or server.retired_at is not None:
            raise Conflict(f"server {server.id} is not a live server of channel {channel.id}")
    new_ids = {s.id for s in new}
    others = [s for s in _live(session, channel) if s.id not in new_ids]
    unembedded, ended = [], []
    if any(s.is_embedded for s in new):
        for server in others:
            if server.is_embedded and not server.is_permanent:
                server.is_embedded, server.unembedded_at = False, ctx.now
                unembedded.append(server.id)
    if any(s.discovery_start is not None for s in new):
        for server in others:
            start, end = server.discovery_start, server.discovery_end
            if start is not None and end is not None and start <= ctx.now < end:
                server.discovery_end = ctx.now
                ended.append(server.id)
    audit.record(session, ctx, "channel.replace", "channel", [channel.id] + sorted(new_ids),
                 unembedded=unembedded, windows_ended=ended)
    return ReplaceResult(tuple(unembedded), tuple(ended))


def _retire(server: Server, ctx: audit.Context) -> None:
    server.retired_at = ctx.now
    if server.is_embedded:
        server.is_embedded, server.unembedded_at = False, ctx.now
    if server.discovery_end is not None and server.discovery_end > ctx.now:
        server.discovery_end = max(ctx.now, server.discovery_start or ctx.now)


def retire(session: Session, ctx: audit.Context, server: Server, reason: str = "") -> Server:
    if server.retired_at is not None:
        raise Conflict(f"server {server.id} is already retired")
    _retire(server, ctx)
    audit.record(session, ctx, "server.retire", "server", [server.id], reason=reason)
    return server


def remove_host(session: Session, ctx: audit.Context, host: Host) -> list[str]:
    """Archive ``host`` (its name is never reused) and retire its live servers."""
    query = select(Server).where(Server.host_id == host.id, Server.retired_at.is_(None))
    retired = []
    for server in session.scalars(query):
        _retire(server, ctx)
        retired.append(server.id)
    host.deleted_at = ctx.now
    audit.record(session, ctx, "host.remove", "host", [host.name] + retired)
    return retired


@dataclass(frozen=True)
class PruneResult:
    retired: tuple[str, ...] = ()
    hosts_removed: tuple[str, ...] = ()
    details: dict = field(default_factory=dict)


def prune_candidates(session: Session, ctx: audit.Context) -> list[tuple[Server, str]]:
    """(server, why) for every server prune would retire, in database order."""
    found = []
    for channel in session.scalars(select(Channel).order_by(Channel.created_at)):
        discovery_cutoff = ctx.now - timedelta(days=channel.max_discovery_age_days)
        propagation_cutoff = ctx.now - timedelta(days=channel.max_propagation_age_days)
        for server in _live(session, channel):
            if server.discovery_end is not None and server.discovery_end <= discovery_cutoff:
                found.append((server, "discovery window ended"))
            elif (server.discovery_start is None and not server.is_embedded and not server.is_permanent
                  and (server.unembedded_at or server.created_at) <= propagation_cutoff):
                found.append((server, "un-embedded propagation server"))
    return found


def prune(session: Session, ctx: audit.Context, dry_run: bool = False) -> PruneResult:
    candidates = prune_candidates(session, ctx)
    details = {server.id: why for server, why in candidates}
    if dry_run:
        return PruneResult(tuple(details), (), details)
    hosts: dict[int, Host] = {}
    for server, _why in candidates:
        _retire(server, ctx)
        hosts[server.host_id] = server.host
    session.flush()
    removed = []
    for host in hosts.values():
        if host.deleted_at is None and live_server_count(session, host) == 0:
            host.deleted_at = ctx.now
            removed.append(host.name)
    if details or removed:
        audit.record(session, ctx, "prune", "server", sorted(details), hosts_removed=removed)
    return PruneResult(tuple(details), tuple(removed), details)
