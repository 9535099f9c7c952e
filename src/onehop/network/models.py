"""The schema of the network database (SQLAlchemy 2, typed ``Mapped[]`` columns).

Migrations in ``migrations/versions`` create exactly these tables plus the feedback
table (``onehop.network.feedback_records``, SQLAlchemy Core); a test compares the two through
:func:`schema_metadata`. Times are stored as naive UTC and read back as aware UTC datetimes.
Secrets (private keys, passwords, obfuscation keys) are stored in clear: operators
protect the database file (SQLite is created with mode 0600).
"""

from __future__ import annotations

import json
from datetime import date, datetime, UTC
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .feedback_records import feedback_records


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out (stored naive UTC everywhere)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class JSONText(TypeDecorator):
    """A JSON value stored as text (portable between SQLite and PostgreSQL)."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect) -> str | None:
        return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))

    def process_result_value(self, value: str | None, dialect) -> Any:
        return None if value is None else json.loads(value)


class Base(DeclarativeBase):
    pass


LIVE = text("retired_at IS NULL")


class NetworkKey(Base):
    """A network-wide key; the active one of a kind has no ``retired_at``."""

    __tablename__ = "network_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    private_key: Mapped[str] = mapped_column(Text)
    public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    __table_args__ = (Index("uq_network_keys_active_kind", "kind", unique=True,
                            sqlite_where=LIVE, postgresql_where=LIVE),)


class Setting(Base):
    __tablename__ = "network_settings"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Sponsor(Base):
    __tablename__ = "sponsors"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    home_pages: Mapped[list[HomePage]] = relationship(
        back_populates="sponsor", order_by="HomePage.position", cascade="all, delete-orphan")


class HomePage(Base):
    """One home page URL of a sponsor for a region (``None`` = the default)."""

    __tablename__ = "sponsor_home_pages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sponsor_id: Mapped[str] = mapped_column(ForeignKey("sponsors.id"), index=True)
    region: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(Text)
    mobile: Mapped[bool] = mapped_column(Boolean)
    position: Mapped[int] = mapped_column(Integer)
    sponsor: Mapped[Sponsor] = relationship(back_populates="home_pages")


class Channel(Base):
    """A propagation channel; ``site_id`` names its unguessable publishing prefix."""

    __tablename__ = "propagation_channels"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    site_id: Mapped[str] = mapped_column(String(32), unique=True)
    max_discovery_age_days: Mapped[int] = mapped_column(Integer)
    max_propagation_age_days: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Campaign(Base):
    """Channel x sponsor x mechanism (an e-mail address or a static download site)."""

    __tablename__ = "campaigns"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("propagation_channels.id"), index=True)
    sponsor_id: Mapped[str] = mapped_column(ForeignKey("sponsors.id"), index=True)
    mechanism: Mapped[str] = mapped_column(String(32))
    email_address: Mapped[str | None] = mapped_column(String(320), unique=True, nullable=True)
    language: Mapped[str | None] = mapped_column(String(16), nullable=True)
    site_id: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[Channel] = relationship()
    sponsor: Mapped[Sponsor] = relationship()


class Host(Base):
    """A machine; its name is unique forever (removed hosts stay, archived)."""

    __tablename__ = "hosts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    ip_address: Mapped[str] = mapped_column(String(64))
    region: Mapped[str] = mapped_column(String(2))
    provider: Mapped[str | None] = mapped_column(String(100), nullable=True)
    datacenter: Mapped[str | None] = mapped_column(String(100), nullable=True)
    ssh_port: Mapped[int] = mapped_column(Integer)
    ssh_username: Mapped[str] = mapped_column(String(64))
    ssh_host_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_server_number: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Server(Base):
    """One server (IP address) on a host, with every secret its config needs.

    ``id`` is a human-readable alias (``<host>-<n>``), never reused. Embedded servers
    have no discovery window; discovery servers are never embedded.
    """

    __tablename__ = "servers"
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id"), index=True)
    channel_id: Mapped[str] = mapped_column(ForeignKey("propagation_channels.id"), index=True)
    ip_address: Mapped[str] = mapped_column(String(64))
    listen_ip_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ossh_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ssh_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    capabilities: Mapped[list] = mapped_column(JSONText)
    ssh_username: Mapped[str] = mapped_column(String(64))
    ssh_password: Mapped[str] = mapped_column(String(128))
    ssh_private_key: Mapped[str] = mapped_column(Text)
    ssh_host_key: Mapped[str] = mapped_column(Text)
    obfuscated_ssh_key: Mapped[str] = mapped_column(String(128))
    web_server_secret: Mapped[str] = mapped_column(String(128))
    allow_bogons: Mapped[bool] = mapped_column(Boolean)
    is_embedded: Mapped[bool] = mapped_column(Boolean)
    is_permanent: Mapped[bool] = mapped_column(Boolean)
    discovery_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    discovery_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    unembedded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    host: Mapped[Host] = relationship()
    channel: Mapped[Channel] = relationship()
    __table_args__ = (Index("uq_servers_live_ip", "ip_address", unique=True,
                            sqlite_where=LIVE, postgresql_where=LIVE),)

    @property
    def is_discovery(self) -> bool:
        return self.discovery_start is not None


class ClientVersion(Base):
    __tablename__ = "client_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("platform", "version", name="uq_client_versions_platform_version"),)


class Publication(Base):
    """What the last publish put where (one row per target and path)."""

    __tablename__ = "publications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    campaign_id: Mapped[str | None] = mapped_column(String(16), nullable=True, index=True)
    path: Mapped[str] = mapped_column(String(500))
    url: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("target", "path", name="uq_publications_target_path"),)


class AuditRecord(Base):
    """Who changed what, when: written in the same transaction as the change."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_ids: Mapped[list] = mapped_column(JSONText)
    details: Mapped[dict] = mapped_column(JSONText)



