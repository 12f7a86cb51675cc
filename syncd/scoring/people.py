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
  the violation; its quantity is the rule's weight, ``karma.employee.rule_weights``,
  default 1)

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
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from syncd.engine_model import Clock, CompanyRecord, DealRecord
from syncd.salesbook import EmployeeKarmaWeights, SalesBook

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
    signed = {criterion: employee_weight(criterion, weights) for criterion in EMPLOYEE_CRITERIA}
    sums: dict[tuple[str, str], float] = defaultdict(float)
    for line in lines:
        if line.subject_type == USER:
            try:
                weight = signed[line.criterion]
            except KeyError:
                weight = employee_weight(line.criterion, weights)  # raises, naming it
            sums[(line.subject_id, line.period)] += weight * line.quantity
    return dict(sums)


def apply_diff(totals: dict[tuple[str, str], float], old: Iterable[Any], new: Iterable[Any],
               weights: EmployeeKarmaWeights) -> set[tuple[str, str]]:
    """Update ``employee_totals`` in place with a ledger diff (``PeopleLedger.update``);
    returns the (user, month) keys that changed, for an incremental write-back."""
    touched: set[tuple[str, str]] = set()
    for sign, lines in ((-1.0, old), (1.0, new)):
        for line in lines:
            key = (line.subject_id, line.period)
            totals[key] = totals.get(key, 0.0) + sign * employee_amount(line, weights)
            touched.add(key)
    return touched


def bonus(karma: float, rate: float) -> float:
    """The money a month's karma is worth (never negative: a penalty is not a fine)."""
    return round(max(karma, 0.0) * rate, 2)


# -- the ledger ------------------------------------------------------------------------------
class PeopleLine(NamedTuple):
    """One employee karma line (the attributes ``store.replace_karma_lines`` reads)."""

    subject_type: str
    subject_id: str
    criterion: str
    quantity: float
    source_type: str
    source_id: str
    period: str


class _Deal(NamedTuple):
    """What the ledger keeps of a deal to recompute its company later (no history)."""

    deal_id: str
    owner_id: str | None
    company_id: str | None
    status: str
    value: float
    won_at: datetime | None


