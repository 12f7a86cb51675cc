"""Tenant leases (table ``tenant_leases``): who syncs a tenant now, and when it last started.

One row per tenant key. A claim sets ``holder``, bumps ``fence`` and stamps ``acquired_at``
(the start of the newest pass) and ``expires_at``; a release clears ``holder``/``expires_at``
but keeps ``acquired_at``, which is therefore also the schedule: a free tenant is due once
``acquired_at + interval`` has passed, and ``acquired_at = NULL`` means "due now" (a new
tenant, or a webhook asked for a sync). A held lease whose ``expires_at`` passed belongs to
a replica that died or stalled: it is due at once and the next claim fences the old holder.

Times come from the database clock on PostgreSQL (replicas' clocks never decide who owns a
tenant); SQLite runs one replica, so its own clock is the only one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from syncd.store._sql import affected_rows
from syncd.store.models import TenantLeaseRow as L


@dataclass(frozen=True)
class Claim:
    tenant_key: str
    fence: int
    #: Seconds between the tenant's due time and this claim: ``acquired_at + interval``
    #: of a free tenant, ``expires_at`` of a lease taken over. None when the tenant was
    #: asked for "now" (new, or a webhook): it has no scheduled time to be late for.
    late_seconds: float | None = field(default=None, compare=False)


def db_now(session: Session) -> datetime:
    """The authoritative time: the database clock on PostgreSQL, ours on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        value = session.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)
    return datetime.now(UTC)


def ensure_leases(session: Session, keys: Iterable[str]) -> None:
    """A lease row for every tenant key (new ones are due at once)."""
    rows = [{"tenant_key": key, "fence": 0} for key in keys]
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for start in range(0, len(rows), 500):
        statement = insert(L).values(rows[start:start + 500])
        session.execute(statement.on_conflict_do_nothing(index_elements=["tenant_key"]))


def claim_due(session: Session, keys: Sequence[str], holder: str, *, interval: timedelta,
              ttl: timedelta, limit: int) -> list[Claim]:
    """Claim up to ``limit`` due tenants among ``keys``, the longest overdue first.

    Rows another replica is claiming right now are skipped (``SKIP LOCKED``), never waited
    for; the rows read are locked until the claim commits, and the UPDATE checks again that
    they are due (SQLite has one replica, so that check alone is enough there). Each claim
    says how late it is against its due time (``Claim.late_seconds``)."""
    if not keys or limit <= 0:
        return []
    now = db_now(session)
    due = or_(
        and_(L.holder.is_(None), or_(L.acquired_at.is_(None), L.acquired_at <= now - interval)),
        and_(L.holder.is_not(None), L.expires_at < now),
    )
    candidates = session.execute(
        select(L.tenant_key, L.holder, L.acquired_at, L.expires_at)
        .where(L.tenant_key.in_(list(keys)), due)
        .order_by(L.acquired_at.asc().nulls_first(), L.tenant_key)
        .limit(limit).with_for_update(skip_locked=True)).all()
    if not candidates:
        return []
    late = {key: _late_seconds(now, interval, held, acquired_at, expires_at)
            for key, held, acquired_at, expires_at in candidates}
    statement = (update(L).where(L.tenant_key.in_(list(late)), due)
                 .values(holder=holder, fence=L.fence + 1, acquired_at=now,
                         expires_at=now + ttl)
                 .returning(L.tenant_key, L.fence)
                 .execution_options(synchronize_session=False))
    return sorted((Claim(key, fence, late[key]) for key, fence in session.execute(statement)),
                  key=lambda claim: claim.tenant_key)


def _late_seconds(now: datetime, interval: timedelta, holder: str | None,
                  acquired_at: datetime | None, expires_at: datetime | None) -> float | None:
    """How long after its due time a tenant is claimed at ``now`` (None: due "now")."""
    if holder is not None:
        due_at = expires_at
    elif acquired_at is None:
        return None
    else:
        due_at = acquired_at + interval
    if due_at is None:
        return None
    return max(0.0, (now - due_at).total_seconds())


