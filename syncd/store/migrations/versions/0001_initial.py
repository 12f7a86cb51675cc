"""Initial schema: tenants, CRM records, sync state, violations, karma and write ledgers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen on purpose: types are spelled out here (not imported from the models), so later
model edits cannot change what this revision creates. ``UTCDateTime`` is stored as
``DateTime(timezone=True)`` and the JSON columns as JSON (JSONB on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _json(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                     nullable=False)


def _str(name: str, length: int = 255, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def _text(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.Text(), nullable=nullable)


def _bool(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Boolean(), nullable=False)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"],
                                   name=f"fk_{table}_tenant_id_tenants", ondelete="CASCADE")


def _record_table(table: str, *columns: sa.Column[Any], fields: bool = False) -> None:
    """A CRM record table: identity, the record's columns, then the common tail."""
    op.create_table(
        table,
        sa.Column("id", BIGID, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        _str("external_id", nullable=False),
        *columns,
        *([_json("fields")] if fields else []),
        _json("raw"),
        _str("content_hash", 40),
        _bool("deleted"),
        _ts("synced_at", nullable=False),
        _tenant_fk(table),
        sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
        sa.UniqueConstraint("tenant_id", "external_id", name=f"uq_{table}_tenant_external"),
    )


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        _str("key", 100, nullable=False),
        _str("plugin", 100, nullable=False),
        _ts("created_at", nullable=False),
        _ts("last_sync_at"),
        _str("last_status", 20),
        _text("last_error"),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("key", name="uq_tenants_key"),
    )

    _record_table("users", _text("name", nullable=False), _str("email", 320), _bool("active"))
    _record_table("pipelines", _text("name", nullable=False))
    _record_table(
        "stages",
        _str("pipeline_external_id", nullable=False),
        _text("name", nullable=False),
        sa.Column("order", sa.Integer(), nullable=False),
    )
    _record_table(
        "field_defs",
        _str("entity", 20, nullable=False),
        _str("key", nullable=False),
        _text("name", nullable=False),
        _str("type", 50, nullable=False),
        _json("options"),
        _bool("custom"),
    )
    _record_table("activity_types", _text("name", nullable=False), _bool("active"))
    _record_table(
        "companies",
        _text("name", nullable=False),
        _str("owner_external_id"),
        _ts("created_at"),
        _ts("updated_at"),
        fields=True,
    )
    _record_table(
        "contacts",
        _text("name", nullable=False),
        _str("company_external_id"),
        _str("owner_external_id"),
        _ts("created_at"),
        _ts("updated_at"),
        fields=True,
    )
    op.create_index("ix_contacts_tenant_company", "contacts", ["tenant_id", "company_external_id"])
    _record_table(
        "deals",
        _text("title", nullable=False),
        _str("status", 20, nullable=False),
        _str("pipeline_external_id"),
        _str("stage_external_id"),
        _str("owner_external_id"),
        _str("company_external_id"),
        _json("contact_ids"),
        sa.Column("value", sa.Float(), nullable=False),
        _str("currency", 10),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("stage_changed_at"),
        _ts("won_at"),
        _ts("lost_at"),
        _text("lost_reason"),
        fields=True,
    )
    op.create_index("ix_deals_tenant_id_id", "deals", ["tenant_id", "id"])
    op.create_index("ix_deals_tenant_company", "deals", ["tenant_id", "company_external_id"])
    _record_table(
        "activities",
        _str("type", nullable=False),
        _text("subject", nullable=False),
        _bool("done"),
        _ts("due_at"),
        sa.Column("due_date", sa.Date(), nullable=True),
        _ts("done_at"),
        _str("deal_external_id"),
        _str("company_external_id"),
        _str("contact_external_id"),
        _str("owner_external_id"),
        _ts("created_at"),
        _ts("updated_at"),
        _text("note", nullable=False),
    )
    op.create_index("ix_activities_tenant_deal", "activities", ["tenant_id", "deal_external_id"])
    op.create_index("ix_activities_tenant_company", "activities",
                    ["tenant_id", "company_external_id"])
    _record_table(
        "stage_changes",
        _str("deal_external_id", nullable=False),
        _str("from_stage_external_id"),
        _str("to_stage_external_id", nullable=False),
        _ts("at", nullable=False),
    )
    op.create_index("ix_stage_changes_tenant_deal_at", "stage_changes",
                    ["tenant_id", "deal_external_id", "at"])

    op.create_table(
        "sync_cursors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        _str("stream", 100, nullable=False),
        _text("value", nullable=False),
        _ts("updated_at", nullable=False),
        _tenant_fk("sync_cursors"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_cursors"),
        sa.UniqueConstraint("tenant_id", "stream", name="uq_sync_cursors_tenant_stream"),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at"),
        _str("status", 20, nullable=False),
        _bool("full"),
        _ts("as_of"),
        _json("counts"),
        _text("error"),
        _tenant_fk("sync_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_runs"),
    )
    op.create_index("ix_sync_runs_tenant_started", "sync_runs", ["tenant_id", "started_at"])

    op.create_table(
        "violations",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        _text("key", nullable=False),
        _str("rule", 100, nullable=False),
        _str("deal_external_id"),
        _str("stage_key", 100),
        _str("action_key", 100),
        _text("crm_stage"),
        _str("severity", 20, nullable=False),
        _text("explanation", nullable=False),
        _json("details"),
        _ts("opened_at", nullable=False),
        _ts("last_seen_at", nullable=False),
        _ts("resolved_at"),
        sa.Column("opened_run_id", sa.Integer(), nullable=True),
        _tenant_fk("violations"),
        sa.ForeignKeyConstraint(["opened_run_id"], ["sync_runs.id"],
                                name="fk_violations_opened_run_id_sync_runs",
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_violations"),
    )
    # At most one open row per (tenant, key): partial unique index on both backends.
    op.create_index("uq_violations_open_key", "violations", ["tenant_id", "key"], unique=True,
                    sqlite_where=sa.text("resolved_at IS NULL"),
                    postgresql_where=sa.text("resolved_at IS NULL"))
    op.create_index("ix_violations_tenant_deal", "violations", ["tenant_id", "deal_external_id"])

    op.create_table(
        "karma_lines",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        _str("kind", 50, nullable=False),
        _str("subject_type", 50, nullable=False),
        _str("subject_id", nullable=False),
        _str("criterion", 100, nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("amount", sa.Float(), nullable=False),
        _str("source_type", 50, nullable=False),
        _str("source_id", nullable=False),
        _str("period", 50, nullable=False),
        _ts("computed_at", nullable=False),
        _tenant_fk("karma_lines"),
        sa.PrimaryKeyConstraint("id", name="pk_karma_lines"),
        sa.UniqueConstraint("tenant_id", "kind", "subject_type", "subject_id", "criterion",
                            "source_type", "source_id", "period",
                            name="uq_karma_lines_identity"),
    )

    op.create_table(
        "writebacks",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        _str("kind", 20, nullable=False),
        _str("entity", 20, nullable=False),
        _str("external_id", nullable=False),
        _str("field", nullable=False),
        _text("desired_value"),
        _text("written_value"),
        _str("status", 20, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _str("crm_id"),
        _text("error"),
        _ts("updated_at", nullable=False),
        _tenant_fk("writebacks"),
        sa.PrimaryKeyConstraint("id", name="pk_writebacks"),
        sa.UniqueConstraint("tenant_id", "kind", "entity", "external_id", "field",
                            name="uq_writebacks_identity"),
    )
    op.create_index("ix_writebacks_tenant_status", "writebacks", ["tenant_id", "status"])


def downgrade() -> None:
    for table in ("writebacks", "karma_lines", "violations", "sync_runs", "sync_cursors",
                  "stage_changes", "activities", "deals", "contacts", "companies",
                  "activity_types", "field_defs", "stages", "pipelines", "users", "tenants"):
        op.drop_table(table)
