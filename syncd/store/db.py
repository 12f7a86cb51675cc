"""Engines, sessions and migrations.

``Database(url)`` is the one entry point: SQLite by file path (single replica; WAL so the
CLI can read while the daemon writes) or PostgreSQL by URL (``postgresql://`` is taken to
mean psycopg 3). Alembic is configured in code, pointing at ``syncd/store/migrations``, so
no ``alembic.ini`` has to ship or be found; ``upgrade()`` runs at every start and is
serialized (advisory lock on PostgreSQL, a lock file next to a SQLite database) so two
processes starting together do not both try to create the schema.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from syncd.store.types import json_dumps

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Key of the PostgreSQL advisory lock that serializes ``upgrade()`` across processes.
_MIGRATION_LOCK_KEY = 0x5944_0001
#: How long a SQLite writer waits for the lock before "database is locked" (milliseconds).
SQLITE_BUSY_TIMEOUT_MS = 30_000
_SECRET_QUERY_KEYS = {"password", "sslpassword", "passfile", "sslkey"}


def normalize_url(url: str | Path) -> URL:
    """Parse a database URL; a bare path means a SQLite file, ``postgresql://`` psycopg 3."""
    raw = str(url).strip()
    if not raw:
        raise ValueError("empty database URL")
    if "://" not in raw:
        raw = f"sqlite:///{Path(raw).expanduser().resolve()}"
    parsed = make_url(raw)
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise ValueError(f"unsupported database backend: {parsed.get_backend_name()}")
    return parsed


def redacted_url(url: str | URL | Path) -> str:
    """The URL as it may appear in logs: no password, in the userinfo or the query."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if parsed.query:
        query = {k: ("***" if k.lower() in _SECRET_QUERY_KEYS else v)
                 for k, v in parsed.query.items()}
        parsed = parsed.set(query=query)
    return parsed.render_as_string(hide_password=True)


def _sqlite_path(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # WAL + NORMAL: a power cut may lose the last commits but never tears a page from
        # its cursor; an application crash loses nothing.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def create_db_engine(url: str | URL | Path, *, echo: bool = False) -> Engine:
    """An engine configured for syncd: pragmas on SQLite, pre-ping on PostgreSQL."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(parsed)
        kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
        if path is None:
            kwargs.update(poolclass=StaticPool,
                          connect_args={"check_same_thread": False})
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, echo=echo, json_serializer=json_dumps, **kwargs)
        event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    return create_engine(parsed, echo=echo, json_serializer=json_dumps, pool_pre_ping=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configured in code. With ``connection``, migrations run on it."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration revision shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise RuntimeError("no alembic revisions found")
    return head


class Database:
    """One database: its engine, a session factory and the schema's migrations."""

    def __init__(self, url: str | URL | Path, *, echo: bool = False) -> None:
        self.url = normalize_url(url) if not isinstance(url, URL) else url
        self.engine = create_db_engine(self.url, echo=echo)
        # expire_on_commit=False: rows returned by a store function stay readable after the
        # session that loaded them commits (the caller commits before its HTTP calls).
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def redacted_url(self) -> str:
        return redacted_url(self.url)

    def __repr__(self) -> str:
        return f"Database({self.redacted_url()!r})"

    @contextlib.contextmanager
    def session(self, *, immediate: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        ``immediate=True`` is for a transaction that reads and then writes (an upsert that
        compares hashes first, a ledger update): on SQLite it begins with ``BEGIN
        IMMEDIATE``, taking the write lock before the first read. A deferred transaction
        that has read cannot take the write lock once another connection has committed
        since its read began (the lease heartbeat, another replica): SQLite then fails at
        once with "database is locked" (SQLITE_BUSY_SNAPSHOT) without waiting the busy
        timeout. An immediate one waits its turn instead. Other databases ignore it (their
        row locks and MVCC need no such step). Keep such transactions short: readers are
        never blocked (WAL), other writers wait up to the busy timeout. Needed wherever a
        transaction is begun by something other than a write (a savepoint, ``begin_nested``)
        and reads before it writes: pysqlite itself begins one only at the first write.
        """
        session = self._sessions()
        try:
            if immediate and self.dialect == "sqlite":
                # pysqlite opens no transaction of its own before a statement that is not
                # DML, so this BEGIN is the transaction the session commits or rolls back.
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield session
            self._before_commit(session)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _before_commit(self, session: Session) -> None:
        """A last check before a session commits (a fenced database proves its lease)."""

    def upgrade(self, revision: str = "head") -> None:
        """Migrate the schema to ``revision``; a no-op when already there."""
        with self._migration_lock(), self.engine.connect() as connection:
            command.upgrade(alembic_config(connection), revision)
            connection.commit()

    def current_revision(self) -> str | None:
        """The schema's revision, ``None`` for an empty database."""
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def is_current(self) -> bool:
        return self.current_revision() == head_revision()

    def dispose(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self.dialect == "postgresql":
            with self.engine.connect() as lock_connection:
                lock_connection.execute(text("SELECT pg_advisory_lock(:k)"),
                                        {"k": _MIGRATION_LOCK_KEY})
                lock_connection.commit()
                try:
                    yield
                finally:
                    lock_connection.execute(text("SELECT pg_advisory_unlock(:k)"),
                                            {"k": _MIGRATION_LOCK_KEY})
                    lock_connection.commit()
            return
        path = _sqlite_path(self.url)
        if path is None:
            yield
            return
        lock_path = path.with_name(path.name + ".migrate-lock")
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = [
    "MIGRATIONS_DIR",
    "Database",
    "alembic_config",
    "create_db_engine",
    "head_revision",
    "normalize_url",
    "redacted_url",
]

