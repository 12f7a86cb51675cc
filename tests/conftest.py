"""Shared fixtures: real databases, never mocks.

``db_url`` is parametrized over SQLite and PostgreSQL and gives every test a fresh, empty
database: a file in ``tmp_path``, or a new PostgreSQL database ``syncd_test_<random>``
created through an autocommit connection to the admin database and dropped afterwards.
``database`` is a ``syncd.store.Database`` on it, already upgraded to the newest schema.

PostgreSQL defaults to ``postgresql+psycopg://postgres@127.0.0.1:5432/test``
(``SYNCD_TEST_PG_URL`` overrides). If it is unreachable the PostgreSQL tests FAIL with the
reason, so a broken CI database is never mistaken for a green run; ``SYNCD_TEST_SKIP_PG=1``
turns that into a skip (the reason is printed in the header and in the skip report).
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from syncd.store import Database
from syncd.store.db import normalize_url, redacted_url

PG_URL = os.environ.get("SYNCD_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SKIP_PG = os.environ.get("SYNCD_TEST_SKIP_PG") == "1"

# What a command says outside a tenant follows the locale (LANG...: docs/i18n.md); tests
# read it in English whatever the developer's desktop speaks, unless a test says otherwise.
for _name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
    os.environ.pop(_name, None)
os.environ["LANG"] = "C.UTF-8"


def _cache_bytecode_outside_the_tree() -> None:
    """Keep compiled bytecode for this run's interpreters even under
    ``PYTHONDONTWRITEBYTECODE`` (set on some machines, this one included): with it, each
    xdist worker compiled the project and the tests again (6 s of a 10 s collection) and
    each `syncd` subprocess compiled the project again. The bytecode goes to
    ``.pytest_cache/pycache`` (``PYTHONPYCACHEPREFIX``), never beside the sources, which
    is what the variable is usually set to avoid. A prefix the developer set is kept."""
    if not os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
        return
    prefix = os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(__file__).resolve().parents[1] / ".pytest_cache"
                                   / "pycache"))
    sys.pycache_prefix = prefix
    sys.dont_write_bytecode = False


_cache_bytecode_outside_the_tree()


def _libpq(url: URL) -> str:
    """A SQLAlchemy URL as a libpq connection string (psycopg does not know "+psycopg")."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@functools.cache
def _pg_problem() -> str | None:
    """Why PostgreSQL cannot be used, or ``None`` when it can (checked once per session)."""
    try:
        with psycopg.connect(_libpq(normalize_url(PG_URL)), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure means "unusable"; reported verbatim
        return f"{type(exc).__name__}: {str(exc).strip()}"
    return None


def pytest_report_header(config: pytest.Config) -> str:
    problem = _pg_problem()
    where = redacted_url(PG_URL)
    if problem is None:
        return f"postgresql: {where} (reachable)"
    if SKIP_PG:
        return f"postgresql: {where} UNREACHABLE, tests SKIPPED (SYNCD_TEST_SKIP_PG=1): {problem}"
    return f"postgresql: {where} UNREACHABLE, its tests will FAIL: {problem}"


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (the default, see pyproject.toml): at least 4 workers even on 2 CPUs.

    Most of the suite's wall time is waiting (fake CRMs' rate windows, `syncd` subprocesses,
    daemons polled until they answer), not CPU, so workers beyond the CPU count still pay.
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` (pytest-xdist's own override) still wins.
    """
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # pytest-xdist's default implementation reads it
    return max(4, os.cpu_count() or 1)


@pytest.fixture(scope="session")
def pg_admin_url() -> URL:
    """The admin database URL, after checking PostgreSQL is reachable."""
    problem = _pg_problem()
    if problem is not None:
        where = redacted_url(PG_URL)
        if SKIP_PG:
            pytest.skip(f"PostgreSQL at {where} unreachable and SYNCD_TEST_SKIP_PG=1: {problem}")
        pytest.fail(
            f"PostgreSQL at {where} is unreachable ({problem}). Start it, point "
            "SYNCD_TEST_PG_URL at one, or set SYNCD_TEST_SKIP_PG=1 to skip these tests.",
            pytrace=False,
        )
    return normalize_url(PG_URL)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest schema once per worker, copied per test."""
    path = tmp_path_factory.mktemp("template") / "syncd.db"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    database.dispose()  # the last connection checkpoints the WAL into the file
    return path


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: URL) -> Iterator[str]:
    """A PostgreSQL database migrated to the newest schema once per worker: ``database``
    creates its fresh database as a copy of it (``CREATE DATABASE ... TEMPLATE``)."""
    name = f"syncd_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(pg_admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        database = Database(pg_admin_url.set(database=name))
        database.upgrade()
        database.dispose()  # a template must have no connections while it is copied
        yield name
    finally:
        with psycopg.connect(_libpq(pg_admin_url), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[str]:
    """A URL of a fresh, empty database (no schema).

    When the test also uses ``database``, the fresh database is instead a copy of one
    migrated once per worker (the same schema ``upgrade()`` makes, which ``database``
    still runs and finds current): migrating per test was most of a short test's time.
    """
    migrated = "database" in request.fixturenames
    if request.param == "sqlite":
        # A subdirectory that does not exist yet: Database must create it (unless copied).
        path = tmp_path_factory.mktemp("db") / "var" / "syncd.db"
        if migrated:
            path.parent.mkdir()
            shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    admin: URL = request.getfixturevalue("pg_admin_url")
    name = f"syncd_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if migrated:
        create = sql.SQL("{} TEMPLATE {}").format(
            create, sql.Identifier(request.getfixturevalue("pg_template")))
    with psycopg.connect(_libpq(admin), autocommit=True) as conn:
        conn.execute(create)
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(admin), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A ``Database`` on a fresh database, upgraded to the newest schema."""
    db = Database(db_url)
    db.upgrade()
    try:
        yield db
    finally:
        db.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long end-to-end runs (marked ``slow``) first, in their collected order.

    pytest-xdist hands tests out in collection order, so a slow test collected near the
    end started while the other workers had nothing left, and the run waited for it alone
    (the fencing runs take a minute or more). Started first, they overlap the short tests.
    The sort is stable: within each group the order is pytest's own.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
