"""Stage history as a resumable, budget-aware backfill (issue 13, item 4).

Where a CRM's stage history costs one request per deal (Pipedrive's deal flow), reading
it inside every pass would make a large first pass spend hours and most of the account's
daily budget before its first audit. Instead, each changed deal is *queued* here
(``history_backlog``), and each pass reads the history of at most what its daily share
allows (``history_spend`` counts the requests spent per tenant and local day), open deals
first, then the most recently closed ones. The next pass resumes where this one stopped.

A deal whose history was read is kept current from its own fields: when a later pass
stores it in another stage (``stage_id``/``stage_change_time``), ``field_transitions``
appends that move without asking the CRM again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from syncd.records import StageChange
from syncd.store._sql import in_chunk_size, insert_for
from syncd.store.models import DealRow, HistoryBacklogRow, HistorySpendRow, StageChangeRow

B = HistoryBacklogRow


def _chunks(session: Session, ids: Iterable[str]) -> Iterable[list[str]]:
    items, size = sorted(set(ids)), in_chunk_size(session)
    for first in range(0, len(items), size):
        yield items[first: first + size]


def enqueue(session: Session, tenant_id: int, deal_ids: Iterable[str], now: datetime,
            since: datetime | None = None) -> int:
    """Queue the stored deals among ``deal_ids`` updated at or after ``since`` (None: all)
    whose history is not queued yet; returns how many were queued. A deal already read
    stays read (``field_transitions`` keeps it current)."""
    queued = 0
    for chunk in _chunks(session, deal_ids):
        query = select(DealRow.external_id).where(DealRow.tenant_id == tenant_id,
                                                  DealRow.external_id.in_(chunk))
        if since is not None:
            query = query.where((DealRow.updated_at >= since) | DealRow.updated_at.is_(None))
        stored = list(session.scalars(query))
        if stored:
            result = session.execute(insert_for(session, B.__table__).values(
                [{"tenant_id": tenant_id, "deal_external_id": deal_id, "queued_at": now}
                 for deal_id in stored]).on_conflict_do_nothing(
                index_elements=["tenant_id", "deal_external_id"]))
            queued += max(getattr(result, "rowcount", 0) or 0, 0)
    return queued


def take(session: Session, tenant_id: int, limit: int) -> list[str]:
    """Up to ``limit`` pending deals, open ones first (oldest stage change first: the ones
    most likely overdue), then closed ones, most recently closed first."""
    if limit <= 0:
        return []
    closed_at = func.coalesce(DealRow.won_at, DealRow.lost_at, DealRow.updated_at)
    query = (select(B.deal_external_id)
             .join(DealRow, (DealRow.tenant_id == B.tenant_id)
                   & (DealRow.external_id == B.deal_external_id))
             .where(B.tenant_id == tenant_id, B.done_at.is_(None))
             .order_by(case((DealRow.status == "open", 0), else_=1),
                       case((DealRow.status == "open", DealRow.stage_changed_at), else_=None),
                       closed_at.desc(), B.deal_external_id)
             .limit(limit))
    return list(session.scalars(query))


def mark_done(session: Session, tenant_id: int, deal_ids: Sequence[str],
              now: datetime) -> None:
    for chunk in _chunks(session, deal_ids):
        session.execute(update(B).where(B.tenant_id == tenant_id,
                                        B.deal_external_id.in_(chunk),
                                        B.done_at.is_(None)).values(done_at=now))


def spent(session: Session, tenant_id: int, day: date) -> int:
    """Requests stage history spent on ``day`` (the tenant's local day)."""
    return session.scalar(select(HistorySpendRow.requests).where(
        HistorySpendRow.tenant_id == tenant_id, HistorySpendRow.day == day)) or 0


def spend(session: Session, tenant_id: int, day: date, requests: int) -> None:
    if requests <= 0:
        return
    table = HistorySpendRow.__table__
    statement = insert_for(session, table).values(tenant_id=tenant_id, day=day,
                                                  requests=requests)
    session.execute(statement.on_conflict_do_update(
        index_elements=["tenant_id", "day"],
        set_={"requests": table.c.requests + statement.excluded.requests}))


def coverage(session: Session, tenant_id: int) -> tuple[int, int]:
    """``(deals with history, deals owing it)`` over every deal ever queued."""
    row = session.execute(select(func.count(B.done_at), func.count()).where(
        B.tenant_id == tenant_id)).one()
    return int(row[0]), int(row[1])


def pending(session: Session, tenant_id: int) -> set[str]:
    """The deals still waiting for their history."""
    return set(session.scalars(select(B.deal_external_id).where(
        B.tenant_id == tenant_id, B.done_at.is_(None))))


def field_transitions(session: Session, tenant_id: int,
                      deal_ids: Iterable[str]) -> list[StageChange]:
    """For deals whose history was read: a transition from the last stored stage to the
    deal's current one, at its ``stage_changed_at``, when its own fields show a move the
    stored history does not have. No CRM request; the id is derived from the move, so a
    re-run stores the same row."""
    moves: list[StageChange] = []
    for chunk in _chunks(session, deal_ids):
        done = select(B.deal_external_id).where(B.tenant_id == tenant_id,
                                                B.deal_external_id.in_(chunk),
                                                B.done_at.is_not(None))
        deals = {row.external_id: row for row in session.execute(
            select(DealRow.external_id, DealRow.stage_external_id, DealRow.stage_changed_at)
            .where(DealRow.tenant_id == tenant_id, DealRow.external_id.in_(done)))}
        if not deals:
            continue
        last: dict[str, tuple[str, datetime]] = {}
        for row in session.execute(
                select(StageChangeRow.deal_external_id, StageChangeRow.to_stage_external_id,
                       StageChangeRow.at)
                .where(StageChangeRow.tenant_id == tenant_id,
                       StageChangeRow.deal_external_id.in_(list(deals)))
                .order_by(StageChangeRow.at, StageChangeRow.id)):
            last[row.deal_external_id] = (row.to_stage_external_id, row.at)
        for deal_id, deal in sorted(deals.items()):
            stage, at = deal.stage_external_id, deal.stage_changed_at
            before = last.get(deal_id)
            if stage is None or at is None or before is None or before[0] == stage:
                continue
            if at <= before[1]:
                continue
            moves.append(StageChange(
                external_id=f"fields-{deal_id}-{int(at.timestamp())}", deal_id=deal_id,
                from_stage_id=before[0], to_stage_id=stage, at=at,
                raw={"source": "deal fields", "stage_id": stage,
                     "stage_change_time": at.isoformat()}))
    return moves


__all__ = ["coverage", "enqueue", "field_transitions", "mark_done", "pending", "spend",
           "spent", "take"]
