"""The pass's audit stage: which deals are audited, chunk by chunk, and the violations and
due-time index kept in step with them (issue 13, items 1 and 2).

A live pass audits

- every deal when the tenant's audit fingerprint changed (Sales Book, mapping, timezone,
  language, the CRM's stage names, custom rules, the audit code), on the first audit, when
  "now" went back before the last audit, or when a full audit is asked for;
- otherwise only the deals whose inputs were stored since the last audit (the deal, its
  activities, its stage changes, its company's activities for a won deal) and the deals
  whose due time (``syncd.audit.due``) has come.

Either way deals are read (``syncd.deal_walk``: one read feeds the audit and the karma),
audited and written ``CHUNK`` at a time, each chunk in its own transaction (the due rows,
the violation lifecycle of exactly those deals, the tasks the newly opened ones queue), so
memory stays flat whatever the tenant's size. The ``unmapped_stage`` rows aggregate the
due-time index's ``unmapped_stage`` column, so they
stay those of a full audit. The audit state (fingerprint, "now", watermark) is written
last: a pass killed in between leaves the old state, and the next pass redoes the work.

Open violations of deals that were not re-audited keep their ``last_seen_at``: the
tenant's ``audited_at`` (``syncd.store.auditstate``) says when they were last known to
hold.
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import false, select
from sqlalchemy.orm import Session

from syncd import store
from syncd.audit.due import DueClock, next_due
from syncd.audit.engine import audit_each
from syncd.audit.facts import DealFacts, Finding
from syncd.audit.rules import unmapped_stage
from syncd.audit.texts import texts
from syncd.config import Tenant, TenantConfig
from syncd.deal_chunk import DealChunk, read_chunk
from syncd.mapping import TenantMapper
from syncd.salesbook import SalesBook
from syncd.store import auditstate
from syncd.store.auditstate import AuditState, DealDue

#: Deals read, audited and written per transaction.
CHUNK = 2000
#: Records stored this long before the last audit's watermark still count as changed. Zero:
#: a tenant's records are written only by its own pass (the lease makes it the only one),
#: whose pull commits before its audit reads, and whose write-back stores after the
#: watermark was taken. Replicas stamp with their own clocks, so their clocks must agree
#: (NTP) to well within a pass interval, as the leases already assume.
SAFETY = timedelta(0)
#: Source files whose code decides verdicts: a new version re-audits every deal.
_LOGIC = ("audit/engine.py", "audit/rules.py", "audit/timeline.py", "audit/texts.py",
          "audit/facts.py", "audit/due.py", "audit/registry.py", "mapping.py")


@dataclass
class AuditOutcome:
    full: bool
    audited: int = 0
    opened: int = 0
    resolved: int = 0
    changed: int = 0
    #: Deals whose stored inputs changed (or that a moved activity or stage change left),
    #: and deals that got a new violation: what karma must look at (incremental only).
    changed_ids: set[str] = field(default_factory=set)
    #: Every deal this pass re-audited (incremental only; after a full audit: all).
    audited_ids: set[str] = field(default_factory=set)
    opened_deal_ids: set[str] = field(default_factory=set)
    #: The state to save once the pass's later stages (karma) are done.
    state: AuditState | None = None
    previous: AuditState | None = None

    @property
    def lifecycle_changed(self) -> bool:
        return bool(self.opened or self.resolved or self.changed)


@dataclass
class Judged:
    """One chunk's verdicts, ready to be written (``write_verdicts``): the findings and
    each judged deal's due row."""

    findings: list[Finding]
    due: list[DealDue]


