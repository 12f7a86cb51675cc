"""The audit rules: one small function per rule code (see ``docs/rules.md``).

A rule takes a :class:`Subject` (one deal, already as of "now", its history walked once)
and returns the findings it raises: none, one, or for ``missing_action`` and
``skipped_stage`` one per stage/action. Rules never read a clock and never apply snoozes:
the engine does that, so suppression is recorded in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.audit.facts import (
    DEFERRED,
    ActivityFact,
    DealFacts,
    Finding,
    Severity,
    Transition,
)
from syncd.audit.texts import Texts, texts
from syncd.audit.timeline import LONG_AGO, Calendar, Move, StageWalk, StageWalker
from syncd.salesbook import SalesBook

SEVERITY: dict[str, Severity] = {
    "missing_action": "error",
    "skipped_stage": "error",
    "backward_move": "warning",
    "stalled": "warning",
    "inactive": "error",
    "no_next_step": "error",
    "bad_loss_reason": "error",
    "no_lead_source": "error",
    "no_contact": "error",
    "deferred_no_reminder": "error",
    "won_no_followup": "warning",
    "unmapped_stage": "warning",
}
#: Rules a snooze (``snooze_until`` after today) suppresses.
SNOOZABLE = frozenset({"stalled", "inactive", "no_next_step"})
LEAD_SOURCE_FIELD = "lead_source"
WON = "won"


@dataclass(frozen=True, slots=True)
class ActionSpec:
    key: str
    title: str
    kinds: tuple[str, ...]
    field: str | None


class BookIndex:
    """The lookups the rules need from one Sales Book, built once per book."""

    def __init__(self, book: SalesBook) -> None:
        self.book = book
        self.order = {s.key: i for i, s in enumerate(book.stages)}
        self.titles = {s.key: s.title for s in book.stages} | {DEFERRED: "Deferred"}
        self.max_days = {s.key: s.max_days for s in book.stages if s.max_days is not None}
        self.actions = {s.key: tuple(_action_spec(book, a) for a in s.actions)
                        for s in book.stages}
        self.reasons = {key: None if r.stages is None else frozenset(r.stages)
                        for key, r in book.passive.lost.reasons.items()}
        optional = frozenset(s.key for s in book.stages if s.optional)
        self.walker = StageWalker(self.order, optional)
        self.reminder_kinds = book.passive.deferred.reminder_activity_types
        self.followup_kinds = book.passive.won.followup_activity_types

    def is_mapped(self, stage_key: str | None) -> bool:
        return stage_key == DEFERRED or stage_key in self.order

    def title(self, stage_key: str | None) -> str:
        return self.titles.get(stage_key or "", stage_key or "(unknown)")

    def allowed_stages(self, reason_key: str) -> list[str]:
        """Stages (in book order) where a loss reason may be used."""
        allowed = self.reasons[reason_key]
        keys = [k for k in self.order if allowed is None or k in allowed]
        return [*keys, DEFERRED] if allowed is not None and DEFERRED in allowed else keys


def _action_spec(book: SalesBook, key: str) -> ActionSpec:
    action = book.actions[key]
    return ActionSpec(key, action.title, action.evidence.activity_types, action.evidence.field)


def _gap(action: ActionSpec, t: Texts) -> str:
    """What is missing when an action has no evidence, for explanations."""
    gap = []
    if action.kinds:
        gap.append(t.say("gap.kinds", kinds=t.or_list(action.kinds)))
    if action.field:
        gap.append(t.say("gap.field", field=action.field))
    return t.say("gap.and").join(gap)


class AuditRun:
    """One audit run: a book index, a calendar, and the day cut-offs the rules compare with
    (a moment before ``X_before`` is more than the limit's days ago)."""

    def __init__(self, index: BookIndex, cal: Calendar, language: str = "en") -> None:
        passive = index.book.passive
        self.index = index
        self.cal = cal
        self.texts = texts(language)
        book = index.book
        self.titles = {s.key: s.title_in(language) for s in book.stages}  # the reader's titles
        self.action_titles = {key: a.title_in(language) for key, a in book.actions.items()}
        self.stalled_before = {k: cal.start_of(-days) for k, days in index.max_days.items()}
        self.inactive_before = cal.start_of(-index.book.inactive_days)
        self.today_start = cal.start_of(0)
        self.reminders_from = cal.start_of(-passive.deferred.remind_every_days)
        self.reminders_until = cal.start_of(passive.deferred.remind_every_days + 1)
        self.followup_before = cal.start_of(-passive.won.followup_within_days)

    def title(self, stage_key: str | None) -> str:
        """A stage's title for explanations, in the run's language where syncd names it."""
        if stage_key == DEFERRED:
            return self.texts.say("word.deferred")
        if stage_key == WON:
            return self.texts.say("word.won")
        if stage_key is None or stage_key not in self.titles:
            return stage_key or self.texts.say("word.unknown_stage")
        return self.titles[stage_key]

    def subject(self, facts: DealFacts) -> Subject:
        mapped = self.index.is_mapped(facts.stage_key)
        walk = self.index.walker.walk(facts) if mapped else None
        return Subject(facts, self, walk)


@dataclass(slots=True)
class Subject:
    """One deal under audit. ``walk`` is None when its stage is unmapped."""

    facts: DealFacts
    run: AuditRun
    walk: StageWalk | None

    @property
    def snoozed(self) -> bool:
        """A snooze is a date after today *with* a non-empty reason (a date alone is none)."""
        until = self.facts.snooze_until
        return (until is not None and until > self.run.cal.today
                and is_present(self.facts.snooze_reason))

    @property
    def walked(self) -> StageWalk:
        """The stage walk, for the rules in ``RULES`` (which only ever see mapped deals)."""
        if self.walk is None:
            raise ValueError(f"deal {self.facts.deal_id}: unmapped stage, no stage walk")
        return self.walk


Rule = Callable[[Subject], Sequence[Finding]]

# -- helpers -----------------------------------------------------------------------------


def is_present(value: object) -> bool:
    """A canonical field counts as filled unless None, blank text or an empty collection."""
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | tuple | dict | set):
        return bool(value)
    return True


