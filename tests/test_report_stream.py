"""The streamed report (syncd.report_stream) writes the bytes ``write_report(build_report())``
writes: on the demo client and on a generated tenant, live and --as-of, in the tenant's
language and another one; on SQLite and PostgreSQL (the order comes from SQL there)."""

from __future__ import annotations

import io
import json
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from support import REPO

from syncd import history, report_stream, store
from syncd.config import ReplicaConfig, Tenant, load_settings, load_tenant
from syncd.daemon import Runner
from syncd.plugins import make_plugin_manager
from syncd.report import build_report, write_report
from syncd.report_stream import ReportRows, dump, materialise, report_parts, snapshot_figures
from syncd.report_stream import write_report as write_streamed
from syncd.sync import PassOptions, run_pass

sys.path.insert(0, str(REPO / "bench"))
import bench_incremental as bench


def reference_bytes(db: store.Database, tenant: Tenant, tmp: Path, **kwargs: object) -> bytes:
    """What the dict report writes (the behaviour the streamed writer keeps)."""
    report = build_report(db, tenant, **kwargs)  # type: ignore[arg-type]
    return write_report(report, tmp / "dict").read_bytes()


def streamed_bytes(db: store.Database, tenant: Tenant, tmp: Path, **kwargs: object) -> bytes:
    parts, _ = report_parts(db, tenant, **kwargs)  # type: ignore[arg-type]
    return write_streamed(parts, tmp / "streamed").read_bytes()


def assert_same_report(db: store.Database, tenant: Tenant, tmp: Path, **kwargs: object) -> None:
    expected = reference_bytes(db, tenant, tmp, **kwargs)
    got = streamed_bytes(db, tenant, tmp, **kwargs)
    if got != expected:  # show where they differ, not two 1 MB blobs
        a, b = json.loads(expected), json.loads(got)
        assert b.keys() == a.keys()
        for key in a:
            assert b[key] == a[key], key
    assert got == expected


@pytest.fixture
def generated(database: store.Database) -> Tenant:
    """bench_incremental's generated account (400 deals), after its first pass."""
    tenant = bench.make_tenant(bench.Account(400))
    run_pass(database, make_plugin_manager(load_entrypoints=False), tenant,
             PassOptions(clock=lambda: bench.NOW, full=True))
    return tenant


def test_generated_tenant_live_and_as_of_in_both_languages(database: store.Database,
                                                           generated: Tenant,
                                                           tmp_path: Path) -> None:
    clock = bench.NOW + timedelta(minutes=5)
    parts, _ = report_parts(database, generated, clock=clock)
    assert len(parts["violations"]) > 300  # enough rows to cross rules, deals, chunks
    rules = {v["rule"] for v in parts["violations"]}
    assert len(rules) > 3
    assert {v["deal_id"] is None for v in parts["violations"]} <= {True, False}
    for language in ("ru", "en"):
        assert_same_report(database, generated, tmp_path, clock=clock, language=language)
        assert_same_report(database, generated, tmp_path, clock=clock, language=language,
                           as_of=bench.NOW - timedelta(days=40))


def test_the_rows_are_read_in_chunks_not_held(database: store.Database, generated: Tenant,
                                              monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    """A chunk smaller than the rows: the same bytes (the order spans chunks and company
    batches), and the rows are a ReportRows (read when iterated, counted without it)."""
    from syncd import report_stream
    from syncd.store import report_reads

    monkeypatch.setattr(report_reads, "REPORT_CHUNK", 7)
    monkeypatch.setattr(report_stream, "COMPANY_BATCH", 3)
    clock = bench.NOW + timedelta(minutes=5)
    parts, stats = report_parts(database, generated, clock=clock)
    assert isinstance(parts["violations"], ReportRows)
    assert isinstance(parts["client_karma"], ReportRows)
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, generated.key, generated.config.plugin)
        assert len(parts["violations"]) == store.counts(session, tenant_id)["violations"]
    buffer = io.StringIO()
    dump(parts, buffer)
    assert buffer.getvalue().encode("utf-8") == reference_bytes(database, generated, tmp_path,
                                                                clock=clock)
    # the day's snapshot from the parts equals the one from the whole report
    assert snapshot_figures(parts, stats) == history.figures(
        build_report(database, generated, clock=clock))
    assert materialise(report_parts(database, generated, clock=clock)[0]) == \
        build_report(database, generated, clock=clock)


