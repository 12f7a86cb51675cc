"""The report sink against the local fake Sheets server (in process, real HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support import FakeClock
from syncd_fakes.gsheets.server import FakeSheets
from syncd_gsheets import plugin
from syncd_gsheets.report_tabs import render
from syncd_gsheets.settings import ReportSinkOptions
from syncd_gsheets.sink import SheetsReportSink

from syncd.errors import AuthError, ConfigError
from syncd.ratelimit import RateLimiter
from syncd.sinks import SinkRegistry, validated_options

SHEET = "report-sheet-0001"
EMAIL = "syncd-reports@acme.iam.gserviceaccount.com"
T = "syncd "


@pytest.fixture
def fake() -> Iterator[FakeSheets]:
    with FakeSheets() as server:
        yield server


@pytest.fixture
def key(fake: FakeSheets) -> str:
    return fake.service_account_key(EMAIL)


def options(fake: FakeSheets, key: str, **extra: Any) -> ReportSinkOptions:
    return ReportSinkOptions(spreadsheet_id=SHEET, credentials=key, base_url=fake.base_url,
                             **extra)


def publish(fake: FakeSheets, key: str, report: dict[str, Any], clock: FakeClock | None = None,
            limiter: RateLimiter | None = None, **extra: Any) -> Any:
    clock = clock or FakeClock()
    sink = SheetsReportSink(options(fake, key, **extra), sleep=clock.sleep, clock=clock,
                            now=lambda: datetime(2026, 11, 23, 12, tzinfo=UTC),
                            limiter=limiter)
    return sink.publish(report)


def base_report(**extra: Any) -> dict[str, Any]:
    return {
        "schema": "syncd.report/1", "tenant": "acme", "plugin": "pipedrive",
        "salesbook": "canonical-5", "timezone": "Europe/Berlin", "currency": "EUR",
        "generated_at": "2026-11-23T12:00:00+00:00", "counts": {"deals": 3},
        "violations_by_rule": {"stalled": 2},
        "violations": [
            {"deal_id": "00123", "deal_title": "Windows", "owner_id": "7", "rule": "stalled",
             "severity": "warning", "stage_key": "estimate", "crm_stage": "Sales / Estimate",
             "explanation": "stuck", "opened_at": "2026-11-01T10:00:00+00:00"},
            {"deal_id": "45", "deal_title": "=SUM(A1:A2)", "owner_id": "8", "rule": "stalled",
             "severity": "warning", "stage_key": "contract", "crm_stage": "Sales / Contract",
             "explanation": "stuck too", "opened_at": "2026-11-02T10:00:00+00:00"},
        ],
        "client_karma": [{"company_id": "9", "company_name": "Acme", "segment": "SMB",
                          "karma": 12.5, "lines": []}],
        "segments": [{"segment": "SMB", "mean_karma": 12.5, "companies": 1}],
        "notes": [],
        **extra,
    }


def test_first_publish_creates_missing_tabs_in_one_request_and_writes_them(
        fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, {"Sheet1": [["mine"]]}, shared_with=[EMAIL])
    result = publish(fake, key, base_report())
    titles = fake.titles(SHEET)
    assert titles == ["Sheet1", *[T + n for n in ("Summary", "Violations", "Client karma",
                                                  "People", "KPIs", "Contact matrix")]]
    assert fake.tab(SHEET, "Sheet1") == [["mine"]], "tabs without the prefix are not touched"
    assert [c for c in fake.calls() if c[1] == ":batchUpdate"] == [("POST", ":batchUpdate")]
    assert len(fake.calls("values:batchUpdate")) == 1, "every tab in one write"
    assert result.created == result.written
    violations = fake.tab(SHEET, T + "Violations")
    assert violations[1][0] == "00123", "ids stay text"
    assert violations[2][1] == "=SUM(A1:A2)", "RAW input: a formula-looking title stays text"
    assert violations[1][8] == "2026-11-01 11:00", "since: in the tenant's timezone (Berlin)"
    karma = fake.tab(SHEET, T + "Client karma")
    assert ["9", "Acme", "SMB", 12.5, 12.5] in karma, "numbers stay numbers"
    assert ["SMB", 12.5, 1] in karma
    people = fake.tab(SHEET, T + "People")
    assert "not computed" in people[0][0]
    summary = fake.tab(SHEET, T + "Summary")
    assert ["content changed at", "2026-11-23T12:00:00+00:00"] in summary
    assert fake.frozen(SHEET, T + "Violations") == (1, 0), "the header stays in view"
    assert fake.frozen(SHEET, T + "Contact matrix") == (1, 2), "and the client's name"


def test_nothing_is_written_when_nothing_changed(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    publish(fake, key, base_report())
    before = len(fake.requests)
    result = publish(fake, key, base_report(generated_at="2026-11-23T13:00:00+00:00"))
    after = [(m, p) for m, p, _, _ in fake.requests[before:]]
    assert result.written == []
    assert len(after) == 2, after  # spreadsheets.get + one values:batchGet
    assert not fake.calls("values:batchClear")
    assert len(fake.calls("values:batchUpdate")) == 1, "only the first publish wrote"


def test_a_shorter_table_leaves_no_stale_rows_or_columns(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    publish(fake, key, base_report())
    fake.set_tab(SHEET, T + "Violations",
                 [*fake.tab(SHEET, T + "Violations"), [], ["x", "", "", "", "", "", "", "",
                                                           "", "", "", "", "stray"]])
    shorter = base_report(violations=[base_report()["violations"][0]])
    result = publish(fake, key, shorter)
    assert result.written == [T + "Violations", T + "Summary"]
    assert fake.tab(SHEET, T + "Violations") == render(shorter)["violations"]
    assert result.cleared, "the tail was cleared"
    assert len(fake.calls("values:batchClear")) == 1


def test_a_hand_edited_tab_is_put_right(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    publish(fake, key, base_report())
    karma = fake.tab(SHEET, T + "Client karma")
    karma[-1][3] = 99
    fake.set_tab(SHEET, T + "Client karma", karma)
    result = publish(fake, key, base_report())
    assert T + "Client karma" in result.written
    assert ["9", "Acme", "SMB", 12.5, 12.5] in fake.tab(SHEET, T + "Client karma")


def test_people_kpis_and_contact_matrix_render_generically(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    report = base_report(
        people={"employees": [{"user_id": "7", "name": "Anna", "karma": 3.5, "bonus": 100,
                               "new_field": "kept"}],
                "managers": [{"user_id": "1", "name": "Max", "members": ["7", "8"],
                              "karma": 2}]},
        kpis={"win_rate": 0.25, "funnel": [{"stage": "estimate", "deals": 4, "conversion": 0.5}],
              "by_source": {"Website": 3}},
        contact_matrix={"months": ["2026-10", "2026-11", "2026-12"], "rows": [
            {"company_id": "009", "company": "Acme", "region": "North", "cells": {
                "2026-10": {"call": 2, "visit": 1, "contract": 0, "planned": False},
                "2026-12": {"call": 1, "visit": 0, "contract": 0, "planned": True}}}]},
    )
    publish(fake, key, report, language="ru")
    people = fake.tab(SHEET, T + "Сотрудники")
    assert ["user_id", "name", "karma", "bonus", "new_field"] in people
    assert ["7", "Anna", 3.5, 100, "kept"] in people
    assert ["1", "Max", 2, "7, 8"] in people
    kpis = fake.tab(SHEET, T + "KPI")
    assert ["win_rate", 0.25] in kpis
    assert ["estimate", 4, 0.5] in kpis and ["Website", 3] in kpis
    matrix = fake.tab(SHEET, T + "Матрица контактов")
    assert matrix[0] == ["company_id", "company", "region", "2026-10", "2026-11", "2026-12"]
    assert matrix[1] == ["009", "Acme", "North", "Зв×2 В", "", "план: Зв"]  # noqa: RUF001
    violations = fake.tab(SHEET, T + "Нарушения")
    assert violations[1][3] == "Anna", "owners are named from report.people"


def test_not_shared_names_the_service_account(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=["someone-else@x.iam.gserviceaccount.com"])
    with pytest.raises(AuthError, match=f"not shared with the service account {EMAIL}"):
        publish(fake, key, base_report())


def test_quota_exhausted_is_backed_off_and_retried(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    fake.quota_faults = 2
    clock = FakeClock()
    result = publish(fake, key, base_report(), clock=clock)
    assert fake.rate_limited == 2 and len(clock.sleeps) == 2
    assert result.written, "published after the backoff"


def test_the_sink_is_registered_by_name_and_its_options_validated(tmp_path: Path) -> None:
    registry = SinkRegistry()
    plugin.syncd_register_report_sinks(registry=registry)
    assert registry.names() == ["gsheets"]
    sink = registry.get("gsheets")
    with pytest.raises(ConfigError) as caught:
        validated_options(sink, {"spreadsheet_id": "short", "credentialz": "x"},
                          str(tmp_path / "acme.yaml"))
    text = str(caught.value)
    assert "acme.yaml: reports.gsheets.spreadsheet_id" in text
    assert "reports.gsheets.credentials: Field required" in text
    assert "reports.gsheets.credentialz: Extra inputs are not permitted" in text


def test_a_table_bigger_than_the_tab_grows_its_grid_first(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    publish(fake, key, base_report())
    many = [dict(base_report()["violations"][0], deal_id=f"{i:05d}") for i in range(1500)]
    result = publish(fake, key, base_report(violations=many))
    assert T + "Violations" in result.written
    rows = fake.tab(SHEET, T + "Violations")
    assert len(rows) == 1501 and rows[-1][0] == "01499"
    resizes = [b for m, p, _, b in fake.requests if p.endswith(":batchUpdate")
               and "updateSheetProperties" in json.dumps(b)]
    assert len(resizes) == 1, "one resize request, before the write"


def test_new_tabs_are_created_big_enough(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    many = [dict(base_report()["violations"][0], deal_id=f"{i:05d}") for i in range(1200)]
    publish(fake, key, base_report(violations=many))
    assert len(fake.tab(SHEET, T + "Violations")) == 1201
    assert not [p for _, p, _, b in fake.requests if "updateSheetProperties" in json.dumps(b)]


def test_source_row_problems_in_the_report_show_on_the_summary_tab() -> None:
    report = base_report(last_sync={"status": "ok", "problems": [
        "tab 'Deals' row 7: created_at: expected a date"]})
    summary = render(report)["summary"]
    at = summary.index(["unreadable source rows (skipped)", ""])
    assert summary[at + 1] == ["tab 'Deals' row 7: created_at: expected a date", ""]
    assert ["unreadable source rows (skipped)", ""] not in render(base_report())["summary"]


def test_the_limiter_keeps_under_the_quota_proactively() -> None:
    clock = FakeClock()
    with FakeSheets(per_minute=3, clock=clock) as server:
        key = server.service_account_key(EMAIL)
        server.create(SHEET, shared_with=[EMAIL])
        # One limiter across publishes, as the process-wide one is in the daemon.
        limiter = RateLimiter(3, 60, margin=1.0, clock=clock, sleep=clock.sleep)
        for _ in range(3):  # 4 + 2 + 2 requests: more than 3 per minute
            publish(server, key, base_report(), clock=clock, limiter=limiter)
        assert server.rate_limited == 0, "never a 429: the limiter waited instead"
        assert sum(clock.sleeps) >= 60


def test_tab_titles_with_an_apostrophe_are_quoted(fake: FakeSheets, key: str) -> None:
    fake.create(SHEET, shared_with=[EMAIL])
    publish(fake, key, base_report(), tab_prefix="Acme's ")
    assert fake.tab(SHEET, "Acme's Violations")[1][0] == "00123"
    ranges = [r for m, p, q, b in fake.requests if p.endswith("values:batchGet")
              for r in q["ranges"]]
    assert "'Acme''s Violations'" in ranges


def test_people_rows_are_ordered_by_period_then_karma_whatever_the_input_order() -> None:
    employees = [
        {"user_id": "2", "name": "Bea", "karma": 5, "period": "2026-10"},
        {"user_id": "1", "name": "Al", "karma": 5, "period": "2026-10"},
        {"user_id": "3", "name": "Cy", "karma": 9, "period": "2026-10"},
        {"user_id": "1", "name": "Al", "karma": 1, "period": "2026-11"},
    ]
    first = render(base_report(people={"employees": employees, "managers": []}))["people"]
    again = render(base_report(people={"employees": employees[::-1], "managers": []}))
    assert first == again["people"], "ties never swap rows between passes"
    assert [r[:3] for r in first[2:6]] == [["1", "Al", 1], ["3", "Cy", 9], ["1", "Al", 5],
                                           ["2", "Bea", 5]]
