"""One test class per audit rule: the positive case, the boundaries, the suppressions."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syncd.audit import DEFERRED, ActivityFact, AuditStats, DealFacts, Transition, audit_deal
from syncd.audit.facts import Finding
from syncd.salesbook import SalesBook, load_salesbook

BOOKS = Path(__file__).resolve().parents[1] / "config" / "salesbooks"
B2B = load_salesbook(BOOKS / "b2b-services-9.yaml")
SIMPLE = load_salesbook(BOOKS / "simple-product-5.yaml")
CANONICAL = load_salesbook(BOOKS / "canonical-5.yaml")
MOSCOW = ZoneInfo("Europe/Moscow")  # UTC+3 all year
NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)


# -- builders ----------------------------------------------------------------------------


def ago(days: float, hours: float = 0) -> datetime:
    return NOW - timedelta(days=days, hours=hours)


def ahead(days: float, hours: float = 0) -> datetime:
    return NOW + timedelta(days=days, hours=hours)


def done(kind: str, when: datetime, **kw) -> ActivityFact:
    return ActivityFact(id=kw.pop("id", f"{kind}-{when:%m%d%H%M}"), kind=kind, done=True,
                        done_at=when, created_at=kw.pop("created_at", when), **kw)


def planned(kind: str, due: datetime | None, **kw) -> ActivityFact:
    return ActivityFact(id=kw.pop("id", f"plan-{kind}"), kind=kind, done=False, due_at=due,
                        created_at=kw.pop("created_at", ago(20)), **kw)


def note(when: datetime) -> ActivityFact:
    return ActivityFact(id=f"note-{when:%m%d}", kind="note", done=True, done_at=when,
                        created_at=when, is_note=True)


def move(from_key: str | None, to_key: str | None, when: datetime, sid: str = "") -> Transition:
    return Transition(from_key, to_key, when, sid or f"h-{from_key}-{to_key}")


def deal(**kw) -> DealFacts:
    """A clean open deal in 'briefing' (no finding at NOW) unless overridden."""
    base = dict(deal_id="D1", title="Portal", status="open", stage_key="briefing",
                crm_stage="Sales / Briefing", created_at=ago(3), contact_count=1,
                fields={"lead_source": "website"}, activities=[planned("call", ahead(1))])
    return DealFacts(**(base | kw))


def audit(facts: DealFacts, *, book: SalesBook = B2B, now: datetime = NOW,
          tz: ZoneInfo = UTC, stats: AuditStats | None = None) -> list[Finding]:
    return audit_deal(facts, book, now, tz, stats=stats)


def of_rule(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def keyed(findings: list[Finding], rule: str) -> set[tuple[str | None, str | None]]:
    return {(f.stage_key, f.action_key) for f in of_rule(findings, rule)}


def test_the_baseline_deal_is_clean() -> None:
    assert audit(deal()) == []


# -- missing_action ----------------------------------------------------------------------


class TestMissingAction:
    LEFT = ago(5)

    def left_briefing(self, **kw) -> DealFacts:
        history = [move(None, "briefing", ago(9)), move("briefing", "estimate", self.LEFT)]
        return deal(stage_key="estimate", created_at=ago(9), history=history, **kw)

    def test_one_row_per_missing_action_of_the_stage_left(self) -> None:
        findings = of_rule(audit(self.left_briefing()), "missing_action")
        assert {(f.stage_key, f.action_key) for f in findings} == {
            ("briefing", "discovery_call"), ("briefing", "brief_meeting")}
        first = findings[0]
        assert first.severity == "error"
        assert first.details["left_at"] == self.LEFT.isoformat()
        assert first.details["left_to"] == "estimate"
        assert "Briefing" in first.explanation and "Estimate" in first.explanation

    def test_evidence_before_leaving_counts(self) -> None:
        facts = self.left_briefing(activities=[done("call", ago(7)), planned("call", ahead(1))])
        assert keyed(audit(facts), "missing_action") == {("briefing", "brief_meeting")}

    def test_evidence_at_the_exact_leave_time_counts(self) -> None:
        facts = self.left_briefing(activities=[done("meeting", self.LEFT),
                                               planned("call", ahead(1))])
        assert keyed(audit(facts), "missing_action") == set()

    def test_evidence_after_leaving_does_not_count(self) -> None:
        late = self.LEFT + timedelta(minutes=1)
        facts = self.left_briefing(activities=[done("meeting", late), planned("call", ahead(1))])
        assert keyed(audit(facts), "missing_action") == {
            ("briefing", "discovery_call"), ("briefing", "brief_meeting")}

    def test_planned_activities_and_notes_are_not_evidence(self) -> None:
        facts = self.left_briefing(activities=[
            planned("meeting", ago(6)), note(ago(7)), planned("call", ahead(1))])
        assert len(of_rule(audit(facts), "missing_action")) == 2

    def test_a_filled_field_is_evidence_and_a_blank_one_is_not(self) -> None:
        history = [move("estimate", "negotiation", ago(2))]
        base = dict(stage_key="negotiation", created_at=ago(9), history=history)
        filled = deal(**base, fields={"lead_source": "web", "estimate_link": "https://x"})
        blank = deal(**base, fields={"lead_source": "web", "estimate_link": "  "})
        assert keyed(audit(filled), "missing_action") == set()
        assert keyed(audit(blank), "missing_action") == {("estimate", "estimate_sent")}

    def test_the_current_stage_is_not_checked_while_open(self) -> None:
        assert of_rule(audit(deal(stage_key="contract", history=[])), "missing_action") == []

    def test_a_won_deal_is_past_the_stage_it_was_won_in(self) -> None:
        won = deal(status="won", stage_key="contract", won_at=ago(1), created_at=ago(5),
                   history=[move(None, "contract", ago(5))])
        finding, = of_rule(audit(won), "missing_action")
        assert (finding.stage_key, finding.action_key) == ("contract", "contract_signed")
        assert finding.details["left_to"] == "won"
        assert "was won at stage 'Contract signing'" in finding.explanation

    def test_a_deal_back_in_a_stage_is_not_past_it(self) -> None:
        history = [move("briefing", "estimate", ago(6)), move("estimate", "briefing", ago(4))]
        facts = deal(created_at=ago(9), history=history)
        assert of_rule(audit(facts), "missing_action") == []

    def test_the_last_forward_exit_is_the_deadline(self) -> None:
        history = [move("briefing", "estimate", ago(8)), move("estimate", "briefing", ago(6)),
                   move("briefing", "estimate", ago(2))]
        facts = deal(stage_key="estimate", created_at=ago(9), history=history,
                     activities=[done("meeting", ago(4)), planned("call", ahead(1))])
        assert keyed(audit(facts), "missing_action") == set()

    def test_evidence_while_deferred_counts_for_the_stage_deferred_from(self) -> None:
        history = [move("briefing", DEFERRED, ago(8)), move(DEFERRED, "estimate", ago(2))]
        facts = deal(stage_key="estimate", created_at=ago(9), history=history,
                     activities=[done("meeting", ago(5)), planned("call", ahead(1))])
        assert keyed(audit(facts), "missing_action") == set()
        no_evidence = replace(facts, activities=[planned("call", ahead(1))])
        assert {f.details["left_at"] for f in of_rule(audit(no_evidence), "missing_action")} \
            == {ago(2).isoformat()}

    def test_a_lost_deal_is_checked_for_stages_it_left_not_where_it_was_lost(self) -> None:
        facts = deal(status="lost", stage_key="estimate", lost_at=ago(1),
                     lost_reason_key="no_response", lost_reason_raw="Ghosted",
                     history=[move("briefing", "estimate", ago(2))])
        assert {s for s, _ in keyed(audit(facts), "missing_action")} == {"briefing"}

    def test_derived_history_is_said_in_details(self) -> None:
        facts = self.left_briefing(history_derived=True)
        assert all(f.details["history"] == "derived"
                   for f in of_rule(audit(facts), "missing_action"))


# -- skipped_stage -----------------------------------------------------------------------


class TestSkippedStage:
    def test_one_row_per_skipped_required_stage(self) -> None:
        facts = deal(stage_key="contract", history=[move("briefing", "contract", ago(1), "h9")])
        findings = of_rule(audit(facts), "skipped_stage")
        assert [f.stage_key for f in findings] == ["estimate", "negotiation"]
        assert findings[0].severity == "error"
        assert findings[0].details | {"stage": None} == {
            "stage": None, "from": "briefing", "to": "contract", "at": ago(1).isoformat(),
            "transition_id": "h9"}
        assert "skipping the required stage 'Estimate'" in findings[0].explanation

    def test_adjacent_moves_skip_nothing(self) -> None:
        facts = deal(stage_key="estimate", history=[move("briefing", "estimate", ago(1))])
        assert of_rule(audit(facts), "skipped_stage") == []

    def test_optional_stages_may_be_skipped(self) -> None:
        facts = deal(stage_key="closing", history=[move("presentation", "closing", ago(1))])
        assert of_rule(audit(facts, book=SIMPLE), "skipped_stage") == []
        entry = deal(stage_key="deal_discussion",
                     history=[move("inbound_acquisition", "deal_discussion", ago(1))])
        assert of_rule(audit(entry, book=CANONICAL), "skipped_stage") == []

    def test_the_creation_stage_skips_nothing(self) -> None:
        created_late = deal(stage_key="contract", history=[move(None, "contract", ago(3))])
        assert of_rule(audit(created_late), "skipped_stage") == []

    def test_a_stage_visited_before_is_not_skipped_again(self) -> None:
        history = [move("briefing", "estimate", ago(9)), move("estimate", "negotiation", ago(8)),
                   move("negotiation", "estimate", ago(7)), move("estimate", "contract", ago(6))]
        facts = deal(stage_key="contract", created_at=ago(10), history=history)
        assert of_rule(audit(facts), "skipped_stage") == []

    def test_the_same_stage_skipped_twice_is_one_row(self) -> None:
        history = [move("briefing", "negotiation", ago(9)), move("negotiation", "briefing", ago(8)),
                   move("briefing", "negotiation", ago(7))]
        facts = deal(stage_key="negotiation", created_at=ago(10), history=history)
        assert [f.stage_key for f in of_rule(audit(facts), "skipped_stage")] == ["estimate"]

    def test_a_jump_out_of_deferred_counts_from_the_stage_deferred_from(self) -> None:
        history = [move("briefing", DEFERRED, ago(5)), move(DEFERRED, "negotiation", ago(1))]
        facts = deal(stage_key="negotiation", created_at=ago(6), history=history)
        assert [f.stage_key for f in of_rule(audit(facts), "skipped_stage")] == ["estimate"]

    def test_moves_through_unmapped_stages_are_not_judged(self) -> None:
        history = [move("briefing", None, ago(5)), move(None, "contract", ago(1))]
        facts = deal(stage_key="contract", created_at=ago(6), history=history)
        assert of_rule(audit(facts), "skipped_stage") == []


# -- backward_move -----------------------------------------------------------------------


class TestBackwardMove:
    def test_a_move_to_an_earlier_stage_is_a_warning(self) -> None:
        facts = deal(stage_key="estimate",
                     history=[move("contract", "estimate", ago(1), "h7")])
        finding, = of_rule(audit(facts), "backward_move")
        assert finding.severity == "warning"
        assert finding.stage_key == "estimate"
        assert finding.details["from"] == "contract"
        assert finding.details["transition_id"] == "h7"
        assert "moved back from 'Contract signing' to 'Estimate'" in finding.explanation

    def test_several_backward_moves_are_one_row_naming_the_first(self) -> None:
        history = [move("estimate", "briefing", ago(3)), move("briefing", "estimate", ago(2)),
                   move("estimate", "briefing", ago(1))]
        finding, = of_rule(audit(deal(created_at=ago(4), history=history)), "backward_move")
        assert finding.details["count"] == 2
        assert [m["at"] for m in finding.details["moves"]] == [ago(3).isoformat(),
                                                               ago(1).isoformat()]
        assert "1 more time" in finding.explanation

    def test_forward_and_same_stage_moves_are_not_backward(self) -> None:
        history = [move("briefing", "estimate", ago(2)), move("estimate", "estimate", ago(1))]
        assert of_rule(audit(deal(stage_key="estimate", history=history)), "backward_move") == []

    def test_returning_from_deferred_to_an_earlier_stage_is_backward(self) -> None:
        history = [move("negotiation", DEFERRED, ago(3)), move(DEFERRED, "briefing", ago(1))]
        facts = deal(created_at=ago(4), history=history)
        assert [f.details["from"] for f in of_rule(audit(facts), "backward_move")] == [
            "negotiation"]


# -- stalled -----------------------------------------------------------------------------


class TestStalled:
    def in_briefing_since(self, entered: datetime, **kw) -> DealFacts:
        return deal(created_at=entered, history=[move(None, "briefing", entered)],
                    activities=[done("call", ago(1)), planned("call", ahead(1))], **kw)

    def test_exactly_max_days_is_not_stalled_and_one_more_is(self) -> None:
        assert of_rule(audit(self.in_briefing_since(ago(7))), "stalled") == []
        finding, = of_rule(audit(self.in_briefing_since(ago(8))), "stalled")
        assert finding.details | {"history": None} == {
            "stage": "briefing", "entered_at": ago(8).isoformat(), "days": 8, "max_days": 7,
            "history": None}
        assert finding.stage_key == "briefing"
        assert "for 8 days" in finding.explanation and "limit of 7 days" in finding.explanation

    def test_days_are_calendar_days_in_the_tenant_timezone(self) -> None:
        # 21:30 UTC on June 7 is already June 8 in Moscow; at NOW (June 15, 15:00 Moscow)
        # that is 7 calendar days in Moscow but 8 in UTC.
        entered = datetime(2024, 6, 7, 21, 30, tzinfo=UTC)
        facts = self.in_briefing_since(entered)
        assert of_rule(audit(facts, tz=MOSCOW), "stalled") == []
        assert len(of_rule(audit(facts, tz=UTC), "stalled")) == 1

    def test_a_new_calendar_day_counts_even_minutes_later(self) -> None:
        entered = datetime(2024, 6, 7, 20, 59, tzinfo=UTC)  # 23:59 Moscow, June 7
        facts = self.in_briefing_since(entered)
        now = datetime(2024, 6, 14, 21, 1, tzinfo=UTC)  # 00:01 Moscow, June 15: 8 days
        assert len(of_rule(audit(facts, tz=MOSCOW, now=now), "stalled")) == 1

    def test_age_counts_from_the_last_move_into_the_stage(self) -> None:
        history = [move("estimate", "briefing", ago(20)), move("briefing", "estimate", ago(15)),
                   move("estimate", "briefing", ago(2))]
        facts = deal(created_at=ago(30), history=history,
                     activities=[done("call", ago(1)), planned("call", ahead(1))])
        assert of_rule(audit(facts), "stalled") == []

    def test_a_move_within_the_same_stage_does_not_restart_the_age(self) -> None:
        history = [move(None, "briefing", ago(9)), move("briefing", "briefing", ago(2))]
        facts = deal(created_at=ago(9), history=history,
                     activities=[done("call", ago(1)), planned("call", ahead(1))])
        assert of_rule(audit(facts), "stalled")[0].details["days"] == 9

    def test_with_no_history_the_age_counts_from_creation(self) -> None:
        facts = deal(created_at=ago(8), activities=[done("call", ago(1)),
                                                     planned("call", ahead(1))])
        assert len(of_rule(audit(facts), "stalled")) == 1

    def test_derived_history_is_said(self) -> None:
        facts = self.in_briefing_since(ago(8), history_derived=True)
        assert of_rule(audit(facts), "stalled")[0].details["history"] == "derived"

    def test_only_open_deals_in_active_stages_stall(self) -> None:
        old = ago(40)
        won = self.in_briefing_since(old, status="won", won_at=ago(1))
        deferred = self.in_briefing_since(old, stage_key=DEFERRED)
        assert of_rule(audit(won), "stalled") == []
        assert of_rule(audit(deferred), "stalled") == []

    def test_a_future_snooze_suppresses_and_is_recorded(self) -> None:
        facts = self.in_briefing_since(ago(8), snooze_until=date(2024, 6, 16),
                                       snooze_reason="Champion on holiday")
        stats = AuditStats()
        assert of_rule(audit(facts, stats=stats), "stalled") == []
        hidden, = stats.suppressed
        assert hidden.finding.rule == "stalled"
        assert (hidden.snooze_until, hidden.snooze_reason) == (date(2024, 6, 16),
                                                               "Champion on holiday")

    def test_a_snooze_ending_today_no_longer_suppresses(self) -> None:
        facts = self.in_briefing_since(ago(8), snooze_until=NOW.date())
        assert len(of_rule(audit(facts), "stalled")) == 1


# -- inactive ----------------------------------------------------------------------------


class TestInactive:
    def quiet_since(self, created: datetime, activities: list[ActivityFact] | None = None,
                    **kw) -> DealFacts:
        acts = [planned("call", ahead(1), created_at=created), *(activities or [])]
        return deal(**({"stage_key": "in_progress"} | kw), created_at=created, activities=acts)

    def test_more_than_inactive_days_without_a_touch(self) -> None:
        assert of_rule(audit(self.quiet_since(ago(14))), "inactive") == []
        finding, = of_rule(audit(self.quiet_since(ago(15))), "inactive")
        assert finding.severity == "error"
        assert (finding.details["days"], finding.details["inactive_days"]) == (15, 14)
        assert finding.details["last_touch_at"] == ago(15).isoformat()

    @pytest.mark.parametrize("touch", [
        done("email", ago(3)), note(ago(3)),
    ], ids=["done activity", "note"])
    def test_a_done_activity_or_a_note_is_a_touch(self, touch: ActivityFact) -> None:
        assert of_rule(audit(self.quiet_since(ago(30), [touch])), "inactive") == []

    def test_a_stage_change_is_a_touch(self) -> None:
        facts = self.quiet_since(ago(30), history=[move("contract", "in_progress", ago(3))])
        assert of_rule(audit(facts), "inactive") == []

    def test_planned_activities_are_not_touches(self) -> None:
        facts = self.quiet_since(ago(30), [planned("meeting", ahead(2), created_at=ago(2))])
        assert len(of_rule(audit(facts), "inactive")) == 1

    def test_days_are_counted_in_the_tenant_timezone(self) -> None:
        touch = datetime(2024, 5, 31, 21, 30, tzinfo=UTC)  # June 1 in Moscow
        facts = self.quiet_since(ago(40), [done("call", touch)])
        assert of_rule(audit(facts, tz=MOSCOW), "inactive") == []  # 14 days in Moscow
        assert len(of_rule(audit(facts, tz=UTC), "inactive")) == 1  # 15 days in UTC

    def test_deferred_and_closed_deals_are_not_inactive(self) -> None:
        assert of_rule(audit(self.quiet_since(ago(30), stage_key=DEFERRED)), "inactive") == []
        lost = self.quiet_since(ago(30), status="lost", lost_at=ago(20))
        assert of_rule(audit(lost), "inactive") == []

    def test_a_snooze_suppresses(self) -> None:
        facts = self.quiet_since(ago(30), snooze_until=date(2024, 7, 1),
                                 snooze_reason="Budget freeze until July")
        assert of_rule(audit(facts), "inactive") == []


# -- no_next_step ------------------------------------------------------------------------


class TestNoNextStep:
    def test_an_open_deal_without_a_planned_activity(self) -> None:
        finding, = of_rule(audit(deal(activities=[done("call", ago(1))])), "no_next_step")
        assert finding.stage_key == "briefing"
        assert finding.details == {"stage": "briefing", "today": "2024-06-15",
                                   "overdue_planned": 0}

    def test_due_today_counts_even_if_the_hour_has_passed(self) -> None:
        facts = deal(activities=[planned("call", ago(0, hours=3))])
        assert of_rule(audit(facts), "no_next_step") == []

    def test_overdue_planned_activities_are_not_a_next_step(self) -> None:
        facts = deal(activities=[planned("call", ago(1))])
        assert of_rule(audit(facts), "no_next_step")[0].details["overdue_planned"] == 1

    def test_undated_planned_activities_and_notes_are_not_a_next_step(self) -> None:
        facts = deal(activities=[planned("task", None), note(ago(1))])
        assert len(of_rule(audit(facts), "no_next_step")) == 1

    def test_today_is_the_tenant_timezone_day(self) -> None:
        due = datetime(2024, 6, 14, 22, 0, tzinfo=UTC)  # June 15, 01:00 in Moscow
        facts = deal(activities=[planned("call", due)])
        assert of_rule(audit(facts, tz=MOSCOW), "no_next_step") == []
        assert len(of_rule(audit(facts, tz=UTC), "no_next_step")) == 1

    def test_only_open_deals_in_active_stages(self) -> None:
        assert of_rule(audit(deal(stage_key=DEFERRED, activities=[])), "no_next_step") == []
        won = deal(status="won", won_at=ago(1), activities=[])
        assert of_rule(audit(won), "no_next_step") == []

    def test_a_snooze_suppresses(self) -> None:
        facts = deal(activities=[], snooze_until=date(2024, 6, 20), snooze_reason="Tender")
        stats = AuditStats()
        assert of_rule(audit(facts, stats=stats), "no_next_step") == []
        assert [s.finding.rule for s in stats.suppressed] == ["no_next_step"]


# -- bad_loss_reason ---------------------------------------------------------------------


class TestBadLossReason:
    def lost_at(self, stage: str, key: str | None, raw: str | None, **kw) -> DealFacts:
        return deal(status="lost", stage_key=stage, lost_at=ago(1), lost_reason_key=key,
                    lost_reason_raw=raw, **kw)

    def problem(self, facts: DealFacts) -> str | None:
        found = of_rule(audit(facts), "bad_loss_reason")
        return found[0].details["problem"] if found else None

    def test_no_reason(self) -> None:
        assert self.problem(self.lost_at("estimate", None, None)) == "empty"
        assert self.problem(self.lost_at("estimate", None, "   ")) == "empty"

    def test_a_reason_outside_the_catalogue(self) -> None:
        assert self.problem(self.lost_at("estimate", None, "Too busy")) == "not_in_catalogue"
        assert self.problem(self.lost_at("estimate", "bogus", "Bogus")) == "not_in_catalogue"

    def test_a_reason_not_allowed_at_the_stage_lost_from(self) -> None:
        facts = self.lost_at("briefing", "price", "Too expensive")
        finding, = of_rule(audit(facts), "bad_loss_reason")
        assert finding.details["allowed_stages"] == ["estimate", "negotiation"]
        assert finding.stage_key == "briefing"
        assert "allowed only at 'Estimate' or 'Awaiting decision" in finding.explanation

    def test_allowed_reasons_pass(self) -> None:
        assert self.problem(self.lost_at("estimate", "price", "Price")) is None
        assert self.problem(self.lost_at("warranty", "no_response", "Silent")) is None

    def test_lost_from_deferred_uses_the_last_active_stage(self) -> None:
        history = [move("briefing", DEFERRED, ago(3))]
        facts = self.lost_at(DEFERRED, "price", "Price", history=history)
        assert self.problem(facts) == "not_allowed_at_stage"
        facts = self.lost_at(DEFERRED, "price", "Price",
                             history=[move("negotiation", DEFERRED, ago(3))])
        assert self.problem(facts) is None

    def test_lost_from_deferred_through_a_closed_stage_keeps_the_stage(self) -> None:
        # Bitrix24: UC_DEFER -> LOSE moves the deal into an unmapped closed stage (to_key None);
        # the deal is still judged as lost at deferred, from its last active stage.
        history = [move("briefing", DEFERRED, ago(3)), move(DEFERRED, None, ago(1))]
        finding, = of_rule(audit(self.lost_at(DEFERRED, "price", "Price", history=history)),
                           "bad_loss_reason")
        assert finding.details["problem"] == "not_allowed_at_stage"
        assert finding.stage_key == "briefing"
        history = [move("negotiation", DEFERRED, ago(3)), move(DEFERRED, None, ago(1))]
        assert self.problem(self.lost_at(DEFERRED, "price", "Price", history=history)) is None

    def test_open_deals_have_no_loss_reason_to_check(self) -> None:
        assert self.problem(deal()) is None


# -- no_lead_source / no_contact ---------------------------------------------------------


class TestNoLeadSource:
    @pytest.mark.parametrize("fields", [{}, {"lead_source": None}, {"lead_source": " "}])
    def test_an_empty_lead_source_is_flagged(self, fields: dict) -> None:
        finding, = of_rule(audit(deal(fields=fields)), "no_lead_source")
        assert finding.severity == "error"
        assert finding.details == {"field": "lead_source"}

    def test_closed_deals_are_flagged_too(self) -> None:
        won = deal(status="won", won_at=ago(1), fields={})
        assert len(of_rule(audit(won), "no_lead_source")) == 1

    def test_a_recorded_source_passes(self) -> None:
        assert of_rule(audit(deal(fields={"lead_source": "Referral"})), "no_lead_source") == []


class TestNoContact:
    def test_no_contact_person(self) -> None:
        finding, = of_rule(audit(deal(contact_count=0)), "no_contact")
        assert finding.explanation == "Deal has no contact person linked to it."

    def test_one_contact_is_enough(self) -> None:
        assert of_rule(audit(deal(contact_count=1)), "no_contact") == []


# -- deferred_no_reminder ----------------------------------------------------------------


class TestDeferredNoReminder:
    def deferred(self, *activities: ActivityFact, **kw) -> DealFacts:
        return deal(stage_key=DEFERRED, created_at=ago(60), activities=list(activities),
                    history=[move("negotiation", DEFERRED, ago(40))], **kw)

    def flagged(self, facts: DealFacts) -> bool:
        return bool(of_rule(audit(facts), "deferred_no_reminder"))

    def test_no_reminder_at_all(self) -> None:
        finding, = of_rule(audit(self.deferred()), "deferred_no_reminder")
        assert finding.stage_key == DEFERRED
        assert finding.details["deferred_since"] == ago(40).isoformat()
        assert finding.details["remind_every_days"] == 30

    def test_a_reminder_done_within_the_last_period(self) -> None:
        assert not self.flagged(self.deferred(done("call", ago(30))))
        assert self.flagged(self.deferred(done("call", ago(31))))

    def test_a_reminder_planned_within_the_next_period(self) -> None:
        assert not self.flagged(self.deferred(planned("task", ahead(30))))
        assert self.flagged(self.deferred(planned("task", ahead(31))))

    def test_overdue_notes_and_other_kinds_are_not_reminders(self) -> None:
        assert self.flagged(self.deferred(planned("call", ago(2))))
        assert self.flagged(self.deferred(note(ago(2))))
        assert self.flagged(self.deferred(done("sms", ago(2))))

    def test_a_snooze_does_not_suppress_it(self) -> None:
        assert self.flagged(self.deferred(snooze_until=date(2024, 7, 1)))

    def test_active_and_closed_deals_are_not_checked(self) -> None:
        assert not self.flagged(deal(activities=[planned("call", ahead(1))]))
        assert not self.flagged(self.deferred(status="lost", lost_at=ago(1),
                                              lost_reason_key="timing"))


# -- won_no_followup ---------------------------------------------------------------------


class TestWonNoFollowup:
    def won(self, won_days_ago: int, *activities: ActivityFact, **kw) -> DealFacts:
        return deal(status="won", stage_key="final_invoice", won_at=ago(won_days_ago),
                    created_at=ago(90), activities=list(activities), company_id="C1",
                    fields={"lead_source": "web"}, **kw)

    def flagged(self, facts: DealFacts) -> bool:
        return bool(of_rule(audit(facts), "won_no_followup"))

    def test_more_than_the_limit_without_a_followup(self) -> None:
        assert not self.flagged(self.won(14))
        finding, = of_rule(audit(self.won(15)), "won_no_followup")
        assert finding.details == {"won_at": ago(15).isoformat(), "days": 15,
                                   "followup_within_days": 14, "company_id": "C1"}

    def test_a_company_activity_created_after_the_win_counts(self) -> None:
        followup = planned("task", ahead(10), created_at=ago(10), id="c-task")
        assert not self.flagged(self.won(20, company_activities=[followup]))

    def test_a_deal_activity_created_after_the_win_counts(self) -> None:
        assert not self.flagged(self.won(20, done("call", ago(3))))

    def test_activities_created_before_the_win_do_not_count(self) -> None:
        early = planned("call", ahead(5), created_at=ago(20, hours=0.01))
        assert self.flagged(self.won(20, early))

    def test_a_task_created_by_the_win_itself_counts(self) -> None:
        robot = planned("task", ahead(5), created_at=ago(20))
        assert not self.flagged(self.won(20, robot))

    def test_an_untimed_creation_falls_back_to_done_time(self) -> None:
        untimed = ActivityFact(id="a", kind="email", done=True, done_at=ago(2))
        assert not self.flagged(self.won(20, untimed))

    def test_notes_and_other_kinds_are_not_followups(self) -> None:
        assert self.flagged(self.won(20, note(ago(2)), done("sms", ago(2))))


# -- unmapped deals ----------------------------------------------------------------------


class TestUnmappedDeal:
    def test_only_the_stage_free_rules_apply(self) -> None:
        facts = deal(stage_key=None, crm_stage="Sales / Limbo", created_at=ago(90),
                     status="lost", lost_at=ago(1), lost_reason_key="price",
                     lost_reason_raw="Price", contact_count=0, fields={}, activities=[],
                     history=[move("briefing", None, ago(80))])
        rules = {f.rule for f in audit(facts)}
        assert rules == {"no_lead_source", "no_contact"}  # price is not judged by stage

    def test_an_unknown_loss_reason_is_still_flagged(self) -> None:
        facts = deal(stage_key=None, status="lost", lost_at=ago(1), lost_reason_raw="Lazy")
        assert {f.rule for f in audit(facts)} == {"bad_loss_reason"}

    def test_a_stage_key_the_book_does_not_know_is_treated_as_unmapped(self) -> None:
        facts = deal(stage_key="no_such_stage", created_at=ago(90), activities=[])
        assert audit(facts) == []
