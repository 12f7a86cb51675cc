"""Dashboard access tokens and daily tenant snapshots (issue 15, items 3 and 6).

Revision ID: 0006_dashboard
Revises: 0005_fencing
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_dashboard"
down_revision: str | None = "0005_fencing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)  # UTCDateTime, spelled out (frozen revision)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "dashboard_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("tenant_key", sa.String(length=100), nullable=True),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_dashboard_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_dashboard_tokens_token_hash"),
    )
    op.create_table(
        "tenant_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("taken_at", TS, nullable=False),
        sa.Column("figures", JSON, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name="fk_tenant_snapshots_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("id", name="pk_tenant_snapshots"),
        sa.UniqueConstraint("tenant_id", "day", name="uq_tenant_snapshots_day"),
    )


def downgrade() -> None:
    op.drop_table("tenant_snapshots")
    op.drop_table("dashboard_tokens")
