"""The incremental audit's state: the tenant's audit marks and the due-time index.

A pass re-audits only the deals whose inputs changed since the last audit (found through
``synced_at``, which the upsert sets only when a record's content changed), the deals whose
due time has come (``deal_due.due_at <= now``), or every deal when the tenant's audit
fingerprint changed. Nothing here knows the rules: the audit orchestration
(``syncd.audit_pass``) computes due times and fingerprints, the store only keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, false, func, select, update
from sqlalchemy.orm import Session

from syncd.store._sql import ensure_statistics, in_chunk_size, insert_for, sequence_chunks
from syncd.store.models import (
    ActivityRow,
    AuditStateRow,
    CompanyRow,
    DealDueRow,
    DealRow,
    StageChangeRow,
)
from syncd.store.reads import view_columns

#: Examples of deals named per unmapped CRM stage (as ``syncd.audit.engine`` does).
EXAMPLE_DEALS = 5


@dataclass(frozen=True, slots=True)
class AuditState:
    fingerprint: str
    audited_at: datetime
    watermark: datetime
    karma_due_at: datetime | None


@dataclass(frozen=True, slots=True)
class DealDue:
    """One row of the due-time index, as the orchestration writes it."""

    deal_external_id: str
    deal_row_id: int
    due_at: datetime | None
    unmapped_stage: str | None


#: Record tables whose rows link to a deal (and a company): an update that moves a row to
#: another deal changes the deal it left, though that deal's own rows were not written.
LINKED_TABLES = frozenset({"activities", "stage_changes"})
#: A due time in the past: due at the next pass.
DUE_NOW = datetime(1970, 1, 1, tzinfo=UTC)


def note_relinks(session: Session, tenant_id: int, table: Any,
                 updated: Sequence[dict[str, Any]]) -> None:
    """Before ``updated`` rows of a ``LINKED_TABLES`` table are written: the deals they
    leave (and the won deals of the companies they leave) become due now. Called by the
    upsert in the same transaction, so the change and its due mark commit together."""
    has_company = "company_external_id" in table.c
    columns = [table.c.external_id, table.c.deal_external_id]
    if has_company:
        columns.append(table.c.company_external_id)
    new = {row["external_id"]: row for row in updated}
    left_deals: set[str] = set()
    left_companies: set[str] = set()
    for chunk in sequence_chunks(list(new), in_chunk_size(session)):
        for old in session.execute(select(*columns).where(
                table.c.tenant_id == tenant_id, table.c.external_id.in_(chunk))):
            row = new[old.external_id]
            if old.deal_external_id is not None and (
                    old.deal_external_id != row.get("deal_external_id")):
                left_deals.add(old.deal_external_id)
            if has_company and old.company_external_id is not None and (
                    old.company_external_id != row.get("company_external_id")):
                left_companies.add(old.company_external_id)
    due = DealDueRow.__table__
    deals = DealRow.__table__
    for chunk in sequence_chunks(sorted(left_deals), in_chunk_size(session)):
        session.execute(update(due).where(due.c.tenant_id == tenant_id,
                                          due.c.deal_external_id.in_(chunk))
                        .values(due_at=DUE_NOW))
    for chunk in sequence_chunks(sorted(left_companies), in_chunk_size(session)):
        won = select(deals.c.external_id).where(
            deals.c.tenant_id == tenant_id, deals.c.company_external_id.in_(chunk),
            deals.c.status == "won")
        session.execute(update(due).where(due.c.tenant_id == tenant_id,
                                          due.c.deal_external_id.in_(won))
                        .values(due_at=DUE_NOW))


def audit_state(session: Session, tenant_id: int) -> AuditState | None:
    """The tenant's audit marks (None: never audited incrementally). PostgreSQL tables the
    audit reads are analyzed first if they never were (see ``ensure_statistics``)."""
    ensure_statistics(session, ["deals", "activities", "stage_changes", "companies",
                                "deal_due", "violations"])
    row = session.get(AuditStateRow, tenant_id)
    if row is None:
        return None
    return AuditState(row.fingerprint, row.audited_at, row.watermark, row.karma_due_at)


def save_audit_state(session: Session, tenant_id: int, state: AuditState) -> None:
    table = AuditStateRow.__table__
    values = {"tenant_id": tenant_id, "fingerprint": state.fingerprint,
              "audited_at": state.audited_at, "watermark": state.watermark,
              "karma_due_at": state.karma_due_at}
    stmt = insert_for(session, table).values(**values)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.tenant_id],
        set_={k: v for k, v in values.items() if k != "tenant_id"}))


def forget_audit_state(session: Session, tenant_id: int) -> None:
    """Make the next pass audit every deal (e.g. after a restore)."""
    session.execute(delete(AuditStateRow).where(AuditStateRow.tenant_id == tenant_id))


def changed_deal_ids(session: Session, tenant_id: int, since: datetime) -> set[str]:
    """CRM ids of the deals whose audit inputs were stored at or after ``since``: the deal
    itself (deleted ones included), its activities or stage changes, and the won deals of
    a company whose activities changed (a follow-up may be logged on the company only)."""
    deals, acts, changes = DealRow.__table__, ActivityRow.__table__, StageChangeRow.__table__
    found: set[str] = set(session.scalars(select(deals.c.external_id).where(
        deals.c.tenant_id == tenant_id, deals.c.synced_at >= since)))
    found.update(i for i in session.scalars(select(acts.c.deal_external_id).where(
        acts.c.tenant_id == tenant_id, acts.c.synced_at >= since)) if i is not None)
    found.update(session.scalars(select(changes.c.deal_external_id).where(
        changes.c.tenant_id == tenant_id, changes.c.synced_at >= since)))
    companies = [c for c in session.scalars(select(acts.c.company_external_id).where(
        acts.c.tenant_id == tenant_id, acts.c.synced_at >= since).distinct()) if c is not None]
    for chunk in sequence_chunks(companies, in_chunk_size(session)):
        found.update(session.scalars(select(deals.c.external_id).where(
            deals.c.tenant_id == tenant_id, deals.c.company_external_id.in_(chunk),
            deals.c.status == "won")))
    return found


def changed_company_ids(session: Session, tenant_id: int, since: datetime) -> set[str]:
    """CRM ids of the companies stored at or after ``since`` (deleted ones included)."""
    table = CompanyRow.__table__
    return set(session.scalars(select(table.c.external_id).where(
        table.c.tenant_id == tenant_id, table.c.synced_at >= since)))


def due_deal_ids(session: Session, tenant_id: int, now: datetime) -> set[str]:
    """Deals whose verdict may have changed by ``now`` without new data."""
    table = DealDueRow.__table__
    return set(session.scalars(select(table.c.deal_external_id).where(
        table.c.tenant_id == tenant_id, table.c.due_at <= now)))


def store_due(session: Session, tenant_id: int, rows: Sequence[DealDue]) -> None:
    """Insert or replace due-index rows."""
    if not rows:
        return
    table = DealDueRow.__table__
    stmt = insert_for(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.tenant_id, table.c.deal_external_id],
        set_={name: stmt.excluded[name]
              for name in ("deal_row_id", "due_at", "unmapped_stage")})
    session.execute(stmt, [{"tenant_id": tenant_id, "deal_external_id": r.deal_external_id,
                            "deal_row_id": r.deal_row_id, "due_at": r.due_at,
                            "unmapped_stage": r.unmapped_stage} for r in rows])


def drop_due(session: Session, tenant_id: int, deal_ids: Iterable[str] | None = None) -> None:
    """Forget the due rows of ``deal_ids`` (all of the tenant's when None)."""
    table = DealDueRow.__table__
    if deal_ids is None:
        session.execute(delete(table).where(table.c.tenant_id == tenant_id))
        return
    for chunk in sequence_chunks(list(deal_ids), in_chunk_size(session)):
        session.execute(delete(table).where(table.c.tenant_id == tenant_id,
                                            table.c.deal_external_id.in_(chunk)))


def postpone_due(session: Session, tenant_id: int, deal_ids: Iterable[str],
                 due_at: datetime) -> None:
    """Move due times (e.g. of deals a pass had no time for) without re-auditing."""
    table = DealDueRow.__table__
    for chunk in sequence_chunks(list(deal_ids), in_chunk_size(session)):
        session.execute(update(table).where(table.c.tenant_id == tenant_id,
                                            table.c.deal_external_id.in_(chunk))
                        .values(due_at=due_at))


def unmapped_stages(session: Session, tenant_id: int) -> list[tuple[str, int, list[str]]]:
    """``(CRM stage, deals, first example deal ids)`` per unmapped CRM stage, by stage;
    examples in the audit's deal order."""
    table = DealDueRow.__table__
    counts = session.execute(
        select(table.c.unmapped_stage, func.count())
        .where(table.c.tenant_id == tenant_id, table.c.unmapped_stage.is_not(None))
        .group_by(table.c.unmapped_stage)).all()
    result = []
    for crm_stage, count in sorted(counts, key=lambda row: row[0]):
        examples = list(session.scalars(
            select(table.c.deal_external_id)
            .where(table.c.tenant_id == tenant_id, table.c.unmapped_stage == crm_stage)
            .order_by(table.c.deal_row_id).limit(EXAMPLE_DEALS)))
        result.append((crm_stage, int(count), examples))
    return result


def deal_page(session: Session, tenant_id: int, after_id: int, size: int) -> list[Any]:
    """Up to ``size`` live deal rows with row id above ``after_id``, in id order (keyset
    pagination: one short query per page, no transaction held across pages)."""
    table = DealRow.__table__
    return list(session.execute(
        select(*view_columns(DealRow))
        .where(table.c.tenant_id == tenant_id, table.c.id > after_id,
               table.c.deleted == false())
        .order_by(table.c.id).limit(size)).all())


def deal_page_starts(session: Session, tenant_id: int, size: int) -> list[int]:
    """The ``after_id`` of each of ``deal_page``'s pages of ``size``, first to last."""
    table = DealRow.__table__
    ids = session.scalars(select(table.c.id).where(
        table.c.tenant_id == tenant_id, table.c.deleted == false())
        .order_by(table.c.id)).all()
    return [0, *(ids[start - 1] for start in range(size, len(ids), size))]


def live_deal_rows(session: Session, tenant_id: int,
                   deal_ids: Sequence[str]) -> list[Any]:
    """Non-deleted deal rows with these CRM ids, in the audit's (row id) order."""
    table = DealRow.__table__
    rows: list[Any] = []
    for chunk in sequence_chunks(list(deal_ids), in_chunk_size(session)):
        rows.extend(session.execute(select(*view_columns(DealRow)).where(
            table.c.tenant_id == tenant_id, table.c.external_id.in_(chunk),
            table.c.deleted == false())).all())
    rows.sort(key=lambda row: row.id)
    return rows
