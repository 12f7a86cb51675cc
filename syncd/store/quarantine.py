"""The quarantine: records that could not be read or stored, kept with their problem.

A record lands here when its connector could not normalize it (stage "read": a deal value
"abc", an unreadable date) or the database refused it (stage "store"). The rest of its page
is stored and the cursor advances; the quarantine is the retry list: every pass re-reads the
stream's quarantined records (the connector's ``reread``, or the CRM listing them again) and
releases each one that goes through. People see the rows in the report and on the dashboard.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from syncd.store._sql import affected_rows, insert_for, sequence_chunks, utcnow
from syncd.store.models import QuarantineRow
from syncd.store.sanitize import bounded_error, clean_json_text, clean_text
from syncd.store.types import encode_json

Stage = str  # "read" | "store"


def quarantine_id(external_id: str | None, payload: Any) -> str:
    """The stored id: the CRM's id, else ``?`` and a hash of the payload."""
    if external_id:
        return clean_text(str(external_id))[:255]
    text = encode_json(clean_json_text(payload))
    return "?" + hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]


def quarantine(session: Session, tenant_id: int, stream: str, external_id: str | None,
               payload: Any, problem: str, *, stage: Stage = "read", new_try: bool = True,
               now: datetime | None = None) -> str:
    """Keep (or refresh) one record in quarantine; returns its stored id. ``attempts``
    counts the passes that tried it: ``new_try=False`` when this pass already did."""
    now = now or utcnow()
    stored_id = quarantine_id(external_id, payload)
    table = QuarantineRow.__table__
    stmt = insert_for(session, table).values(
        tenant_id=tenant_id, stream=stream, external_id=stored_id, stage=stage,
        problem=bounded_error(problem) or "", payload=clean_json_text(payload),
        first_seen_at=now, last_seen_at=now, attempts=1)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "stream", "external_id"],
        set_={"stage": stmt.excluded.stage, "problem": stmt.excluded.problem,
              "payload": stmt.excluded.payload, "last_seen_at": stmt.excluded.last_seen_at,
              "attempts": table.c.attempts + (1 if new_try else 0)},
    ))
    return stored_id


def release(session: Session, tenant_id: int, stream: str,
            external_ids: Iterable[str]) -> int:
    """Drop records that went through from the quarantine; returns how many were there."""
    ids = [i for i in dict.fromkeys(external_ids) if i]
    count = 0
    for chunk in sequence_chunks(ids, 500):
        result = session.execute(delete(QuarantineRow).where(
            QuarantineRow.tenant_id == tenant_id, QuarantineRow.stream == stream,
            QuarantineRow.external_id.in_(chunk)))
        count += affected_rows(result)
    return count


def quarantined(session: Session, tenant_id: int,
                stream: str | None = None) -> list[QuarantineRow]:
    """The tenant's quarantined records (of one stream), oldest first."""
    stmt = select(QuarantineRow).where(QuarantineRow.tenant_id == tenant_id)
    if stream is not None:
        stmt = stmt.where(QuarantineRow.stream == stream)
    stmt = stmt.order_by(QuarantineRow.first_seen_at, QuarantineRow.id)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def counts_by_tenant(session: Session) -> dict[int, int]:
    """``tenant id -> records held in quarantine`` (tenants with none are left out)."""
    stmt = select(QuarantineRow.tenant_id, func.count()).group_by(QuarantineRow.tenant_id)
    return {tenant: count for tenant, count in session.execute(stmt)}


def describe(row: QuarantineRow) -> str:
    """One line for logs and the pass summary."""
    return f"{row.stream} {row.external_id}: {row.problem}"
