"""Unit tests of the Bitrix24 client, paging, normalizers and writer (``responses``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
import responses
from pydantic import ValidationError
from support import FakeClock
from syncd_bitrix24 import Bitrix24Connector, Bitrix24Settings, parse_event
from syncd_bitrix24.client import Bitrix24Client, php_query
from syncd_bitrix24.streams import (
    FieldCatalog,
    ListSpec,
    StageInfo,
    department_managers,
    iter_by_id,
    normalize_activity,
    normalize_deal,
    normalize_many,
    parse_time,
)

from syncd.connector import ConnectorState, FieldWrite, PullContext, TaskCreate
from syncd.errors import AuthError, BadPayloadError, BlockedError, FatalAPIError
from syncd.leakybucket import LeakyBucket
from syncd.oauth import TokenCipher, TokenSet, TokenStore
from syncd.streams import watermark_at

PORTAL = "https://volga.bitrix24.ru"
HOOK = f"{PORTAL}/rest/7/s3cr3tw3bh00kc0de/"
OAUTH = "https://oauth.example/oauth/token/"


def settings(**extra: Any) -> Bitrix24Settings:
    values: dict[str, Any] = {"base_url": PORTAL, "webhook_url": HOOK}
    values.update(extra)
    return Bitrix24Settings(**values)


def make_client(clock: FakeClock, **extra: Any) -> Bitrix24Client:
    return Bitrix24Client(settings(**extra), sleep=clock.sleep, clock=clock)


def body_of(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body)


def commands_of(call: Any) -> dict[str, dict[str, Any]]:
    """The batch's commands, each parsed back into flat PHP keys."""
    return {name: dict(parse_qsl(cmd.split("?", 1)[1], keep_blank_values=True))
            for name, cmd in body_of(call)["cmd"].items()}


# --- settings -------------------------------------------------------------------------------
def test_settings_need_exactly_one_auth_mode() -> None:
    with pytest.raises(ValidationError, match="either webhook_url or the OAuth keys"):
        settings(client_id="app", client_secret="x", refresh_token="r")
    with pytest.raises(ValidationError, match="set webhook_url, or client_id"):
        Bitrix24Settings(base_url=PORTAL)
    with pytest.raises(ValidationError, match="https"):
        settings(webhook_url="http://volga.bitrix24.ru/rest/1/abc/")
    with pytest.raises(ValidationError, match="less than 60"):
        settings(timeout_seconds=60)
    assert set(Bitrix24Settings.secret_keys) >= {"webhook_url", "client_secret",
                                                "refresh_token"}


def test_php_query_writes_nested_filters_and_references() -> None:
    query = php_query({"filter": {">ID": "$result[c0][49][ID]", "@ID": [1, 2]},
                       "select": ["*", "UF_*"], "start": -1})
    assert dict(parse_qsl(query)) == {"filter[>ID]": "$result[c0][49][ID]",
                                      "filter[@ID][]": "2", "select[]": "UF_*",
                                      "start": "-1"}
    assert "$result[c0][49][ID]" in query, "references stay readable for the portal"


# --- HTTP behaviour -------------------------------------------------------------------------
@responses.activate
def test_query_limit_exceeded_is_retried_and_fills_the_bucket() -> None:
    clock = FakeClock()
    client = make_client(clock)
    url = f"{HOOK}crm.deal.list.json"
    responses.post(url, status=503, json={"error": "QUERY_LIMIT_EXCEEDED",
                                          "error_description": "Too many requests"})
    responses.post(url, json={"result": [{"ID": "1"}], "total": 0})
    assert client.call("crm.deal.list", {"start": -1}) == [{"ID": "1"}]
    assert len(responses.calls) == 2
    assert clock.sleeps and clock.sleeps[0] >= 0.5, "waited a drain tick before retrying"
    assert client.limiter.level() >= 50 - 1, "the bucket is treated as full after a 503"


@responses.activate
def test_operation_time_limit_is_backed_off_and_retried() -> None:
    clock = FakeClock()
    client = make_client(clock)
    url = f"{HOOK}crm.activity.list.json"
    responses.post(url, status=429, json={"error": "OPERATION_TIME_LIMIT",
                                          "error_description": "Method is blocked"})
    responses.post(url, json={"result": []})
    assert client.call("crm.activity.list") == []
    assert len(responses.calls) == 2 and clock.sleeps


