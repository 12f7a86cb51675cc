"""Small SQL helpers shared by the store modules: dialect inserts, chunking, clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import CursorResult, Engine, Result, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

T = TypeVar("T")

#: Bound parameters one statement may carry. SQLite before 3.32 allowed only 999.
_SQLITE_MAX_PARAMS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_POSTGRES_MAX_PARAMS = 65_535
#: Upper bound for ``IN (...)`` lists even where the backend allows more: big lists plan
#: and parse slowly and gain nothing.
IN_CHUNK = 5_000


def utcnow() -> datetime:
    return datetime.now(UTC)


def dialect_name(session: Session) -> str:
    return session.get_bind().dialect.name


def max_params(session: Session) -> int:
    """How many bound parameters one statement may carry on this backend."""
    return _SQLITE_MAX_PARAMS if dialect_name(session) == "sqlite" else _POSTGRES_MAX_PARAMS


def in_chunk_size(session: Session, reserved: int = 10) -> int:
    """Safe length of an ``IN (...)`` list next to ``reserved`` other parameters."""
    return max(1, min(IN_CHUNK, max_params(session) - reserved))


def insert_for(session: Session, table: Table) -> sqlite.Insert | postgresql.Insert:
    """The dialect's INSERT (with ``on_conflict_do_update``/``do_nothing``)."""
    name = dialect_name(session)
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported dialect {name}")


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE matched (executing DML yields a CursorResult)."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"not the result of an UPDATE or DELETE: {type(result).__name__}")
    return result.rowcount


def sequence_chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


#: ANALYZE a table once this process inserted this many rows into it, then each time the
#: rows it inserted since the last ANALYZE reach the count it had inserted before.
ANALYZE_MIN_ROWS = 5_000
_inserted: WeakKeyDictionary[Engine, dict[str, tuple[int, int]]] = WeakKeyDictionary()


def note_inserts(session: Session, table: str, count: int) -> None:
    """Keep PostgreSQL's statistics up with a bulk load (geometric, so O(log n) ANALYZEs).

    Before a fresh table is first analyzed, the planner guesses it is tiny and picks plans
    that scan a tenant's whole table per look-up; autovacuum lags a bulk load by minutes (or
    is off). ANALYZE runs in the caller's transaction and sees its own inserts.
    """
    if count <= 0 or dialect_name(session) != "postgresql":
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    counters = _inserted.setdefault(engine, {})
    since, base = counters.get(table, (0, 0))
    since += count
    if since >= max(ANALYZE_MIN_ROWS, base):
        session.execute(text(f'ANALYZE "{table}"'))
        base, since = base + since, 0
    counters[table] = (since, base)


#: Tables with fewer live rows than this are never worth an ANALYZE here.
_STATISTICS_MIN_ROWS = 1_000


def ensure_statistics(session: Session, tables: Sequence[str]) -> None:
    """PostgreSQL: ANALYZE those of ``tables`` that were never analyzed but hold data.

    One catalog query per call: cheap insurance for a reader (the audit) started by a
    process that did not load the data itself, on a server whose autovacuum has not run.
    """
    if dialect_name(session) != "postgresql":
        return
    never = session.execute(text(
        "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(CAST(:t AS text[])) "
        "AND last_analyze IS NULL AND last_autoanalyze IS NULL "
        "AND n_live_tup + n_mod_since_analyze >= :min"
    ), {"t": list(tables), "min": _STATISTICS_MIN_ROWS}).scalars().all()
    for table in never:
        session.execute(text(f'ANALYZE "{table}"'))
