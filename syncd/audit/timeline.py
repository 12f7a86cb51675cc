"""A deal's timeline: the deal as it was at "now", whole calendar days in the tenant's
timezone, and one walk over its stage history.

Nothing here reads a clock: "now" is always an argument.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, TypedDict
from zoneinfo import ZoneInfo

from syncd.audit.facts import DEFERRED, ActivityFact, DealFacts, Transition

#: ``crm_stage`` of a deal whose stage at the audit time cannot be named: the history says
#: it was in an unmapped stage then, or gives no stage before the first later transition.
UNKNOWN_CRM_STAGE = "(stage unknown at the audit time)"

#: Stands for "at an unknown time, counted as long ago" (an untimed done activity).
LONG_AGO = datetime.min.replace(tzinfo=UTC)


class Calendar:
    """Whole calendar days in the tenant's timezone, counted from one fixed ``now``."""

    __slots__ = ("_starts", "now", "today", "tz")

    def __init__(self, now: datetime, tz: ZoneInfo) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        self.now = now
        self.tz = tz
        self.today = now.astimezone(tz).date()
        self._starts: dict[date, datetime] = {}

    def local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def days_since(self, moment: datetime) -> int:
        """Calendar days from ``moment``'s local date to today (0: today)."""
        return (self.today - self.local_date(moment)).days

    def day_start(self, day: date) -> datetime:
        """The first instant of local date ``day``, in UTC (DST gaps and folds included:
        zoneinfo resolves a missing or repeated midnight to the day's first instant)."""
        start = self._starts.get(day)
        if start is None:
            start = datetime.combine(day, time.min, tzinfo=self.tz).astimezone(UTC)
            self._starts[day] = start
        return start

    def start_of(self, days_from_today: int) -> datetime:
        """First instant of the day ``days_from_today`` away (negative: in the past).

        A moment before ``start_of(-n)`` is *more than* ``n`` calendar days ago."""
        return self.day_start(self.today + timedelta(days=days_from_today))


# -- as of "now" ------------------------------------------------------------------------


def as_of(facts: DealFacts, now: datetime) -> DealFacts | None:
    """The deal as it was at ``now``; None if it was created after ``now``.

    Transitions after ``now`` are dropped and the stage at ``now`` comes from the history;
    a win or loss after ``now`` makes the deal open again; activities created after ``now``
    are dropped and those done after ``now`` are planned (not done) at ``now``. A deal with
    nothing after ``now`` is returned as is (no copy)."""
    if facts.created_at > now:
        return None
    if _settled(facts, now):
        return facts
    return dataclasses.replace(
        facts,
        **_stage_at(facts, now),
        **_outcome_at(facts, now),
        activities=_activities_at(facts.activities, now),
        company_activities=_activities_at(facts.company_activities, now),
    )


def _settled(facts: DealFacts, now: datetime) -> bool:
    """True when nothing in the deal happened after ``now``."""
    for t in facts.history:
        if t.at > now:
            return False
    if (facts.won_at and facts.won_at > now) or (facts.lost_at and facts.lost_at > now):
        return False
    return _activities_settled(facts.activities, now) and _activities_settled(
        facts.company_activities, now
    )


def _activities_settled(activities: Sequence[ActivityFact], now: datetime) -> bool:
    for a in activities:
        if (a.created_at and a.created_at > now) or (a.done_at and a.done_at > now):
            return False
    return True


class _StageAt(TypedDict, total=False):
    history: list[Transition]
    stage_key: str | None
    crm_stage: str


class _OutcomeAt(TypedDict, total=False):
    status: Literal["open", "won", "lost"]
    won_at: datetime | None
    lost_at: datetime | None
    lost_reason_raw: str | None
    lost_reason_key: str | None


def _stage_at(facts: DealFacts, now: datetime) -> _StageAt:
    kept = [t for t in facts.history if t.at <= now]
    if len(kept) == len(facts.history):
        return {}
    later = next(t for t in facts.history if t.at > now)
    stage_key = kept[-1].to_key if kept else later.from_key
    crm_stage = facts.crm_stage if stage_key is not None else UNKNOWN_CRM_STAGE
    return {"history": kept, "stage_key": stage_key, "crm_stage": crm_stage}


