"""Pipedrive contract: the vendor's own response examples through our parsers.

Fixtures (tests/contract/pipedrive/, sources in tests/contract/README.md) are the 200-response
examples of Pipedrive's official OpenAPI specs (API v2 ``GET /deals``, ``/activities``,
``/organizations``, ``/persons``, ``/pipelines``, ``/stages``; API v1 ``GET /dealFields``,
``/deals/{id}/flow``, ``/users``, ``/activityTypes``), byte for byte, and the custom-field
value shapes of the official "Pipedrive API v2 migration guide".
https://developers.pipedrive.com/docs/api/v1 ·
https://pipedrive.readme.io/docs/pipedrive-api-v2-migration-guide
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from syncd_pipedrive.streams import (
    FieldCatalog,
    normalize_activity,
    normalize_activity_type,
    normalize_company,
    normalize_contact,
    normalize_deal,
    normalize_pipeline,
    normalize_stage,
    normalize_user,
    stage_changes,
)

HERE = Path(__file__).parent / "pipedrive"
JAN_1 = datetime(2021, 1, 1, tzinfo=UTC)


def data(name: str) -> Any:
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))["data"]


def test_v2_deal_ids_are_strings_times_are_aware_utc() -> None:
    [payload] = data("v2_deals")
    deal = normalize_deal(payload, FieldCatalog("deal", data("v1_dealFields")))
    assert (deal.external_id, deal.owner_id, deal.company_id, deal.contact_ids) == (
        "1", "1", "1", ["1"]), "v2 ids are plain ints"
    assert (deal.pipeline_id, deal.stage_id) == ("1", "1")
    assert (deal.status, deal.value, deal.currency, deal.title) == ("open", 200.0, "USD",
                                                                     "Deal Title")
    for moment in (deal.created_at, deal.updated_at, deal.stage_changed_at, deal.won_at,
                   deal.lost_at):
        assert moment == JAN_1 and moment.tzinfo is not None, "RFC 3339 'Z' -> aware UTC"
    assert deal.fields["Expected close date"] == "2021-01-01"
    assert deal.fields["Probability"] == 90
    assert deal.raw == payload, "the untouched payload is kept"


def test_v2_deal_flags_archived_and_deleted() -> None:
    [payload] = data("v2_deals")
    assert normalize_deal({**payload, "is_deleted": True}, None).status == "deleted"
    archived = normalize_deal({**payload, "is_archived": True, "status": "won"}, None)
    assert archived.status == "won", "an archived deal keeps its status (it is a real sale)"


def test_v1_deal_fields_give_names_types_and_option_labels() -> None:
    catalog = FieldCatalog("deal", data("v1_dealFields"))
    defs = {d.key: d for d in catalog.field_defs()}
    title = defs["title"]
    assert (title.name, title.type, title.custom) == ("Title", "varchar", False)
    customer = defs["9dc80c50d78a15643bfc4ca79d76156a73a1ca0e"]
    assert (customer.name, customer.type, customer.custom) == ("Customer Type", "enum", True)
    assert customer.options == {"190": "Private person", "191": "Company",
                                "192": "Government"}


#: Definitions named after the migration guide's example key, one per documented type
#: (the shape of the dealFields example; ``field_type`` values from the same reference).
GUIDE_KEY = "d4de1c1518b4531717c676029a45911c340390a6"


def _catalog_with(field_type: str, options: list[dict[str, Any]] | None = None) -> FieldCatalog:
    [title, customer] = data("v1_dealFields")
    definition = {**customer, "key": GUIDE_KEY, "name": "Guide field", "field_type": field_type,
                  "options": options}
    return FieldCatalog("deal", [title, customer, definition])


def test_v2_custom_field_value_shapes_of_the_migration_guide() -> None:
    [payload] = data("v2_deals")
    options = [{"id": 123, "label": "Alpha"}, {"id": 456, "label": "Beta"}]
    cases: list[tuple[str, Any, Any, list[dict[str, Any]] | None]] = [
        ("varchar", "my text value", "my text value", None),
        ("double", 500, 500.0, None),
        ("monetary", {"value": 500, "currency": "USD"}, 500.0, None),
        ("enum", 123, "Alpha", options),
        ("set", [123, 456], ["Alpha", "Beta"], options),
        ("user", 1234, "1234", None),
        ("date", "2024-01-01", "2024-01-01", None),
        ("address", {"route": "5th Avenue", "value": "530 Fifth Avenue, New York, NY, USA",
                     "formatted_address": "530 5th Ave, New York, NY 10036, USA"},
         "530 5th Ave, New York, NY 10036, USA", None),
    ]
    for field_type, value, expected, opts in cases:
        deal = normalize_deal({**payload, "custom_fields": {GUIDE_KEY: value}},
                              _catalog_with(field_type, opts))
        assert deal.fields["Guide field"] == expected, field_type
    enum = normalize_deal({**payload, "custom_fields": {
        "9dc80c50d78a15643bfc4ca79d76156a73a1ca0e": 191}},
        FieldCatalog("deal", data("v1_dealFields")))
    assert enum.fields["Customer Type"] == "Company", "a v2 enum is the option id as a number"
    empty = normalize_deal({**payload, "custom_fields": {GUIDE_KEY: None}},
                           _catalog_with("monetary"))
    assert empty.fields["Guide field"] is None, "null stays empty, never 0"


def test_v2_activity_due_done_and_links() -> None:
    [payload] = data("v2_activities")
    activity = normalize_activity(payload)
    assert (activity.external_id, activity.type, activity.subject) == (
        "1", "activity_type", "Activity Subject")
    assert activity.done is True
    assert activity.due_date == date(2021, 1, 1)
    assert activity.due_at == datetime(2021, 1, 1, 15, 0, tzinfo=UTC)
    assert activity.done_at == JAN_1
    assert (activity.deal_id, activity.company_id, activity.contact_id, activity.owner_id) == (
        "5", "7", "6", "1")
    assert activity.note == "Note" and activity.deleted is False


def test_v2_organization_and_person() -> None:
    [org] = data("v2_organizations")
    company = normalize_company(org, None)
    assert (company.external_id, company.name, company.owner_id) == ("1", "Organization Name",
                                                                     "1")
    assert company.fields["Address"] == "123 Main St", "an address object reads as its value"
    assert company.created_at == JAN_1
    [person] = data("v2_persons")
    contact = normalize_contact(person, None)
    assert (contact.external_id, contact.company_id, contact.name) == ("1", "1", "Person Name")
    assert contact.fields["Email"] == "email1@email.com", "the primary e-mail of the list"
    assert contact.fields["Phone"] == "12345"
    assert contact.fields["Job title"] == "Manager"


def test_pipelines_stages_users_and_activity_types() -> None:
    [pipeline] = data("v2_pipelines")
    assert normalize_pipeline(pipeline).external_id == "1"
    [stage] = data("v2_stages")
    parsed = normalize_stage(stage)
    assert (parsed.external_id, parsed.pipeline_id, parsed.name, parsed.order) == (
        "1", "1", "Stage Name", 1)
    user = normalize_user(data("v1_users")[0])
    assert (user.external_id, user.name, user.email, user.active) == (
        "1", "John Doe", "john@pipedrive.com", True)
    kinds = [normalize_activity_type(t) for t in data("v1_activityTypes")]
    assert [(k.key, k.name) for k in kinds] == [("deadline", "Deadline"), ("call", "Call")]


def test_v1_flow_without_a_stage_change_gives_no_transition() -> None:
    """The documented flow holds a ``value`` dealChange, an activity and a mail message:
    none of them is a stage change, and nothing is invented."""
    assert stage_changes("120", data("v1_deal_flow")) == []
    assert stage_changes("999", data("v1_deal_flow")) == []
