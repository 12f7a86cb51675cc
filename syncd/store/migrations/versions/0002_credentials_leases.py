"""Encrypted OAuth credentials, tenant leases for PostgreSQL scale-out, users' managers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("manager_external_id", sa.String(length=255),
                                     nullable=True))
    op.create_table(
        "credentials",
        sa.Column("tenant_key", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=100), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=True),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("seed_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_key", name="pk_credentials"),
    )
    op.create_table(
        "tenant_leases",
        sa.Column("tenant_key", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("fence", sa.BigInteger(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_key", name="pk_tenant_leases"),
    )


def downgrade() -> None:
    op.drop_table("tenant_leases")
    op.drop_table("credentials")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("manager_external_id")