# -- server event logs (revision 0002) ----------------------------------------------------

#: 64-bit keys on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit (and the
#: only type it auto-increments).
BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class StatsLogFile(Base):
    """One server event log file, as far as it has been ingested.

    Identified by the host that wrote it, the SHA-256 of its first line (so a renamed
    or rotated file is still the same file) and a locator (the server ID its path
    names, or "" when it names none). ``consumed_bytes``
    always ends at a line end; ``prefix_sha256`` is the SHA-256 of those bytes, so a
    rewritten or truncated file is noticed instead of being mis-read.
    """

    __tablename__ = "stats_log_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_id: Mapped[str] = mapped_column(String(100))
    first_line_sha256: Mapped[str] = mapped_column(String(64))
    locator: Mapped[str] = mapped_column(String(300))
    server_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    source: Mapped[str] = mapped_column(String(500))
    path: Mapped[str] = mapped_column(String(1000))
    consumed_bytes: Mapped[int] = mapped_column(BigInteger)
    prefix_sha256: Mapped[str] = mapped_column(String(64))
    events: Mapped[int] = mapped_column(Integer)
    malformed: Mapped[int] = mapped_column(Integer)
    first_ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_ingested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("host_id", "first_line_sha256", "locator", name="uq_stats_log_files_identity"),)


class StatsEvent(Base):
    """One server event (never a client IP: the server does not log it, and ingest
    redacts anything that looks like an address before storing)."""

    __tablename__ = "stats_events"
    id: Mapped[int] = mapped_column(BIG_ID, primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("stats_log_files.id"))
    line_offset: Mapped[int] = mapped_column(BigInteger)
    event_name: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    host_id: Mapped[str] = mapped_column(String(100))
    server_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    region: Mapped[str] = mapped_column(String(8))
    channel_id: Mapped[str] = mapped_column(String(32))
    sponsor_id: Mapped[str] = mapped_column(String(32))
    client_platform: Mapped[str] = mapped_column(String(64))
    client_version: Mapped[str] = mapped_column(String(32))
    relay_protocol: Mapped[str] = mapped_column(String(32))
    handshake_completed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    bytes_up: Mapped[int] = mapped_column(BigInteger)
    bytes_down: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    details: Mapped[dict] = mapped_column(JSONText)
    __table_args__ = (UniqueConstraint("file_id", "line_offset", name="uq_stats_events_file_offset"),
                      Index("ix_stats_events_day_event", "day", "event_name"),
                      Index("ix_stats_events_server_day", "server_id", "day"))


# -- client builds and their upgrade packages (revision 0004) ---------------------------

class ClientBuild(Base):
    """The build a client version was added with (``client-version add --file``);
    kept so the next version can get a binary delta against it."""

    __tablename__ = "client_builds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_version_id: Mapped[int] = mapped_column(ForeignKey("client_versions.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    site_id: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    client_version: Mapped[ClientVersion] = relationship()


class UpgradePackage(Base):
    """A signed upgrade package of a client build: the full one, or a bsdiff4 delta
    from an earlier version (kept only when smaller). ``publish`` uploads them."""

    __tablename__ = "upgrade_packages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_build_id: Mapped[int] = mapped_column(ForeignKey("client_builds.id"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(8))
    from_version: Mapped[str | None] = mapped_column(String(40), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    __table_args__ = (UniqueConstraint("client_build_id", "name", name="uq_upgrade_packages_build_name"),)


def schema_metadata() -> MetaData:
    """Every table the migrations create: this module's and the feedback table."""
    combined = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(combined)
    feedback_records.to_metadata(combined)
    return combined


# -- cloud providers, launched machines, heal (revision 0005) ----------------------------

class Provider(Base):
    """Where hosts can be launched: ``aws`` (EC2) or ``ssh`` (machines someone else made).

    ``settings`` holds no credentials: AWS keys come from the environment or the
    credentials file it names. ``ssh_private_key`` is the management key the network
    holds for the hosts it launches (the public half goes into each machine)."""

    __tablename__ = "providers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict] = mapped_column(JSONText)
    ssh_private_key: Mapped[str] = mapped_column(Text)
    ssh_public_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Launch(Base):
    """One ``host launch``: pending until its host is recorded, ``failed`` with the error
    when the provider said no (its created resources are then released or kept listed)."""

    __tablename__ = "launches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_id: Mapped[int] = mapped_column(ForeignKey("providers.id"), index=True)
    host_name: Mapped[str] = mapped_column(String(100), unique=True)
    region: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    ssh_host_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    provider: Mapped[Provider] = relationship()


class ProviderResource(Base):
    """Something a launch created at the provider (instance, security group, key pair,
    elastic IP...), recorded as soon as it exists, so ``host destroy`` releases exactly
    these and nothing else."""

    __tablename__ = "provider_resources"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    launch_id: Mapped[int] = mapped_column(ForeignKey("launches.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict] = mapped_column(JSONText)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class HealAction(Base):
    """What ``heal`` decided for one blocked server and how far it got (so a rerun
    resumes): planned -> launched -> replaced -> deployed (done), or left."""

    __tablename__ = "heal_actions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id"), index=True)
    region: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    launch_id: Mapped[int | None] = mapped_column(ForeignKey("launches.id"), nullable=True)
    replacement_id: Mapped[str | None] = mapped_column(String(120), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
