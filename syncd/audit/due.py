"""When a deal's verdict can next change without new data: the due-time index's value.

The audit of a deal depends on "now" in two ways only (``syncd.audit.timeline``,
``syncd.audit.rules``):

- through ``as_of``: an event stamped after "now" (creation, a transition, a win or loss,
  an activity created or done) is not visible yet, so the verdict can change at the
  earliest such instant;
- through whole calendar days in the tenant's timezone: every time limit (``stalled``,
  ``inactive``, ``no_next_step``'s "due today or later", ``deferred_no_reminder``'s window,
  a snooze's end, ``won_no_followup``'s window) compares a moment with the start of a
  local day, and the explanations count days, so they can change at the next local
  midnight.

An open deal (deferred ones included) is therefore due at the next local midnight at the
latest; a won deal while its follow-up window runs or its ``won_no_followup`` finding is
open (the finding counts days); a lost deal only at its next future event. A won deal
without a win time is audited as won "now" and is due at every pass. Custom rules see
"now" and "today" (``syncd.audit.registry.RuleContext``): with any, every deal is due at
the next local midnight (a custom check is assumed to change by the day, not the minute).

Pure: nothing here reads a clock or the store.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from syncd.audit.engine import AUDITED_STATUSES, DealVerdict
from syncd.audit.facts import ActivityFact, DealFacts
from syncd.audit.timeline import Calendar
from syncd.salesbook import SalesBook

__all__ = ["DueClock", "next_due"]


class DueClock:
    """One pass's "now", its next local midnight, and the book's day limits."""

    __slots__ = ("cal", "custom_rules", "followup_days", "now", "tomorrow")

    def __init__(self, book: SalesBook, now: datetime, tz: ZoneInfo, *,
                 custom_rules: bool = False) -> None:
        self.cal = Calendar(now, tz)
        self.now = now
        self.tomorrow = self.cal.start_of(1)
        self.followup_days = book.passive.won.followup_within_days
        self.custom_rules = custom_rules


def next_due(verdict: DealVerdict, clock: DueClock) -> datetime | None:
    """The earliest instant after ``clock.now`` at which ``verdict`` can change while the
    deal's stored data stays as it is; None: never (only new data changes it)."""
    facts = verdict.facts
    if facts.status not in AUDITED_STATUSES:
        return None
    due = _next_event(facts, clock.now)
    current = verdict.current
    if current is None:  # created after now: due at its creation (an event above)
        return due
    day: datetime | None = None
    if clock.custom_rules or current.status == "open":
        day = clock.tomorrow
    elif current.status == "won":
        if current.won_at is None:
            return clock.now  # audited as won "now": due at every pass
        if any(f.rule == "won_no_followup" for f in verdict.findings):
            day = clock.tomorrow  # its explanation counts the days
        else:
            first_day = (clock.cal.local_date(current.won_at)
                         + timedelta(days=clock.followup_days + 1))
            window_ends = clock.cal.day_start(first_day)
            if window_ends > clock.now:
                day = window_ends  # after that, a follow-up was found: nothing to change
    if day is None:
        return due
    return day if due is None or day < due else due


def _next_event(facts: DealFacts, now: datetime) -> datetime | None:
    """The earliest moment after ``now`` stamped on the deal (``as_of`` changes there)."""
    best: datetime | None = None

    def see(at: datetime | None) -> None:
        nonlocal best
        if at is not None and at > now and (best is None or at < best):
            best = at

    see(facts.created_at)
    see(facts.won_at)
    see(facts.lost_at)
    for t in facts.history:
        see(t.at)
    _see_activities(facts.activities, see)
    _see_activities(facts.company_activities, see)
    return best


def _see_activities(activities: list[ActivityFact],
                    see: Callable[[datetime | None], None]) -> None:
    for a in activities:
        see(a.created_at)
        see(a.done_at)
