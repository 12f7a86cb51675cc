"""Stage history as a budget-aware backfill (issue 13, item 4): the deals owing their
history, and the requests history spent per tenant and local day.

Revision ID: 0009_history_backlog
Revises: 0008_incremental_audit
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_history_backlog"
down_revision: str | None = "0008_incremental_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "history_backlog",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("deal_external_id", sa.String(length=255), nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name="fk_history_backlog_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", "deal_external_id", name="pk_history_backlog"),
    )
    op.create_index("ix_history_backlog_tenant_done", "history_backlog",
                    ["tenant_id", "done_at"])
    op.create_table(
        "history_spend",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name="fk_history_spend_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", "day", name="pk_history_spend"),
    )


def downgrade() -> None:
    op.drop_table("history_spend")
    op.drop_index("ix_history_backlog_tenant_done", table_name="history_backlog")
    op.drop_table("history_backlog")
