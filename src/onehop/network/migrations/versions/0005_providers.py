"""Cloud providers, the machines launched through them (every resource a launch
created, so ``host destroy`` releases exactly those), and ``heal``'s per-server actions.

Revision ID: 0005_providers
Revises: 0004_client_builds
Create Date: 2025-03-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_providers"
down_revision = "0004_client_builds"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "providers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("ssh_private_key", sa.Text(), nullable=False),
        sa.Column("ssh_public_key", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False))
    op.create_table(
        "launches",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider_id", sa.Integer(), sa.ForeignKey("providers.id"), nullable=False),
        sa.Column("host_name", sa.String(100), nullable=False, unique=True),
        sa.Column("region", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("ssh_host_key", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True))
    op.create_index("ix_launches_provider_id", "launches", ["provider_id"])
    op.create_table(
        "provider_resources",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("launch_id", sa.Integer(), sa.ForeignKey("launches.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("resource_id", sa.String(200), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True))
    op.create_index("ix_provider_resources_launch_id", "provider_resources", ["launch_id"])
    op.create_table(
        "heal_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("server_id", sa.String(120), sa.ForeignKey("servers.id"), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("launch_id", sa.Integer(), sa.ForeignKey("launches.id"), nullable=True),
        sa.Column("replacement_id", sa.String(120), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False))
    op.create_index("ix_heal_actions_server_id", "heal_actions", ["server_id"])


def downgrade() -> None:
    op.drop_table("heal_actions")
    op.drop_table("provider_resources")
    op.drop_table("launches")
    op.drop_table("providers")
