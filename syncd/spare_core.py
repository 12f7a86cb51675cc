"""What the processes a one-off pass starts on the idle core share (``syncd sync``:
``syncd.report_ahead`` takes report parts, ``syncd.spare_audit`` audits chunks): which
tenants are large enough for one, whether a process of its own sees the pass's database,
and how it answers the pass.

Answers are a few bytes each (what is bigger goes through a file): the pass reads them
only when it needs them, and a process whose answer does not fit the pipe's buffer would
wait on its send until then."""

from __future__ import annotations

import contextlib
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy.engine import URL

from syncd import store
from syncd.store.db import _sqlite_path

#: Tenants with fewer live deals run their pass alone: a process's start-up (~0.5-1 s of
#: imports) would cost about what it saves.
MIN_DEALS = 5_000


def large_enough(db: store.Database, tenant_id: int) -> bool:
    """Whether the tenant has ``MIN_DEALS`` live deals or more."""
    with db.session() as session:
        return store.live_deal_count(session, tenant_id) >= MIN_DEALS


def shared_database(url: URL) -> bool:
    """Whether another process sees the same database (not an in-memory SQLite one)."""
    if not url.drivername.startswith("sqlite"):
        return True
    return _sqlite_path(url) is not None


def answer(answers: Connection, message: tuple[Any, ...]) -> None:
    """Send ``message`` to the pass; a pass that no longer waits is not an error."""
    with contextlib.suppress(BrokenPipeError, OSError):
        answers.send(message)
