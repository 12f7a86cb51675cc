"""Rate budgets shared by every process on one database (table ``rate_budgets``).

A CRM limits an *integration* (amoCRM: 7 requests/s; Pipedrive: a burst per token;
Bitrix24: a leaky bucket per portal; Google: a per-minute quota per service account), not
a process. So a ``syncd sync`` and a ``syncd inspect`` of the same integration, or two
replicas, must share one budget. Each request *reserves a send time* in the integration's
row, in a short transaction (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE``
on SQLite), and the process then sleeps until that time with no lock held.

On SQLite the rows live in a small sidecar database next to the main file
(``syncd.db.rate-budget``): SQLite has one writer lock per file, and a reservation must
never queue behind a pass's page commit, nor wait for a lock its own process holds (a
token refresh keeps the credentials row locked during its HTTP call). PostgreSQL locks
rows, so there the table is in the main database.

Rows are keyed by ``budget_key``: a SHA-256 over the plugin and the integration's identity
(base URL, account, client id or token), so neither a secret nor an account name is stored.
Times are wall-clock seconds (``time.time``): every process sharing a row must run on one
machine (or machines with synchronized clocks).

Two rules, each a pure function of the row's state so they are easy to test:

* ``Window(limit, window, margin, answered_margin)``: at most ``limit`` sends in any
  ``window + margin`` seconds, a send counted from its reserved time until it is answered
  and from its answer after (then ``window + answered_margin`` is enough); the state keeps
  the reservations and the answers still inside their span;
* ``Bucket(burst, rate, margin)``: a leaky bucket (Bitrix24): each request adds 1, the
  level drains at ``rate``/s, and a request may go while the level stays at most
  ``burst - margin``; the state is the time the bucket would be empty (GCRA).

Both also honour ``blocked_until`` (set when the CRM said "nothing left": an
``x-ratelimit-remaining: 0`` or a Bitrix24 503), so one process's pause holds for all.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from syncd.ratelimit import RateLimiter, SharedBudget
from syncd.store.db import SQLITE_BUSY_TIMEOUT_MS, Database, _sqlite_path
from syncd.store.models import RateBudgetRow as R


def budget_key(plugin: str, *identity: str | None) -> str:
    """The row key of one integration: a hash, never the identity itself."""
    text = "\x1f".join(["syncd-rate-budget", plugin, *(part or "" for part in identity)])
    return hashlib.sha256(text.encode()).hexdigest()


class Rule(Protocol):
    def reserve(self, state: dict[str, Any], now: float) -> float:
        """Pick the earliest allowed send time >= ``now``; update ``state`` in place."""


@dataclass(frozen=True)
class Window:
    """``margin`` covers a reservation not yet answered: the request may leave (and reach
    the server) later than its reserved time, when a busy machine wakes its thread late.
    Once answered, its stamp is the answer time, which is never before the server counted
    it; then only ``answered_margin`` (the local limiter's, for the server's timestamp
    granularity) is added. Counting every stamp with the wide margin made each window of a
    long pull ``margin - answered_margin`` longer than the server's (Pipedrive: 2.2 s per
    20 requests instead of 2.1, 5% of the pull; issue 13 item 7)."""

    limit: int
    window: float
    margin: float = 0.0
    #: the margin of a stamp that was answered (None: ``margin``)
    answered_margin: float | None = None

    def reserve(self, state: dict[str, Any], now: float) -> float:
        """``state["stamps"]``: reserved sends not answered yet (a state written before
        answers were kept holds only these: counted with the wide margin, the safe side);
        ``state["answered"]``: the answer times of settled ones."""
        short = self.window + (self.margin if self.answered_margin is None
                               else self.answered_margin)
        pending = [s for s in map(float, state.get("stamps", []))
                   if s + self.window + self.margin > now]
        answered = [s for s in map(float, state.get("answered", [])) if s + short > now]
        at = max(now, float(state.get("blocked_until", 0.0)),
                 *pending, *answered)  # reservations stay in order
        expiries = sorted([s + self.window + self.margin for s in pending]
                          + [s + short for s in answered])
        if len(expiries) >= self.limit:
            at = max(at, expiries[-self.limit])
        state["stamps"] = [*sorted(pending), at]
        state["answered"] = sorted(answered)
        return at

    def settle(self, state: dict[str, Any], reserved: float, answered: float) -> float:
        """The send reserved at ``reserved`` was answered at ``answered``: the server
        counted it by then, so it moves from the reservations to the answers, stamped
        there (and counted with the answered margin). A send that left late (a loaded
        machine woke its thread after the reserved time) then still counts in the window
        the server saw it in, not only within ``margin`` of its reservation."""
        pending = [float(s) for s in state.get("stamps", [])]
        if reserved in pending:
            pending.remove(reserved)
            state["stamps"] = pending
            state["answered"] = sorted([*map(float, state.get("answered", [])),
                                        max(reserved, answered)])
        return answered


@dataclass(frozen=True)
class Bucket:
    burst: int
    rate: float
    margin: float = 0.0

    def reserve(self, state: dict[str, Any], now: float) -> float:
        empty_at = float(state.get("empty_at", 0.0))
        headroom = max(self.burst - self.margin - 1.0, 0.0) / self.rate
        at = max(now, float(state.get("blocked_until", 0.0)), empty_at - headroom)
        state["empty_at"] = max(empty_at, at) + 1.0 / self.rate
        return at

    def saturate(self, state: dict[str, Any], now: float) -> float:
        """The portal refused a request: its bucket is full now."""
        state["empty_at"] = max(float(state.get("empty_at", 0.0)), now + self.burst / self.rate)
        return now


class BudgetStore:
    """Reserve send times in the ``rate_budgets`` table of one database."""

    def __init__(self, db: Database) -> None:
        self.dialect = db.dialect
        self._engine = db.engine if self.dialect == "postgresql" else _sidecar(db)

    def reserve(self, key: str, rule: Rule, clock: Callable[[], float] = time.time) -> float:
        """Reserve one send for ``key`` under ``rule``; returns the reserved time.

        ``clock`` is read once the row is locked: waiting for the lock (a pass's commit
        holds SQLite's) must not make the reservation look older than its send."""
        return self._update(key, lambda state: rule.reserve(state, clock()))

    def settle(self, key: str, rule: Rule, reserved: float,
               clock: Callable[[], float] = time.time) -> None:
        """The send reserved at ``reserved`` is answered now (``Window.settle``)."""
        settle = getattr(rule, "settle", None)
        if settle is not None:
            self._update(key, lambda state: settle(state, reserved, clock()))

    def block(self, key: str, until: float) -> None:
        """No send for ``key`` before ``until`` (the CRM said the budget is spent)."""
        def extend(state: dict[str, Any]) -> float:
            state["blocked_until"] = max(float(state.get("blocked_until", 0.0)), until)
            return until
        self._update(key, extend)

    def saturate(self, key: str, rule: Bucket, clock: Callable[[], float] = time.time) -> None:
        """The CRM refused a request: count ``key``'s bucket as full from now."""
        self._update(key, lambda state: rule.saturate(state, clock()))

    def states(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(R.key, R.state).where(R.key.in_(list(keys))))
            return {key: json.loads(state) for key, state in rows}

    # --- one locked read-modify-write ----------------------------------------------------
    def _update(self, key: str, change: Any) -> float:
        if self.dialect == "sqlite":
            with self._engine.connect() as connection:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    result = self._change(connection, key, change, lock=False)
                except BaseException:
                    connection.exec_driver_sql("ROLLBACK")
                    raise
                connection.exec_driver_sql("COMMIT")
                return result
        with self._engine.begin() as connection:
            # A reservation lost in a crash costs nothing (its request died with it):
            # no need to wait for the WAL flush, which is most of a commit's time.
            connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
            return self._change(connection, key, change, lock=True)

    def _change(self, connection: Connection, key: str, change: Any, *, lock: bool) -> float:
        query = select(R.state).where(R.key == key)
        raw = connection.execute(query.with_for_update() if lock else query).scalar()
        if raw is None:
            insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
            connection.execute(insert(R).values(key=key, state="{}")
                               .on_conflict_do_nothing(index_elements=["key"]))
            raw = connection.execute(query.with_for_update() if lock else query).scalar_one()
        state = json.loads(raw)
        result = change(state)
        connection.execute(update(R).where(R.key == key).values(
            state=json.dumps(state, separators=(",", ":"))))
        return float(result)


_sidecars: dict[Path, Engine] = {}
_sidecars_lock = threading.Lock()


def sidecar_path(db: Database) -> Path | None:
    """Where a SQLite database keeps its rate budgets (None: in-memory, nothing to share)."""
    path = _sqlite_path(db.url)
    return None if path is None else path.with_name(path.name + ".rate-budget")


def _sidecar(db: Database) -> Engine:
    """One engine per sidecar file and process: autocommit connections on which we issue
    ``BEGIN IMMEDIATE`` ourselves, so a reservation's read and write are one locked
    transaction."""
    path = sidecar_path(db)
    if path is None:
        message = "an in-memory SQLite database has no rate budget to share"
        raise ValueError(message)
    with _sidecars_lock:
        engine = _sidecars.get(path)
        if engine is None:
            engine = create_engine(f"sqlite:///{path}", isolation_level="AUTOCOMMIT",
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _sidecar_pragmas)
            with _sidecar_lock(path):
                R.__table__.create(engine, checkfirst=True)
            _sidecars[path] = engine
        return engine


def _sidecar_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL, and no fsync: a reservation lost in a power cut costs nothing."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=OFF")
    finally:
        cursor.close()


