"""Server event logs: ingested files (offset + prefix hash) and their events.

Revision ID: 0002_stats
Revises: 0001_network
Create Date: 2025-02-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0002_stats"
down_revision = "0001_network"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stats_log_files",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("host_id", sa.String(100), nullable=False),
        sa.Column("first_line_sha256", sa.String(64), nullable=False),
        sa.Column("locator", sa.String(300), nullable=False),
        sa.Column("server_id", sa.String(120), nullable=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("consumed_bytes", sa.BigInteger(), nullable=False),
        sa.Column("prefix_sha256", sa.String(64), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("malformed", sa.Integer(), nullable=False),
        sa.Column("first_ingested_at", sa.DateTime(), nullable=False),
        sa.Column("last_ingested_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("host_id", "first_line_sha256", "locator", name="uq_stats_log_files_identity"))
    op.create_table(
        "stats_events",
        sa.Column("id", BIG_ID, primary_key=True),
        sa.Column("file_id", sa.Integer(), sa.ForeignKey("stats_log_files.id"), nullable=False),
        sa.Column("line_offset", sa.BigInteger(), nullable=False),
        sa.Column("event_name", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("host_id", sa.String(100), nullable=False),
        sa.Column("server_id", sa.String(120), nullable=True),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("sponsor_id", sa.String(32), nullable=False),
        sa.Column("client_platform", sa.String(64), nullable=False),
        sa.Column("client_version", sa.String(32), nullable=False),
        sa.Column("relay_protocol", sa.String(32), nullable=False),
        sa.Column("handshake_completed", sa.Boolean(), nullable=True),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.UniqueConstraint("file_id", "line_offset", name="uq_stats_events_file_offset"))
    op.create_index("ix_stats_events_day_event", "stats_events", ["day", "event_name"])
    op.create_index("ix_stats_events_server_day", "stats_events", ["server_id", "day"])


def downgrade() -> None:
    op.drop_table("stats_events")
    op.drop_table("stats_log_files")