def _finding(rule: str, s: Subject, explanation: str, details: dict[str, Any], *,
             stage_key: str | None = None, action_key: str | None = None) -> Finding:
    return Finding(rule, s.facts.deal_id, SEVERITY[rule], explanation, stage_key, action_key,
                   None, details)


def _history(s: Subject) -> dict[str, str]:
    return {"history": "derived"} if s.facts.history_derived else {}


def _day(s: Subject, at: datetime | None) -> str:
    return s.run.cal.local_date(at).isoformat() if at else s.run.texts.say("word.unknown_date")


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _move_details(move: Move) -> dict[str, Any]:
    return {"from": move.from_key, "to": move.to_key, "at": move.at.isoformat(),
            "transition_id": move.source_id or None}


# -- missing_action ----------------------------------------------------------------------


def missing_action(s: Subject) -> Sequence[Finding]:
    """Past an active stage (left it forward, or won in it) without a required action."""
    passed = _passed_stages(s)
    if not passed:
        return ()
    first_done = _first_done_by_kind(s.facts.activities)
    findings: list[Finding] = []
    for stage_key, exit_ in passed.items():
        missing = [action for action in s.run.index.actions[stage_key]
                   if not _has_evidence(action, exit_.at, first_done, s.facts.fields)]
        if missing:
            findings.extend(_missing_action_findings(s, stage_key, exit_, missing))
    return findings


def _passed_stages(s: Subject) -> dict[str, Transition]:
    """Stage -> how the deal left it: its last forward transition, or the win."""
    walk, order = s.walked, s.run.index.order
    here = order.get(walk.position) if walk.position else None
    passed = {k: m for k, m in walk.left_forward.items() if here is None or order[k] < here}
    if s.facts.status == WON and walk.position is not None:
        won_at = s.facts.won_at or s.run.cal.now
        passed[walk.position] = Transition(walk.position, WON, won_at)
    return passed


def _first_done_by_kind(activities: Iterable[ActivityFact]) -> dict[str, datetime]:
    """Activity kind -> earliest done time (an untimed done activity counts as long ago)."""
    first: dict[str, datetime] = {}
    for a in activities:
        if a.done and not a.is_note:
            at = a.done_at or a.created_at or LONG_AGO
            if a.kind not in first or at < first[a.kind]:
                first[a.kind] = at
    return first


