"""The funnel per canonical stage and forward moves per owner and ISO week.

Both are accumulators fed one deal at a time (``sign=-1`` takes a deal's contribution
back out, so a changed deal is re-counted without a full pass). Days in stage are kept as
a histogram at 0.01-day resolution (about 15 minutes): exact enough for a median shown to
0.1 day, reversible, and bounded in memory whatever the number of deals.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from syncd.engine_model import DealRecord, move_direction
from syncd.salesbook import SalesBook

DAY = 86_400.0
STEPS_PER_DAY = 100  # histogram resolution of days in stage


@dataclass(slots=True)
class _StageCounts:
    entered: int = 0
    moved_on: int = 0
    lost: int = 0
    open_now: int = 0
    days: Counter[int] = field(default_factory=Counter)  # hundredths of a day -> stays

    def median_and_mean(self) -> tuple[float | None, float | None]:
        total = sum(self.days.values())
        if total <= 0:
            return None, None
        mean = math.fsum(k * n for k, n in self.days.items()) / total / STEPS_PER_DAY
        keys = sorted(k for k, n in self.days.items() if n > 0)
        middle = ((total - 1) // 2, total // 2)  # the two middle positions (equal if odd)
        found: list[int] = []
        seen = 0
        for key in keys:
            seen += self.days[key]
            while len(found) < 2 and seen > middle[len(found)]:
                found.append(key)
            if len(found) == 2:
                break
        return (found[0] + found[1]) / 2 / STEPS_PER_DAY, mean


class Funnel:
    """Deals that entered each active stage in the window, moved on (forward or won), were
    lost there; conversion to the next stage; median and mean days of completed stays."""

    def __init__(self, book: SalesBook, start: datetime | None, end: datetime) -> None:
        self.book = book
        self.order = {stage.key: index for index, stage in enumerate(book.stages)}
        self.start, self.end = start, end
        self.counts = {stage.key: _StageCounts() for stage in book.stages}

    def add(self, deal: DealRecord, sign: int = 1) -> None:
        """Count the deal's stays (the walk of ``model.stays``, inlined: it runs per deal)."""
        if deal.history:
            current, since = deal.history[0].from_key, deal.created_at
        else:
            current, since = deal.stage_key, deal.created_at
        seen: list[str] = []  # stages entered in the window (a deal counts once per stage)
        moved: list[str] = []
        order = self.order
        history, closing_at = _without_closing_moves(deal)
        for transition in history:
            if current is not None:
                to_key = transition.to_key
                if to_key in order and current in order and order[to_key] > order[current]:
                    exit_kind = "forward"
                else:
                    exit_kind = "other"
                self._stay(current, since, transition.at, exit_kind, sign, seen, moved)
            current, since = transition.to_key, transition.at
        if current is not None:
            if deal.status in {"won", "lost"}:
                self._stay(current, since, deal.closed_at or closing_at, deal.status, sign, seen,
                           moved)
            else:
                self._stay(current, since, None, "open", sign, seen, moved)
        counts = self.counts
        for key in set(seen):
            counts[key].entered += sign
        for key in set(moved):
            counts[key].moved_on += sign

    def _stay(self, stage: str, entered: datetime | None, left: datetime | None, exit_kind: str,
              sign: int, seen: list[str], moved: list[str]) -> None:
        counts = self.counts.get(stage)
        if (counts is None or entered is None or entered > self.end
                or (self.start is not None and entered < self.start)):
            return
        seen.append(stage)
        if exit_kind in {"forward", "won"}:
            moved.append(stage)
        elif exit_kind == "lost":
            counts.lost += sign
        elif exit_kind == "open":
            counts.open_now += sign
        if left is not None:
            steps = round(max((left - entered).total_seconds(), 0.0) / DAY * STEPS_PER_DAY)
            days = counts.days
            days[steps] += sign
            if not days[steps]:
                del days[steps]

    def result(self) -> list[dict[str, Any]]:
        rows = []
        for stage in self.book.stages:
            counts = self.counts[stage.key]
            median, mean = counts.median_and_mean()
            rows.append({
                "stage": stage.key, "title": stage.title, "optional": stage.optional,
                "entered": counts.entered, "moved_on": counts.moved_on, "lost": counts.lost,
                "open_now": counts.open_now,
                "conversion": _ratio(counts.moved_on, counts.entered),
                "median_days": round(median, 1) if median is not None else None,
                "mean_days": round(mean, 1) if mean is not None else None,
                "max_days": stage.max_days,
            })
        return rows


class ForwardMoves:
    """Forward and backward moves per deal owner and ISO week (the "5 wins" target)."""

    def __init__(self, book: SalesBook, tz: ZoneInfo, weeks: list[str], target: int) -> None:
        self.order = {stage.key: index for index, stage in enumerate(book.stages)}
        self.weeks, self.target = weeks, target
        self.starts = [_week_start(week, tz) for week in weeks]
        self.end = self.starts[-1] + 7 * DAY if weeks else 0.0
        self.moves: dict[str, dict[str, list[int]]] = defaultdict(dict)

    def add(self, deal: DealRecord, sign: int = 1) -> None:
        if not deal.owner_id or deal.history_derived or not self.weeks:
            return
        first, end = self.starts[0], self.end
        for transition in deal.history:
            stamp = transition.at.timestamp()
            if stamp < first or stamp >= end:
                continue
            direction = move_direction(transition, self.order)
            if not direction:
                continue
            week = self.weeks[bisect_right(self.starts, stamp) - 1]
            cell = self.moves[deal.owner_id].setdefault(week, [0, 0])
            cell[0 if direction > 0 else 1] += sign

    def result(self, names: dict[str, str]) -> dict[str, Any]:
        owners = []
        for owner, weeks in sorted(self.moves.items()):
            cells = {week: {"forward": f, "backward": b, "net": f - b}
                     for week, (f, b) in sorted(weeks.items())}
            nets = [cells.get(week, {"net": 0})["net"] for week in self.weeks]
            owners.append({
                "owner_id": owner, "name": names.get(owner, owner), "weeks": cells,
                "mean_net": round(sum(nets) / len(nets), 2) if nets else 0.0,
                "weeks_on_target": sum(n >= self.target for n in nets),
            })
        return {"target": self.target, "weeks": self.weeks, "owners": owners}


def _without_closing_moves(deal: DealRecord) -> tuple[tuple[Any, ...], datetime | None]:
    """A closed deal's history without its trailing moves into a closed status (amoCRM
    142/143, Bitrix24 WON/LOSE: no Sales Book stage, ``to_key`` None) and the time of the
    first such move: the deal closed at the stage it left, as on sources without that move."""
    history, closing_at = tuple(deal.history), None
    if deal.status in {"won", "lost"}:
        while history and history[-1].to_key is None and history[-1].from_key is not None:
            closing_at, history = history[-1].at, history[:-1]
    return history, closing_at


def _week_start(week: str, tz: ZoneInfo) -> float:
    """Epoch seconds of Monday 00:00 (tenant time) of ISO week ``"YYYY-Www"``."""
    monday = date.fromisocalendar(int(week[:4]), int(week[6:8]), 1)
    return datetime.combine(monday, time(0), tz).timestamp()


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None
