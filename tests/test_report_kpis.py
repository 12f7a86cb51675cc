"""A one-off pass takes a large tenant's report KPIs in a process of their own while it
audits (``syncd.report_kpis``, issue 13 item 7); the report is the one it would have
written by itself, byte for byte, and a process that fails leaves the KPIs to the report."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support import REPO
from test_report_stream import _runner
from test_report_stream import generated as generated  # noqa: PLC0414 (a fixture)

from syncd import report_kpis, store
from syncd.config import Tenant
from syncd.report import build_report
from syncd.report_kpis import KpisAhead
from syncd.report_stream import report_parts
from syncd.report_stream import write_report as write_streamed

sys.path.insert(0, str(REPO / "bench"))
import bench_incremental as bench


def report_bytes(db: store.Database, tenant: Tenant, directory: Path, **kwargs: Any) -> bytes:
    parts, _ = report_parts(db, tenant, **kwargs)
    return write_streamed(parts, directory).read_bytes()


def test_kpis_taken_in_a_process_make_the_same_report(database: store.Database,
                                                      generated: Tenant, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_kpis, "MIN_DEALS", 100)
    ahead = KpisAhead.start_if_large(database, generated)
    assert ahead is not None
    taken = ahead.result()
    assert taken is not None
    kpis, matrix = taken
    assert kpis["funnel"] and matrix  # something to compare
    own = report_bytes(database, generated, tmp_path / "own", clock=ahead.now)
    given = report_bytes(database, generated, tmp_path / "given", clock=ahead.now,
                         kpis_taken=taken)
    assert given == own
    assert json.loads(own)["kpis"] == kpis


def test_a_small_tenant_computes_its_kpis_in_the_report(database: store.Database,
                                                        generated: Tenant) -> None:
    assert report_kpis.MIN_DEALS > 400
    assert KpisAhead.start_if_large(database, generated) is None


def test_a_process_that_fails_leaves_the_kpis_to_the_report(
        generated: Tenant, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unmigrated = store.Database(tmp_path / "syncd.db")  # a database without syncd's tables
    ahead = KpisAhead(unmigrated, generated)
    with caplog.at_level(logging.WARNING, logger="syncd.report_kpis"):
        assert ahead.result() is None
    assert "the report computes them" in caplog.text
    assert "no such table" in caplog.text


def test_a_one_off_pass_writes_its_report_with_the_kpis_taken_beside_the_audit(
        database: store.Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_kpis, "MIN_DEALS", 100)
    results: list[Any] = []
    result = KpisAhead.result

    def watched(self: KpisAhead) -> Any:
        results.append(result(self))
        return results[-1]

    monkeypatch.setattr(KpisAhead, "result", watched)
    tenant = bench.make_tenant(bench.Account(400), writeback=False)
    runner = _runner(database, tmp_path / "reports", [bench.NOW])
    outcome = runner.run_one_off(tenant)
    assert outcome.ok and outcome.report_outcome == "written"
    assert len(results) == 1 and results[0] is not None  # taken, and used
    report = json.loads(Path(outcome.report or "").read_text("utf-8"))
    assert report["kpis"] == results[0][0]
    assert report["contact_matrix"] == results[0][1]
    fresh = build_report(database, tenant, clock=datetime.fromisoformat(report["generated_at"]))
    assert report["kpis"] == fresh["kpis"]
    assert report["violations"] == fresh["violations"]


def test_kpis_taken_before_a_write_back_are_not_used(database: store.Database,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Write-back stores what it wrote after the KPIs were taken: the report takes its own."""
    monkeypatch.setattr(report_kpis, "MIN_DEALS", 100)
    started: list[str] = []
    results: list[Any] = []
    init = KpisAhead.__init__

    def watched_init(self: KpisAhead, db: store.Database, tenant: Tenant) -> None:
        started.append(tenant.key)
        init(self, db, tenant)

    monkeypatch.setattr(KpisAhead, "__init__", watched_init)
    def asked(self: KpisAhead) -> None:
        results.append(self)

    monkeypatch.setattr(KpisAhead, "result", asked)
    tenant = bench.make_tenant(bench.Account(400), writeback=True)
    runner = _runner(database, tmp_path / "reports", [bench.NOW])
    outcome = runner.run_one_off(tenant)
    assert outcome.ok and outcome.summary is not None and any(outcome.summary.writes.values())
    assert started == [tenant.key] and results == []
    report = json.loads(Path(outcome.report or "").read_text("utf-8"))
    fresh = build_report(database, tenant, clock=datetime.fromisoformat(report["generated_at"]))
    assert report["kpis"] == fresh["kpis"]


def test_the_daemon_computes_kpis_in_the_report(database: store.Database, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``syncd run`` keeps its cores for its workers: no process beside the audit."""
    monkeypatch.setattr(report_kpis, "MIN_DEALS", 100)
    started: list[Tenant] = []
    monkeypatch.setattr(KpisAhead, "__init__",
                        lambda self, db, tenant: started.append(tenant))
    tenant = bench.make_tenant(bench.Account(400))
    runner = _runner(database, tmp_path / "reports", [bench.NOW])
    with database.session() as session:
        from syncd.store import leases
        leases.ensure_leases(session, [tenant.key])
        claim = leases.claim_one(session, tenant.key, "test", ttl=timedelta(minutes=5))
    assert claim is not None
    from syncd.lease import Lease
    outcome = runner.run_under_lease(tenant, Lease(tenant.key, claim.fence, "test"))
    assert outcome.ok and outcome.report_outcome == "written"
    assert started == []
