"""Migrations: the migrated schema is exactly the models' schema, on both backends."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from syncd.records import Deal, Page
from syncd.store import Base, Database, ensure_tenant, get_cursor, head_revision, set_cursor
from syncd.store.upsert import upsert_page


def schema_diff(db: Database) -> list[object]:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def test_empty_database_has_no_revision(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert db.current_revision() is None
    finally:
        db.dispose()


def test_upgrade_yields_exactly_the_models_schema(database: Database) -> None:
    assert database.current_revision() == head_revision()
    assert schema_diff(database) == []
    tables = set(inspect(database.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_schema_check_is_not_vacuous(database: Database) -> None:
    """compare_metadata does see drift: a dropped index is reported."""
    with database.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_deals_tenant_company"))
    diff = schema_diff(database)
    assert any(d[0] == "add_index" and d[1].name == "ix_deals_tenant_company"
               for d in diff if isinstance(d, tuple))


def test_open_violation_index_is_partial_and_unique(database: Database) -> None:
    indexes = {i["name"]: i for i in inspect(database.engine).get_indexes("violations")}
    index = indexes["uq_violations_open_key"]
    assert index["unique"]
    assert index["column_names"] == ["tenant_id", "key"]
    where = (index.get("dialect_options", {}).get(f"{database.dialect}_where"))
    assert where is not None
    assert "resolved_at IS NULL" in str(where).replace("(", "").replace(")", "")


def test_upgrading_twice_is_a_no_op(database: Database) -> None:
    before = sorted(inspect(database.engine).get_table_names())
    database.upgrade()
    database.upgrade()
    assert database.current_revision() == head_revision()
    assert sorted(inspect(database.engine).get_table_names()) == before
    with database.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    assert schema_diff(database) == []


def test_data_survives_an_upgrade(database: Database) -> None:
    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    with database.session() as session:
        tenant_id = ensure_tenant(session, "acme", "pipedrive")
        upsert_page(session, tenant_id, Page("deals", [
            Deal("1", "Kept", "open", "p", "s", created_at=at, raw={"id": 1})]))
        set_cursor(session, tenant_id, "deals", "2025-03-01T12:00:00+00:00")
    database.upgrade()
    again = Database(database.url)
    try:
        again.upgrade()
        with again.session() as session:
            row = session.execute(text("SELECT title FROM deals WHERE external_id = '1'")).one()
            assert row.title == "Kept"
            assert get_cursor(session, tenant_id, "deals") == "2025-03-01T12:00:00+00:00"
    finally:
        again.dispose()


def test_concurrent_upgrades_of_an_empty_database(db_url: str) -> None:
    """Two processes starting at once: the lock serializes them, both succeed."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def start() -> None:
        db = Database(db_url)
        try:
            barrier.wait()
            db.upgrade()
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db = Database(db_url)
    try:
        assert db.current_revision() == head_revision()
        assert schema_diff(db) == []
    finally:
        db.dispose()
