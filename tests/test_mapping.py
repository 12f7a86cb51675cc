"""TenantMapper: CRM rows onto Sales Book facts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from pydantic import ValidationError
from support import SALESBOOKS
from syncd_gsheets.settings import SpreadsheetSettings
from syncd_gsheets.tabular import read_tables

from syncd.audit.engine import audit_deals
from syncd.config import TenantConfig, mapping_problems
from syncd.fieldcheck import closest, field_problems
from syncd.mapping import TenantMapper
from syncd.salesbook import SalesBook, load_salesbook

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


# -- vocabulary: null/ignore, a loss reason allowed at `deferred` (issue 12.7) ---------------
IGNORING = {"stages": {"Sales": {"Briefing": "briefing", "Estimate": "estimate",
                                 "Spam": None, "Closed - won": "ignore",
                                 "Parked": "deferred"}},
            "loss_reasons": {"Duplicate": None, "Дубль": "IGNORE", "Dearer": "price"}}
MORE_STAGES = {**STAGES, "p:9": ("Sales", "Spam"), "p:10": ("Sales", "Parked")}


def ignoring_mapper(book: Any = None) -> TenantMapper:
    config = TenantConfig(plugin="amocrm", salesbook="b2b-services-9", connection={},
                          mapping=IGNORING)
    return TenantMapper(config, book or load_salesbook(SALESBOOKS / "b2b-services-9.yaml"),
                        MORE_STAGES)


def test_null_and_ignore_are_the_same_explicit_ignore() -> None:
    config = TenantConfig(plugin="amocrm", salesbook="b", connection={}, mapping=IGNORING)
    assert config.mapping.stages["Sales"]["Spam"] is None
    assert config.mapping.stages["Sales"]["Closed - won"] is None, "'ignore' reads as null"
    assert config.mapping.loss_reasons == {"Duplicate": None, "Дубль": None, "Dearer": "price"}


def test_an_open_deal_in_an_ignored_stage_is_left_out_but_a_closed_one_is_not() -> None:
    m = ignoring_mapper()
    assert m.ignored(deal("open", "p:9"))
    assert not m.ignored(deal("open", "p:1"))
    assert not m.ignored(deal("open", "p:143")), "unmapped is not ignored: it is reported"
    won = deal("won", "p:142")  # its closed stage is ignored: audited where it was won from
    assert not m.ignored(won)
    facts = m.deal_facts(won, [], [move(1, None, "p:1", 2), move(2, "p:1", "p:142", 5)])
    assert facts.stage_key == "briefing"
    assert m.stage_key("p:9") is None, "an ignored stage is never a Sales Book stage"


def test_a_deal_lost_with_an_ignored_reason_is_left_out() -> None:
    m = ignoring_mapper()
    for text in ("Duplicate", " duplicate ", "дубль"):
        lost = deal("lost", "p:2")
        lost.lost_reason = text
        assert m.ignored(lost), text
    priced = deal("lost", "p:2")
    priced.lost_reason = "Dearer"
    assert not m.ignored(priced) and m.loss_reason_key("Dearer") == "price"
    assert m.loss_reason_key("Duplicate") is None, "an ignored reason maps to no key"
    silent = deal("lost", "p:2")
    assert not m.ignored(silent), "an empty reason is judged (bad_loss_reason), not ignored"


def _book_with_deferred_reason() -> Any:
    data = yaml.safe_load((SALESBOOKS / "b2b-services-9.yaml").read_text(encoding="utf-8"))
    data["passive"]["lost"]["reasons"]["went_quiet"] = {"title": "Went quiet",
                                                       "stages": ["deferred"]}
    return SalesBook.model_validate(data)


def test_a_loss_reason_allowed_only_at_deferred() -> None:
    book = _book_with_deferred_reason()
    m = ignoring_mapper(book)
    start = [move(1, None, "p:1", 2), move(2, "p:1", "p:10", 5)]
    from_deferred = deal("lost", "p:10")
    from_deferred.lost_reason, from_deferred.lost_at = "Went quiet", AT.replace(day=20)
    from_briefing = deal("lost", "p:1")
    from_briefing.lost_reason, from_briefing.lost_at = "Went quiet", AT.replace(day=20)
    facts = [m.deal_facts(from_deferred, [], start),
             m.deal_facts(from_briefing, [], start[:1])]
    facts[1] = replace(facts[1], deal_id="8")
    now = AT.replace(day=25)
    found = [(f.deal_id, f.details.get("problem")) for f in
             audit_deals(facts, book, now, ZoneInfo("UTC")) if f.rule == "bad_loss_reason"]
    assert found == [("8", "not_allowed_at_stage")], found


def test_a_salesbook_reason_stage_must_still_be_a_stage_or_deferred() -> None:
    data = yaml.safe_load((SALESBOOKS / "b2b-services-9.yaml").read_text(encoding="utf-8"))
    data["passive"]["lost"]["reasons"]["odd"] = {"title": "Odd", "stages": ["defered"]}
    with pytest.raises(ValidationError, match="unknown stage 'defered'"):
        SalesBook.model_validate(data)


# -- an export whose outcome is a stage value (amoCRM / Bitrix24 exports) --------------------
def test_an_export_stage_column_can_carry_the_outcome() -> None:
    settings = SpreadsheetSettings(path="x", stage_status={
        "Успешно реализовано": "won", "закрыто и не реализовано": "lost",
        "Сделка успешна": "won", "Сделка провалена": "lost"})
    header = ["ID", "Stage", "Stage changed at", "Lost at", "Status"]
    rows = [["1", "Успешно реализовано", "2026-03-05", None, None],
            ["2", "Закрыто и не реализовано", "2026-03-06", None, None],
            ["3", "Сделка провалена", "2026-03-07", "2026-03-01", None],
            ["4", "Переговоры", "2026-03-08", None, None],
            ["5", "Сделка успешна", "2026-03-09", None, "open"]]
    data = read_tables({"Deals": [header, *rows]}, settings)
    assert data.problems == []
    deals = {d.external_id: d for d in data.deals}
    assert [deals[i].status for i in "12345"] == ["won", "lost", "lost", "open", "open"]
    assert deals["1"].won_at == datetime(2026, 3, 5, tzinfo=UTC), "closed when it got there"
    assert deals["2"].lost_at == datetime(2026, 3, 6, tzinfo=UTC)
    assert deals["3"].lost_at == datetime(2026, 3, 1, tzinfo=UTC), "a lost-on column wins"
    assert deals["5"].status == "open", "a status cell, when given, is the status"


def test_won_or_lost_as_a_stage_target_points_at_stage_status(tmp_path: Path) -> None:
    config = TenantConfig(plugin="spreadsheet", salesbook="b2b-services-9", connection={},
                          mapping={"stages": {"Воронка": {"Успешно реализовано": "won"}}})
    book = load_salesbook(SALESBOOKS / "b2b-services-9.yaml")
    problems = [str(p) for p in mapping_problems(config, book, "t.yaml")]
    assert any("mapping.stages.Воронка.Успешно реализовано: unknown stage key 'won'" in p
               and "connection.stage_status" in p for p in problems), problems


# -- field names: did you mean --------------------------------------------------------------
def test_closest_names_are_suggested_case_first() -> None:
    names = ["Lead source", "Source of lead", "Profit", "Segment"]
    assert closest("Lead sourse", names)[0] == "Lead source"
    assert closest("lead source", names)[0] == "Lead source"
    assert closest("Qwerty", names) == []


def test_field_problems_name_file_key_and_the_closest_names() -> None:
    config = TenantConfig(plugin="pipedrive", salesbook="b", connection={}, mapping={
        "fields": {"deal": {"lead_source": "Lead sourse", "profit": "Profit"},
                   "company": {"segment": "Sgment"}, "contact": {"nps": "NPS"}}})
    known = {"deal": ["Lead source", "Profit"], "company": ["Segment", "Region"]}
    problems = field_problems(config, known, "acme.yaml")
    assert [str(p) for p in problems] == [
        "acme.yaml: mapping.fields.deal.lead_source: the CRM has no deal field 'Lead sourse' "
        "(names are exact, case included); did you mean 'Lead source'?",
        "acme.yaml: mapping.fields.company.segment: the CRM has no company field 'Sgment' "
        "(names are exact, case included); did you mean 'Segment'?",
    ], "contact fields are unknown here: not checked"
    far = field_problems(config, {"company": ["Region"]}, "acme.yaml")
    assert "its company fields are: Region" in str(far[0])


def test_a_closed_deal_in_an_ignored_stage_is_not_reported_unmapped() -> None:
    """amoCRM's 142/143 or an export's outcome stage mapped to null: a won deal without
    history there cannot be placed on a Sales Book stage, but that was said on purpose, so no
    unmapped_stage row; the rules that need no stage still run (no_contact here)."""
    m = ignoring_mapper()
    won = deal("won", "p:142")  # "Closed - won" is ignored in IGNORING
    won.won_at = AT
    lost = deal("lost", "p:143")  # "Closed - lost" is simply unmapped
    lost.external_id, lost.lost_at, lost.lost_reason = "8", AT, "Dearer"
    facts = [m.deal_facts(won, [], []), m.deal_facts(lost, [], [])]
    assert facts[0].stage_ignored and not facts[1].stage_ignored
    book = load_salesbook(SALESBOOKS / "b2b-services-9.yaml")
    found = [(f.rule, f.deal_id, f.crm_stage) for f in
             audit_deals(facts, book, AT.replace(day=25), ZoneInfo("UTC"))]
    assert ("no_contact", "7", None) in found, "the won deal is still audited"
    unmapped = [stage for rule, _, stage in found if rule == "unmapped_stage"]
    assert unmapped == ["Sales / Closed - lost"], found
