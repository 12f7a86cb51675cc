"""The karma ledger: every point has a line saying who earned it, for what, from which source.

Lines of one kind are recomputed from facts on every run and replaced as a whole in the
caller's transaction, so readers see either the old ledger or the new one. Weights are
applied at write time through ``weights_fn`` (the Sales Book's table), and each line keeps
``quantity``, ``weight`` and ``amount`` so a total can always be explained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from syncd.store._sql import in_chunk_size, note_inserts, sequence_chunks, utcnow
from syncd.store.models import KarmaLineRow


class KarmaLine(Protocol):
    """What ``replace_karma_lines`` reads from a line (any object with these attributes)."""

    subject_type: str
    subject_id: str
    criterion: str
    quantity: float
    source_type: str
    source_id: str
    period: str | None


WeightsFn = Callable[[Any], tuple[float, float]]
_IDENTITY = ("subject_type", "subject_id", "criterion", "source_type", "source_id", "period")


def _row(tenant_id: int, kind: str, line: Any, weights_fn: WeightsFn,
         now: datetime) -> dict[str, Any]:
    weight, amount = weights_fn(line)
    return {
        "tenant_id": tenant_id, "kind": kind,
        "subject_type": str(line.subject_type), "subject_id": str(line.subject_id),
        "criterion": str(line.criterion), "quantity": float(line.quantity),
        "weight": float(weight), "amount": float(amount),
        "source_type": str(line.source_type or ""), "source_id": str(line.source_id or ""),
        "period": str(getattr(line, "period", None) or ""), "computed_at": now,
    }


def replace_karma_lines(session: Session, tenant_id: int, kind: str, lines: Iterable[Any],
                        weights_fn: WeightsFn, *, now: datetime | None = None,
                        unit_fn: Callable[[Any], str] | None = None) -> int:
    """Replace the tenant's ledger lines of ``kind`` with ``lines``; returns their number.

    ``weights_fn(line) -> (weight, amount)``; ``unit_fn(line)``: the line's recomputation
    unit (see ``replace_karma_units``). Two lines with the same identity (subject,
    criterion, source, period) are a caller bug and raise ``ValueError`` before anything
    is written.
    """
    rows = _rows(tenant_id, kind, lines, weights_fn, now or utcnow(), unit_fn)
    session.execute(delete(KarmaLineRow).where(KarmaLineRow.tenant_id == tenant_id,
                                               KarmaLineRow.kind == kind))
    return _insert(session, rows)


def replace_karma_units(session: Session, tenant_id: int, kind: str, units: Iterable[str],
                        lines: Iterable[Any], weights_fn: WeightsFn,
                        unit_fn: Callable[[Any], str], *, now: datetime | None = None) -> int:
    """Replace the lines of ``kind`` whose unit is one of ``units`` with ``lines`` (each
    of which must belong to one of them); the other units' lines stay as they are."""
    wanted = sorted(set(units))
    rows = _rows(tenant_id, kind, lines, weights_fn, now or utcnow(), unit_fn)
    outside = {row["unit"] for row in rows} - set(wanted)
    if outside:
        raise ValueError(f"karma lines of units not being replaced: {sorted(outside)[:5]}")
    table = KarmaLineRow.__table__
    for chunk in sequence_chunks(wanted, in_chunk_size(session)):
        session.execute(delete(table).where(table.c.tenant_id == tenant_id,
                                            table.c.kind == kind, table.c.unit.in_(chunk)))
    return _insert(session, rows)


#: Rows per INSERT batch when a whole ledger is streamed in.
INSERT_BATCH = 10_000


def delete_karma_lines(session: Session, tenant_id: int, kind: str) -> None:
    """Delete the tenant's lines of ``kind`` (before ``insert_karma_lines`` streams a whole
    new ledger in, in the same transaction)."""
    session.execute(delete(KarmaLineRow).where(KarmaLineRow.tenant_id == tenant_id,
                                               KarmaLineRow.kind == kind))


