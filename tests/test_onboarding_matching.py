"""Unit tests of the onboarding guesses: titles in Russian and English, transliteration,
stage order and semantics, loss reasons, activity kinds, fields, usage counts, TODOs."""
# ruff: noqa: RUF001

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncd.config import TenantConfig
from syncd.connector import Inspection
from syncd.onboarding.draft import DraftInput, pick_salesbook, render, scalar
from syncd.onboarding.matching import (
    DECIDED,
    match_columns,
    match_fields,
    match_kind,
    match_pipeline,
    match_reason,
    match_stage,
    teams_from_hierarchy,
)
from syncd.onboarding.todos import file_todos
from syncd.onboarding.usage import count_records
from syncd.onboarding.vocabulary import normalise, transliterate
from syncd.records import Deal, Pipeline, Stage
from syncd.salesbook import load_salesbook

BOOKS = Path(__file__).resolve().parents[1] / "config" / "salesbooks"


@pytest.fixture(scope="module")
def b2b():
    return load_salesbook(BOOKS / "b2b-services-9.yaml")


@pytest.fixture(scope="module")
def simple():
    return load_salesbook(BOOKS / "simple-product-5.yaml")


def test_normalise_and_transliterate() -> None:
    assert normalise("Closed - won") == "closed won"
    assert normalise("  Ёлка_UC ") == "елка uc"
    assert transliterate("Бриф") == "brif"
    assert transliterate("Смета") == "smeta"


@pytest.mark.parametrize(("title", "target"), [
    ("Briefing", "briefing"), ("Бриф", "briefing"), ("Брифинг", "briefing"),
    ("Смета", "estimate"), ("Smeta", "estimate"),  # transliterated
    ("Переговоры", "negotiation"), ("Awaiting decision", "negotiation"),
    ("Подписание договора", "contract"), ("В работе", "in_progress"),
    ("Гарантия", "warranty"), ("Отложено", "deferred"), ("On hold", "deferred"),
])
def test_stage_titles_in_russian_english_and_transliterated(b2b, title: str,
                                                              target: str) -> None:
    guess = match_stage(title, b2b)
    assert guess.decided and guess.target == target, guess


def test_a_stage_nothing_like_the_book_is_left_undecided(b2b) -> None:
    guess = match_stage("Intro", b2b)
    assert not guess.decided and guess.target is None


@pytest.mark.parametrize(("name", "semantics"), [
    ("Closed - won", None), ("Успешно реализовано", None), ("Закрыто и не реализовано", None),
    ("Too expensive", "failure"), ("Deal won", "success"),
])
def test_won_and_lost_stages_are_ignored_by_semantics_or_name(b2b, name, semantics) -> None:
    guess = match_stage(name, b2b, semantics)
    assert guess.decided and guess.ignore and guess.target is None
    assert "closed" in guess.evidence


def test_stage_order_fills_one_gap_between_decided_neighbours(simple) -> None:
    stages = [{"name": "Контакт"}, {"name": "Zzz qualifying"}, {"name": "Презентация"}]
    guesses = match_pipeline(stages, simple)
    assert [g.target for g in guesses] == ["contact", "needs_discovery", "presentation"]
    assert "stage order" in guesses[1].evidence and guesses[1].confidence == DECIDED


@pytest.mark.parametrize(("text", "key"), [
    ("Дорого", "price"), ("Too expensive", "price"), ("Ушел к конкурентам", "competitor"),
    ("Нет бюджета", "no_budget"), ("Не отвечает", "no_response"), ("Bad timing", "timing"),
])
def test_loss_reasons(b2b, text: str, key: str) -> None:
    guess = match_reason(text, b2b)
    assert guess.decided and guess.target == key, guess


def test_duplicate_reasons_are_ignored_and_nonsense_is_not_guessed(b2b) -> None:
    assert match_reason("Дубль", b2b).ignore
    assert not match_reason("dunno", b2b).decided


@pytest.mark.parametrize(("label", "kind"), [
    ("call", "call"), ("lunch", "meeting"), ("deadline", "task"),
    ("task_1 (Follow-up)", "call"), ("task_3 (Email)", "email"), ("Звонок", "call"),
    ("2:VOXIMPLANT_CALL:CALL", "call"), ("4:CRM_EMAIL:EMAIL", "email"),
    ("1:CRM_MEETING:MEETING", "meeting"),
])
def test_activity_kinds_with_provider_subtypes(label: str, kind: str) -> None:
    guess = match_kind(label, ["call", "email", "meeting", "note", "task"])
    assert guess.decided and guess.target == kind, guess


def test_fields_by_name_and_type() -> None:
    names = ["Источник", "Номер договора", "Profit", "Profit note"]
    types = {"Источник": "enumeration", "Номер договора": "string", "Profit": "money",
             "Profit note": "string"}
    guesses = match_fields(["lead_source", "contract_number", "profit", "invoice_number"],
                           names, types)
    assert guesses["lead_source"].source == "Источник"
    assert guesses["contract_number"].source == "Номер договора"
    assert guesses["profit"].source == "Profit" and "fits" in guesses["profit"].evidence
    assert not guesses["invoice_number"].decided


def test_export_columns_in_russian() -> None:
    found = match_columns("deals", ["ID сделки", "Название", "Этап", "Воронка", "Сумма",
                                    "Дата создания", "Причина отказа"])
    assert {k: g.source for k, g in found.items()} == {
        "id": "ID сделки", "title": "Название", "stage": "Этап", "pipeline": "Воронка",
        "value": "Сумма", "created_at": "Дата создания", "lost_reason": "Причина отказа"}