class Judge:
    """Judges chunks of one tenant as of ``now``: what the audit stage and a process
    auditing beside it (``syncd.spare_audit``) both run, so a chunk's verdicts are the same
    whichever judged it."""

    def __init__(self, book: SalesBook, language: str, mapper: TenantMapper, now: datetime,
                 custom_rules: Sequence[Any] = ()) -> None:
        self.book, self.language, self.custom_rules = book, language, custom_rules
        self.mapper, self.now = mapper, now
        self.clock = DueClock(book, now, mapper.tz, custom_rules=bool(custom_rules))

    def __call__(self, chunk: DealChunk) -> Judged:
        verdicts = audit_each(chunk.facts(self.mapper), self.book, self.now, self.mapper.tz,
                              language=self.language, custom_rules=self.custom_rules)
        findings: list[Finding] = []
        due: list[DealDue] = []
        row_ids = {row.external_id: row.id for row in chunk.audited}
        for verdict in verdicts:
            findings.extend(verdict.findings)
            deal_id = verdict.facts.deal_id
            due.append(DealDue(deal_id, row_ids[deal_id], next_due(verdict, self.clock),
                               verdict.unmapped_stage))
        return Judged(findings, due)


def write_verdicts(session: Any, tenant_id: int, ids: Sequence[str], judged: Judged,
                   now: datetime, run_id: int | None) -> store.LifecycleResult:
    """Store a chunk's due rows and bring the violations of its deals ``ids`` in line with
    its findings (the lifecycle: opened, refreshed, resolved)."""
    auditstate.store_due(session, tenant_id, judged.due)
    return store.apply_deal_findings(session, tenant_id, ids, judged.findings, now, run_id)


class AuditStage:
    """The audit of one pass, fed chunk by chunk by the pass's one read of the deals
    (``syncd.deal_walk``): ``wanted`` says which deals it judges (None: every live deal),
    ``audit`` judges and writes one chunk in the caller's transaction, ``finish`` writes
    what spans the tenant (orphans, unmapped stages) and returns the outcome.

    ``queue_tasks(session, opened)`` is called with each chunk's newly opened violations
    in that chunk's transaction (None: queue nothing, e.g. on the baseline audit)."""

    def __init__(self, db: store.Database, tenant: Tenant, tenant_id: int,
                 run_id: int | None, now: datetime, *, mapper: TenantMapper,
                 full: bool = False, queue_tasks: Any = None) -> None:
        self.db, self.tenant, self.tenant_id, self.run_id = db, tenant, tenant_id, run_id
        self.now, self.mapper, self.queue_tasks = now, mapper, queue_tasks
        self.wall = datetime.now(UTC)
        self.fingerprint = audit_fingerprint(tenant, mapper.stage_names)
        with db.session() as session:
            previous = auditstate.audit_state(session, tenant_id)
            full = (full or previous is None or previous.fingerprint != self.fingerprint
                    or now < previous.audited_at)
            if full:
                auditstate.forget_audit_state(session, tenant_id)
                auditstate.drop_due(session, tenant_id)
                self.wanted: set[str] | None = None
            else:
                assert previous is not None
                changed = (auditstate.changed_deal_ids(session, tenant_id,
                                                       previous.watermark - SAFETY)
                           | auditstate.due_deal_ids(session, tenant_id, auditstate.DUE_NOW))
                self.wanted = changed | auditstate.due_deal_ids(session, tenant_id, now)
        self.outcome = AuditOutcome(full=full, previous=previous)
        if self.wanted is not None:
            self.outcome.changed_ids = changed
            self.outcome.audited_ids = set(self.wanted)
        self.judge = Judge(tenant.book, tenant.config.language, mapper, now,
                           tenant.custom_rules)

    def audit(self, session: Any, ids: Sequence[str], chunk: DealChunk) -> None:
        """Judge ``chunk``'s audited rows and write the verdicts of the deals ``ids`` (those
        of them not among the rows, deleted or gone, lose their due row and violations)."""
        self.record(session, ids, self.judge(chunk))

    def record(self, session: Any, ids: Sequence[str], judged: Judged) -> None:
        """Write the verdicts of the deals ``ids``: their due rows and violation lifecycle,
        and the tasks the newly opened violations queue."""
        tenant_id = self.tenant_id
        if self.wanted is not None:
            audited = {d.deal_external_id for d in judged.due}
            auditstate.drop_due(session, tenant_id, [i for i in ids if i not in audited])
        result = write_verdicts(session, tenant_id, ids, judged, self.now, self.run_id)
        if self.queue_tasks is not None and result.opened:
            self.queue_tasks(session, result.opened)
        self.add_counts(len(judged.due), len(result.opened), result.resolved, result.changed,
                        {v.deal_external_id for v in result.opened
                         if v.deal_external_id is not None})

    def add_counts(self, audited: int, opened: int, resolved: int, changed: int,
                   opened_deal_ids: set[str]) -> None:
        """Count a chunk's verdicts into the outcome (written here, or by a process
        auditing beside the pass: ``syncd.spare_audit``)."""
        outcome = self.outcome
        outcome.audited += audited
        outcome.opened += opened
        outcome.resolved += resolved
        outcome.changed += changed
        outcome.opened_deal_ids.update(opened_deal_ids)

    def finish(self) -> AuditOutcome:
        """Resolve the violations of deals gone since (full audit), write the unmapped-stage
        findings, and return the outcome (its state saved later by ``save_state``)."""
        tenant_id, outcome, now = self.tenant_id, self.outcome, self.now
        with self.db.session() as session:
            if self.wanted is None:
                live = select(store.DealRow.external_id).where(
                    store.DealRow.tenant_id == tenant_id, store.DealRow.deleted == false())
                outcome.resolved += store.resolve_orphans(session, tenant_id, now, live)
            t = texts(self.tenant.config.language)
            stage_findings = [unmapped_stage(crm_stage, examples, count, t)
                              for crm_stage, count, examples
                              in auditstate.unmapped_stages(session, tenant_id)]
            result = store.apply_stage_findings(session, tenant_id, stage_findings, now,
                                                self.run_id)
            _count(outcome, result)
        outcome.state = AuditState(self.fingerprint, now, self.wall, None)
        return outcome


