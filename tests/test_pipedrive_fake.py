"""The Pipedrive connector against the fake Pipedrive server, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from syncd_fakes import demo
from syncd_fakes.pipedrive.sample import K, sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive, Fault
from syncd_pipedrive import PipedriveConnector, PipedriveSettings

from syncd.connector import FieldSpec, FieldWrite, PullContext, TaskCreate
from syncd.errors import AuthError, BadPayloadError, BlockedError, BudgetExhaustedError
from syncd.http import TransportError
from syncd.records import Company, Deal, Page, StageChange
from syncd.streams import watermark_at

NOW = datetime.now(UTC).replace(microsecond=0)
ENTITY_PATHS = {"companies": "/api/v2/organizations", "contacts": "/api/v2/persons",
                "deals": "/api/v2/deals", "activities": "/api/v2/activities"}


def connector(fake: FakePipedrive, **settings: Any) -> PipedriveConnector:
    options: dict[str, Any] = {"burst_limit": fake.burst_limit, "burst_window": fake.window,
                               **settings}
    # The connector's clock is the sample's: the fake stamps its records and late writes
    # relative to NOW, as a CRM stamps them by the clock the reader shares.
    return PipedriveConnector(
        PipedriveSettings(base_url=fake.base_url, api_token=fake.token, **options),
        tenant="northwind", now=lambda: NOW,
    )


def run_pass(conn: PipedriveConnector, cursors: dict[str, str], *,
             streams: tuple[str, ...] | None = None,
             on_page: Any = None) -> dict[str, list[Page]]:
    """Pull every stream like the core does: committed cursors in, changed deals carried."""
    pages: dict[str, list[Page]] = {}
    changed: set[str] = set()
    context = PullContext()
    for stream in streams or conn.streams:
        if stream == "stage_history":
            context.changed_deal_ids = set(changed)
        for page in conn.pull(stream, cursors.get(stream), context):
            pages.setdefault(stream, []).append(page)
            if page.cursor is not None:
                cursors[stream] = page.cursor
            if stream == "deals":
                changed |= {r.external_id for r in page.records}
            if on_page is not None:
                on_page(stream, page)
    return pages


def records(pages: dict[str, list[Page]], stream: str) -> list[Any]:
    return [r for page in pages.get(stream, []) for r in page.records]


@pytest.fixture
def fake() -> Iterator[FakePipedrive]:
    with FakePipedrive(sample_dataset(NOW), burst_limit=200, window=1.0) as server:
        yield server


def test_full_pull_returns_every_record_of_the_sample(fake: FakePipedrive) -> None:
    data = fake.dataset
    pages = run_pass(connector(fake, history_days=1000, page_size=25), {})

    assert {r.external_id for r in records(pages, "deals")} == {str(i) for i in data.deals.rows}
    assert {r.external_id for r in records(pages, "companies")} == {
        str(i) for i in data.organizations.rows}
    assert {r.external_id for r in records(pages, "contacts")} == {
        str(i) for i in data.persons.rows}
    assert {r.external_id for r in records(pages, "activities")} == {
        str(i) for i in data.activities.rows}
    assert len(records(pages, "users")) == 4
    assert [s.name for s in records(pages, "stages")][:3] == [
        "Briefing", "Estimate", "Awaiting decision"]
    assert {a.key for a in records(pages, "activity_types")} == {
        "call", "meeting", "task", "email", "deadline", "lunch"}
    field_names = {(f.entity, f.name) for f in records(pages, "fields")}
    assert ("deal", "Lead source") in field_names
    assert ("company", "Public incidents") in field_names
    # stage history: one row per stage move, plus the creation row, for every deal
    expected = sum(1 for rows in data.flows.values() for row in rows
                   if row["data"]["field_key"] in {"stage_id", "add_time"})
    history = records(pages, "stage_history")
    assert all(isinstance(c, StageChange) for c in history)
    assert len(history) == expected
    assert len({c.external_id for c in history}) == expected
    # deals carry named custom fields the tenant mapping relies on
    deals = {d.external_id: d for d in records(pages, "deals")}
    assert all(isinstance(d, Deal) for d in deals.values())
    snoozed = [d for d in deals.values() if d.fields.get("Snooze until")]
    assert len(snoozed) == 2
    lost_reasons = {d.lost_reason for d in deals.values() if d.status == "lost"}
    assert {"Too expensive", "", None, "dunno"} <= lost_reasons
    tender_loss = [d for d in deals.values() if d.status == "won" and d.fields["Tender"] == "Yes"
                   and (d.fields["Profit"] or 0) < 0]
    assert len(tender_loss) == 1


def test_nothing_changed_costs_one_request_per_entity_stream(fake: FakePipedrive) -> None:
    cursors: dict[str, str] = {}
    run_pass(connector(fake, page_size=25), cursors)
    assert set(ENTITY_PATHS) <= set(cursors)
    before = len(fake.requests)

    pages = run_pass(connector(fake, page_size=25), cursors)
    paths = Counter(path for _, path, _, _ in fake.requests[before:])
    for stream, path in ENTITY_PATHS.items():
        assert paths[path] == 1, stream
        # deals: plus one request for the archived deals (read by default)
        assert sum(p.requests for p in pages[stream]) == (2 if stream == "deals" else 1), stream
    assert paths["/api/v2/deals/archived"] == 1
    # the overlap window is asked for again, but what was read in it is not read twice
    assert all(records(pages, stream) == [] for stream in ENTITY_PATHS)


def test_deals_sharing_the_newest_update_time_are_not_re_read(fake: FakePipedrive) -> None:
    """Issue 13 item 3: a bulk edit stamps many deals with one second; a pass with nothing
    changed must not read them again (the cursor is (update_time, id), not a timestamp)."""
    at = NOW - timedelta(minutes=5)  # by the connector's clock (NOW), as the CRM would stamp it
    bulk = sorted(fake.dataset.deals.rows)[:30]
    for deal_id in bulk:
        fake.edit("deals", deal_id, at=at, title=f"Bulk {deal_id}")
    cursors: dict[str, str] = {}
    first = run_pass(connector(fake, page_size=7), cursors, streams=("fields", "deals"))
    assert {str(i) for i in bulk} <= {d.external_id for d in records(first, "deals")}

    second = run_pass(connector(fake, page_size=7), cursors, streams=("fields", "deals"))
    assert records(second, "deals") == []
    fake.edit("deals", bulk[3], title="Edited again")
    third = run_pass(connector(fake, page_size=7), cursors, streams=("fields", "deals"))
    assert [d.external_id for d in records(third, "deals")] == [str(bulk[3])]


def test_a_change_after_the_pull_is_picked_up_next_run(fake: FakePipedrive) -> None:
    cursors: dict[str, str] = {}
    run_pass(connector(fake), cursors, streams=("fields", "deals"))
    deal_id = min(fake.dataset.deals.rows)
    fake.edit("deals", deal_id, title="Renamed by a user", stage_id=4)

    pages = run_pass(connector(fake), cursors, streams=("fields", "deals", "stage_history"))
    deals = {d.external_id: d for d in records(pages, "deals")}
    assert deals[str(deal_id)].title == "Renamed by a user"
    assert deals[str(deal_id)].stage_id == "4"
    moves = [c for c in records(pages, "stage_history") if c.deal_id == str(deal_id)]
    assert moves[-1].to_stage_id == "4"


def test_deleted_and_archived_deals(fake: FakePipedrive) -> None:
    cursors: dict[str, str] = {}
    run_pass(connector(fake), cursors, streams=("fields", "deals"))
    gone, archived = sorted(fake.dataset.deals.rows)[:2]
    fake.edit("deals", gone, is_deleted=True)
    fake.edit("deals", archived, is_archived=True)

    plain = run_pass(connector(fake, include_archived=False), dict(cursors),
                     streams=("fields", "deals"))
    assert [i for p in plain["deals"] for i in p.deleted_ids] == [str(gone)]
    assert str(archived) not in {d.external_id for d in records(plain, "deals")}
    before = len(fake.requests)
    # archived deals are real sales: read by default (include_archived: true)
    with_archived = run_pass(connector(fake), dict(cursors), streams=("fields", "deals"))
    assert str(archived) in {d.external_id for d in records(with_archived, "deals")}
    assert fake.paths_requested()[before:].count("/api/v2/deals/archived") == 1
    assert with_archived["deals"][0].cursor is None  # archived pages never move the cursor
    assert with_archived["deals"][-1].cursor is not None


def test_a_deal_added_in_the_crm_arrives_with_its_creation_in_history(
        fake: FakePipedrive) -> None:
    cursors: dict[str, str] = {}
    run_pass(connector(fake), cursors, streams=("fields", "deals"))
    added = fake.add("deals", {"title": "New lead", "owner_id": 2, "org_id": 101,
                               "person_id": 301, "pipeline_id": 1, "stage_id": 1,
                               "value": 1000, "currency": "EUR", "status": "open"})
    pages = run_pass(connector(fake), cursors, streams=("fields", "deals", "stage_history"))
    assert str(added["id"]) in {d.external_id for d in records(pages, "deals")}
    history = [c for c in records(pages, "stage_history") if c.deal_id == str(added["id"])]
    assert [(c.from_stage_id, c.to_stage_id) for c in history] == [(None, "1")]


def test_a_late_write_during_the_pull_is_picked_up_by_the_overlap(fake: FakePipedrive) -> None:
    """A record re-stamped *behind* the keyset while we page (a late commit: its time is a
    few minutes old when it becomes visible) is missed by this run and read by the next one
    through the overlap window. Someone edited a deal a minute before the pull, so the
    keyset passes the late stamp near its end, as in a busy account."""
    cursors: dict[str, str] = {}
    fake.edit("deals", max(fake.dataset.deals.rows), at=NOW - timedelta(minutes=1),
              title="Edited a minute ago")
    late = NOW - timedelta(minutes=6)
    target = min(fake.dataset.deals.rows)
    edited: list[str] = []

    def commit_late(stream: str, page: Page) -> None:
        if stream == "deals" and page.cursor and not edited and (
                datetime.fromisoformat(watermark_at(page.cursor) or "") >= late):
            fake.edit("deals", target, at=late, title="Edited while we paged")
            edited.append(page.cursor)

    first = run_pass(connector(fake, page_size=5), cursors, streams=("fields", "deals"),
                     on_page=commit_late)
    assert edited, "the pull never got past the late timestamp"
    seen = [d.title for d in records(first, "deals") if d.external_id == str(target)]
    assert "Edited while we paged" not in seen

    second = run_pass(connector(fake, page_size=5), cursors, streams=("fields", "deals"))
    titles = {d.external_id: d.title for d in records(second, "deals")}
    assert titles[str(target)] == "Edited while we paged"


def test_a_quiet_list_does_not_fetch_our_write_back_again(fake: FakePipedrive) -> None:
    """Thirty deals stamped half an hour before the read (our own write-back, say) and
    nothing newer: the next pass asks from this read's start less the overlap, so it
    fetches one empty page instead of the burst (which it would drop as read)."""
    burst = NOW - timedelta(minutes=30)
    for deal_id in sorted(fake.dataset.deals.rows)[:30]:
        fake.edit("deals", deal_id, at=burst, title=f"Written {deal_id}")
    cursors: dict[str, str] = {}
    run_pass(connector(fake, page_size=10), cursors, streams=("fields", "deals"))
    assert watermark_at(cursors["deals"]) == burst.strftime("%Y-%m-%dT%H:%M:%SZ")

    again = run_pass(connector(fake, page_size=10), cursors, streams=("fields", "deals"))
    assert records(again, "deals") == []
    # the archived list and the main list: one request each (the burst is three pages)
    assert sum(p.requests for p in again["deals"]) == 2


def test_the_connector_never_hits_the_burst_limit() -> None:
    dataset = sample_dataset(NOW, deals=20)
    with FakePipedrive(dataset, burst_limit=5, window=0.25) as fake:
        started = time.monotonic()
        cursors: dict[str, str] = {}
        first = connector(fake, page_size=20)
        run_pass(first, cursors)
        second = connector(fake, page_size=20)  # the next pass, straight after
        run_pass(second, cursors)
        elapsed = time.monotonic() - started

        assert fake.rate_limited_count == 0
        assert first.client.api.rate_limited == second.client.api.rate_limited == 0
        made = fake.requests_count
        assert made > 40
        # it really was throttled (5 per 0.25 s), not just lucky
        assert elapsed >= (made / 5 - 1) * 0.25
        assert first.client.limiter.waited > 0


# --- write-back ------------------------------------------------------------------------------
def test_write_back_round_trip(fake: FakePipedrive) -> None:
    conn = connector(fake)
    conn.ensure_fields([FieldSpec("company", "syncd karma", "number"),
                        FieldSpec("deal", "syncd violations", "text")])
    conn.ensure_fields([FieldSpec("company", "syncd karma", "number")])  # already there
    created = [w for w in fake.writes if w[1].endswith("Fields")]
    assert [(w[1], w[2]["field_type"]) for w in created] == [
        ("/v1/organizationFields", "double"), ("/v1/dealFields", "text")]

    org_id = min(fake.dataset.organizations.rows)
    result = conn.write_field(FieldWrite("company", str(org_id), "syncd karma", 87.5))
    assert result.ok
    assert isinstance(result.record, Company)
    assert result.record.fields["syncd karma"] == 87.5
    key = conn.catalog("company").custom("syncd karma").key
    assert fake.record("organizations", org_id)["custom_fields"][key] == 87.5

    deal_id = str(min(fake.dataset.deals.rows))
    task = TaskCreate(deal_id, "2", "Plan the next step", "No planned activity", "syncd:v1",
                      (NOW + timedelta(days=3)).date())
    assert conn.find_task(task) is None
    outcome = conn.create_task(task)
    assert outcome.ok
    assert outcome.crm_id is not None
    assert conn.find_task(task) == outcome.crm_id
    posted = [w for w in fake.writes if w[1] == "/api/v2/activities"]
    assert len(posted) == 1
    assert "syncd:v1" in posted[0][2]["note"]


def test_a_blocked_write_waits_for_release(fake: FakePipedrive) -> None:
    """The crash-test hook: hold the 2nd PATCH until the test says so."""
    hold = Fault("block", method="PATCH", nth=2)
    fake.faults = [hold]
    conn = connector(fake)
    conn.ensure_fields([FieldSpec("deal", "syncd violations", "text")])
    ids = sorted(fake.dataset.deals.rows)[:3]
    results: list[Any] = []
    writer = threading.Thread(target=lambda: results.extend(conn.write_fields(
        [FieldWrite("deal", str(i), "syncd violations", "1 open") for i in ids])))
    key = conn.catalog("deal").custom("syncd violations").key
    writer.start()
    assert hold.reached.wait(10)
    assert results == []
    assert len([w for w in fake.writes if w[0] == "PATCH"]) == 2  # received, held
    assert fake.record("deals", ids[0])["custom_fields"][key] == "1 open"
    assert fake.record("deals", ids[1])["custom_fields"].get(key) is None  # not applied yet
    hold.release.set()
    writer.join(10)
    assert hold.finished.is_set()
    assert [r.ok for r in results] == [True, True, True]
    assert fake.record("deals", ids[1])["custom_fields"][key] == "1 open"


# --- faults ------------------------------------------------------------------------------------
def quick(fake: FakePipedrive) -> PipedriveConnector:
    """A connector whose waits are instant (the fake's limit is high enough)."""
    return PipedriveConnector(
        PipedriveSettings(base_url=fake.base_url, api_token=fake.token, burst_limit=200,
                          burst_window=1.0),
        tenant="northwind", sleep=lambda seconds: None,
    )


def test_transient_faults_are_retried(fake: FakePipedrive) -> None:
    fake.faults = [Fault("503", path="/api/v2/stages"), Fault("429", path="/api/v2/stages",
                                                               nth=2),
                   Fault("html502", path="/api/v2/pipelines")]
    conn = quick(fake)
    assert len(next(iter(conn.pull("stages", None, PullContext()))).records) == 9
    assert len(next(iter(conn.pull("pipelines", None, PullContext()))).records) == 2
    assert fake.paths_requested().count("/api/v2/stages") == 3


def test_unreadable_or_blocking_answers_fail_the_stream(fake: FakePipedrive) -> None:
    # A cut body is weather: retried, it fails the stream only when every attempt is cut.
    fake.faults = [Fault("truncated", path="/api/v2/activities", times=8),
                   Fault("html403", path="/v1/users"), Fault("reset", path="/v1/activityTypes",
                                                            times=10)]
    conn = quick(fake)
    with pytest.raises(BadPayloadError, match="not valid JSON"):
        list(conn.pull("activities", None, PullContext()))
    with pytest.raises(BlockedError):
        list(conn.pull("users", None, PullContext()))
    with pytest.raises(TransportError):
        list(conn.pull("activity_types", None, PullContext()))
    assert fake.paths_requested().count("/api/v2/activities") == 8  # 8 attempts per GET
    assert fake.paths_requested().count("/v1/activityTypes") == 8


def test_daily_budget_and_bad_token() -> None:
    with FakePipedrive(sample_dataset(NOW), burst_limit=200, window=1.0,
                       daily_budget=2) as fake:
        conn = quick(fake)
        list(conn.pull("users", None, PullContext()))
        list(conn.pull("pipelines", None, PullContext()))
        with pytest.raises(BudgetExhaustedError):
            list(conn.pull("stages", None, PullContext()))
        assert fake.paths_requested().count("/api/v2/stages") == 1
        wrong = PipedriveConnector(PipedriveSettings(base_url=fake.base_url,
                                                     api_token="wrong-token-1234"),
                                   tenant="northwind")
        with pytest.raises(AuthError):
            list(wrong.pull("users", None, PullContext()))


def test_demo_serves_the_sample_and_stops() -> None:
    with demo.pipedrive() as (connection, server):
        assert connection["api_token"] == "demo-token"
        assert connection["base_url"].startswith("http://127.0.0.1:")
        conn = PipedriveConnector(PipedriveSettings(**connection), tenant="demo")
        users = next(iter(conn.pull("users", None, PullContext()))).records
        assert [u.name for u in users] == ["Anna Petrova", "Boris Ivanov", "Clara Smirnova",
                                           "Dmitry Orlov"]
        assert server.writes == []
        url = connection["base_url"]
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v1/users", timeout=2)


def test_sample_is_deterministic_and_uses_the_vocabulary() -> None:
    first, second = sample_dataset(NOW), sample_dataset(NOW)
    assert first.deals.rows == second.deals.rows
    assert first.flows == second.flows
    assert sample_dataset(NOW, seed=8).deals.rows != first.deals.rows
    assert [s["name"] for s in first.stages] == [
        "Briefing", "Estimate", "Awaiting decision", "Contract signing", "Deferred",
        "In progress", "Final invoice", "Warranty", "Intro"]
    names = {f["field_name"] for f in first.deal_fields if f["is_custom_field"]}
    assert names == {"Lead source", "Profit", "Tender", "Estimate link", "Contract number",
                     "Snooze until", "Snooze reason"}
    partners = [d for d in first.deals.rows.values() if d["pipeline_id"] == 2]
    assert 2 <= len(partners) <= 3
    assert any(d["custom_fields"][K["Lead source"]] is None for d in first.deals.rows.values())
    for deal in first.deals.rows.values():  # flows agree with the deal's current stage
        moves = [r for r in first.flows[deal["id"]] if r["data"]["field_key"] == "stage_id"]
        if moves:
            assert moves[-1]["data"]["new_value"] == str(deal["stage_id"])
            assert moves[-1]["data"]["log_time"].replace(" ", "T") + "Z" == deal[
                "stage_change_time"]
    assert len(sample_dataset(NOW, deals=200).deals.rows) == 200


def test_legacy_client_mode_query_token_v1_fields_and_whole_second_reset() -> None:
    """What third-party clients such as tap-pipedrive need (bench/bench_tap_pipedrive.py):
    ``?api_token=`` only when enabled, v1 field lists in start/limit pages, and the reset
    header in whole seconds."""
    with FakePipedrive(sample_dataset(NOW), burst_limit=3, window=2.0) as strict:
        refused = requests.get(f"{strict.base_url}/v1/dealFields",
                               params={"api_token": strict.token}, timeout=10)
        assert refused.status_code == 401
    with FakePipedrive(sample_dataset(NOW), burst_limit=50, window=2.0, query_token=True,
                       whole_second_reset=True) as fake:
        url = f"{fake.base_url}/v1/dealFields"
        first = requests.get(url, params={"api_token": fake.token, "start": 0, "limit": 5},
                             timeout=10)
        assert first.status_code == 200
        body = first.json()
        assert len(body["data"]) == 5
        assert body["additional_data"]["pagination"] == {
            "start": 0, "limit": 5, "more_items_in_collection": True, "next_start": 5}
        assert {"id", "key", "name", "field_type"} <= set(body["data"][0])
        keys: list[str] = [f["key"] for f in body["data"]]
        start = 5
        while start is not None:
            page = requests.get(url, params={"api_token": fake.token, "start": start,
                                             "limit": 5}, timeout=10).json()
            keys += [f["key"] for f in page["data"] or []]
            start = page["additional_data"]["pagination"].get("next_start")
        assert keys == [d["field_code"] for d in fake.field_defs["dealFields"]]
        assert K["Lead source"] in keys
        headers = first.headers
        assert headers["x-ratelimit-reset"].isdigit()
        notes = requests.get(f"{fake.base_url}/v1/noteFields",
                             params={"api_token": fake.token}, timeout=10).json()
        assert notes["additional_data"]["pagination"]["more_items_in_collection"] is False
