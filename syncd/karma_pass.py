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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.orm import Session

from syncd import load as kpi_load
from syncd import store
from syncd.config import Tenant
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


def score_store(db: store.Database, tenant: Tenant, tenant_id: int, mapper: TenantMapper,
                now: datetime, scope: KarmaScope | None,
                karma_due_at: datetime | None,
                ) -> tuple[str, datetime | None, set[str] | None]:
    """Bring both ledgers up to date; ``scope`` None: recompute whole. Returns what was
    done ("whole", "units", "unchanged"), the new karma due time, and the companies whose
    karma may have changed (None: any)."""
    if scope is not None and not scope.deal_ids and not scope.company_ids:
        return "unchanged", karma_due_at, set()
    with db.session() as session:
        if scope is not None and len(scope.deal_ids) > WHOLE_SHARE * _deal_count(
                session, tenant_id):
            scope = None
        if scope is None:
            return "whole", _score_whole(session, tenant, tenant_id, mapper, now), None
        due_at, companies = _score_units(session, tenant, tenant_id, mapper, now, scope,
                                         karma_due_at)
        return "units", due_at, companies


def _score_whole(session: Session, tenant: Tenant, tenant_id: int, mapper: TenantMapper,
                 now: datetime) -> datetime | None:
    """Both ledgers recomputed whole from one read of the deals, streamed chunk by chunk
    into the store (one transaction: readers see the old ledgers or the new ones);
    returns the karma due time."""
    due = KarmaDue(now, tenant.book.karma.client.window_days)
    for kind in (CLIENT, people.KIND):
        store.delete_karma_lines(session, tenant_id, kind)
    store.insert_karma_lines(session, tenant_id,
                             _whole_lines(session, tenant, tenant_id, mapper, now, due),
                             {CLIENT: karma_weights_fn(tenant),
                              people.KIND: employee_weights_fn(tenant)})
    return due.at


def _whole_lines(session: Session, tenant: Tenant, tenant_id: int, mapper: TenantMapper,
                 now: datetime, due: KarmaDue) -> Iterator[tuple[str, str, Any]]:
    """Every karma line as ``(kind, unit, line)``, each chunk of deals read once for both
    ledgers. Client lines depend on one deal (or one company), an employee deal unit on
    one deal and its violations: both go out with their chunk. The employee company
    units follow once every won deal is known. Equal to ``client_karma_lines`` and
    ``PeopleLedger.load`` over all deals, holding only the won deals and the companies."""
    weights = tenant.book.karma.client
    ledger = people.PeopleLedger(tenant.book, mapper.tz).start(
        kpi_load.company_records(session, tenant_id, mapper).values())
    for chunk in store.iter_deal_chunks(session, tenant_id):
        deals = [mapper.karma_deal(row) for row in chunk if not mapper.ignored(row)]
        for deal in deals:
            due.see(deal)
        for line in client_karma_lines(deals, (), weights, now):
            yield CLIENT, _client_unit(line), line
        ids = [row.external_id for row in chunk]
        changes = store.stage_changes_for_deals(session, tenant_id, ids)
        for violation in kpi_load.violation_records(session, tenant_id, ids):
            ledger.violations[violation.deal_id or ""].append(violation)
        for row in chunk:
            ledger.add(kpi_load.deal_record(row, changes.get(row.external_id, ()), mapper))
        for deal_id in ids:
            for person_line in ledger.deal_units.pop(deal_id, ()):
                yield people.KIND, DEAL_UNIT + deal_id, person_line
            ledger.owners.pop(deal_id, None)
            ledger.violations.pop(deal_id, None)
    companies = [mapper.karma_company(c) for c in store.companies(session, tenant_id)]
    for line in client_karma_lines((), companies, weights, now):
        yield CLIENT, _client_unit(line), line
    ledger.finish()
    for company_id, lines in ledger.company_units.items():
        for person_line in lines:
            yield people.KIND, COMPANY_UNIT + company_id, person_line


def _score_units(session: Any, tenant: Tenant, tenant_id: int, mapper: TenantMapper,
                 now: datetime, scope: KarmaScope, karma_due_at: datetime | None,
                 ) -> tuple[datetime | None, set[str]]:
    changed = scope.deal_ids
    companies = set(scope.company_ids)
    companies |= {c for c in _deal_companies(session, tenant_id, changed).values() if c}
    companies |= store.karma_units_of_sources(session, tenant_id, CLIENT, "deal", changed)
    companies |= {u.removeprefix(COMPANY_UNIT) for u in store.karma_units_of_sources(
        session, tenant_id, people.KIND, "deal", changed) if u.startswith(COMPANY_UNIT)}
    deal_ids = sorted(changed | _company_deals(session, tenant_id, companies))
    rows = auditstate.live_deal_rows(session, tenant_id, deal_ids)

    due = KarmaDue(now, tenant.book.karma.client.window_days)
    karma_deals = [mapper.karma_deal(row) for row in rows if not mapper.ignored(row)]
    for deal in karma_deals:
        due.see(deal)
    client = client_karma_lines(
        karma_deals, [mapper.karma_company(c) for c in store.companies(session, tenant_id,
                                                                         companies)],
        tenant.book.karma.client, now)
    store.replace_karma_units(session, tenant_id, CLIENT, companies, client,
                              karma_weights_fn(tenant), _client_unit)

    live_ids = [row.external_id for row in rows]
    changes = store.stage_changes_for_deals(session, tenant_id, live_ids)
    records = [kpi_load.deal_record(row, changes.get(row.external_id, ()), mapper)
               for row in rows]
    ledger = people.PeopleLedger(tenant.book, mapper.tz).load(
        records, kpi_load.company_records(session, tenant_id, mapper, companies).values(),
        kpi_load.violation_records(session, tenant_id, live_ids))
    units = _unit_lines(ledger)
    store.replace_karma_units(
        session, tenant_id, people.KIND,
        [COMPANY_UNIT + c for c in companies] + [DEAL_UNIT + d for d in deal_ids],
        units, employee_weights_fn(tenant), units.__getitem__)
    # The deals read here are only some: the earlier due time still holds for the others
    # (it is after ``now``, or the recomputation would have been whole).
    if karma_due_at is not None and (due.at is None or karma_due_at < due.at):
        return karma_due_at, companies
    return due.at, companies


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


def _deal_count(session: Any, tenant_id: int) -> int:
    return int(session.scalar(select(func.count()).select_from(store.DealRow).where(
        store.DealRow.tenant_id == tenant_id, store.DealRow.deleted == false())) or 0)


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
