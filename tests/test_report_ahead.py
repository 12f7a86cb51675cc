"""A one-off pass takes a large tenant's report KPIs and violation rows in a process of
their own while it audits and scores (``syncd.report_ahead``, issue 13 item 7). The
report is the one it would have written by itself, byte for byte; a process that fails,
or parts taken before a write-back, leave them to the report; ``syncd run`` never starts
one."""

from __future__ import annotations

import json
import logging
import pickle
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import REPO
from test_report_stream import _runner
from test_report_stream import generated as generated  # noqa: PLC0414 (a fixture)

from syncd import spare_core, store
from syncd.config import Tenant
from syncd.lease import Lease
from syncd.report import build_report
from syncd.report_ahead import ReportAhead
from syncd.report_stream import WrittenRows, report_parts
from syncd.report_stream import write_report as write_streamed
from syncd.store import leases

sys.path.insert(0, str(REPO / "bench"))
import bench_incremental as bench


def report_bytes(db: store.Database, tenant: Tenant, directory: Path, **kwargs: Any) -> bytes:
    parts, _ = report_parts(db, tenant, **kwargs)
    return write_streamed(parts, directory).read_bytes()


def test_parts_taken_in_a_process_make_the_same_report(database: store.Database,
                                                       generated: Tenant, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    ahead = ReportAhead.start_if_large(database, generated, tmp_path / "reports")
    assert ahead is not None
    try:
        ahead.order_violations()
        taken, written = ahead.kpis(), ahead.violations()
        assert taken is not None and written is not None
        kpis, matrix = taken
        assert kpis["funnel"] and matrix  # something to compare
        assert written.count > 300 and written.path.exists()
        own = report_bytes(database, generated, tmp_path / "own", clock=ahead.now)
        given = report_bytes(database, generated, tmp_path / "given", clock=ahead.now,
                             kpis_taken=taken, violations_written=lambda: written)
        assert given == own
        report = json.loads(own)
        assert report["kpis"] == kpis
        assert len(report["violations"]) == written.count
    finally:
        ahead.close()
    assert not written.path.exists()  # the file goes with the process


def test_the_rows_are_written_before_the_kpis_are_read(database: store.Database,
                                                      generated: Tenant, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The pass reads the KPIs only when its report reaches them, well after it ordered the
    rows: the process's answers are a few bytes each (the parts go through files), so it
    never waits on a full pipe before writing the rows (a 20k-deal tenant's KPIs, sent
    whole, kept it waiting until the report read them, and the report then waited for
    the rows)."""
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    ahead = ReportAhead.start_if_large(database, generated, tmp_path / "reports")
    assert ahead is not None
    try:
        ahead.order_violations()
        answers = [ahead._answers.recv_bytes() for _ in range(2)]  # nothing else read
        assert [pickle.loads(a)[0] for a in answers] == ["kpis", "violations"]
        assert all(len(a) < 1024 for a in answers[:1])
        assert ahead.kpis_path.stat().st_size > 1024  # the KPIs were not small
        written = pickle.loads(answers[1])[1]
        assert written.count > 300 and written.path.exists()
    finally:
        ahead.close()
    assert not ahead.kpis_path.exists() and not ahead.path.exists()


def test_rows_written_for_another_report_are_read_again(database: store.Database,
                                                        generated: Tenant,
                                                        tmp_path: Path) -> None:
    """Rows of another count or language than the report's, or none, are read again."""
    bogus = tmp_path / "rows.json"
    bogus.write_text("[]", encoding="utf-8")
    own = report_bytes(database, generated, tmp_path / "own", clock=bench.NOW)
    for written in (WrittenRows(bogus, 0, generated.config.language, frozenset()),
                    WrittenRows(bogus, len(json.loads(own)["violations"]), "xx", frozenset()),
                    None):
        assert report_bytes(database, generated, tmp_path / "given", clock=bench.NOW,
                            violations_written=lambda rows=written: rows) == own


def test_a_small_tenant_builds_its_report_after_the_pass(database: store.Database,
                                                         generated: Tenant,
                                                         tmp_path: Path) -> None:
    assert spare_core.MIN_DEALS > 400
    assert ReportAhead.start_if_large(database, generated, tmp_path) is None


def test_a_process_that_fails_leaves_the_parts_to_the_report(
        generated: Tenant, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unmigrated = store.Database(tmp_path / "syncd.db")  # a database without syncd's tables
    ahead = ReportAhead(unmigrated, generated, tmp_path / "reports")
    try:
        ahead.order_violations()
        with caplog.at_level(logging.WARNING, logger="syncd.report_ahead"):
            assert ahead.kpis() is None
            assert ahead.violations() is None
    finally:
        ahead.close()
    assert "the report computes them" in caplog.text
    assert "the report reads them" in caplog.text
    assert "no such table" in caplog.text


def test_a_one_off_pass_writes_its_report_with_the_parts_taken_beside_it(
        database: store.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    taken: dict[str, Any] = {}
    kpis, violations = ReportAhead.kpis, ReportAhead.violations

    def watched_kpis(self: ReportAhead) -> Any:
        taken["kpis"] = kpis(self)
        return taken["kpis"]

    def watched_violations(self: ReportAhead) -> Any:
        taken["violations"] = violations(self)
        return taken["violations"]

    monkeypatch.setattr(ReportAhead, "kpis", watched_kpis)
    monkeypatch.setattr(ReportAhead, "violations", watched_violations)
    tenant = bench.make_tenant(bench.Account(400), writeback=False)
    reports = tmp_path / "reports"
    outcome = _runner(database, reports, [bench.NOW]).run_one_off(tenant)
    assert outcome.ok and outcome.report_outcome == "written"
    assert taken["kpis"] is not None and taken["violations"] is not None  # taken, and used
    report = json.loads(Path(outcome.report or "").read_text("utf-8"))
    assert report["kpis"] == taken["kpis"][0]
    assert report["contact_matrix"] == taken["kpis"][1]
    assert len(report["violations"]) == taken["violations"].count
    fresh = build_report(database, tenant, clock=datetime.fromisoformat(report["generated_at"]))
    assert report["kpis"] == fresh["kpis"]
    assert report["violations"] == fresh["violations"]
    assert report["notes"] == fresh["notes"]
    assert (reports / f"{tenant.key}.json").exists()
    assert not list(reports.glob("*.tmp"))  # the rows' file went with the process


def test_parts_taken_before_a_write_back_are_not_used(database: store.Database,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Write-back stores what it wrote after the parts were taken: the report takes its own."""
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    started: list[str] = []
    asked: list[str] = []
    init = ReportAhead.__init__

    def watched_init(self: ReportAhead, db: store.Database, tenant: Tenant,
                     directory: Path) -> None:
        started.append(tenant.key)
        init(self, db, tenant, directory)

    def ask(self: ReportAhead) -> None:
        asked.append("asked")

    monkeypatch.setattr(ReportAhead, "__init__", watched_init)
    monkeypatch.setattr(ReportAhead, "kpis", ask)
    monkeypatch.setattr(ReportAhead, "violations", ask)
    tenant = bench.make_tenant(bench.Account(400), writeback=True)
    outcome = _runner(database, tmp_path / "reports", [bench.NOW]).run_one_off(tenant)
    assert outcome.ok and outcome.summary is not None and any(outcome.summary.writes.values())
    assert started == [tenant.key] and asked == []
    report = json.loads(Path(outcome.report or "").read_text("utf-8"))
    fresh = build_report(database, tenant, clock=datetime.fromisoformat(report["generated_at"]))
    assert report["kpis"] == fresh["kpis"]
    assert report["violations"] == fresh["violations"]


def test_the_daemon_builds_its_reports_after_the_pass(database: store.Database,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``syncd run`` keeps its cores for its workers: no process beside the pass."""
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    started: list[Tenant] = []
    monkeypatch.setattr(ReportAhead, "__init__",
                        lambda self, db, tenant, directory: started.append(tenant))
    tenant = bench.make_tenant(bench.Account(400))
    runner = _runner(database, tmp_path / "reports", [bench.NOW])
    with database.session() as session:
        leases.ensure_leases(session, [tenant.key])
        claim = leases.claim_one(session, tenant.key, "test", ttl=timedelta(minutes=5))
    assert claim is not None
    outcome = runner.run_under_lease(tenant, Lease(tenant.key, claim.fence, "test"))
    assert outcome.ok and outcome.report_outcome == "written"
    assert started == []


def test_an_answer_that_cannot_be_read_leaves_the_parts_to_the_report(
        database: store.Database, generated: Tenant, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    ahead = ReportAhead.start_if_large(database, generated, tmp_path / "reports")
    assert ahead is not None

    def unreadable() -> Any:
        raise pickle.UnpicklingError("truncated answer")

    try:
        monkeypatch.setattr(ahead._answers, "recv", unreadable)
        with caplog.at_level(logging.WARNING, logger="syncd.report_ahead"):
            assert ahead.kpis() is None
    finally:
        ahead.close()
    assert "could not be read" in caplog.text
