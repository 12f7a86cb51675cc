"""Small SQL helpers shared by the store modules: dialect inserts, chunking, clock."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import Table
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


def insert_for(session: Session, table: Table) -> Any:
    """The dialect's INSERT (with ``on_conflict_do_update``/``do_nothing``)."""
    name = dialect_name(session)
    if name == "sqlite":
        return sqlite.insert(table)
    if name == "postgresql":
        return postgresql.insert(table)
    raise ValueError(f"unsupported dialect {name}")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def sequence_chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