@responses.activate
def test_overload_limit_stops_at_once_and_never_shows_the_webhook_code() -> None:
    client = make_client(FakeClock())
    responses.post(f"{HOOK}crm.deal.list.json", status=503,
                   json={"error": "OVERLOAD_LIMIT", "error_description": "blocked"})
    with pytest.raises(BlockedError) as caught:
        client.call("crm.deal.list")
    assert len(responses.calls) == 1
    assert "s3cr3tw3bh00kc0de" not in str(caught.value)
    assert "OVERLOAD_LIMIT" in str(caught.value)


@responses.activate
def test_method_errors_and_broken_bodies_are_named() -> None:
    client = make_client(FakeClock(), )
    responses.post(f"{HOOK}crm.deal.list.json", status=400,
                   json={"error": "", "error_description": "Parameter 'filter' must be array."})
    with pytest.raises(FatalAPIError, match="filter' must be array"):
        client.call("crm.deal.list")
    responses.post(f"{HOOK}crm.deal.get.json", body='{"result": {"ID": "1", "TIT')
    with pytest.raises(BadPayloadError, match="not valid JSON"):
        client.call("crm.deal.get")
    responses.post(f"{HOOK}crm.company.get.json", json={"nothing": 1})
    with pytest.raises(BadPayloadError, match="'result'"):
        client.call("crm.company.get")
    responses.post(f"{HOOK}user.get.json", status=401,
                   json={"error": "NO_AUTH_FOUND", "error_description": "Wrong auth"})
    with pytest.raises(AuthError, match="NO_AUTH_FOUND"):
        client.call("user.get")


@responses.activate
def test_batch_reports_inner_failures_under_http_200() -> None:
    client = make_client(FakeClock())
    responses.post(f"{HOOK}batch.json", json={"result": {
        "result": {"c0": True}, "result_error": {"c1": {
            "error": "ACCESS_DENIED", "error_description": "Access denied."}},
        "result_total": [], "result_next": [], "result_time": []}})
    answer = client.batch([("crm.deal.update", {"id": 1, "fields": {"UF_CRM_X": "1"}}),
                           ("crm.deal.update", {"id": 2, "fields": {"UF_CRM_X": "2"}})])
    assert answer.results == {"c0": True}
    assert answer.errors == {"c1": "ACCESS_DENIED: Access denied."}
    cmd = body_of(responses.calls[0])["cmd"]
    assert cmd["c0"] == "crm.deal.update?id=1&fields[UF_CRM_X]=1"
    with pytest.raises(ValueError, match="at most 50"):
        client.batch([("user.get", {})] * 51)


# --- chained paging -------------------------------------------------------------------------
def _rows(first: int, count: int) -> list[dict[str, str]]:
    return [{"ID": str(i)} for i in range(first, first + count)]


def _batch_answer(pages: dict[str, Any], errors: dict[str, Any] | None = None) -> dict:
    return {"result": {"result": pages, "result_error": errors or [], "result_total": [],
                       "result_next": [], "result_time": []}}


@responses.activate
def test_iter_by_id_chains_fifty_calls_and_stops_at_the_short_page() -> None:
    client = make_client(FakeClock())
    pages = {"c0": _rows(1, 50), "c1": _rows(51, 50), "c2": _rows(101, 7)}
    errors = {f"c{i}": {"error": "ERROR_BATCH_REFERENCE", "error_description": "no row"}
              for i in range(3, 50)}
    responses.post(f"{HOOK}batch.json", json=_batch_answer(pages, errors))
    got = list(iter_by_id(client, ListSpec("crm.deal.list", {"select": ["*"]})))
    assert [len(page) for page in got] == [107]
    commands = commands_of(responses.calls[0])
    assert len(commands) == 50
    assert commands["c0"]["filter[>ID]"] == "0" and commands["c0"]["start"] == "-1"
    assert commands["c1"]["filter[>ID]"] == "$result[c0][49][ID]"
    assert commands["c7"]["order[ID]"] == "ASC"


