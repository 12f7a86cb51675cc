"""A read-then-write transaction on SQLite must not fail because another connection
committed between its read and its write (found by a CI run: the lease heartbeat committed
while a pull page compared content hashes, and the page's upsert failed at once with
"database is locked", SQLITE_BUSY_SNAPSHOT, which SQLite does not retry: the page's
savepoint had begun a deferred transaction, whose read then could not become a write)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select, text

from syncd import store
from syncd.store.db import Database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'syncd.db'}")
    database.upgrade()
    with database.session() as session:
        store.ensure_tenant(session, "northwind", "pipedrive")
    return database


def _commit_elsewhere(path: str) -> None:
    """Another process's short write (e.g. a lease heartbeat), refusing to wait."""
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("CREATE TABLE IF NOT EXISTS heartbeat (n INTEGER)")
        other.execute("INSERT INTO heartbeat VALUES (1)")  # a real change (a no-op is none)
        other.commit()
    finally:
        other.close()


def test_a_deferred_transaction_fails_when_another_commits_between_read_and_write(
        sqlite_db: Database) -> None:
    """The failure the immediate mode exists for (if SQLite ever retried this on its own,
    this test would say so and the mode could go)."""
    path = str(sqlite_db.url.database)
    with pytest.raises(Exception, match="database is locked"), sqlite_db.session() as session, \
            session.begin_nested():  # as upsert_page_isolating does
        session.scalar(select(store.TenantRow.id))
        _commit_elsewhere(path)
        session.execute(text("UPDATE tenants SET plugin = plugin"))


def test_an_immediate_transaction_holds_the_write_lock_from_its_first_read(
        sqlite_db: Database) -> None:
    path = str(sqlite_db.url.database)
    with sqlite_db.session(immediate=True) as session, session.begin_nested():
        key = session.scalar(select(store.TenantRow.key))
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            _commit_elsewhere(path)  # the other writer must wait: it cannot slip in between
        session.execute(text("UPDATE tenants SET plugin = 'amocrm' WHERE key = :k"), {"k": key})
    with sqlite_db.session() as session:
        assert session.scalar(select(store.TenantRow.plugin)) == "amocrm"
    _commit_elsewhere(path)  # and the lock is gone after the commit


def test_an_immediate_transaction_rolls_back_on_error(sqlite_db: Database) -> None:
    with pytest.raises(RuntimeError), sqlite_db.session(immediate=True) as session:
        session.execute(text("UPDATE tenants SET plugin = 'amocrm'"))
        raise RuntimeError("boom")
    with sqlite_db.session() as session:
        assert session.scalar(select(store.TenantRow.plugin)) == "pipedrive"
    _commit_elsewhere(str(sqlite_db.url.database))


def test_ensure_tenant_of_a_known_tenant_takes_no_write_lock(sqlite_db: Database) -> None:
    """A read-only session that begins with ``ensure_tenant`` (a report) must let other
    writers commit meanwhile: its ``INSERT ... ON CONFLICT DO NOTHING`` used to hold SQLite's
    write lock to the session's end (a 100k-deal report outlasted the busy timeout, and the
    lease heartbeats of other tenants failed)."""
    path = str(sqlite_db.url.database)
    with sqlite_db.session() as session:
        first = store.ensure_tenant(session, "northwind", "pipedrive")
        _commit_elsewhere(path)  # raises "database is locked" if the session holds the lock
        assert store.ensure_tenant(session, "northwind", "pipedrive") == first
    with sqlite_db.session() as session:  # a new tenant is still created, a plugin updated
        created = store.ensure_tenant(session, "globex", "amocrm")
        assert store.ensure_tenant(session, "northwind", "bitrix24") == first
    with sqlite_db.session() as session:
        assert created != first
        assert session.scalar(select(store.TenantRow.plugin).where(
            store.TenantRow.key == "northwind")) == "bitrix24"
