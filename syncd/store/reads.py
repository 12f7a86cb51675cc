"""The read side the audit is built from, sized for a million deals per tenant.

Deals stream in keyset-paginated chunks ordered by id (constant memory, no OFFSET); the
activities, stage changes and companies of a chunk are fetched by CRM id in bounded
``IN`` lists. ``raw`` payloads are not loaded unless asked for: the audit works on the
normalized columns, and a payload can be larger than everything else in the row. Touching
``raw`` on a row loaded without it raises instead of silently issuing one query per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session, defer

from syncd.store._sql import in_chunk_size, sequence_chunks
from syncd.store.models import (
    RECORD_MODELS,
    ActivityRow,
    CompanyRow,
    DealRow,
    KarmaLineRow,
    PipelineRow,
    StageChangeRow,
    StageRow,
    SyncCursorRow,
    SyncRunRow,
    ViolationRow,
    WritebackRow,
)

M = TypeVar("M", DealRow, ActivityRow, CompanyRow, StageChangeRow)


def _without_raw(stmt: Any, model: type[M], with_raw: bool) -> Any:
    """Defer ``raw`` unless asked; always refresh rows the session may hold already
    (upserts are Core statements, so identity-mapped objects can be stale)."""
    stmt = stmt.execution_options(populate_existing=True)
    if with_raw:
        return stmt
    return stmt.options(defer(model.raw, raiseload=True))


def iter_deal_chunks(session: Session, tenant_id: int, chunk_size: int = 2000, *,
                     with_raw: bool = False,
                     include_deleted: bool = False) -> Iterator[list[DealRow]]:
    """The tenant's deals, ``chunk_size`` at a time, in id order (deleted ones skipped)."""
    last_id = 0
    while True:
        stmt = (select(DealRow)
                .where(DealRow.tenant_id == tenant_id, DealRow.id > last_id)
                .order_by(DealRow.id).limit(chunk_size))
        if not include_deleted:
            stmt = stmt.where(DealRow.deleted == false())
        rows = list(session.scalars(_without_raw(stmt, DealRow, with_raw)))
        if not rows:
            return
        yield rows
        last_id = rows[-1].id


def _by_ids(session: Session, tenant_id: int, model: type[M], column: Any, *,
            ids: Iterable[str], order: tuple[Any, ...], with_raw: bool) -> dict[str, list[M]]:
    wanted = list(dict.fromkeys(i for i in ids if i is not None))
    grouped: dict[str, list[M]] = {i: [] for i in wanted}
    for chunk in sequence_chunks(wanted, in_chunk_size(session)):
        stmt = (select(model)
                .where(model.tenant_id == tenant_id, column.in_(chunk),
                       model.deleted == false())
                .order_by(*order))
        for row in session.scalars(_without_raw(stmt, model, with_raw)):
            grouped[getattr(row, column.key)].append(row)
    return grouped


def activities_for_deals(session: Session, tenant_id: int, deal_ids: Iterable[str], *,
                         with_raw: bool = False) -> dict[str, list[ActivityRow]]:
    """Non-deleted activities linked to each deal (every asked id is a key), in id order."""
    return _by_ids(session, tenant_id, ActivityRow, ActivityRow.deal_external_id,
                   ids=deal_ids, order=(ActivityRow.id,), with_raw=with_raw)


def activities_for_companies(session: Session, tenant_id: int, company_ids: Iterable[str], *,
                             with_raw: bool = False) -> dict[str, list[ActivityRow]]:
    """Non-deleted activities linked to each company (deal-linked ones included)."""
    return _by_ids(session, tenant_id, ActivityRow, ActivityRow.company_external_id,
                   ids=company_ids, order=(ActivityRow.id,), with_raw=with_raw)


def stage_changes_for_deals(session: Session, tenant_id: int, deal_ids: Iterable[str], *,
                            with_raw: bool = False) -> dict[str, list[StageChangeRow]]:
    """Each deal's stage changes, oldest first (ties by id)."""
    return _by_ids(session, tenant_id, StageChangeRow, StageChangeRow.deal_external_id,
                   ids=deal_ids, order=(StageChangeRow.at, StageChangeRow.id),
                   with_raw=with_raw)


def stages_by_id(session: Session, tenant_id: int) -> dict[str, tuple[str, str]]:
    """``stage id -> (pipeline name, stage name)``; a pipeline we do not hold shows its id."""
    stmt = (select(StageRow.external_id, StageRow.pipeline_external_id, PipelineRow.name,
                   StageRow.name)
            .outerjoin(PipelineRow, (PipelineRow.tenant_id == StageRow.tenant_id)
                       & (PipelineRow.external_id == StageRow.pipeline_external_id))
            .where(StageRow.tenant_id == tenant_id))
    return {stage_id: (pipeline_name or pipeline_id, stage_name)
            for stage_id, pipeline_id, pipeline_name, stage_name in session.execute(stmt)}


def companies(session: Session, tenant_id: int, ids: Iterable[str] | None = None, *,
              with_raw: bool = False) -> list[CompanyRow]:
    """Non-deleted companies in id order: all of the tenant's, or those in ``ids``."""
    if ids is not None:
        found = _by_ids(session, tenant_id, CompanyRow, CompanyRow.external_id, ids=ids,
                        order=(CompanyRow.id,), with_raw=with_raw)
        return sorted((rows[0] for rows in found.values() if rows), key=lambda c: c.id)
    stmt = select(CompanyRow).where(CompanyRow.tenant_id == tenant_id,
                                    CompanyRow.deleted == false()).order_by(CompanyRow.id)
    return list(session.scalars(_without_raw(stmt, CompanyRow, with_raw)))


def deal_owners(session: Session, tenant_id: int,
                deal_ids: Iterable[str]) -> dict[str, str | None]:
    """``deal id -> owner id`` for the given deals we hold (e.g. to assign tasks)."""
    wanted = list(dict.fromkeys(deal_ids))
    owners: dict[str, str | None] = {}
    for chunk in sequence_chunks(wanted, in_chunk_size(session)):
        stmt = select(DealRow.external_id, DealRow.owner_external_id).where(
            DealRow.tenant_id == tenant_id, DealRow.external_id.in_(chunk))
        owners.update(session.execute(stmt).all())
    return owners


def counts(session: Session, tenant_id: int) -> dict[str, int]:
    """Row counts by table: record tables count non-deleted rows, ``violations`` the open
    ones, the other tables all of the tenant's rows."""
    result: dict[str, int] = {}
    for name, model in RECORD_MODELS.items():
        result[name] = session.scalar(select(func.count()).select_from(model).where(
            model.tenant_id == tenant_id, model.deleted == false())) or 0
    result["violations"] = session.scalar(select(func.count()).select_from(ViolationRow).where(
        ViolationRow.tenant_id == tenant_id, ViolationRow.resolved_at.is_(None))) or 0
    for other in (KarmaLineRow, WritebackRow, SyncRunRow, SyncCursorRow):
        result[other.__tablename__] = session.scalar(
            select(func.count()).select_from(other).where(other.tenant_id == tenant_id)) or 0
    return result
