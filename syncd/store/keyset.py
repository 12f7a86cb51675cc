"""Record ids in row order, a page at a time: for passes that walk a whole tenant (or a
large part of it) in short transactions, holding one page, never the tenant."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import false, select
from sqlalchemy.orm import Session

from syncd.store._sql import in_chunk_size, sequence_chunks
from syncd.store.models import CompanyRow, DealRow

RecordModel = type[CompanyRow] | type[DealRow]


def live_id_page(session: Session, tenant_id: int, model: RecordModel, after_id: int,
                 size: int) -> list[tuple[int, str]]:
    """Up to ``size`` ``(row id, CRM id)`` of live (non-deleted) records of ``model`` with
    row id above ``after_id``, in row order (keyset pagination, no OFFSET)."""
    table = model.__table__
    rows = session.execute(
        select(table.c.id, table.c.external_id)
        .where(table.c.tenant_id == tenant_id, table.c.id > after_id,
               table.c.deleted == false())
        .order_by(table.c.id).limit(size)).all()
    return [(row.id, row.external_id) for row in rows]


def live_ids_in_order(session: Session, tenant_id: int, model: RecordModel,
                      external_ids: Collection[str]) -> list[str]:
    """Those of ``external_ids`` that are live records of ``model``, in row order."""
    table = model.__table__
    found: list[tuple[int, str]] = []
    for chunk in sequence_chunks(sorted(external_ids), in_chunk_size(session)):
        found.extend((row.id, row.external_id) for row in session.execute(
            select(table.c.id, table.c.external_id)
            .where(table.c.tenant_id == tenant_id, table.c.external_id.in_(chunk),
                   table.c.deleted == false())))
    found.sort()
    return [external_id for _, external_id in found]
