"""Result and account KPIs: win rate, new clients vs plan, lead sources, churn, CLV, NPS,
repeat clients, up-sale revenue and plan inversion.

``Accounts`` is fed one deal at a time (``sign=-1`` takes a deal back out); it keeps one
small tuple per won deal (per company, sorted, for first wins and up-sales) and counters
for the rest. Choices where the spec is
silent are written down in docs/kpis.md.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter, defaultdict
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any, NamedTuple

from syncd.engine_model import Clock, CompanyRecord, DealRecord

NO_SOURCE = "(none)"
YEAR_SECONDS = 365.25 * 86_400


def plan_inversion(revenue_plan: float, average_won_value: float,
                   lead_to_won: float) -> dict[str, Any]:
    """Revenue plan -> deals needed (÷ average won deal) -> leads needed (÷ conversion).

    Exact decimal arithmetic, rounded up to whole deals and leads: 135,000 ÷ 900 = 150
    deals; at 30% conversion 150 ÷ 0.3 = 500 leads (binary floats would give 501)."""
    if revenue_plan <= 0 or average_won_value <= 0 or not 0 < lead_to_won <= 1:
        raise ValueError("plan inversion needs a positive plan, average deal and conversion")
    deals = (Decimal(str(revenue_plan)) / Decimal(str(average_won_value))).to_integral_value(
        ROUND_CEILING)
    leads = (deals / Decimal(str(lead_to_won))).to_integral_value(ROUND_CEILING)
    return {"revenue_plan": revenue_plan, "average_won_value": round(average_won_value, 2),
            "lead_to_won_conversion": round(lead_to_won, 4), "deals_needed": int(deals),
            "leads_needed": int(leads)}


def nps(scores: list[float]) -> dict[str, Any]:
    """% promoters (9-10) minus % detractors (0-6) among the answers."""
    answers = [s for s in scores if 0 <= s <= 10]
    if not answers:
        return {"nps": None, "answers": 0, "promoters": 0, "passives": 0, "detractors": 0}
    promoters = sum(s >= 9 for s in answers)
    detractors = sum(s <= 6 for s in answers)
    return {"nps": round(100.0 * (promoters - detractors) / len(answers), 1),
            "answers": len(answers), "promoters": promoters,
            "passives": len(answers) - promoters - detractors, "detractors": detractors}


class Accounts:
    """Accumulates deals; ``result`` gives the KPIs for the window [start, end]."""

    def __init__(self, clock: Clock, start: datetime, end: datetime, previous_start: datetime,
                 months: list[str]) -> None:
        self.clock, self.start, self.end, self.previous_start = clock, start, end, previous_start
        self.months = months
        self.wins: dict[str, list[tuple[datetime, str, float]]] = defaultdict(list)
        self.closed: Counter[tuple[str, str]] = Counter()  # (owner, won|lost)
        self.sources: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.revenue_by_month: defaultdict[str, float] = defaultdict(float)
        self.won_in_window = 0
        self.won_value_in_window = 0.0
        # per-company contributions to the account KPIs, refreshed only where wins changed
        self.dirty: set[str] = set()
        self.contributions: dict[str, _Contribution] = {}
        self.totals = _Totals()

    def add(self, deal: DealRecord, sign: int = 1) -> None:
        start, end = self.start, self.end
        status = deal.status
        closed_at = deal.won_at if status == "won" else deal.lost_at if status == "lost" else None
        if closed_at is not None and start <= closed_at <= end:
            self.closed[(deal.owner_id or "", status)] += sign
        if deal.created_at is not None and start <= deal.created_at <= end:
            cell = self.sources[deal.lead_source or NO_SOURCE]
            cell[0] += sign
            cell[1] += sign * (deal.status == "won")
        if deal.status == "won" and deal.won_at is not None and deal.won_at <= self.end:
            if deal.company_id:
                wins = self.wins[deal.company_id]
                entry = (deal.won_at, deal.deal_id, deal.value)
                if sign > 0:
                    bisect.insort(wins, entry)
                elif entry in wins:
                    wins.remove(entry)
                self.dirty.add(deal.company_id)
            if self._in(deal.won_at):
                self.won_in_window += sign
                self.won_value_in_window += sign * deal.value
                self.revenue_by_month[self.clock.month(deal.won_at)] += sign * deal.value

    def _in(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    # -- results ---------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Swap the contributions of the companies whose wins changed (all, the first time)."""
        totals = self.totals
        for company_id in self.dirty:
            old = self.contributions.pop(company_id, None)
            if old is not None:
                totals.add(old, -1)
            wins = self.wins.get(company_id)
            if wins:
                new = self._contribution(wins)
                self.contributions[company_id] = new
                totals.add(new, +1)
            elif company_id in self.wins:
                del self.wins[company_id]
        self.dirty.clear()

    def _contribution(self, wins: list[tuple[datetime, str, float]]) -> _Contribution:
        start, end = self.start, self.end
        first = wins[0][0]
        before = any(self.previous_start <= at < start for at, _, _ in wins)
        inside = any(start <= at <= end for at, _, _ in wins)
        years = max((end - first).total_seconds() / YEAR_SECONDS, 1.0)
        upsales = [amount for at, _, amount in wins[1:] if start <= at <= end]
        return _Contribution(
            new_month=self.clock.month(first) if start <= first <= end else None,
            active_at_start=before, lost=before and not inside, wins=len(wins),
            value=math.fsum(v for _, _, v in wins), years=years,
            per_year=len(wins) / years, upsales=len(upsales), upsale_value=math.fsum(upsales))

    def result(self, companies: dict[str, CompanyRecord], plan: Any,
               names: dict[str, str]) -> dict[str, Any]:
        self._refresh()
        return {
            "win_rate": self._win_rate(names),
            "new_clients": self._new_clients(plan),
            "lead_sources": self._lead_sources(),
            "revenue_by_month": {m: round(self.revenue_by_month.get(m, 0.0), 2)
                                 for m in self.months},
            "churn": self._churn(),
            "clv": self._clv(),
            "nps": nps([c.nps for c in companies.values() if c.nps is not None]),
            "repeat_clients": self._repeat(),
            "upsale_revenue": self._upsales(),
            "plan_inversion": self._plan_inversion(plan),
        }

    def _win_rate(self, names: dict[str, str]) -> dict[str, Any]:
        owners = sorted({owner for owner, _ in self.closed})
        won = sum(v for (_, status), v in self.closed.items() if status == "won")
        lost = sum(v for (_, status), v in self.closed.items() if status == "lost")
        return {"won": won, "lost": lost, "rate": _ratio(won, won + lost), "by_owner": [
            {"owner_id": owner or None, "name": names.get(owner, owner or "(no owner)"),
             "won": self.closed[(owner, "won")], "lost": self.closed[(owner, "lost")],
             "rate": _ratio(self.closed[(owner, "won")],
                            self.closed[(owner, "won")] + self.closed[(owner, "lost")])}
            for owner in owners if self.closed[(owner, "won")] or self.closed[(owner, "lost")]]}

    def _new_clients(self, plan: Any) -> dict[str, Any]:
        by_month = self.totals.new_by_month
        per_month = getattr(plan, "new_clients_per_month", None)
        months = [{"month": m, "new_clients": by_month.get(m, 0), "plan": per_month}
                  for m in self.months]
        total = sum(by_month.get(m, 0) for m in self.months)
        total_plan = per_month * len(self.months) if per_month is not None else None
        return {"total": total, "plan": total_plan,
                "attainment": _ratio(total, total_plan) if total_plan else None,
                "by_month": months}

    def _lead_sources(self) -> list[dict[str, Any]]:
        return [{"source": source, "deals": deals, "won": won, "conversion": _ratio(won, deals)}
                for source, (deals, won) in sorted(self.sources.items(),
                                                    key=lambda x: (-x[1][0], x[0])) if deals]

    def _churn(self) -> dict[str, Any]:
        totals = self.totals
        return {"clients_at_start": totals.active_at_start, "lost": totals.lost,
                "rate": _ratio(totals.lost, totals.active_at_start)}

    def _clv(self) -> dict[str, Any]:
        totals = self.totals
        if not totals.clients or not totals.purchases:
            return {"clv": None, "average_purchase": None, "purchases_per_year": None,
                    "years": None, "clients": 0}
        average = totals.value / totals.purchases
        per_year = totals.per_year / totals.clients
        mean_years = totals.years / totals.clients
        return {"clv": round(average * per_year * mean_years, 2),
                "average_purchase": round(average, 2),
                "purchases_per_year": round(per_year, 3), "years": round(mean_years, 2),
                "clients": totals.clients}

    def _repeat(self) -> dict[str, Any]:
        totals = self.totals
        return {"clients": totals.clients, "repeat": totals.repeat,
                "share": _ratio(totals.repeat, totals.clients)}

    def _upsales(self) -> dict[str, Any]:
        return {"deals": self.totals.upsales, "revenue": round(self.totals.upsale_value, 2)}

    def _plan_inversion(self, plan: Any) -> dict[str, Any] | None:
        revenue = getattr(plan, "revenue_per_month", None)
        created = sum(deals for deals, _ in self.sources.values())
        won = sum(w for _, w in self.sources.values())
        if not revenue or not self.won_in_window or not won:
            return None
        average = self.won_value_in_window / self.won_in_window
        if average <= 0:
            return None
        return plan_inversion(revenue, average, won / created)


