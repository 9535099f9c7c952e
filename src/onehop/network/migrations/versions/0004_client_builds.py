"""Client builds added with ``client-version add --file`` and their signed upgrade
packages (full, and bsdiff4 deltas from the previous version when smaller).

Revision ID: 0004_client_builds
Revises: 0003_feedback
Create Date: 2025-02-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_client_builds"
down_revision = "0003_feedback"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "client_builds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("client_version_id", sa.Integer(), sa.ForeignKey("client_versions.id"), nullable=False,
                  unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("site_id", sa.String(32), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False))
    op.create_table(
        "upgrade_packages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("client_build_id", sa.Integer(), sa.ForeignKey("client_builds.id"), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("from_version", sa.String(40), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("client_build_id", "name", name="uq_upgrade_packages_build_name"))
    op.create_index("ix_upgrade_packages_client_build_id", "upgrade_packages", ["client_build_id"])


def downgrade() -> None:
    op.drop_table("upgrade_packages")
    op.drop_table("client_builds")
