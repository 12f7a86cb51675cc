"""Write-back: make the CRM show what the audit found, writing only the difference.

Desired state: each company's client karma in a number field, each deal's open violations
as one text field, and (optionally) one task per newly opened violation.

Safety, after reliability.md §3:
- compare-then-write: a value already right in the CRM (as last pulled) is never written;
- intent before side effect: the ledger row is committed ``pending`` before the HTTP call
  and ``done`` after the CRM confirmed it, with the CRM's post-write record stored, so our
  own write does not look like a change on the next pull (echo suppression);
- tasks are created exactly once: the intent is queued in the same transaction that opens
  the violation; a task whose creation may have happened (the row is pending after an
  earlier attempt) is looked up by its marker before anything is created again.

A write or task the CRM rejects for that item (400/403/404/409/410/422, a Bitrix24 value
that reads back wrong) is logged with the record and the CRM's reason, kept ``failed`` in
the ledger and retried on later passes with exponential backoff per item
(``syncd.store.writebacks.backoff``); until it goes through it is listed in
``WritebackResult.failures`` (the pass summary's ``write_failures``: exit code 4).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from syncd import store
from syncd.config import Tenant
from syncd.connector import Connector, FieldSpec, FieldWrite, TaskCreate
from syncd.mapping import to_float
from syncd.render import deal_summary, task_subject
from syncd.store.sanitize import bounded_error
from syncd.store.writebacks import LedgerKey

log = logging.getLogger(__name__)
BATCH = 50


@dataclass
class WritebackResult:
    fields_written: int = 0
    fields_already_right: int = 0
    fields_failed: int = 0
    fields_deferred: int = 0  # over max_writes_per_run, left for the next pass
    tasks_created: int = 0
    tasks_recovered: int = 0  # found already created after an interrupted attempt
    tasks_failed: int = 0
    fields_waiting: int = 0  # rejected earlier, waiting for their backoff to end
    tasks_waiting: int = 0
    #: One text per item not in the CRM as desired: rejected now, or waiting for a retry.
    failures: list[str] = field(default_factory=list)

    def as_counts(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, int)}


def marker_for(violation_id: int) -> str:
    return f"syncd:v{violation_id}"


def queue_tasks(session: Session, tenant: Tenant, tenant_id: int,
                opened: Iterable[store.OpenedViolation],
                now: datetime) -> int:
    """Queue one task intent per newly opened violation (same transaction as the opening)."""
    config = tenant.config.writeback
    if not (config.enabled and config.create_tasks):
        return 0
    queued = 0
    for violation in opened:
        if violation.rule not in config.task_rules or not violation.deal_external_id:
            continue
        subject = task_subject(violation.rule, violation.stage_key, violation.action_key,
                               violation.details or {}, tenant.book, tenant.config.language)
        store.mark_pending(session, tenant_id, "task", "deal", violation.deal_external_id,
                           marker_for(violation.id), subject)
        queued += 1
    return queued


@dataclass(frozen=True)
class WritebackScope:
    """What an incremental pass changed: the deals it re-audited and the companies whose
    karma or record changed. Field values of everything else are already right (the last
    pass wrote them), so write-back plans only these and the ledger's unfinished items."""

    deal_ids: set[str]
    company_ids: set[str]


def run_writeback(db: store.Database, connector: Connector, tenant: Tenant, tenant_id: int,
                  now: datetime, *, stop_requested: Callable[[], bool] = lambda: False,
                  scope: WritebackScope | None = None) -> WritebackResult:
    result = WritebackResult()
    writes = _not_waiting(db, tenant_id,
                          plan_field_writes(db, tenant, tenant_id, result, scope=scope),
                          now, result)
    config = tenant.config.writeback
    if len(writes) > config.max_writes_per_run:
        result.fields_deferred = len(writes) - config.max_writes_per_run
        writes = writes[: config.max_writes_per_run]
    if writes:
        connector.ensure_fields([
            FieldSpec("company", config.company_karma_field, "number"),
            FieldSpec("deal", config.deal_violations_field, "text"),
        ])
        _apply_field_writes(db, connector, tenant_id, writes, result, stop_requested, now)
    if config.create_tasks:
        _note_waiting_tasks(db, tenant_id, now, result)  # before: the due ones are retried
        _create_tasks(db, connector, tenant, tenant_id, now, result, stop_requested)
    return result


def _failure(result: WritebackResult, what: str, error: str, retry_at: datetime) -> None:
    """Log one rejected item with the CRM's reason and list it for the pass summary."""
    log.warning("write-back: %s was rejected: %s (retry after %s)", what, error,
                retry_at.isoformat(timespec="minutes"))
    result.failures.append(f"{what}: {error} (retry after {retry_at.isoformat()})")