@responses.activate
def test_iter_by_id_resumes_after_a_transient_inner_failure() -> None:
    client = make_client(FakeClock())
    failing = {"c1": {"error": "OPERATION_TIME_LIMIT", "error_description": "slow"}}
    responses.post(f"{HOOK}batch.json", json=_batch_answer({"c0": _rows(1, 50)}, failing))
    responses.post(f"{HOOK}batch.json", json=_batch_answer({"c0": _rows(51, 3)}))
    got = list(iter_by_id(client, ListSpec("crm.deal.list")))
    assert [int(r["ID"]) for page in got for r in page] == list(range(1, 54))
    assert commands_of(responses.calls[1])["c0"]["filter[>ID]"] == "50"


@responses.activate
def test_iter_by_id_fails_the_stream_on_a_lasting_inner_error() -> None:
    client = make_client(FakeClock())
    failing = {"c0": {"error": "ACCESS_DENIED", "error_description": "Access denied."}}
    responses.post(f"{HOOK}batch.json", json=_batch_answer({}, failing))
    with pytest.raises(FatalAPIError, match="ACCESS_DENIED"):
        list(iter_by_id(client, ListSpec("crm.deal.list")))


# --- normalizers ----------------------------------------------------------------------------
def test_strings_and_portal_offsets_are_converted_exactly() -> None:
    assert parse_time("2026-03-01T10:00:00+03:00") == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    assert parse_time("2026-03-01T01:30:00-05:00") == datetime(2026, 3, 1, 6, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="offset"):
        parse_time("2026-03-01T10:00:00")
    catalog = FieldCatalog("deal", {
        "UF_CRM_SRC": {"type": "enumeration", "formLabel": "Lead source",
                       "items": [{"ID": "41", "VALUE": "Website"}]},
        "UF_CRM_PROFIT": {"type": "double", "formLabel": "Profit"},
        "UF_CRM_LOSS": {"type": "enumeration", "formLabel": "Loss reason",
                        "items": [{"ID": "51", "VALUE": "No budget"}]},
        "UF_CRM_WHEN": {"type": "datetime", "formLabel": "Signed at"},
    })
    info = StageInfo(stages={"C2:LOSE": ("2", "Too expensive", "F"),
                             "C2:WORK": ("2", "Work", "P")},
                     closed_from={"37": "C2:WORK"}, loss_field=catalog.custom("Loss reason"))
    deal = normalize_deal({
        "ID": "37", "TITLE": "Order", "CATEGORY_ID": "2", "STAGE_ID": "C2:LOSE",
        "STAGE_SEMANTIC_ID": "F", "OPPORTUNITY": "19999.99", "CURRENCY_ID": "RUB",
        "ASSIGNED_BY_ID": "5", "COMPANY_ID": "0", "CONTACT_ID": "12",
        "DATE_CREATE": "2026-01-10T09:00:00+03:00", "DATE_MODIFY": "2026-02-01T12:00:00+03:00",
        "MOVED_TIME": "2026-02-01T11:00:00+03:00", "UF_CRM_SRC": "41",
        "UF_CRM_PROFIT": "1500.50", "UF_CRM_LOSS": "", "UF_CRM_WHEN": "2026-02-01T00:30:00+03:00",
    }, catalog, info)
    assert (deal.external_id, deal.status, deal.value, deal.company_id) == ("37", "lost",
                                                                            19999.99, None)
    assert deal.stage_id == "C2:WORK", "a closed deal counts at the stage it was closed from"
    assert deal.raw["syncd_final_stage"] == "C2:LOSE"
    assert deal.lost_reason is None, \
        "an empty loss-reason field is no reason, not the failure stage's name"
    assert deal.lost_at == datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
    assert deal.fields == {"Lead source": "Website", "Profit": 1500.5, "Loss reason": None,
                           "Signed at": "2026-01-31T21:30:00+00:00"}
    assert deal.contact_ids == ["12"]
    with_reason = normalize_deal({**deal.raw, "UF_CRM_LOSS": "51"}, catalog, info)
    assert with_reason.lost_reason == "No budget", "the loss-reason field wins"
    no_field = StageInfo(stages=info.stages, closed_from=info.closed_from)
    assert normalize_deal(dict(deal.raw), catalog, no_field).lost_reason == "Too expensive", \
        "a portal without a loss-reason field names its reasons by failure stages"
    with pytest.raises(ValueError, match="as an id"):
        normalize_deal({**deal.raw, "ASSIGNED_BY_ID": "Anna"}, catalog, info)


