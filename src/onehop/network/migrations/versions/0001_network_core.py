"""Network core: keys, settings, sponsors, channels, campaigns, hosts, servers,
client versions, publications, audit log.

Revision ID: 0001_network
Revises:
Create Date: 2025-01-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0001_network"
down_revision = None
branch_labels = None
depends_on = None

LIVE = sa.text("retired_at IS NULL")


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=nullable)


def _keys_and_settings() -> None:
    op.create_table(
        "network_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        _when("created_at"), _when("retired_at", True))
    op.create_index("uq_network_keys_active_kind", "network_keys", ["kind"], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_table(
        "network_settings",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False))


def _sponsors_channels_campaigns() -> None:
    op.create_table(
        "sponsors",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        _when("created_at"))
    op.create_table(
        "sponsor_home_pages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sponsor_id", sa.String(16), sa.ForeignKey("sponsors.id"), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("mobile", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False))
    op.create_index("ix_sponsor_home_pages_sponsor_id", "sponsor_home_pages", ["sponsor_id"])
    op.create_table(
        "propagation_channels",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("site_id", sa.String(32), nullable=False, unique=True),
        sa.Column("max_discovery_age_days", sa.Integer(), nullable=False),
        sa.Column("max_propagation_age_days", sa.Integer(), nullable=False),
        _when("created_at"))
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("channel_id", sa.String(16), sa.ForeignKey("propagation_channels.id"), nullable=False),
        sa.Column("sponsor_id", sa.String(16), sa.ForeignKey("sponsors.id"), nullable=False),
        sa.Column("mechanism", sa.String(32), nullable=False),
        sa.Column("email_address", sa.String(320), nullable=True, unique=True),
        sa.Column("language", sa.String(16), nullable=True),
        sa.Column("site_id", sa.String(32), nullable=False, unique=True),
        _when("created_at"))
    op.create_index("ix_campaigns_channel_id", "campaigns", ["channel_id"])
    op.create_index("ix_campaigns_sponsor_id", "campaigns", ["sponsor_id"])


def _hosts_and_servers() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("ip_address", sa.String(64), nullable=False),
        sa.Column("region", sa.String(2), nullable=False),
        sa.Column("provider", sa.String(100), nullable=True),
        sa.Column("datacenter", sa.String(100), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("ssh_username", sa.String(64), nullable=False),
        sa.Column("ssh_host_key", sa.Text(), nullable=True),
        sa.Column("next_server_number", sa.Integer(), nullable=False),
        _when("created_at"), _when("deleted_at", True))
    op.create_table(
        "servers",
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("host_id", sa.Integer(), sa.ForeignKey("hosts.id"), nullable=False),
        sa.Column("channel_id", sa.String(16), sa.ForeignKey("propagation_channels.id"), nullable=False),
        sa.Column("ip_address", sa.String(64), nullable=False),
        sa.Column("listen_ip_address", sa.String(64), nullable=True),
        sa.Column("ossh_port", sa.Integer(), nullable=True),
        sa.Column("ssh_port", sa.Integer(), nullable=True),
        sa.Column("capabilities", sa.Text(), nullable=False),
        sa.Column("ssh_username", sa.String(64), nullable=False),
        sa.Column("ssh_password", sa.String(128), nullable=False),
        sa.Column("ssh_private_key", sa.Text(), nullable=False),
        sa.Column("ssh_host_key", sa.Text(), nullable=False),
        sa.Column("obfuscated_ssh_key", sa.String(128), nullable=False),
        sa.Column("web_server_secret", sa.String(128), nullable=False),
        sa.Column("allow_bogons", sa.Boolean(), nullable=False),
        sa.Column("is_embedded", sa.Boolean(), nullable=False),
        sa.Column("is_permanent", sa.Boolean(), nullable=False),
        _when("discovery_start", True), _when("discovery_end", True), _when("unembedded_at", True),
        _when("created_at"), _when("retired_at", True))
    op.create_index("ix_servers_host_id", "servers", ["host_id"])
    op.create_index("ix_servers_channel_id", "servers", ["channel_id"])
    op.create_index("uq_servers_live_ip", "servers", ["ip_address"], unique=True,
                    sqlite_where=LIVE, postgresql_where=LIVE)


def _versions_publications_audit() -> None:
    op.create_table(
        "client_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _when("created_at"),
        sa.UniqueConstraint("platform", "version", name="uq_client_versions_platform_version"))
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("target", sa.String(500), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(16), nullable=True),
        sa.Column("campaign_id", sa.String(16), nullable=True),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        _when("published_at"),
        sa.UniqueConstraint("target", "path", name="uq_publications_target_path"))
    op.create_index("ix_publications_channel_id", "publications", ["channel_id"])
    op.create_index("ix_publications_campaign_id", "publications", ["campaign_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        _when("at"),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("object_ids", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False))
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def upgrade() -> None:
    _keys_and_settings()
    _sponsors_channels_campaigns()
    _hosts_and_servers()
    _versions_publications_audit()


def downgrade() -> None:
    for table in ("audit_log", "publications", "client_versions", "servers", "hosts", "campaigns",
                  "propagation_channels", "sponsor_home_pages", "sponsors", "network_settings",
                  "network_keys"):
        op.drop_table(table)