def _not_waiting(db: store.Database, tenant_id: int, writes: list[FieldWrite],
                 now: datetime, result: WritebackResult) -> list[FieldWrite]:
    """Leave out writes rejected before whose backoff is not over (same value only: a new
    desired value is tried at once); list them as failures."""
    with db.session() as session:
        failed = {(r.entity, r.external_id, r.field): r
                  for r in store.failed_rows(session, tenant_id, "field")}
    if not failed:
        return writes
    due = []
    for write in writes:
        row = failed.get((write.entity, write.external_id, write.field_name))
        if (row is not None and row.next_attempt_at is not None and row.next_attempt_at > now
                and row.desired_value == store.to_text(write.value)):
            result.fields_waiting += 1
            result.failures.append(
                f"{write.entity} {write.external_id} field {write.field_name!r}: "
                f"{row.error} (retry after {row.next_attempt_at.isoformat()})")
            continue
        due.append(write)
    return due


def _note_waiting_tasks(db: store.Database, tenant_id: int, now: datetime,
                        result: WritebackResult) -> None:
    with db.session() as session:
        for row in store.failed_rows(session, tenant_id, "task"):
            if row.next_attempt_at is not None and row.next_attempt_at > now:
                result.tasks_waiting += 1
                result.failures.append(
                    f"task {row.field} for deal {row.external_id}: {row.error} "
                    f"(retry after {row.next_attempt_at.isoformat()})")


# -- fields ------------------------------------------------------------------------------------
def plan_field_writes(db: store.Database, tenant: Tenant, tenant_id: int,
                      result: WritebackResult, *,
                      scope: WritebackScope | None = None) -> list[FieldWrite]:
    """The writes that make the CRM right; values already right are counted, not written.
    With ``scope``: only its deals and companies, and those with an unfinished write."""
    config = tenant.config.writeback
    writes: list[FieldWrite] = []
    with db.session(immediate=True) as session:
        if scope is None:
            pending = store.get_ledger(session, tenant_id, "field")
            companies = store.companies(session, tenant_id)
            totals = store.karma_totals(session, tenant_id, "client")
        else:
            unfinished = [*store.pending_rows(session, tenant_id, "field"),
                          *store.failed_rows(session, tenant_id, "field")]
            pending = {(r.entity, r.external_id, r.field): r for r in unfinished}
            company_ids = scope.company_ids | {r.external_id for r in unfinished
                                               if r.entity == "company"}
            deal_ids = scope.deal_ids | {r.external_id for r in unfinished
                                         if r.entity == "deal"}
            if not company_ids and not deal_ids:
                return writes
            companies = store.companies(session, tenant_id, company_ids)
            totals = store.karma_totals(session, tenant_id, "client",
                                        subject_ids=company_ids)
        for company in companies:
            desired = round(totals.get(company.external_id, 0.0), 2)  # no lines: karma 0
            current = to_float((company.fields or {}).get(config.company_karma_field))
            if current is not None and abs(current - desired) < 0.005:
                result.fields_already_right += 1
                _settle(session, tenant_id, pending, "company", company.external_id,
                        config.company_karma_field, str(desired))
                continue
            writes.append(FieldWrite("company", company.external_id,
                                     config.company_karma_field, desired))
        by_deal = defaultdict(list)
        violations = (store.open_violations(session, tenant_id) if scope is None
                      else store.open_violations_of(session, tenant_id, sorted(deal_ids)))
        for violation in violations:
            if violation.deal_external_id:
                by_deal[violation.deal_external_id].append(violation)
        chunks = (store.iter_deal_chunks(session, tenant_id) if scope is None
                  else [store.live_deal_rows(session, tenant_id, sorted(deal_ids))])
        for chunk in chunks:
            for deal in chunk:
                desired_text = deal_summary(by_deal.get(deal.external_id, ()), tenant.book,
                                            tenant.config.language)
                current_text = (deal.fields or {}).get(config.deal_violations_field) or ""
                if desired_text == current_text:
                    if desired_text:
                        result.fields_already_right += 1
                    _settle(session, tenant_id, pending, "deal", deal.external_id,
                            config.deal_violations_field, desired_text)
                    continue
                writes.append(FieldWrite("deal", deal.external_id,
                                         config.deal_violations_field, desired_text))
    return writes


def _settle(session: Session, tenant_id: int,
            ledger: Mapping[LedgerKey, store.WritebackRow], entity: str,
            external_id: str, field: str, value: str) -> None:
    """A pending write whose value is now right in the CRM (crashed after the write): done."""
    row = ledger.get((entity, external_id, field))
    if row is not None and row.status != "done":
        store.mark_done(session, tenant_id, "field", entity, external_id, field, value)


