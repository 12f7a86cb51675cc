"""The Pipedrive connector against recorded-shape responses (``responses``; no network)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import responses
from pydantic import ValidationError
from responses import matchers
from support import FakeClock
from syncd_pipedrive import PipedriveConnector, PipedriveSettings

from syncd.connector import FieldSpec, FieldWrite, PullContext, TaskCreate
from syncd.errors import (
    AuthError,
    BadPayloadError,
    BlockedError,
    BudgetExhaustedError,
    RetriableAPIError,
)
from syncd.plugins import make_plugin_manager
from syncd.records import Activity, Company, Deal, StageChange
from syncd.streams import Watermark, watermark_at

BASE = "https://acme.pipedrive.com"
TOKEN = "pd-token-0123456789abcdef"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LEAD, PROFIT, TENDER, LINK, TAGS = "a" * 40, "b" * 40, "c" * 40, "d" * 40, "e" * 40
SEGMENT, NPS, VIOLATIONS, KARMA = "1" * 40, "2" * 40, "3" * 40, "4" * 40




def make(now: datetime = NOW, **settings: Any) -> PipedriveConnector:
    clock = FakeClock()  # a fresh clock: a private rate limiter, instant waits
    # These tests mock one deal list; the archived list has its own tests.
    settings.setdefault("include_archived", False)
    return PipedriveConnector(
        PipedriveSettings(base_url=BASE, api_token=TOKEN, **settings), tenant="acme",
        sleep=clock.sleep, clock=clock, now=lambda: now,
    )


def ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"success": True, "data": data, "additional_data": extra or None}


DEAL_FIELDS = [
    {"field_code": "title", "field_name": "Title", "field_type": "varchar",
     "is_custom_field": False, "options": None},
    {"field_code": "expected_close_date", "field_name": "Expected close date",
     "field_type": "date", "is_custom_field": False, "options": None},
    {"field_code": LEAD, "field_name": "Lead source", "field_type": "enum",
     "is_custom_field": True, "options": [{"id": 11, "label": "Website"},
                                          {"id": 12, "label": "Referral"}]},
    {"field_code": PROFIT, "field_name": "Profit", "field_type": "monetary",
     "is_custom_field": True, "options": None},
    {"field_code": TENDER, "field_name": "Tender", "field_type": "enum",
     "is_custom_field": True, "options": [{"id": 21, "label": "Yes"}, {"id": 22, "label": "No"}]},
    {"field_code": LINK, "field_name": "Estimate link", "field_type": "varchar",
     "is_custom_field": True, "options": None},
    {"field_code": TAGS, "field_name": "Tags", "field_type": "set", "is_custom_field": True,
     "options": [{"id": 1, "label": "Urgent"}, {"id": 2, "label": "VIP"}]},
    {"field_code": VIOLATIONS, "field_name": "syncd violations", "field_type": "text",
     "is_custom_field": True, "options": None},
]
ORG_FIELDS = [
    {"field_code": "name", "field_name": "Name", "field_type": "varchar",
     "is_custom_field": False, "options": None},
    {"field_code": SEGMENT, "field_name": "Segment", "field_type": "enum",
     "is_custom_field": True, "options": [{"id": 31, "label": "Banks"}]},
    {"field_code": NPS, "field_name": "NPS", "field_type": "double", "is_custom_field": True,
     "options": None},
]


def deal_payload(deal_id: int = 1234, update: str = "2026-11-20T10:00:00Z",
                 **over: Any) -> dict[str, Any]:
    payload = {
        "id": deal_id, "title": "Baltic Savings Bank: HVAC retrofit", "owner_id": 2,
        "person_id": 301, "org_id": 101, "pipeline_id": 1, "stage_id": 3,
        "value": "12500.50", "currency": "EUR", "status": "won",
        "add_time": "2026-01-05T09:00:00Z", "update_time": update,
        "stage_change_time": "2026-03-01T08:30:00Z", "won_time": "2026-04-01T12:00:00Z",
        "lost_time": None, "lost_reason": None, "expected_close_date": "2026-04-15",
        "is_deleted": False,
        "custom_fields": {LEAD: 11, PROFIT: {"value": "1500.25", "currency": "EUR"},
                          TENDER: "21", LINK: "https://docs.example/E-1", TAGS: [1, 2],
                          VIOLATIONS: None, "f" * 40: "field created after we read defs"},
    }
    payload.update(over)
    return payload


def add_fields(path: str = "/api/v2/dealFields", rows: list[dict[str, Any]] | None = None,
               ) -> None:
    responses.add(responses.GET, f"{BASE}{path}",
                  json=ok(rows if rows is not None else DEAL_FIELDS, next_cursor=None))


# --- pagination and cursors -----------------------------------------------------------------
@responses.activate
def test_deals_page_through_next_cursor_and_carry_the_max_update_time() -> None:
    add_fields()
    responses.add(responses.GET, f"{BASE}/api/v2/deals",
                  match=[matchers.query_param_matcher({"cursor": "page-2"}, strict_match=False)],
                  json=ok([deal_payload(3, "2026-11-21T08:00:00Z")], next_cursor=None))
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok(
        [deal_payload(1, "2026-11-20T10:00:00Z"), deal_payload(2, "2026-11-20T11:00:00Z")],
        next_cursor="page-2"))
    pages = list(make().pull("deals", None, PullContext()))

    # The list read to its end: an empty last page records when that read began.
    assert [len(p.records) for p in pages] == [2, 1, 0]
    assert [watermark_at(p.cursor) for p in pages] == ["2026-11-20T11:00:00Z",
                                                       "2026-11-21T08:00:00Z",
                                                       "2026-11-21T08:00:00Z"]
    assert [Watermark.load(p.cursor).through for p in pages] == [None, None, NOW]
    assert [p.requests for p in pages] == [2, 1, 0]  # field definitions + first page, then one
    first = responses.calls[1].request
    assert first.params == {"limit": "500", "status": "open,won,lost,deleted",
                            "sort_by": "update_time", "sort_direction": "asc"}
    assert responses.calls[2].request.params["cursor"] == "page-2"
    assert all(TOKEN not in call.request.url for call in responses.calls)
    assert all(call.request.headers["x-api-token"] == TOKEN for call in responses.calls)


@responses.activate
def test_incremental_asks_from_cursor_minus_overlap_and_keeps_cursor_when_empty() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/activities",
                  json=ok([], next_cursor=None))
    context = PullContext(overlap=timedelta(minutes=10))
    pages = list(make().pull("activities", "2026-11-20T10:00:00Z", context))

    assert len(responses.calls) == 1  # an empty incremental run: exactly one request
    assert responses.calls[0].request.params["updated_since"] == "2026-11-20T09:50:00Z"
    assert [p.records for p in pages] == [[], []]
    assert watermark_at(pages[-1].cursor) == "2026-11-20T10:00:00Z"  # never moves back
    # ... but the next read starts from this one's start less the overlap
    assert Watermark.load(pages[-1].cursor).since(context.overlap) == NOW - context.overlap


@responses.activate
def test_full_pull_ignores_the_cursor() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/activities", json=ok([], next_cursor=None))
    list(make().pull("activities", "2026-11-20T10:00:00Z", PullContext(full=True)))
    assert "updated_since" not in responses.calls[0].request.params


@responses.activate
def test_stop_requested_returns_after_the_current_page() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/activities", json=ok(
        [{"id": 1, "type": "call", "update_time": "2026-11-20T10:00:00Z"}],
        next_cursor="more"))
    pages = list(make().pull("activities", None, PullContext(stop_requested=lambda: True)))
    assert len(pages) == 1
    assert len(responses.calls) == 1


@responses.activate
def test_an_unsorted_list_moves_the_cursor_only_at_its_end_capped_at_the_read_start() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/activities",
                  match=[matchers.query_param_matcher({"cursor": "p2"}, strict_match=False)],
                  json=ok([{"id": 3, "type": "call", "update_time": "2026-11-24T10:00:00Z"}],
                          next_cursor=None))
    responses.add(responses.GET, f"{BASE}/api/v2/activities", json=ok([
        {"id": 1, "type": "call", "update_time": "2026-11-20T10:00:00Z"},
        {"id": 2, "type": "call", "update_time": "2026-11-19T10:00:00Z"},
    ], next_cursor="p2"))
    pages = list(make().pull("activities", None, PullContext()))
    assert [len(p.records) for p in pages] == [2, 1]
    assert pages[0].cursor is None
    # a record stamped after the read began (NOW) may hide a change behind our position
    assert watermark_at(pages[-1].cursor) == "2026-11-23T12:00:00Z"


@responses.activate
def test_the_next_pass_drops_what_it_read_in_the_same_version() -> None:
    """The compound cursor: deals sharing the newest update_time are not read again, a
    deal edited since (same time, new version... or later) is."""
    same = "2026-11-23T11:55:00Z"  # five minutes before the first read (NOW)
    first = [deal_payload(i, same) for i in (1, 2, 3)]
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok(first, next_cursor=None))
    add_fields()
    pages = list(make().pull("deals", None, PullContext()))
    cursor = pages[-1].cursor
    assert sum(len(p.records) for p in pages) == 3

    responses.reset()
    add_fields()
    # deal 4: a late commit stamped before the first read; deal 2: edited since
    again = [*first, deal_payload(4, same), deal_payload(2, "2026-11-23T12:05:00Z")]
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok(again, next_cursor=None))
    pages = list(make(now=NOW + timedelta(minutes=15)).pull("deals", cursor, PullContext()))
    assert responses.calls[-1].request.params["updated_since"] == "2026-11-23T11:50:00Z"
    assert sorted(r.external_id for p in pages for r in p.records) == ["2", "4"]
    assert watermark_at(pages[-1].cursor) == "2026-11-23T12:05:00Z"


# --- normalization --------------------------------------------------------------------------
@responses.activate
def test_deal_fields_by_name_with_labels_money_and_numbers_from_strings() -> None:
    add_fields()
    responses.add(responses.GET, f"{BASE}/api/v2/deals",
                  json=ok([deal_payload()], next_cursor=None))
    deal = next(iter(make().pull("deals", None, PullContext()))).records[0]

    assert isinstance(deal, Deal)
    assert deal.external_id == "1234"
    assert deal.value == 12500.50
    assert (deal.owner_id, deal.company_id, deal.contact_ids) == ("2", "101", ["301"])
    assert (deal.pipeline_id, deal.stage_id, deal.status) == ("1", "3", "won")
    assert deal.stage_changed_at == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert deal.won_at == datetime(2026, 4, 1, 12, tzinfo=UTC)
    assert deal.updated_at is not None and deal.updated_at.tzinfo is not None
    assert deal.fields["Lead source"] == "Website"
    assert deal.fields["Tender"] == "Yes"  # option id sent as a string still resolves
    assert deal.fields["Profit"] == 1500.25
    assert deal.fields["Tags"] == ["Urgent", "VIP"]
    assert deal.fields["Estimate link"] == "https://docs.example/E-1"
    assert deal.fields["Expected close date"] == "2026-04-15"
    assert deal.fields["syncd violations"] is None
    assert not any(len(key) == 40 for key in deal.fields)  # never keyed by hash
    assert deal.raw["custom_fields"]["f" * 40] == "field created after we read defs"


@responses.activate
def test_companies_contacts_and_deleted_records() -> None:
    add_fields("/api/v2/organizationFields", ORG_FIELDS)
    responses.add(responses.GET, f"{BASE}/api/v2/organizations", json=ok([
        {"id": 101, "name": "Baltic Savings Bank", "owner_id": 1,
         "update_time": "2026-11-01T00:00:00Z", "is_deleted": False,
         "address": {"value": "1 Main St", "formatted_address": "1 Main St, Berlin"},
         "custom_fields": {SEGMENT: 31, NPS: "9"}},
        {"id": 102, "name": "Gone Ltd", "update_time": "2026-11-02T00:00:00Z",
         "is_deleted": True, "custom_fields": {SEGMENT: None, NPS: None}},
    ], next_cursor=None))
    page = next(iter(make().pull("companies", None, PullContext())))
    bank, gone = page.records
    assert isinstance(bank, Company)
    assert bank.fields == {"Segment": "Banks", "NPS": 9.0, "Address": "1 Main St, Berlin"}
    assert gone.deleted is True
    assert list(page.deleted_ids) == ["102"]


@responses.activate
def test_activity_due_time_is_utc_and_person_comes_from_participants() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/activities", json=ok([
        {"id": 7, "type": "meeting", "subject": "Kickoff", "done": True, "due_date": "2026-11-02",
         "due_time": "14:30", "marked_as_done_time": "2026-11-02T15:00:00Z", "deal_id": 1234,
         "org_id": 101, "owner_id": 3, "participants": [{"person_id": 9, "primary": False},
                                                        {"person_id": 301, "primary": True}],
         "note": "notes", "add_time": "2026-10-30T10:00:00Z",
         "update_time": "2026-11-02T15:00:00Z", "is_deleted": False},
        {"id": 8, "type": "task", "done": False, "due_date": "2026-12-01", "due_time": "",
         "marked_as_done_time": None, "deal_id": None, "update_time": "2026-11-03T00:00:00Z"},
    ], next_cursor=None))
    done, planned = next(iter(make().pull("activities", None, PullContext()))).records
    assert isinstance(done, Activity)
    assert done.due_at == datetime(2026, 11, 2, 14, 30, tzinfo=UTC)
    assert done.done_at == datetime(2026, 11, 2, 15, tzinfo=UTC)
    assert (done.deal_id, done.company_id, done.contact_id, done.owner_id) == (
        "1234", "101", "301", "3")
    assert planned.due_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert planned.due_date == date(2026, 12, 1)
    assert planned.done is False
    assert planned.done_at is None


@responses.activate
def test_a_malformed_record_fails_the_page_naming_stream_and_id() -> None:
    add_fields()
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok(
        [deal_payload(1), deal_payload(4321, update="yesterday")], next_cursor=None))
    with pytest.raises(BadPayloadError, match=r"deals: record 4321"):
        list(make().pull("deals", None, PullContext()))


@responses.activate
def test_success_false_with_200_is_not_data() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/activities",
                  json={"success": False, "error": "Scope not granted", "data": None})
    with pytest.raises(BadPayloadError, match="Scope not granted"):
        list(make().pull("activities", None, PullContext()))


# --- stage history --------------------------------------------------------------------------
def flow(row_id: int, key: str, old: str | None, new: str | None, at: str,
         deal: int = 1234) -> dict[str, Any]:
    return {"object": "dealChange", "timestamp": at, "data": {
        "id": row_id, "item_id": deal, "field_key": key, "old_value": old, "new_value": new,
        "log_time": at, "additional_data": None}}


@responses.activate
def test_flow_pages_string_values_creation_row_and_null_data() -> None:
    flow_url = f"{BASE}/v1/deals/1234/flow"
    responses.add(responses.GET, flow_url,
                  match=[matchers.query_param_matcher({"start": "0"}, strict_match=False)],
                  json=ok([flow(13, "status", "open", "won", "2026-04-01 12:00:00"),
                           flow(12, "stage_id", "2", "4", "2026-03-01 08:30:00")],
                          pagination={"start": 0, "limit": 2, "more_items_in_collection": True,
                                      "next_start": 2}))
    responses.add(responses.GET, flow_url,
                  match=[matchers.query_param_matcher({"start": "2"}, strict_match=False)],
                  json=ok([{"object": "activity", "timestamp": "2026-02-01 10:00:00",
                            "data": {"id": 5}},
                           flow(11, "stage_id", "1", "2", "2026-02-01 09:00:00"),
                           flow(10, "add_time", None, "2026-01-05 09:00:00",
                                "2026-01-05 09:00:00")],
                          pagination={"start": 2, "limit": 2,
                                      "more_items_in_collection": False}))
    responses.add(responses.GET, f"{BASE}/v1/deals/1235/flow",
                  json={"success": True, "data": None, "additional_data": {
                      "pagination": {"start": 0, "limit": 500,
                                     "more_items_in_collection": False}}})
    context = PullContext(changed_deal_ids={"1234", "1235"})
    pages = list(make().pull("stage_history", None, context))

    assert len(pages) == 1
    assert pages[0].cursor is None
    assert pages[0].requests == 3
    changes = pages[0].records
    assert all(isinstance(c, StageChange) for c in changes)
    assert [(c.external_id, c.from_stage_id, c.to_stage_id) for c in changes] == [
        ("add-10", None, "1"), ("11", "1", "2"), ("12", "2", "4")]
    assert changes[2].at == datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    assert responses.calls[0].request.params["items"] == "dealChange"


@responses.activate
def test_history_only_for_deals_updated_within_history_days() -> None:
    add_fields()
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok([
        deal_payload(1, update="2026-11-20T10:00:00Z"),
        deal_payload(2, update="2024-01-01T10:00:00Z"),  # older than 365 days
    ], next_cursor=None))
    responses.add(responses.GET, f"{BASE}/v1/deals/1/flow", json=ok(None))
    connector = make()
    list(connector.pull("deals", None, PullContext()))
    list(connector.pull("stage_history", None, PullContext(changed_deal_ids={"1", "2"})))
    flows = [c.request.url for c in responses.calls if "/flow" in c.request.url]
    assert len(flows) == 1
    assert "/v1/deals/1/flow" in flows[0]
    responses.calls.reset()
    assert list(make(history_days=0).pull(
        "stage_history", None, PullContext(changed_deal_ids={"1"}))) == []
    assert len(responses.calls) == 0


# --- errors -------------------------------------------------------------------------------------
@responses.activate
def test_bad_token_is_an_auth_error_without_the_token() -> None:
    responses.add(responses.GET, f"{BASE}/v1/users", status=401,
                  json={"success": False, "error": "unauthorized access", "errorCode": 401})
    with pytest.raises(AuthError) as info:
        list(make().pull("users", None, PullContext()))
    assert TOKEN not in str(info.value)
    assert len(responses.calls) == 1


@responses.activate
def test_cloudflare_block_page_is_blocked_error() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/pipelines", status=403,
                  body="<!DOCTYPE html><html><title>Attention Required! | Cloudflare</title>",
                  content_type="text/html")
    with pytest.raises(BlockedError, match="Cloudflare"):
        list(make().pull("pipelines", None, PullContext()))
    assert len(responses.calls) == 1


@responses.activate
def test_daily_budget_exhausted_is_not_retried() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/stages", status=429,
                  json={"success": False, "error": "Daily limit reached"},
                  headers={"x-ratelimit-remaining": "18", "x-ratelimit-reset": "2",
                           "x-daily-ratelimit-token-remaining": "0"})
    with pytest.raises(BudgetExhaustedError):
        list(make().pull("stages", None, PullContext()))
    assert len(responses.calls) == 1


@responses.activate
def test_burst_429_waits_and_retries() -> None:
    responses.add(responses.GET, f"{BASE}/api/v2/stages", status=429, json={},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1.5"})
    responses.add(responses.GET, f"{BASE}/api/v2/stages", json=ok(
        [{"id": 1, "name": "Briefing", "pipeline_id": 1, "order_nr": 1}], next_cursor=None))
    clock = FakeClock()
    connector = PipedriveConnector(PipedriveSettings(base_url=BASE, api_token=TOKEN),
                                   tenant="acme", sleep=clock.sleep, clock=clock)
    pages = list(connector.pull("stages", None, PullContext()))
    assert pages[0].records[0].name == "Briefing"
    assert pages[0].requests == 2
    assert sum(clock.sleeps) >= 1.5


# --- write-back ---------------------------------------------------------------------------------
@responses.activate
def test_ensure_fields_creates_only_the_missing_ones() -> None:
    add_fields()
    add_fields("/api/v2/organizationFields", ORG_FIELDS)
    responses.add(responses.POST, f"{BASE}/v1/organizationFields", json=ok(
        {"id": 77, "key": KARMA, "name": "syncd karma", "field_type": "double"}))
    connector = make()
    connector.ensure_fields([FieldSpec("deal", "syncd violations", "text"),
                             FieldSpec("company", "syncd karma", "number")])
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 1
    assert posts[0].request.url == f"{BASE}/v1/organizationFields"
    assert posts[0].response.json()["data"]["key"] == KARMA
    assert json.loads(posts[0].request.body) == {"name": "syncd karma", "field_type": "double"}
    assert connector.catalog("company").custom("syncd karma").key == KARMA
    connector.ensure_fields([FieldSpec("company", "syncd karma", "number")])
    assert len([c for c in responses.calls if c.request.method == "POST"]) == 1


@responses.activate
def test_write_field_patches_custom_fields_and_returns_the_saved_record() -> None:
    add_fields("/api/v2/organizationFields", [*ORG_FIELDS, {
        "field_code": KARMA, "field_name": "syncd karma", "field_type": "double",
        "is_custom_field": True, "options": None}])
    saved = {"id": 101, "name": "Baltic Savings Bank", "update_time": "2026-11-23T12:00:01Z",
             "custom_fields": {SEGMENT: 31, NPS: 9, KARMA: 42.5}}
    responses.add(responses.PATCH, f"{BASE}/api/v2/organizations/101", status=503,
                  json={"error": "maintenance"})
    responses.add(responses.PATCH, f"{BASE}/api/v2/organizations/101", json=ok(saved))
    result = make().write_field(FieldWrite("company", "101", "syncd karma", "42.5"))

    assert result.ok
    assert isinstance(result.record, Company)
    assert result.record.fields["syncd karma"] == 42.5
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    assert len(patches) == 2  # an absolute value: retried like a GET
    assert json.loads(patches[-1].request.body) == {"custom_fields": {KARMA: 42.5}}


@responses.activate
def test_write_field_reports_item_failures_and_unknown_fields() -> None:
    add_fields()
    responses.add(responses.PATCH, f"{BASE}/api/v2/deals/999", status=404,
                  json={"success": False, "error": "Deal not found"})
    connector = make()
    gone = connector.write_field(FieldWrite("deal", "999", "syncd violations", "2 open"))
    assert not gone.ok
    assert "Deal not found" in (gone.error or "")
    unknown = connector.write_field(FieldWrite("deal", "1", "No such field", "x"))
    assert not unknown.ok
    assert "ensure_fields" in (unknown.error or "")


@responses.activate
def test_find_task_reads_every_page_for_the_marker() -> None:
    url = f"{BASE}/api/v2/activities"
    responses.add(responses.GET, url,
                  match=[matchers.query_param_matcher({"cursor": "p2"}, strict_match=False)],
                  json=ok([{"id": 88, "type": "task", "note": "Fix it\n\n[syncd:v42]"}],
                          next_cursor=None))
    responses.add(responses.GET, url,
                  json=ok([{"id": 87, "type": "task", "note": "[syncd:v4]"}],
                          next_cursor="p2"))
    task = TaskCreate("1234", "2", "Fix it", "Fix it", "syncd:v42", date(2026, 12, 1))
    assert make().find_task(task) == "88"
    assert responses.calls[0].request.params["deal_id"] == "1234"
    assert len(responses.calls) == 2


@responses.activate
def test_create_task_posts_once_and_is_not_retried_on_5xx() -> None:
    url = f"{BASE}/api/v2/activities"
    created = {"id": 555, "type": "task", "subject": "Plan the next step", "deal_id": 1234,
               "owner_id": 2, "due_date": "2026-12-01", "done": False,
               "note": "Plan it\n\n[syncd:v7]", "update_time": "2026-11-23T12:00:00Z"}
    responses.add(responses.POST, url, json=ok(created), status=201)
    task = TaskCreate("1234", "2", "Plan the next step", "Plan it", "syncd:v7",
                      date(2026, 12, 1))
    result = make().create_task(task)
    assert result.ok
    assert result.crm_id == "555"
    assert isinstance(result.record, Activity)
    body = json.loads(responses.calls[0].request.body)
    assert body == {"subject": "Plan the next step", "type": "task", "deal_id": 1234,
                    "owner_id": 2, "due_date": "2026-12-01",
                    "note": "Plan it\n\n[syncd:v7]"}
    # A 502 after Pipedrive applied the POST: found by its marker, never created twice.
    responses.replace(responses.POST, url, status=502, body="<html>502 Bad Gateway</html>",
                      content_type="text/html")
    responses.add(responses.GET, url, json=ok([{**created, "note": "x [syncd:v70]", "id": 9},
                                               created]))
    responses.calls.reset()
    found = make().create_task(task)
    assert found.ok and found.crm_id == "555", "the landed task, not a second one"
    methods = [c.request.method for c in responses.calls]
    assert methods == ["POST", "GET"], "looked up, not re-sent"
    assert "deal_id=1234" in responses.calls[1].request.url


@responses.activate
def test_create_task_is_resent_only_when_the_lookup_proves_it_absent() -> None:
    url = f"{BASE}/api/v2/activities"
    created = {"id": 556, "type": "task", "subject": "S", "deal_id": 1234, "owner_id": 2,
               "due_date": "2026-12-01", "done": False, "note": "n\n\n[syncd:v8]",
               "update_time": "2026-11-23T12:00:00Z"}
    responses.add(responses.POST, url, status=503, json={"error": "maintenance"})
    responses.add(responses.POST, url, json=ok(created), status=201)
    responses.add(responses.GET, url, json=ok([]))
    task = TaskCreate("1234", "2", "S", "n", "syncd:v8", date(2026, 12, 1))
    result = make().create_task(task)
    assert result.ok and result.crm_id == "556"
    assert [c.request.method for c in responses.calls] == ["POST", "GET", "POST"]


@responses.activate
def test_a_post_without_a_marker_is_still_never_repeated_after_weather() -> None:
    url = f"{BASE}/api/v2/activities"
    responses.add(responses.POST, url, status=503, json={"error": "maintenance"})
    with pytest.raises(RetriableAPIError):
        make().client.call("POST", "/api/v2/activities",
                           json={"subject": "no marker", "deal_id": 1})
    assert len(responses.calls) == 1  # may have been applied: never repeated blindly


@responses.activate
def test_create_task_retries_a_429() -> None:
    url = f"{BASE}/api/v2/activities"
    responses.add(responses.POST, url, status=429, json={},
                  headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"})
    responses.add(responses.POST, url, status=201, json=ok({"id": 9, "type": "task"}))
    result = make().create_task(TaskCreate("1", None, "s", "n [m]", "[m]", date(2026, 12, 1)))
    assert result.ok
    assert len(responses.calls) == 2


# --- inspect, settings, registration --------------------------------------------------------------
@responses.activate
def test_inspect_describes_the_account() -> None:
    responses.add(responses.GET, f"{BASE}/v1/users", json=ok([
        {"id": 1, "name": "Anna Petrova", "email": "anna@x.example", "active_flag": True}]))
    responses.add(responses.GET, f"{BASE}/api/v2/pipelines", json=ok([
        {"id": 2, "name": "Partners", "order_nr": 2}, {"id": 1, "name": "Projects",
                                                       "order_nr": 1}], next_cursor=None))
    responses.add(responses.GET, f"{BASE}/api/v2/stages", json=ok([
        {"id": 2, "name": "Estimate", "pipeline_id": 1, "order_nr": 2},
        {"id": 1, "name": "Briefing", "pipeline_id": 1, "order_nr": 1},
        {"id": 9, "name": "Intro", "pipeline_id": 2, "order_nr": 1}], next_cursor=None))
    responses.add(responses.GET, f"{BASE}/v1/activityTypes", json=ok([
        {"id": 1, "name": "Call", "key_string": "call", "active_flag": True},
        {"id": 2, "name": "Old", "key_string": "old", "active_flag": False}]))
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok([
        deal_payload(1, status="lost", lost_reason="Too expensive"),
        deal_payload(2, status="lost", lost_reason=" Too expensive "),
        deal_payload(3, status="lost", lost_reason=""),
        deal_payload(4, status="lost", lost_reason="dunno")], next_cursor=None))
    add_fields()
    add_fields("/api/v2/organizationFields", ORG_FIELDS)
    add_fields("/api/v2/personFields", [])
    inspection = make().inspect()

    assert [p["name"] for p in inspection.pipelines] == ["Projects", "Partners"]
    assert [s["name"] for s in inspection.pipelines[0]["stages"]] == ["Briefing", "Estimate"]
    assert inspection.loss_reasons == ["Too expensive", "dunno"]
    assert "Lead source" in inspection.fields["deal"]
    assert inspection.fields["company"] == ["Name", "Segment", "NPS"]
    assert inspection.activity_types == ["call"]
    assert inspection.users == [{"id": "1", "name": "Anna Petrova", "email": "anna@x.example",
                                 "active": True}]
    deals_call = next(c for c in responses.calls if "/api/v2/deals" in c.request.url)
    assert deals_call.request.params["status"] == "lost"


def test_settings_validate_the_connection() -> None:
    settings = PipedriveSettings(base_url="https://acme.pipedrive.com/api/v2/",
                                 api_token="t")
    assert settings.base_url == "https://acme.pipedrive.com"
    assert PipedriveSettings.secret_keys == ("api_token",)
    assert PipedriveSettings(base_url="http://127.0.0.1:8000", api_token="t").burst_limit == 20
    with pytest.raises(ValidationError, match="https"):
        PipedriveSettings(base_url="http://acme.pipedrive.com", api_token="t")
    with pytest.raises(ValidationError):
        PipedriveSettings(base_url="https://acme.pipedrive.com", api_token="t", page_size=501)
    with pytest.raises(ValidationError):
        PipedriveSettings(base_url="https://acme.pipedrive.com", api_token="t", unknown=1)


def test_plugin_registers_the_connector() -> None:
    import syncd_pipedrive.plugin as plugin

    plugins = make_plugin_manager(load_entrypoints=False, extra=(plugin,))
    assert plugins.connectors.get("pipedrive") is PipedriveConnector
    assert PipedriveConnector.streams[0] == "users"
    # contacts last: the pass audits while they are pulled (nothing after the pull reads them)
    assert PipedriveConnector.streams[-2:] == ("stage_history", "contacts")


# --- values read by the shared reader (syncd.values) -----------------------------------------
@responses.activate
def test_an_unreadable_custom_number_is_a_page_problem_and_the_deal_is_kept() -> None:
    add_fields()
    good = deal_payload(1, custom_fields={PROFIT: {"value": "1 234,50", "currency": "RUB"}})
    bad = deal_payload(2, custom_fields={PROFIT: {"value": "twelve", "currency": "RUB"}})
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok([good, bad], next_cursor=None))
    pages = list(make().pull("deals", None, PullContext()))

    deals = {d.external_id: d for p in pages for d in p.records}
    assert deals["1"].fields["Profit"] == 1234.5
    assert deals["2"].fields["Profit"] is None
    problems = [p for page in pages for p in page.problems]
    assert len(problems) == 1
    for part in ("'acme'", "deals", "record 2", "'Profit'", "'twelve'"):
        assert part in problems[0]


@responses.activate
def test_archived_deals_are_read_by_default_they_are_real_sales() -> None:
    add_fields()
    responses.add(responses.GET, f"{BASE}/api/v2/deals/archived",
                  json=ok([deal_payload(7, is_archived=True)], next_cursor=None))
    responses.add(responses.GET, f"{BASE}/api/v2/deals", json=ok([], next_cursor=None))
    assert PipedriveSettings(base_url=BASE, api_token=TOKEN).include_archived is True
    pages = list(make(include_archived=True).pull("deals", None, PullContext()))
    won = [d for p in pages for d in p.records]
    assert [(d.external_id, d.status) for d in won] == [("7", "won")]


@responses.activate
def test_find_task_does_not_take_a_longer_marker_for_its_own() -> None:
    """``syncd:v1`` is a prefix of ``syncd:v12``: only the bracketed marker matches, so a
    retry never records another violation's task as the one it created."""
    responses.add(responses.GET, f"{BASE}/api/v2/activities",
                  json=ok([{"id": 90, "type": "task", "note": "Other\n\n[syncd:v12]"}],
                          next_cursor=None))
    task = TaskCreate("1234", "2", "Fix it", "Fix it", "syncd:v1", date(2026, 12, 1))
    assert make().find_task(task) is None