class _Contribution(NamedTuple):
    """What one client adds to the account KPIs."""

    new_month: str | None  # month of its first win, when inside the window
    active_at_start: bool  # won in the previous window
    lost: bool  # ... and not in this one (churned)
    wins: int
    value: float
    years: float  # of relationship (at least one)
    per_year: float  # wins per year
    upsales: int  # wins after the first, inside the window
    upsale_value: float


class _Totals:
    """Running sums of the clients' contributions."""

    def __init__(self) -> None:
        self.new_by_month: Counter[str] = Counter()
        self.active_at_start = self.lost = self.clients = self.repeat = 0
        self.purchases = self.upsales = 0
        self.value = self.years = self.per_year = self.upsale_value = 0.0

    def add(self, c: _Contribution, sign: int) -> None:
        if c.new_month is not None:
            self.new_by_month[c.new_month] += sign
        self.active_at_start += sign * c.active_at_start
        self.lost += sign * c.lost
        self.clients += sign
        self.repeat += sign * (c.wins >= 2)
        self.purchases += sign * c.wins
        self.value += sign * c.value
        self.years += sign * c.years
        self.per_year += sign * c.per_year
        self.upsales += sign * c.upsales
        self.upsale_value += sign * c.upsale_value


def _ratio(part: float, whole: float | None) -> float | None:
    return round(part / whole, 4) if whole else None
