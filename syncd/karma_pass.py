"""The pass's karma stage: the client and employee karma ledgers, recomputed whole or
only for the units a pass's changes touch (issue 13, item 1).

Every ledger line belongs to one *unit* of recomputation, whose lines depend on nothing
outside it:

- client karma: a company (its deals' lines and its own incident line);
- employee karma: a company (the win lines of all its deals, since an up-sale depends on
  the order of the company's wins, and its loyal-client line) or a deal (its forward
  moves, its violations, and its win lines when it has no company), as
  ``syncd.scoring.people.PeopleLedger`` groups them.

A pass that changed deals ``D`` (stored, re-audited, or with new violations) and companies
``C`` recomputes the companies ``K`` = ``C`` + the companies of ``D`` now + the companies
``D``'s lines were under before (a deal may have moved), and the deals ``D`` + all deals
of ``K``; each of those units' lines is replaced, nothing else. The result equals a
whole recomputation (``tests/test_incremental_audit.py``).
"""

from __future__ import annotations

import pickle
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import false, select
from sqlalchemy.orm import Session

from syncd import load as kpi_load
from syncd import store
from syncd.audit_pass import SAFETY, AuditOutcome
from syncd.config import Tenant
from syncd.deal_chunk import DealChunk, KarmaRow, read_chunk
from syncd.engine_model import DealRecord
from syncd.mapping import TenantMapper
from syncd.scoring import people
from syncd.scoring.karma import client_karma_lines, line_amount, line_weight
from syncd.store import auditstate
from syncd.store._sql import in_chunk_size, sequence_chunks

CLIENT = "client"
COMPANY_UNIT = "company:"
DEAL_UNIT = "deal:"
#: Above this share of the tenant's deals, a scoped recomputation reads about as much as
#: a whole one: recompute whole.
WHOLE_SHARE = 0.25


@dataclass
class KarmaScope:
    """What changed since the ledgers were last written."""

    deal_ids: set[str] = field(default_factory=set)
    company_ids: set[str] = field(default_factory=set)


class KarmaDue:
    """Watches the deals client karma reads for the earliest "now" at which the karma can
    change without new data: a deal created, won or lost after ``now``, or a closed deal
    leaving the karma window."""

    def __init__(self, now: datetime, window_days: int | None) -> None:
        self.now = now
        self.window = timedelta(days=window_days) if window_days else None
        self.at: datetime | None = None

    def see(self, deal: Any) -> None:
        for moment in (deal.created_at, deal.won_at, deal.lost_at):
            self._candidate(moment)
        closed = deal.won_at if deal.status == "won" else (
            deal.lost_at if deal.status == "lost" else None)
        if self.window is not None and closed is not None:
            self._candidate(closed + self.window)

    def _candidate(self, moment: datetime | None) -> None:
        if moment is not None and moment > self.now and (self.at is None or moment < self.at):
            self.at = moment