def _apply_field_writes(db: store.Database, connector: Connector, tenant_id: int,
                        writes: Sequence[FieldWrite], result: WritebackResult,
                        stop_requested: Callable[[], bool], now: datetime) -> None:
    size = max(1, connector.field_batch_size)
    for start in range(0, len(writes), size):
        batch = writes[start: start + size]
        with db.session(immediate=True) as session:
            for write in batch:
                store.mark_pending(session, tenant_id, "field", write.entity, write.external_id,
                                   write.field_name, _text(write.value))
        outcomes = connector.write_fields(batch)
        with db.session(immediate=True) as session:
            for write, outcome in zip(batch, outcomes, strict=True):
                if outcome.ok:
                    result.fields_written += 1
                    store.mark_done(session, tenant_id, "field", write.entity,
                                    write.external_id, write.field_name, _text(write.value))
                    if outcome.record is not None:
                        store.upsert_records(session, tenant_id, [outcome.record])
                else:
                    result.fields_failed += 1
                    error = bounded_error(outcome.error or "failed") or "failed"
                    retry_at = store.mark_failed(session, tenant_id, "field", write.entity,
                                                 write.external_id, write.field_name, error,
                                                 now=now)
                    _failure(result, f"{write.entity} {write.external_id} field "
                             f"{write.field_name!r}", error, retry_at)
        if stop_requested():
            return


def _text(value: str | float | None) -> str:
    return "" if value is None else str(value)


# -- tasks -------------------------------------------------------------------------------------
def _create_tasks(db: store.Database, connector: Connector, tenant: Tenant, tenant_id: int,
                  now: datetime, result: WritebackResult,
                  stop_requested: Callable[[], bool]) -> None:
    """Create the queued tasks in the connector's batches, each exactly once.

    Per batch: tasks tried before (a crash may have created them) are looked up by marker
    first; then every remaining intent is marked attempted in one commit *before* the CRM
    call, and the outcomes are committed after it. A crash between the two leaves attempted
    intents, which the next pass looks up instead of creating again."""
    with db.session() as session:
        rows = store.due_rows(session, tenant_id, "task", now)
        owners = store.deal_owners(session, tenant_id, [r.external_id for r in rows])
    due = (now.astimezone(tenant.tz) + timedelta(days=tenant.config.writeback.task_due_days))
    task_type = tenant.config.writeback.effective_task_type(
        tenant.config.mapping.activity_types)
    size = max(1, connector.task_batch_size)
    for start in range(0, len(rows), size):
        if stop_requested():
            return
        batch: list[tuple[store.WritebackRow, TaskCreate]] = []
        for row in rows[start: start + size]:
            if row.desired_value is None:
                _no_task_text(db, tenant_id, row, result, now)
                continue
            batch.append((row, TaskCreate(
                deal_id=row.external_id, owner_id=owners.get(row.external_id),
                subject=row.desired_value, note=f"{row.desired_value}\n\n[{row.field}]",
                marker=row.field, due=due.date(), task_type=task_type,
            )))
        if batch:
            _create_task_batch(db, connector, tenant_id, batch, result, now)


def _no_task_text(db: store.Database, tenant_id: int, row: store.WritebackRow,
                  result: WritebackResult, now: datetime) -> None:
    """A task intent whose text is missing from the ledger is never sent (the CRM would get
    a task called "None"); it is listed as failed, like a task the CRM rejected."""
    error = "no task text stored for this intent"
    with db.session(immediate=True) as session:
        retry_at = store.mark_failed(session, tenant_id, "task", "deal", row.external_id,
                                     row.field, error, now=now)
    result.tasks_failed += 1
    _failure(result, f"task {row.field} for deal {row.external_id}", error, retry_at)


def _create_task_batch(db: store.Database, connector: Connector, tenant_id: int,
                       batch: list[tuple[store.WritebackRow, TaskCreate]],
                       result: WritebackResult,
                       now: datetime) -> None:
    retried = [task for row, task in batch if row.attempts > 0]
    existing = connector.find_tasks(retried) if retried else {}
    todo = []
    with db.session(immediate=True) as session:
        for row, task in batch:
            if task.marker in existing:
                store.mark_done(session, tenant_id, "task", "deal", row.external_id,
                                row.field, row.desired_value, crm_id=existing[task.marker])
                result.tasks_recovered += 1
            else:
                store.mark_attempt(session, tenant_id, "task", "deal", row.external_id,
                                   row.field)
                todo.append((row, task))
    if not todo:
        return
    outcomes = connector.create_tasks([task for _, task in todo])
    with db.session(immediate=True) as session:
        for (row, _), outcome in zip(todo, outcomes, strict=True):
            if outcome.ok:
                store.mark_done(session, tenant_id, "task", "deal", row.external_id,
                                row.field, row.desired_value, crm_id=outcome.crm_id)
                result.tasks_created += 1
            else:
                error = bounded_error(outcome.error or "failed") or "failed"
                retry_at = store.mark_failed(session, tenant_id, "task", "deal",
                                             row.external_id, row.field, error, now=now)
                result.tasks_failed += 1
                _failure(result, f"task {row.field} for deal {row.external_id}", error,
                         retry_at)