def _outcome_at(facts: DealFacts, now: datetime) -> _OutcomeAt:
    if facts.status == "won" and facts.won_at and facts.won_at > now:
        return {"status": "open", "won_at": None}
    if facts.status == "lost" and facts.lost_at and facts.lost_at > now:
        return {"status": "open", "lost_at": None, "lost_reason_raw": None,
                "lost_reason_key": None}
    return {}


def _activities_at(activities: list[ActivityFact], now: datetime) -> list[ActivityFact]:
    if _activities_settled(activities, now):
        return activities
    at_now = (_activity_at(a, now) for a in activities)
    return [a for a in at_now if a is not None]


def _activity_at(a: ActivityFact, now: datetime) -> ActivityFact | None:
    """The activity at ``now``: None if created later (or a note written later); planned
    if done later."""
    if a.created_at and a.created_at > now:
        return None
    if a.done_at and a.done_at > now:
        return None if a.is_note else dataclasses.replace(a, done=False, done_at=None)
    return a


# -- one walk over the stage history ----------------------------------------------------


@dataclass(slots=True, frozen=True)
class Move:
    """A transition between two active stages, as the rules judge it."""

    from_key: str
    to_key: str
    at: datetime
    source_id: str

    @classmethod
    def of(cls, from_key: str, t: Transition) -> Move:
        return cls(from_key, t.to_key or "", t.at, t.source_id)


@dataclass(slots=True)
class StageWalk:
    """What one pass over a deal's history found.

    ``position``: the active stage the deal is at, or was at before it was deferred (None:
    unknown). ``entered_at``: when it entered its current stage (creation if never moved).
    ``left_forward``: active stage -> the last transition that left it for a later stage
    (from the stage itself, or from ``deferred`` when it was deferred from that stage).
    ``skips``: (skipped stage, the move that jumped over it), each stage once.
    """

    entered_at: datetime
    position: str | None = None
    last_move_at: datetime | None = None
    left_forward: dict[str, Transition] = field(default_factory=dict)
    skips: list[tuple[str, Move]] = field(default_factory=list)
    backward: list[Move] = field(default_factory=list)
    visited: set[str] = field(default_factory=set)


class StageWalker:
    """Walks histories against one Sales Book's stage order (built once per book).

    A transition from ``deferred`` counts as leaving the active stage the deal was deferred
    from; a transition from or to an unmapped stage (None) is not judged, and neither is the
    stage a deal was created in (only transitions skip stages)."""

    __slots__ = ("_keys", "_optional", "_order")

    def __init__(self, order: Mapping[str, int], optional: frozenset[str]) -> None:
        self._order = dict(order)
        self._keys = tuple(sorted(order, key=order.__getitem__))
        self._optional = optional

    def walk(self, facts: DealFacts) -> StageWalk:
        walk = StageWalk(entered_at=facts.created_at)
        for t in facts.history:
            self._step(walk, t)
        if facts.stage_key in self._order:
            walk.position = facts.stage_key
        return walk

    def _step(self, walk: StageWalk, t: Transition) -> None:
        if t.to_key != t.from_key:
            walk.entered_at = t.at
        if walk.last_move_at is None or t.at > walk.last_move_at:
            walk.last_move_at = t.at
        source: str | None
        if t.from_key is not None and t.from_key in self._order:
            source = t.from_key
            walk.visited.add(source)
        else:
            source = walk.position if t.from_key == DEFERRED else None
        if t.to_key is not None and t.to_key in self._order:
            if source is not None:
                self._judge(walk, source, t.to_key, t)
            walk.visited.add(t.to_key)
            walk.position = t.to_key
        elif t.to_key == DEFERRED or t.to_key is None:
            # Deferred keeps the stage it was parked from; a move into an unmapped stage (a CRM's
            # closed status: amoCRM 142/143, Bitrix24 WON/LOSE) keeps the stage the deal left.
            walk.position = source
        else:
            walk.position = None

    def _judge(self, walk: StageWalk, source: str, target: str, t: Transition) -> None:
        start, end = self._order[source], self._order[target]
        if end > start:
            walk.left_forward[source] = t
            if end > start + 1:
                self._note_skips(walk, self._keys[start + 1 : end], Move.of(source, t))
        elif end < start:
            walk.backward.append(Move.of(source, t))

    def _note_skips(self, walk: StageWalk, between: tuple[str, ...], move: Move) -> None:
        for key in between:
            if key in self._optional or key in walk.visited:
                continue
            if all(key != skipped for skipped, _ in walk.skips):
                walk.skips.append((key, move))
