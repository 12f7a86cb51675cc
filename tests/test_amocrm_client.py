"""The amoCRM connector against documented-shape responses (``responses``; no network)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from pydantic import ValidationError
from support import FakeClock
from syncd_amocrm import AmoCRMConnector, AmoCRMSettings

from syncd.connector import ConnectorState, FieldSpec, FieldWrite, PullContext, TaskCreate
from syncd.errors import AuthError, BadPayloadError, BlockedError
from syncd.oauth import TokenCipher, TokenSet, TokenStore
from syncd.plugins import make_plugin_manager
from syncd.records import Activity, Deal, StageChange
from syncd.store import Database
from syncd.streams import watermark_at

BASE = "https://acme.amocrm.ru"
TOKEN = "amo-long-lived-0123456789"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY = TokenCipher.generate_key()
OAUTH = {"client_id": "cid", "client_secret": "csecret-123", "redirect_uri":
         "https://syncd.example/cb"}


def make(**settings: Any) -> AmoCRMConnector:
    clock = FakeClock()  # a fresh clock: a private rate limiter, instant waits
    settings.setdefault("base_url", BASE)
    if "client_id" not in settings:
        settings.setdefault("long_lived_token", TOKEN)
    return AmoCRMConnector(AmoCRMSettings(**settings), tenant="acme", sleep=clock.sleep,
                           clock=clock, now=lambda: NOW)


def hal(key: str, items: list[Any], more: bool = False) -> dict[str, Any]:
    links: dict[str, Any] = {"self": {"href": "x"}}
    if more:
        links["next"] = {"href": "y"}
    return {"_page": 1, "_links": links, "_embedded": {key: items}}


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


LEAD_FIELDS = [
    {"id": 601, "name": "Lead source", "type": "select",
     "enums": [{"id": 11, "value": "Website"}]},
    {"id": 602, "name": "Profit", "type": "numeric", "enums": None},
    {"id": 606, "name": "Snooze until", "type": "date", "enums": None},
]


def lead(lead_id: int, updated: int, **extra: Any) -> dict[str, Any]:
    return {"id": lead_id, "name": f"Lead {lead_id}", "price": 1000, "status_id": 40001,
            "pipeline_id": 3001, "responsible_user_id": 2, "created_at": updated - 100,
            "updated_at": updated, "closed_at": None, "loss_reason_id": None,
            "custom_fields_values": None, "_embedded": {"companies": [{"id": 7}],
                                                       "contacts": [{"id": 9, "is_main": True}]},
            **extra}


def mock_reference(rsps: responses.RequestsMock) -> None:
    rsps.get(f"{BASE}/api/v4/leads/custom_fields", json=hal("custom_fields", LEAD_FIELDS))
    rsps.get(f"{BASE}/api/v4/leads/loss_reasons",
             json=hal("loss_reasons", [{"id": 7001, "name": "Too expensive"}]))


# --- settings ----------------------------------------------------------------------------------
def test_settings_accept_amocrm_and_kommo_hosts_and_one_auth_mode() -> None:
    assert AmoCRMSettings(base_url="https://acme.kommo.com/api/v4/",
                          long_lived_token="t").base_url == "https://acme.kommo.com"
    assert AmoCRMSettings(base_url=BASE, **OAUTH, refresh_token="r").uses_oauth
    for bad in ("https://www.amocrm.ru", "http://acme.amocrm.ru", "https://acme.example.com"):
        with pytest.raises(ValidationError, match="base_url"):
            AmoCRMSettings(base_url=bad, long_lived_token="t")
    with pytest.raises(ValidationError, match="not both"):
        AmoCRMSettings(base_url=BASE, long_lived_token="t", **OAUTH, refresh_token="r")
    with pytest.raises(ValidationError, match="exactly one seed"):
        AmoCRMSettings(base_url=BASE, **OAUTH)
    assert set(AmoCRMSettings.secret_keys) >= {"long_lived_token", "client_secret",
                                               "refresh_token", "authorization_code"}


def test_the_plugin_registers_the_amocrm_connector() -> None:
    registry = make_plugin_manager().connectors
    assert registry.get("amocrm") is AmoCRMConnector


# --- pulling -----------------------------------------------------------------------------------
def unix(cursor: str | None) -> str | None:
    """A compound cursor's watermark as Unix seconds (amoCRM's own time format)."""
    at = watermark_at(cursor)
    return None if at is None else str(int(datetime.fromisoformat(at).timestamp()))


@responses.activate
def test_deals_walk_updated_at_as_a_keyset_and_carry_cursors() -> None:
    mock_reference(responses)
    same = [lead(i, 1000) for i in (1, 2)]
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", same, more=True))
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", same, more=True))
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [lead(3, 1001), lead(4, 1005)],
                                                   more=True))
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [lead(4, 1005)]))
    responses.get(f"{BASE}/api/v4/leads", status=204)  # with=only_deleted: nothing deleted
    pages = list(make(page_size=2).pull("deals", "2000", PullContext(
        overlap=timedelta(seconds=1500))))
    ids = [r.external_id for p in pages for r in p.records]
    assert ids == ["1", "2", "3", "4"], "boundary records read twice are dropped"
    calls = [query(c) for c in responses.calls if urlsplit(c.request.url).path == "/api/v4/leads"]
    assert calls[0]["order[updated_at]"] == ["asc"]
    assert [(c["filter[updated_at][from]"][0], c["page"][0]) for c in calls[:4]] == [
        ("500", "1"), ("1000", "1"), ("1000", "2"), ("1005", "1")], \
        "restart at the newest second read; page on only within one second"
    assert {unix(p.cursor) for p in pages if p.records} == {"2000"}, \
        "never behind the stored cursor"


@responses.activate
def test_lead_normalization_statuses_reasons_null_fields() -> None:
    mock_reference(responses)
    won = lead(1, 1000, status_id=142, closed_at=990, custom_fields_values=[
        {"field_id": 601, "field_name": "Lead source", "values": [{"value": "Website",
                                                                   "enum_id": 11}]},
        {"field_id": 602, "field_name": "Profit", "values": [{"value": "1 500,5"}]},
        {"field_id": 606, "field_name": "Snooze until", "values": [{"value": 1767225600}]},
        {"field_id": 999, "field_name": "Unknown", "values": None}])
    lost = lead(2, 1000, status_id=143, pipeline_id=3002, loss_reason_id=7001, closed_at=980)
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [won, lost]))
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [{"id": 5, "is_deleted": True,
                                                              "updated_at": 999}]))
    pages = list(make().pull("deals", None, PullContext()))
    deals = [r for p in pages for r in p.records]
    assert isinstance(deals[0], Deal)
    assert (deals[0].status, deals[0].stage_id, deals[0].won_at) == (
        "won", "3001:142", datetime.fromtimestamp(990, UTC))
    assert deals[0].fields == {"Lead source": "Website", "Profit": 1500.5,
                               "Snooze until": "2026-01-01", "Unknown": None}
    assert (deals[1].status, deals[1].stage_id, deals[1].lost_reason) == (
        "lost", "3002:143", "Too expensive")
    assert deals[0].contact_ids == ["9"] and deals[0].company_id == "7"
    assert [p.deleted_ids for p in pages if p.deleted_ids] == [["5"]]


@responses.activate
def test_a_malformed_record_fails_the_page_naming_it() -> None:
    mock_reference(responses)
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [lead(1, 1000, created_at="x")]))
    with pytest.raises(BadPayloadError, match=r"deals: record 1 is malformed"):
        list(make().pull("deals", None, PullContext()))


@responses.activate
def test_history_reads_status_events_in_a_closed_window() -> None:
    events = [{"id": "01ab", "type": "lead_status_changed", "entity_id": 7,
               "entity_type": "lead", "created_at": 1500,
               "value_before": [{"lead_status": {"id": 40001, "pipeline_id": 3001}}],
               "value_after": [{"lead_status": {"id": 142, "pipeline_id": 3001}}]},
              {"id": "01ac", "type": "lead_added", "entity_id": 8, "entity_type": "lead",
               "created_at": 1600, "value_before": [], "value_after": []}]
    responses.get(f"{BASE}/api/v4/events", json=hal("events", events))
    pages = list(make().pull("stage_history", "2000", PullContext(
        overlap=timedelta(seconds=600))))
    changes = [r for p in pages for r in p.records]
    assert changes == [StageChange("01ab", "7", "3001:40001", "3001:142",
                                   datetime.fromtimestamp(1500, UTC), raw=events[0])]
    sent = query(responses.calls[0])
    assert sent["filter[created_at][from]"] == ["1400"]
    assert sent["filter[created_at][to]"] == [str(int(NOW.timestamp()))]
    assert sent["limit"] == ["100"], "events are capped at 100 per page"
    assert unix(pages[-1].cursor) == str(int(NOW.timestamp()))


@responses.activate
def test_activities_are_tasks_and_call_notes_with_one_final_cursor() -> None:
    task = {"id": 5, "entity_id": 7, "entity_type": "leads", "is_completed": True,
            "task_type_id": 2, "text": "Kickoff\nagenda", "complete_till": 1000,
            "created_at": 900, "updated_at": 1100, "responsible_user_id": 3}
    note = {"id": 6, "entity_id": 9, "note_type": "call_out", "created_at": 1200,
            "updated_at": 1200, "params": {"phone": "+7 900", "duration": 60}}
    responses.get(f"{BASE}/api/v4/tasks", json=hal("tasks", [task]))
    responses.get(f"{BASE}/api/v4/leads/notes", status=204)
    responses.get(f"{BASE}/api/v4/contacts/notes", json=hal("notes", [note]))
    responses.get(f"{BASE}/api/v4/companies/notes", status=204)
    pages = list(make().pull("activities", None, PullContext()))
    records = [r for p in pages for r in p.records]
    assert [(r.external_id, r.type, r.done, r.deal_id, r.contact_id) for r in records] == [
        ("task:5", "task_2", True, "7", None), ("note:contacts:6", "call_out", True, None, "9")]
    assert isinstance(records[0], Activity) and records[0].subject == "Kickoff"
    assert [unix(p.cursor) for p in pages] == [None, "1200"]
    note_query = query(responses.calls[2])
    assert note_query["filter[note_type][]"] == ["call_in", "call_out"]


# --- errors and limits ---------------------------------------------------------------------------
@responses.activate
def test_html_403_is_a_loud_ban_never_retried() -> None:
    responses.get(f"{BASE}/api/v4/users", status=403, body="<html><body>403 Forbidden nginx",
                  content_type="text/html")
    with pytest.raises(BlockedError, match="banned"):
        list(make().pull("users", None, PullContext()))
    assert len(responses.calls) == 1


@responses.activate
def test_429_waits_and_retries_and_204_is_an_empty_page() -> None:
    responses.get(f"{BASE}/api/v4/users", status=429, body="Too Many Requests")
    responses.get(f"{BASE}/api/v4/users", status=204)
    pages = list(make().pull("users", None, PullContext()))
    assert [p.records for p in pages] == [[]]
    assert len(responses.calls) == 2


@responses.activate
def test_a_rejected_long_lived_token_says_how_to_fix_it() -> None:
    responses.get(f"{BASE}/api/v4/users", status=401, json={"title": "Unauthorized",
                                                             "status": 401})
    with pytest.raises(AuthError, match="Keys and scopes") as caught:
        list(make().pull("users", None, PullContext()))
    assert TOKEN not in str(caught.value)
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


# --- OAuth -------------------------------------------------------------------------------------
def oauth(database: Database, **settings: Any) -> AmoCRMConnector:
    connector = make(**OAUTH, **settings)
    url = database.url.render_as_string(hide_password=False)
    connector.state = ConnectorState(tokens=TokenStore(Database(url), "acme", "amocrm",
                                                       lambda: TokenCipher(KEY)))
    return connector


def token_answer(n: int, expires_in: int = 86400) -> dict[str, Any]:
    return {"token_type": "Bearer", "expires_in": expires_in, "access_token": f"acc-{n}",
            "refresh_token": f"ref-{n}"}


@responses.activate
def test_oauth_exchanges_the_code_once_and_refreshes_on_401(database: Database) -> None:
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(1))
    responses.get(f"{BASE}/api/v4/users", status=401, json={"status": 401})
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(2))
    responses.get(f"{BASE}/api/v4/users", json=hal("users", [{"id": 1, "name": "Anna"}]))
    connector = oauth(database, authorization_code="code-abc")
    pages = list(connector.pull("users", None, PullContext()))
    assert [u.name for p in pages for u in p.records] == ["Anna"]
    grants = [json.loads(c.request.body) for c in responses.calls if "oauth2" in c.request.url]
    assert [(g["grant_type"], g.get("code"), g.get("refresh_token")) for g in grants] == [
        ("authorization_code", "code-abc", None), ("refresh_token", None, "ref-1")]
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer acc-2"
    assert "Authorization" not in responses.calls[2].request.headers, \
        "the token endpoint gets no bearer token"
    stored = connector.state.tokens.load()  # type: ignore[union-attr]
    assert (stored.access_token, stored.refresh_token) == ("acc-2", "ref-2")


@responses.activate
def test_oauth_refreshes_before_expiry_without_a_401(database: Database) -> None:
    connector = oauth(database, refresh_token="ref-0")
    store = connector.state.tokens
    assert store is not None
    store.load("ref-0", lambda: TokenSet("acc-0", "ref-0", NOW + timedelta(seconds=60)))
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(1))
    responses.get(f"{BASE}/api/v4/users", status=204)
    list(connector.pull("users", None, PullContext()))
    assert [c.request.url.split("?")[0] for c in responses.calls] == [
        f"{BASE}/oauth2/access_token", f"{BASE}/api/v4/users"]
    assert responses.calls[1].request.headers["Authorization"] == "Bearer acc-1"


@responses.activate
def test_a_refused_refresh_disconnects_the_tenant_with_how_to_reconnect(
        database: Database) -> None:
    connector = oauth(database, refresh_token="ref-0")
    store = connector.state.tokens
    assert store is not None
    store.load("ref-0", lambda: TokenSet("acc-0", "ref-0", NOW - timedelta(seconds=1)))
    responses.post(f"{BASE}/oauth2/access_token", status=401,
                   json={"title": "Unauthorized", "status": 401,
                         "hint": "Token has been revoked"})
    with pytest.raises(AuthError, match="authorize the integration again") as caught:
        list(connector.pull("users", None, PullContext()))
    assert "ref-0" not in str(caught.value)
    assert store.status()[0] == "disconnected"
    assert len(responses.calls) == 1, "a refused refresh is not retried"


def test_oauth_without_a_token_store_refuses_to_burn_the_seed() -> None:
    connector = make(**OAUTH, refresh_token="ref-0")
    with pytest.raises(AuthError, match="token store"):
        list(connector.pull("users", None, PullContext()))


# --- write-back ---------------------------------------------------------------------------------
@responses.activate
def test_field_writes_are_batched_and_read_back() -> None:
    responses.get(f"{BASE}/api/v4/companies/custom_fields", json=hal("custom_fields", [
        {"id": 701, "name": "syncd karma", "type": "numeric"}]))
    responses.patch(f"{BASE}/api/v4/companies", json=hal("companies", []))
    responses.get(f"{BASE}/api/v4/companies", json=hal("companies", [
        {"id": i, "name": f"C{i}", "updated_at": 5, "custom_fields_values": [
            {"field_id": 701, "values": [{"value": str(i)}]}]} for i in range(1, 121)]))
    changes = [FieldWrite("company", str(i), "syncd karma", float(i)) for i in range(1, 121)]
    results = make(batch_size=50).write_fields(changes)
    patches = [c for c in responses.calls if c.request.method == "PATCH"]
    assert [len(json.loads(c.request.body)) for c in patches] == [50, 50, 20]
    first = json.loads(patches[0].request.body)[0]
    assert first == {"id": 1, "custom_fields_values": [{"field_id": 701,
                                                        "values": [{"value": 1}]}]}
    assert all(r.ok for r in results)
    assert results[5].record is not None and results[5].record.fields == {"syncd karma": 6.0}
    rereads = [c for c in responses.calls if c.request.method == "GET"
               and urlsplit(c.request.url).path == "/api/v4/companies"]
    assert len(rereads) == 1 and len(query(rereads[0])["filter[id][]"]) == 120


@responses.activate
def test_a_rejected_batch_is_retried_item_by_item() -> None:
    responses.get(f"{BASE}/api/v4/leads/custom_fields", json=hal("custom_fields", [
        {"id": 650, "name": "syncd violations", "type": "textarea"}]))
    responses.get(f"{BASE}/api/v4/leads/loss_reasons", status=204)
    responses.patch(f"{BASE}/api/v4/leads", status=400, json={
        "title": "Bad Request", "status": 400, "validation-errors": []})
    responses.patch(f"{BASE}/api/v4/leads", json={})
    responses.patch(f"{BASE}/api/v4/leads", status=400, json={"status": 400,
                                                                "detail": "entity 2 not found"})
    responses.get(f"{BASE}/api/v4/leads", status=204)
    changes = [FieldWrite("deal", "1", "syncd violations", "Sales Book: ..."),
               FieldWrite("deal", "2", "syncd violations", "")]
    results = make().write_fields(changes)
    assert [r.ok for r in results] == [True, False]
    assert "not found" in (results[1].error or "")
    bodies = [json.loads(c.request.body) for c in responses.calls if c.request.method == "PATCH"]
    assert bodies[2] == [{"id": 2, "custom_fields_values": [{"field_id": 650,
                                                             "values": None}]}], \
        "an empty text clears the field with values: null"


@responses.activate
def test_missing_fields_are_created_api_only() -> None:
    responses.get(f"{BASE}/api/v4/leads/custom_fields", status=204)
    responses.get(f"{BASE}/api/v4/companies/custom_fields", status=204)
    responses.post(f"{BASE}/api/v4/leads/custom_fields", json=hal("custom_fields", [
        {"id": 900, "name": "syncd violations", "type": "textarea", "is_api_only": True}]))
    responses.post(f"{BASE}/api/v4/companies/custom_fields", json=hal("custom_fields", [
        {"id": 901, "name": "syncd karma", "type": "numeric", "is_api_only": True}]))
    connector = make()
    connector.ensure_fields([FieldSpec("company", "syncd karma", "number"),
                             FieldSpec("deal", "syncd violations", "text")])
    posts = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert posts == [[{"name": "syncd violations", "type": "textarea", "is_api_only": True,
                       "sort": 1000}],
                     [{"name": "syncd karma", "type": "numeric", "is_api_only": True,
                       "sort": 1000}]]
    assert connector.catalog("company").named("syncd karma") is not None


@responses.activate
def test_tasks_are_created_in_one_batch_and_found_by_marker() -> None:
    responses.post(f"{BASE}/api/v4/tasks", json=hal("tasks", [
        {"id": 50 + n, "request_id": f"syncd:v{n}"} for n in (2, 1, 3)]))
    tasks = [TaskCreate(deal_id=str(10 + n), owner_id="2", subject=f"Call {n}",
                        note=f"Call {n}\n\n[syncd:v{n}]", marker=f"syncd:v{n}",
                        due=date(2026, 11, 24)) for n in (1, 2, 3)]
    results = make().create_tasks(tasks)
    assert [r.crm_id for r in results] == ["51", "52", "53"], "matched by request_id"
    body = json.loads(responses.calls[0].request.body)
    assert body[0]["text"] == "Call 1\n\n[syncd:v1]" and body[0]["entity_type"] == "leads"
    assert body[0]["complete_till"] == int(datetime(2026, 11, 24, 23, 59, tzinfo=UTC)
                                           .timestamp())
    responses.get(f"{BASE}/api/v4/tasks", json=hal("tasks", [
        {"id": 52, "text": "Call 2\n\n[syncd:v2]", "entity_id": 12}]))
    assert make().find_tasks(tasks) == {"syncd:v2": "52"}
    found = query(responses.calls[-1])
    assert found["filter[entity_id][]"] == ["11", "12", "13"]


# --- webhooks ---------------------------------------------------------------------------------
def test_webhook_hint_reads_the_form_payload() -> None:
    body = (b"leads%5Bupdate%5D%5B0%5D%5Bid%5D=17&leads%5Bupdate%5D%5B0%5D%5Bname%5D=X"
            b"&leads%5Bstatus%5D%5B0%5D%5Bid%5D=18&account%5Bsubdomain%5D=acme")
    hint = make().webhook_hint({"Content-Type": "application/x-www-form-urlencoded"}, body)
    assert (hint.entity, hint.ids, hint.echo) == ("deal", ("17", "18"), False)
    with pytest.raises(BadPayloadError):
        make().webhook_hint({"Content-Type": "application/json"}, b'{"event": "x"}')
    with pytest.raises(BadPayloadError):
        make().webhook_hint({}, b"foo=bar")


@responses.activate
def test_a_token_shorter_lived_than_the_margin_is_refreshed_once_not_per_request(
        database: Database) -> None:
    connector = oauth(database, refresh_token="ref-0", refresh_margin_seconds=3600)
    store = connector.state.tokens
    assert store is not None
    store.load("ref-0", lambda: TokenSet("acc-0", "ref-0", NOW + timedelta(seconds=60)))
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(1, expires_in=600))
    responses.get(f"{BASE}/api/v4/users", json=hal("users", [{"id": 1, "name": "A"}],
                                                   more=True))
    responses.get(f"{BASE}/api/v4/users", json=hal("users", [{"id": 2, "name": "B"}]))
    list(connector.pull("users", None, PullContext()))
    grants = [c for c in responses.calls if "oauth2" in c.request.url]
    assert len(grants) == 1


@responses.activate
def test_an_unsorted_answer_falls_back_to_plain_pages_and_holds_the_cursor() -> None:
    mock_reference(responses)
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [lead(1, 1005), lead(2, 1000)],
                                                   more=True))
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [lead(1, 1005), lead(2, 1000)],
                                                   more=True))
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [lead(3, 1001)]))
    responses.get(f"{BASE}/api/v4/leads", status=204)  # with=only_deleted
    pages = list(make(page_size=2).pull("deals", None, PullContext()))
    assert [r.external_id for p in pages for r in p.records] == ["1", "2", "3"]
    assert [unix(p.cursor) for p in pages if p.records] == [None, "1005"], \
        "only the completed walk moves the cursor"
    calls = [query(c) for c in responses.calls if urlsplit(c.request.url).path == "/api/v4/leads"]
    assert [c["page"][0] for c in calls[:3]] == ["1", "1", "2"]
    assert all("filter[updated_at][from]" not in c for c in calls[:3])


@responses.activate
def test_a_failed_read_back_never_turns_an_applied_write_into_a_failure() -> None:
    responses.get(f"{BASE}/api/v4/companies/custom_fields", json=hal("custom_fields", [
        {"id": 701, "name": "syncd karma", "type": "numeric"}]))
    responses.patch(f"{BASE}/api/v4/companies", json=hal("companies", []))
    responses.get(f"{BASE}/api/v4/companies", status=200, body='{"_embedded": {"compan')
    results = make().write_fields([FieldWrite("company", "1", "syncd karma", 3.5)])
    assert results[0].ok and results[0].record is None


@responses.activate
def test_a_server_ignoring_the_deleted_filter_does_not_delete_the_book() -> None:
    """Only leads whose payload says is_deleted are deleted; a server that ignores
    with=only_deleted answers live leads, and those stay."""
    mock_reference(responses)
    live = [lead(1, 1000), lead(2, 1000)]
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", live))
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [
        *live, {"id": 5, "is_deleted": True, "updated_at": 999}]))  # the filter ignored
    pages = list(make().pull("deals", None, PullContext()))
    assert [i for p in pages for i in p.deleted_ids] == ["5"]


@responses.activate
def test_an_unreadable_custom_number_is_a_page_problem_and_the_lead_is_kept() -> None:
    mock_reference(responses)
    bad = lead(1, 1000, custom_fields_values=[
        {"field_id": 602, "field_name": "Profit", "values": [{"value": "много"}]}])
    responses.get(f"{BASE}/api/v4/leads", json=hal("leads", [bad]))
    responses.get(f"{BASE}/api/v4/leads", status=204)
    pages = list(make().pull("deals", None, PullContext()))
    deals = [r for p in pages for r in p.records]
    assert [d.external_id for d in deals] == ["1"]
    assert deals[0].fields["Profit"] is None
    problems = [p for page in pages for p in page.problems]
    assert len(problems) == 1
    for part in ("deals", "record 1", "'Profit'", "'много'"):
        assert part in problems[0]


# --- weather at the token endpoint and on creates ------------------------------------------
@responses.activate
def test_a_refresh_answered_by_a_maintenance_page_or_503_is_retried(
        database: Database) -> None:
    connector = oauth(database, refresh_token="ref-0")
    store = connector.state.tokens
    assert store is not None
    store.load("ref-0", lambda: TokenSet("acc-0", "ref-0", NOW - timedelta(seconds=1)))
    responses.post(f"{BASE}/oauth2/access_token", status=503,
                   body="<html><h1>503 Service Temporarily Unavailable</h1></html>",
                   content_type="text/html")
    responses.post(f"{BASE}/oauth2/access_token", status=200,
                   body="<html>Технические работы</html>", content_type="text/html")
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(1))
    responses.get(f"{BASE}/api/v4/users", status=204)
    list(connector.pull("users", None, PullContext()))
    assert [c.request.url.split("?")[0] for c in responses.calls].count(
        f"{BASE}/oauth2/access_token") == 3
    stored = store.load()
    assert (stored.access_token, stored.refresh_token) == ("acc-1", "ref-1")
    assert store.status()[0] == "ok"


@responses.activate
def test_a_refresh_whose_answer_was_lost_after_rotation_says_so_when_it_is_refused(
        database: Database) -> None:
    connector = oauth(database, refresh_token="ref-0")
    store = connector.state.tokens
    assert store is not None
    store.load("ref-0", lambda: TokenSet("acc-0", "ref-0", NOW - timedelta(seconds=1)))
    # amoCRM rotated the pair, the answer was cut; the retry presents the dead token.
    responses.post(f"{BASE}/oauth2/access_token", status=200,
                   body='{"token_type":"Bearer","access_token":"acc-1","refr',
                   content_type="application/json")
    responses.post(f"{BASE}/oauth2/access_token", status=401,
                   json={"title": "Unauthorized", "status": 401,
                         "hint": "Token has been revoked"})
    with pytest.raises(AuthError, match="earlier answer of the token endpoint was lost"):
        list(connector.pull("users", None, PullContext()))
    assert store.status()[0] == "disconnected"
    assert "lost" in (store.status()[1] or "")
    assert len(responses.calls) == 2, "one retry, no storm"


@responses.activate
def test_a_task_batch_that_met_weather_resends_only_the_tasks_that_did_not_land() -> None:
    url = f"{BASE}/api/v4/tasks"
    responses.post(url, status=502, body="<html>502 Bad Gateway</html>",
                   content_type="text/html")
    responses.get(url, json=hal("tasks", [
        {"id": 71, "entity_id": 10, "entity_type": "leads", "text": "Call\n\n[syncd:v1]"},
        {"id": 72, "entity_id": 11, "entity_type": "leads", "text": "Other [syncd:v10]"}]))
    responses.post(url, json=hal("tasks", [{"id": 73, "request_id": "syncd:v2"}]))
    tasks = [TaskCreate("10", None, "Call", "Call", "syncd:v1", date(2026, 12, 1)),
             TaskCreate("11", None, "Plan", "Plan", "syncd:v2", date(2026, 12, 1))]
    results = make().create_tasks(tasks)
    assert [(r.ok, r.crm_id) for r in results] == [(True, "71"), (True, "73")]
    posts = [json.loads(c.request.body) for c in responses.calls if c.request.method == "POST"]
    assert [[b["request_id"] for b in body] for body in posts] == [
        ["syncd:v1", "syncd:v2"], ["syncd:v2"]], "the landed task was not posted again"


@responses.activate
def test_find_tasks_does_not_take_a_longer_marker_for_its_own() -> None:
    """``syncd:v1`` is a prefix of ``syncd:v12``: only ``[syncd:v1]`` matches."""
    responses.get(f"{BASE}/api/v4/tasks", json=hal("tasks", [
        {"id": 60, "text": "Other\n\n[syncd:v12]", "entity_id": 11}]))
    task = TaskCreate(deal_id="11", owner_id="2", subject="Call", note="Call\n\n[syncd:v1]",
                      marker="syncd:v1", due=date(2026, 11, 24))
    assert make().find_tasks([task]) == {}