def mapper_of(session: Session, config: TenantConfig, book: SalesBook,
              tenant_id: int) -> TenantMapper:
    """``make_mapper`` from the tenant's config and Sales Book alone (what a process of its
    own gets: no connector, no secrets)."""
    mapper = TenantMapper(config, book, store.stages_by_id(session, tenant_id))
    mapper.own_task_ids = frozenset(
        row.crm_id for row in store.get_ledger(session, tenant_id, "task").values()
        if row.crm_id)
    return mapper


def save_state(db: store.Database, tenant_id: int, outcome: AuditOutcome,
               karma_due_at: datetime | None) -> None:
    """Record the audit (and karma) as done: the next pass starts from here."""
    assert outcome.state is not None
    state = AuditState(outcome.state.fingerprint, outcome.state.audited_at,
                       outcome.state.watermark, karma_due_at)
    with db.session() as session:
        auditstate.save_audit_state(session, tenant_id, state)


def _count(outcome: AuditOutcome, result: store.LifecycleResult) -> None:
    outcome.opened += len(result.opened)
    outcome.resolved += result.resolved
    outcome.changed += result.changed


def chunk_facts(session: Any, tenant_id: int, mapper: TenantMapper,
                rows: Sequence[Any]) -> Iterator[DealFacts]:
    """Audit facts of one chunk of deal rows (ignored deals left out)."""
    return read_chunk(session, tenant_id, rows).facts(mapper)


def audit_fingerprint(tenant: Tenant, stage_names: Any) -> str:
    """Digest of everything besides the records that decides a tenant's verdicts."""
    payload = {
        "logic": _logic_digest(),
        "book": tenant.book.model_dump(mode="json"),
        "mapping": tenant.config.mapping.model_dump(mode="json"),
        "timezone": tenant.config.timezone,
        "language": tenant.config.language,
        "stages": sorted((k, list(v)) for k, v in stage_names.items()),
        "custom_rules": [_rule_identity(rule) for rule in tenant.custom_rules],
    }
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def _logic_digest() -> str:
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _LOGIC:
        path = root / name
        digest.update(path.read_bytes() if path.exists() else name.encode())
    return digest.hexdigest()


def _rule_identity(rule: Any) -> list[Any]:
    check = rule.check
    code = getattr(check, "__code__", None)
    body = hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest() \
        if code is not None else ""
    module = sys.modules.get(getattr(check, "__module__", "") or "")
    return [rule.code, dict(rule.title), dict(rule.explanation), rule.severity,
            getattr(check, "__module__", ""), getattr(check, "__qualname__", ""),
            getattr(module, "__version__", ""), body]
