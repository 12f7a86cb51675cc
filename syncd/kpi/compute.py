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

from syncd.kpi.account import Accounts
from syncd.kpi.funnel import ForwardMoves, Funnel
from syncd.kpi.matrix import ContactMatrix
from syncd.kpi.model import (
    ActivityRecord,
    Clock,
    CompanyRecord,
    DealRecord,
    iso_weeks_back,
    shift_month,
)
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


def compute_kpis(book: SalesBook, tz: ZoneInfo, now: datetime, deals: Iterable[DealRecord],
                 activities: Iterable[ActivityRecord], companies: dict[str, CompanyRecord],
                 names: dict[str, str], *, months: int = DEFAULT_MONTHS,
                 weeks: int = DEFAULT_WEEKS,
                 on_deal: Callable[[DealRecord], None] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kpis, contact_matrix)`` from one pass over ``deals`` then ``activities``."""
    clock = Clock(tz)
    span = window(now, tz, months)
    funnel = Funnel(book, span.start, now)
    moves = ForwardMoves(book, tz, iso_weeks_back(now, tz, weeks),
                         book.kpis.forward_moves_per_week)
    accounts = Accounts(clock, span.start, now, span.previous_start, span.months)
    matrix = ContactMatrix(clock, now)
    for deal in deals:
        funnel.add(deal)
        moves.add(deal)
        accounts.add(deal)
        matrix.add_deal(deal)
        if on_deal is not None:
            on_deal(deal)
    for activity in activities:
        matrix.add_activity(activity)
    kpis: dict[str, Any] = {
        "period": {"from": span.start.isoformat(), "to": now.isoformat(),
                   "months": span.months},
        "funnel": funnel.result(),
        "forward_moves": moves.result(names),
        **accounts.result(companies, book.kpis, names),
    }
    return kpis, matrix.result(companies)
