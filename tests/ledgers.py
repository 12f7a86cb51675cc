"""The stored state a rerun must reproduce: karma ledgers and stage history, comparable
across databases (no row ids, no computation times)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from syncd import store


def karma_ledger(db_url: str, kind: str = "employee") -> Counter:
    """Every karma line of ``kind`` (``employee`` or ``client``), as a multiset."""
    database = store.Database(db_url)
    rows = store.KarmaLineRow
    try:
        with database.session() as session:
            lines = session.execute(select(
                rows.subject_type, rows.subject_id, rows.criterion, rows.period,
                rows.source_type, rows.source_id, rows.quantity, rows.weight, rows.amount,
            ).where(rows.kind == kind)).all()
    finally:
        database.dispose()
    return Counter((*line[:6], round(line.quantity, 2), round(line.weight, 4),
                    round(line.amount, 2)) for line in lines)


def stage_history(db_url: str) -> set[tuple[str, str]]:
    """(deal id, stage change id) of every stored stage change."""
    database = store.Database(db_url)
    rows = store.StageChangeRow
    try:
        with database.session() as session:
            found = session.execute(select(rows.deal_external_id, rows.external_id)).all()
    finally:
        database.dispose()
    return {(str(deal), str(change)) for deal, change in found}
