"""The pass audits while its last streams are pulled (issue 13, item 7).

Nothing after the pull reads contacts, so they come last (``STANDARD_STREAMS``) and the
audit and karma start in a thread of their own when only they are left to pull
(``syncd.sync.BesidePull``). These tests hold that:

- the audit really starts before the contacts pull ends (the contacts stream waits for
  it, by an event, before its second page; a pass that audited after the pull would
  leave that wait unanswered), and a page committed while a chunk is held between its
  read and its writes fails neither, on both databases;
- the verdicts and karma are those of a pass that pulls everything first;
- an audit that fails fails the pass, after the pull committed what it read; a pull that
  fails ends the pass only once the audit begun beside it has ended.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from test_incremental_audit import MemCRM, World, make_tenant, snapshot, sync

from syncd import deal_walk, store
from syncd import sync as sync_module
from syncd.config import Tenant
from syncd.connector import PullContext
from syncd.records import Contact, Page

CONTACT_PAGES = 4
#: How long a test waits for something that must happen at once (never reached when the
#: code is right; a generous bound on a loaded machine).
PATIENCE = 30.0


class Watch:
    """What the contacts stream saw of the audit while it was pulled."""

    def __init__(self) -> None:
        self.audit_started = threading.Event()
        self.audit_thread: str | None = None
        self.writes = 0
        self.waited: bool | None = None
        self.switch_interval: float | None = None
        self.lock = threading.Lock()
        self.fail_contacts_at: int | None = None
        #: called with each contacts page's number before it is yielded (the page before
        #: it is committed by then: the pull stores a page before it asks for the next)
        self.before_page: Callable[[int], None] = lambda number: None


def with_contacts(tenant: Tenant, watch: Watch) -> Tenant:
    """The tenant's MemCRM with a ``contacts`` stream last, watching the audit."""
    base = tenant.connector_class

    class ContactsLast(base):  # type: ignore[valid-type,misc]
        streams = (*MemCRM.streams, "contacts")

        def pull(self, stream: str, cursor: str | None, context: PullContext,
                 ) -> Iterator[Page]:
            if stream != "contacts":
                yield from super().pull(stream, cursor, context)
                return
            for number in range(CONTACT_PAGES):
                if number == 1:  # the audit must be under way before the pull ends
                    watch.waited = watch.audit_started.wait(PATIENCE)
                    watch.switch_interval = sys.getswitchinterval()
                watch.before_page(number)
                if number == watch.fail_contacts_at:
                    raise ConnectionError("the CRM went away during contacts")
                yield Page(stream, [Contact(f"P{number}-{n}", f"Person {number}-{n}",
                                            company_id=f"C{n % 4}") for n in range(40)],
                           requests=1)

    return Tenant(key=tenant.key, file=tenant.file, config=tenant.config, book=tenant.book,
                  connector_class=ContactsLast, settings=tenant.settings,
                  interval_minutes=tenant.interval_minutes)


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Watch:
    """Watch the audit: when it starts, in which thread, and how many chunks it wrote.
    Chunks of 2 deals, so the audit writes many times while contacts are stored."""
    watch = Watch()
    audit_and_score = sync_module._audit_and_score
    audit = deal_walk.AuditStage.audit

    def watched_audit(*args: Any, **kwargs: Any) -> Any:
        watch.audit_thread = threading.current_thread().name
        watch.audit_started.set()
        return audit_and_score(*args, **kwargs)

    def watched_audit_chunk(self: Any, *args: Any, **kwargs: Any) -> None:
        audit(self, *args, **kwargs)
        with watch.lock:
            watch.writes += 1

    monkeypatch.setattr(sync_module, "_audit_and_score", watched_audit)
    monkeypatch.setattr(deal_walk.AuditStage, "audit", watched_audit_chunk)
    monkeypatch.setattr(deal_walk, "CHUNK", 2)
    return watch


def contacts_stored(db: store.Database, key: str) -> int:
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, key, "memcrm")
        return len(session.execute(store.ContactRow.__table__.select().where(
            store.ContactRow.tenant_id == tenant_id)).all())


def test_the_audit_runs_while_contacts_are_pulled(database: store.Database,
                                                  watch: Watch) -> None:
    world = World(5)
    world.change(30)
    key = f"beside{uuid.uuid4().hex[:8]}"
    switch = sys.getswitchinterval()
    summary = sync(database, with_contacts(make_tenant(key, world.data, 0), watch),
                   world.now, full=False)
    assert watch.waited is True, "the audit did not start before the contacts pull ended"
    # the pull's threads get the interpreter back sooner while the audit runs beside them
    assert watch.switch_interval == min(switch, sync_module.BESIDE_SWITCH_INTERVAL)
    assert sys.getswitchinterval() == switch
    assert watch.audit_thread is not None
    assert watch.audit_thread != threading.main_thread().name
    assert watch.writes > CONTACT_PAGES  # written chunk by chunk
    assert summary.pulled["contacts"] == CONTACT_PAGES * 40
    assert contacts_stored(database, key) == CONTACT_PAGES * 40
    assert summary.audit["mode"] == "full"
    assert summary.audit["deals_audited"] == len(set(world.data.deals) - world.data.deleted)
    assert summary.violations_open > 0