def test_activities_and_department_heads() -> None:
    call = normalize_activity({"ID": "9", "TYPE_ID": "2", "OWNER_TYPE_ID": "2", "OWNER_ID": "37",
                               "COMPLETED": "Y", "DEADLINE": "2026-02-02T10:00:00+03:00",
                               "END_TIME": "2026-02-02T10:20:00+03:00",
                               "CREATED": "2026-02-01T10:00:00+03:00",
                               "LAST_UPDATED": "2026-02-02T10:30:00+03:00",
                               "RESPONSIBLE_ID": "5"})
    assert (call.type, call.done, call.deal_id, call.owner_id) == ("call", True, "37", "5")
    assert call.done_at == datetime(2026, 2, 2, 7, 20, tzinfo=UTC)
    assert call.due_date == date(2026, 2, 2)
    heads = department_managers(
        [{"ID": "1", "UF_DEPARTMENT": [1]}, {"ID": "2", "UF_DEPARTMENT": [3]},
         {"ID": "3", "UF_DEPARTMENT": [3]}, {"ID": "4", "UF_DEPARTMENT": []}],
        [{"ID": "1", "UF_HEAD": "1"}, {"ID": "3", "PARENT": "1", "UF_HEAD": "2"}])
    assert heads == {"2": "1", "3": "2"}, "a head reports to the parent department's head"


def test_leaky_bucket_bursts_then_paces_at_the_drain_rate() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(50, 2.0, clock=clock, sleep=clock.sleep)
    for _ in range(49):
        bucket.release(bucket.acquire())
    assert clock.sleeps == [], "the burst goes out at once"
    for _ in range(20):
        bucket.release(bucket.acquire())
    assert 9.0 <= clock.now - 1000.0 <= 10.5, "then 2 per second"


def test_webhook_events_become_hints() -> None:
    hint = parse_event(b"event=ONCRMDEALUPDATE&event_handler_id=3&data%5BFIELDS%5D%5BID%5D=42"
                       b"&ts=1700000000&auth%5Bapplication_token%5D=tok")
    assert (hint.entity, hint.ids, hint.echo) == ("deal", ("42",), False)
    assert parse_event(b'{"event": "ONCRMCOMPANYADD", "data": {"FIELDS": {"ID": 7}}}'
                       ).entity == "company"
    with pytest.raises(BadPayloadError, match="not a CRM event"):
        parse_event(b"event=ONAPPINSTALL")
    with pytest.raises(BadPayloadError, match="empty"):
        parse_event(b"")


# --- write-back ---------------------------------------------------------------------------
FIELDS = {"ID": {"type": "integer", "title": "ID"},
          "UF_CRM_SYNCD_KARMA": {"type": "double", "formLabel": "syncd karma"}}


def _connector(**extra: Any) -> Bitrix24Connector:
    clock = FakeClock()
    return Bitrix24Connector(settings(**extra), tenant="volga", sleep=clock.sleep, clock=clock)


def _fields_batch() -> dict:
    return _batch_answer({"c0": {}, "c1": FIELDS, "c2": {}})