def test_pending_stage_history_and_deleted_deals(database: store.Database, generated: Tenant,
                                                 tmp_path: Path) -> None:
    """Deals still owing their stage history (``details.history: "pending"``) and a
    violation whose deal is deleted (no title, no owner) come out the same."""
    from sqlalchemy import update

    from syncd.store.models import DealRow, HistoryBacklogRow, ViolationRow

    with database.session() as session:
        tenant_id = store.ensure_tenant(session, generated.key, generated.config.plugin)
        derived = [row for row in store.open_violations(session, tenant_id)
                   if (row.details or {}).get("history") == "derived"]
        assert derived, "the generated account has deals without stage history"
        for deal_id in sorted({row.deal_external_id for row in derived})[:5]:
            session.add(HistoryBacklogRow(tenant_id=tenant_id, deal_external_id=deal_id,
                                          queued_at=bench.NOW, done_at=None))
        session.add(HistoryBacklogRow(tenant_id=tenant_id, deal_external_id="D1",
                                      queued_at=bench.NOW, done_at=bench.NOW))
        gone = store.open_violations(session, tenant_id)[0].deal_external_id
        session.execute(update(DealRow).where(DealRow.tenant_id == tenant_id,
                                              DealRow.external_id == gone).values(deleted=True))
        # NULL and "" sort alike (Python's ``or ""``), ties by row id; code-point order
        # ("Z" < "a" < "é"), whatever the database's collation
        session.execute(update(ViolationRow).where(
            ViolationRow.tenant_id == tenant_id,
            ViolationRow.id.in_([r.id for r in derived[:3]])).values(stage_key=""))
        odd = [("x1", "é", "zz"), ("x2", "a", None), ("x3", "Z", ""), ("x4", None, "b"),
               ("x5", "", None), ("x6", "a", ""), ("x7", None, None), ("x8", "a", "B"),
               ("x9", "", "")]
        for key, deal_id, stage in odd:
            session.add(ViolationRow(
                tenant_id=tenant_id, key=key, rule="custom_odd", deal_external_id=deal_id,
                stage_key=stage, action_key=None, crm_stage=None, severity="warning",
                explanation="odd", details={}, opened_at=bench.NOW, last_seen_at=bench.NOW))
    clock = bench.NOW + timedelta(minutes=5)
    report = build_report(database, generated, clock=clock)
    assert any((v["details"] or {}).get("history") == "pending" for v in report["violations"])
    assert any(v["deal_id"] == gone and v["deal_title"] is None for v in report["violations"])
    assert report["stage_history"]["pending"] == 5
    for language in ("en", "ru"):
        assert_same_report(database, generated, tmp_path, clock=clock, language=language)


