"""Dashboard access tokens (table ``dashboard_tokens``; ``syncd tokens``).

A token is 32 random bytes (``secrets.token_urlsafe``) with the prefix ``sdt_``; the store
keeps only its SHA-256. A plain hash (no salt, no key stretching) is the right tool for a
random 256-bit secret: it cannot be guessed, and the lookup stays one indexed query per
request. The plain token is shown once, by ``syncd tokens create``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.store.models import DashboardTokenRow as T

PREFIX = "sdt_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, tenant_key: str | None, label: str = "",
                 ) -> tuple[DashboardTokenRow, str]:
    """A new token for ``tenant_key`` (None: admin, every tenant); returns (row, plain)."""
    plain = PREFIX + secrets.token_urlsafe(32)
    row = T(token_hash=token_hash(plain), prefix=plain[:10], tenant_key=tenant_key,
            label=label, created_at=datetime.now(UTC), revoked_at=None)
    session.add(row)
    session.flush()
    return row, plain


def list_tokens(session: Session, *, include_revoked: bool = False) -> list[DashboardTokenRow]:
    query = select(T).order_by(T.id)
    if not include_revoked:
        query = query.where(T.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_token(session: Session, token_id: int) -> DashboardTokenRow | None:
    """Revoke a token by id (already revoked: unchanged); None when there is no such id."""
    row = session.get(T, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
    return row


def find_token(session: Session, presented: str) -> DashboardTokenRow | None:
    """The live token row matching ``presented`` (None: unknown or revoked)."""
    if not presented.startswith(PREFIX):
        return None
    return session.scalars(select(T).where(T.token_hash == token_hash(presented),
                                           T.revoked_at.is_(None))).first()


DashboardTokenRow = T

__all__ = ["DashboardTokenRow", "create_token", "find_token", "list_tokens", "revoke_token",
           "token_hash"]
