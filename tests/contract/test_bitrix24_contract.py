"""Bitrix24 contract: the vendor's own response examples through our parsers.

Fixtures (tests/contract/bitrix24/, sources in tests/contract/README.md) are the "Response
handling" examples of Bitrix24's official REST documentation (github.com/bitrix24/b24restdocs,
published at https://apidocs.bitrix24.com/api-reference/): ``crm.deal.get``,
``crm.deal.list``, ``crm.deal.fields``, ``crm.stagehistory.list``, ``crm.activity.list``.
Legacy methods answer every scalar as a string in the portal's offset; the new-style
``crm.stagehistory.list`` answers typed ints. Both must give the same normalized records.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncd_bitrix24.streams import (
    FieldCatalog,
    StageInfo,
    normalize_activity,
    normalize_deal,
    stage_change,
)

from syncd.mapping import activity_kind

HERE = Path(__file__).parent / "bitrix24"


def result(name: str) -> Any:
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))["result"]


def catalog() -> FieldCatalog:
    return FieldCatalog("deal", result("crm.deal.fields"))


def test_deal_get_string_scalars_and_offsets() -> None:
    payload = result("crm.deal.get")
    deal = normalize_deal(payload, catalog(), StageInfo())
    assert (deal.external_id, deal.owner_id, deal.company_id, deal.contact_ids) == (
        "410", "1", "9", ["84"]), "string ids stay exact strings"
    assert (deal.pipeline_id, deal.stage_id, deal.status) == ("0", "PREPARATION", "open")
    assert deal.value == 1_000_000.0 and deal.currency == "EUR"
    at = datetime(2024, 8, 30, 12, 29, tzinfo=UTC)  # 14:29 at +02:00
    assert (deal.created_at, deal.updated_at, deal.stage_changed_at) == (at, at, at)
    assert deal.won_at is None and deal.lost_at is None and deal.lost_reason is None
    assert deal.raw == payload


def test_deal_standard_extras_under_the_portal_titles() -> None:
    deal = normalize_deal(result("crm.deal.get"), catalog(), StageInfo())
    assert deal.fields["Source"] == "CALLBACK"
    assert deal.fields["Type"] == "COMPLEX"
    assert deal.fields["Probability"] == 99, "integer field: '99' -> 99"
    assert deal.fields["Close Date"] == "2024-09-09", "a date field keeps the portal's day"
    assert "Title" not in deal.fields, "standard fields other than the extras stay in raw"


def test_a_custom_field_the_catalog_does_not_describe_stays_in_raw_only() -> None:
    payload = result("crm.deal.get")
    deal = normalize_deal(payload, catalog(), StageInfo())
    assert "UF_CRM_1721244482250" not in deal.fields
    assert deal.raw["UF_CRM_1721244482250"] == "Hello world!", "nothing unmapped is dropped"


def test_fields_catalog_titles_types_and_custom_flag() -> None:
    defs = {d.key: d for d in catalog().field_defs()}
    assert defs["OPPORTUNITY"].name == "Amount" and defs["OPPORTUNITY"].type == "double"
    assert defs["CLOSEDATE"].type == "date" and not defs["CLOSEDATE"].custom
    assert all(not d.custom for d in defs.values()), "only UF_* fields are custom"


def test_deal_list_page_of_select_subset() -> None:
    deals = [normalize_deal(p, catalog(), StageInfo()) for p in result("crm.deal.list")]
    assert [d.external_id for d in deals] == ["37", "38", "39", "40", "41", "42"]
    assert deals[0].value == 19999.99, "'19999.99' is exact, not 1999999"
    assert {d.pipeline_id for d in deals} == {"1"}
    assert deals[0].stage_id == "C1:NEW"
    assert deals[2].created_at == datetime(2024, 4, 9, 21, 11, 1, tzinfo=UTC)
    assert all(d.updated_at is None for d in deals), "a field not selected is absent, not now"


def test_deal_status_from_stage_semantics() -> None:
    payload = result("crm.deal.get")
    won = normalize_deal({**payload, "STAGE_SEMANTIC_ID": "S", "STAGE_ID": "WON"},
                         catalog(), StageInfo())
    assert won.status == "won" and won.won_at == datetime(2024, 8, 30, 12, 29, tzinfo=UTC)
    lost = normalize_deal({**payload, "STAGE_SEMANTIC_ID": "F", "STAGE_ID": "LOSE"},
                          catalog(), StageInfo())
    assert lost.status == "lost" and lost.lost_at is not None


def test_stagehistory_typed_ints_give_the_same_string_ids() -> None:
    [row] = result("crm.stagehistory.list")["items"]
    change = stage_change(row, None)
    assert (change.external_id, change.deal_id, change.to_stage_id) == ("35", "21", "NEW")
    assert change.from_stage_id is None
    assert change.at == datetime(2024, 4, 25, 14, 59, 11, tzinfo=UTC)
    moved = stage_change(row, "PREPARATION")
    assert moved.from_stage_id == "PREPARATION"


def test_activity_list_call_on_a_contact() -> None:
    [payload] = result("crm.activity.list")
    activity = normalize_activity(payload)
    assert activity.external_id == "20"
    # Provider-aware key (issue 12.3): kind, PROVIDER_ID, PROVIDER_TYPE_ID of the example.
    assert activity.type == "call:VOXIMPLANT_CALL:CALL", "TYPE_ID 2 / VOXIMPLANT_CALL"
    assert activity_kind(activity.type, {"call": "call"}) == "call"
    assert activity.done is True
    assert (activity.contact_id, activity.deal_id, activity.company_id) == ("15", None, None)
    assert activity.owner_id == "505"
    assert activity.due_at == datetime(2020, 9, 27, 10, 25, tzinfo=UTC)
    assert activity.done_at == datetime(2020, 9, 27, 16, 25, tzinfo=UTC), "END_TIME"
    assert activity.created_at == datetime(2020, 9, 27, 10, 26, 55, tzinfo=UTC)
