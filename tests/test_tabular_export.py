"""Auditing a client's CRM export (CSV files, an XLSX workbook) with the CLI, no credentials.

`syncd sync` + `syncd report --format json` as subprocesses, exactly as a consultant runs
them. The bad row of the sample is reported with its tab and row number and skipped; the
other rows are audited; the CSV and the XLSX export of the same data give the same audit.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import REPO, report_json, run_syncd, write_config

from syncd.exitcodes import PARTIAL


def _sample() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sample_export",
                                                  REPO / "tests" / "data" / "sample_export.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample = _sample()


def _tenant(path: Path) -> dict[str, Any]:
    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(path)
    return tenant


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    csv_dir = sample.write_csv_dir(tmp_path / "export_csv")
    xlsx = sample.write_xlsx(tmp_path / "export.xlsx")
    return write_config(tmp_path, db_url, {"from_csv": _tenant(csv_dir),
                                           "from_xlsx": _tenant(xlsx)})


def _audit(report: dict[str, Any]) -> list[tuple[str, str | None]]:
    return sorted((v["rule"], v["deal_id"]) for v in report["violations"])


def test_csv_and_xlsx_exports_are_audited_without_credentials(config: Path) -> None:
    env = {key: "" for key in ("GOOGLE_APPLICATION_CREDENTIALS",)}
    result = run_syncd(config, "sync", "--format", "json", env=env)
    assert result.returncode == PARTIAL, result.stderr  # ran; the bad row quarantined
    outcomes = {o["tenant"]: o for o in json.loads(result.stdout)}
    tab, row = sample.BAD_ROW
    for key in ("from_csv", "from_xlsx"):
        summary = outcomes[key]["summary"]
        assert outcomes[key]["ok"], outcomes[key]
        assert summary["requests"] == 0, "a local export makes no HTTP request"
        assert summary["pulled"]["deals"] == len(sample.DEALS) - 1, "only the bad row skipped"
        # held in quarantine like any unreadable record, naming its tab and row
        assert summary["problems"] == [], summary
        assert len(summary["quarantined"]) == 1
        assert f"tab {tab!r} row {row}: created_at" in summary["quarantined"][0], summary
        assert f"tenant {key}: tab {tab!r} row {row}" in result.stderr, "logged too"

    from_csv, from_xlsx = (report_json(config, key) for key in ("from_csv", "from_xlsx"))
    for report in (from_csv, from_xlsx):
        held = report["quarantine"]
        assert [(h["stream"], h["stage"]) for h in held] == [("deals", "read")]
        assert held[0]["payload"]["tab"] == tab and held[0]["payload"]["row"] == row
        assert f"tab {tab!r} row {row}" in held[0]["problem"]
    assert _audit(from_csv) == _audit(from_xlsx), "same data, same audit, whatever the format"
    found = set(_audit(from_csv))
    for expected in [("no_lead_source", "D-003"), ("no_contact", "00123"),
                     ("bad_loss_reason", "D-007"), ("unmapped_stage", None)]:
        assert expected in found, (expected, found)
    assert not any(deal == "D-006" for _, deal in found), "the unreadable row is not audited"
    unmapped = [v["crm_stage"] for v in from_csv["violations"] if v["rule"] == "unmapped_stage"]
    assert unmapped == ["Sales / Negotiation (old)"]
    karma = {row["company_id"]: row for row in from_xlsx["client_karma"]}
    assert [c for c, row in karma.items() if row["karma"]] == ["C-2"], (
        "Beta LLC (named in the deal, resolved to C-2) won")
    assert {c: row["karma"] for c, row in karma.items() if c != "C-2"} == {
        "C-1": 0.0, "C-3": 0.0}, "companies without karma are shown with 0"
    assert karma["C-2"]["segment"] == "Enterprise"
    assert from_csv["counts"]["deals"] == from_xlsx["counts"]["deals"] == 6


def test_a_second_pass_over_the_same_export_changes_nothing(config: Path) -> None:
    assert run_syncd(config, "sync", "from_xlsx").returncode == PARTIAL  # the bad sample row
    second = run_syncd(config, "sync", "from_xlsx", "--format", "json")
    assert second.returncode == PARTIAL, second.stderr
    summary = json.loads(second.stdout)[0]["summary"]
    assert sum(summary["changed"].values()) == 0, "content hashes make unchanged rows free"
    assert summary["violations_opened"] == 0


def test_a_missing_export_fails_that_tenant_only_with_a_clear_error(tmp_path: Path,
                                                                    db_url: str) -> None:
    csv_dir = sample.write_csv_dir(tmp_path / "export_csv")
    config = write_config(tmp_path, db_url, {"good": _tenant(csv_dir),
                                             "gone": _tenant(tmp_path / "nowhere.xlsx")})
    result = run_syncd(config, "sync", "--format", "json")
    outcomes = {o["tenant"]: o for o in json.loads(result.stdout)}
    assert outcomes["good"]["ok"]
    assert not outcomes["gone"]["ok"]
    assert "nowhere.xlsx" in outcomes["gone"]["error"]
    assert "no such file or directory" in outcomes["gone"]["error"]


def test_a_row_deleted_from_the_export_resolves_its_violations(config: Path) -> None:
    assert run_syncd(config, "sync", "from_csv").returncode == PARTIAL  # the bad sample row
    before = report_json(config, "from_csv")
    assert any(v["deal_id"] == "D-001" for v in before["violations"])
    deals_csv = config.parent / "export_csv" / "Deals.csv"
    lines = deals_csv.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    deals_csv.write_text("".join(line for line in lines if not line.startswith("D-001;")),
                         encoding="utf-8-sig")
    result = run_syncd(config, "sync", "from_csv", "--format", "json")
    assert result.returncode == PARTIAL, result.stderr
    assert json.loads(result.stdout)[0]["summary"]["violations_resolved"] >= 1
    after = report_json(config, "from_csv")
    assert not any(v["deal_id"] == "D-001" for v in after["violations"])
    assert after["counts"]["open_deals"] == before["counts"]["open_deals"] - 1


def test_a_relative_export_path_is_relative_to_the_tenant_file(tmp_path: Path,
                                                              db_url: str) -> None:
    sample.write_xlsx(tmp_path / "export.xlsx")  # tenant files live in tmp_path/tenants/
    config = write_config(tmp_path, db_url, {"rel": _tenant(Path("..") / "export.xlsx")})
    result = run_syncd(config, "sync", "rel", "--format", "json")  # cwd is the repository
    assert result.returncode == PARTIAL, result.stderr  # ran; the sample's bad row skipped
    assert json.loads(result.stdout)[0]["summary"]["pulled"]["deals"] > 0


def test_a_quarantined_row_is_released_once_the_export_is_fixed(tmp_path: Path,
                                                                 db_url: str) -> None:
    csv_dir = sample.write_csv_dir(tmp_path / "export_csv")
    config = write_config(tmp_path, db_url, {"shop": _tenant(csv_dir)})
    first = run_syncd(config, "sync", "shop")
    assert first.returncode == PARTIAL, first.stderr
    held = report_json(config, "shop")["quarantine"]
    assert [h["external_id"] for h in held] == ["D-006"]
    deals = csv_dir / "Deals.csv"
    deals.write_text(deals.read_text("utf-8-sig").replace("someday", "2026-05-02"), "utf-8-sig")
    second = run_syncd(config, "sync", "shop")
    assert second.returncode == 0, second.stderr
    report = report_json(config, "shop")
    assert report["quarantine"] == []
    assert report["counts"]["deals"] == len(sample.DEALS)
