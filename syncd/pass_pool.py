"""Tenant passes in worker processes (``replica.worker_processes``): one replica, every core.

A replica (one ``syncd run``) is one Python process, and Python runs one thread's bytecode
at a time: passes in worker threads (``workers``) overlap their waits (rate limits, the
network), but their CPU work (storing pages, the audit, karma, the report) shares one
core. With ``worker_processes: true`` each of the ``workers`` passes run at once has a
worker process of its own (a pool of ``workers`` processes, started once and kept;
spawned, not forked: no thread of the replica is copied half-way through a lock), while
the replica's own process keeps what there is one of per replica: the schedule (claims),
releasing leases, the web side, metrics, digests and retention. On SQLite this is how one
machine's cores serve one database file (a second replica is refused there); the replica
holds the file's lock for its workers.

- **The lease** of a pass in a worker is renewed by that worker (its own ``Heartbeat``,
  same holder and fence; once as it starts, then every ``heartbeat_seconds``), so the
  worker's fencing (``FencedDatabase``, ``LeaseGuard``) knows its deadline as a thread's
  does. The replica's heartbeat renews it as well (the same row, harmlessly twice) until
  the pass returns or its worker is found dead.
- **Stopping**: the replica's stop (SIGTERM, SIGINT) sets an event the workers share; a
  pass stops at its next page boundary, as in a thread. Workers ignore SIGINT (a
  terminal's Ctrl-C reaches the whole process group; the replica decides). Run under
  systemd with ``KillMode=mixed`` (deploy/syncd.service): SIGTERM to the replica only.
- **Metrics**: a worker counts its API answers and returns them with the outcome, with
  the pass's CPU time; the replica adds them to its own metrics (one ``/metrics``).
- **A worker that dies** (killed, out of memory) breaks the pool: every pass in it ends as
  failed (its lease released, the tenant due again), and a new pool is started.
- A tenant that cannot be sent to a worker (a plugin rule whose check is a lambda does not
  pickle) runs in the replica's own process instead, logged once per tenant.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from syncd.http import response_observer
from syncd.lease import Heartbeat, Lease
from syncd.secrets import redact

log = logging.getLogger(__name__)

#: What a worker process builds once: ``factory(setup, stop_event) -> runner`` (a picklable
#: module-level function; the runner has ``db`` and ``run_under_lease(tenant, lease)``).
RunnerFactory = Callable[[Any, Any], Any]


@dataclass
class PoolPass:
    """What a worker hands back for one pass."""

    #: The runner's ``TenantOutcome``; None when the worker died (``error`` says so).
    outcome: Any
    lease_lost: bool = False
    #: HTTP status -> answers, for the replica's API metrics.
    statuses: dict[int, int] = field(default_factory=dict)
    #: The pass's own CPU time in the worker.
    cpu_seconds: float = 0.0
    pid: int = 0
    error: str | None = None


class PassPool:
    """``processes`` worker processes that run tenant passes; see the module docstring."""

    def __init__(self, processes: int, factory: RunnerFactory, setup: Any, *,
                 lease_seconds: float, heartbeat_seconds: float) -> None:
        self.processes = processes
        self._factory = factory
        self._setup = setup
        self._context = multiprocessing.get_context("spawn")
        self.stop_event = self._context.Event()
        self._ttl = lease_seconds
        self._beat = heartbeat_seconds
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        #: Tenant key -> (the tenant object last checked, whether it pickles): checked once
        #: per object (a reloaded tenant file is a new object, checked again).
        self._checked: dict[str, tuple[Any, bool]] = {}
        self._closing = False

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.processes, mp_context=self._context,
                    initializer=_start_worker,
                    initargs=(self._factory, self._setup, self.stop_event))
            return self._executor

    def can_run(self, tenant: Any) -> bool:
        """Whether ``tenant`` can be sent to a worker (it pickles); logged once if not."""
        checked = self._checked.get(tenant.key)
        if checked is not None and checked[0] is tenant:
            return checked[1]
        try:
            pickle.dumps(tenant)
            ok = True
        except Exception as exc:
            ok = False
            log.warning("tenant %s: its passes run in the replica's own process (it cannot "
                        "be sent to a worker process: %s)", tenant.key, type(exc).__name__)
        self._checked[tenant.key] = (tenant, ok)
        return ok

    def run(self, tenant: Any, lease: Lease) -> PoolPass:
        """Run one pass of ``tenant`` under ``lease`` in a worker; blocks until it ends."""
        executor = self._pool()
        try:
            future = executor.submit(_run_pass, tenant, lease.tenant_key, lease.fence,
                                     lease.holder, lease.renewed_at, self._ttl, self._beat)
            result: PoolPass = future.result()
        except BrokenProcessPool:
            if self._closing:
                message = ("the pass was still running when the replica stopped (drain "
                           "budget spent); it ended with its worker process")
                return PoolPass(None, error=message)
            self._restart(executor)
            message = ("the worker process running this pass died (killed, or out of "
                       "memory); the pass did not finish")
            log.error("tenant %s: %s", tenant.key, message,  # noqa: TRY400 (no use)
                      extra={"tenant": tenant.key})
            return PoolPass(None, error=message)
        except Exception as exc:  # the pass's outcome could not come back (pickling)
            message = redact(f"the worker process's answer was lost: {type(exc).__name__}: "
                             f"{exc}")
            log.exception("tenant %s: %s", tenant.key, message, extra={"tenant": tenant.key})
            return PoolPass(None, error=message)
        if result.lease_lost:
            lease.lost.set()
        return result

    def _restart(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def stop(self) -> None:
        """Ask the passes in the workers to stop at their next page boundary."""
        self.stop_event.set()

    def close(self) -> None:
        """End the workers: idle ones exit, a pass still running (past the drain budget) is
        killed, its lease left to expire."""
        with self._lock:
            executor, self._executor = self._executor, None
            self._closing = True
        if executor is None:
            return
        # ProcessPoolExecutor has no public way to end busy workers before Python 3.14
        # (terminate_workers): its process table (a private attribute, there since 3.2).
        processes = list(getattr(executor, "_processes", {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + 5
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


# -- in the worker process ---------------------------------------------------------------------
#: This worker's runner, built once by ``_start_worker``.
_worker: dict[str, Any] = {}


def _start_worker(factory: RunnerFactory, setup: Any, stop_event: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker["runner"] = factory(setup, stop_event)


def _run_pass(tenant: Any, key: str, fence: int, holder: str, renewed_at: float,
              ttl: float, beat: float) -> PoolPass:
    """One pass in this worker: the lease renewed here, API answers counted."""
    runner = _worker["runner"]
    lease = Lease(key, fence, holder)
    lease.renewed_at = renewed_at  # monotonic time is the machine's, not the process's
    heartbeat = Heartbeat(runner.db, timedelta(seconds=ttl), beat)
    heartbeat.add(lease)
    heartbeat.beat()  # the deadline from now on is this process's own renewal's
    heartbeat.start()
    statuses: Counter[int] = Counter()

    def observe(status: int) -> None:
        statuses[status] += 1

    token = response_observer.set(observe)
    started = time.thread_time()
    try:
        outcome = runner.run_under_lease(tenant, lease)
    finally:
        response_observer.reset(token)
        heartbeat.remove(lease)
        heartbeat.stop()
    return PoolPass(outcome, lease.lost.is_set(), dict(statuses),
                    time.thread_time() - started, os.getpid())