@responses.activate
def test_a_write_the_portal_silently_ignored_is_reported_failed() -> None:
    connector = _connector()
    responses.post(f"{HOOK}batch.json", json=_fields_batch())
    read_back = [{"ID": "5", "TITLE": "A", "UF_CRM_SYNCD_KARMA": "12.5",
                  "DATE_MODIFY": "2026-02-01T12:00:00+03:00"},
                 {"ID": "6", "TITLE": "B", "UF_CRM_SYNCD_KARMA": "",
                  "DATE_MODIFY": "2026-02-01T12:00:00+03:00"}]
    responses.post(f"{HOOK}batch.json", json=_batch_answer(
        {"c0": True, "c1": True, "c2": read_back}))
    results = connector.write_fields([FieldWrite("company", "5", "syncd karma", 12.5),
                                      FieldWrite("company", "6", "syncd karma", 3.0)])
    assert results[0].ok and results[0].record is not None
    assert results[0].record.fields["syncd karma"] == 12.5, "the record as read back"
    assert not results[1].ok and "reads back" in (results[1].error or "")
    commands = commands_of(responses.calls[1])
    assert commands["c0"]["fields[UF_CRM_SYNCD_KARMA]"] == "12.5"
    assert commands["c2"]["filter[@ID][]"] == "6" and len(commands) == 3


@responses.activate
def test_field_writes_pack_49_updates_and_their_read_back_per_request() -> None:
    connector = _connector()
    responses.post(f"{HOOK}batch.json", json=_fields_batch())

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        cmd = json.loads(request.body)["cmd"]
        updates = [n for n, c in cmd.items() if c.startswith("crm.company.update")]
        ids = [dict(parse_qsl(c.split("?", 1)[1]))["id"] for c in cmd.values()
               if c.startswith("crm.company.update")]
        rows = [{"ID": i, "UF_CRM_SYNCD_KARMA": "1.0",
                 "DATE_MODIFY": "2026-02-01T12:00:00+03:00"} for i in ids]
        payload = _batch_answer({**{n: True for n in updates}, f"c{len(updates)}": rows})
        return 200, {}, json.dumps(payload)

    responses.add_callback(responses.POST, f"{HOOK}batch.json", callback=answer)
    changes = [FieldWrite("company", str(i), "syncd karma", 1.0) for i in range(1, 99)]
    results = connector.write_fields(changes)
    assert all(r.ok for r in results)
    assert len(responses.calls) == 1 + 2, "98 writes: two requests of 49 + read-back"
    unverified = _connector(verify_writes=False)
    responses.calls.reset()
    responses.replace(responses.POST, f"{HOOK}batch.json", json=_fields_batch())
    responses.add(responses.POST, f"{HOOK}batch.json",
                  json=_batch_answer({f"c{i}": True for i in range(50)}))
    assert all(r.ok for r in unverified.write_fields(changes[:50]))
    assert len(responses.calls) == 2, "without read-back: 50 updates in one request"


@responses.activate
def test_todos_carry_their_marker_and_are_found_by_it() -> None:
    connector = _connector()
    responses.post(f"{HOOK}batch.json", json=_batch_answer(
        {"c0": {"id": 901}}, {"c1": {"error": "NOT_FOUND", "error_description": "Owner"}}))
    tasks = [TaskCreate("37", "5", "Call the client", "Call the client\n\n[syncd:v1]",
                        "syncd:v1", date(2026, 3, 2)),
             TaskCreate("38", None, "Plan a step", "Plan a step", "syncd:v2", date(2026, 3, 2))]
    results = connector.create_tasks(tasks)
    assert results[0].ok and results[0].crm_id == "901"
    assert not results[1].ok and "NOT_FOUND" in (results[1].error or "")
    commands = commands_of(responses.calls[0])
    assert commands["c1"]["description"].endswith("[syncd:v2]")
    assert commands["c0"]["deadline"] == "2026-03-02T12:00:00"
    responses.post(f"{HOOK}batch.json", json=_batch_answer({
        "c0": [{"ID": "901", "DESCRIPTION": "Call the client\n\n[syncd:v1]"}], "c1": []}))
    assert connector.find_tasks(tasks) == {"syncd:v1": "901"}


# --- OAuth ----------------------------------------------------------------------------------
KEY = TokenCipher.generate_key()


def _oauth_connector(database: Any, **extra: Any) -> Bitrix24Connector:
    clock = FakeClock()
    connector = Bitrix24Connector(
        Bitrix24Settings(base_url=PORTAL, client_id="app", client_secret="app-secret-9",
                         refresh_token="seed-refresh-1", oauth_url=OAUTH, **extra),
        tenant="volga", sleep=clock.sleep, clock=clock)
    connector.state = ConnectorState(tokens=TokenStore(database, "volga", "bitrix24",
                                                       lambda: TokenCipher(KEY)))
    return connector


