"""The write ledger: intent before side effect.

Before an HTTP write the caller marks the row ``pending`` with the value it is about to
write and COMMITS; after a confirmed per-item success it marks it ``done`` with the value
written (and the created task's id). A crash in between leaves ``pending`` rows, which the
next pass re-checks against the CRM (read before retry) instead of blindly writing again.
For tasks, ``field`` holds the task's marker so a created task can be found by it, and
``attempts`` counts the create calls that may have happened (``mark_attempt``, committed
before each call): a pending task with ``attempts > 0`` is looked up before any new create.

A write or task the CRM rejected for that item (``mark_failed``) is retried on later passes
with exponential backoff per item: ``next_attempt_at`` is ``BACKOFF_BASE * 2**(n-1)`` after
the n-th failure (at most ``BACKOFF_MAX``); ``due_rows`` lists what may be tried now. For a
field, ``attempts`` counts its failed writes (reset when it is done).

A row is identified by ``(tenant, kind, entity, external_id, field)``; the functions take
those parts positionally, in that order, like the ledger's key. Rows are written with Core
statements; the readers here load with ``populate_existing`` so a session that loaded a row
before it changed never sees a stale status. Values are stored as text through ``to_text``,
so "desired" and "written" compare equal when they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from syncd.store._sql import insert_for, utcnow
from syncd.store.models import WritebackRow

WriteKind = Literal["field", "task"]
LedgerKey = tuple[str, str, str]  # (entity, external_id, field-or-marker)
Value = str | int | float | None
_IDENTITY = ["tenant_id", "kind", "entity", "external_id", "field"]
#: Backoff of a failed item: doubles per failure from BACKOFF_BASE up to BACKOFF_MAX.
BACKOFF_BASE = timedelta(minutes=10)
BACKOFF_MAX = timedelta(hours=24)


def backoff(failures: int) -> timedelta:
    """How long to wait before trying an item again after its ``failures``-th failure."""
    if failures <= 1:
        return BACKOFF_BASE
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** min(failures - 1, 20))


def to_text(value: Value) -> str | None:
    """The stored form of a value: integral floats lose their ``.0`` (72.0 -> "72")."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def get_ledger(session: Session, tenant_id: int,
               kind: WriteKind) -> dict[LedgerKey, WritebackRow]:
    """Every ledger row of ``kind``, keyed by ``(entity, external_id, field)``."""
    stmt = select(WritebackRow).where(WritebackRow.tenant_id == tenant_id,
                                      WritebackRow.kind == kind)
    rows = session.scalars(stmt.execution_options(populate_existing=True))
    return {(row.entity, row.external_id, row.field): row for row in rows}


def mark_pending_many(session: Session, tenant_id: int, kind: WriteKind,
                      items: Iterable[tuple[str, str, str, Value]], *,
                      now: datetime | None = None) -> int:
    """Record the intent to write ``(entity, external_id, field, desired_value)`` items.

    One bulk upsert: the row becomes ``pending`` with the new desired value and no error;
    ``written_value``, ``crm_id`` and ``attempts`` are kept (new rows start at 0 attempts).
    """
    now = now or utcnow()
    return _upsert_rows(session, (
        {"tenant_id": tenant_id, "kind": kind, "entity": entity, "external_id": external_id,
         "field": field, "desired_value": to_text(desired), "status": "pending",
         "attempts": 0, "error": None, "updated_at": now}
        for entity, external_id, field, desired in items
    ), lambda excluded: {"desired_value": excluded.desired_value, "status": "pending",
                         "error": None, "updated_at": excluded.updated_at,
                         "next_attempt_at": None})


def _upsert_rows(session: Session, rows: Iterable[dict[str, Any]],
                 on_conflict: Callable[[Any], dict[str, Any]]) -> int:
    """One bulk upsert of ledger rows (of rows with the same key, the last one wins);
    ``on_conflict`` maps the statement's ``excluded`` row to what an existing row becomes.
    Returns how many rows were written."""
    unique = {tuple(row[name] for name in _IDENTITY): row for row in rows}
    if not unique:
        return 0
    stmt = insert_for(session, WritebackRow.__table__)
    session.execute(stmt.on_conflict_do_update(index_elements=_IDENTITY,
                                               set_=on_conflict(stmt.excluded)),
                    list(unique.values()))
    return len(unique)


def mark_pending(
    session: Session, tenant_id: int, kind: WriteKind, entity: str, external_id: str,
    field: str, desired_value: Value, *, now: datetime | None = None,
) -> None:
    """Record the intent to write one value; the caller commits before the HTTP call."""
    mark_pending_many(session, tenant_id, kind, [(entity, external_id, field, desired_value)],
                      now=now)


def _finish(session: Session, tenant_id: int, kind: WriteKind, key: LedgerKey, *,
            values: dict[str, Any], now: datetime | None) -> None:
    """Upsert the row's outcome (creating the row if no intent was ever recorded)."""
    entity, external_id, field = key
    stmt = insert_for(session, WritebackRow.__table__).values(
        tenant_id=tenant_id, kind=kind, entity=entity, external_id=external_id, field=field,
        updated_at=now or utcnow(), **{"attempts": 0, **values})
    session.execute(stmt.on_conflict_do_update(
        index_elements=_IDENTITY,
        set_={name: stmt.excluded[name] for name in (*values, "updated_at")},
    ))