class KarmaStage:
    """Both ledgers of one pass, fed chunk by chunk by the pass's one read of the deals
    (``syncd.deal_walk``), after each chunk's audit, in that chunk's transaction.

    Whole (``scope`` None: after a full audit, when a karma window edge has come, or when
    the changed deals are more than ``WHOLE_SHARE`` of the tenant's): the walk must read
    every deal; each chunk's lines are spooled to a temporary file (memory stays flat),
    and ``finish`` replaces both ledgers in one transaction (readers see the old ledgers
    or the new ones). Units: the walk must read ``deal_ids`` (the changed deals and every
    deal of the companies they touch); ``finish`` widens the scope by the deals that got
    a new violation, reading only deals the walk did not, and replaces those units."""

    def __init__(self, db: store.Database, tenant: Tenant, tenant_id: int,
                 mapper: TenantMapper, now: datetime, audit: AuditOutcome) -> None:
        self.db, self.tenant, self.tenant_id, self.mapper, self.now = (
            db, tenant, tenant_id, mapper, now)
        previous = audit.previous
        self.due_at = previous.karma_due_at if previous is not None else None
        self.due = KarmaDue(now, tenant.book.karma.client.window_days)
        self.scope: KarmaScope | None = None
        self.companies: set[str] = set()
        self.deal_ids: set[str] = set()
        whole = audit.full or previous is None or (
            self.due_at is not None and self.due_at <= now)
        with db.session() as session:
            if not whole:
                assert previous is not None
                scope = KarmaScope(set(audit.changed_ids), auditstate.changed_company_ids(
                    session, tenant_id, previous.watermark - SAFETY))
                deals = store.live_deal_count(session, tenant_id)
                whole = len(scope.deal_ids) > WHOLE_SHARE * deals
                if not whole:
                    self.scope = scope
                    self.companies = _touched_companies(session, tenant_id, scope.deal_ids,
                                                        scope.company_ids)
                    self.deal_ids = scope.deal_ids | _company_deals(session, tenant_id,
                                                                    self.companies)
            if whole:
                self._ledger = people.PeopleLedger(tenant.book, mapper.tz).start(
                    kpi_load.company_records(session, tenant_id, mapper).values())
                self._spool = _LineSpool()
        #: Units: every deal the walk read, projected (a deal that gets a new violation
        #: widens the scope after the walk, and must not be read again).
        self._records: dict[str, tuple[int, DealRecord]] = {}
        self._karma_rows: dict[str, KarmaRow] = {}
        self._violations: dict[str, list[people.ViolationRecord]] = defaultdict(list)
        self._walked: set[str] = set()

    @property
    def whole(self) -> bool:
        return self.scope is None

    def add(self, session: Session, ids: Sequence[str], chunk: DealChunk) -> None:
        """The chunk's deals (``ids``: the CRM ids the walk asked for, some maybe gone)."""
        mapper = self.mapper
        if self.scope is None:
            self._add_whole(session, ids, chunk)
            return
        self._walked.update(ids)
        for row_id, record in chunk.records(mapper):
            self._records[record.deal_id] = (row_id, record)
        for karma_row in chunk.karma_rows(mapper):
            self._karma_rows[karma_row.external_id] = karma_row
        self._read_violations(session, [i for i in ids if i in self.deal_ids])

    def _add_whole(self, session: Session, ids: Sequence[str], chunk: DealChunk) -> None:
        """Client lines depend on one deal (or one company), an employee deal unit on one
        deal and its violations: both go out with their chunk. The employee company units
        follow in ``finish``, once every won deal is known."""
        deals = chunk.karma_deals(self.mapper)
        for deal in deals:
            self.due.see(deal)
        lines: list[tuple[str, str, Any]] = [
            (CLIENT, _client_unit(line), line)
            for line in client_karma_lines(deals, (), self.tenant.book.karma.client, self.now)]
        ledger = self._ledger
        for violation in kpi_load.violation_records(session, self.tenant_id, ids):
            ledger.violations[violation.deal_id or ""].append(violation)
        for _row_id, record in chunk.records(self.mapper):
            ledger.add(record)
        for deal_id in ids:
            for person_line in ledger.deal_units.pop(deal_id, ()):
                lines.append((people.KIND, DEAL_UNIT + deal_id, person_line))
            ledger.owners.pop(deal_id, None)
            ledger.violations.pop(deal_id, None)
        self._spool.write(lines)

    def close(self) -> None:
        """Drop the spool (a whole recomputation's), written or not."""
        if self.scope is None:
            self._spool.close()

    def _read_violations(self, session: Session, deal_ids: Sequence[str]) -> None:
        for violation in kpi_load.violation_records(session, self.tenant_id, deal_ids):
            self._violations[violation.deal_id or ""].append(violation)

    def finish(self, opened_deal_ids: set[str],
               ) -> tuple[str, datetime | None, set[str] | None]:
        """Write the ledgers. Returns what was done ("whole", "units", "unchanged"), the
        new karma due time, and the companies whose karma may have changed (None: any)."""
        if self.scope is None:
            return "whole", self._finish_whole(), None
        scope = self.scope
        added = opened_deal_ids - scope.deal_ids
        scope.deal_ids |= added
        if not scope.deal_ids and not scope.company_ids:
            return "unchanged", self.due_at, set()
        # Read and compute in a read-only transaction, then replace the units in one short
        # write transaction: SQLite's write lock is held for the writes only, not for the
        # reads and the ledger computation (only this tenant's pass, holding its lease,
        # writes its records and karma, so nothing changes in between).
        with self.db.session() as session:
            self._widen(session, added)
            due_at, replacements = self._units_to_replace(session)
        with self.db.session(immediate=True) as session:
            for kind, units, lines, weights, unit_of in replacements:
                store.replace_karma_units(session, self.tenant_id, kind, units, lines,
                                          weights, unit_of)
        return "units", due_at, self.companies

    def _finish_whole(self) -> datetime | None:
        """Both ledgers replaced in one transaction: the spooled deal lines, then the
        companies' client lines and the employee company units."""
        tenant, tenant_id, mapper = self.tenant, self.tenant_id, self.mapper
        with self.db.session() as session:
            for kind in (CLIENT, people.KIND):
                store.delete_karma_lines(session, tenant_id, kind)
            store.insert_karma_lines(session, tenant_id,
                                     self._whole_tail(session, mapper),
                                     {CLIENT: karma_weights_fn(tenant),
                                      people.KIND: employee_weights_fn(tenant)})
        return self.due.at

    def _whole_tail(self, session: Session, mapper: TenantMapper,
                    ) -> Iterator[tuple[str, str, Any]]:
        yield from self._spool.read()
        companies = [mapper.karma_company(c) for c in store.companies(session, self.tenant_id)]
        for line in client_karma_lines((), companies, self.tenant.book.karma.client, self.now):
            yield CLIENT, _client_unit(line), line
        ledger = self._ledger.finish()
        for company_id, lines in ledger.company_units.items():
            for person_line in lines:
                yield people.KIND, COMPANY_UNIT + company_id, person_line

    def _widen(self, session: Session, added: set[str]) -> None:
        """Add deals that got a new violation, with every deal of the companies they touch,
        to the scope; read those of them the walk did not read."""
        if not added:
            return
        companies = _touched_companies(session, self.tenant_id, added, ()) - self.companies
        self.companies |= companies
        more = (added | _company_deals(session, self.tenant_id, companies)) - self.deal_ids
        self.deal_ids |= more
        unread = sorted(more - self._walked)
        if unread:
            rows = auditstate.live_deal_rows(session, self.tenant_id, unread)
            self.add(session, unread, read_chunk(session, self.tenant_id, rows, ()))
        self._read_violations(session, sorted(more & self._walked - set(unread)))

    def _units_to_replace(self, session: Session) -> tuple[datetime | None, list[_Replacement]]:
        """The karma due time, and the new lines of the units in scope (both ledgers)."""
        tenant, tenant_id, mapper, now = self.tenant, self.tenant_id, self.mapper, self.now
        companies, deal_ids = self.companies, sorted(self.deal_ids)
        held = sorted((self._records[i] for i in deal_ids if i in self._records),
                      key=lambda pair: pair[0])
        due = self.due
        karma_deals = [mapper.karma_deal(self._karma_rows[r.deal_id]) for _, r in held
                       if r.deal_id in self._karma_rows]
        for deal in karma_deals:
            due.see(deal)
        client = list(client_karma_lines(
            karma_deals, [mapper.karma_company(c) for c in store.companies(session, tenant_id,
                                                                             companies)],
            tenant.book.karma.client, now))
        violations = [v for _, r in held for v in self._violations.get(r.deal_id, ())]
        ledger = people.PeopleLedger(tenant.book, mapper.tz).load(
            [r for _, r in held],
            kpi_load.company_records(session, tenant_id, mapper, companies).values(),
            violations)
        units = _unit_lines(ledger)
        replacements: list[_Replacement] = [
            (CLIENT, sorted(companies), client, karma_weights_fn(tenant), _client_unit),
            (people.KIND,
             [COMPANY_UNIT + c for c in companies] + [DEAL_UNIT + d for d in deal_ids],
             list(units), employee_weights_fn(tenant), units.__getitem__)]
        # The deals read here are only some: the earlier due time still holds for the
        # others (it is after ``now``, or the recomputation would have been whole).
        if self.due_at is not None and (due.at is None or self.due_at < due.at):
            return self.due_at, replacements
        return due.at, replacements


