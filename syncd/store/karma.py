"""The karma ledger: every point has a line saying who earned it, for what, from which source.

Lines of one kind are recomputed from facts on every run and replaced as a whole in the
caller's transaction, so readers see either the old ledger or the new one. Weights are
applied at write time through ``weights_fn`` (the Sales Book's table), and each line keeps
``quantity``, ``weight`` and ``amount`` so a total can always be explained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from syncd.store._sql import note_inserts, utcnow
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
                        weights_fn: WeightsFn, *, now: datetime | None = None) -> int:
    """Replace the tenant's ledger lines of ``kind`` with ``lines``; returns their number.

    ``weights_fn(line) -> (weight, amount)``. Two lines with the same identity (subject,
    criterion, source, period) are a caller bug and raise ``ValueError`` before anything
    is written.
    """
    now = now or utcnow()
    rows: list[dict[str, Any]] = []
    identities: set[tuple[str, ...]] = set()
    for line in lines:
        row = _row(tenant_id, kind, line, weights_fn, now)
        identity = tuple(row[name] for name in _IDENTITY)
        if identity in identities:
            raise ValueError(f"duplicate karma line {kind}: {identity}")
        identities.add(identity)
        rows.append(row)
    session.execute(delete(KarmaLineRow).where(KarmaLineRow.tenant_id == tenant_id,
                                               KarmaLineRow.kind == kind))
    if rows:
        session.execute(insert(KarmaLineRow.__table__), rows)
        note_inserts(session, KarmaLineRow.__tablename__, len(rows))
    return len(rows)


def karma_totals(session: Session, tenant_id: int, kind: str, *,
                 subject_type: str | None = None) -> dict[str, float]:
    """Sum of ``amount`` per subject id (optionally of one subject type)."""
    stmt = (select(KarmaLineRow.subject_id, func.sum(KarmaLineRow.amount))
            .where(KarmaLineRow.tenant_id == tenant_id, KarmaLineRow.kind == kind)
            .group_by(KarmaLineRow.subject_id))
    if subject_type is not None:
        stmt = stmt.where(KarmaLineRow.subject_type == subject_type)
    return {subject: float(total or 0.0) for subject, total in session.execute(stmt)}


def karma_line_rows(session: Session, tenant_id: int, kind: str,
                subject_id: str | None = None) -> list[KarmaLineRow]:
    """The ledger lines of ``kind`` (of one subject), for explanations and reports."""
    stmt = select(KarmaLineRow).where(KarmaLineRow.tenant_id == tenant_id,
                                      KarmaLineRow.kind == kind)
    if subject_id is not None:
        stmt = stmt.where(KarmaLineRow.subject_id == subject_id)
    stmt = stmt.order_by(KarmaLineRow.id).execution_options(populate_existing=True)
    return list(session.scalars(stmt))
