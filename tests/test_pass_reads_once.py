"""A live pass reads each deal, and each stage change, once (issue 16, item 5).

The audit and both karma ledgers are fed by one chunked read of the tenant's deals
(``syncd.deal_walk``). Every statement a pass runs through a session is watched: a
statement that loads deal rows (the deal's own columns, not an id look-up) or stage
changes counts the records it returned. On a full pass each live deal and each stage
change is loaded exactly once; on incremental passes (karma by units, or whole when a
karma window edge comes) none is loaded twice, and the ones loaded are not nothing.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session
from test_incremental_audit import World, make_tenant, sync

from syncd import store
from syncd.plugins import make_plugin_manager
from syncd.sync import PassOptions, audit_now, client_lines, make_mapper, run_pass

DEALS = store.DealRow.__table__
CHANGES = store.StageChangeRow.__table__


class Reads:
    """Deal and stage-change records loaded by the statements run while it listens."""

    def __init__(self) -> None:
        self.deals: Counter[str] = Counter()
        self.changes: Counter[str] = Counter()

    def __call__(self, state: ORMExecuteState) -> Any:
        statement = state.statement
        if not state.is_select:
            return None
        froms = statement.get_final_froms()  # type: ignore[attr-defined]
        names = {c.key for c in statement.selected_columns}  # type: ignore[attr-defined]
        counter = None
        if DEALS in froms and "stage_id" in names:
            counter = self.deals
        elif CHANGES in froms and "to_stage_id" in names:
            counter = self.changes
        if counter is None:
            return None
        frozen = state.invoke_statement().freeze()
        for row in frozen().all():
            counter[row._mapping["external_id"]] += 1
        return frozen()


@contextmanager
def counting() -> Iterator[Reads]:
    reads = Reads()
    event.listen(Session, "do_orm_execute", reads)
    try:
        yield reads
    finally:
        event.remove(Session, "do_orm_execute", reads)


def live_ids(world: World) -> tuple[set[str], set[str]]:
    deals = set(world.data.deals) - world.data.deleted
    changes = {c.external_id for c in world.data.history.values() if c.deal_id in deals}
    return deals, changes


def test_a_full_pass_reads_each_deal_and_stage_change_once(database: store.Database) -> None:
    world = World(3)
    tenant = make_tenant(f"once{uuid.uuid4().hex[:8]}", world.data, 0)
    with counting() as reads:
        summary = sync(database, tenant, world.now, full=True)
    assert summary.audit == {"mode": "full", "deals_audited": summary.audit["deals_audited"],
                             "karma": "whole"}
    deals, changes = live_ids(world)
    assert reads.deals == Counter(deals)
    assert reads.changes == Counter(changes)


def test_incremental_passes_read_no_deal_twice(database: store.Database) -> None:
    world = World(5)
    for _ in range(60):  # a few changes stay under karma_pass.WHOLE_SHARE: karma by units
        world.new_deal()
    tenant = make_tenant(f"once{uuid.uuid4().hex[:8]}", world.data, 0)
    sync(database, tenant, world.now, full=False)
    modes = set()
    for changes, hours in ((3, 0), (4, 1), (2, 13), (0, 400), (5, 30)):
        world.change(changes)
        world.now += timedelta(hours=hours)
        with counting() as reads:
            summary = sync(database, tenant, world.now, full=False)
        assert summary.audit["mode"] == "incremental"
        modes.add(summary.audit["karma"])
        assert reads.deals, summary.audit  # something was read: the test is not vacuous
        assert max(reads.deals.values()) == 1, reads.deals.most_common(3)
        assert not reads.changes or max(reads.changes.values()) == 1, reads.changes
    assert {"units", "whole"} <= modes, modes


def test_a_what_if_pass_reads_each_deal_once(database: store.Database) -> None:
    """A pass as of a past moment audits and scores every deal, from one read, and its
    counts are those of the same read done twice (the audit's, then client karma's)."""
    world = World(11)
    tenant = make_tenant(f"once{uuid.uuid4().hex[:8]}", world.data, 0)
    sync(database, tenant, world.now, full=True)
    with counting() as reads:
        summary = run_pass(database, make_plugin_manager(load_entrypoints=False), tenant,
                           PassOptions(clock=lambda: world.now,
                                       as_of=world.now - timedelta(days=2)))
    deals, changes = live_ids(world)
    assert reads.deals == Counter(deals)
    assert reads.changes == Counter(changes)
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, "memcrm")
        mapper = make_mapper(session, tenant, tenant_id)
        then = world.now - timedelta(days=2)
        lines = client_lines(session, tenant, tenant_id, mapper, then)
    assert summary.companies_with_karma == len({line.subject_id for line in lines}) > 0
    assert summary.violations_open == len(audit_now(database, tenant, then)) > 0
