"""Tenants and sync runs: who we sync and how each pass went.

A run row is written when a pass starts, so a killed or crashed pass leaves a ``running``
row behind. ``close_abandoned_runs`` closes those as ``abandoned`` (with the reason in
``error``) when the tenant's next pass starts: that pass holds the tenant's lease, so the
process that wrote the row no longer does (it died, or its lease expired and its late
commits are fenced off), and the row can never be finished by anyone else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from syncd.store._sql import affected_rows, insert_for, utcnow
from syncd.store.models import SyncRunRow, TenantRow
from syncd.store.sanitize import bounded_error, clean_json_text

RunStatus = Literal["running", "ok", "failed", "interrupted", "abandoned", "lease_lost"]
#: ``lease_lost``: another replica took the tenant over mid-pass; the run stopped there.
FINAL_STATUSES = frozenset({"ok", "failed", "interrupted", "abandoned", "lease_lost"})
ABANDONED_REASON = ("abandoned: the process running this pass stopped without closing it "
                    "(killed, crashed or lost its lease); closed when the next pass started")


def ensure_tenant(session: Session, key: str, plugin: str, *,
                  now: datetime | None = None) -> int:
    """The id of tenant ``key``, created on first sight (race-safe); updates its plugin.

    A known tenant is only read: an ``INSERT ... ON CONFLICT DO NOTHING`` takes SQLite's
    write lock even when it inserts nothing, so a read-only session that starts here (a
    report, a dashboard page) held the lock for its whole duration; at 100k deals a
    report's reads outlasted the busy timeout and other tenants' lease renewals failed
    (bench/bench_capacity.py)."""
    query = select(TenantRow.id, TenantRow.plugin).where(TenantRow.key == key)
    tenant = session.execute(query).first()
    if tenant is None:
        table = TenantRow.__table__
        stmt = insert_for(session, table).values(
            key=key, plugin=plugin, created_at=now or utcnow())
        session.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
        tenant = session.execute(query).one()
    if tenant.plugin != plugin:
        session.execute(update(TenantRow).where(TenantRow.id == tenant.id).values(plugin=plugin))
    return int(tenant.id)


def get_tenant(session: Session, key: str) -> TenantRow | None:
    stmt = select(TenantRow).where(TenantRow.key == key)
    return session.scalar(stmt.execution_options(populate_existing=True))


def list_tenants(session: Session) -> list[TenantRow]:
    stmt = select(TenantRow).order_by(TenantRow.key)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def start_run(session: Session, tenant_id: int, *, full: bool = False,
              as_of: datetime | None = None, now: datetime | None = None) -> int:
    """Record that a pass started; returns the run id (flushed, not committed)."""
    run = SyncRunRow(tenant_id=tenant_id, started_at=now or utcnow(), status="running",
                     full=full, as_of=as_of, counts={})
    session.add(run)
    session.flush()
    return run.id


def finish_run(session: Session, run_id: int, status: RunStatus, *,
               counts: dict[str, Any] | None = None, error: str | None = None,
               now: datetime | None = None) -> None:
    """Close a run and copy its outcome onto the tenant. ``error`` is stored redacted,
    bounded and cleaned of characters PostgreSQL rejects, and so are the texts in
    ``counts`` (a NUL in an error must not leave the run "running")."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"a run finishes as one of {sorted(FINAL_STATUSES)}, not {status!r}")
    run = session.get(SyncRunRow, run_id, populate_existing=True)
    if run is None:
        raise LookupError(f"no sync run {run_id}")
    finished = now or utcnow()
    error = bounded_error(error)
    run.finished_at = finished
    run.status = status
    run.error = error
    if counts is not None:
        run.counts = clean_json_text(dict(counts))
    if status != "lease_lost":  # the tenant's outcome is the new holder's to record
        session.execute(update(TenantRow).where(TenantRow.id == run.tenant_id).values(
            last_sync_at=finished, last_status=status, last_error=error))
    session.flush()


def last_runs(session: Session, tenant_id: int | None = None,
              limit: int = 10) -> list[SyncRunRow]:
    """The most recent runs (of one tenant or all), newest first."""
    stmt = select(SyncRunRow).order_by(SyncRunRow.started_at.desc(), SyncRunRow.id.desc())
    if tenant_id is not None:
        stmt = stmt.where(SyncRunRow.tenant_id == tenant_id)
    stmt = stmt.limit(limit).execution_options(populate_existing=True)
    return list(session.scalars(stmt))


def interrupt_stale_runs(session: Session, tenant_id: int | None = None, *,
                         now: datetime | None = None) -> int:
    """Mark runs still ``running`` as ``interrupted`` (call at start, under the lease)."""
    stmt = update(SyncRunRow).where(SyncRunRow.status == "running").values(
        status="interrupted", finished_at=now or utcnow())
    if tenant_id is not None:
        stmt = stmt.where(SyncRunRow.tenant_id == tenant_id)
    return affected_rows(session.execute(stmt))


def close_abandoned_runs(session: Session, tenant_id: int, *,
                         now: datetime | None = None) -> int:
    """Close the tenant's runs still ``running`` as ``abandoned``; returns how many.

    Call only while holding the tenant's lease, before starting a run: no live process
    can then own one of those rows (see the module docstring). The tenant's own last
    status is left to the pass that follows."""
    stmt = update(SyncRunRow).where(
        SyncRunRow.tenant_id == tenant_id, SyncRunRow.status == "running",
    ).values(status="abandoned", finished_at=now or utcnow(), error=ABANDONED_REASON)
    return affected_rows(session.execute(stmt))
