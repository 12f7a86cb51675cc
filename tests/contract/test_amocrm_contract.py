"""amoCRM contract: the vendor's own response example through our parsers.

``amocrm/lead_get.json`` is the "Пример ответа" of ``GET /api/v4/leads/{id}`` in amoCRM's
official API reference (https://www.amocrm.ru/developers/content/crm_platform/leads-api,
copy at amocrm.com.ua), verbatim except one trailing comma the page has (invalid JSON).
``amocrm/shapes.json`` holds shapes the reference documents field by field (events,
pipelines with the system statuses 142/143, tasks, custom-field definitions and values) with
values of our own; see tests/contract/README.md for the pages.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd_amocrm.streams import (
    FieldCatalog,
    normalize_lead,
    normalize_task,
    pipelines_and_stages,
    stage_change,
)

HERE = Path(__file__).parent / "amocrm"


def load(name: str) -> Any:
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))


SHAPES = load("shapes")


def test_official_lead_example_ints_unix_times_embedded_company() -> None:
    payload = load("lead_get")
    deal = normalize_lead(payload, None)
    assert (deal.external_id, deal.owner_id, deal.pipeline_id) == ("17657", "321123", "1113")
    assert deal.stage_id == "1113:2030", "a status id is unique only within its pipeline"
    assert deal.status == "open" and deal.value == 25000.0
    assert deal.company_id == "40401297", "the company comes from _embedded.companies"
    assert deal.contact_ids == []
    assert deal.created_at == datetime(2020, 4, 24, 15, 13, 46, tzinfo=UTC)
    assert deal.updated_at == datetime(2020, 4, 30, 10, 14, 3, tzinfo=UTC)
    assert deal.won_at is None and deal.lost_at is None and deal.lost_reason is None
    assert deal.raw == payload


def test_custom_values_read_by_name_without_and_with_definitions() -> None:
    payload = load("lead_get")
    bare = normalize_lead(payload, FieldCatalog("deal"))
    assert bare.fields == {"Кастомное поле": "2020-05-08"}, \
        "an undescribed field keeps its field_name from the payload; a date string stays"
    described = normalize_lead(payload, FieldCatalog("deal", SHAPES["custom_fields"]))
    assert described.fields["Кастомное поле"] == "2020-05-08"


def test_select_and_numeric_values_and_null_lists() -> None:
    catalog = FieldCatalog("deal", SHAPES["custom_fields"])
    payload = {**load("lead_get"), "custom_fields_values": SHAPES["lead_custom_values"]}
    deal = normalize_lead(payload, catalog)
    assert deal.fields["Источник"] == "Выставка", "a select value is its text"
    assert deal.fields["Прибыль"] == 106000.5, "a numeric value may arrive as a string"
    empty = normalize_lead({**load("lead_get"), "custom_fields_values": None}, catalog)
    assert empty.fields == {}, "custom_fields_values is null when nothing is filled"
    defs = {d.name: d for d in catalog.field_defs()}
    assert defs["Источник"].options == {"501": "Сайт", "502": "Выставка"}


def test_won_and_lost_are_the_system_statuses_142_and_143() -> None:
    payload = load("lead_get")
    closed = 1588241643
    won = normalize_lead({**payload, "status_id": 142, "closed_at": closed}, None)
    assert won.status == "won" and won.won_at == datetime.fromtimestamp(closed, UTC)
    lost = normalize_lead({**payload, "status_id": 143, "closed_at": closed,
                           "loss_reason_id": 7}, None, {"7": "Дорого"})
    assert lost.status == "lost" and lost.lost_reason == "Дорого"
    deleted = normalize_lead({**payload, "is_deleted": True}, None)
    assert deleted.status == "deleted"


def test_pipelines_embed_their_statuses() -> None:
    pipelines, stages = pipelines_and_stages([SHAPES["pipeline"]])
    assert [p.name for p in pipelines] == ["Воронка"]
    assert [(s.external_id, s.name) for s in stages] == [
        ("1113:2030", "Первичный контакт"), ("1113:142", "Успешно реализовано"),
        ("1113:143", "Закрыто и не реализовано")]


def test_status_change_event_gives_a_transition() -> None:
    change = stage_change(SHAPES["event_lead_status_changed"])
    assert change is not None
    assert (change.external_id, change.deal_id) == ("01drbfj5a8k9zd60bgg907a6w9", "17657")
    assert (change.from_stage_id, change.to_stage_id) == ("1113:2030", "1113:142")
    assert change.at == datetime(2020, 4, 30, 10, 14, 3, tzinfo=UTC)


def test_completed_task_on_a_lead() -> None:
    task = normalize_task(SHAPES["task"])
    assert task.external_id == "task:7087" and task.type == "task_1"
    assert task.done is True and task.deal_id == "17657"
    assert task.due_at == datetime(2020, 4, 30, 21, 0, tzinfo=UTC)
    assert task.done_at == datetime(2020, 4, 30, 11, 14, 3, tzinfo=UTC), "completed: updated_at"
    assert "Дозвонились" in task.note