def _has_evidence(action: ActionSpec, deadline: datetime, first_done: dict[str, datetime],
                  fields: dict[str, Any]) -> bool:
    for kind in action.kinds:
        at = first_done.get(kind)
        if at is not None and at <= deadline:
            return True
    return action.field is not None and is_present(fields.get(action.field))


def _missing_action_findings(s: Subject, stage_key: str, exit_: Transition,
                             missing: list[ActionSpec]) -> Iterator[Finding]:
    t, title, day = s.run.texts, s.run.title, _day(s, exit_.at)
    message = "missing_action.won" if exit_.to_key == WON else "missing_action.left"
    left_at, history = exit_.at.isoformat(), _history(s)
    for action in missing:
        details = {"stage": stage_key, "action": action.key, "left_at": left_at,
                   "left_to": exit_.to_key, "transition_id": exit_.source_id or None,
                   "evidence": {"activity_types": list(action.kinds), "field": action.field},
                   **history}
        explanation = t.say(message, stage=title(stage_key), to_stage=title(exit_.to_key),
                            day=day, action=s.run.action_titles.get(action.key, action.title),
                            gap=_gap(action, t))
        yield _finding("missing_action", s, explanation, details, stage_key=stage_key,
                       action_key=action.key)


# -- history rules -----------------------------------------------------------------------


def skipped_stage(s: Subject) -> Sequence[Finding]:
    """A forward transition jumped over a required stage; one finding per skipped stage."""
    return [_skipped_finding(s, key, move) for key, move in s.walked.skips]


def _skipped_finding(s: Subject, key: str, move: Move) -> Finding:
    title = s.run.title
    explanation = s.run.texts.say("skipped_stage", from_stage=title(move.from_key),
                                  to_stage=title(move.to_key), day=_day(s, move.at),
                                  stage=title(key))
    details = {"stage": key, **_move_details(move), **_history(s)}
    return _finding("skipped_stage", s, explanation, details, stage_key=key)


def backward_move(s: Subject) -> Sequence[Finding]:
    """Moved back to an earlier active stage; one finding per deal, naming the first move
    (its key stays stable as history grows) and listing all of them."""
    moves = s.walked.backward
    if not moves:
        return ()
    first, title, t = moves[0], s.run.title, s.run.texts
    more = t.say("backward_move.more", count=len(moves) - 1) if len(moves) > 1 else ""
    explanation = t.say("backward_move", from_stage=title(first.from_key),
                        to_stage=title(first.to_key), day=_day(s, first.at), more=more)
    details = {**_move_details(first), "count": len(moves),
               "moves": [_move_details(m) for m in moves], **_history(s)}
    return (_finding("backward_move", s, explanation, details, stage_key=first.to_key),)


# -- open-deal rules ---------------------------------------------------------------------


def stalled(s: Subject) -> Sequence[Finding]:
    """Open and in its current active stage longer than the stage's ``max_days``."""
    f = s.facts
    cutoff = s.run.stalled_before.get(f.stage_key or "")
    entered_at = s.walked.entered_at
    if f.status != "open" or f.stage_key is None or cutoff is None or entered_at >= cutoff:
        return ()
    days, limit = s.run.cal.days_since(entered_at), s.run.index.max_days[f.stage_key]
    explanation = s.run.texts.say("stalled", stage=s.run.title(f.stage_key), days=days,
                                  day=_day(s, entered_at), limit=limit)
    details = {"stage": f.stage_key, "entered_at": entered_at.isoformat(),
               "days": days, "max_days": limit, **_history(s)}
    return (_finding("stalled", s, explanation, details, stage_key=f.stage_key),)


def inactive(s: Subject) -> Sequence[Finding]:
    """Open in an active stage, with no touch for more than the book's ``inactive_days``."""
    f, cutoff = s.facts, s.run.inactive_before
    if f.status != "open" or f.stage_key == DEFERRED or f.created_at >= cutoff:
        return ()
    last = _last_touch(s)
    if last >= cutoff:
        return ()
    return (inactive_finding(s, last),)


def inactive_finding(s: Subject, last: datetime) -> Finding:
    """The ``inactive`` finding of an open deal last touched at ``last``."""
    f = s.facts
    days, limit = s.run.cal.days_since(last), s.run.index.book.inactive_days
    explanation = s.run.texts.say("inactive", days=days, day=_day(s, last), limit=limit)
    details = {"stage": f.stage_key, "last_touch_at": last.isoformat(), "days": days,
               "inactive_days": limit, **_history(s)}
    return _finding("inactive", s, explanation, details, stage_key=f.stage_key)