def test_verdicts_and_karma_equal_those_of_a_pass_that_pulls_first(
        database: store.Database, watch: Watch, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(11)
    world.change(25)
    beside, after = (f"{name}{uuid.uuid4().hex[:8]}" for name in ("beside", "after"))
    sync(database, with_contacts(make_tenant(beside, world.data, 0), watch), world.now,
         full=False)
    assert watch.waited is True
    monkeypatch.setattr(sync_module, "AUDIT_FREE_STREAMS", frozenset())  # pull, then audit
    later = Watch()
    later.audit_started.set()  # nothing to wait for
    sync(database, with_contacts(make_tenant(after, world.data, 0), later), world.now,
         full=False)
    first, second = snapshot(database, beside), snapshot(database, after)
    assert first["open"] and first["karma"]
    assert first == second
    # and an incremental pass after changes agrees too
    world.change(12)
    sync(database, with_contacts(make_tenant(after, world.data, 0), later), world.now,
         full=False)
    monkeypatch.setattr(sync_module, "AUDIT_FREE_STREAMS", frozenset({"contacts"}))
    watch.audit_started.clear()
    watch.waited = None
    sync(database, with_contacts(make_tenant(beside, world.data, 0), watch), world.now,
         full=False)
    assert watch.waited is True
    assert snapshot(database, beside) == snapshot(database, after)


def test_an_audit_that_fails_fails_the_pass_after_the_pull(
        database: store.Database, watch: Watch, monkeypatch: pytest.MonkeyPatch) -> None:
    world = World(7)
    key = f"auditfail{uuid.uuid4().hex[:8]}"

    def broken(*args: Any, **kwargs: Any) -> Any:
        watch.audit_started.set()
        raise RuntimeError("the audit broke")

    monkeypatch.setattr(sync_module, "_audit_and_score", broken)
    with pytest.raises(RuntimeError, match="the audit broke"):
        sync(database, with_contacts(make_tenant(key, world.data, 0), watch), world.now,
             full=False)
    assert watch.waited is True
    assert contacts_stored(database, key) == CONTACT_PAGES * 40  # the pull went on to its end
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, key, "memcrm")
        run = session.execute(store.SyncRunRow.__table__.select().where(
            store.SyncRunRow.tenant_id == tenant_id)).one()
    assert run.status == "failed"
    assert "the audit broke" in (run.error or "")


def test_a_pull_that_fails_waits_for_the_audit_begun_beside_it(
        database: store.Database, watch: Watch) -> None:
    world = World(9)
    world.change(20)
    key = f"pullfail{uuid.uuid4().hex[:8]}"
    watch.fail_contacts_at = 3
    with pytest.raises(ConnectionError, match="went away"):
        sync(database, with_contacts(make_tenant(key, world.data, 0), watch), world.now,
             full=False)
    assert watch.waited is True
    assert not [t for t in threading.enumerate() if t.name == "syncd-audit"]
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, key, "memcrm")
        assert store.open_counts_by_rule(session, tenant_id)  # the audit finished its writes
        run = session.execute(store.SyncRunRow.__table__.select().where(
            store.SyncRunRow.tenant_id == tenant_id)).one()
    assert run.status == "failed"
    assert contacts_stored(database, key) == 3 * 40


def test_passes_auditing_beside_their_pulls_at_once_put_the_switch_interval_back() -> None:
    """Worker threads run passes side by side: the interval found by the first is the one
    the last puts back, whatever order they end in."""
    switch = sys.getswitchinterval()
    sync_module._switch_sooner(True)  # pass A
    sync_module._switch_sooner(True)  # pass B
    assert sys.getswitchinterval() == min(switch, sync_module.BESIDE_SWITCH_INTERVAL)
    sync_module._switch_sooner(False)  # A ends first
    assert sys.getswitchinterval() == min(switch, sync_module.BESIDE_SWITCH_INTERVAL)
    sync_module._switch_sooner(False)
    assert sys.getswitchinterval() == switch


def test_a_page_committed_while_a_chunk_is_audited_leaves_its_write_to_go_through(
        database: store.Database, watch: Watch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contacts pull commits a page exactly while the audit holds a chunk it has read
    and not yet written. The chunk's writes then wait their turn for the lock and go
    through (on SQLite, pysqlite begins the transaction at its first write, so no stale
    read snapshot makes it fail with "database is locked")."""
    auditing, committed = threading.Event(), threading.Event()
    audit = deal_walk.AuditStage.audit

    def audit_across_a_commit(self: Any, *args: Any, **kwargs: Any) -> None:
        if not auditing.is_set():
            auditing.set()
            assert committed.wait(PATIENCE), "no page was committed during the chunk"
        audit(self, *args, **kwargs)

    def pages(number: int) -> None:
        if number == 1:
            assert auditing.wait(PATIENCE)
        elif number == 2:  # page 1 was committed while the first chunk was held
            committed.set()

    monkeypatch.setattr(deal_walk.AuditStage, "audit", audit_across_a_commit)
    watch.before_page = pages
    world = World(13)
    world.change(10)
    key = f"commit{uuid.uuid4().hex[:8]}"
    summary = sync(database, with_contacts(make_tenant(key, world.data, 0), watch),
                   world.now, full=False)
    assert committed.is_set()
    assert summary.audit["deals_audited"] == len(set(world.data.deals) - world.data.deleted)
    assert contacts_stored(database, key) == CONTACT_PAGES * 40
