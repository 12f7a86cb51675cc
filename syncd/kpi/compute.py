"""One streaming pass over a tenant's deals and activities: every KPI and the contact matrix.

The window is the last ``months`` calendar months in the tenant's timezone, the current
one included (up to "now"); churn compares it with the window of the same length before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from syncd.engine_model import (
    ActivityRecord,
    Clock,
    CompanyRecord,
    DealRecord,
    iso_weeks_back,
    shift_month,
)
from syncd.kpi.account import Accounts
from syncd.kpi.funnel import ForwardMoves, Funnel
from syncd.kpi.matrix import ContactMatrix
from syncd.salesbook import SalesBook

DEFAULT_MONTHS = 12
DEFAULT_WEEKS = 8


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime
    previous_start: datetime
    months: list[str]


def month_start(month: str, tz: ZoneInfo) -> datetime:
    return datetime.combine(datetime.strptime(month + "-01", "%Y-%m-%d").date(), time(0), tz)


def window(now: datetime, tz: ZoneInfo, months: int = DEFAULT_MONTHS) -> Window:
    """The last ``months`` local calendar months up to ``now`` and the same span before."""
    current = Clock(tz).month(now)
    first = shift_month(current, -(months - 1))
    return Window(start=month_start(first, tz), end=now,
                  previous_start=month_start(shift_month(first, -months), tz),
                  months=[shift_month(first, i) for i in range(months)])


class KpiState:
    """Every KPI accumulator of one tenant and window. Feed deals and activities with
    ``sign=+1``; to re-count a changed deal, add its old version with ``sign=-1`` and its
    new one with ``+1`` (what ``update_deal`` does): the cost is per changed deal."""

    def __init__(self, book: SalesBook, tz: ZoneInfo, now: datetime, *,
                 months: int = DEFAULT_MONTHS, weeks: int = DEFAULT_WEEKS) -> None:
        self.book, self.now = book, now
        clock = Clock(tz)
        self.span = window(now, tz, months)
        self.funnel = Funnel(book, self.span.start, now)
        self.moves = ForwardMoves(book, tz, iso_weeks_back(now, tz, weeks),
                                  book.kpis.forward_moves_per_week)
        self.accounts = Accounts(clock, self.span.start, now, self.span.previous_start,
                                 self.span.months)
        self.matrix = ContactMatrix(clock, now)

    def add_deal(self, deal: DealRecord, sign: int = 1) -> None:
        self.funnel.add(deal, sign)
        self.moves.add(deal, sign)
        self.accounts.add(deal, sign)
        self.matrix.add_deal(deal, sign)

    def update_deal(self, old: DealRecord | None, new: DealRecord | None) -> None:
        if old is not None:
            self.add_deal(old, -1)
        if new is not None:
            self.add_deal(new, +1)

    def add_activity(self, activity: ActivityRecord, sign: int = 1) -> None:
        self.matrix.add_activity(activity, sign)

    def kpis(self, companies: dict[str, CompanyRecord], names: dict[str, str],
             ) -> dict[str, Any]:
        return {
            "period": {"from": self.span.start.isoformat(), "to": self.now.isoformat(),
                       "months": self.span.months},
            "funnel": self.funnel.result(),
            "forward_moves": self.moves.result(names),
            **self.accounts.result(companies, self.book.kpis, names),
        }

    def contact_matrix(self, companies: dict[str, CompanyRecord]) -> dict[str, Any]:
        return self.matrix.result(companies)


def compute_kpis(book: SalesBook, tz: ZoneInfo, now: datetime, deals: Iterable[DealRecord],
                 activities: Iterable[ActivityRecord], companies: dict[str, CompanyRecord],
                 names: dict[str, str], *, months: int = DEFAULT_MONTHS,
                 weeks: int = DEFAULT_WEEKS,
                 on_deal: Callable[[DealRecord], None] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kpis, contact_matrix)`` from one pass over ``deals`` then ``activities``."""
    state = KpiState(book, tz, now, months=months, weeks=weeks)
    for deal in deals:
        state.add_deal(deal)
        if on_deal is not None:
            on_deal(deal)
    for activity in activities:
        state.add_activity(activity)
    return state.kpis(companies, names), state.contact_matrix(companies)