def test_an_empty_tenant(database: store.Database, tmp_path: Path) -> None:
    tenant = bench.make_tenant(bench.Account(0))
    assert_same_report(database, tenant, tmp_path, clock=datetime(2026, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_demo_client_live_and_as_of(database: store.Database, tmp_path: Path) -> None:
    from syncd_fakes.demo import demo_account

    root = tmp_path / "config"
    shutil.copytree(REPO / "config" / "demo", root / "demo")
    shutil.copytree(REPO / "config" / "salesbooks", root / "salesbooks")
    settings = load_settings(root / "demo" / "syncd.yaml")
    plugins = make_plugin_manager()
    served = demo_account("pipedrive")
    assert served is not None
    with served as (connection, _server):
        tenant = load_tenant(settings, "northwind", plugins.connectors,
                             connection_overrides=connection)
        run_pass(database, plugins, tenant, PassOptions())
    report = build_report(database, tenant)
    assert report["violations"] and report["client_karma"]
    now = datetime.now(UTC)
    for language in ("en", "ru"):
        assert_same_report(database, tenant, tmp_path, clock=now, language=language)
        assert_same_report(database, tenant, tmp_path, clock=now, language=language,
                           as_of=now - timedelta(days=20))


# -- a pass that changed nothing keeps the report file ------------------------------------
def _runner(database: store.Database, reports: Path, at: list[datetime]) -> Runner:
    settings = SimpleNamespace(reports_dir=reports,
                               daemon=SimpleNamespace(replica=ReplicaConfig()))
    return Runner(settings, make_plugin_manager(load_entrypoints=False),  # type: ignore[arg-type]
                  database, options_factory=lambda: PassOptions(clock=lambda: at[0]))


def _daemon_report(database: store.Database, tmp_path: Path, tenant: Tenant,
                   at: list[datetime]) -> tuple[Runner, Path, bytes]:
    """A runner as ``syncd run`` has it (report cadence on), after a first pass that
    wrote the report: the runner, the report's path and its bytes."""
    runner = _runner(database, tmp_path / "reports", at)
    runner.report_cadence = True
    first = runner.run_one_off(tenant)
    assert first.ok and first.report_outcome == "written"
    path = Path(first.report or "")
    return runner, path, path.read_bytes()


def test_a_pass_that_changed_nothing_keeps_the_report(database: store.Database,
                                                      tmp_path: Path) -> None:
    tenant = bench.make_tenant(bench.Account(300))
    crm = tenant.connector_class
    at = [bench.NOW]
    runner = _runner(database, tmp_path / "reports", at)
    first = runner.run_one_off(tenant)
    assert first.ok and first.report_outcome == "written"
    path = Path(first.report or "")
    written = path.read_bytes()
    stamp = path.stat().st_mtime_ns

    at[0] = bench.NOW + timedelta(minutes=15)  # the CRM has nothing new
    second = runner.run_one_off(tenant)
    assert second.ok and second.report_outcome == "unchanged", second.summary
    assert second.report == str(path)
    assert path.read_bytes() == written and path.stat().st_mtime_ns == stamp
    at[0] = bench.NOW + timedelta(minutes=30)  # and again: the state moved on with it
    assert runner.run_one_off(tenant).report_outcome == "unchanged"
    assert path.stat().st_mtime_ns == stamp

    crm.changes, crm.version = [5], 1  # type: ignore[attr-defined]
    at[0] = bench.NOW + timedelta(minutes=45)
    try:
        third = runner.run_one_off(tenant)
    finally:
        crm.changes, crm.version = [], 0  # type: ignore[attr-defined]
    assert third.ok and third.report_outcome == "written"
    assert third.summary is not None and third.summary.changed.get("deals") == 1
    report = json.loads(path.read_text("utf-8"))
    fresh = build_report(database, tenant)
    assert report["last_sync"] == fresh["last_sync"]
    assert [v for v in report["violations"] if v["deal_id"] == "D5"] == \
        [v for v in fresh["violations"] if v["deal_id"] == "D5"]
    assert report["violations"] == fresh["violations"]

    stamp = path.stat().st_mtime_ns
    at[0] = bench.NOW + timedelta(hours=13)  # past local midnight (Moscow): a new day
    assert runner.run_one_off(tenant).report_outcome == "written"
    assert path.stat().st_mtime_ns != stamp


def test_a_new_local_day_waits_for_the_cadence_at_most_an_hour(database: store.Database,
                                                               tmp_path: Path) -> None:
    """The tenants that share a midnight do not all rebuild at once: a new local day is
    a change like the others under ``report_minutes``, but waits an hour at most after
    the last build (so each day's snapshot is taken in its first hour). ``syncd sync``
    (no cadence) rebuilds at once."""
    tenant = bench.make_tenant(bench.Account(200))
    tenant.report_minutes = 240
    midnight = bench.NOW + timedelta(hours=10)  # 00:00 in Moscow (bench.NOW is 14:00)
    at = [midnight - timedelta(minutes=20)]
    runner, path, built = _daemon_report(database, tmp_path, tenant, at)

    at[0] = midnight + timedelta(minutes=10)  # a new day, 30 minutes after the build
    assert runner.run_one_off(tenant).report_outcome == "deferred"
    assert path.read_bytes() == built
    due = report_stream.report_due_at(path.parent, tenant, tenant.report_minutes)
    assert due == midnight - timedelta(minutes=20) + report_stream.NEW_DAY_WAIT

    at[0] = midnight + timedelta(minutes=41)  # an hour after the build: rebuilt
    assert runner.run_one_off(tenant).report_outcome == "written"
    assert path.read_bytes() != built

    at[0] = midnight + timedelta(hours=24, minutes=5)  # the next day, by `syncd sync`
    runner.report_cadence = False
    assert runner.run_one_off(tenant).report_outcome == "written"


def test_a_changed_tenant_file_or_a_touched_report_rebuilds(database: store.Database,
                                                            tmp_path: Path) -> None:
    tenant = bench.make_tenant(bench.Account(100))
    at = [bench.NOW]
    runner = _runner(database, tmp_path / "reports", at)
    path = Path(runner.run_one_off(tenant).report or "")
    at[0] = bench.NOW + timedelta(minutes=15)
    assert runner.run_one_off(tenant).report_outcome == "unchanged"
    other = bench.make_tenant(bench.Account(100))
    other.config.currency = "USD"
    at[0] = bench.NOW + timedelta(minutes=30)
    assert runner.run_one_off(other).report_outcome == "written"
    assert json.loads(path.read_text("utf-8"))["currency"] == "USD"
    path.write_text(path.read_text("utf-8") + " ", "utf-8")  # someone edited the file
    at[0] = bench.NOW + timedelta(minutes=45)
    assert runner.run_one_off(other).report_outcome == "written"
    at[0] = bench.NOW + timedelta(minutes=60)
    assert runner.run_one_off(other).report_outcome == "unchanged"
    path.unlink()
    at[0] = bench.NOW + timedelta(minutes=75)
    assert runner.run_one_off(other).report_outcome == "written"
    assert path.exists()


def test_the_daemon_rewrites_a_changed_report_at_most_every_report_minutes(
        database: store.Database, tmp_path: Path) -> None:
    """``syncd run`` (``report_cadence``): passes that change data keep a report built
    less than ``report_minutes`` before (``deferred``); the first pass after that rebuilds
    it with every change since; a changed tenant file or a one-off pass (``syncd sync``)
    rebuild at once (a new day: the test above)."""
    tenant = bench.make_tenant(bench.Account(300))
    tenant.report_minutes = 60
    crm = tenant.connector_class
    at = [bench.NOW]
    runner, path, built = _daemon_report(database, tmp_path, tenant, at)

    def changed_pass(minutes: int, deal: int, version: int) -> Any:
        crm.changes, crm.version = [deal], version  # type: ignore[attr-defined]
        at[0] = bench.NOW + timedelta(minutes=minutes)
        try:
            return runner.run_one_off(tenant)
        finally:
            crm.changes, crm.version = [], 0  # type: ignore[attr-defined]

    second = changed_pass(15, 5, 1)
    assert second.ok and second.summary is not None
    assert second.summary.changed.get("deals") == 1
    assert second.report_outcome == "deferred" and path.read_bytes() == built
    at[0] = bench.NOW + timedelta(minutes=30)  # nothing new: the change still waits
    assert runner.run_one_off(tenant).report_outcome == "deferred"
    assert path.read_bytes() == built

    at[0] = bench.NOW + timedelta(minutes=61)  # past the cadence: rebuilt, with D5's change
    assert runner.run_one_off(tenant).report_outcome == "written"
    report = json.loads(path.read_text("utf-8"))
    assert report["violations"] == build_report(database, tenant)["violations"]
    assert report["as_of"] != json.loads(built)["as_of"]
    at[0] = bench.NOW + timedelta(minutes=75)
    assert runner.run_one_off(tenant).report_outcome == "unchanged"

    assert changed_pass(90, 7, 2).report_outcome == "deferred"
    runner.report_cadence = False  # `syncd sync`: the pending change is written now
    at[0] = bench.NOW + timedelta(minutes=95)
    assert runner.run_one_off(tenant).report_outcome == "written"
    runner.report_cadence = True

    assert changed_pass(100, 9, 3).report_outcome == "deferred"
    at[0] = bench.NOW + timedelta(hours=13)  # past local midnight and the cadence
    assert runner.run_one_off(tenant).report_outcome == "written"

    assert changed_pass(13 * 60 + 15, 11, 4).report_outcome == "deferred"
    tenant.config.currency = "USD"  # the tenant file changed: at once
    at[0] = bench.NOW + timedelta(hours=13, minutes=20)
    assert runner.run_one_off(tenant).report_outcome == "written"
    assert json.loads(path.read_text("utf-8"))["currency"] == "USD"
