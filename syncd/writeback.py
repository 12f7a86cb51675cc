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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from syncd import store
from syncd.config import Tenant
from syncd.connector import Connector, FieldSpec, FieldWrite, TaskCreate
from syncd.mapping import to_float
from syncd.render import deal_summary, task_subject
from syncd.store.keyset import RecordModel, live_id_page, live_ids_in_order
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
    """Plan and apply the field writes chunk by chunk (``PLAN_CHUNK`` records and their
    open violations at a time, never the whole tenant), then create the queued tasks."""
    result = WritebackResult()
    config = tenant.config.writeback
    failed = _failed_writes(db, tenant_id)
    waiting: list[str] = []  # listed before the failures of this pass's writes
    writer = _FieldWriter(db, connector, tenant, tenant_id, result, stop_requested, now)
    budget = config.max_writes_per_run
    for chunk in plan_field_writes(db, tenant, tenant_id, result, scope=scope):
        for write in chunk:
            if _is_waiting(failed, write, now, result, waiting):
                continue
            if budget == 0:
                result.fields_deferred += 1  # over max_writes_per_run, left for the next pass
                continue
            budget -= 1
            writer.add(write)
    writer.flush()
    result.failures[:0] = waiting
    if config.create_tasks:
        _note_waiting_tasks(db, tenant_id, now, result)  # before: the due ones are retried
        _create_tasks(db, connector, tenant, tenant_id, now, result, stop_requested)
    return result


def _failure(result: WritebackResult, what: str, error: str, retry_at: datetime) -> None:
    """Log one rejected item with the CRM's reason and list it for the pass summary."""
    log.warning("write-back: %s was rejected: %s (retry after %s)", what, error,
                retry_at.isoformat(timespec="minutes"))
    result.failures.append(f"{what}: {error} (retry after {retry_at.isoformat()})")


@dataclass(frozen=True)
class _Waiting:
    """A field write the CRM rejected earlier: when it may be tried again, with what."""

    next_attempt_at: datetime | None
    desired_value: str | None
    error: str | None


def _not_waiting(db: store.Database, tenant_id: int, writes: list[FieldWrite],
                 now: datetime, result: WritebackResult) -> list[FieldWrite]:
    """``writes`` without those still waiting for their backoff (listed as failures)."""
    failed = _failed_writes(db, tenant_id)
    waiting: list[str] = []
    due = [write for write in writes if not _is_waiting(failed, write, now, result, waiting)]
    result.failures.extend(waiting)
    return due


def _failed_writes(db: store.Database, tenant_id: int) -> dict[LedgerKey, _Waiting]:
    with db.session() as session:
        return {(r.entity, r.external_id, r.field): _Waiting(r.next_attempt_at,
                                                            r.desired_value, r.error)
                for r in store.failed_rows(session, tenant_id, "field")}


def _is_waiting(failed: Mapping[LedgerKey, _Waiting], write: FieldWrite, now: datetime,
                result: WritebackResult, waiting: list[str]) -> bool:
    """Whether ``write`` was rejected before and its backoff is not over (same value only:
    a new desired value is tried at once); such a write is listed as a failure."""
    row = failed.get((write.entity, write.external_id, write.field_name))
    if (row is None or row.next_attempt_at is None or row.next_attempt_at <= now
            or row.desired_value != store.to_text(write.value)):
        return False
    result.fields_waiting += 1
    waiting.append(f"{write.entity} {write.external_id} field {write.field_name!r}: "
                   f"{row.error} (retry after {row.next_attempt_at.isoformat()})")
    return True


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
#: Records planned at a time: one short transaction reads them with their open violations.
PLAN_CHUNK = 1000


def plan_field_writes(db: store.Database, tenant: Tenant, tenant_id: int,
                      result: WritebackResult, *,
                      scope: WritebackScope | None = None) -> Iterator[list[FieldWrite]]:
    """The writes that make the CRM right, one chunk of records at a time (companies, then
    deals, each in row order); values already right are counted, not written, and a write
    left pending by a crash whose value is right now is settled. With ``scope``: only its
    deals and companies, and those with an unfinished write. Each chunk is planned in its
    own transaction, closed before the chunk is yielded (the caller writes in between)."""
    with db.session() as session:
        unfinished = [*store.pending_rows(session, tenant_id, "field"),
                      *store.failed_rows(session, tenant_id, "field")]
        if scope is None:
            company_ids = deal_ids = None
        else:
            company_ids = scope.company_ids | {r.external_id for r in unfinished
                                               if r.entity == "company"}
            deal_ids = scope.deal_ids | {r.external_id for r in unfinished
                                         if r.entity == "deal"}
    settle = {(r.entity, r.external_id, r.field) for r in unfinished}
    del unfinished
    for chunk in _chunk_ids(db, store.CompanyRow, tenant_id, company_ids):
        with db.session(immediate=True) as session:
            writes = _plan_companies(session, tenant, tenant_id, chunk, settle, result)
        yield writes
    for chunk in _chunk_ids(db, store.DealRow, tenant_id, deal_ids):
        with db.session(immediate=True) as session:
            writes = _plan_deals(session, tenant, tenant_id, chunk, settle, result)
        yield writes


