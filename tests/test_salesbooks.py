"""The shipped Sales Book templates load, cross-reference, and say what the seeds say."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.salesbook import SalesBook, load_salesbook

BOOKS = Path(__file__).resolve().parents[1] / "config" / "salesbooks"
TEMPLATES = ["b2b-services-9", "canonical-5", "simple-product-5"]
KINDS = {"call", "meeting", "email", "task"}


@pytest.fixture(params=TEMPLATES)
def book(request: pytest.FixtureRequest) -> SalesBook:
    return load_salesbook(BOOKS / f"{request.param}.yaml")


def test_each_template_loads_under_its_file_name(book: SalesBook) -> None:
    assert (BOOKS / f"{book.key}.yaml").is_file()
    assert book.language == "en"
    assert book.title and book.description
    assert book.reference_problems() == []


def test_every_action_is_used_and_uses_canonical_kinds(book: SalesBook) -> None:
    used = {action for stage in book.stages for action in stage.actions}
    assert used == set(book.actions)
    for action in book.actions.values():
        assert set(action.evidence.activity_types) <= KINDS
    assert set(book.passive.deferred.reminder_activity_types) <= KINDS
    assert set(book.passive.won.followup_activity_types) <= KINDS


def test_every_stage_has_a_limit_actions_and_a_goal(book: SalesBook) -> None:
    for stage in book.stages:
        assert stage.max_days and stage.actions and stage.goal, stage.key


def test_a_deal_can_be_lost_with_a_valid_reason_at_every_stage(book: SalesBook) -> None:
    reasons = book.passive.lost.reasons.values()
    assert any(r.stages is None for r in reasons)  # e.g. the client stopped responding
    for stage in book.stages:
        allowed = [r for r in reasons if r.stages is None or stage.key in r.stages]
        assert allowed, stage.key


def test_b2b_services_9_is_the_notamedia_template() -> None:
    book = load_salesbook(BOOKS / "b2b-services-9.yaml")
    stages = [(s.key, s.max_days, s.optional, s.actions) for s in book.stages]
    assert stages == [
        ("briefing", 7, False, ("discovery_call", "brief_meeting")),
        ("estimate", 10, False, ("estimate_sent",)),
        ("negotiation", 14, False, ("decision_followup",)),
        ("contract", 10, False, ("contract_signed",)),
        ("in_progress", 60, False, ("kickoff_meeting",)),
        ("final_invoice", 14, False, ("invoice_sent",)),
        ("warranty", 90, True, ("satisfaction_check",)),
    ]
    evidence = {k: (a.evidence.activity_types, a.evidence.field) for k, a in book.actions.items()}
    assert evidence == {
        "discovery_call": (("call", "meeting"), None),
        "brief_meeting": (("meeting",), None),
        "estimate_sent": ((), "estimate_link"),
        "decision_followup": (("call", "email", "meeting"), None),
        "contract_signed": ((), "contract_number"),
        "kickoff_meeting": (("meeting",), None),
        "invoice_sent": (("email", "task"), None),
        "satisfaction_check": (("call", "meeting"), None),
    }
    reasons = {k: r.stages for k, r in book.passive.lost.reasons.items()}
    assert reasons == {
        "price": ("estimate", "negotiation"),
        "competitor": ("estimate", "negotiation", "contract"),
        "no_budget": ("briefing", "estimate", "negotiation"),
        "no_need": ("briefing", "estimate"),
        "no_response": None,
        "timing": ("negotiation", "contract"),
    }
    assert (book.inactive_days, book.passive.deferred.remind_every_days,
            book.passive.won.followup_within_days) == (14, 30, 14)
    assert book.karma.client.model_dump() == {
        "revenue_weight": 0.001, "profit_weight": 0.01, "lost_tender_penalty": 50,
        "loss_tender_penalty": 100, "incident_penalty": 200, "window_days": None}


def test_canonical_5_entry_stages_are_alternatives() -> None:
    book = load_salesbook(BOOKS / "canonical-5.yaml")
    assert [s.key for s in book.stages] == [
        "inbound_acquisition", "outbound_acquisition", "deal_discussion",
        "deal_implementation", "client_development"]
    assert [s.key for s in book.stages if s.optional] == [
        "inbound_acquisition", "outbound_acquisition"]
    assert "satisfaction_check" in book.stage("deal_implementation").actions


def test_simple_product_5_follows_the_five_steps() -> None:
    book = load_salesbook(BOOKS / "simple-product-5.yaml")
    assert [s.key for s in book.stages] == [
        "contact", "needs_discovery", "presentation", "objections", "closing"]
    assert "lead_source_recorded" in book.stage("contact").actions
