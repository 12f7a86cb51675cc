"""Stage history within the daily budget: what a pass does around a connector's
``history_backfill`` (issue 13, item 4; the queue itself is ``syncd.store.backlog``).

Before ``stage_history``: queue the deals this pass changed (within the connector's
horizon), append the moves that deals already read show in their own fields, and hand the
connector the pending deals in order with what is left of today's allowance. After each
page: mark the deals it completed and count its requests against the tenant's local day.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from syncd import store
from syncd.connector import HistoryBackfill, PullContext
from syncd.records import Page
from syncd.store import backlog

#: Changed deals queued (with their field-shown moves) per write transaction.
PLAN_CHUNK = 5_000


def local_day(now: datetime, timezone: str) -> date:
    return now.astimezone(ZoneInfo(timezone)).date()


def plan(db: store.Database, tenant_id: int, budget: HistoryBackfill,
         changed: Iterable[str], context: PullContext, now: datetime, day: date) -> None:
    """Queue ``changed`` deals, store the field-shown moves of deals already read, and set
    ``context.history_deals``/``history_allowance`` for this pass."""
    ordered = sorted(set(changed))
    # PLAN_CHUNK deals per write transaction (a first pass changes every deal). A crash
    # between two leaves some queued: both steps are idempotent, and the next pass plans
    # again every deal stored since the unfinished run began (``sync._history_owed``).
    for start in range(0, len(ordered), PLAN_CHUNK):
        chunk = ordered[start: start + PLAN_CHUNK]
        with db.session(immediate=True) as session:
            backlog.enqueue(session, tenant_id, chunk, now,
                            since=now - timedelta(days=budget.horizon_days))
            moves = backlog.field_transitions(session, tenant_id, chunk)
            if moves:
                store.upsert_page(session, tenant_id, Page("stage_history", moves))
    # What to read this pass, in a read-only transaction: ordering the backlog of a large
    # first pass takes seconds, which SQLite's write lock need not wait for (only this
    # tenant's pass, holding its lease, changes its backlog in between).
    with db.session() as session:
        allowance = max(budget.requests_per_day - backlog.spent(session, tenant_id, day), 0)
        deals = backlog.take(session, tenant_id, allowance)
        deal = store.DealRow
        for chunk in (deals[i: i + 500] for i in range(0, len(deals), 500)):
            for row in session.execute(select(deal.external_id, deal.updated_at,
                                              deal.stage_external_id).where(
                    deal.tenant_id == tenant_id, deal.external_id.in_(chunk))):
                context.stored_deals.setdefault(row.external_id,
                                                (row.updated_at, row.stage_external_id))
    context.history_deals = deals
    context.history_allowance = allowance


def record(db: store.Database, tenant_id: int, page: Page, now: datetime, day: date) -> None:
    """A stored ``stage_history`` page: its deals are done, its requests spent today."""
    with db.session(immediate=True) as session:
        backlog.mark_done(session, tenant_id, list(page.covered), now)
        backlog.spend(session, tenant_id, day, page.requests)


__all__ = ["local_day", "plan", "record"]
