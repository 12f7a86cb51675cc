"""Stream cursors: committed only together with the page they cover.

``set_cursor`` must be called inside the transaction that stores the page (``store_page``
does both), so a crash between the two is impossible: either the page and its cursor are
committed, or neither is and the page is read again. A cursor never moves backwards: a
``--full`` pass or an out-of-order page cannot rewind a watermark that committed data
already covers (use ``reset_cursors`` to rewind on purpose).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from syncd.records import Page
from syncd.store._sql import affected_rows, insert_for, utcnow
from syncd.store.models import SyncCursorRow
from syncd.store.types import to_utc
from syncd.store.upsert import UpsertStats, upsert_page

_INTEGER = re.compile(r"-?\d+")


def _order_key(value: str) -> tuple[str, Any] | None:
    """A comparable form of a cursor: integers (ids, offsets) or ISO timestamps.

    A compound cursor (``syncd.streams.Watermark``, JSON) orders by its ``at``. Anything
    else is an opaque token (a page token, an etag) with no order: it replaces the stored
    value unconditionally.
    """
    text = value.strip()
    if text.startswith("{"):
        try:
            at = json.loads(text).get("at")
        except (ValueError, AttributeError):
            return None
        return _order_key(at) if isinstance(at, str) else None
    if _INTEGER.fullmatch(text):
        return ("int", int(text))
    try:
        return ("time", to_utc(datetime.fromisoformat(text.replace("Z", "+00:00"))))
    except ValueError:
        return None


def newer_cursor(stored: str | None, candidate: str) -> str:
    """The cursor to keep: ``candidate`` unless it is comparable to and before ``stored``."""
    if stored is None:
        return candidate
    old, new = _order_key(stored), _order_key(candidate)
    if old is not None and new is not None and old[0] == new[0] and new[1] < old[1]:
        return stored
    return candidate


def get_cursor(session: Session, tenant_id: int, stream: str) -> str | None:
    """The committed cursor of ``stream``, ``None`` before its first page."""
    return session.scalar(select(SyncCursorRow.value).where(
        SyncCursorRow.tenant_id == tenant_id, SyncCursorRow.stream == stream))


def get_cursors(session: Session, tenant_id: int) -> dict[str, str]:
    """All committed cursors of a tenant, by stream (for status displays)."""
    rows = session.execute(select(SyncCursorRow.stream, SyncCursorRow.value).where(
        SyncCursorRow.tenant_id == tenant_id))
    return dict(rows.all())


def set_cursor(session: Session, tenant_id: int, stream: str, value: str, *,
               now: datetime | None = None) -> str:
    """Advance ``stream``'s cursor to ``value`` (never backwards); returns the kept value.

    Call it in the page's transaction. The stored row is read ``FOR UPDATE`` on PostgreSQL
    so two writers of one tenant (which the lease should prevent) still cannot interleave.
    """
    stored = session.scalar(
        select(SyncCursorRow.value)
        .where(SyncCursorRow.tenant_id == tenant_id, SyncCursorRow.stream == stream)
        .with_for_update()
    )
    kept = newer_cursor(stored, value)
    if kept == stored:
        return kept
    table = SyncCursorRow.__table__
    stmt = insert_for(session, table).values(
        tenant_id=tenant_id, stream=stream, value=kept, updated_at=now or utcnow())
    session.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "stream"],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    ))
    return kept


def reset_cursors(session: Session, tenant_id: int, streams: list[str] | None = None) -> int:
    """Forget the tenant's cursors (all, or ``streams``): the next pass reads everything."""
    stmt = delete(SyncCursorRow).where(SyncCursorRow.tenant_id == tenant_id)
    if streams is not None:
        stmt = stmt.where(SyncCursorRow.stream.in_(streams))
    return affected_rows(session.execute(stmt))


def store_page(session: Session, tenant_id: int, page: Page, *,
               now: datetime | None = None) -> UpsertStats:
    """Store a page and advance its stream's cursor, in the caller's one transaction."""
    stats = upsert_page(session, tenant_id, page, now=now)
    if page.cursor is not None:
        set_cursor(session, tenant_id, page.stream, page.cursor, now=now)
    return stats
