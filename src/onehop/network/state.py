"""One read of the database into frozen values that exports, lists and builds use.

Everything after :func:`load_state` is pure computation over these values, so an
export of thousands of servers costs a handful of queries, and tests and the
benchmark can build states without a database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from . import keys as network_keys
from . import settings as network_settings
from .channels import list_channels
from .hosts import provider_id
from .models import Campaign, Publication, Server, Sponsor
from .sponsors import pages_by_region
from .versions import by_platform


@dataclass(frozen=True)
class ServerRecord:
    id: str
    host: str
    region: str
    provider_id: str
    channel_id: str
    ip_address: str
    listen_ip_address: str | None
    ossh_port: int | None
    ssh_port: int | None
    ssh_username: str
    ssh_password: str
    ssh_private_key: str
    ssh_host_key: str
    obfuscated_ssh_key: str
    web_server_secret: str
    allow_bogons: bool
    embedded: bool
    permanent: bool
    discovery_start: datetime | None = None
    discovery_end: datetime | None = None


@dataclass(frozen=True)
class ChannelRecord:
    id: str
    name: str
    site_id: str


@dataclass(frozen=True)
class SponsorRecord:
    id: str
    name: str
    home_pages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mobile_home_pages: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignRecord:
    id: str
    channel_id: str
    sponsor_id: str
    mechanism: str
    email_address: str | None
    language: str | None
    site_id: str


@dataclass(frozen=True)
class PublicationRecord:
    target: str
    kind: str
    channel_id: str | None
    campaign_id: str | None
    path: str
    url: str
    sha256: str
    published_at: datetime


@dataclass(frozen=True)
class NetworkState:
    now: datetime
    keys: network_keys.NetworkKeys
    settings: dict[str, str]
    servers: tuple[ServerRecord, ...]               # live servers, database order
    retired_server_ids: frozenset[str] = frozenset()
    channels: tuple[ChannelRecord, ...] = ()
    sponsors: tuple[SponsorRecord, ...] = ()
    campaigns: tuple[CampaignRecord, ...] = ()
    client_versions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    publications: tuple[PublicationRecord, ...] = ()

    def channel(self, channel_id: str) -> ChannelRecord:
        return next(c for c in self.channels if c.id == channel_id)

    def sponsor(self, sponsor_id: str) -> SponsorRecord:
        return next(s for s in self.sponsors if s.id == sponsor_id)


def server_record(server: Server) -> ServerRecord:
    return ServerRecord(
        id=server.id, host=server.host.name, region=server.host.region,
        provider_id=provider_id(server.host.provider), channel_id=server.channel_id,
        ip_address=server.ip_address, listen_ip_address=server.listen_ip_address,
        ossh_port=server.ossh_port, ssh_port=server.ssh_port, ssh_username=server.ssh_username,
        ssh_password=server.ssh_password, ssh_private_key=server.ssh_private_key,
        ssh_host_key=server.ssh_host_key, obfuscated_ssh_key=server.obfuscated_ssh_key,
        web_server_secret=server.web_server_secret, allow_bogons=server.allow_bogons,
        embedded=server.is_embedded, permanent=server.is_permanent,
        discovery_start=server.discovery_start, discovery_end=server.discovery_end)


def _servers(session: Session) -> tuple[tuple[ServerRecord, ...], frozenset[str]]:
    query = select(Server).options(selectinload(Server.host)).order_by(Server.created_at, Server.id)
    live, retired = [], set()
    for server in session.scalars(query):
        if server.retired_at is None:
            live.append(server_record(server))
        else:
            retired.add(server.id)
    return tuple(live), frozenset(retired)


def _sponsors(session: Session) -> tuple[SponsorRecord, ...]:
    query = select(Sponsor).options(selectinload(Sponsor.home_pages)).order_by(Sponsor.created_at, Sponsor.id)
    return tuple(SponsorRecord(s.id, s.name,
                               {r: tuple(u) for r, u in pages_by_region(s, False).items()},
                               {r: tuple(u) for r, u in pages_by_region(s, True).items()})
                 for s in session.scalars(query))


def _campaigns(session: Session) -> tuple[CampaignRecord, ...]:
    query = select(Campaign).order_by(Campaign.created_at, Campaign.id)
    return tuple(CampaignRecord(c.id, c.channel_id, c.sponsor_id, c.mechanism, c.email_address,
                                c.language, c.site_id) for c in session.scalars(query))


def _publications(session: Session) -> tuple[PublicationRecord, ...]:
    query = select(Publication).order_by(Publication.published_at, Publication.id)
    return tuple(PublicationRecord(p.target, p.kind, p.channel_id, p.campaign_id, p.path, p.url, p.sha256,
                                   p.published_at) for p in session.scalars(query))


def load_state(session: Session, now: datetime) -> NetworkState:
    servers, retired = _servers(session)
    return NetworkState(
        now=now, keys=network_keys.load(session), settings=network_settings.all_settings(session),
        servers=servers, retired_server_ids=retired,
        channels=tuple(ChannelRecord(c.id, c.name, c.site_id) for c in list_channels(session)),
        sponsors=_sponsors(session), campaigns=_campaigns(session),
        client_versions={p: tuple(v) for p, v in by_platform(session).items()},
        publications=_publications(session))
