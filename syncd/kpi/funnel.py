"""The funnel per canonical stage and forward moves per owner and ISO week.

Both are accumulators fed one deal at a time, so a million deals stream through in
constant memory (the funnel keeps one day count per completed stay, for the median).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from syncd.kpi.model import Clock, DealRecord, move_direction, stays
from syncd.salesbook import SalesBook

DAY = 86_400.0


@dataclass(slots=True)
class _StageCounts:
    entered: int = 0
    moved_on: int = 0
    lost: int = 0
    open_now: int = 0
    days: list[float] = field(default_factory=list)


class Funnel:
    """Deals that entered each active stage in the window, moved on (forward or won), were
    lost there; conversion to the next stage; median and mean days of completed stays."""

    def __init__(self, book: SalesBook, start: datetime | None, end: datetime) -> None:
        self.book = book
        self.order = {stage.key: index for index, stage in enumerate(book.stages)}
        self.start, self.end = start, end
        self.counts = {stage.key: _StageCounts() for stage in book.stages}

    def add(self, deal: DealRecord) -> None:
        entered: set[str] = set()
        moved: set[str] = set()
        for stay in stays(deal, self.order):
            counts = self.counts.get(stay.stage or "")
            if counts is None or stay.entered is None or not self._in_window(stay.entered):
                continue
            entered.add(stay.stage)  # type: ignore[arg-type]
            if stay.exit in ("forward", "won"):
                moved.add(stay.stage)  # type: ignore[arg-type]
            elif stay.exit == "lost":
                counts.lost += 1
            elif stay.exit == "open":
                counts.open_now += 1
            if stay.left is not None:
                counts.days.append(max((stay.left - stay.entered).total_seconds(), 0.0) / DAY)
        for key in entered:
            self.counts[key].entered += 1
        for key in moved:
            self.counts[key].moved_on += 1

    def _in_window(self, moment: datetime) -> bool:
        return moment <= self.end and (self.start is None or moment >= self.start)

    def result(self) -> list[dict[str, Any]]:
        rows = []
        for stage in self.book.stages:
            counts = self.counts[stage.key]
            days = counts.days
            rows.append({
                "stage": stage.key, "title": stage.title, "optional": stage.optional,
                "entered": counts.entered, "moved_on": counts.moved_on, "lost": counts.lost,
                "open_now": counts.open_now,
                "conversion": _ratio(counts.moved_on, counts.entered),
                "median_days": round(statistics.median(days), 1) if days else None,
                "mean_days": round(statistics.fmean(days), 1) if days else None,
                "max_days": stage.max_days,
            })
        return rows


class ForwardMoves:
    """Forward and backward moves per deal owner and ISO week (the "5 wins" target)."""

    def __init__(self, book: SalesBook, tz: ZoneInfo, weeks: list[str], target: int) -> None:
        self.order = {stage.key: index for index, stage in enumerate(book.stages)}
        self.clock = Clock(tz)
        self.weeks, self.wanted, self.target = weeks, set(weeks), target
        self.moves: dict[str, dict[str, list[int]]] = defaultdict(dict)

    def add(self, deal: DealRecord) -> None:
        if not deal.owner_id or deal.history_derived:
            return
        for transition in deal.history:
            direction = move_direction(transition, self.order)
            if not direction:
                continue
            week = self.clock.week(transition.at)
            if week not in self.wanted:
                continue
            cell = self.moves[deal.owner_id].setdefault(week, [0, 0])
            cell[0 if direction > 0 else 1] += 1

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


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None
