"""Replicas: which tenants this process syncs, fenced so a stalled replica cannot write.

A ``Lease`` is one claimed tenant (its key and fence). ``FencedDatabase`` wraps the store so
that every commit of a pass first locks the tenant's lease row and checks it still carries
our holder id and fence; if not, the transaction rolls back and ``LeaseLost`` is raised.
``sync.run_pass`` commits each page with its cursor and marks every write-back batch in the
ledger *before* calling the CRM, so one check per commit also guards every CRM write batch.

``Heartbeat`` renews the leases this replica holds from a background thread; a renewal that
finds the lease gone, or no successful renewal for half the lease time (database
unreachable), marks the lease lost, and the pass stops at its next page boundary.

Commits are not the only side effects: the write-back phase talks to the CRM between
them. ``fence_crm_calls`` installs a ``LeaseGuard`` as ``syncd.writeguard.write_guard`` for
that phase, so every CRM request attempt (each field batch, each task POST, each retry) first
proves the lease is still ours: (a) the local deadline, the start of the last successful
renewal plus the lease time minus a margin on the monotonic clock (which keeps running
while the process is stopped), has not passed; (b) the lease row still carries our holder
and fence, read from the database at most every ``recheck`` seconds. Once a guard fails
the lease is marked lost and no further request is sent.

``SqliteGuard`` is the single-replica rule for SQLite: an exclusive lock file next to the
database, taken at start and held for the life of the process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.orm import Session

from syncd.errors import SyncdError
from syncd.store import leases
from syncd.store.db import Database, _sqlite_path
from syncd.writeguard import write_guard

log = logging.getLogger(__name__)


class LeaseLost(SyncdError):
    """Another replica owns this tenant now; nothing more may be written for it."""


class ReplicaRefused(SyncdError):
    """This replica may not start (a second replica on SQLite)."""


def replica_id(role: str = "run") -> str:
    """Role, host, pid and a random suffix: unique even when a pid is reused."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def dead_local_holder(holder: str | None) -> str | None:
    """``holder`` if it names a process on this host that no longer exists (a killed
    ``syncd sync`` or replica), else None: its lease can be taken without waiting."""
    if not holder:
        return None
    parts = holder.split(":")
    if len(parts) < 3 or parts[-3] != socket.gethostname() or not parts[-2].isdigit():
        return None
    pid = int(parts[-2])
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return holder
    except PermissionError:
        return None
    return None


class Lease:
    """One claimed tenant. ``lost`` is set once we know it is no longer ours."""

    def __init__(self, tenant_key: str, fence: int, holder: str) -> None:
        self.tenant_key = tenant_key
        self.fence = fence
        self.holder = holder
        self.lost = threading.Event()
        #: Monotonic time at which the last successful renewal (or the claim) *started*:
        #: the database's expiry is at most ``renewed_at + ttl`` in local terms.
        self.renewed_at = time.monotonic()
        #: The lease time in seconds, known once a ``Heartbeat`` renews this lease.
        self.ttl: float | None = None

    def deadline(self) -> float:
        """The monotonic time after which the lease may already be someone else's."""
        if self.ttl is None:
            return math.inf
        return self.renewed_at + self.ttl - deadline_margin(self.ttl)

    def __repr__(self) -> str:
        return f"Lease({self.tenant_key!r}, fence={self.fence})"


def deadline_margin(ttl: float) -> float:
    """How long before the nominal expiry a lease is treated as gone: it absorbs the time
    between the database stamping a claim or renewal and our process noting it."""
    return min(2.0, ttl / 10)


class FencedDatabase(Database):
    """The same database, but each commit proves the lease is still ours first."""

    def __init__(self, inner: Database, lease: Lease) -> None:
        # Share the engine and session factory: no new pool per pass.
        self.url = inner.url
        self.engine = inner.engine
        self._sessions = inner._sessions
        self.lease = lease
        #: The unfenced database: for what a pass may record after losing its lease (its
        #: own run row), never for tenant data.
        self.inner = inner

    def _before_commit(self, session: Session) -> None:
        lease = self.lease
        if lease.ttl is not None and not lease.lost.is_set():
            bound_lock_hold(session, lease.ttl)
        if lease.lost.is_set() or not leases.holds(session, lease.tenant_key, lease.holder,
                                                    lease.fence):
            lease.lost.set()
            message = (f"tenant {lease.tenant_key}: lease lost (fence {lease.fence}); "
                       "another replica owns it, this commit is rejected")
            raise LeaseLost(message)


def bound_lock_hold(session: Session, ttl: float) -> None:
    """On PostgreSQL, end this transaction's session if it sits idle for half the lease
    time: a process frozen (SIGSTOP, VM pause) while holding the lease row's lock would
    otherwise keep every other replica from taking the tenant over (``SKIP LOCKED``)
    until it wakes up. The frozen process's commit then fails and rolls back."""
    if session.get_bind().dialect.name == "postgresql":
        timeout_ms = str(max(100, int(ttl * 500)))
        session.execute(text("SELECT set_config('idle_in_transaction_session_timeout', "
                             ":ms, true)"), {"ms": timeout_ms})


