"""The store against real SQLite and PostgreSQL databases (see conftest.py)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from syncd.audit.facts import Finding
from syncd.records import (
    Activity,
    ActivityType,
    Company,
    Contact,
    Deal,
    FieldDef,
    Page,
    Pipeline,
    Stage,
    StageChange,
    User,
)
from syncd.scoring.karma import KarmaLine
from syncd.store import (
    ActivityRow,
    ActivityTypeRow,
    CompanyRow,
    ContactRow,
    Database,
    DealRow,
    FieldDefRow,
    StageChangeRow,
    SyncRunRow,
    TenantRow,
    UserRow,
    ViolationRow,
    WritebackRow,
    activities_for_companies,
    activities_for_deals,
    apply_findings,
    companies,
    counts,
    deal_owners,
    ensure_tenant,
    finish_run,
    get_cursor,
    get_ledger,
    has_violation_history,
    interrupt_stale_runs,
    iter_deal_chunks,
    karma_line_rows,
    karma_totals,
    last_runs,
    mark_attempt,
    mark_done,
    mark_failed,
    mark_fields_done,
    mark_pending,
    mark_pending_many,
    normalize_url,
    open_violations,
    pending_rows,
    redacted_url,
    replace_karma_lines,
    reset_cursors,
    set_cursor,
    stage_changes_for_deals,
    stages_by_id,
    start_run,
    store_page,
    to_text,
    upsert_page,
    upsert_records,
    violation_history,
)

T0 = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
MSK = timezone(timedelta(hours=3))


def deal(i: int | str, **changes: object) -> Deal:
    base = Deal(
        external_id=str(i), title=f"Deal {i}", status="open", pipeline_id="1", stage_id="10",
        owner_id="u1", company_id="c1", contact_ids=["p1"], value=100.0, currency="EUR",
        created_at=T0, updated_at=T0, fields={"Lead source": "web"},
        raw={"id": i, "title": f"Deal {i}", "custom": {"a": [1, 2]}},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def tenant(database: Database) -> int:
    with database.session() as session:
        return ensure_tenant(session, "acme", "pipedrive")


# -- database and URLs --------------------------------------------------------------------
def test_urls_are_normalized_and_redacted() -> None:
    assert normalize_url("postgresql://u:pw@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("/tmp/x/syncd.db").render_as_string() == "sqlite:////tmp/x/syncd.db"
    shown = redacted_url("postgresql://syncd:s3cr3t@db.example:5432/syncd?password=s3cr3t")
    assert "s3cr3t" not in shown
    assert shown.startswith("postgresql+psycopg://syncd:***@db.example:5432/syncd")
    db = Database("postgresql://syncd:s3cr3t@127.0.0.1:1/none")
    assert "s3cr3t" not in repr(db) and "s3cr3t" not in db.redacted_url()
    db.dispose()
    with pytest.raises(ValueError, match="unsupported"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(ValueError, match="empty"):
        normalize_url(" ")


def test_sqlite_pragmas_and_parent_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "syncd.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert path.parent.is_dir()
    finally:
        db.dispose()


def test_session_commits_on_success_and_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        ensure_tenant(session, "gone", "x")
        raise RuntimeError("boom")
    with database.session() as session:
        assert session.scalar(select(TenantRow).where(TenantRow.key == "gone")) is None
        ensure_tenant(session, "kept", "x")
    with database.session() as session:
        assert session.scalar(select(TenantRow.key).where(TenantRow.key == "kept")) == "kept"


# -- upsert ------------------------------------------------------------------------------
def test_upsert_counts_inserted_updated_unchanged(database: Database, tenant: int) -> None:
    page = Page("deals", [deal(1), deal(2), deal(3)])
    with database.session() as session:
        stats = upsert_page(session, tenant, page)
    assert (stats.inserted, stats.updated, stats.unchanged) == (3, 0, 0)
    assert stats.changed_ids == {"deal": {"1", "2", "3"}}

    with database.session() as session:
        stats = upsert_page(session, tenant, page)
    assert (stats.inserted, stats.updated, stats.unchanged) == (0, 0, 3)
    assert stats.changed_ids == {}

    changed = Page("deals", [deal(1, title="Renamed"), deal(2, raw={"id": 2, "new": True}),
                             deal(3), deal(4)])
    with database.session() as session:
        stats = upsert_page(session, tenant, changed)
    assert (stats.inserted, stats.updated, stats.unchanged) == (1, 2, 1)
    assert stats.changed_ids == {"deal": {"1", "2", "4"}}
    with database.session() as session:
        rows = {r.external_id: r for r in session.scalars(select(DealRow))}
    assert rows["1"].title == "Renamed"
    assert rows["2"].raw == {"id": 2, "new": True}
    assert len(rows) == 4


def test_unchanged_overlap_writes_zero_rows(database: Database, tenant: int) -> None:
    """Re-ingesting an overlap window must not touch a single row (checked in SQL)."""
    pages = [Page("deals", [deal(i) for i in range(start, start + 50)])
             for start in range(0, 200, 50)]
    with database.session() as session:
        for page in pages:
            upsert_page(session, tenant, page)

    def snapshot(session: Session) -> dict[str, object]:
        if database.dialect == "postgresql":  # xmin changes with every row version
            query = "SELECT external_id, xmin::text AS v FROM deals"
        else:
            query = "SELECT external_id, synced_at AS v FROM deals"
        return dict(session.execute(text(query)).all())

    with database.session() as session:
        before = snapshot(session)
        if database.dialect == "sqlite":
            changes_before = session.execute(text("SELECT total_changes()")).scalar()
        later = datetime.now(UTC) + timedelta(hours=1)
        totals = [upsert_page(session, tenant, page, now=later) for page in pages]
        if database.dialect == "sqlite":
            changes_after = session.execute(text("SELECT total_changes()")).scalar()
            assert changes_after == changes_before
        assert snapshot(session) == before
    assert sum(s.updated + s.inserted for s in totals) == 0
    assert sum(s.unchanged for s in totals) == 200


def test_every_record_type_is_stored(database: Database, tenant: int) -> None:
    pages = [
        Page("users", [User("u1", "Ann", email="ann@example.com", raw={"id": "u1"})]),
        Page("pipelines", [Pipeline("1", "Sales")]),
        Page("stages", [Stage("10", "1", "Qualified", order=1)]),
        Page("fields", [FieldDef("deal", "abc123", "Lead source", "enum", {"1": "Web"}),
                        FieldDef("company", "abc123", "Segment")]),
        Page("activity_types", [ActivityType("call", "Call")]),
        Page("companies", [Company("c1", "Acme", owner_id="u1", fields={"Segment": "Banks"})]),
        Page("contacts", [Contact("p1", "Bob", company_id="c1")]),
        Page("deals", [deal(1)]),
        Page("activities", [Activity("a1", "call", deal_id="1", company_id="c1",
                                     due_date=date(2025, 1, 3), note="hi")]),
        Page("stage_history", [StageChange("h1", "1", None, "10", T0)]),
    ]
    with database.session() as session:
        kinds = {k for page in pages for k in upsert_page(session, tenant, page).changed_ids}
    assert kinds == {"user", "pipeline", "stage", "field", "activity_type", "company",
                     "contact", "deal", "activity", "stage_change"}
    with database.session() as session:
        assert session.scalar(select(UserRow.email)) == "ann@example.com"
        field_ids = set(session.scalars(select(FieldDefRow.external_id)))
        assert field_ids == {"deal:abc123", "company:abc123"}
        options = session.scalar(select(FieldDefRow.options).where(
            FieldDefRow.entity == "deal"))
        assert options == {"1": "Web"}
        assert session.scalar(select(ActivityTypeRow)).key == "call"
        assert session.scalar(select(ContactRow)).company_id == "c1"
        activity = session.scalar(select(ActivityRow))
        assert (activity.deal_id, activity.due_date, activity.note) == ("1", date(2025, 1, 3),
                                                                       "hi")
        change = session.scalar(select(StageChangeRow))
        assert (change.deal_id, change.from_stage_id, change.to_stage_id) == ("1", None, "10")
        row = session.scalar(select(DealRow))
        # Record-named synonyms read like the record (the tenant mapper relies on it).
        assert (row.stage_id, row.pipeline_id, row.owner_id, row.company_id) == (
            "10", "1", "u1", "c1")
        assert row.contact_ids == ["p1"] and row.fields == {"Lead source": "web"}
        assert row.raw == {"id": 1, "title": "Deal 1", "custom": {"a": [1, 2]}}
        assert len(row.content_hash or "") == 40
        assert counts(session, tenant)["stage_changes"] == 1


def test_datetimes_are_aware_utc_on_the_way_out(database: Database, tenant: int) -> None:
    moscow = datetime(2025, 6, 1, 15, 30, 45, 123456, tzinfo=MSK)
    with database.session() as session:
        upsert_page(session, tenant, Page("deals", [
            deal(1, created_at=moscow, won_at=datetime(2025, 6, 2, 0, 0)),  # naive: UTC
            deal(2, created_at=moscow + timedelta(days=1)),
        ]))
    with database.session() as session:
        row = session.scalar(select(DealRow).where(DealRow.external_id == "1"))
        assert row.created_at == moscow
        assert row.created_at.tzinfo is not None
        assert row.created_at.utcoffset() == timedelta(0)
        assert row.created_at.hour == 12
        assert row.won_at == datetime(2025, 6, 2, tzinfo=UTC)
        assert row.synced_at.tzinfo is not None
        # Comparisons in SQL work across offsets (values are stored in UTC).
        later = session.scalars(select(DealRow.external_id).where(
            DealRow.created_at > datetime(2025, 6, 1, 13, 0, tzinfo=UTC))).all()
        assert later == ["2"]
        exact = session.scalars(select(DealRow.external_id).where(
            DealRow.created_at == moscow.astimezone(UTC))).all()
        assert exact == ["1"]


def test_deleted_ids_and_deleted_records(database: Database, tenant: int) -> None:
    with database.session() as session:
        upsert_page(session, tenant, Page("deals", [deal(1), deal(2), deal(3)]))
        stats = upsert_page(session, tenant, Page("deals", [deal(4, status="deleted")],
                                                  deleted_ids=["2", "404"]))
    assert stats.deleted == 1 and stats.inserted == 1
    with database.session() as session:
        live = [d.external_id for chunk in iter_deal_chunks(session, tenant) for d in chunk]
        assert live == ["1", "3"]
        assert counts(session, tenant)["deals"] == 2
        # Deleting again changes nothing; the same content coming back restores the row.
        again = upsert_page(session, tenant, Page("deals", [], deleted_ids=["2"]))
        assert again.deleted == 0
        back = upsert_page(session, tenant, Page("deals", [deal(2)]))
        assert back.updated == 1
        assert session.scalar(select(DealRow.deleted).where(DealRow.external_id == "2")) is False
    with database.session() as session, pytest.raises(ValueError, match="unknown stream"):
        upsert_page(session, tenant, Page("mystery", [], deleted_ids=["1"]))


def test_duplicates_in_a_page_and_tenant_isolation(database: Database, tenant: int) -> None:
    with database.session() as session:
        other = ensure_tenant(session, "globex", "pipedrive")
        stats = upsert_page(session, tenant, Page("deals", [deal(1), deal(1, title="Last")]))
        upsert_page(session, other, Page("deals", [deal(1, title="Other tenant")]))
    assert stats.inserted == 1
    with database.session() as session:
        titles = dict(session.execute(select(DealRow.tenant_id, DealRow.title)).all())
    assert titles == {tenant: "Last", other: "Other tenant"}


def test_upsert_records_big_batches_and_mixed_types(database: Database, tenant: int) -> None:
    records = [deal(i) for i in range(2500)] + [Company(f"c{i}", "Co") for i in range(10)]
    with database.session() as session:
        stats = upsert_records(session, tenant, records)
        assert stats.inserted == 2510
        one = upsert_records(session, tenant, [deal(7, value=1.5)])
        assert (one.updated, one.changed_ids) == (1, {"deal": {"7"}})
        with pytest.raises(TypeError):
            upsert_records(session, tenant, [object()])  # type: ignore[list-item]
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(DealRow)) == 2500


# -- cursors -----------------------------------------------------------------------------
def test_cursor_never_moves_backwards(database: Database, tenant: int) -> None:
    with database.session() as session:
        assert get_cursor(session, tenant, "deals") is None
        set_cursor(session, tenant, "deals", "2025-01-02T00:00:00+03:00")
        # 2025-01-01T22:00Z is 1 h *after* the stored value: it moves forward.
        assert set_cursor(session, tenant, "deals", "2025-01-01T22:00:00Z") == (
            "2025-01-01T22:00:00Z")
        assert set_cursor(session, tenant, "deals", "2025-01-01 20:00:00") == (
            "2025-01-01T22:00:00Z")
        set_cursor(session, tenant, "ids", "200")
        set_cursor(session, tenant, "ids", "99")
        set_cursor(session, tenant, "token", "zzz")
        set_cursor(session, tenant, "token", "aaa")  # opaque: no order, replaced
    with database.session() as session:
        assert get_cursor(session, tenant, "deals") == "2025-01-01T22:00:00Z"
        assert get_cursor(session, tenant, "ids") == "200"
        assert get_cursor(session, tenant, "token") == "aaa"
        assert reset_cursors(session, tenant, ["ids"]) == 1
        assert get_cursor(session, tenant, "ids") is None
        assert reset_cursors(session, tenant) == 2


def test_cursor_commits_with_its_page(database: Database, tenant: int) -> None:
    page = Page("deals", [deal(1)], cursor="2025-01-05T00:00:00+00:00")
    with pytest.raises(RuntimeError), database.session() as session:
        store_page(session, tenant, page)
        raise RuntimeError("crash before commit")
    with database.session() as session:
        assert get_cursor(session, tenant, "deals") is None
        assert session.scalar(select(func.count()).select_from(DealRow)) == 0
    with database.session() as session:
        store_page(session, tenant, page)
    with database.session() as session:
        assert get_cursor(session, tenant, "deals") == "2025-01-05T00:00:00+00:00"
        assert session.scalar(select(func.count()).select_from(DealRow)) == 1


# -- tenants and runs --------------------------------------------------------------------
def test_tenants_and_runs(database: Database) -> None:
    with database.session() as session:
        first = ensure_tenant(session, "acme", "pipedrive")
        assert ensure_tenant(session, "acme", "amocrm") == first
        assert session.get(TenantRow, first).plugin == "amocrm"
        run = start_run(session, first, full=True, as_of=T0, now=T0)
        stale = start_run(session, first, now=T0 + timedelta(minutes=1))
    with database.session() as session:
        finish_run(session, run, "failed", counts={"deals": 3}, error="token ***",
                   now=T0 + timedelta(minutes=5))
        assert interrupt_stale_runs(session, first) == 1
    with database.session() as session:
        runs = last_runs(session, first)
        assert [r.id for r in runs] == [stale, run]
        assert runs[0].status == "interrupted"
        assert (runs[1].status, runs[1].full, runs[1].counts) == ("failed", True, {"deals": 3})
        assert runs[1].as_of == T0
        tenant_row = session.get(TenantRow, first)
        assert (tenant_row.last_status, tenant_row.last_error) == ("failed", "token ***")
        assert tenant_row.last_sync_at == T0 + timedelta(minutes=5)
        with pytest.raises(ValueError):
            finish_run(session, run, "running")  # type: ignore[arg-type]


# -- violation lifecycle -----------------------------------------------------------------
def finding(deal_id: str | None, rule: str = "stalled", **changes: object) -> Finding:
    base = Finding(rule=rule, deal_id=deal_id, severity="warning",
                   explanation=f"Deal {deal_id} is stalled", stage_key="briefing",
                   details={"since": "2025-01-01"})
    return replace(base, **changes)  # type: ignore[arg-type]


def test_violation_lifecycle(database: Database, tenant: int) -> None:
    t1, t2, t3 = T0, T0 + timedelta(days=1), T0 + timedelta(days=2)
    f1, f2, f3 = finding("1"), finding("2"), finding("3", rule="missing_action",
                                                     action_key="brief")
    with database.session() as session:
        run = start_run(session, tenant)
        assert not has_violation_history(session, tenant)
        result = apply_findings(session, tenant, [f1, f2], t1, run)
        assert {v.key for v in result.opened} == {f1.key, f2.key}
        assert all(v.id and v.opened_run_id == run for v in result.opened)
        assert (result.refreshed, result.resolved) == (0, 0)
    with database.session() as session:
        assert has_violation_history(session, tenant)
        changed_f1 = replace(f1, explanation="Still stalled", details={"days": 9})
        result = apply_findings(session, tenant, [changed_f1, f3, f3], t2, None)
        assert [v.key for v in result.opened] == [f3.key]
        assert (result.refreshed, result.resolved) == (1, 1)
    with database.session() as session:
        open_rows = {v.key: v for v in open_violations(session, tenant)}
        assert set(open_rows) == {f1.key, f3.key}
        v1 = open_rows[f1.key]
        assert (v1.opened_at, v1.last_seen_at) == (t1, t2)
        assert (v1.explanation, v1.details) == ("Still stalled", {"days": 9})
        assert [v.key for v in open_violations(session, tenant, deal_id="3")] == [f3.key]
        resolved = violation_history(session, tenant, f2.key)
        assert [(v.opened_at, v.resolved_at) for v in resolved] == [(t1, t2)]
    with database.session() as session:  # f2 comes back: a NEW row; f1 and f3 resolve
        result = apply_findings(session, tenant, [f2], t3, None)
        assert (len(result.opened), result.refreshed, result.resolved) == (1, 0, 2)
    with database.session() as session:
        history = violation_history(session, tenant, f2.key)
        assert [(v.opened_at, v.resolved_at) for v in history] == [(t1, t2), (t3, None)]
        assert [v.key for v in open_violations(session, tenant)] == [f2.key]


def test_unchanged_findings_only_refresh(database: Database, tenant: int) -> None:
    """Details with dates compare equal after their JSON round trip."""
    dated = finding("1", details={"since": date(2025, 1, 1), "at": T0})
    with database.session() as session:
        apply_findings(session, tenant, [dated], T0, None)
    with database.session() as session:
        row = open_violations(session, tenant)[0]
        assert row.details == {"since": "2025-01-01", "at": T0.isoformat()}
        result = apply_findings(session, tenant, [dated], T0 + timedelta(hours=1), None)
        assert (result.opened, result.refreshed, result.resolved) == ([], 1, 0)
        assert open_violations(session, tenant)[0].last_seen_at == T0 + timedelta(hours=1)


def test_scoped_resolution(database: Database, tenant: int) -> None:
    stage_row = finding(None, rule="unmapped_stage", crm_stage="Sales / Odd")
    with database.session() as session:
        apply_findings(session, tenant, [finding("1"), finding("2"), stage_row], T0, None)
        result = apply_findings(session, tenant, [], T0 + timedelta(hours=1), None,
                                scope_deal_ids={"1"})
        assert result.resolved == 1
        assert {v.deal_external_id for v in open_violations(session, tenant)} == {"2", None}


def test_one_open_row_per_key_is_enforced(database: Database, tenant: int) -> None:
    row = {"tenant_id": tenant, "key": "k", "rule": "r", "severity": "error",
           "explanation": "e", "details": {}, "opened_at": T0, "last_seen_at": T0}
    with database.session() as session:
        session.execute(insert(ViolationRow), [dict(row, resolved_at=T0)] * 2)  # resolved: ok
        session.execute(insert(ViolationRow), [row])
    with pytest.raises(IntegrityError), database.session() as session:
        session.execute(insert(ViolationRow), [row])


def test_many_findings(database: Database, tenant: int) -> None:
    findings = [finding(str(i)) for i in range(12_000)]
    with database.session() as session:
        assert len(apply_findings(session, tenant, findings, T0, None).opened) == 12_000
    with database.session() as session:
        later = T0 + timedelta(days=1)
        result = apply_findings(session, tenant, findings[2_000:], later, None)
        assert (len(result.opened), result.refreshed, result.resolved) == (0, 10_000, 2_000)
        seen = session.scalar(select(func.count()).select_from(ViolationRow).where(
            ViolationRow.last_seen_at == later))
        assert seen == 10_000


# -- karma ledger ------------------------------------------------------------------------

def test_karma_replace_and_recompute(database: Database, tenant: int) -> None:
    lines = [KarmaLine("company", "c1", "won_deal", 2, "deal", "1"),
             KarmaLine("company", "c1", "incident", 1, "company", "c1", "2025-01"),
             KarmaLine("company", "c2", "won_deal", 1, "deal", "2")]
    weights = {"won_deal": 10.0, "incident": -5.0}

    def weights_fn(line: KarmaLine) -> tuple[float, float]:
        return weights[line.criterion], weights[line.criterion] * line.quantity

    with database.session() as session:
        assert replace_karma_lines(session, tenant, "client", lines, weights_fn) == 3
        replace_karma_lines(session, tenant, "owner", [KarmaLine("user", "u1", "x", 1, "", "")],
                            lambda line: (1.0, 1.0))
    with database.session() as session:
        assert karma_totals(session, tenant, "client") == {"c1": 15.0, "c2": 10.0}
        weights["won_deal"] = 20.0
        replace_karma_lines(session, tenant, "client", lines[:2], weights_fn)
    with database.session() as session:
        assert karma_totals(session, tenant, "client") == {"c1": 35.0}
        rows = karma_line_rows(session, tenant, "client", subject_id="c1")
        assert [(r.criterion, r.weight, r.amount, r.period) for r in rows] == [
            ("won_deal", 20.0, 40.0, ""), ("incident", -5.0, -5.0, "2025-01")]
        assert karma_totals(session, tenant, "owner") == {"u1": 1.0}
        assert karma_totals(session, tenant, "client", subject_type="user") == {}
    with pytest.raises(ValueError, match="duplicate"), database.session() as session:
        replace_karma_lines(session, tenant, "client", [lines[0], lines[0]], weights_fn)
    with database.session() as session:  # the failed replace changed nothing
        assert karma_totals(session, tenant, "client") == {"c1": 35.0}


# -- write ledger ------------------------------------------------------------------------
def test_write_ledger_transitions(database: Database, tenant: int) -> None:
    key = ("company", "c1", "Karma")
    with database.session() as session:
        mark_pending(session, tenant, "field", *key, 72.0)
        ledger = get_ledger(session, tenant, "field")
        assert (ledger[key].status, ledger[key].desired_value, ledger[key].attempts) == (
            "pending", "72", 0)
        assert [r.external_id for r in pending_rows(session, tenant, "field")] == ["c1"]
        assert mark_attempt(session, tenant, "field", *key) == 1
        mark_done(session, tenant, "field", *key, 72.0)
        ledger = get_ledger(session, tenant, "field")  # same session: no stale row
        assert (ledger[key].status, ledger[key].written_value) == ("done", "72")
        assert pending_rows(session, tenant) == []
    with database.session() as session:
        mark_pending(session, tenant, "field", *key, 80.5)
        mark_failed(session, tenant, "field", *key, "HTTP 500")
        row = get_ledger(session, tenant, "field")[key]
        assert (row.status, row.desired_value, row.written_value, row.error) == (
            "failed", "80.5", "72", "HTTP 500")
        mark_pending(session, tenant, "field", *key, 80.5)
        assert get_ledger(session, tenant, "field")[key].error is None


def test_fields_done_in_bulk_are_what_one_by_one_records(database: Database,
                                                          tenant: int) -> None:
    """``mark_fields_done`` (a batch's outcomes in one statement) leaves each row as
    ``mark_done`` does: failed, pending, attempted and unknown rows alike."""
    def rows() -> list[tuple]:
        with database.session() as session:
            ledger = get_ledger(session, tenant, "field")
            return sorted((k, r.status, r.desired_value, r.written_value, r.error,
                           r.attempts, r.next_attempt_at, r.crm_id) for k, r in ledger.items())

    keys = [("company", "c1", "Karma"), ("deal", "d1", "Violations"),
            ("deal", "d2", "Violations"), ("deal", "d3", "Violations")]
    values: list[str | float] = [72.0, "A", "B", ""]
    outcomes = []
    for bulk in (False, True):
        with database.session() as session:
            session.execute(WritebackRow.__table__.delete())
            mark_pending(session, tenant, "field", *keys[0], 70.0)
            mark_failed(session, tenant, "field", *keys[0], "HTTP 500")
            mark_pending(session, tenant, "field", *keys[1], "A")
            mark_attempt(session, tenant, "field", *keys[1])
            mark_pending(session, tenant, "field", *keys[2], "B")
        with database.session() as session:
            if bulk:
                assert mark_fields_done(session, tenant, [
                    (*key, value) for key, value in zip(keys, values, strict=True)]) == 4
            else:
                for key, value in zip(keys, values, strict=True):
                    mark_done(session, tenant, "field", *key, value)
        outcomes.append(rows())
    assert outcomes[0] == outcomes[1]
    assert [row[1] for row in outcomes[1]] == ["done"] * 4


def test_task_ledger_keeps_the_created_id(database: Database, tenant: int) -> None:
    with database.session() as session:
        mark_pending(session, tenant, "task", "deal", "1", "syncd:v1", "Call the client")
    with database.session() as session:  # committed intent, then the attempt, then the call
        assert mark_attempt(session, tenant, "task", "deal", "1", "syncd:v1") == 1
        assert mark_attempt(session, tenant, "task", "deal", "404", "nope") == 0
    with database.session() as session:
        mark_done(session, tenant, "task", "deal", "1", "syncd:v1", "Call the client",
                  crm_id="t-77")
        mark_done(session, tenant, "task", "deal", "1", "syncd:v1", "Call the client")
        row = get_ledger(session, tenant, "task")[("deal", "1", "syncd:v1")]
        assert (row.status, row.crm_id, row.attempts) == ("done", "t-77", 1)
        assert get_ledger(session, tenant, "field") == {}
        # A done without a recorded intent still lands in the ledger.
        mark_done(session, tenant, "field", "deal", "9", "Violations", "")
        assert get_ledger(session, tenant, "field")[("deal", "9", "Violations")].status == "done"
        assert mark_pending_many(session, tenant, "field", [
            ("deal", str(i), "Violations", f"v{i}") for i in range(3000)]) == 3000
        assert len(pending_rows(session, tenant, "field")) == 3000


def test_to_text() -> None:
    assert [to_text(v) for v in (None, 72.0, 72.5, 3, "x", True)] == [
        None, "72", "72.5", "3", "x", "true"]


# -- read side ---------------------------------------------------------------------------
def seed_read_side(database: Database, tenant: int) -> None:
    with database.session() as session:
        upsert_page(session, tenant, Page("pipelines", [Pipeline("1", "Sales")]))
        upsert_page(session, tenant, Page("stages", [Stage("10", "1", "Qualified"),
                                                     Stage("20", "9", "Orphan")]))
        upsert_page(session, tenant, Page("companies", [Company("c1", "Acme"),
                                                        Company("c2", "Globex"),
                                                        Company("c3", "Gone", deleted=True)]))
        upsert_page(session, tenant, Page("deals", [
            deal(i, company_id="c1" if i % 2 else "c2", owner_id=f"u{i}") for i in range(1, 8)]))
        upsert_page(session, tenant, Page("activities", [
            Activity("a1", "call", deal_id="1", company_id="c1"),
            Activity("a2", "meeting", deal_id="1"),
            Activity("a3", "call", deal_id="2", deleted=True),
            Activity("a4", "email", company_id="c2"),
        ]))
        upsert_page(session, tenant, Page("stage_history", [
            StageChange("h2", "1", "10", "11", T0 + timedelta(days=2)),
            StageChange("h1", "1", None, "10", T0),
            StageChange("h3", "2", None, "10", T0 + timedelta(days=1)),
        ]))


def test_read_side_helpers(database: Database, tenant: int) -> None:
    seed_read_side(database, tenant)
    with database.session() as session:
        chunks = list(iter_deal_chunks(session, tenant, chunk_size=3))
        assert [[d.external_id for d in chunk] for chunk in chunks] == [
            ["1", "2", "3"], ["4", "5", "6"], ["7"]]
        first = chunks[0][0]
        assert (first.stage_id, first.company_id, first.owner_id) == ("10", "c1", "u1")
        with pytest.raises(AttributeError):
            _ = first.raw  # not loaded for the audit unless asked
        with_raw = next(iter_deal_chunks(session, tenant, chunk_size=1, with_raw=True))
        assert with_raw[0].raw["id"] == 1

        acts = activities_for_deals(session, tenant, ["1", "2", "99"])
        assert {k: [a.external_id for a in v] for k, v in acts.items()} == {
            "1": ["a1", "a2"], "2": [], "99": []}
        by_company = activities_for_companies(session, tenant, {"c1", "c2"})
        assert {k: [a.external_id for a in v] for k, v in by_company.items()} == {
            "c1": ["a1"], "c2": ["a4"]}
        changes = stage_changes_for_deals(session, tenant, ["1", "2"])
        assert [c.external_id for c in changes["1"]] == ["h1", "h2"]
        assert [c.at for c in changes["2"]] == [T0 + timedelta(days=1)]

        assert stages_by_id(session, tenant) == {"10": ("Sales", "Qualified"),
                                                 "20": ("9", "Orphan")}
        assert [c.external_id for c in companies(session, tenant)] == ["c1", "c2"]
        assert [c.name for c in companies(session, tenant, ids=["c2", "c3", "zz"])] == [
            "Globex"]
        assert deal_owners(session, tenant, ["1", "3", "404"]) == {"1": "u1", "3": "u3"}
        tally = counts(session, tenant)
        assert (tally["deals"], tally["companies"], tally["activities"]) == (7, 2, 3)
        assert tally["violations"] == 0 and tally["sync_runs"] == 0


def test_readers_see_uncommitted_changes_of_their_session(database: Database,
                                                          tenant: int) -> None:
    seed_read_side(database, tenant)
    with database.session() as session:
        assert companies(session, tenant)[0].name == "Acme"
        upsert_records(session, tenant, [Company("c1", "Acme Renamed")])
        assert companies(session, tenant)[0].name == "Acme Renamed"
        upsert_page(session, tenant, Page("deals", [], deleted_ids=["1"]))
        first = next(iter_deal_chunks(session, tenant))[0]
        assert first.external_id == "2"
        assert session.scalar(select(func.count()).select_from(SyncRunRow)) == 0


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.session() as session:
        upsert_records(session, 12345, [deal(1)])


def test_sqlite_busy_timeout_lets_a_second_writer_wait(tmp_path: Path) -> None:
    """WAL + busy timeout: a writer waits for another's short transaction, no error."""
    db = Database(tmp_path / "syncd.db")
    db.upgrade()
    try:
        raw = sqlite3.connect(tmp_path / "syncd.db", timeout=0, check_same_thread=False)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO tenants (key, plugin, created_at) "
                    "VALUES ('x', 'p', '2025-01-01 00:00:00.000000')")
        timer = threading.Timer(0.5, raw.commit)
        timer.start()
        with db.session() as session:
            ensure_tenant(session, "y", "p")
        timer.join()
        raw.close()
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(TenantRow)) == 2
    finally:
        db.dispose()


def test_company_rows_have_record_synonyms(database: Database, tenant: int) -> None:
    with database.session() as session:
        upsert_records(session, tenant, [Company("c1", "Acme", owner_id="u9")])
        row = session.scalar(select(CompanyRow))
        assert (row.owner_id, row.owner_external_id) == ("u9", "u9")