def _last_touch(s: Subject) -> datetime:
    """Latest of: creation, a stage change, a done activity, a note."""
    last = s.facts.created_at
    last_move_at = s.walked.last_move_at
    if last_move_at is not None and last_move_at > last:
        last = last_move_at
    for a in s.facts.activities:
        at = (a.created_at or a.done_at) if a.is_note else (
            (a.done_at or a.created_at) if a.done else None)
        if at is not None and at > last:
            last = at
    return last


def no_next_step(s: Subject) -> Sequence[Finding]:
    """Open in an active stage with no planned activity due today or later."""
    f, today_start = s.facts, s.run.today_start
    if f.status != "open" or f.stage_key == DEFERRED:
        return ()
    overdue = 0
    for a in f.activities:
        if a.done or a.is_note or a.due_at is None:
            continue
        if a.due_at >= today_start:
            return ()
        overdue += 1
    return (no_next_step_finding(s, overdue),)


def no_next_step_finding(s: Subject, overdue: int) -> Finding:
    """The ``no_next_step`` finding of an open deal with ``overdue`` past-due plans."""
    f = s.facts
    today = s.run.cal.today.isoformat()
    explanation = s.run.texts.say("no_next_step", stage=s.run.title(f.stage_key), today=today)
    details = {"stage": f.stage_key, "today": today, "overdue_planned": overdue}
    return _finding("no_next_step", s, explanation, details, stage_key=f.stage_key)


# -- passive statuses --------------------------------------------------------------------


def bad_loss_reason(s: Subject) -> Sequence[Finding]:
    """Lost with no reason, a reason outside the catalogue, or one not allowed at the last
    active stage before the loss (that check is skipped when the stage is unknown)."""
    f = s.facts
    if f.status != "lost":
        return ()
    stage = s.walk.position if s.walk is not None else None
    problem = _loss_problem(f, s.run.index, stage)
    if problem is None:
        return ()
    details: dict[str, Any] = {"problem": problem, "reason_raw": f.lost_reason_raw,
                               "reason_key": f.lost_reason_key, "lost_from": stage,
                               "lost_at": _iso(f.lost_at)}
    if problem == "not_allowed_at_stage" and f.lost_reason_key is not None:
        details |= {"allowed_stages": s.run.index.allowed_stages(f.lost_reason_key),
                    **_history(s)}
    explanation = _loss_explanation(s, problem, stage)
    return (_finding("bad_loss_reason", s, explanation, details, stage_key=stage),)


def _loss_problem(f: DealFacts, index: BookIndex, stage: str | None) -> str | None:
    key = f.lost_reason_key
    if key is None:
        return "not_in_catalogue" if is_present(f.lost_reason_raw) else "empty"
    if key not in index.reasons:
        return "not_in_catalogue"
    allowed = index.reasons[key]
    if allowed is not None and f.stage_key == DEFERRED and DEFERRED in allowed:
        return None  # lost while deferred, with a reason the book allows there
    if allowed is not None and stage is not None and stage not in allowed:
        return "not_allowed_at_stage"
    return None


def _loss_explanation(s: Subject, problem: str, stage: str | None) -> str:
    f, index, t = s.facts, s.run.index, s.run.texts
    day = _day(s, f.lost_at)
    reason = f.lost_reason_raw or f.lost_reason_key
    allowed = ""
    if problem == "not_allowed_at_stage" and f.lost_reason_key is not None:
        quote = "«{}»" if t.language == "ru" else "'{}'"
        allowed = t.or_list(quote.format(s.run.title(k))
                            for k in index.allowed_stages(f.lost_reason_key))
    return t.say(f"bad_loss_reason.{problem}", day=day, reason=reason,
                 stage=s.run.title(stage), allowed=allowed)


def deferred_no_reminder(s: Subject) -> Sequence[Finding]:
    """Deferred with no reminder activity done in the last, or planned for the next,
    ``remind_every_days`` days."""
    f, run = s.facts, s.run
    if f.status != "open" or f.stage_key != DEFERRED:
        return ()
    kinds = run.index.reminder_kinds
    for a in f.activities:
        if a.is_note or a.kind not in kinds:
            continue
        if a.done and (a.done_at or a.created_at or LONG_AGO) >= run.reminders_from:
            return ()
        if not a.done and a.due_at and run.today_start <= a.due_at < run.reminders_until:
            return ()
    return (deferred_no_reminder_finding(s),)


