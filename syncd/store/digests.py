"""Digest deliveries (table ``digest_deliveries``): who sends which digest, and whether it went.

One row per (tenant key, kind, recipient, period), unique. ``claim`` either inserts the row
(``INSERT … ON CONFLICT DO NOTHING``: of two replicas inserting at once exactly one gets it)
or takes over a row whose claim expired (its claimer died between claim and send) or
whose retry time has come, with one conditional ``UPDATE`` (of two replicas updating at
once exactly one matches). Each claim increments ``attempts``; ``mark_sent`` and
``mark_failed`` only touch the row while it still carries the caller's claim, so a
claimer that stalled past its claim time cannot overwrite its successor's outcome.

Times are the caller's clock (the digest service passes its own, which tests drive);
claims last minutes, so replicas whose clocks agree within seconds (NTP) are enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from syncd.store.models import DigestDeliveryRow as D

#: A claim's states: ``claimed`` (being sent), ``retry`` (failed, due again later),
#: ``sent`` and ``failed`` (given up) are final.
CLAIMED, RETRY, SENT, FAILED = "claimed", "retry", "sent", "failed"
FINAL = (SENT, FAILED)


@dataclass(frozen=True)
class DigestClaim:
    id: int
    tenant_key: str
    kind: str
    recipient: str
    period: str
    holder: str
    attempts: int


def deliveries(session: Any, tenant_key: str | None = None, kind: str | None = None,
               period: str | None = None) -> list[Any]:
    """The rows (all, or one tenant's, kind's, period's), oldest first."""
    statement = select(D)
    if tenant_key is not None:
        statement = statement.where(D.tenant_key == tenant_key)
    if kind is not None:
        statement = statement.where(D.kind == kind)
    if period is not None:
        statement = statement.where(D.period == period)
    return list(session.scalars(statement.order_by(D.id)))


def deliveries_of(session: Any, kind: str, period: str,
                  tenant_keys: Sequence[str]) -> list[Any]:
    """The rows of one (kind, period) for many tenants (the digest timer's one read)."""
    found: list[Any] = []
    keys = sorted(set(tenant_keys))
    for start in range(0, len(keys), 500):
        statement = select(D).where(D.kind == kind, D.period == period,
                                    D.tenant_key.in_(keys[start:start + 500]))
        found += session.scalars(statement)
    return found


def claimable(row: Any, now: datetime, dead_holder: str | None = None) -> bool:
    """Whether ``claim`` could take this existing row now (the same test, in Python)."""
    if row.status == RETRY:
        return row.next_attempt_at is None or row.next_attempt_at <= now
    if row.status == CLAIMED:
        return (row.claim_expires_at is None or row.claim_expires_at < now
                or (dead_holder is not None and row.claimed_by == dead_holder))
    return False


def claim(session: Any, *, tenant_key: str, kind: str, recipient: str, period: str,
          holder: str, now: datetime, ttl: timedelta,
          dead_holder: str | None = None) -> DigestClaim | None:
    """Claim one delivery for ``holder`` until ``now + ttl``; None when another replica
    has it, or it was sent, given up, or waits for its retry time. ``dead_holder``: a
    claimer known to be dead (its process is gone), whose claim is taken over at once."""
    key = {"tenant_key": tenant_key, "kind": kind, "recipient": recipient, "period": period}
    values = {**key, "status": CLAIMED, "attempts": 1, "claimed_by": holder,
              "claimed_at": now, "claim_expires_at": now + ttl}
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    insert_new = (insert(D).values(**values)
                  .on_conflict_do_nothing(index_elements=list(key))
                  .returning(D.id))
    inserted = session.execute(insert_new).scalar()
    if inserted is not None:
        return DigestClaim(inserted, tenant_key, kind, recipient, period, holder, 1)
    takeover = or_(
        and_(D.status == RETRY, or_(D.next_attempt_at.is_(None), D.next_attempt_at <= now)),
        and_(D.status == CLAIMED, or_(D.claim_expires_at.is_(None), D.claim_expires_at < now)),
    )
    if dead_holder is not None:
        takeover = or_(takeover, and_(D.status == CLAIMED, D.claimed_by == dead_holder))
    take_over = (update(D)
                 .where(D.tenant_key == tenant_key, D.kind == kind, D.recipient == recipient,
                        D.period == period, takeover)
                 .values(status=CLAIMED, attempts=D.attempts + 1, claimed_by=holder,
                         claimed_at=now, claim_expires_at=now + ttl)
                 .returning(D.id, D.attempts)
                 .execution_options(synchronize_session=False))
    row = session.execute(take_over).first()
    if row is None:
        return None
    return DigestClaim(row[0], tenant_key, kind, recipient, period, holder, row[1])


def _ours(claim_: DigestClaim) -> Any:
    return and_(D.id == claim_.id, D.status == CLAIMED, D.claimed_by == claim_.holder,
                D.attempts == claim_.attempts)


def mark_sent(session: Any, claim_: DigestClaim, now: datetime) -> bool:
    """The digest went out; False when the claim was no longer ours (taken over)."""
    statement = (update(D).where(_ours(claim_))
                 .values(status=SENT, sent_at=now, claim_expires_at=None, error=None)
                 .execution_options(synchronize_session=False))
    return bool(session.execute(statement).rowcount)


def mark_failed(session: Any, claim_: DigestClaim, error: str, *,
                retry_at: datetime | None) -> bool:
    """The send failed: try again from ``retry_at``, or give up (``retry_at`` None)."""
    values: dict[str, Any] = {"error": error[:2000], "claim_expires_at": None,
                              "status": RETRY if retry_at is not None else FAILED,
                              "next_attempt_at": retry_at}
    statement = (update(D).where(_ours(claim_)).values(**values)
                 .execution_options(synchronize_session=False))
    return bool(session.execute(statement).rowcount)


def prune(session: Any, before: datetime) -> int:
    """Retention: forget final rows older than ``before`` (their periods are long past, so
    no replica would claim them again: the send window is at most six days)."""
    stamp = func.coalesce(D.sent_at, D.claimed_at)
    statement = (delete(D).where(D.status.in_(FINAL), stamp < before)
                 .execution_options(synchronize_session=False))
    return int(session.execute(statement).rowcount)


__all__ = ["CLAIMED", "FAILED", "FINAL", "RETRY", "SENT", "DigestClaim", "claim", "claimable",
           "deliveries", "deliveries_of", "mark_failed", "mark_sent", "prune"]