def test_teams_come_from_the_hierarchy() -> None:
    users = [{"id": "1", "name": "Head"}, {"id": "2", "name": "A", "manager_id": "1"},
             {"id": "3", "name": "B", "manager_id": "1"}]
    [team] = teams_from_hierarchy(users)
    assert team.manager == "1" and team.members == ["2", "3"]


def test_usage_counts_by_pipeline_and_stage_name() -> None:
    deals = [Deal("d1", "", "open", "p", "s1"), Deal("d2", "", "lost", "p", "s1",
                                                       lost_reason="Дорого"),
             Deal("d3", "", "open", "p", "s2", fields={"Segment": "SMB"})]
    usage = count_records([("pipelines", [Pipeline("p", "Продажи")]),
                           ("stages", [Stage("s1", "p", "Бриф"), Stage("s2", "p", "Смета")]),
                           ("deals", deals)])
    assert usage.stages[("Продажи", "Бриф")] == 2
    assert usage.open_stages[("Продажи", "Бриф")] == 1
    assert usage.loss_reasons["Дорого"] == 1
    assert usage.values["deal"]["Segment"]["SMB"] == 1


@pytest.mark.parametrize("text", ["plain", "Closed - won", "a: b", "# x", "yes", "123",
                                  "Сделка: тест", "-dash"])
def test_scalars_read_back_as_the_same_string(text: str) -> None:
    assert yaml.safe_load(f"k: {scalar(text)}") == {"k": text}


def test_a_russian_draft_is_a_valid_tenant_file_with_todos(tmp_path: Path, b2b,
                                                           simple) -> None:
    inspection = Inspection(
        pipelines=[{"id": "1", "name": "Продажи", "stages": [
            {"id": "a", "name": "Бриф"}, {"id": "b", "name": "Смета"},
            {"id": "c", "name": "Непонятный этап"}, {"id": "d", "name": "Успешно реализовано"}]}],
        loss_reasons=["Дорого", "Марс в ретрограде"],
        fields={"deal": ["Ссылка на смету"], "company": ["Сегмент"]},
        activity_types=["call", "lunch"],
        users=[{"id": "1", "name": "Анна"}])
    book, why = pick_salesbook([simple, b2b], inspection)
    assert book.key == "b2b-services-9" and "score" in why
    draft = render(DraftInput(tenant="t", plugin="amocrm", book=book,
                              connection={"base_url": "https://x.amocrm.ru",
                                          "long_lived_token": {"$env": "T"}},
                              inspection=inspection, language="ru"))
    assert "# Воронка CRM -> этап CRM -> этап Sales Book" in draft.text  # language: ru
    data = yaml.safe_load(draft.text)
    config = TenantConfig.model_validate(data)
    assert config.mapping.stages["Продажи"] == {"Бриф": "briefing", "Смета": "estimate",
                                                 "Успешно реализовано": None}
    assert config.mapping.loss_reasons == {"Дорого": "price"}
    assert config.mapping.fields.deal["estimate_link"] == "Ссылка на смету"
    assert config.mapping.fields.company["segment"] == "Сегмент"
    assert set(draft.todos) == {"mapping.stages.Продажи.Непонятный этап",
                                "mapping.loss_reasons.Марс в ретрограде",
                                "mapping.fields.deal.contract_number"}
    path = tmp_path / "t.yaml"
    path.write_text(draft.text, "utf-8")
    keys = {p.key for p in file_todos(path)}
    assert keys == set(draft.todos)
    assert all(p.severity == "warning" for p in file_todos(path))


def test_the_language_follows_the_stage_names() -> None:
    from syncd.onboarding.init import guess_language

    russian = Inspection(pipelines=[{"stages": [{"name": "Бриф"}, {"name": "Смета"},
                                                {"name": "KP"}]}])
    english = Inspection(pipelines=[{"stages": [{"name": "Briefing"}, {"name": "Смета"},
                                                {"name": "Estimate"}]}])
    assert guess_language(russian) == "ru" and guess_language(english) == "en"


@pytest.mark.parametrize("plugin,drafted", [("spreadsheet", True), ("amocrm", False)])
def test_an_exports_closing_stages_become_its_stage_status(b2b, plugin: str,
                                                           drafted: bool) -> None:
    """An export's stage column may hold the outcome (amoCRM/Bitrix24 exports): the draft
    says so in connection.stage_status, or its won/lost deals would be audited as open.
    A CRM gives the outcome as the deal's status, so its connection is left as given."""
    inspection = Inspection(pipelines=[{"id": "1", "name": "Продажи", "stages": [
        {"name": "Переговоры"}, {"name": "Успешно реализовано"},
        {"name": "Закрыто и не реализовано"}]}])
    draft = render(DraftInput(tenant="t", plugin=plugin, book=b2b,
                              connection={"path": "deals.csv"}, inspection=inspection))
    connection = yaml.safe_load(draft.text)["connection"]
    expected = {"Успешно реализовано": "won", "Закрыто и не реализовано": "lost"}
    assert connection.get("stage_status") == (expected if drafted else None)


def test_amocrms_default_pipeline_in_russian_is_matched(b2b) -> None:
    """amoCRM's default pipeline («Первичный контакт», «Переговоры», «Принимают решение»,
    «Согласование договора»), as a consultant's export carried it."""
    stages = [{"name": n} for n in ("Первичный контакт", "Переговоры", "Принимают решение",
                                    "Согласование договора")]
    guesses = match_pipeline(stages, b2b)
    assert [g.target for g in guesses] == ["briefing", "negotiation", "negotiation",
                                           "contract"]
    assert all(g.decided for g in guesses)