def deferred_no_reminder_finding(s: Subject) -> Finding:
    """The ``deferred_no_reminder`` finding of a deferred deal."""
    run = s.run
    kinds = run.index.reminder_kinds
    days = run.index.book.passive.deferred.remind_every_days
    explanation = run.texts.say("deferred_no_reminder", kinds=run.texts.or_list(kinds),
                                days=days)
    details = {"remind_every_days": days, "deferred_since": s.walked.entered_at.isoformat(),
               "reminder_activity_types": list(kinds), **_history(s)}
    return _finding("deferred_no_reminder", s, explanation, details, stage_key=DEFERRED)


def won_no_followup(s: Subject) -> Sequence[Finding]:
    """Won more than ``followup_within_days`` ago, and no follow-up activity was created
    for the deal or its company after the win (at the win's very moment counts: CRM robots
    create the follow-up task on the win itself)."""
    f, run = s.facts, s.run
    if f.status != WON or f.won_at is None or f.won_at >= run.followup_before:
        return ()
    kinds = run.index.followup_kinds
    for a in (*f.activities, *f.company_activities):
        created = a.created_at or a.done_at or a.due_at
        if not a.is_note and a.kind in kinds and created is not None and created >= f.won_at:
            return ()
    return (won_no_followup_finding(s),)


def won_no_followup_finding(s: Subject) -> Finding:
    """The ``won_no_followup`` finding of a deal won (``won_at``) without a follow-up."""
    f, run = s.facts, s.run
    assert f.won_at is not None
    kinds = run.index.followup_kinds
    days, limit = run.cal.days_since(f.won_at), run.index.book.passive.won.followup_within_days
    explanation = run.texts.say("won_no_followup", day=_day(s, f.won_at), days=days,
                                kinds=run.texts.or_list(kinds), limit=limit)
    details = {"won_at": f.won_at.isoformat(), "days": days, "followup_within_days": limit,
               "company_id": f.company_id}
    return _finding("won_no_followup", s, explanation, details, stage_key=WON)


# -- deal-level data ---------------------------------------------------------------------


def no_lead_source(s: Subject) -> Sequence[Finding]:
    """The canonical ``lead_source`` field is empty (every status)."""
    if is_present(s.facts.fields.get(LEAD_SOURCE_FIELD)):
        return ()
    return (no_lead_source_finding(s),)


def no_lead_source_finding(s: Subject) -> Finding:
    explanation = s.run.texts.say("no_lead_source")
    return _finding("no_lead_source", s, explanation, {"field": LEAD_SOURCE_FIELD})


def no_contact(s: Subject) -> Sequence[Finding]:
    """No contact person is linked to the deal (every status)."""
    if s.facts.contact_count > 0:
        return ()
    explanation = s.run.texts.say("no_contact")
    return (_finding("no_contact", s, explanation, {"contact_count": s.facts.contact_count}),)


def unmapped_stage(crm_stage: str, deal_ids: Sequence[str], count: int,
                   t: Texts | None = None) -> Finding:
    """One finding per CRM stage with no mapping (not per deal)."""
    explanation = (t or texts()).say("unmapped_stage", crm_stage=crm_stage, count=count)
    details = {"deals": count, "example_deal_ids": list(deal_ids)}
    return Finding(rule="unmapped_stage", deal_id=None, severity=SEVERITY["unmapped_stage"],
                   explanation=explanation, crm_stage=crm_stage, details=details)


#: Every per-deal rule, in the spec's order.
RULES: tuple[Rule, ...] = (
    missing_action, skipped_stage, backward_move, stalled, inactive, no_next_step,
    bad_loss_reason, no_lead_source, no_contact, deferred_no_reminder, won_no_followup,
)
#: The rules that still make sense for a deal whose stage is not mapped.
UNMAPPED_RULES: tuple[Rule, ...] = (bad_loss_reason, no_lead_source, no_contact,
                                    won_no_followup)
RULE_CODES = tuple(SEVERITY)