@contextlib.contextmanager
def _sidecar_lock(path: Path) -> Iterator[None]:
    """Processes creating the sidecar's table at once: one at a time."""
    with path.with_name(path.name + "-lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def rule_for(limiter: Any) -> Window | Bucket:
    """The shared rule matching a limiter. Its margin is wider than the local one while
    a reservation is unanswered: a reservation is a send time, and the server counts the
    arrival, which a busy machine can delay by a scheduling slice or two. An answered one
    is counted from its answer, with the local margin."""
    if isinstance(limiter, RateLimiter):
        return Window(limiter.limit, limiter.window,
                      max(limiter.margin, 0.1 * limiter.window), limiter.margin)
    return Bucket(limiter.burst, limiter.rate, max(limiter.margin, 1.0))


def share_rate_budgets(connector: Any, db: Database | None) -> int:
    """Give a connector's limiters the budgets they share with every process using
    ``db``. A connector opts in with ``rate_budgets() -> [(limiter, key), ...]``; limiters
    on an injected clock (tests) keep to themselves. Returns how many were shared."""
    budgets = getattr(connector, "rate_budgets", None)
    if db is None or budgets is None or (db.dialect == "sqlite" and sidecar_path(db) is None):
        return 0
    store = BudgetStore(db)
    shared = 0
    for limiter, key in budgets():
        if getattr(limiter, "_clock", None) is not time.monotonic:
            continue
        limiter.shared = SharedBudget(store, key, rule_for(limiter))
        shared += 1
    return shared


__all__ = ["Bucket", "BudgetStore", "Rule", "Window", "budget_key", "rule_for",
           "share_rate_budgets"]