def _token_answer(n: int) -> dict[str, Any]:
    return {"access_token": f"access-{n}", "refresh_token": f"refresh-{n}",
            "expires_in": 3600}


@responses.activate
def test_an_expired_access_token_is_renewed_once_through_the_store(database: Any) -> None:
    connector = _oauth_connector(database)
    responses.post(OAUTH, json=_token_answer(1))
    responses.post(OAUTH, json=_token_answer(2))
    url = f"{PORTAL}/rest/crm.category.list.json"
    responses.post(url, json={"result": {"categories": [{"id": 0, "name": "Sales"}]}})
    responses.post(url, status=401, json={"error": "expired_token",
                                          "error_description": "expired"})
    responses.post(url, json={"result": {"categories": [{"id": 0, "name": "Sales"}]}})
    pages = list(connector.pull("pipelines", None, PullContext()))
    assert [p.name for p in pages[0].records] == ["Sales"]
    pages = list(connector.pull("pipelines", None, PullContext()))
    token_calls = [c for c in responses.calls if c.request.url.startswith(OAUTH)]
    assert len(token_calls) == 2, "the seed exchange, then one refresh"
    assert "refresh_token=seed-refresh-1" in token_calls[0].request.url
    assert "refresh_token=refresh-1" in token_calls[1].request.url
    rest = [body_of(c)["auth"] for c in responses.calls if c.request.url == url]
    assert rest == ["access-1", "access-1", "access-2"], "the token travels in the body"
    stored = connector.state.tokens.load()
    assert (stored.access_token, stored.refresh_token) == ("access-2", "refresh-2")


@responses.activate
def test_a_refused_refresh_disconnects_the_tenant(database: Any) -> None:
    connector = _oauth_connector(database)
    connector.state.tokens.save(TokenSet("old-access", "old-refresh",
                                         datetime.now(UTC) - timedelta(minutes=1)))
    # The stored pair belongs to this seed: the store would otherwise re-seed.
    connector.state.tokens.load("seed-refresh-1", lambda: TokenSet("old-access", "old-refresh",
                                datetime.now(UTC) - timedelta(minutes=1)))
    responses.post(OAUTH, status=400, json={"error": "invalid_grant",
                                            "error_description": "revoked"})
    with pytest.raises(AuthError, match="disconnected"):
        list(connector.pull("pipelines", None, PullContext()))
    assert connector.state.tokens.status()[0] == "disconnected"
    assert len([c for c in responses.calls if c.request.url.startswith(OAUTH)]) == 1


@responses.activate
def test_an_incremental_read_overlaps_and_its_cursor_never_passes_its_start() -> None:
    started = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    clock = FakeClock()
    connector = Bitrix24Connector(settings(), tenant="volga", sleep=clock.sleep, clock=clock,
                                  now=lambda: started)
    responses.post(f"{HOOK}batch.json", json=_batch_answer(
        {"c0": {"ID": {"type": "integer", "title": "ID"}}, "c1": {}, "c2": {}}))
    deals = [{"ID": "7", "TITLE": "A", "STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P",
              "CATEGORY_ID": "0", "DATE_MODIFY": "2026-03-01T14:30:00+03:00"},
             {"ID": "9", "TITLE": "B", "STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P",
              "CATEGORY_ID": "0", "DATE_MODIFY": "2026-03-01T15:10:00+03:00"}]
    responses.post(f"{HOOK}batch.json", json=_batch_answer({"c0": deals}))
    responses.post(f"{HOOK}crm.category.list.json", json={"result": {"categories": []}})
    responses.post(f"{HOOK}batch.json", json=_batch_answer({"c0": [
        {"STATUS_ID": "NEW", "NAME": "New", "ENTITY_ID": "DEAL_STAGE"}]}))
    pages = list(connector.pull("deals", "2026-03-01T10:00:00+00:00",
                                PullContext(overlap=timedelta(minutes=10))))
    assert [r.external_id for p in pages for r in p.records] == ["7", "9"]
    assert watermark_at(pages[-1].cursor) == "2026-03-01T12:00:00Z", \
        "deal 9 (12:10 UTC) changed after the read started: the cursor stops at the start"
    chained = commands_of(responses.calls[1])
    assert chained["c0"]["filter[>=DATE_MODIFY]"] == "2026-03-01T09:50:00+00:00"
    assert chained["c3"]["filter[>ID]"] == "$result[c2][49][ID]"


