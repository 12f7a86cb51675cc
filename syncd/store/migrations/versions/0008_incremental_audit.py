"""Incremental audit: the due-time index, the tenant's audit state, change indexes
(issue 13, item 1); karma lines' recomputation unit. Types spelled out, as in 0001.

Revision ID: 0008_incremental_audit
Revises: 0007_digests
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_incremental_audit"
down_revision: str | None = "0007_digests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SYNCED = ("deals", "activities", "stage_changes", "companies")


def upgrade() -> None:
    op.create_table(
        "audit_states",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("audited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=False),
        sa.Column("karma_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name="fk_audit_states_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_audit_states"),
    )
    op.create_table(
        "deal_due",
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("deal_external_id", sa.String(length=255), nullable=False),
        sa.Column("deal_row_id", sa.BigInteger(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unmapped_stage", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE",
                                name="fk_deal_due_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("tenant_id", "deal_external_id", name="pk_deal_due"),
    )
    op.create_index("ix_deal_due_tenant_due", "deal_due", ["tenant_id", "due_at"])
    for table in _SYNCED:
        op.create_index(f"ix_{table}_tenant_synced", table, ["tenant_id", "synced_at"])
    op.add_column("karma_lines", sa.Column("unit", sa.String(length=300), nullable=True))
    op.create_index("ix_karma_lines_tenant_kind_unit", "karma_lines",
                    ["tenant_id", "kind", "unit"])


def downgrade() -> None:
    op.drop_index("ix_karma_lines_tenant_kind_unit", table_name="karma_lines")
    with op.batch_alter_table("karma_lines") as batch:
        batch.drop_column("unit")
    for table in _SYNCED:
        op.drop_index(f"ix_{table}_tenant_synced", table_name=table)
    op.drop_index("ix_deal_due_tenant_due", table_name="deal_due")
    op.drop_table("deal_due")
    op.drop_table("audit_states")
