"""End to end: `syncd sync` as a subprocess against the local fake Sheets server.

* a Pipedrive tenant (the demo tenant on the fake Pipedrive) with a ``reports: gsheets:``
  section: its report tabs appear in the spreadsheet, and a second pass with nothing
  changed writes nothing;
* a spreadsheet not shared with the service account: the pass still succeeds and the log
  says exactly what to share with whom;
* a Google spreadsheet as the client's CRM (``plugin: gsheets``), read with one batchGet.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import FAST_BURST, REPO, fake_tenant, report_json, run_syncd, write_config
from syncd_fakes.gsheets.server import FakeSheets
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive
from syncd_gsheets.values import SERIAL_EPOCH

from syncd.exitcodes import PARTIAL

TOKEN = "pd-gsheets-e2e-token-41a7"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}
EMAIL = "syncd-e2e@northwind-reports.iam.gserviceaccount.com"
REPORT_SHEET = "northwind-report-sheet"
CRM_SHEET = "client-crm-sheet-0001"
T = "syncd "


def _sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sample_export",
                                                  REPO / "tests" / "data" / "sample_export.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample = _sample()


@pytest.fixture
def sheets() -> Iterator[FakeSheets]:
    with FakeSheets() as server:
        yield server


@pytest.fixture
def pipedrive() -> Iterator[FakePipedrive]:
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as server:
        yield server


def _key_file(root: Path, sheets: FakeSheets) -> None:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    (root / "tenants" / "key.json").write_text(sheets.service_account_key(EMAIL),
                                               encoding="utf-8")


def _reports(sheets: FakeSheets) -> dict[str, Any]:
    return {"gsheets": {"spreadsheet_id": REPORT_SHEET, "credentials": {"$file": "key.json"},
                        "base_url": sheets.base_url}}


@pytest.fixture
def pipedrive_config(tmp_path: Path, db_url: str, sheets: FakeSheets,
                     pipedrive: FakePipedrive) -> Path:
    _key_file(tmp_path, sheets)
    tenant = fake_tenant(pipedrive)
    # Tasks created by the first pass would be activities that resolve violations in the
    # second: a real change of the report. Without them, the second pass changes nothing.
    tenant["writeback"]["create_tasks"] = False
    tenant["reports"] = _reports(sheets)
    return write_config(tmp_path, db_url, {"northwind": tenant})


def test_a_pipedrive_tenant_keeps_its_report_tabs_up_to_date(
        pipedrive_config: Path, sheets: FakeSheets) -> None:
    sheets.create(REPORT_SHEET, shared_with=[EMAIL])
    first = run_syncd(pipedrive_config, "sync", env=ENV)
    assert first.returncode == 0, first.stderr
    assert "report sink" not in first.stderr, first.stderr
    report = report_json(pipedrive_config, "northwind", env=ENV)
    rows = sheets.tab(REPORT_SHEET, T + "Violations")
    assert rows[0][:5] == ["deal_id", "deal", "owner_id", "owner", "rule"]
    written = sorted((r[0], r[4]) for r in rows[1:])
    expected = sorted((v["deal_id"] or "", v["rule"]) for v in report["violations"])
    assert written == expected
    assert all(isinstance(r[0], str) for r in rows[1:]), "deal ids are text"
    karma = sheets.tab(REPORT_SHEET, T + "Client karma")
    header = karma.index(["company_id", "company", "segment", "karma", "segment_mean_karma"])
    assert {r[0]: r[3] for r in karma[header + 1:]} == {
        k["company_id"]: pytest.approx(k["karma"]) for k in report["client_karma"]}
    writes = len(sheets.calls("values:batchUpdate"))
    assert writes == 1

    second = run_syncd(pipedrive_config, "sync", env=ENV)
    assert second.returncode == 0, second.stderr
    assert len(sheets.calls("values:batchUpdate")) == writes, "nothing changed: nothing written"
    assert not sheets.calls("values:batchClear")
    assert sheets.token_requests == 2, "one token per process"


def test_a_sheet_not_shared_fails_the_sink_not_the_pass(
        pipedrive_config: Path, sheets: FakeSheets) -> None:
    sheets.create(REPORT_SHEET, shared_with=["someone@else.iam.gserviceaccount.com"])
    result = run_syncd(pipedrive_config, "sync", "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["ok"]
    assert (f"spreadsheet {REPORT_SHEET} is not shared with the service account {EMAIL}"
            in result.stderr)
    assert "PRIVATE KEY" not in result.stderr


def _serial(value: Any) -> Any:
    """A cell as the Sheets API returns it unformatted: dates as serial numbers."""
    if isinstance(value, datetime):
        delta = value - SERIAL_EPOCH
        return delta.days + delta.seconds / 86400
    if isinstance(value, date):
        return (value - SERIAL_EPOCH.date()).days
    return "" if value is None else value


def test_a_google_spreadsheet_as_the_clients_crm(tmp_path: Path, db_url: str,
                                                  sheets: FakeSheets) -> None:
    tabs = {title: [header, *[[_serial(v) for v in row] for row in rows]]
            for title, (header, rows) in sample.TABS.items()}
    sheets.create(CRM_SHEET, {"Read me": [["notes for the team"]], **tabs},
                  shared_with=[EMAIL])
    sheets.create(REPORT_SHEET, shared_with=[EMAIL])
    _key_file(tmp_path, sheets)
    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["plugin"] = "gsheets"
    tenant["connection"].update({"spreadsheet_id": CRM_SHEET, "base_url": sheets.base_url,
                                 "credentials": {"$file": "key.json"}})
    tenant["reports"] = _reports(sheets)
    config = write_config(tmp_path, db_url, {"sheetcrm": tenant})

    result = run_syncd(config, "sync", "--format", "json")
    assert result.returncode == PARTIAL, result.stderr  # ran; the bad row quarantined
    summary = json.loads(result.stdout)[0]["summary"]
    assert summary["pulled"]["deals"] == len(sample.DEALS) - 1
    # an unreadable row is held in quarantine (not a loose problem), naming its tab and row
    tab, row = sample.BAD_ROW
    unreadable = (f"tab {tab!r} row {row}: created_at: cannot read 'someday' as a date "
                  "(YYYY-MM-DD, DD.MM.YYYY or ISO 8601)")
    assert summary["problems"] == [], summary
    assert [q for q in summary["quarantined"] if unreadable in q] == summary["quarantined"]
    assert len(summary["quarantined"]) == 1, summary
    crm_reads = [(m, p, q) for m, p, q, _ in sheets.requests if CRM_SHEET in p]
    assert [(m, p.rsplit("/", 1)[-1]) for m, p, _ in crm_reads] == [
        ("GET", CRM_SHEET), ("GET", "values:batchGet")], "two requests read the whole CRM"
    query = crm_reads[1][2]
    assert query["valueRenderOption"] == ["UNFORMATTED_VALUE"]
    assert sorted(query["ranges"]) == sorted(f"'{t}'" for t in sample.TABS)

    report = report_json(config, "sheetcrm")
    held = report["quarantine"]
    assert [(h["stream"], h["stage"], h["external_id"]) for h in held] == [
        ("deals", "read", "D-006")]
    assert (held[0]["payload"]["tab"], held[0]["payload"]["row"]) == (tab, row)
    assert unreadable in held[0]["problem"]
    found = {(v["rule"], v["deal_id"]) for v in report["violations"]}
    assert {("no_lead_source", "D-003"), ("no_contact", "00123"),
            ("bad_loss_reason", "D-007")} <= found
    assert [k["company_id"] for k in report["client_karma"] if k["karma"]] == ["C-2"]
    assert report["counts"]["activities"] == len(sample.ACTIVITIES)
    published = sheets.tab(REPORT_SHEET, T + "Violations")
    assert [r[0] for r in published[1:] if r[0] == "00123" and r[4] == "no_contact"] == ["00123"]
