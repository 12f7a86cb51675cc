"""End to end: `syncd sync` as a subprocess against the fake Pipedrive over HTTP.

Checks the stored result, the report, and the write-backs the server received; then that
an incremental pass with nothing changed makes at most one request per entity stream and
writes nothing (our own writes do not echo back as changes).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support import FAST_BURST, fake_tenant, report_json, run_syncd, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import store

TOKEN = "pd-e2e-token-5b1c9e"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}


#: Pipedrive's real burst limit (per 2 s); the first test keeps to it over real time.
PIPEDRIVE_BURST = 20


@pytest.fixture
def fake(request: pytest.FixtureRequest):
    burst = getattr(request, "param", FAST_BURST)
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=burst) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, db_url: str, fake: FakePipedrive) -> Path:
    return write_config(tmp_path, db_url, {"northwind": fake_tenant(fake)})


@pytest.mark.slow
@pytest.mark.parametrize("fake", [PIPEDRIVE_BURST], indirect=True)
def test_sync_stores_audits_and_writes_back(config: Path, db_url: str,
                                            fake: FakePipedrive) -> None:
    result = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    assert fake.rate_limited_count == 0, "the client stays under 20 requests per 2 s"
    summary = json.loads(result.stdout)[0]["summary"]

    database = store.Database(db_url)
    with database.session() as session:
        stored = session.scalar(select(func.count()).select_from(store.DealRow))
        orgs = session.scalar(select(func.count()).select_from(store.CompanyRow))
    assert stored == len(fake.deals.ids())
    assert orgs == len(fake.organizations.ids())
    assert summary["pulled"]["deals"] == stored

    report = report_json(config, "northwind", env=ENV)
    rules = report["violations_by_rule"]
    for rule in ("missing_action", "stalled", "no_next_step", "bad_loss_reason",
                 "no_lead_source", "no_contact", "unmapped_stage", "won_no_followup"):
        assert rules.get(rule, 0) > 0, (rule, rules)
    deal_ids = {str(i) for i in fake.deals.ids()}
    for violation in report["violations"]:
        assert violation["rule"] == "unmapped_stage" or violation["deal_id"] in deal_ids
    unmapped = [v for v in report["violations"] if v["rule"] == "unmapped_stage"]
    assert [v["crm_stage"] for v in unmapped] == ["Partners / Intro"]

    karma = {row["company_id"]: row["karma"] for row in report["client_karma"]}
    assert karma, "some companies have won deals, so karma"
    karma_field = _field_key(fake, "organizationFields", "syncd karma")
    for company_id, value in karma.items():
        written = fake.record("organizations", int(company_id))["custom_fields"][karma_field]
        assert written == pytest.approx(value, abs=0.01)
    texts_field = _field_key(fake, "dealFields", "syncd violations")
    flagged = {v["deal_id"] for v in report["violations"] if v["deal_id"]}
    for deal_id in flagged:
        text = fake.record("deals", int(deal_id))["custom_fields"][texts_field]
        assert text.startswith("Sales Book:"), text


def test_second_pass_with_nothing_changed_is_cheap_and_writes_nothing(
        config: Path, fake: FakePipedrive) -> None:
    first = run_syncd(config, "sync", env=ENV)
    assert first.returncode == 0, first.stderr
    writes_after_first = len(fake.writes)
    assert writes_after_first > 0
    before = len(fake.requests)

    second = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert second.returncode == 0, second.stderr
    paths = Counter(path for _, path, _, _ in fake.requests[before:])
    assert len(fake.writes) == writes_after_first, "nothing changed: nothing written"
    assert max(paths.values()) == 1, paths
    assert not any("/flow" in path for path in paths), "no deal changed: no history fetched"
    summary = json.loads(second.stdout)[0]["summary"]
    assert summary["changed"].get("deals", 0) == 0, "our own writes are not changes"
    assert summary["violations_opened"] == 0


def test_a_change_in_the_crm_is_picked_up_and_written_back(
        config: Path, fake: FakePipedrive) -> None:
    assert run_syncd(config, "sync", env=ENV).returncode == 0
    lead_field = _field_key(fake, "dealFields", "Lead source")
    report = report_json(config, "northwind", env=ENV)
    victim = next(v["deal_id"] for v in report["violations"] if v["rule"] == "no_lead_source")
    option = fake.field_defs["dealFields"]
    website = next(o["id"] for f in option if f["field_code"] == lead_field
                   for o in f["options"] if o["label"] == "Website")
    fake.edit("deals", int(victim), custom_fields={lead_field: website})

    result = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)[0]["summary"]
    assert summary["changed"]["deals"] >= 1
    assert summary["violations_resolved"] >= 1
    after = report_json(config, "northwind", env=ENV)
    assert not any(v["deal_id"] == victim and v["rule"] == "no_lead_source"
                   for v in after["violations"])


def test_secrets_never_reach_logs_reports_or_the_database(
        config: Path, db_url: str, fake: FakePipedrive, tmp_path: Path) -> None:
    result = run_syncd(config, "sync", env=ENV)
    assert result.returncode == 0, result.stderr
    report = run_syncd(config, "report", "northwind", "--format", "json", env=ENV)
    outputs = result.stdout + result.stderr + report.stdout + report.stderr
    files = "".join(p.read_text() for p in (tmp_path / "reports").glob("*.json"))
    assert TOKEN not in outputs + files
    database = store.Database(db_url)
    with database.engine.connect() as conn:
        for table in store.Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                assert TOKEN not in repr(tuple(row)), table.name


def test_an_invalid_token_fails_that_tenant_only(tmp_path: Path, db_url: str,
                                                 fake: FakePipedrive) -> None:
    bad = fake_tenant(fake, "BAD_TOKEN")
    config = write_config(tmp_path, db_url, {"bad": bad,
                                             "northwind": fake_tenant(fake)})
    result = run_syncd(config, "sync", "--format", "json",
                       env={**ENV, "BAD_TOKEN": "wrong-token-123456"})
    assert result.returncode == 1
    outcomes = {o["tenant"]: o for o in json.loads(result.stdout)}
    assert outcomes["northwind"]["ok"] is True
    assert outcomes["bad"]["ok"] is False
    assert "AuthError" in outcomes["bad"]["error"]
    assert "wrong-token-123456" not in result.stdout + result.stderr


def test_as_of_the_past_is_a_what_if(config: Path, fake: FakePipedrive) -> None:
    assert run_syncd(config, "sync", env=ENV).returncode == 0
    live = report_json(config, "northwind", env=ENV)
    result = run_syncd(config, "report", "northwind", "--format", "json", "--as-of",
                       "2025-01-31", env=ENV)
    assert result.returncode == 0, result.stderr
    past = json.loads(result.stdout)
    assert past["live"] is False
    assert past["as_of"].startswith("2025-01-31T23:59:59")
    assert len(past["violations"]) < len(live["violations"])
    assert all(v["opened_at"] is None for v in past["violations"])
    again = report_json(config, "northwind", env=ENV)
    assert again["violations"] == live["violations"], "a what-if leaves the lifecycle alone"


def _field_key(fake: FakePipedrive, kind: str, name: str) -> str:
    return next(f["field_code"] for f in fake.field_defs[kind] if f["field_name"] == name)


def test_a_broken_page_fails_the_pass_and_keeps_stored_data(
        config: Path, db_url: str, fake: FakePipedrive) -> None:
    from syncd_fakes.pipedrive.server import Fault

    assert run_syncd(config, "sync", env=ENV).returncode == 0
    database = store.Database(db_url)
    with database.session() as session:
        before = session.scalar(select(func.count()).select_from(store.DealRow))
        cursor = store.get_cursor(session, 1, "deals")
    victim = fake.deals.ids()[0]
    fake.edit("deals", victim, title="Renamed in the CRM")
    # A cut body is retried (weather): it breaks the pass only when all 8 attempts are cut.
    fake.faults = [Fault("truncated", method="GET", path="/api/v2/deals", times=10)]
    broken = run_syncd(config, "sync", "--format", "json",
                       env={**ENV, "SYNCD_RETRY_WAIT_SCALE": "0"})
    assert broken.returncode == 1
    outcome = json.loads(broken.stdout)[0]
    assert "not valid JSON" in outcome["error"] and "deals" in outcome["error"]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(store.DealRow)) == before
        assert store.get_cursor(session, 1, "deals") == cursor, "cursor kept"

    fake.faults = None
    healed = run_syncd(config, "sync", env=ENV)
    assert healed.returncode == 0, healed.stderr
    with database.session() as session:
        title = session.scalar(select(store.DealRow.title).where(
            store.DealRow.external_id == str(victim)))
    assert title == "Renamed in the CRM"


def test_rate_limit_errors_are_retried_and_html_block_stops_the_tenant(
        config: Path, fake: FakePipedrive) -> None:
    from syncd_fakes.pipedrive.server import Fault

    fake.faults = [Fault("429", method="GET", path="/api/v2/organizations", times=2),
                   Fault("503", method="GET", path="/api/v2/persons", times=1)]
    retried = run_syncd(config, "sync", "--no-write", env=ENV)
    assert retried.returncode == 0, retried.stderr
    fake.faults = [Fault("html403", method="GET", path="/api/v2/deals", times=50)]
    seen = len(fake.requests)
    blocked = run_syncd(config, "sync", "--no-write", "--format", "json", env=ENV)
    assert blocked.returncode == 1
    error = json.loads(blocked.stdout)[0]["error"]
    assert "BlockedError" in error
    # the deals stream reads the archived deals first (include_archived, the default); the
    # fault matches both lists by prefix, so the first of them is blocked
    hits = [p for _, p, _, _ in fake.requests[seen:] if p.startswith("/api/v2/deals")]
    assert hits == ["/api/v2/deals/archived"], "a block page is never retried"