#: One ``replace_karma_units`` call: kind, units, their new lines, weights, unit of a line.
_Replacement = tuple[str, list[str], list[Any], Callable[[Any], tuple[float, float]],
                     Callable[[Any], str]]


class _Line(NamedTuple):
    """A karma line as spooled (client and employee lines have the same attributes)."""

    subject_type: str
    subject_id: str
    criterion: str
    quantity: float
    source_type: str
    source_id: str
    period: str


#: Employee lines already are tuples of ``_Line``'s fields, in its order.
_PEOPLE_LINE_IS_LINE = people.PeopleLine._fields == _Line._fields


def _fields(line: Any) -> tuple[Any, ...]:
    if _PEOPLE_LINE_IS_LINE and type(line) is people.PeopleLine:
        return tuple(line)
    return (line.subject_type, line.subject_id, line.criterion, line.quantity,
            line.source_type, line.source_id, line.period)


class _LineSpool:
    """``(kind, unit, line)`` triples written chunk by chunk to a temporary file and read
    back once, in order: a whole ledger never held in memory."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()

    def write(self, lines: Sequence[tuple[str, str, Any]]) -> None:
        pickle.dump([(kind, unit, _fields(x)) for kind, unit, x in lines], self._file,
                    pickle.HIGHEST_PROTOCOL)

    def read(self) -> Iterator[tuple[str, str, _Line]]:
        self._file.seek(0)
        while True:
            try:
                batch = pickle.load(self._file)  # noqa: S301 - this process's own file
            except EOFError:
                return
            for kind, unit, fields in batch:
                yield kind, unit, _Line._make(fields)

    def close(self) -> None:
        self._file.close()


def _unit_lines(ledger: people.PeopleLedger) -> dict[Any, str]:
    """Each employee karma line of ``ledger`` with its unit."""
    units: dict[Any, str] = {}
    for company_id, lines in ledger.company_units.items():
        for line in lines:
            units[line] = COMPANY_UNIT + company_id
    for deal_id, lines in ledger.deal_units.items():
        for line in lines:
            units[line] = DEAL_UNIT + deal_id
    return units


def _client_unit(line: Any) -> str:
    return str(line.subject_id)


def _touched_companies(session: Session, tenant_id: int, deal_ids: set[str],
                       company_ids: Iterable[str]) -> set[str]:
    """``company_ids``, the companies of ``deal_ids`` now, and the companies their karma
    lines were under before (a deal may have moved)."""
    companies = set(company_ids)
    companies |= {c for c in _deal_companies(session, tenant_id, deal_ids).values() if c}
    companies |= store.karma_units_of_sources(session, tenant_id, CLIENT, "deal", deal_ids)
    companies |= {u.removeprefix(COMPANY_UNIT) for u in store.karma_units_of_sources(
        session, tenant_id, people.KIND, "deal", deal_ids) if u.startswith(COMPANY_UNIT)}
    return companies


def _deal_companies(session: Any, tenant_id: int, deal_ids: Iterable[str],
                    ) -> dict[str, str | None]:
    table = store.DealRow.__table__
    found: dict[str, str | None] = {}
    for chunk in sequence_chunks(sorted(deal_ids), in_chunk_size(session)):
        found.update(session.execute(select(table.c.external_id, table.c.company_external_id)
                                     .where(table.c.tenant_id == tenant_id,
                                            table.c.external_id.in_(chunk))).all())
    return found


def _company_deals(session: Any, tenant_id: int, company_ids: Iterable[str]) -> set[str]:
    table = store.DealRow.__table__
    found: set[str] = set()
    for chunk in sequence_chunks(sorted(company_ids), in_chunk_size(session)):
        found.update(session.scalars(select(table.c.external_id).where(
            table.c.tenant_id == tenant_id, table.c.company_external_id.in_(chunk),
            table.c.deleted == false())))
    return found


# -- whole-tenant readers (also used by reports and what-if passes) --------------------------
def client_lines(session: Any, tenant: Tenant, tenant_id: int, mapper: TenantMapper,
                 now: datetime, observe: Callable[[Any], None] | None = None) -> list[Any]:
    """Every client-karma line as of ``now`` (deals won or lost later do not count yet);
    ``observe`` sees each karma deal on its way in."""
    deals = iter_karma_deals(session, tenant_id, mapper)
    if observe is not None:
        deals = _observed(deals, observe)
    return client_karma_lines(deals, [mapper.karma_company(c) for c in
                                      store.companies(session, tenant_id)],
                              tenant.book.karma.client, now)


def _observed(items: Iterator[Any], observe: Callable[[Any], None]) -> Iterator[Any]:
    for item in items:
        observe(item)
        yield item


def iter_karma_deals(session: Any, tenant_id: int, mapper: TenantMapper) -> Iterator[Any]:
    for chunk in store.iter_deal_chunks(session, tenant_id):
        for deal in chunk:
            if not mapper.ignored(deal):
                yield mapper.karma_deal(deal)


def karma_weights_fn(tenant: Tenant) -> Callable[[Any], tuple[float, float]]:
    weights = tenant.book.karma.client
    return lambda line: (line_weight(line, weights), line_amount(line, weights))


def employee_weights_fn(tenant: Tenant) -> Callable[[Any], tuple[float, float]]:
    weights = tenant.book.karma.employee
    return lambda line: (people.employee_weight(line.criterion, weights),
                         people.employee_amount(line, weights))