def current(session: Session, key: str) -> Any:
    """The lease row of ``key`` (holder, fence, acquired_at, expires_at) or None."""
    return session.execute(select(L.holder, L.fence, L.acquired_at, L.expires_at)
                           .where(L.tenant_key == key)).first()


def claim_one(session: Session, key: str, holder: str, *, ttl: timedelta,
              dead_holder: str | None = None) -> Claim | None:
    """Claim one tenant now, due or not, unless another process holds a live lease.
    ``dead_holder``: a holder known to be dead (its process is gone), taken over at once."""
    now = db_now(session)
    free = or_(L.holder.is_(None), L.expires_at < now)
    if dead_holder is not None:
        free = or_(free, L.holder == dead_holder)
    statement = (update(L).where(L.tenant_key == key, free)
                 .values(holder=holder, fence=L.fence + 1, acquired_at=now,
                         expires_at=now + ttl)
                 .returning(L.tenant_key, L.fence)
                 .execution_options(synchronize_session=False))
    row = session.execute(statement).first()
    return Claim(row[0], row[1]) if row else None


def renew(session: Session, key: str, holder: str, fence: int, *, ttl: timedelta) -> bool:
    """Extend our lease; False means it is no longer ours (stop at once)."""
    now = db_now(session)
    statement = (update(L).where(L.tenant_key == key, L.holder == holder, L.fence == fence)
                 .values(expires_at=now + ttl).execution_options(synchronize_session=False))
    return bool(affected_rows(session.execute(statement)))


_KEEP: Any = object()


def release(session: Session, key: str, holder: str, fence: int, *, due_now: bool = False,
            acquired_at: datetime | None = _KEEP) -> bool:
    """Give the tenant back; with ``due_now`` the next claim may take it at once; with
    ``acquired_at`` the schedule is put back as it was (a what-if pass is not a sync)."""
    values: dict[str, Any] = {"holder": None, "expires_at": None}
    if due_now:
        values["acquired_at"] = None
    elif acquired_at is not _KEEP:
        values["acquired_at"] = acquired_at
    statement = (update(L).where(L.tenant_key == key, L.holder == holder, L.fence == fence)
                 .values(**values).execution_options(synchronize_session=False))
    return bool(affected_rows(session.execute(statement)))


def expire(session: Session, holder: str) -> int:
    """End every lease of ``holder`` now (a process known to be dead)."""
    statement = (update(L).where(L.holder == holder).values(expires_at=db_now(session))
                 .execution_options(synchronize_session=False))
    return affected_rows(session.execute(statement))


def holders(session: Session) -> set[str]:
    return set(session.scalars(select(L.holder).where(L.holder.is_not(None)).distinct()))


def request_sync(session: Session, key: str) -> None:
    """Make a tenant due now (a webhook); a running pass is followed by another one."""
    session.execute(update(L).where(L.tenant_key == key).values(acquired_at=None)
                    .execution_options(synchronize_session=False))


def holds(session: Session, key: str, holder: str, fence: int) -> bool:
    """Lock the lease row until this transaction ends and say whether it is still ours.

    Called just before a pass commits: a claim by another replica waits for our commit (and
    then fences us), or has already happened (and we roll back)."""
    row = session.execute(select(L.holder, L.fence).where(L.tenant_key == key)
                          .with_for_update()).first()
    return row is not None and row[0] == holder and row[1] == fence


def lease_rows(session: Session) -> list[Any]:
    return list(session.execute(select(L.tenant_key, L.holder, L.fence, L.acquired_at,
                                       L.expires_at).order_by(L.tenant_key)))


__all__ = ["Claim", "claim_due", "claim_one", "current", "db_now", "ensure_leases", "expire",
           "holders", "holds", "lease_rows", "release", "renew", "request_sync"]
