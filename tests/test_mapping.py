"""TenantMapper: CRM rows onto Sales Book facts."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from support import SALESBOOKS

from syncd.config import TenantConfig
from syncd.mapping import TenantMapper
from syncd.salesbook import load_salesbook

AT = datetime(2026, 3, 1, tzinfo=UTC)
STAGES = {"p:1": ("Sales", "Briefing"), "p:2": ("Sales", "Estimate"),
          "p:142": ("Sales", "Closed - won"), "p:143": ("Sales", "Closed - lost")}


def mapper() -> TenantMapper:
    config = TenantConfig(plugin="amocrm", salesbook="b2b-services-9", connection={},
                          mapping={"stages": {"Sales": {"Briefing": "briefing",
                                                        "Estimate": "estimate"}}})
    return TenantMapper(config, load_salesbook(SALESBOOKS / "b2b-services-9.yaml"), STAGES)


def deal(status: str, stage: str) -> SimpleNamespace:
    return SimpleNamespace(
        external_id="7", title="T", status=status, stage_id=stage, fields={}, created_at=AT,
        stage_changed_at=AT, owner_id="u", company_id=None, value=10.0, won_at=None,
        lost_at=None, lost_reason=None, contact_ids=[])


def move(number: int, before: str | None, after: str, day: int) -> SimpleNamespace:
    return SimpleNamespace(external_id=f"e{number}", from_stage_id=before, to_stage_id=after,
                           at=AT.replace(day=day))


def test_a_deal_won_from_a_closed_status_is_audited_at_the_stage_it_left() -> None:
    history = [move(3, "p:2", "p:142", 9), move(1, None, "p:1", 2), move(2, "p:1", "p:2", 5)]
    facts = mapper().deal_facts(deal("won", "p:142"), [], history)
    assert facts.stage_key == "estimate"
    assert facts.crm_stage == "Sales / Estimate"
    assert [t.to_key for t in facts.history] == ["briefing", "estimate"]


def test_an_open_deal_in_an_unmapped_stage_stays_unmapped() -> None:
    facts = mapper().deal_facts(deal("open", "p:143"), [], [move(1, "p:1", "p:143", 3)])
    assert facts.stage_key is None
    assert facts.crm_stage == "Sales / Closed - lost"


def test_a_closed_deal_without_history_keeps_its_status() -> None:
    facts = mapper().deal_facts(deal("lost", "p:143"), [], [])
    assert facts.stage_key is None and facts.history_derived