class LeaseGuard:
    """``syncd.writeguard.write_guard`` for one fenced pass: raises ``LeaseLost`` before a CRM
    request when the lease is, or may be, no longer ours (see the module docstring)."""

    def __init__(self, db: FencedDatabase, *, recheck: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.recheck = recheck
        self._clock = clock
        self._checked_at = -math.inf
        self._lock = threading.Lock()
        self.checks = 0  # database checks made (for tests and benchmarks)

    def __call__(self) -> None:
        lease = self.db.lease
        if lease.lost.is_set():
            self._fail("it was already lost")
        now = self._clock()
        if now >= lease.deadline():
            self._fail("not renewed within the lease time (stalled or stopped)")
        with self._lock:
            if now - self._checked_at < self.recheck:
                return
            self._checked_at = now
        self.checks += 1
        with self.db.inner.session() as session:
            row = leases.current(session, lease.tenant_key)
            now_db = leases.db_now(session)
        if (row is None or row.holder != lease.holder or row.fence != lease.fence
                or row.expires_at is None or _aware(row.expires_at) <= now_db):
            self._fail("another replica took it over")

    def _fail(self, why: str) -> None:
        lease = self.db.lease
        if not lease.lost.is_set():
            log.error("tenant %s: lease lost (%s); no further CRM call for this pass",
                      lease.tenant_key, why)
        lease.lost.set()
        message = (f"tenant {lease.tenant_key}: lease lost (fence {lease.fence}, {why}); "
                   "CRM call refused")
        raise LeaseLost(message)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@contextlib.contextmanager
def fence_crm_calls(db: Database, *, recheck: float = 1.0) -> Iterator[LeaseGuard | None]:
    """Guard every CRM request made inside the block by the lease of ``db`` (a
    ``FencedDatabase``); a plain database (tests, tools) runs unguarded."""
    if not isinstance(db, FencedDatabase):
        yield None
        return
    guard = LeaseGuard(db, recheck=recheck)
    token = write_guard.set(guard)
    try:
        yield guard
    finally:
        write_guard.reset(token)


class Heartbeat:
    """Renews every held lease each ``interval`` from one thread."""

    def __init__(self, db: Database, ttl: timedelta, interval: float) -> None:
        self.db = db
        self.ttl = ttl
        self.interval = interval
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="syncd-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def add(self, lease: Lease) -> None:
        # renewed_at stays the claim's time: moving it later would stretch the deadline.
        lease.ttl = self.ttl.total_seconds()
        with self._lock:
            self._held[lease.tenant_key] = lease

    def remove(self, lease: Lease) -> None:
        with self._lock:
            if self._held.get(lease.tenant_key) is lease:
                del self._held[lease.tenant_key]

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """Renew each held lease once; mark the ones we lost or could not renew in time.

        A lease whose pass ended while the beat renewed the others (``remove``, then the
        pass released the row) is no longer ours to renew, and not lost: a renewal that
        finds it released says nothing (on a busy SQLite file each renewal can wait
        seconds for the write lock, and such passes were logged as lost)."""
        with self._lock:
            held = list(self._held.values())
        for lease in held:
            if not self._holds(lease):
                continue
            started = time.monotonic()  # the database stamps the expiry after this
            try:
                with self.db.session() as session:
                    bound_lock_hold(session, self.ttl.total_seconds())
                    ours = leases.renew(session, lease.tenant_key, lease.holder, lease.fence,
                                        ttl=self.ttl)
            except Exception as exc:  # database unreachable: give up before the TTL does
                if not self._holds(lease):
                    continue
                log.warning("tenant %s: lease renewal failed: %s", lease.tenant_key,
                            type(exc).__name__)
                if time.monotonic() - lease.renewed_at > self.ttl.total_seconds() / 2:
                    self._lose(lease, "no renewal for half the lease time")
                continue
            if ours:
                lease.renewed_at = started
            elif self._holds(lease):
                self._lose(lease, "another replica took it over")

    def _holds(self, lease: Lease) -> bool:
        """Whether ``lease``'s pass still runs (it was not ``remove``d since)."""
        with self._lock:
            return self._held.get(lease.tenant_key) is lease

    def _lose(self, lease: Lease, why: str) -> None:
        if not lease.lost.is_set():
            log.error("tenant %s: lease lost (%s); stopping its pass", lease.tenant_key, why)
        lease.lost.set()


class SqliteGuard:
    """An exclusive lock file next to a SQLite database: one replica per database file."""

    def __init__(self, db: Database) -> None:
        self.path: Path | None = None
        self._handle: IO[str] | None = None
        database = _sqlite_path(db.url) if db.dialect == "sqlite" else None
        if database is not None:
            self.path = database.with_name(database.name + ".replica-lock")

    def acquire(self) -> SqliteGuard:
        if self.path is None:
            return self
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            handle.close()
            message = (f"another syncd replica ({other}) already runs on the SQLite database "
                       f"{self.path.with_suffix('')}; SQLite supports one replica only — "
                       "use PostgreSQL (database_url: postgresql://...) to run several")
            raise ReplicaRefused(message) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


__all__ = [
    "FencedDatabase",
    "Heartbeat",
    "Lease",
    "LeaseGuard",
    "LeaseLost",
    "ReplicaRefused",
    "SqliteGuard",
    "dead_local_holder",
    "deadline_margin",
    "fence_crm_calls",
    "replica_id",
]