def insert_karma_lines(session: Session, tenant_id: int,
                       lines: Iterable[tuple[str, str | None, Any]],
                       weights_fns: Mapping[str, WeightsFn], *,
                       now: datetime | None = None) -> int:
    """Insert ``(kind, unit, line)`` triples in batches, never holding a whole ledger: for
    a tenant's full recomputation (``weights_fns[kind](line)`` weighs each line). A
    duplicate identity is refused by the table's unique constraint (the transaction
    fails), as ``replace_karma_lines`` refuses it up front."""
    now = now or utcnow()
    count = 0
    batch: list[dict[str, Any]] = []
    for kind, unit, line in lines:
        row = _row(tenant_id, kind, line, weights_fns[kind], now)
        row["unit"] = unit
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            count += _insert(session, batch)
            batch = []
    return count + _insert(session, batch)


def karma_units_of_sources(session: Session, tenant_id: int, kind: str, source_type: str,
                           source_ids: Iterable[str]) -> set[str]:
    """The units of the ``kind`` lines whose source is one of ``source_ids``."""
    table = KarmaLineRow.__table__
    found: set[str] = set()
    for chunk in sequence_chunks(sorted(set(source_ids)), in_chunk_size(session)):
        found.update(u for u in session.scalars(select(table.c.unit).where(
            table.c.tenant_id == tenant_id, table.c.kind == kind,
            table.c.source_type == source_type, table.c.source_id.in_(chunk)).distinct())
            if u is not None)
    return found


def _rows(tenant_id: int, kind: str, lines: Iterable[Any], weights_fn: WeightsFn,
          now: datetime, unit_fn: Callable[[Any], str] | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    identities: set[tuple[str, ...]] = set()
    for line in lines:
        row = _row(tenant_id, kind, line, weights_fn, now)
        row["unit"] = unit_fn(line) if unit_fn is not None else None
        identity = tuple(row[name] for name in _IDENTITY)
        if identity in identities:
            raise ValueError(f"duplicate karma line {kind}: {identity}")
        identities.add(identity)
        rows.append(row)
    return rows


def _insert(session: Session, rows: list[dict[str, Any]]) -> int:
    if rows:
        session.execute(insert(KarmaLineRow.__table__), rows)
        note_inserts(session, KarmaLineRow.__tablename__, len(rows))
    return len(rows)


def karma_totals(session: Session, tenant_id: int, kind: str, *,
                 subject_type: str | None = None,
                 subject_ids: Iterable[str] | None = None) -> dict[str, float]:
    """Sum of ``amount`` per subject id (optionally of one subject type, or of the
    subjects ``subject_ids``)."""
    stmt = (select(KarmaLineRow.subject_id, func.sum(KarmaLineRow.amount))
            .where(KarmaLineRow.tenant_id == tenant_id, KarmaLineRow.kind == kind)
            .group_by(KarmaLineRow.subject_id))
    if subject_type is not None:
        stmt = stmt.where(KarmaLineRow.subject_type == subject_type)
    if subject_ids is None:
        return {subject: float(total or 0.0) for subject, total in session.execute(stmt)}
    totals: dict[str, float] = {}
    for chunk in sequence_chunks(sorted(set(subject_ids)), in_chunk_size(session)):
        totals.update((subject, float(total or 0.0)) for subject, total in session.execute(
            stmt.where(KarmaLineRow.subject_id.in_(chunk))))
    return totals


def karma_line_rows(session: Session, tenant_id: int, kind: str,
                subject_id: str | None = None) -> list[KarmaLineRow]:
    """The ledger lines of ``kind`` (of one subject), for explanations and reports."""
    stmt = select(KarmaLineRow).where(KarmaLineRow.tenant_id == tenant_id,
                                      KarmaLineRow.kind == kind)
    if subject_id is not None:
        stmt = stmt.where(KarmaLineRow.subject_id == subject_id)
    stmt = stmt.order_by(KarmaLineRow.id).execution_options(populate_existing=True)
    return list(session.scalars(stmt))


def karma_subject_count(session: Session, tenant_id: int, kind: str) -> int:
    """How many subjects have ledger lines of ``kind``."""
    stmt = (select(func.count(func.distinct(KarmaLineRow.subject_id)))
            .where(KarmaLineRow.tenant_id == tenant_id, KarmaLineRow.kind == kind))
    return int(session.scalar(stmt) or 0)
