"""Narrow reads for the tenant report: only the columns it shows, only the rows it needs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from syncd.store._sql import dialect_name, in_chunk_size, sequence_chunks
from syncd.store.models import DealRow, HistoryBacklogRow, KarmaLineRow, ViolationRow


class DealLabel(NamedTuple):
    """What a report shows of a deal beside its finding."""

    title: str
    owner_id: str | None


def deal_labels(session: Session, tenant_id: int,
                deal_ids: Iterable[str]) -> dict[str, DealLabel]:
    """Title and owner of the live (non-deleted) deals among ``deal_ids``."""
    table = DealRow.__table__
    labels: dict[str, DealLabel] = {}
    wanted = sorted(set(deal_ids))
    for chunk in sequence_chunks(wanted, in_chunk_size(session)):
        for row in session.execute(
                select(table.c.external_id, table.c.title, table.c.owner_external_id)
                .where(table.c.tenant_id == tenant_id, table.c.external_id.in_(chunk),
                       table.c.deleted == false())):
            labels[row.external_id] = DealLabel(row.title, row.owner_external_id)
    return labels


def open_deal_count(session: Session, tenant_id: int) -> int:
    """How many live deals are open."""
    table = DealRow.__table__
    return int(session.scalar(select(func.count()).select_from(table).where(
        table.c.tenant_id == tenant_id, table.c.deleted == false(),
        table.c.status == "open")) or 0)


# -- the streamed report (syncd.report_stream): rows in the report's order, chunk by chunk ----
#: Rows a streamed read hands over at a time (one chunk in memory, whatever the tenant).
REPORT_CHUNK = 2_000


def _text_key(session: Session, column: Any) -> Any:
    """``column or ""`` ordered by code point, as Python orders ``str``: SQLite compares
    UTF-8 bytes (BINARY), which is code-point order; PostgreSQL needs the "C" collation
    (its database collation may be a locale's)."""
    key = func.coalesce(column, "")
    return key.collate("C") if dialect_name(session) == "postgresql" else key


def open_violations_in_report_order(session: Session, tenant_id: int,
                                    chunk: int = REPORT_CHUNK) -> Iterator[Sequence[Any]]:
    """The open violations as the report lists them: ordered by ``(rule, deal id or "",
    stage key or "", action key or "")``, ties by row id (the order ``sorted`` gives the
    id-ordered rows), each with its live deal's ``deal_title`` and ``deal_owner_id``
    (``deal_found`` false: no live deal) and ``history_pending`` (the deal still owes its
    stage history). One sorted cursor read ``chunk`` rows at a time: the database sorts
    once (spilling to disk as it needs), Python holds one chunk. Keyset pages would sort
    every page again, as no index has this order."""
    v, d, b = ViolationRow.__table__.c, DealRow.__table__.c, HistoryBacklogRow.__table__.c
    stmt = (select(v.id, v.rule, v.deal_external_id, v.stage_key, v.action_key, v.crm_stage,
                   v.severity, v.explanation, v.details, v.opened_at, v.last_seen_at,
                   d.id.is_not(None).label("deal_found"), d.title.label("deal_title"),
                   d.owner_external_id.label("deal_owner_id"),
                   b.deal_external_id.is_not(None).label("history_pending"))
            .select_from(ViolationRow.__table__
                         .outerjoin(DealRow.__table__,
                                    (d.tenant_id == v.tenant_id)
                                    & (d.external_id == v.deal_external_id)
                                    & (d.deleted == false()))
                         .outerjoin(HistoryBacklogRow.__table__,
                                    (b.tenant_id == v.tenant_id)
                                    & (b.deal_external_id == v.deal_external_id)
                                    & b.done_at.is_(None)))
            .where(v.tenant_id == tenant_id, v.resolved_at.is_(None))
            .order_by(_text_key(session, v.rule), _text_key(session, v.deal_external_id),
                      _text_key(session, v.stage_key), _text_key(session, v.action_key), v.id))
    yield from session.execute(stmt.execution_options(yield_per=chunk)).partitions()


def karma_line_stream(session: Session, tenant_id: int, kind: str,
                      chunk: int = REPORT_CHUNK) -> Iterator[Any]:
    """The ledger lines of ``kind`` in ledger order (row id), read ``chunk`` at a time:
    ``subject_type, subject_id, criterion, quantity, source_type, source_id, period``."""
    k = KarmaLineRow.__table__.c
    stmt = (select(k.subject_type, k.subject_id, k.criterion, k.quantity, k.source_type,
                   k.source_id, k.period)
            .where(k.tenant_id == tenant_id, k.kind == kind).order_by(k.id))
    for part in session.execute(stmt.execution_options(yield_per=chunk)).partitions():
        yield from part


def deals_with_open_violations(session: Session, tenant_id: int) -> int:
    """How many distinct deals have an open violation."""
    v = ViolationRow.__table__.c
    return int(session.scalar(select(func.count(func.distinct(v.deal_external_id))).where(
        v.tenant_id == tenant_id, v.resolved_at.is_(None), v.deal_external_id != "")) or 0)


def karma_line_amount_rows(session: Session, tenant_id: int, kind: str, subject_type: str,
                           chunk: int = REPORT_CHUNK) -> Iterator[Sequence[Any]]:
    """``(subject_id, criterion, quantity)`` of the ledger lines of ``kind`` whose subject
    is a ``subject_type``, grouped by subject (ordered by it: the ledger's identity index),
    ``chunk`` rows at a time."""
    k = KarmaLineRow.__table__.c
    stmt = (select(k.subject_id, k.criterion, k.quantity)
            .where(k.tenant_id == tenant_id, k.kind == kind, k.subject_type == subject_type)
            .order_by(k.subject_id, k.id))
    yield from session.execute(stmt.execution_options(yield_per=chunk)).partitions()


def karma_lines_of(session: Session, tenant_id: int, kind: str,
                   subject_ids: Sequence[str]) -> list[Any]:
    """The ledger lines of ``kind`` of the subjects ``subject_ids`` (any subject type),
    in ledger order (row id): what the report shows of each line."""
    k = KarmaLineRow.__table__.c
    types = list(session.scalars(select(k.subject_type).distinct().where(
        k.tenant_id == tenant_id, k.kind == kind)))
    rows: list[Any] = []
    for part in sequence_chunks(list(subject_ids), in_chunk_size(session, len(types) + 5)):
        rows.extend(session.execute(
            select(k.id, k.subject_type, k.subject_id, k.criterion, k.quantity,
                   k.source_type, k.source_id, k.period)
            .where(k.tenant_id == tenant_id, k.kind == kind, k.subject_type.in_(types),
                   k.subject_id.in_(part))).all())
    rows.sort(key=lambda row: row.id)
    return rows


# -- the live report's readers that never list it (dashboard page, digests) ---------------------
def open_counts_by_owner_rule(session: Session, tenant_id: int) -> dict[str, dict[str, int]]:
    """Open violations per owner and rule, the owner being the live deal's (as the report's
    rows carry it); ``""``: no live deal, or a deal without an owner."""
    v, d = ViolationRow.__table__.c, DealRow.__table__.c
    stmt = (select(d.owner_external_id, v.rule, func.count())
            .select_from(ViolationRow.__table__.outerjoin(
                DealRow.__table__, (d.tenant_id == v.tenant_id)
                & (d.external_id == v.deal_external_id) & (d.deleted == false())))
            .where(v.tenant_id == tenant_id, v.resolved_at.is_(None))
            .group_by(d.owner_external_id, v.rule))
    counts: dict[str, dict[str, int]] = {}
    for owner, rule, count in session.execute(stmt):
        cell = counts.setdefault(owner or "", {})
        cell[rule] = cell.get(rule, 0) + int(count)
    return counts


def derived_history_deals(session: Session, tenant_id: int) -> set[str]:
    """Deals with an open violation judged on stage history derived from the deal's own
    fields (``details.history == "derived"``) and no longer waiting for their history: the
    deals the report's derived-history note counts."""
    v, b = ViolationRow.__table__.c, HistoryBacklogRow.__table__.c
    stmt = (select(v.deal_external_id).distinct()
            .select_from(ViolationRow.__table__.outerjoin(
                HistoryBacklogRow.__table__, (b.tenant_id == v.tenant_id)
                & (b.deal_external_id == v.deal_external_id) & b.done_at.is_(None)))
            .where(v.tenant_id == tenant_id, v.resolved_at.is_(None),
                   b.deal_external_id.is_(None),
                   ViolationRow.details["history"].as_string() == "derived"))
    return set(session.scalars(stmt))
