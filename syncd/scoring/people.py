"""Employee and manager karma as a ledger, recomputable per changed record.

Employee karma (per user, per month in the tenant's timezone) is the sum of lines, one per
(criterion, source record), each with a *quantity*; the Sales Book's weights are applied
when totals are read (``employee_amount``), so changing a weight and re-running gives new
totals from the same lines. Criteria (weights in ``karma.employee``):

- ``won_deal`` (1 per won deal, to its owner, in the month it was won; source: the deal)
- ``won_value`` (the deal's value; source: the deal)
- ``upsale`` (1 per won deal whose company already had an earlier won deal; source: deal)
- ``loyal_client`` (1 per company with NPS >= 9 or two or more won deals, to the company's
  owner (else the owner of the deal that made it loyal), in the month it became loyal: its
  second win, or its first win when NPS alone qualifies; source: the company)
- ``forward_move`` (1 per stage change to a later active stage, to the deal's owner, in
  the month of the change; source: the stage change)
- ``violation`` (a penalty per violation opened in the month on the user's deals; source:
  the violation)

Manager karma is not stored: it is the arithmetic mean of the team members' employee karma
of the month (a member without lines that month counts as 0); a manager without a team has
no manager karma. The bonus is ``karma x bonus_rate`` per user and month.

``PeopleLedger`` keeps the lines grouped by the unit that produced them (a company with its
deals, a company-less deal, a deal's moves, a deal's violations), so after N changed deals
only those units are recomputed: the change is proportional to N, not to the tenant.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from syncd.kpi.model import Clock, CompanyRecord, DealRecord, move_direction
from syncd.salesbook import EmployeeKarmaWeights, SalesBook
from syncd.scoring.karma import KarmaLine

USER = "user"
KIND = "employee"
LOYAL_NPS = 9.0

#: Employee criterion -> (weight attribute of EmployeeKarmaWeights, sign).
EMPLOYEE_CRITERIA: dict[str, tuple[str, int]] = {
    "won_deal": ("won_deal", +1),
    "won_value": ("won_value", +1),
    "upsale": ("upsale", +1),
    "loyal_client": ("loyal_client", +1),
    "forward_move": ("forward_move", +1),
    "violation": ("violation_penalty", -1),
}


@dataclass(frozen=True, slots=True)
class ViolationRecord:
    violation_id: str
    deal_id: str | None
    rule: str
    opened_at: datetime


@dataclass(frozen=True, slots=True)
class ManagerKarma:
    manager_id: str
    period: str
    members: tuple[str, ...]
    member_karma: tuple[tuple[str, float], ...]
    karma: float


def employee_weight(criterion: str, weights: EmployeeKarmaWeights) -> float:
    """The signed weight of an employee criterion (penalties are negative)."""
    try:
        attribute, sign = EMPLOYEE_CRITERIA[criterion]
    except KeyError:
        raise ValueError(f"unknown employee karma criterion {criterion!r}") from None
    return sign * float(getattr(weights, attribute))


def employee_amount(line: Any, weights: EmployeeKarmaWeights) -> float:
    return employee_weight(line.criterion, weights) * float(line.quantity)


def employee_totals(lines: Iterable[Any], weights: EmployeeKarmaWeights,
                    ) -> dict[tuple[str, str], float]:
    """``(user id, "YYYY-MM") -> karma`` (the sum of the lines' amounts)."""
    sums: dict[tuple[str, str], list[float]] = defaultdict(list)
    for line in lines:
        if line.subject_type == USER:
            sums[(line.subject_id, line.period)].append(employee_amount(line, weights))
    return {key: math.fsum(values) for key, values in sums.items()}


def bonus(karma: float, rate: float) -> float:
    """The money a month's karma is worth (never negative: a penalty is not a fine)."""
    return round(max(karma, 0.0) * rate, 2)


# -- the ledger ------------------------------------------------------------------------------
Unit = tuple[str, str]


class PeopleLedger:
    """Employee karma lines of one tenant, grouped by the unit of records that produced them."""

    def __init__(self, book: SalesBook, tz: ZoneInfo) -> None:
        self.order = {stage.key: index for index, stage in enumerate(book.stages)}
        self.clock = Clock(tz)
        self.deals: dict[str, DealRecord] = {}
        self.companies: dict[str, CompanyRecord] = {}
        self.company_deals: dict[str, set[str]] = defaultdict(set)
        self.violations: dict[str, list[ViolationRecord]] = defaultdict(list)
        self.units: dict[Unit, list[KarmaLine]] = {}

    # -- building ----------------------------------------------------------------------------
    def load(self, deals: Iterable[DealRecord], companies: Iterable[CompanyRecord],
             violations: Iterable[ViolationRecord] = ()) -> PeopleLedger:
        """Compute every line from scratch."""
        for company in companies:
            self.companies[company.company_id] = company
        for deal in deals:
            self._index(deal)
        for violation in violations:
            if violation.deal_id is not None:
                self.violations[violation.deal_id].append(violation)
        touched: set[Unit] = set()
        for deal_id, deal in self.deals.items():
            touched.update(self._units_of(deal, deal_id))
        touched.update(("company", cid) for cid in self.companies)
        for unit in touched:
            self._recompute(unit)
        return self

    def update(self, changed: Sequence[DealRecord], *, removed: Iterable[str] = (),
               violations: Mapping[str, Sequence[ViolationRecord]] | None = None,
               ) -> tuple[list[KarmaLine], list[KarmaLine]]:
        """Apply changed (or removed) deals and return ``(old lines, new lines)`` of the
        units they touch: what a store deletes and inserts, nothing else."""
        touched: set[Unit] = set()
        for deal_id in removed:
            old = self.deals.pop(deal_id, None)
            if old is not None:
                touched.update(self._units_of(old, deal_id))
                if old.company_id:
                    self.company_deals[old.company_id].discard(deal_id)
        for deal in changed:
            old = self.deals.get(deal.deal_id)
            if old is not None:
                touched.update(self._units_of(old, old.deal_id))
                if old.company_id and old.company_id != deal.company_id:
                    self.company_deals[old.company_id].discard(old.deal_id)
            self._index(deal)
            touched.update(self._units_of(deal, deal.deal_id))
        for deal_id, found in (violations or {}).items():
            self.violations[deal_id] = list(found)
            touched.add(("violations", deal_id))
        old_lines = [line for unit in touched for line in self.units.get(unit, ())]
        new_lines: list[KarmaLine] = []
        for unit in touched:
            new_lines.extend(self._recompute(unit))
        return old_lines, new_lines

    def lines(self) -> Iterator[KarmaLine]:
        for unit_lines in self.units.values():
            yield from unit_lines

    def _index(self, deal: DealRecord) -> None:
        self.deals[deal.deal_id] = deal
        if deal.company_id:
            self.company_deals[deal.company_id].add(deal.deal_id)

    @staticmethod
    def _units_of(deal: DealRecord, deal_id: str) -> list[Unit]:
        first: Unit = ("company", deal.company_id) if deal.company_id else ("deal", deal_id)
        return [first, ("moves", deal_id), ("violations", deal_id)]

    def _recompute(self, unit: Unit) -> list[KarmaLine]:
        kind, key = unit
        if kind == "company":
            lines = list(self._company_lines(key))
        elif kind == "deal":
            deal = self.deals.get(key)
            lines = list(self._won_lines(deal, upsale=False)) if deal else []
        elif kind == "moves":
            lines = list(self._move_lines(self.deals.get(key)))
        else:
            lines = list(self._violation_lines(key))
        if lines:
            self.units[unit] = lines
        else:
            self.units.pop(unit, None)
        return lines

    # -- criteria ------------------------------------------------------------------------------
    def _won_lines(self, deal: DealRecord, *, upsale: bool) -> Iterator[KarmaLine]:
        if deal.status != "won" or deal.won_at is None or not deal.owner_id:
            return
        period = self.clock.month(deal.won_at)
        owner = deal.owner_id
        yield KarmaLine(USER, owner, "won_deal", 1.0, "deal", deal.deal_id, period)
        if deal.value:
            yield KarmaLine(USER, owner, "won_value", float(deal.value), "deal", deal.deal_id,
                            period)
        if upsale:
            yield KarmaLine(USER, owner, "upsale", 1.0, "deal", deal.deal_id, period)

    def _company_lines(self, company_id: str) -> Iterator[KarmaLine]:
        won = sorted((d for d in (self.deals.get(i) for i in self.company_deals.get(
            company_id, ())) if d is not None and d.status == "won" and d.won_at is not None),
            key=lambda d: (d.won_at, d.deal_id))
        for position, deal in enumerate(won):
            yield from self._won_lines(deal, upsale=position > 0)
        company = self.companies.get(company_id)
        promoter = company is not None and company.nps is not None and company.nps >= LOYAL_NPS
        if len(won) >= 2 or (promoter and won):
            qualifying = won[1] if len(won) >= 2 else won[0]
            owner = (company.owner_id if company and company.owner_id
                     else qualifying.owner_id)
            if owner and qualifying.won_at is not None:
                yield KarmaLine(USER, owner, "loyal_client", 1.0, "company", company_id,
                                self.clock.month(qualifying.won_at))

    def _move_lines(self, deal: DealRecord | None) -> Iterator[KarmaLine]:
        if deal is None or not deal.owner_id or deal.history_derived:
            return
        for index, transition in enumerate(deal.history):
            if move_direction(transition, self.order) > 0:
                source = transition.source_id or f"{deal.deal_id}#{index}"
                yield KarmaLine(USER, deal.owner_id, "forward_move", 1.0, "stage_change",
                                source, self.clock.month(transition.at))

    def _violation_lines(self, deal_id: str) -> Iterator[KarmaLine]:
        deal = self.deals.get(deal_id)
        if deal is None or not deal.owner_id:
            return
        for violation in self.violations.get(deal_id, ()):
            yield KarmaLine(USER, deal.owner_id, "violation", 1.0, "violation",
                            violation.violation_id, self.clock.month(violation.opened_at))


def employee_lines(deals: Iterable[DealRecord], companies: Iterable[CompanyRecord],
                   violations: Iterable[ViolationRecord], book: SalesBook,
                   tz: ZoneInfo) -> list[KarmaLine]:
    """Every employee karma line, each pointing at the record that caused it."""
    return list(PeopleLedger(book, tz).load(deals, companies, violations).lines())


# -- teams and managers -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Person:
    user_id: str
    name: str
    email: str | None = None
    manager_id: str | None = None


def resolve_teams(configured: Sequence[Any], users: Sequence[Person],
                  ) -> tuple[dict[str, list[str]], list[str]]:
    """``manager id -> member ids`` from the tenant's ``mapping.teams`` (names, e-mails or
    ids), else from the CRM's ``manager_id``; and the problems (names nobody matches)."""
    lookup: dict[str, str] = {}
    for user in users:
        lookup[user.user_id.casefold()] = user.user_id
        lookup.setdefault(user.name.strip().casefold(), user.user_id)
        if user.email:
            lookup.setdefault(user.email.strip().casefold(), user.user_id)
    problems: list[str] = []

    def find(text: str) -> str | None:
        found = lookup.get(str(text).strip().casefold())
        if found is None:
            problems.append(f"mapping.teams: no CRM user matches {text!r}")
        return found

    teams: dict[str, list[str]] = {}
    if configured:
        for team in configured:
            manager = find(team.manager)
            members = [m for m in (find(x) for x in team.members) if m and m != manager]
            if manager and members:
                teams.setdefault(manager, [])
                teams[manager] += [m for m in members if m not in teams[manager]]
        return teams, problems
    for user in users:
        if user.manager_id and user.manager_id != user.user_id:
            teams.setdefault(user.manager_id, []).append(user.user_id)
    return {manager: sorted(members) for manager, members in teams.items()}, problems


def manager_karma(totals: Mapping[tuple[str, str], float],
                  teams: Mapping[str, Sequence[str]]) -> list[ManagerKarma]:
    """Per manager and month with any member karma: the mean over the whole team."""
    periods_by_user: dict[str, set[str]] = defaultdict(set)
    for user, period in totals:
        periods_by_user[user].add(period)
    result = []
    for manager, members in sorted(teams.items()):
        if not members:
            continue
        periods = set().union(*(periods_by_user.get(m, set()) for m in members))
        for period in sorted(periods):
            values = tuple((m, totals.get((m, period), 0.0)) for m in members)
            mean = math.fsum(v for _, v in values) / len(values)
            result.append(ManagerKarma(manager, period, tuple(members), values, mean))
    return result
