"""One tenant pass: pull -> store -> audit -> karma -> write-back.

Every page is committed together with the cursor it reaches, so a pass killed at any point
resumes from committed data only. The audit runs with an explicit ``now`` (the clock, or
``--as-of``); a pass with an ``as_of`` in the past is a *what-if*: it pulls and reports, but
does not touch the live violation lifecycle, the karma ledger or the CRM.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from syncd import backfill, store
from syncd.audit.engine import audit_deals
from syncd.audit.facts import DealFacts, Finding
from syncd.audit_pass import chunk_facts, mapper_of
from syncd.badrecords import BadRecord, collecting, drain
from syncd.config import Tenant
from syncd.connector import AUDIT_FREE_STREAMS, Connector, PullContext
from syncd.deal_walk import audit_and_score, audit_and_score_as_of
from syncd.errors import SyncdError
from syncd.fieldcheck import check_stored_fields
from syncd.i18n import Text, say
from syncd.karma_pass import (
    client_lines,
    iter_karma_deals,
    karma_weights_fn,
)
from syncd.lease import FencedDatabase, LeaseLost, fence_crm_calls
from syncd.mapping import TenantMapper
from syncd.plugins import Plugins
from syncd.records import Page
from syncd.store.runs import RunStatus
from syncd.store.sanitize import describe_error
from syncd.writeback import WritebackResult, WritebackScope, queue_tasks, run_writeback

log = logging.getLogger(__name__)


class Interrupted(SyncdError):
    """The pass stopped early on request, after committing its last page."""


@dataclass
class PassOptions:
    full: bool = False
    as_of: datetime | None = None
    write: bool = True
    overlap: timedelta = timedelta(minutes=10)
    stop_requested: Callable[[], bool] = lambda: False
    on_request: Callable[[int], None] = lambda n: None
    on_stream: Callable[[str], None] = lambda name: None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    #: Called once everything the audit, the karma and the report read is pulled, as the
    #: audit starts (beside the last streams' pull, or after it), from the audit's thread.
    on_pulled: Callable[[], None] = lambda: None
    #: Called once the live audit's verdicts are all written (before the karma finishes),
    #: from the audit's thread.
    on_verdicts: Callable[[], None] = lambda: None
    #: Nothing else runs beside this pass (``syncd sync``): a large tenant's baseline audit
    #: may have chunks audited by a process of its own on the idle core
    #: (``syncd.spare_audit``).
    spare_core: bool = False


@dataclass
class PassSummary:
    tenant: str
    plugin: str
    as_of: str
    live: bool
    pulled: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    violations_open: int = 0
    violations_opened: int = 0
    violations_resolved: int = 0
    violations_by_rule: dict[str, int] = field(default_factory=dict)
    companies_with_karma: int = 0
    writes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Source rows skipped because they could not be read (``Page.problems``).
    problems: list[str] = field(default_factory=list)
    #: Records quarantined this pass (could not be read or stored), one text per record.
    quarantined: list[str] = field(default_factory=list)
    #: CRM writes or tasks rejected this pass, one text per item (record and CRM's reason).
    write_failures: list[str] = field(default_factory=list)
    #: Report sinks that failed to publish this pass's report: "sink: reason".
    report_sink_failures: list[str] = field(default_factory=list)
    #: How the audit ran: "mode" (full or incremental), "deals_audited", "karma".
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """The pass ran to its end, but some records or writes did not make it (exit 4)."""
        return bool(self.problems or self.quarantined or self.write_failures)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_pass(db: store.Database, plugins: Plugins, tenant: Tenant,
             options: PassOptions) -> PassSummary:
    """Run one pass for one tenant; raises on failure after recording it."""
    started = time.monotonic()
    now = options.as_of or options.clock()
    summary = PassSummary(tenant=tenant.key, plugin=tenant.config.plugin,
                          as_of=now.isoformat(), live=options.as_of is None)
    plugins.hook.syncd_before_sync(tenant=tenant.key, plugin=tenant.config.plugin,
                                   full=options.full)
    with db.session(immediate=True) as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        run_id = store.start_run(session, tenant_id, full=options.full, as_of=now)
    connector = tenant.make_connector(db)
    status: RunStatus = "failed"
    error: str | None = None

    def audit_stage() -> WritebackScope | None:
        check_stored_fields(db, tenant, tenant_id)  # a misspelt mapped field stops here
        options.on_pulled()
        return _audit_and_score(db, tenant, tenant_id, run_id, now, summary,
                                full=options.full, on_verdicts=options.on_verdicts,
                                spare_core=options.spare_core)

    audit = BesidePull(audit_stage)
    try:
        try:
            _pull(db, connector, tenant_id, options, summary, run_id,
                  timezone=tenant.config.timezone, language=tenant.config.language,
                  on_audit_inputs=audit.start)
        except BaseException:
            audit.pulled()
            audit.wait()  # an audit begun beside the pull ends before the pass does
            raise
        audit.pulled()
        changes = audit.result()
        if summary.live and options.write and tenant.config.writeback.enabled:
            with fence_crm_calls(db):  # every CRM request proves the lease first
                scope = changes if _last_writes_complete(db, tenant_id, run_id) else None
                result = run_writeback(db, connector, tenant, tenant_id, now,
                                       stop_requested=options.stop_requested, scope=scope)
            summary.writes = result.as_counts()
            summary.write_failures.extend(result.failures)
        status = "ok"
    except Interrupted:
        status = "interrupted"
        raise
    except LeaseLost as exc:
        status, error = "lease_lost", describe_error(exc)
        raise
    except Exception as exc:
        error = describe_error(exc)  # never SQL parameters; bounded and redacted when stored
        raise
    finally:
        connector.close()
        summary.seconds = round(time.monotonic() - started, 3)
        _finish_run(db, run_id, status, summary, error)
    _after_sync(plugins, tenant.key, summary)
    return summary


#: The interpreter's switch interval while an audit runs beside a pull (seconds). The
#: pull's threads wait for the interpreter lock each time they wake (an answer read, a row
#: stored): at the default 5 ms, one 20k-deal run's contacts pull took ~3.5 s instead of ~2.
BESIDE_SWITCH_INTERVAL = 0.001
_beside = {"passes": 0, "interval": 0.0}
_beside_lock = threading.Lock()


def _switch_sooner(begin: bool) -> None:
    """Count the passes auditing beside their pull (worker threads may run several): the
    first lowers the switch interval, the last puts the one it found back."""
    with _beside_lock:
        if begin:
            if _beside["passes"] == 0:
                _beside["interval"] = sys.getswitchinterval()
                sys.setswitchinterval(min(_beside["interval"], BESIDE_SWITCH_INTERVAL))
            _beside["passes"] += 1
        else:
            _beside["passes"] -= 1
            if _beside["passes"] == 0:
                sys.setswitchinterval(_beside["interval"])


class BesidePull:
    """The pass's audit and karma (``run``), begun in a thread of its own once every stream
    they read is pulled (``start``, called by the pull when only ``AUDIT_FREE_STREAMS`` are
    left, e.g. contacts), or run in the caller's thread when ``result`` is asked for first.

    The pull's main thread mostly waits on the CRM's rate limit while it pulls the last
    streams, so the audit gets the interpreter almost to itself: a first 20k-deal Pipedrive
    pass ends about as much earlier as its contacts took to pull. The two write in
    transactions of their own; on SQLite each takes the write lock at its first write and
    waits its turn for it (the busy timeout), and the audit holds none while it judges
    (tests/test_audit_beside_pull.py commits a page in the middle of a chunk)."""

    def __init__(self, run: Callable[[], WritebackScope | None]) -> None:
        self._run = run
        self._pulled = False
        self._thread: threading.Thread | None = None
        self._result: WritebackScope | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        context = contextvars.copy_context()  # the pass's context (log scope, collectors)
        self._thread = threading.Thread(target=context.run, args=(self._target,),
                                        name="syncd-audit", daemon=True)
        _switch_sooner(True)
        self._thread.start()

    def pulled(self) -> None:
        """The pull has ended: the audit may hold the interpreter as long as it likes."""
        if self._thread is not None and not self._pulled:
            self._pulled = True
            _switch_sooner(False)

    def _target(self) -> None:
        try:
            self._result = self._run()
        except BaseException as exc:  # handed to the pass's thread by result()
            self._error = exc

    def wait(self) -> None:
        """Wait for an audit begun beside the pull (its outcome is dropped)."""
        if self._thread is not None:
            self._thread.join()

    def result(self) -> WritebackScope | None:
        """What write-back must look at: from the audit begun beside the pull (its error
        raised here), or from running it now."""
        if self._thread is None:
            return self._run()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def _last_writes_complete(db: store.Database, tenant_id: int, run_id: int) -> bool:
    """Whether the tenant's previous pass ran its write-back to the end (nothing deferred
    past ``max_writes_per_run``): only then may this pass plan only what it changed."""
    runs = store.SyncRunRow
    with db.session() as session:
        last = session.execute(
            select(runs.status, runs.counts).where(runs.tenant_id == tenant_id,
                                                   runs.id != run_id)
            .order_by(runs.started_at.desc(), runs.id.desc()).limit(1)).first()
    if last is None or last.status != "ok":
        return False
    writes = (last.counts or {}).get("writes") or {}
    return bool(writes) and not writes.get("fields_deferred")


def _finish_run(db: store.Database, run_id: int, status: RunStatus,
                summary: PassSummary, error: str | None) -> None:
    """Close the run row; if that fails (its counts or error refused), close it without
    them, so a pass that ended in this process never stays "running"."""
    # A pass that lost its lease may still close its own run row (nothing else).
    if isinstance(db, FencedDatabase) and status == "lease_lost":
        db = db.inner
    try:
        with db.session(immediate=True) as session:
            store.finish_run(session, run_id, status=status, counts=summary.as_dict(),
                             error=error)
    except Exception as exc:
        log.exception("could not record the outcome of sync run %s", run_id)
        with db.session(immediate=True) as session:
            store.finish_run(session, run_id, status="failed" if status == "ok" else status,
                             error=f"{error or ''} (outcome not recorded: "
                                   f"{describe_error(exc)})".strip())


def _after_sync(plugins: Plugins, tenant: str, summary: PassSummary) -> None:
    try:
        plugins.hook.syncd_after_sync(tenant=tenant, summary=summary.as_dict())
    except Exception:
        log.exception("a syncd_after_sync hook failed for tenant %s", tenant)


# -- pull ------------------------------------------------------------------------------------
def _pull(db: store.Database, connector: Connector, tenant_id: int, options: PassOptions,
          summary: PassSummary, run_id: int | None = None, *, timezone: str = "UTC",
          language: str = "en", on_audit_inputs: Callable[[], None] | None = None) -> None:
    """Pull every stream of the connector, in its order, each page committed with its
    cursor. ``on_audit_inputs`` is called once, before the first of the trailing streams
    that nothing after the pull reads (``AUDIT_FREE_STREAMS``), if there are any."""
    context = PullContext(full=options.full, overlap=options.overlap,
                          stop_requested=options.stop_requested, on_request=options.on_request)
    changed_deals: set[str] = set()
    history_budget = connector.history_backfill()  # None: history comes with the pull
    now = options.clock()
    today = backfill.local_day(now, timezone)
    streams = list(connector.streams)
    for index, stream in enumerate(streams):
        if on_audit_inputs is not None and set(streams[index:]) <= AUDIT_FREE_STREAMS:
            on_audit_inputs()
            on_audit_inputs = None
        options.on_stream(stream)
        if stream == "stage_history":
            context.stored_deals = _history_owed(db, tenant_id, run_id)
            context.changed_deal_ids = changed_deals | set(context.stored_deals)
            if history_budget is not None:
                backfill.plan(db, tenant_id, history_budget, context.changed_deal_ids,
                              context, now, today)
        with db.session() as session:
            cursor = None if options.full else store.get_cursor(session, tenant_id, stream)
            held = _Held({row.external_id: row.payload
                          for row in store.quarantined(session, tenant_id, stream)})
        if held.payloads:
            changed_deals |= _retry_quarantined(db, connector, tenant_id, stream, held,
                                                language)
        with collecting() as rejected:
            for page in connector.pull(stream, cursor, context):
                stats = _store_page(db, tenant_id, page, _said(drain(rejected), language),
                                    held)
                summary.pulled[stream] = summary.pulled.get(stream, 0) + len(page.records)
                summary.changed[stream] = (summary.changed.get(stream, 0)
                                           + stats.inserted + stats.updated)
                summary.requests += page.requests
                summary.problems.extend(say(p, language) for p in page.problems)
                changed_deals |= stats.changed_ids.get("deal", set())
                if history_budget is not None and stream == "stage_history":
                    backfill.record(db, tenant_id, page, now, today)
                if options.stop_requested():
                    message = f"stopped during stream {stream} after a committed page"
                    raise Interrupted(message)
    with db.session() as session:
        for row in store.quarantined(session, tenant_id):
            summary.quarantined.append(store.describe_quarantined(row))
    for line in summary.quarantined:
        log.warning("quarantined record: %s", line)


@dataclass
class _Held:
    """One stream's quarantined records during a pass: their stored payloads, and the ids
    this pass already tried (a record is counted once per pass, however often it is seen)."""

    payloads: dict[str, Any]
    tried: set[str] = field(default_factory=set)

    def keep(self, session: Session, tenant_id: int, stream: str, external_id: str | None,
             payload: Any, problem: str, stage: str) -> None:
        stored_id = store.quarantine_id(external_id, payload)
        store.quarantine(session, tenant_id, stream, external_id, payload, problem,
                         stage=stage, new_try=stored_id not in self.tried)
        self.tried.add(stored_id)
        self.payloads[stored_id] = payload

    def release(self, session: Session, tenant_id: int, stream: str, stored: set[str]) -> None:
        released = stored & self.payloads.keys()
        if released:
            store.release(session, tenant_id, stream, released)
            for external_id in released:
                self.payloads.pop(external_id, None)


def _store_page(db: store.Database, tenant_id: int, page: Page, rejected: list[BadRecord],
                held: _Held) -> store.UpsertStats:
    """Store a page's good records, quarantine its bad ones and move the cursor, in one
    transaction; records held in quarantine that went through now are released."""
    with db.session(immediate=True) as session:
        stats, failures = store.upsert_page_isolating(session, tenant_id, page)
        for bad in rejected:
            held.keep(session, tenant_id, bad.stream, bad.external_id, bad.payload,
                      bad.problem, "read")
        for failure in failures:
            held.keep(session, tenant_id, page.stream, failure.external_id,
                      getattr(failure.record, "raw", None) or {}, failure.problem, "store")
        if held.payloads:
            failed = {f.external_id for f in failures}
            held.release(session, tenant_id, page.stream,
                         {i for r in page.records
                          if (i := store.record_external_id(r)) and i not in failed}
                         | set(page.deleted_ids))
        if page.cursor is not None:
            store.set_cursor(session, tenant_id, page.stream, page.cursor)
    return stats


def _said(found: list[BadRecord], language: str) -> list[BadRecord]:
    """What a connector could not read, its problem said in the tenant's language (a
    ``syncd.i18n.Text``; other problems as written), as stored audit texts are."""
    return [replace(bad, problem=say(bad.problem, language)) if isinstance(bad.problem, Text)
            else bad for bad in found]


def _retry_quarantined(db: store.Database, connector: Connector, tenant_id: int,
                       stream: str, held: _Held, language: str = "en") -> set[str]:
    """Re-read the stream's quarantined records from their stored payloads (when the
    connector can) before pulling; returns the deal ids that changed. Records the connector
    cannot re-read stay held until the CRM lists them again."""
    payloads = [p for p in held.payloads.values() if isinstance(p, dict) and p]
    if not payloads:
        return set()
    with collecting() as rejected:
        page = connector.reread(stream, payloads)
        if page is None:
            return set()
        stats = _store_page(db, tenant_id, replace(page, cursor=None),
                            _said(drain(rejected), language), held)
    return stats.changed_ids.get("deal", set())


def _history_owed(db: store.Database, tenant_id: int, run_id: int | None,
                  ) -> dict[str, tuple[datetime | None, str | None]]:
    """Deals stored by earlier passes that ended before their stage history (failed, killed
    or interrupted since the last good pass): this pass sees them unchanged, yet their
    history is still owed. Found by the chaos test (faults at 20%). Each comes with its
    stored update time and stage, so the connector applies its history horizon to it as
    an uninterrupted pass would have (issue 11: a rerun fetched year-old history)."""
    if run_id is None:
        return {}
    runs = store.SyncRunRow
    with db.session() as session:
        last_ok = session.scalar(select(func.max(runs.started_at)).where(
            runs.tenant_id == tenant_id, runs.status == "ok", runs.id != run_id))
        unfinished = select(func.min(runs.started_at)).where(
            runs.tenant_id == tenant_id, runs.status != "ok", runs.id != run_id)
        if last_ok is not None:
            unfinished = unfinished.where(runs.started_at > last_ok)
        since = session.scalar(unfinished)
        if since is None:
            return {}
        deals = store.DealRow
        rows = session.execute(select(deals.external_id, deals.updated_at,
                                      deals.stage_external_id).where(
            deals.tenant_id == tenant_id, deals.synced_at >= since))
        return {row.external_id: (row.updated_at, row.stage_external_id) for row in rows}


# -- audit and karma ---------------------------------------------------------------------------
def _audit_and_score(db: store.Database, tenant: Tenant, tenant_id: int, run_id: int,
                     now: datetime, summary: PassSummary, *, full: bool = False,
                     on_verdicts: Callable[[], None] = lambda: None,
                     spare_core: bool = False) -> WritebackScope | None:
    """Audit and score; returns what write-back must look at (None: everything)."""
    if not summary.live:  # what-if: audit and karma as of that moment, nothing persisted
        with db.session() as session:
            findings, karma_subjects = audit_and_score_as_of(
                session, tenant, tenant_id, now, make_mapper(session, tenant, tenant_id))
        for finding in findings:
            summary.violations_by_rule[finding.rule] = summary.violations_by_rule.get(
                finding.rule, 0) + 1
        summary.violations_open = len(findings)
        summary.companies_with_karma = len(karma_subjects)
        return None
    with db.session() as session:
        mapper = make_mapper(session, tenant, tenant_id)
        first_audit = not store.has_violation_history(session, tenant_id)

    def queue(session: Any, opened: list[Any]) -> None:
        queue_tasks(session, tenant, tenant_id, opened, now)

    # The first audit is the baseline: no flood of tasks. One read of the deals feeds the
    # audit and both karma ledgers (syncd.deal_walk).
    outcome, karma, done, karma_companies = audit_and_score(
        db, tenant, tenant_id, run_id, now, mapper=mapper, full=full,
        queue_tasks=None if first_audit else queue, on_verdicts=on_verdicts,
        spare_core=spare_core)
    summary.audit = {"mode": "full" if outcome.full else "incremental",
                     "deals_audited": outcome.audited, "karma": done}
    summary.violations_opened = outcome.opened
    summary.violations_resolved = outcome.resolved
    with db.session() as session:
        summary.violations_by_rule = store.open_counts_by_rule(session, tenant_id)
        summary.violations_open = sum(summary.violations_by_rule.values())
        summary.companies_with_karma = store.karma_subject_count(session, tenant_id, "client")
    if karma.scope is None or karma_companies is None:
        return None  # write-back plans every deal and company
    return WritebackScope(outcome.audited_ids, karma_companies | karma.scope.company_ids)


def make_mapper(session: Session, tenant: Tenant, tenant_id: int) -> TenantMapper:
    """The tenant's mapper, knowing the CRM ids of the tasks syncd created (never evidence)."""
    return mapper_of(session, tenant.config, tenant.book, tenant_id)


def _audit(session: Session, tenant: Tenant, tenant_id: int, now: datetime,
           ) -> tuple[TenantMapper, list[Finding]]:
    mapper = make_mapper(session, tenant, tenant_id)
    facts = iter_facts(session, tenant_id, mapper)
    return mapper, list(audit_deals(facts, tenant.book, now, mapper.tz,
                                    language=tenant.config.language,
                                    custom_rules=tenant.custom_rules))


def iter_facts(session: Session, tenant_id: int, mapper: TenantMapper) -> Iterator[DealFacts]:
    """Stream every stored deal as audit facts, chunk by chunk."""
    for chunk in store.iter_deal_chunks(session, tenant_id):
        yield from chunk_facts(session, tenant_id, mapper, chunk)


def audit_now(db: store.Database, tenant: Tenant, now: datetime) -> list[Finding]:
    """Audit stored data as of ``now`` without persisting anything (reports, --as-of)."""
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        return _audit(session, tenant, tenant_id, now)[1]


__all__ = ["Interrupted", "PassOptions", "PassSummary", "WritebackResult", "audit_now",
           "client_lines", "iter_karma_deals", "karma_weights_fn", "run_pass"]
