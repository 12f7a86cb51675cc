"""What KPIs and people karma read: deals, activities and companies in Sales Book terms.

These are small, CRM-free records built by ``syncd.load`` from the store (through the
tenant mapper) or by a benchmark generator. Stage keys are canonical; activity kinds are
canonical (``call``, ``meeting``...). Months are ``"YYYY-MM"`` in the tenant's timezone and
ISO weeks ``"YYYY-Www"``, so every figure is reproducible from an explicit "now".

A neutral module of the engine: ``syncd.kpi`` and ``syncd.scoring`` both read it, and
neither imports the other.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from syncd.audit.facts import DEFERRED, Transition


class DealRecord(NamedTuple):
    """One deal with its canonical stage history (oldest first). A named tuple: a million
    of them are built per pass, and tuples are the cheapest immutable records."""

    deal_id: str
    owner_id: str | None
    company_id: str | None
    status: str  # open | won | lost
    value: float
    created_at: datetime | None
    won_at: datetime | None = None
    lost_at: datetime | None = None
    stage_key: str | None = None  # current canonical stage (or DEFERRED); None: unmapped
    lead_source: str | None = None
    history: tuple[Transition, ...] = ()
    history_derived: bool = False

    @property
    def closed_at(self) -> datetime | None:
        return self.won_at if self.status == "won" else self.lost_at if (
            self.status == "lost") else None


class ActivityRecord(NamedTuple):
    """One activity, reduced to what the contact matrix needs (a tuple: millions of them)."""

    activity_id: str
    kind: str  # canonical kind
    done: bool
    when: datetime | None  # done_at when done, due time when planned
    company_id: str | None
    deal_id: str | None
    owner_id: str | None


@dataclass(frozen=True, slots=True)
class CompanyRecord:
    company_id: str
    name: str
    owner_id: str | None = None
    segment: str | None = None
    nps: float | None = None
    channel: str | None = None
    sub_channel: str | None = None
    region: str | None = None


class Stay(NamedTuple):
    """One stay of a deal in one stage: entered at ``entered``, left at ``left`` (None: still
    there) by ``exit``: forward, backward, deferred, won, lost, other or open."""

    stage: str | None
    entered: datetime | None
    left: datetime | None
    exit: str


#: Months the fast month lookup covers; moments outside fall back to zoneinfo per call.
FIRST_YEAR, LAST_YEAR = 1990, 2070


class Clock:
    """Local months and ISO weeks in the tenant's timezone.

    Months are found by bisecting a table of local month starts (as epoch seconds) built
    once: a few hundred nanoseconds per call, where converting each moment with zoneinfo
    costs microseconds — it matters for millions of activities."""

    __slots__ = ("_labels", "_starts", "tz")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._starts: list[float] = []
        self._labels: list[str] = []
        for year in range(FIRST_YEAR, LAST_YEAR + 1):
            for month in range(1, 13):
                self._starts.append(datetime(year, month, 1, tzinfo=tz).timestamp())
                self._labels.append(f"{year:04d}-{month:02d}")
        self._starts.append(datetime(LAST_YEAR + 1, 1, 1, tzinfo=tz).timestamp())

    def month_table(self) -> tuple[list[float], list[str]]:
        """What ``month`` bisects: local month starts (epoch seconds, one more than labels:
        the end of the table) and their ``"YYYY-MM"`` labels."""
        return self._starts, self._labels

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)

    def month(self, moment: datetime) -> str:
        """``"YYYY-MM"`` of ``moment`` in the tenant's timezone."""
        stamp = moment.timestamp()
        starts = self._starts
        if starts[0] <= stamp < starts[-1]:
            return self._labels[bisect_right(starts, stamp) - 1]
        local = moment.astimezone(self.tz)
        return f"{local.year:04d}-{local.month:02d}"

    def month_start(self, month: str) -> float:
        """Epoch seconds of the first local instant of ``month``."""
        year, mon = int(month[:4]), int(month[5:7])
        if FIRST_YEAR <= year <= LAST_YEAR:
            return self._starts[(year - FIRST_YEAR) * 12 + mon - 1]
        return datetime(year, mon, 1, tzinfo=self.tz).timestamp()

    def week(self, moment: datetime) -> str:
        year, week, _ = moment.astimezone(self.tz).isocalendar()
        return f"{year:04d}-W{week:02d}"


def month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def shift_month(month: str, delta: int) -> str:
    """``"2024-01"`` shifted by ``delta`` months."""
    year, mon = int(month[:4]), int(month[5:7])
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last`` inclusive."""
    months, current = [], first
    while current <= last:
        months.append(current)
        current = shift_month(current, 1)
    return months


def iso_weeks_back(now: datetime, tz: ZoneInfo, count: int) -> list[str]:
    """The ``count`` ISO weeks up to and including the week of ``now``, oldest first."""
    today = now.astimezone(tz).date()
    weeks = []
    for back in range(count - 1, -1, -1):
        year, week, _ = (today - timedelta(weeks=back)).isocalendar()
        weeks.append(f"{year:04d}-W{week:02d}")
    return weeks


def stays(deal: DealRecord, order: dict[str, int]) -> Iterator[Stay]:
    """Walk the deal's history into stays; ``order`` maps active stage keys to their index.

    The first stage is the first transition's ``from`` stage since creation (or, without
    history, the current stage since creation). The last stay ends with the deal's win or
    loss, or is still open."""
    history: Sequence[Transition] = deal.history
    if history and history[0].from_key is not None:
        current, since = history[0].from_key, deal.created_at
    elif history:
        current, since = None, deal.created_at
    else:
        current, since = deal.stage_key, deal.created_at
    for transition in history:
        if current is not None:
            yield Stay(current, since, transition.at,
                       _exit_kind(current, transition.to_key, order))
        current, since = transition.to_key, transition.at
    if current is None:
        return
    if deal.status in ("won", "lost"):
        yield Stay(current, since, deal.closed_at, deal.status)
    else:
        yield Stay(current, since, None, "open")


def _exit_kind(from_key: str, to_key: str | None, order: dict[str, int]) -> str:
    if to_key == DEFERRED:
        return "deferred"
    if from_key in order and to_key in order:
        return "forward" if order[to_key] > order[from_key] else (
            "backward" if order[to_key] < order[from_key] else "other")
    return "other"


def move_direction(transition: Transition, order: dict[str, int]) -> int:
    """+1 for a forward move between active stages, -1 for a backward one, else 0."""
    start, end = order.get(transition.from_key or ""), order.get(transition.to_key or "")
    if start is None or end is None or start == end:
        return 0
    return 1 if end > start else -1
