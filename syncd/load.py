"""Read the engine's KPI and people-karma inputs from the store, through the tenant's mapping.

The pass's loader (beside the store, outside the engine): the engine receives these records
and never reads the store itself.

Deals stream chunk by chunk with their stage changes; activities stream in keyset pages
with their company taken from the activity or, when it names none, from its deal (one SQL
join, no per-row look-ups).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from syncd import store
from syncd.audit.facts import Transition
from syncd.engine_model import ActivityRecord, CompanyRecord, DealRecord
from syncd.kpi.compute import window
from syncd.kpi.funnel import Funnel
from syncd.mapping import TenantMapper, to_float
from syncd.scoring.people import Person, ViolationRecord
from syncd.store._sql import in_chunk_size, sequence_chunks
from syncd.store.models import ActivityRow, DealRow, UserRow, ViolationRow

if TYPE_CHECKING:
    from syncd.config import Tenant

ACTIVITY_PAGE = 20_000


def deal_record(deal: Any, changes: Any, mapper: TenantMapper) -> DealRecord:
    history = tuple(
        Transition(mapper.stage_key(c.from_stage_id) if c.from_stage_id else None,
                   mapper.stage_key(c.to_stage_id), c.at, c.external_id)
        for c in changes)
    source = mapper.deal_field(deal.fields, "lead_source")
    return DealRecord(
        deal_id=deal.external_id, owner_id=deal.owner_id, company_id=deal.company_id,
        status=deal.status, value=float(deal.value or 0.0), created_at=deal.created_at,
        won_at=deal.won_at, lost_at=deal.lost_at, stage_key=mapper.stage_key(deal.stage_id),
        lead_source=str(source) if source not in (None, "") else None,
        history=history, history_derived=not history,
    )


def deal_record_as_of(record: DealRecord, now: datetime) -> DealRecord | None:
    """The deal as it was at ``now`` (None: created later): transitions after ``now``
    dropped, a win or loss after ``now`` open again, the stage at ``now`` from history."""
    if record.created_at is not None and record.created_at > now:
        return None
    changes: dict[str, Any] = {}
    kept = tuple(t for t in record.history if t.at <= now)
    if len(kept) != len(record.history):
        later = record.history[len(kept)]
        changes |= {"history": kept, "stage_key": kept[-1].to_key if kept else later.from_key}
    if record.status == "won" and record.won_at is not None and record.won_at > now:
        changes |= {"status": "open", "won_at": None}
    if record.status == "lost" and record.lost_at is not None and record.lost_at > now:
        changes |= {"status": "open", "lost_at": None}
    return record._replace(**changes) if changes else record


def deal_records(session: Session, tenant_id: int, mapper: TenantMapper,
                 as_of: datetime | None = None) -> Iterator[DealRecord]:
    """Every deal as a KPI record; with ``as_of``, as it was at that moment."""
    for chunk in store.iter_deal_chunks(session, tenant_id):
        changes = store.stage_changes_for_deals(session, tenant_id,
                                                [d.external_id for d in chunk])
        for deal in chunk:
            record = deal_record(deal, changes.get(deal.external_id, ()), mapper)
            if as_of is None:
                yield record
            elif (then := deal_record_as_of(record, as_of)) is not None:
                yield then


def activity_records(session: Session, tenant_id: int, mapper: TenantMapper,
                     as_of: datetime | None = None) -> Iterator[ActivityRecord]:
    """Every non-deleted activity, ``when`` = done time (done) or due time (planned); with
    ``as_of``, one done after that moment is still planned then."""
    a, d = ActivityRow.__table__.c, DealRow.__table__.c
    company = func.coalesce(a.company_external_id, d.company_external_id)
    last = 0
    while True:
        stmt = (select(a.id, a.external_id, a.type, a.done, a.done_at, a.due_at, a.due_date,
                       company, a.deal_external_id, a.owner_external_id, a.note, a.subject)
                .select_from(ActivityRow.__table__.outerjoin(
                    DealRow.__table__, (d.tenant_id == a.tenant_id)
                    & (d.external_id == a.deal_external_id)))
                .where(a.tenant_id == tenant_id, a.deleted == false(), a.id > last)
                .order_by(a.id).limit(ACTIVITY_PAGE))
        rows = session.execute(stmt).all()
        if not rows:
            return
        for row in rows:
            view = _ActivityView(row)
            if mapper.is_own_task(view):
                continue  # syncd's own reminders are no call, visit or planned step
            fact = mapper.activity_fact(view)
            done = fact.done and not (as_of is not None and fact.done_at is not None
                                      and fact.done_at > as_of)
            when = fact.done_at if fact.done else fact.due_at
            yield ActivityRecord(row[1], fact.kind, done, when, row[7], row[8], row[9])
        last = rows[-1][0]


class _ActivityView:
    """The attributes ``TenantMapper.activity_fact`` reads, from one joined row."""

    __slots__ = ("created_at", "done", "done_at", "due_at", "due_date", "external_id", "note",
                 "subject", "type")

    def __init__(self, row: Any) -> None:
        self.external_id, self.type, self.done = row[1], row[2], row[3]
        self.done_at, self.due_at, self.due_date = row[4], row[5], row[6]
        self.note, self.subject = row[10], row[11]
        self.created_at = None


def company_records(session: Session, tenant_id: int, mapper: TenantMapper,
                    ids: Iterable[str] | None = None) -> dict[str, CompanyRecord]:
    """Every non-deleted company as a KPI record (or those in ``ids``)."""
    result = {}
    for company in store.companies(session, tenant_id, ids):
        def text(key: str, fields: Any = company.fields) -> str | None:
            value = mapper.company_field(fields, key)
            return str(value) if value not in (None, "") else None
        result[company.external_id] = CompanyRecord(
            company_id=company.external_id, name=company.name or company.external_id,
            owner_id=company.owner_id,
            segment=mapper.segment_key(mapper.company_field(company.fields, "segment")),
            nps=to_float(mapper.company_field(company.fields, "nps")),
            channel=text("channel"), sub_channel=text("sub_channel"), region=text("region"))
    return result


def people(session: Session, tenant_id: int) -> list[Person]:
    table = UserRow.__table__.c
    manager = getattr(table, "manager_external_id", None)
    columns = [table.external_id, table.name, table.email]
    if manager is not None:
        columns.append(manager)
    stmt = select(*columns).where(table.tenant_id == tenant_id, table.deleted == false())
    return [Person(row[0], row[1] or row[0], row[2], row[3] if manager is not None else None)
            for row in session.execute(stmt)]


def violation_records(session: Session, tenant_id: int,
                      deal_ids: Sequence[str] | None = None) -> Iterator[ViolationRecord]:
    """Every violation ever opened for the tenant (resolved ones too: opened is opened),
    or for the deals ``deal_ids``."""
    table = ViolationRow.__table__.c
    stmt = (select(table.id, table.deal_external_id, table.rule, table.opened_at)
            .where(table.tenant_id == tenant_id).order_by(table.id))
    if deal_ids is not None:
        for chunk in sequence_chunks(list(deal_ids), in_chunk_size(session)):
            for row in session.execute(stmt.where(table.deal_external_id.in_(chunk))):
                yield ViolationRecord(str(row[0]), row[1], row[2], row[3])
        return
    for row in session.execute(stmt).yield_per(10_000):
        yield ViolationRecord(str(row[0]), row[1], row[2], row[3])


def tenant_funnel(db: store.Database, tenant: Tenant, now: datetime) -> dict[str, Any]:
    """``{salesbook, deals, funnel}`` of one tenant over the KPI window (for the
    cross-tenant benchmark, ``syncd.kpi.benchmark``)."""
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        mapper = TenantMapper(tenant.config, tenant.book, store.stages_by_id(session, tenant_id))
        funnel = Funnel(tenant.book, window(now, mapper.tz).start, now)
        deals = 0
        for deal in deal_records(session, tenant_id, mapper):
            funnel.add(deal)
            deals += 1
    return {"salesbook": tenant.book.key, "deals": deals, "funnel": funnel.result()}