def _chunk_ids(db: store.Database, model: RecordModel, tenant_id: int,
               wanted: set[str] | None) -> Iterator[list[str]]:
    """The CRM ids of the tenant's live records of ``model`` (or of those in ``wanted``, a
    set in memory already), in row order, ``PLAN_CHUNK`` at a time."""
    if wanted is not None:
        if not wanted:
            return
        with db.session() as session:
            ordered = live_ids_in_order(session, tenant_id, model, wanted)
        for start in range(0, len(ordered), PLAN_CHUNK):
            yield ordered[start: start + PLAN_CHUNK]
        return
    last_id = 0
    while True:  # keyset pages: no transaction held between them
        with db.session() as session:
            page = live_id_page(session, tenant_id, model, last_id, PLAN_CHUNK)
        if not page:
            return
        yield [external_id for _, external_id in page]
        last_id = page[-1][0]


def _plan_companies(session: Session, tenant: Tenant, tenant_id: int, ids: list[str],
                    settle: set[LedgerKey], result: WritebackResult) -> list[FieldWrite]:
    """Each company's client karma, where the CRM (as last pulled) does not show it."""
    field_name = tenant.config.writeback.company_karma_field
    totals = store.karma_totals(session, tenant_id, "client", subject_ids=ids)
    writes = []
    for company in store.companies(session, tenant_id, ids):
        desired = round(totals.get(company.external_id, 0.0), 2)  # no lines: karma 0
        current = to_float((company.fields or {}).get(field_name))
        if current is not None and abs(current - desired) < 0.005:
            result.fields_already_right += 1
            _settle(session, tenant_id, settle, "company", company.external_id, field_name,
                    str(desired))
            continue
        writes.append(FieldWrite("company", company.external_id, field_name, desired))
    return writes


def _plan_deals(session: Session, tenant: Tenant, tenant_id: int, ids: list[str],
                settle: set[LedgerKey], result: WritebackResult) -> list[FieldWrite]:
    """Each deal's open violations as one text, where the CRM does not show it."""
    field_name = tenant.config.writeback.deal_violations_field
    by_deal = defaultdict(list)
    for violation in store.open_violations_of(session, tenant_id, ids):
        if violation.deal_external_id:
            by_deal[violation.deal_external_id].append(violation)
    writes = []
    for deal in store.live_deal_rows(session, tenant_id, ids):
        desired_text = deal_summary(by_deal.get(deal.external_id, ()), tenant.book,
                                    tenant.config.language)
        current_text = (deal.fields or {}).get(field_name) or ""
        if desired_text == current_text:
            if desired_text:
                result.fields_already_right += 1
            _settle(session, tenant_id, settle, "deal", deal.external_id, field_name,
                    desired_text)
            continue
        writes.append(FieldWrite("deal", deal.external_id, field_name, desired_text))
    return writes


def _settle(session: Session, tenant_id: int, unfinished: set[LedgerKey], entity: str,
            external_id: str, field: str, value: str) -> None:
    """A pending write whose value is now right in the CRM (crashed after the write): done."""
    if (entity, external_id, field) in unfinished:
        store.mark_done(session, tenant_id, "field", entity, external_id, field, value)


class _FieldWriter:
    """Applies field writes in the connector's batches as they are planned: each batch's
    intents committed ``pending`` before the CRM call, the outcomes after. Once a stop is
    requested (checked after each batch) the writes still to come are not sent."""

    def __init__(self, db: store.Database, connector: Connector, tenant: Tenant,
                 tenant_id: int, result: WritebackResult,
                 stop_requested: Callable[[], bool], now: datetime) -> None:
        self.db, self.connector, self.tenant_id = db, connector, tenant_id
        self.config = tenant.config.writeback
        self.result, self.stop_requested, self.now = result, stop_requested, now
        self.size = max(1, connector.field_batch_size)
        self.batch: list[FieldWrite] = []
        self.fields_ensured = self.stopped = False

    def add(self, write: FieldWrite) -> None:
        self.batch.append(write)
        if len(self.batch) >= self.size:
            self.flush()

    def flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch or self.stopped:
            return
        if not self.fields_ensured:
            self.connector.ensure_fields([
                FieldSpec("company", self.config.company_karma_field, "number"),
                FieldSpec("deal", self.config.deal_violations_field, "text"),
            ])
            self.fields_ensured = True
        self.stopped = not _apply_field_writes(self.db, self.connector, self.tenant_id,
                                               batch, self.result, self.stop_requested,
                                               self.now)


def _apply_field_writes(db: store.Database, connector: Connector, tenant_id: int,
                        writes: Sequence[FieldWrite], result: WritebackResult,
                        stop_requested: Callable[[], bool], now: datetime) -> bool:
    """Apply ``writes`` in the connector's batches; False if a stop was requested (checked
    after each batch, the rest not sent)."""
    size = max(1, connector.field_batch_size)
    for start in range(0, len(writes), size):
        _apply_field_batch(db, connector, tenant_id, writes[start: start + size], result, now)
        if stop_requested():
            return False
    return True


def _apply_field_batch(db: store.Database, connector: Connector, tenant_id: int,
                       batch: Sequence[FieldWrite], result: WritebackResult,
                       now: datetime) -> None:
    """One batch: intents committed ``pending``, the CRM call, the outcomes committed."""
    with db.session(immediate=True) as session:
        store.mark_pending_many(session, tenant_id, "field", [
            (write.entity, write.external_id, write.field_name, _text(write.value))
            for write in batch])
    outcomes = connector.write_fields(batch)
    with db.session(immediate=True) as session:
        store.mark_fields_done(session, tenant_id, [
            (write.entity, write.external_id, write.field_name, _text(write.value))
            for write, outcome in zip(batch, outcomes, strict=True) if outcome.ok])
        for write, outcome in zip(batch, outcomes, strict=True):
            if outcome.ok:
                result.fields_written += 1
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
