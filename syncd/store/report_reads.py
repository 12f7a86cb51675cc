"""Narrow reads for the tenant report: only the columns it shows, only the rows it needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from syncd.store._sql import in_chunk_size, sequence_chunks
from syncd.store.models import DealRow


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
