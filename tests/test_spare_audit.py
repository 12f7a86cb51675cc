"""A one-off pass's baseline audit is audited from both ends: the pass from the first
chunk up, a process of its own from the last down (``syncd.spare_audit``, issue 13
item 7). These tests hold, on SQLite and PostgreSQL:

- the verdicts, due rows, karma and the pass's counts are those of a pass that audits
  every chunk itself, with the process really auditing some chunks;
- a process that fails leaves its chunks to the pass (logged); one whose lease is no
  longer the pass's writes nothing;
- only a one-off baseline audit starts one: not ``syncd run``, not a later full audit,
  not a small tenant.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support import REPO
from test_report_stream import _runner

from syncd import deal_walk, spare_core, store
from syncd.config import Tenant
from syncd.lease import FencedDatabase, Lease
from syncd.spare_audit import SpareAudit
from syncd.store import leases
from syncd.store.models import DealDueRow
from syncd.sync import PassOptions

sys.path.insert(0, str(REPO / "bench"))
import bench_incremental as bench

#: How long a test waits for the process to claim its first chunk (reached at once when
#: the code is right; a generous bound on a loaded machine).
PATIENCE = 60.0
DEALS = 400
CHUNK = 50


def snapshot(db: store.Database, key: str) -> dict[str, Any]:
    """What an audit and its karma leave: open violations, due rows, karma lines."""
    with db.session() as session:
        row = store.get_tenant(session, key)
        assert row is not None
        v = store.ViolationRow.__table__.c
        opened = sorted(session.execute(
            store.ViolationRow.__table__.select().where(v.tenant_id == row.id,
                                                        v.resolved_at.is_(None))).all(),
            key=lambda r: r.key)
        due = DealDueRow.__table__.c
        dues = sorted(session.execute(
            DealDueRow.__table__.select().where(due.tenant_id == row.id)).all(),
            key=lambda r: r.deal_external_id)
        k = store.KarmaLineRow.__table__.c
        lines = session.execute(store.KarmaLineRow.__table__.select().where(
            k.tenant_id == row.id)).all()
        # A line's source may be a violation row: named by its key (row ids are the
        # database's, and differ with the order the rows were written in).
        keys = dict(session.execute(select(v.id, v.key).where(v.tenant_id == row.id)).all())
    return {
        "open": [(r.key, r.severity, r.explanation, r.details, r.opened_at, r.last_seen_at)
                 for r in opened],
        "due": [(r.deal_external_id, r.due_at, r.unmapped_stage) for r in dues],
        "karma": sorted((r.kind, r.subject_type, r.subject_id, r.criterion, r.quantity,
                         r.weight, r.amount, r.source_type,
                         keys[int(r.source_id)] if r.source_type == "violation"
                         else r.source_id, r.period, r.unit)
                        for r in lines),
    }


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[SpareAudit]:
    """Small chunks; the process starts for a tenant of ``DEALS`` deals, and the pass waits
    until it has claimed its first chunk (so it audits some). Each one started is listed."""
    monkeypatch.setattr(deal_walk, "CHUNK", CHUNK)
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    begun: list[SpareAudit] = []
    start = SpareAudit.start_if_useful.__func__  # type: ignore[attr-defined]

    def start_and_wait(cls: type[SpareAudit], *args: Any) -> SpareAudit | None:
        spare = start(cls, *args)
        if spare is not None:
            begun.append(spare)
            assert spare.ready(PATIENCE)
        return spare

    monkeypatch.setattr(SpareAudit, "start_if_useful", classmethod(start_and_wait))
    return begun


def test_a_baseline_audit_from_both_ends_equals_one_from_one_end(
        database: store.Database, tmp_path: Path, started: list[SpareAudit],
        monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = bench.make_tenant(bench.Account(DEALS), writeback=False)
    alone = dataclasses.replace(tenant, key="alone")
    runner = _runner(database, tmp_path / "reports", [bench.NOW])
    monkeypatch.setattr(spare_core, "MIN_DEALS", 10**9)
    reference = runner.run_one_off(alone)
    assert reference.ok and started == []
    monkeypatch.setattr(spare_core, "MIN_DEALS", 100)
    both = runner.run_one_off(tenant)
    assert both.ok and len(started) == 1
    chunks = -(-DEALS // CHUNK)
    assert 1 <= started[0].taken < chunks  # both ends audited chunks
    assert reference.summary is not None and both.summary is not None
    assert both.summary.audit == reference.summary.audit == {
        "mode": "full", "deals_audited": DEALS, "karma": "whole"}
    assert both.summary.violations_opened == reference.summary.violations_opened > 300
    assert both.summary.violations_by_rule == reference.summary.violations_by_rule
    mine, theirs = snapshot(database, tenant.key), snapshot(database, alone.key)
    assert mine["open"] and mine["karma"]
    only_mine = set(mine["karma"]) - set(theirs["karma"])
    only_theirs = set(theirs["karma"]) - set(mine["karma"])
    assert not only_mine and not only_theirs, (sorted(only_mine)[:5], sorted(only_theirs)[:5])
    assert mine == theirs


def test_a_process_that_fails_leaves_its_chunks_to_the_pass(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    unmigrated = store.Database(tmp_path / "syncd.db")  # no syncd tables: it fails at once
    tenant = bench.make_tenant(bench.Account(DEALS), writeback=False)
    spare = SpareAudit(unmigrated, tenant, 1, bench.NOW, None, CHUNK)
    try:
        with caplog.at_level(logging.WARNING, logger="syncd.spare_audit"):
            assert spare.ready(PATIENCE)
            assert all(spare.take(index, []) is None for index in range(3))
    finally:
        spare.close()
    assert "the pass audits the chunks it left" in caplog.text
    assert "no such table" in caplog.text
    assert spare.taken == 0


def test_a_process_whose_lease_is_gone_writes_nothing(
        database: store.Database, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spare_core, "MIN_DEALS", 10**9)
    tenant = bench.make_tenant(bench.Account(DEALS), writeback=False)
    assert _runner(database, tmp_path / "reports", [bench.NOW]).run_one_off(tenant).ok
    before = snapshot(database, tenant.key)
    with database.session() as session:
        row = store.get_tenant(session, tenant.key)
        assert row is not None
        claim = leases.claim_one(session, tenant.key, "test", ttl=timedelta(minutes=5))
    assert claim is not None
    stale = FencedDatabase(database, Lease(tenant.key, claim.fence - 1, "test"))
    later = bench.NOW + timedelta(days=3)  # what it would have written differs
    spare = SpareAudit(stale, tenant, row.id, later, None, CHUNK)
    try:
        with caplog.at_level(logging.WARNING, logger="syncd.spare_audit"):
            assert spare.ready(PATIENCE)
            last = -(-DEALS // CHUNK) - 1
            assert spare.take(last, ["any"]) is None
    finally:
        spare.close()
    assert "lease lost" in caplog.text
    assert snapshot(database, tenant.key) == before


def test_only_a_one_off_baseline_audit_starts_one(database: store.Database, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``syncd run`` keeps its cores for its workers; a later full audit queues tasks in
    the pass's transactions; a small tenant would pay the start-up for nothing."""
    tried: list[str] = []
    start = SpareAudit.start_if_useful.__func__  # type: ignore[attr-defined]

    def watched(cls: type[SpareAudit], db: store.Database, tenant: Tenant,
                *args: Any) -> SpareAudit | None:
        tried.append(tenant.key)
        return start(cls, db, tenant, *args)

    monkeypatch.setattr(SpareAudit, "start_if_useful", classmethod(watched))
    monkeypatch.setattr(SpareAudit, "__init__", lambda *args: pytest.fail("started"))
    tenant = bench.make_tenant(bench.Account(DEALS), writeback=False)
    runner = _runner(database, tmp_path / "reports", [bench.NOW])
    with database.session() as session:
        leases.ensure_leases(session, [tenant.key])
        claim = leases.claim_one(session, tenant.key, "test", ttl=timedelta(minutes=5))
    assert claim is not None
    assert runner.run_under_lease(tenant, Lease(tenant.key, claim.fence, "test")).ok
    assert tried == []  # the daemon's pass: not even asked
    with database.session() as session:
        leases.release(session, tenant.key, "test", claim.fence)
    assert runner.run_one_off(tenant, PassOptions(clock=lambda: bench.NOW, full=True)).ok
    assert runner.run_one_off(tenant).ok
    assert tried == []  # a full audit that queues tasks, then an incremental one: none
    small = dataclasses.replace(tenant, key="small")
    assert runner.run_one_off(small).ok  # a baseline, below MIN_DEALS: asked, none started
    assert tried == ["small"]
