"""Which digest period is due at a moment, in the tenant's own timezone.

A *slot* is the local date and time a digest goes out (weekly: the configured weekday and
hour; monthly: the configured day and hour). Its *period* is what it reports on and what
makes it unique: the 7 days before a weekly slot (key: the ISO week of the slot's eve,
``2026-W49``), the calendar month before a monthly slot (``2026-11``). A slot is due from
its time until ``send_window_hours`` later; a daemon that was down longer skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from syncd.digest_config import WEEKDAYS, DigestsConfig

KINDS = ("weekly", "monthly")


@dataclass(frozen=True)
class Slot:
    kind: str            # weekly | monthly
    period: str          # 2026-W49 | 2026-11
    at: datetime         # the local moment it goes out (aware, the tenant's zone)
    start: datetime      # the reported period: [start, end) in local time
    end: datetime

    @property
    def label(self) -> str:
        """``30.11-06.12.2026`` (a week) or ``2026-11`` (a month), for subjects."""
        if self.kind == "monthly":
            return self.period
        last = self.end - timedelta(days=1)
        return f"{self.start:%d.%m}-{last:%d.%m.%Y}"


def _local(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def latest_slot(kind: str, config: DigestsConfig, tz: ZoneInfo, now: datetime) -> Slot:
    """The most recent slot at or before ``now`` (aware)."""
    local = now.astimezone(tz)
    if kind == "weekly":
        weekly = config.weekly
        back = (local.weekday() - WEEKDAYS.index(weekly.weekday)) % 7
        at = _local(local.date() - timedelta(days=back), weekly.hour, weekly.minute, tz)
        if at > local:
            at = _local(at.date() - timedelta(days=7), weekly.hour, weekly.minute, tz)
        return weekly_slot(at)
    if kind == "monthly":
        monthly = config.monthly
        at = _local(local.date().replace(day=monthly.day), monthly.hour, monthly.minute, tz)
        if at > local:
            at = _local(_previous_month(at.date()).replace(day=monthly.day), monthly.hour,
                        monthly.minute, tz)
        return monthly_slot(at)
    message = f"unknown digest kind {kind!r} (weekly or monthly)"
    raise ValueError(message)


def weekly_slot(at: datetime) -> Slot:
    tz = at.tzinfo
    end_day = at.date()
    start = datetime.combine(end_day - timedelta(days=7), datetime.min.time(), tzinfo=tz)
    end = datetime.combine(end_day, datetime.min.time(), tzinfo=tz)
    year, week, _ = (end_day - timedelta(days=1)).isocalendar()
    return Slot("weekly", f"{year}-W{week:02d}", at, start, end)


def monthly_slot(at: datetime) -> Slot:
    tz = at.tzinfo
    first = at.date().replace(day=1)
    previous = _previous_month(first)
    start = datetime.combine(previous, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(first, datetime.min.time(), tzinfo=tz)
    return Slot("monthly", f"{previous:%Y-%m}", at, start, end)


def _previous_month(day: date) -> date:
    first = day.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


def due_slot(kind: str, config: DigestsConfig, tz: ZoneInfo, now: datetime) -> Slot | None:
    """The slot to send now, or None: its time has come and its window has not passed."""
    if not getattr(config, kind).enabled:
        return None
    slot = latest_slot(kind, config, tz, now)
    if now.astimezone(tz) - slot.at >= timedelta(hours=config.send_window_hours):
        return None
    return slot


def slot_for_period(kind: str, config: DigestsConfig, tz: ZoneInfo, period: str) -> Slot:
    """The slot of a named period (``syncd digest --period``): ``2026-W49`` / ``2026-11``."""
    if kind == "weekly":
        try:
            year, week = period.split("-W")
            monday = date.fromisocalendar(int(year), int(week), 1)
        except ValueError:
            message = f"not an ISO week: {period!r} (e.g. 2026-W49)"
            raise ValueError(message) from None
        # the slot's eve lies in that week: the slot is one of the 7 days after its Monday
        weekday = WEEKDAYS.index(config.weekly.weekday)
        day = next(monday + timedelta(days=offset) for offset in range(1, 8)
                   if (monday + timedelta(days=offset)).weekday() == weekday)
        return weekly_slot(_local(day, config.weekly.hour, config.weekly.minute, tz))
    try:
        month = datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        message = f"not a month: {period!r} (e.g. 2026-11)"
        raise ValueError(message) from None
    nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=config.monthly.day)
    return monthly_slot(_local(nxt, config.monthly.hour, config.monthly.minute, tz))


__all__ = ["KINDS", "Slot", "due_slot", "latest_slot", "monthly_slot", "slot_for_period",
           "weekly_slot"]
