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
from typing import Any

from syncd.kpi.model import Clock, CompanyRecord, DealRecord

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
        self.revenue_by_month: Counter[str] = Counter()
        self.won_in_window = 0
        self.won_value_in_window = 0.0

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
            if self._in(deal.won_at):
                self.won_in_window += sign
                self.won_value_in_window += sign * deal.value
                self.revenue_by_month[self.clock.month(deal.won_at)] += sign * deal.value

    def _in(self, moment: datetime) -> bool:
        return self.start <= moment <= self.end

    # -- results ---------------------------------------------------------------------------------
    def result(self, companies: dict[str, CompanyRecord], plan: Any,
               names: dict[str, str]) -> dict[str, Any]:
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
            for owner in owners]}

    def _new_clients(self, plan: Any) -> dict[str, Any]:
        by_month: Counter[str] = Counter()
        for wins in self.wins.values():
            if wins and self._in(wins[0][0]):
                first = wins[0][0]
                by_month[self.clock.month(first)] += 1
        per_month = getattr(plan, "new_clients_per_month", None)
        months = [{"month": m, "new_clients": by_month.get(m, 0), "plan": per_month}
                  for m in self.months]
        total = sum(by_month.values())
        total_plan = per_month * len(self.months) if per_month is not None else None
        return {"total": total, "plan": total_plan,
                "attainment": _ratio(total, total_plan) if total_plan else None,
                "by_month": months}

    def _lead_sources(self) -> list[dict[str, Any]]:
        return [{"source": source, "deals": deals, "won": won, "conversion": _ratio(won, deals)}
                for source, (deals, won) in sorted(self.sources.items(),
                                                    key=lambda x: (-x[1][0], x[0]))]

    def _churn(self) -> dict[str, Any]:
        active_at_start = lost = 0
        for wins in self.wins.values():
            before = any(self.previous_start <= at < self.start for at, _, _ in wins)
            if before:
                active_at_start += 1
                lost += not any(self._in(at) for at, _, _ in wins)
        return {"clients_at_start": active_at_start, "lost": lost,
                "rate": _ratio(lost, active_at_start)}

    def _clv(self) -> dict[str, Any]:
        clients = [w for w in self.wins.values() if w]
        if not clients:
            return {"clv": None, "average_purchase": None, "purchases_per_year": None,
                    "years": None, "clients": 0}
        purchases = sum(len(w) for w in clients)
        average = math.fsum(v for w in clients for _, _, v in w) / purchases
        years = [max((self.end - w[0][0]).total_seconds() / YEAR_SECONDS, 1.0)
                 for w in clients]
        per_year = math.fsum(len(w) / y for w, y in zip(clients, years, strict=True)) / len(
            clients)
        mean_years = math.fsum(years) / len(years)
        return {"clv": round(average * per_year * mean_years, 2),
                "average_purchase": round(average, 2),
                "purchases_per_year": round(per_year, 3), "years": round(mean_years, 2),
                "clients": len(clients)}

    def _repeat(self) -> dict[str, Any]:
        clients = sum(1 for w in self.wins.values() if w)
        repeat = sum(1 for w in self.wins.values() if len(w) >= 2)
        return {"clients": clients, "repeat": repeat, "share": _ratio(repeat, clients)}

    def _upsales(self) -> dict[str, Any]:
        count, value = 0, 0.0
        for wins in self.wins.values():
            for at, _, amount in wins[1:]:
                if self._in(at):
                    count += 1
                    value += amount
        return {"deals": count, "revenue": round(value, 2)}

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


def _ratio(part: float, whole: float | None) -> float | None:
    return round(part / whole, 4) if whole else None
