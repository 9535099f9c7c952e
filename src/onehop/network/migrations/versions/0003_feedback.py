"""Collected feedback: the ``feedback_records`` table of ``onehop.network.feedback_records``,
unchanged (it was created with ``create_all`` before it moved here).

Revision ID: 0003_feedback
Revises: 0002_stats
Create Date: 2025-02-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_feedback"
down_revision = "0002_stats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("upload_id", sa.String(512), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("feedback_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("format_version", sa.String(16), nullable=False),
        sa.Column("client_version", sa.String(64), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("server_ids", sa.Text(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_records"),
        sa.UniqueConstraint("upload_id", name="uq_feedback_records_upload_id"))
    op.create_index("ix_feedback_records_stored_at", "feedback_records", ["stored_at"])
    op.create_index("ix_feedback_records_blob_sha256", "feedback_records", ["blob_sha256"])


def downgrade() -> None:
    op.drop_table("feedback_records")