def test_an_unreadable_custom_number_is_a_problem_naming_the_deal_and_the_deal_is_kept(
) -> None:
    catalog = FieldCatalog("deal", {"UF_CRM_PROFIT": {"type": "double", "formLabel": "Profit"},
                                    "UF_CRM_WHEN": {"type": "date", "formLabel": "Signed"}})
    rows = [{"ID": "1", "STAGE_ID": "NEW", "UF_CRM_PROFIT": "1 234,50",
             "UF_CRM_WHEN": "2026-02-01"},
            {"ID": "2", "STAGE_ID": "NEW", "UF_CRM_PROFIT": "n/a", "UF_CRM_WHEN": "someday"}]
    problems: list = []
    deals = normalize_many("deals", rows, lambda r: normalize_deal(r, catalog, StageInfo()),
                           problems=problems, tenant="volga")
    assert [d.fields for d in deals] == [{"Profit": 1234.5, "Signed": "2026-02-01"},
                                         {"Profit": None, "Signed": None}]
    assert [(p.tenant, p.stream, p.record_id, p.field, p.raw) for p in problems] == [
        ("volga", "deals", "2", "Profit", "n/a"), ("volga", "deals", "2", "Signed", "someday")]
    with pytest.raises(BadPayloadError, match="record '2'"):
        normalize_many("deals", rows, lambda r: normalize_deal(r, catalog, StageInfo()))


# --- weather: the OAuth exchange and to-do creates -----------------------------------------
@responses.activate
def test_an_oauth_exchange_met_by_a_gateway_page_is_retried(database: Any) -> None:
    connector = _oauth_connector(database)
    responses.post(OAUTH, status=502, body="<html>502 Bad Gateway</html>",
                   content_type="text/html")
    responses.post(OAUTH, json=_token_answer(1))
    url = f"{PORTAL}/rest/crm.category.list.json"
    responses.post(url, json={"result": {"categories": [{"id": 0, "name": "Sales"}]}})
    pages = list(connector.pull("pipelines", None, PullContext()))
    assert [p.name for p in pages[0].records] == ["Sales"]
    assert len([c for c in responses.calls if c.request.url.startswith(OAUTH)]) == 2
    assert connector.state.tokens.load().access_token == "access-1"


@responses.activate
def test_a_todo_batch_whose_answer_was_lost_resends_only_the_missing_todos() -> None:
    connector = _connector()
    responses.post(f"{HOOK}batch.json", status=200, body='{"result":{"result":{"c0":{"id":9',
                   content_type="application/json")  # applied (c0 only), answer cut
    responses.post(f"{HOOK}batch.json", json=_batch_answer({  # the lookup: one list per deal
        "c0": [{"ID": "901", "DESCRIPTION": "Call the client\n\n[syncd:v1]"}], "c1": []}))
    responses.post(f"{HOOK}batch.json", json=_batch_answer({"c1": {"id": 902}}))
    tasks = [TaskCreate("37", "5", "Call the client", "Call the client", "syncd:v1",
                        date(2026, 3, 2)),
             TaskCreate("38", None, "Plan a step", "Plan a step", "syncd:v2", date(2026, 3, 2))]
    results = connector.create_tasks(tasks)
    assert [(r.ok, r.crm_id) for r in results] == [(True, "901"), (True, "902")]
    sent = [commands_of(c) for c in responses.calls]
    assert [sorted(s) for s in sent] == [["c0", "c1"], ["c0", "c1"], ["c1"]]
    assert all(c["filter[PROVIDER_ID]"] == "CRM_TODO" for c in sent[1].values())
    assert sent[2]["c1"]["description"].endswith("[syncd:v2]"), "only the missing one"