def mark_attempt(
    session: Session, tenant_id: int, kind: WriteKind, entity: str, external_id: str,
    field: str, *, now: datetime | None = None,
) -> int:
    """Count one more call that may create/write it (commit before the call); returns the
    new count, 0 if there is no such row."""
    table = WritebackRow.__table__
    stmt = (update(table)
            .where(*(table.c[name] == value for name, value in zip(
                _IDENTITY, (tenant_id, kind, entity, external_id, field), strict=True)))
            .values(attempts=table.c.attempts + 1, updated_at=now or utcnow())
            .returning(table.c.attempts))
    return session.execute(stmt).scalar() or 0


def mark_fields_done(session: Session, tenant_id: int,
                     items: Iterable[tuple[str, str, str, Value]], *,
                     now: datetime | None = None) -> int:
    """Record confirmed field writes ``(entity, external_id, field, written_value)`` in one
    bulk upsert: what ``mark_done`` records for each (a batch's outcomes in one statement,
    not one statement per field)."""
    stamp = now or utcnow()
    return _upsert_rows(session, (
        {"tenant_id": tenant_id, "kind": "field", "entity": entity,
         "external_id": external_id, "field": field, "status": "done",
         "written_value": to_text(written), "error": None, "next_attempt_at": None,
         "attempts": 0, "updated_at": stamp}
        for entity, external_id, field, written in items
    ), lambda excluded: {name: excluded[name] for name in _DONE_COLUMNS})


#: What ``mark_fields_done`` sets on an existing row (what ``mark_done`` sets for a field).
_DONE_COLUMNS = ("status", "written_value", "error", "next_attempt_at", "attempts",
                 "updated_at")


def mark_done(
    session: Session, tenant_id: int, kind: WriteKind, entity: str, external_id: str,
    field: str, written_value: Value, crm_id: str | None = None, *,
    now: datetime | None = None,
) -> None:
    """Record a confirmed write. ``crm_id`` (a created task's id) is kept when not given."""
    values: dict[str, Any] = {"status": "done", "written_value": to_text(written_value),
                              "error": None, "next_attempt_at": None}
    if kind == "field":
        values["attempts"] = 0
    if crm_id is not None:
        values["crm_id"] = crm_id
    _finish(session, tenant_id, kind, (entity, external_id, field), values=values, now=now)


def mark_failed(
    session: Session, tenant_id: int, kind: WriteKind, entity: str, external_id: str,
    field: str, error: str, *, now: datetime | None = None,
) -> datetime:
    """Record a failed write (``error`` already redacted and bounded) and when to try it
    again; returns that time. A field counts the failure in ``attempts``; a task's
    attempts were counted by ``mark_attempt`` before its call."""
    now = now or utcnow()
    _finish(session, tenant_id, kind, (entity, external_id, field),
            values={"status": "failed", "error": error}, now=now)
    table = WritebackRow.__table__
    key = [table.c[name] == value for name, value in zip(
        _IDENTITY, (tenant_id, kind, entity, external_id, field), strict=True)]
    bump = 1 if kind == "field" else 0
    failures = session.execute(
        update(table).where(*key).values(attempts=table.c.attempts + bump)
        .returning(table.c.attempts)).scalar() or 1
    retry_at = now + backoff(failures)
    session.execute(update(table).where(*key).values(next_attempt_at=retry_at))
    return retry_at


def due_rows(session: Session, tenant_id: int, kind: WriteKind,
             now: datetime) -> list[WritebackRow]:
    """Rows to act on now: ``pending`` ones, and ``failed`` ones whose backoff is over;
    oldest first."""
    stmt = select(WritebackRow).where(
        WritebackRow.tenant_id == tenant_id, WritebackRow.kind == kind,
        (WritebackRow.status == "pending") | (
            (WritebackRow.status == "failed")
            & (WritebackRow.next_attempt_at.is_(None) | (WritebackRow.next_attempt_at <= now))),
    ).order_by(WritebackRow.updated_at, WritebackRow.id)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def failed_rows(session: Session, tenant_id: int,
                kind: WriteKind | None = None) -> list[WritebackRow]:
    """Rows whose last write the CRM rejected (waiting for their retry), oldest first."""
    return _rows_with_status(session, tenant_id, "failed", kind)


def failed_counts_by_tenant(session: Session) -> dict[int, int]:
    """``tenant id -> ledger items whose last write the CRM rejected``."""
    stmt = (select(WritebackRow.tenant_id, func.count()).where(WritebackRow.status == "failed")
            .group_by(WritebackRow.tenant_id))
    return {tenant: count for tenant, count in session.execute(stmt)}


def pending_rows(session: Session, tenant_id: int,
                 kind: WriteKind | None = None) -> list[WritebackRow]:
    """Rows left ``pending`` (a write that may or may not have happened), oldest first."""
    return _rows_with_status(session, tenant_id, "pending", kind)


def _rows_with_status(session: Session, tenant_id: int, status: str,
                      kind: WriteKind | None) -> list[WritebackRow]:
    stmt = select(WritebackRow).where(WritebackRow.tenant_id == tenant_id,
                                      WritebackRow.status == status)
    if kind is not None:
        stmt = stmt.where(WritebackRow.kind == kind)
    stmt = stmt.order_by(WritebackRow.updated_at, WritebackRow.id)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))
