"""A live pass's one read of the tenant's deals, feeding the audit and both karma ledgers
(issue 16, item 5).

The audit (``syncd.audit_pass.AuditStage``) says which deals it judges, the karma
(``syncd.karma_pass.KarmaStage``) which deals its ledgers need; the walk reads their
union once, ``CHUNK`` deals per transaction (``syncd.deal_chunk``: the row, its stage
changes, and for an audited deal its activities), and hands each chunk to the audit (which
writes its verdicts) and then to the karma (which reads the chunk's violations in the same
transaction). Either stage projects the chunk into its own shape in memory; nothing is
read twice:

- every live deal, in row-id pages, when the audit is full or the karma whole (the deals
  the audit wanted but did not find, deleted or gone, are judged last, as nothing);
- otherwise the audited deals (changed or due) and the karma's deals (changed, and every
  deal of the companies they touch), by CRM id.

A what-if pass (``audit_and_score_as_of``) reads every deal once for its audit and its
client karma, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from syncd import store
from syncd.audit.engine import audit_deals
from syncd.audit.facts import DealFacts, Finding
from syncd.audit_pass import CHUNK, AuditOutcome, AuditStage, save_state
from syncd.config import Tenant
from syncd.deal_chunk import DealChunk, read_chunk
from syncd.karma_pass import KarmaStage
from syncd.mapping import TenantMapper
from syncd.scoring.karma import client_karma_lines
from syncd.spare_audit import SpareAudit
from syncd.store import auditstate


def audit_and_score(db: store.Database, tenant: Tenant, tenant_id: int, run_id: int | None,
                    now: datetime, *, mapper: TenantMapper, full: bool = False,
                    queue_tasks: Any = None, on_verdicts: Callable[[], None] = lambda: None,
                    spare_core: bool = False,
                    ) -> tuple[AuditOutcome, KarmaStage, str, set[str] | None]:
    """Audit and score the tenant's stored deals as of ``now``, then save the audit state.
    ``on_verdicts`` is called once every verdict is written, before the karma finishes;
    ``spare_core``: a baseline audit (full, no task to queue) may have chunks audited by a
    process of its own (``syncd.spare_audit``).

    Returns the audit's outcome, the karma stage, what the karma did ("whole", "units",
    "unchanged") and the companies whose karma may have changed (None: any)."""
    audit = AuditStage(db, tenant, tenant_id, run_id, now, mapper=mapper, full=full,
                       queue_tasks=queue_tasks)
    spare = (SpareAudit.start_if_useful(db, tenant, tenant_id, now, run_id, CHUNK)
             if spare_core and audit.wanted is None and queue_tasks is None else None)
    karma = KarmaStage(db, tenant, tenant_id, mapper, now, audit.outcome)
    try:
        _walk(db, tenant_id, audit, karma, spare)
        outcome = audit.finish()
        on_verdicts()
        done, karma_due_at, companies = karma.finish(outcome.opened_deal_ids)
    finally:
        karma.close()
        if spare is not None:
            spare.close()
    save_state(db, tenant_id, outcome, karma_due_at)
    return outcome, karma, done, companies


def audit_and_score_as_of(session: Session, tenant: Tenant, tenant_id: int, now: datetime,
                          mapper: TenantMapper) -> tuple[list[Finding], set[str]]:
    """A what-if pass's audit and client karma as of ``now``, nothing persisted, from one
    read of the deals: the findings, and the companies with a client-karma line."""
    weights = tenant.book.karma.client
    subjects: set[str] = set()

    def facts() -> Iterator[DealFacts]:
        for rows in store.iter_deal_chunks(session, tenant_id):
            chunk = read_chunk(session, tenant_id, rows)
            subjects.update(line.subject_id for line in client_karma_lines(
                chunk.karma_deals(mapper), (), weights, now))
            yield from chunk.facts(mapper)

    findings = list(audit_deals(facts(), tenant.book, now, mapper.tz,
                                language=tenant.config.language,
                                custom_rules=tenant.custom_rules))
    companies = [mapper.karma_company(c) for c in store.companies(session, tenant_id)]
    subjects.update(line.subject_id for line in client_karma_lines((), companies, weights, now))
    return findings, subjects


def _walk(db: store.Database, tenant_id: int, audit: AuditStage, karma: KarmaStage,
          spare: SpareAudit | None = None) -> None:
    """Read the deals both stages need, once, and hand each chunk to both (a chunk
    ``spare`` audited is read without its activities, and only scored here)."""
    wanted = audit.wanted
    if wanted is not None and not karma.whole:
        walk = sorted(wanted | karma.deal_ids)
        for start in range(0, len(walk), CHUNK):
            ids = walk[start:start + CHUNK]
            with db.session() as session:
                rows = auditstate.live_deal_rows(session, tenant_id, ids)
                _feed(session, tenant_id, audit, karma, ids, rows)
        return
    seen: set[str] = set()
    for index, page in enumerate(_pages(db, tenant_id)):
        ids = [row.external_id for row in page]
        seen.update(ids)
        audited = spare.take(index, ids) if spare is not None else None
        with db.session() as session:
            if audited is None:
                _feed(session, tenant_id, audit, karma, ids, page)
            else:
                audit.add_counts(audited.audited, audited.opened, audited.resolved,
                                 audited.changed, audited.opened_deal_ids)
                karma.add(session, ids, read_chunk(session, tenant_id, page, ()))
    gone = [] if wanted is None else sorted(wanted - seen)
    for start in range(0, len(gone), CHUNK):
        with db.session() as session:
            audit.audit(session, gone[start:start + CHUNK], DealChunk(()))


def _feed(session: Any, tenant_id: int, audit: AuditStage, karma: KarmaStage,
          ids: Sequence[str], rows: Sequence[Any]) -> None:
    """One chunk, in one transaction: read, audited (verdicts written), then scored."""
    wanted = audit.wanted
    chunk = read_chunk(session, tenant_id, rows, wanted)
    judged = ids if wanted is None else [i for i in ids if i in wanted]
    if judged:
        audit.audit(session, judged, chunk)
    karma.add(session, ids, chunk)


def _pages(db: store.Database, tenant_id: int) -> Iterator[Sequence[Any]]:
    """Every live deal row, CHUNK at a time in row-id order (a keyset page per
    transaction: none is held across pages)."""
    last_id = 0
    while True:
        with db.session() as session:
            page = auditstate.deal_page(session, tenant_id, last_id, CHUNK)
        if not page:
            return
        last_id = page[-1].id
        yield page