class PeopleLedger:
    """Employee karma lines of one tenant, grouped by the unit that produced them.

    Two kinds of unit: a *company* (the win lines of all its deals, since up-sales depend
    on the order of wins, and its loyal-client line) and a *deal* (its forward moves, its
    violations, and its win lines when it has no company). A changed deal touches its deal
    unit and its old and new company units, nothing else."""

    def __init__(self, book: SalesBook, tz: ZoneInfo) -> None:
        self.order = {stage.key: index for index, stage in enumerate(book.stages)}
        self.clock = Clock(tz)
        self.rule_weights = book.karma.employee.rule_weights
        self.deals: dict[str, _Deal] = {}  # won deals only: the others earn no company line
        self.owners: dict[str, str | None] = {}  # owners of deals with violations
        self.companies: dict[str, CompanyRecord] = {}
        self.company_deals: dict[str, set[str]] = defaultdict(set)
        #: violations not yet turned into lines (a deal's are consumed when it is added)
        self.violations: dict[str, list[ViolationRecord]] = defaultdict(list)
        self.company_units: dict[str, list[PeopleLine]] = {}
        self.deal_units: dict[str, list[PeopleLine]] = {}

    # -- building ----------------------------------------------------------------------------
    def load(self, deals: Iterable[DealRecord], companies: Iterable[CompanyRecord],
             violations: Iterable[ViolationRecord] = ()) -> PeopleLedger:
        """Compute every line from scratch (``start``, ``add`` each deal, ``finish``)."""
        self.start(companies, violations)
        for deal in deals:
            self.add(deal)
        return self.finish()

    def start(self, companies: Iterable[CompanyRecord],
              violations: Iterable[ViolationRecord] = ()) -> PeopleLedger:
        for company in companies:
            self.companies[company.company_id] = company
        for violation in violations:
            if violation.deal_id is not None:
                self.violations[violation.deal_id].append(violation)
        return self

    def add(self, deal: DealRecord) -> None:
        """One deal of a full load: its own lines now, its company's in ``finish``."""
        self._index(deal)
        self._set_deal_unit(deal.deal_id, self._deal_unit(deal))

    def finish(self) -> PeopleLedger:
        for company_id in self.company_deals:
            self._set_company_unit(company_id, list(self._company_lines(company_id)))
        return self

    def update(self, changed: Sequence[DealRecord], *, removed: Iterable[str] = (),
               violations: Mapping[str, Sequence[ViolationRecord]] | None = None,
               ) -> tuple[list[PeopleLine], list[PeopleLine]]:
        """Apply changed (or removed) deals and new violation lists per deal; return
        ``(old lines, new lines)`` of the units they touch: what a store deletes and
        inserts, nothing else."""
        old_lines: list[PeopleLine] = []
        new_lines: list[PeopleLine] = []
        companies: set[str] = set()
        for deal_id, found in (violations or {}).items():
            self.violations[deal_id] = list(found)
        full = {deal.deal_id: deal for deal in changed}
        for deal_id in removed:
            old = self.deals.pop(deal_id, None)
            if old is not None and old.company_id:
                self.company_deals[old.company_id].discard(deal_id)
                companies.add(old.company_id)
            self.owners.pop(deal_id, None)
            old_lines += self.deal_units.pop(deal_id, ())
        for deal in changed:
            old = self.deals.get(deal.deal_id)
            if old is not None and old.company_id:
                companies.add(old.company_id)
            self._index(deal)
            if deal.deal_id in self.deals and deal.company_id:
                companies.add(deal.company_id)
        for deal_id in set(full) | (set(violations or ()) - set(removed)):
            if deal_id in full:
                lines = self._deal_unit(full[deal_id])
            elif deal_id in self.owners:  # only its violations changed: keep its other lines
                lines = [x for x in self.deal_units.get(deal_id, ()) if x.criterion != "violation"]
                lines += self._violation_lines(deal_id, self.owners[deal_id])
            else:
                continue  # a deal we never saw: its violations wait for its record
            old_lines += self.deal_units.get(deal_id, ())
            self._set_deal_unit(deal_id, lines)
            new_lines += lines
        for company_id in companies:
            old_lines += self.company_units.get(company_id, ())
            lines = list(self._company_lines(company_id))
            self._set_company_unit(company_id, lines)
            new_lines += lines
        return old_lines, new_lines

    def lines(self) -> Iterator[PeopleLine]:
        for unit_lines in self.company_units.values():
            yield from unit_lines
        for unit_lines in self.deal_units.values():
            yield from unit_lines

    def line_count(self) -> int:
        return (sum(len(x) for x in self.company_units.values())
                + sum(len(x) for x in self.deal_units.values()))

    def _index(self, deal: DealRecord) -> None:
        deal_id = deal.deal_id
        old = self.deals.pop(deal_id, None)
        if old is not None and old.company_id:
            self.company_deals[old.company_id].discard(deal_id)
        if deal.status == "won" and deal.won_at is not None:
            self.deals[deal_id] = _Deal(deal_id, deal.owner_id, deal.company_id, deal.status,
                                        deal.value, deal.won_at)
            if deal.company_id:
                self.company_deals[deal.company_id].add(deal_id)

    def _set_deal_unit(self, deal_id: str, lines: list[PeopleLine]) -> None:
        if lines:
            self.deal_units[deal_id] = lines
            if any(x.criterion == "violation" for x in lines):
                self.owners[deal_id] = lines[0].subject_id
        else:
            self.deal_units.pop(deal_id, None)

    def _set_company_unit(self, company_id: str, lines: list[PeopleLine]) -> None:
        if lines:
            self.company_units[company_id] = lines
        else:
            self.company_units.pop(company_id, None)

    def _deal_unit(self, deal: DealRecord) -> list[PeopleLine]:
        lines: list[PeopleLine] = []
        owner = deal.owner_id
        if owner and not deal.history_derived:
            order, month = self.order, self.clock.month
            for index, transition in enumerate(deal.history):
                if transition.from_key is None or transition.to_key is None:
                    continue  # from or to an unmapped stage: not a move along the funnel
                start = order.get(transition.from_key)
                end = order.get(transition.to_key)
                if start is not None and end is not None and end > start:
                    source = transition.source_id or f"{deal.deal_id}#{index}"
                    lines.append(PeopleLine(USER, owner, "forward_move", 1.0, "stage_change",
                                            source, month(transition.at)))
        if deal.deal_id in self.violations:
            lines += self._violation_lines(deal.deal_id, owner)
        elif owner:  # the same violations as before, for the (maybe new) owner
            lines += [x._replace(subject_id=owner) for x in self.deal_units.get(deal.deal_id, ())
                      if x.criterion == "violation"]
        won = self.deals.get(deal.deal_id)
        if won is not None and not won.company_id:
            lines += self._won_lines(won, upsale=False)
        return lines

    # -- criteria ------------------------------------------------------------------------------
    def _won_lines(self, deal: _Deal, *, upsale: bool) -> Iterator[PeopleLine]:
        if deal.status != "won" or deal.won_at is None or not deal.owner_id:
            return
        period = self.clock.month(deal.won_at)
        owner = deal.owner_id
        yield PeopleLine(USER, owner, "won_deal", 1.0, "deal", deal.deal_id, period)
        if deal.value:
            yield PeopleLine(USER, owner, "won_value", float(deal.value), "deal", deal.deal_id,
                             period)
        if upsale:
            yield PeopleLine(USER, owner, "upsale", 1.0, "deal", deal.deal_id, period)

    def _company_lines(self, company_id: str) -> Iterator[PeopleLine]:
        deals = self.deals
        won = sorted((d for d in (deals.get(i) for i in self.company_deals.get(company_id, ()))
                      if d is not None and d.status == "won" and d.won_at is not None),
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
                yield PeopleLine(USER, owner, "loyal_client", 1.0, "company", company_id,
                                 self.clock.month(qualifying.won_at))

    def _violation_lines(self, deal_id: str, owner: str | None) -> list[PeopleLine]:
        """Lines of the deal's pending violations (consumed: the lines keep what counts)."""
        found = self.violations.pop(deal_id, ())
        if not owner:
            return []
        month, weights = self.clock.month, self.rule_weights
        return [PeopleLine(USER, owner, "violation", float(weights.get(violation.rule, 1.0)),
                           "violation", violation.violation_id, month(violation.opened_at))
                for violation in found]


def employee_lines(deals: Iterable[DealRecord], companies: Iterable[CompanyRecord],
                   violations: Iterable[ViolationRecord], book: SalesBook,
                   tz: ZoneInfo) -> list[PeopleLine]:
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
