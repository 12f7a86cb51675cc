"""The audit driver: as-of truncation, unmapped-stage aggregation, streaming, statistics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syncd.audit import (
    DEFERRED,
    ActivityFact,
    AuditStats,
    DealFacts,
    Transition,
    as_of,
    audit_deal,
    audit_deals,
)
from syncd.audit.timeline import UNKNOWN_CRM_STAGE, Calendar
from syncd.salesbook import load_salesbook

BOOK = load_salesbook(Path(__file__).resolve().parents[1] / "config/salesbooks/b2b-services-9.yaml")
NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
T = [NOW - timedelta(days=d) for d in range(0, 40)]  # T[n]: n days before NOW


def deal(deal_id: str = "D1", **kw) -> DealFacts:
    base = dict(title="Deal", status="open", stage_key="estimate", crm_stage="Sales / Estimate",
                created_at=T[10], contact_count=1, fields={"lead_source": "web"})
    return DealFacts(deal_id=deal_id, **(base | kw))


def activity(id_: str, *, done: bool, created: datetime, done_at: datetime | None = None,
             due: datetime | None = None, kind: str = "call",
             is_note: bool = False) -> ActivityFact:
    return ActivityFact(id=id_, kind=kind, done=done, done_at=done_at, due_at=due,
                        created_at=created, is_note=is_note)


# -- as_of -------------------------------------------------------------------------------


class TestAsOf:
    def test_a_deal_created_after_now_does_not_exist_yet(self) -> None:
        assert as_of(deal(created_at=NOW + timedelta(seconds=1)), NOW) is None
        assert as_of(deal(created_at=NOW), NOW) is not None

    def test_a_deal_with_nothing_after_now_is_returned_unchanged(self) -> None:
        facts = deal(history=[Transition("briefing", "estimate", T[2])])
        assert as_of(facts, NOW) is facts

    def test_later_transitions_are_dropped_and_the_stage_derived(self) -> None:
        history = [Transition("briefing", "estimate", T[8]),
                   Transition("estimate", "negotiation", T[3])]
        facts = deal(stage_key="negotiation", history=history)
        past = as_of(facts, T[5])
        assert past.history == history[:1]
        assert past.stage_key == "estimate"
        assert past.crm_stage == facts.crm_stage
        assert facts.stage_key == "negotiation"  # the input is not modified

    def test_before_the_first_transition_the_stage_is_its_from_stage(self) -> None:
        facts = deal(stage_key="estimate", history=[Transition("briefing", "estimate", T[3])])
        assert as_of(facts, T[5]).stage_key == "briefing"

    def test_an_unknowable_stage_is_unmapped_with_a_placeholder_crm_stage(self) -> None:
        derived = deal(history=[Transition(None, "estimate", T[3])], history_derived=True)
        past = as_of(derived, T[5])
        assert (past.stage_key, past.crm_stage) == (None, UNKNOWN_CRM_STAGE)

    def test_a_win_after_now_is_open_again(self) -> None:
        facts = deal(status="won", won_at=T[1])
        past = as_of(facts, T[2])
        assert (past.status, past.won_at) == ("open", None)

    def test_a_loss_after_now_is_open_again_without_its_reason(self) -> None:
        facts = deal(status="lost", lost_at=T[1], lost_reason_raw="Price",
                     lost_reason_key="price")
        past = as_of(facts, T[2])
        assert (past.status, past.lost_at, past.lost_reason_raw, past.lost_reason_key) == (
            "open", None, None, None)

    def test_activities_created_later_are_dropped_done_later_are_planned(self) -> None:
        created_later = activity("a1", done=True, created=T[1], done_at=T[1])
        done_later = activity("a2", done=True, created=T[9], done_at=T[1], due=T[2])
        done_before = activity("a3", done=True, created=T[9], done_at=T[6])
        note_later = activity("n1", done=True, created=T[9], done_at=T[1], is_note=True)
        facts = deal(activities=[created_later, done_later, done_before, note_later],
                     company_activities=[created_later])
        past = as_of(facts, T[5])
        assert [a.id for a in past.activities] == ["a2", "a3"]
        assert (past.activities[0].done, past.activities[0].done_at) == (False, None)
        assert past.activities[0].due_at == T[2]
        assert past.activities[1] is done_before
        assert past.company_activities == []

    def test_audit_deals_audits_the_past_deal(self) -> None:
        # At T[5] the deal was open in 'estimate' with a call planned (done only at T[1]).
        call = activity("c", done=True, created=T[9], done_at=T[1], due=T[4])
        facts = deal(status="won", won_at=T[1], stage_key="negotiation", activities=[call],
                     history=[Transition("estimate", "negotiation", T[2])])
        past = list(audit_deals([facts], BOOK, T[5], UTC))
        assert past == []
        now_rules = {f.rule for f in audit_deals([facts], BOOK, NOW, UTC)}
        assert "missing_action" in now_rules  # won at negotiation: estimate_sent missing


# -- unmapped_stage ----------------------------------------------------------------------


class TestUnmappedStage:
    def deals(self) -> list[DealFacts]:
        limbo = [deal(f"L{i}", stage_key=None, crm_stage="Sales / Limbo") for i in range(7)]
        other = deal("O1", stage_key=None, crm_stage="Old / Waiting")
        return [*limbo[:3], other, *limbo[3:], deal("M1")]

    def test_one_finding_per_crm_stage_with_counts_and_examples(self) -> None:
        found = [f for f in audit_deals(self.deals(), BOOK, NOW, UTC)
                 if f.rule == "unmapped_stage"]
        assert [f.crm_stage for f in found] == ["Old / Waiting", "Sales / Limbo"]
        limbo = found[1]
        assert limbo.deal_id is None and limbo.severity == "warning"
        assert limbo.details == {"deals": 7,
                                 "example_deal_ids": ["L0", "L1", "L2", "L3", "L4"]}
        assert "'Sales / Limbo'" in limbo.explanation and "7 deal(s)" in limbo.explanation
        assert limbo.key != found[0].key

    def test_unmapped_deals_skip_the_stage_rules(self) -> None:
        rules = {(f.deal_id, f.rule) for f in audit_deals(self.deals(), BOOK, NOW, UTC)}
        assert not any(d.startswith("L") for d, _ in rules if d)
        assert ("M1", "no_next_step") in rules

    def test_a_single_deal_audit_has_no_aggregate_row(self) -> None:
        assert audit_deal(deal(stage_key=None), BOOK, NOW, UTC) == []


# -- driver ------------------------------------------------------------------------------


class TestAuditDeals:
    def test_streams_lazily(self) -> None:
        pulled: list[str] = []

        def source() -> Iterator[DealFacts]:
            for i in range(3):
                pulled.append(f"D{i}")
                yield deal(f"D{i}")

        stream = audit_deals(source(), BOOK, NOW, UTC)
        assert pulled == []
        first = next(stream)
        assert first.deal_id == "D0" and pulled == ["D0"]

    def test_same_input_same_output(self) -> None:
        deals = [deal(f"D{i}", created_at=T[20 + i]) for i in range(5)]
        assert list(audit_deals(deals, BOOK, NOW, UTC)) == list(audit_deals(deals, BOOK, NOW, UTC))

    def test_stats_count_deals_findings_and_skips(self) -> None:
        deals = [deal("A"), deal("B", created_at=NOW + timedelta(days=1)),
                 deal("C", status="deleted"), deal("U", stage_key=None)]
        stats = AuditStats()
        findings = list(audit_deals(deals, BOOK, NOW, UTC, stats=stats))
        assert (stats.deals, stats.not_created_yet, stats.not_audited_status,
                stats.unmapped) == (4, 1, 1, 1)
        assert sum(stats.findings.values()) == len(findings)
        assert {f.deal_id for f in findings} == {"A", None}

    def test_now_must_be_timezone_aware(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            audit_deals([], BOOK, datetime(2024, 6, 15), UTC)

    def test_findings_have_json_able_details(self) -> None:
        import json

        facts = deal(stage_key="contract", created_at=T[30], contact_count=0, fields={},
                     history=[Transition("briefing", "contract", T[25]),
                              Transition("contract", "estimate", T[20]),
                              Transition("estimate", "contract", T[19])])
        findings = audit_deal(facts, BOOK, NOW, ZoneInfo("Europe/Moscow"))
        assert {f.rule for f in findings} >= {"skipped_stage", "backward_move", "stalled",
                                              "inactive", "missing_action"}
        for f in findings:
            json.dumps(f.details)
            assert f.explanation.endswith(".")
        assert len({f.key for f in findings}) == len(findings)  # lifecycle keys are unique

    def test_deferred_deal_gets_only_its_reminder_rule_among_open_rules(self) -> None:
        facts = deal(stage_key=DEFERRED, created_at=T[39],
                     history=[Transition("estimate", DEFERRED, T[35])])
        rules = {f.rule for f in audit_deal(facts, BOOK, NOW, UTC)}
        assert rules == {"deferred_no_reminder"}


# -- calendar ----------------------------------------------------------------------------


class TestCalendar:
    def test_day_start_is_the_first_local_instant_across_dst(self) -> None:
        tz = ZoneInfo("America/Santiago")  # in 2024 clocks jumped 00:00 -> 01:00 on Sep 8
        cal = Calendar(datetime(2024, 9, 10, 12, tzinfo=UTC), tz)
        start = cal.day_start(date(2024, 9, 8))
        assert start.astimezone(tz).date() == date(2024, 9, 8)
        assert (start - timedelta(microseconds=1)).astimezone(tz).date() == date(2024, 9, 7)

    def test_days_since_uses_local_dates(self) -> None:
        cal = Calendar(datetime(2024, 6, 14, 21, 30, tzinfo=UTC), ZoneInfo("Europe/Moscow"))
        assert cal.today == date(2024, 6, 15)
        assert cal.days_since(datetime(2024, 6, 14, 20, 59, tzinfo=UTC)) == 1
        assert cal.days_since(datetime(2024, 6, 14, 21, 0, tzinfo=UTC)) == 0
