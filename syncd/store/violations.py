"""The violation lifecycle: open, refresh, resolve, and reopen as a new row.

A run's findings are compared with the tenant's open rows by ``Finding.key`` in Python
while the open rows stream by (one pass, no per-row round trips), then written back in
bulk: resolutions and refreshes as chunked ``UPDATE ... WHERE id IN``, changed texts as one
executemany, new violations as one bulk insert. A key that comes back after being resolved
gets a new row, so "how long was it open" stays answerable.

Newly opened violations come back as ``OpenedViolation`` values (the row's columns, id
included) rather than ORM objects: a first audit of a big tenant opens a million rows at
once, and ORM instances for all of them cost gigabytes and a minute for nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from syncd.store._sql import affected_rows, in_chunk_size, note_inserts, sequence_chunks
from syncd.store.models import ViolationRow
from syncd.store.types import EncodedJSON, json_dumps

#: Rows fetched per round trip while streaming a tenant's open violations.
STREAM_CHUNK = 10_000


class Finding(Protocol):
    """What the store keeps of one finding: the engine's ``syncd.audit.facts.Finding`` fits.

    The store knows no rules: a finding's identity across runs (``key``) and its texts come
    from the engine; the store only opens, refreshes and resolves rows by that key."""

    @property
    def key(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def deal_id(self) -> str | None: ...
    @property
    def severity(self) -> str: ...
    @property
    def explanation(self) -> str: ...
    @property
    def stage_key(self) -> str | None: ...
    @property
    def action_key(self) -> str | None: ...
    @property
    def crm_stage(self) -> str | None: ...
    @property
    def details(self) -> dict[str, Any]: ...


class ViolationView(Protocol):
    """What ``open_violations`` rows and ``OpenedViolation`` values have in common."""

    id: int
    key: str
    rule: str
    deal_external_id: str | None
    stage_key: str | None
    action_key: str | None
    crm_stage: str | None
    severity: str
    explanation: str
    details: dict[str, Any]
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    opened_run_id: int | None


@dataclass(frozen=True, slots=True)
class OpenedViolation:
    """A violation row just inserted: same attribute names as ``ViolationRow``.

    ``details`` is decoded from the stored text when read: a first audit opens tens of
    thousands of rows whose details nothing reads (no task is queued on a baseline)."""

    id: int
    tenant_id: int
    key: str
    rule: str
    deal_external_id: str | None
    stage_key: str | None
    action_key: str | None
    crm_stage: str | None
    severity: str
    explanation: str
    details_text: str
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    opened_run_id: int | None

    @property
    def details(self) -> dict[str, Any]:
        """The details as they read back from the JSON column."""
        return cast(dict[str, Any], json.loads(self.details_text))


@dataclass
class LifecycleResult:
    opened: list[OpenedViolation] = field(default_factory=list)  # in findings order
    refreshed: int = 0
    resolved: int = 0
    changed: int = 0  # refreshed rows whose severity, explanation or details changed


def _jsonable(details: dict[str, Any]) -> Any:
    """``details`` as it reads back from a JSON column (dates -> ISO strings...)."""
    return json.loads(json_dumps(details))


def _same_details(stored: Any, details: dict[str, Any]) -> bool:
    return bool(stored == details or stored == _jsonable(details))


#: New rows inserted per statement batch (bounds the driver's parameter buffers).
INSERT_CHUNK = 10_000


def _new_row(tenant_id: int, finding: Finding, key: str, now: datetime,
             run_id: int | None) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id, "key": key, "rule": finding.rule,
        "deal_external_id": finding.deal_id, "stage_key": finding.stage_key,
        "action_key": finding.action_key, "crm_stage": finding.crm_stage,
        "severity": finding.severity, "explanation": finding.explanation,
        # Encoded once: stored as this text, read back into ``details`` below.
        "details": EncodedJSON(json_dumps(finding.details)), "opened_at": now,
        "last_seen_at": now, "resolved_at": None, "opened_run_id": run_id,
    }


def _insert_opened(session: Session, rows: list[dict[str, Any]]) -> list[OpenedViolation]:
    """Bulk-insert new open rows of one tenant and return them with their ids.

    A plain executemany (no RETURNING: on SQLite an ordered RETURNING degrades to one
    statement per row), then one range read of the ids above the previous maximum. The
    partial unique index makes ``key`` identify the open row, so the mapping is exact.
    """
    table = ViolationRow.__table__
    before = session.scalar(select(func.max(table.c.id))) or 0
    session.execute(insert(table), rows)
    note_inserts(session, table.name, len(rows))
    ids = dict(session.execute(
        select(table.c.key, table.c.id).where(
            table.c.tenant_id == rows[0]["tenant_id"], table.c.id > before,
            table.c.resolved_at.is_(None))
    ).all())
    return [OpenedViolation(
        id=ids[row["key"]], tenant_id=row["tenant_id"], key=row["key"], rule=row["rule"],
        deal_external_id=row["deal_external_id"], stage_key=row["stage_key"],
        action_key=row["action_key"], crm_stage=row["crm_stage"], severity=row["severity"],
        explanation=row["explanation"], details_text=row["details"],
        opened_at=row["opened_at"], last_seen_at=row["last_seen_at"],
        resolved_at=row["resolved_at"], opened_run_id=row["opened_run_id"]) for row in rows]


def apply_findings(session: Session, tenant_id: int, findings: Iterable[Finding],
                   now: datetime, run_id: int | None, *,
                   scope_deal_ids: Collection[str] | None = None) -> LifecycleResult:
    """Bring the tenant's violations in line with one run's findings.

    A finding with an open row refreshes it (``last_seen_at``; severity, explanation and
    details when they changed); a new key opens a row (``opened_at = last_seen_at = now``);
    an open row whose key was not found is resolved at ``now``. Duplicate keys among the
    findings collapse (the last wins).

    ``scope_deal_ids`` limits resolution to what the run actually audited (a pass that
    audited only the deals it touched): open rows of other deals, and per-CRM-stage rows
    without a deal, are then left as they are unless found again.
    """
    by_key: dict[str, Finding] = {}
    for finding in findings:
        by_key[finding.key] = finding
    scope = None if scope_deal_ids is None else set(scope_deal_ids)
    stmt = (_open_rows().where(ViolationRow.tenant_id == tenant_id,
                               ViolationRow.resolved_at.is_(None))
            .execution_options(yield_per=STREAM_CHUNK))
    return _apply(session, tenant_id, by_key, session.execute(stmt),
                  lambda row: scope is None or (row.deal_external_id is not None
                                                and row.deal_external_id in scope),
                  now, run_id)


def apply_deal_findings(session: Session, tenant_id: int, deal_ids: Collection[str],
                        findings: Iterable[Finding], now: datetime,
                        run_id: int | None) -> LifecycleResult:
    """``apply_findings`` for exactly the deals ``deal_ids`` (a chunk of an audit):
    only their open rows are read, refreshed or resolved; ``findings`` are theirs."""
    by_key = {finding.key: finding for finding in findings}
    ids = list(dict.fromkeys(deal_ids))

    def rows() -> Iterator[Any]:
        for chunk in sequence_chunks(ids, in_chunk_size(session)):
            yield from session.execute(_open_rows().where(
                ViolationRow.tenant_id == tenant_id, ViolationRow.resolved_at.is_(None),
                ViolationRow.deal_external_id.in_(chunk)))

    return _apply(session, tenant_id, by_key, rows(), lambda row: True, now, run_id)


def apply_stage_findings(session: Session, tenant_id: int, findings: Iterable[Finding],
                         now: datetime, run_id: int | None) -> LifecycleResult:
    """``apply_findings`` for the per-CRM-stage rows (no deal): all of them in scope."""
    by_key = {finding.key: finding for finding in findings}
    rows = session.execute(_open_rows().where(
        ViolationRow.tenant_id == tenant_id, ViolationRow.resolved_at.is_(None),
        ViolationRow.deal_external_id.is_(None)))
    return _apply(session, tenant_id, by_key, rows, lambda row: True, now, run_id)


def resolve_orphans(session: Session, tenant_id: int, now: datetime,
                    live_deal_ids: Any) -> int:
    """Resolve open rows of deals that are not in ``live_deal_ids`` (a subquery of the
    deals still held): deals deleted or gone since their violation was opened."""
    table = ViolationRow.__table__
    result = session.execute(update(table).where(
        table.c.tenant_id == tenant_id, table.c.resolved_at.is_(None),
        table.c.deal_external_id.is_not(None),
        table.c.deal_external_id.not_in(live_deal_ids)).values(resolved_at=now))
    return affected_rows(result)


def open_counts_by_rule(session: Session, tenant_id: int) -> dict[str, int]:
    """Open violations per rule."""
    stmt = (select(ViolationRow.rule, func.count())
            .where(ViolationRow.tenant_id == tenant_id, ViolationRow.resolved_at.is_(None))
            .group_by(ViolationRow.rule))
    return {rule: int(count) for rule, count in session.execute(stmt)}


def _open_rows() -> Any:
    return select(ViolationRow.id, ViolationRow.key, ViolationRow.severity,
                  ViolationRow.explanation, ViolationRow.details,
                  ViolationRow.deal_external_id)


def _apply(session: Session, tenant_id: int, by_key: dict[str, Finding],
           open_rows: Iterable[Any], in_scope: Callable[[Any], bool], now: datetime,
           run_id: int | None) -> LifecycleResult:
    result = LifecycleResult()
    seen: set[str] = set()
    refresh_ids: list[int] = []
    resolve_ids: list[int] = []
    changed: list[dict[str, Any]] = []
    for row in open_rows:
        found = by_key.get(row.key)
        if found is None:
            if in_scope(row):
                resolve_ids.append(row.id)
            continue
        seen.add(row.key)
        if (found.severity != row.severity or found.explanation != row.explanation
                or not _same_details(row.details, found.details)):
            changed.append({"_id": row.id, "severity": found.severity,
                            "explanation": found.explanation,
                            "details": _jsonable(found.details), "last_seen_at": now})
        else:
            refresh_ids.append(row.id)

    table = ViolationRow.__table__
    size = in_chunk_size(session)
    for chunk in sequence_chunks(resolve_ids, size):
        session.execute(update(table).where(table.c.id.in_(chunk)).values(resolved_at=now))
    for chunk in sequence_chunks(refresh_ids, size):
        session.execute(update(table).where(table.c.id.in_(chunk)).values(last_seen_at=now))
    if changed:
        # executemany: the SET clause comes from the parameter keys.
        session.execute(update(table).where(table.c.id == bindparam("_id")), changed)
    new_keys = [key for key in by_key if key not in seen]
    for key_chunk in sequence_chunks(new_keys, INSERT_CHUNK):
        rows = [_new_row(tenant_id, by_key[key], key, now, run_id) for key in key_chunk]
        result.opened.extend(_insert_opened(session, rows))
    result.refreshed = len(refresh_ids) + len(changed)
    result.resolved = len(resolve_ids)
    result.changed = len(changed)
    return result


def open_violations(session: Session, tenant_id: int,
                    deal_id: str | None = None) -> list[ViolationView]:
    """The tenant's open violations (of one deal, given its CRM id), oldest first.

    Immutable rows with ``ViolationRow``'s attributes, not ORM objects: write-back reads
    all of a tenant's open violations every pass, possibly a million.
    """
    table = ViolationRow.__table__
    stmt = select(table).where(table.c.tenant_id == tenant_id, table.c.resolved_at.is_(None))
    if deal_id is not None:
        stmt = stmt.where(table.c.deal_external_id == deal_id)
    return cast(list[ViolationView], session.execute(stmt.order_by(table.c.id)).all())


def open_violations_of(session: Session, tenant_id: int,
                       deal_ids: Sequence[str]) -> list[ViolationView]:
    """The open violations of the deals ``deal_ids`` (CRM ids), oldest first."""
    table = ViolationRow.__table__
    rows: list[Any] = []
    for chunk in sequence_chunks(list(deal_ids), in_chunk_size(session)):
        rows.extend(session.execute(select(table).where(
            table.c.tenant_id == tenant_id, table.c.resolved_at.is_(None),
            table.c.deal_external_id.in_(chunk))).all())
    rows.sort(key=lambda row: row.id)
    return cast(list[ViolationView], rows)


def has_violation_history(session: Session, tenant_id: int) -> bool:
    """Whether the tenant ever had a violation (the first audit is a baseline)."""
    stmt = select(ViolationRow.id).where(ViolationRow.tenant_id == tenant_id).limit(1)
    return session.scalar(stmt) is not None


def violation_history(session: Session, tenant_id: int, key: str) -> list[ViolationRow]:
    """Every row (open or resolved) a violation key has had, oldest first."""
    stmt = select(ViolationRow).where(ViolationRow.tenant_id == tenant_id,
                                      ViolationRow.key == key)
    stmt = stmt.order_by(ViolationRow.id).execution_options(populate_existing=True)
    return list(session.scalars(stmt))
