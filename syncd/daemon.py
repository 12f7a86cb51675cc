"""The daemon: every tenant on its interval, one tenant's failure isolated, clean stop.

Tenants are claimed through leases in the database (``syncd.lease``), so several replicas
on one PostgreSQL share them, each pass in exactly one replica. Signal handlers only set
flags. The first SIGTERM/SIGINT asks for a warm stop: no new claim, each running pass
finishes its current page (committed with its cursor), its lease is handed back due, and the
process exits within the drain budget. A second signal exits at once (exit code 130);
committed data is consistent either way, and unreleased leases simply expire.

The in-process timers are ``schedule`` jobs on one ``schedule.Scheduler`` per daemon: the
claim tick (every ``poll_seconds``; also at once when a pass ends or a webhook is due), the
digest tick (``syncd.digests.service``, every ``digests.check_seconds``, in its own thread
so a slow SMTP server never delays a claim) and retention (daily). They only say *when this
replica looks*; what is due and who does it lives in the database (the lease table for
passes, ``digest_deliveries`` for digests), so replicas and restarts agree.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

import schedule

if TYPE_CHECKING:
    from syncd.digests.service import DigestService
    from syncd.web import WebServer

from syncd import __version__, exitcodes, history, report_stream, secrets, store
from syncd.config import DigestTimerConfig, ReplicaConfig, Settings, Tenant, TenantSet
from syncd.errors import BadPayloadError, ConfigError, ConfigProblem, SyncdError
from syncd.http import response_observer
from syncd.lease import (
    FencedDatabase,
    Heartbeat,
    Lease,
    SqliteGuard,
    dead_local_holder,
    replica_id,
)
from syncd.metrics import Metrics
from syncd.pass_pool import PassPool
from syncd.plugins import Plugins
from syncd.report_ahead import ReportAhead
from syncd.sdnotify import Notifier
from syncd.secrets import redact
from syncd.sinks import publish_report
from syncd.store import leases
from syncd.sync import Interrupted, PassOptions, PassSummary, run_pass
from syncd.tenantfiles import TenantWatcher

log = logging.getLogger(__name__)


@dataclass
class TenantOutcome:
    tenant: str
    ok: bool
    summary: PassSummary | None = None
    error: str | None = None
    report: str | None = None
    #: What became of the report: "written", "unchanged" (kept: the pass changed nothing
    #: it shows), "deferred" (kept: built within the tenant's ``report_minutes``; the
    #: daemon only) or "failed"; None: no report (the pass failed).
    report_outcome: str | None = None
    interrupted: bool = False
    #: The tenant file did not load: the pass never started (``problems`` says why).
    config_error: bool = False
    problems: list[str] = field(default_factory=list)
    #: The pass's own CPU time (its thread's, or its worker process's); set by the daemon.
    cpu_seconds: float | None = None

    @property
    def partial(self) -> bool:
        """The pass ran to its end, but some records or writes did not make it."""
        return self.ok and self.summary is not None and self.summary.partial


def config_outcome(key: str, problems: Sequence[ConfigProblem]) -> TenantOutcome:
    """The outcome of a tenant whose file does not load (skipped, nothing synced)."""
    texts = [redact(str(problem)) for problem in problems]
    return TenantOutcome(key, ok=False, config_error=True, problems=texts,
                         error="configuration: " + "; ".join(texts))


def log_broken(broken: dict[str, list[ConfigProblem]]) -> None:
    """One error line per problem of each tenant file that does not load."""
    for key, problems in broken.items():
        for problem in problems:
            log.error("tenant %s skipped: %s", key, redact(str(problem)),
                      extra={"tenant": key})


@dataclass
class Runner:
    """Runs tenant passes with failure isolation; shared by `syncd sync` and `syncd run`."""

    settings: Settings
    plugins: Plugins
    db: store.Database
    options_factory: Callable[[], PassOptions] = PassOptions
    stop_event: threading.Event = field(default_factory=threading.Event)
    #: Keep report files within each tenant's ``report_minutes`` when passes only changed
    #: data (``syncd run``); a one-off pass (``syncd sync``) always leaves a current one.
    report_cadence: bool = False

    # Two entry points, one pass: ``run_one_off`` (``syncd sync``, ``syncd demo``) claims the
    # tenant's lease itself, then runs ``run_under_lease``, which the daemon (``syncd run``)
    # calls directly with the lease it claimed. Every pass runs fenced by a lease.

    def run_one_off(self, tenant: Tenant, options: PassOptions | None = None) -> TenantOutcome:
        """One pass outside the daemon (``syncd sync``): it takes the tenant's lease itself,
        so a one-off pass never runs alongside a replica's pass of the same tenant, and
        releases it after (a what-if pass, ``as_of``, leaves the schedule alone)."""
        options = options or self.options_factory()
        replica = self.settings.daemon.replica if self.settings is not None else ReplicaConfig()
        ttl = timedelta(seconds=replica.lease_seconds)
        holder = replica_id("sync")
        with self.db.session() as session:
            leases.ensure_leases(session, [tenant.key])
            before = leases.current(session, tenant.key)
            claim = leases.claim_one(session, tenant.key, holder, ttl=ttl,
                                     dead_holder=dead_local_holder(before.holder))
        if claim is None:
            message = (f"tenant {tenant.key} is being synced by {before.holder} right now "
                       f"(lease until {before.expires_at:%Y-%m-%d %H:%M:%S} UTC); "
                       "try again when it has finished")
            log.error("%s", message)
            return TenantOutcome(tenant.key, ok=False, error=message)
        lease = Lease(tenant.key, claim.fence, holder)
        heartbeat = Heartbeat(self.db, ttl, replica.heartbeat).start()
        heartbeat.add(lease)
        try:
            outcome = self.run_under_lease(tenant, lease, options, spare_core=True)
        finally:
            heartbeat.stop()
        if not lease.lost.is_set():
            with self.db.session() as session:  # a what-if pass leaves the schedule alone
                if options.as_of is not None:
                    leases.release(session, tenant.key, holder, claim.fence,
                                   acquired_at=before.acquired_at)
                else:
                    leases.release(session, tenant.key, holder, claim.fence,
                                   due_now=outcome.interrupted)
        return outcome

    def run_under_lease(self, tenant: Tenant, lease: Lease,
                        options: PassOptions | None = None, *,
                        spare_core: bool = False) -> TenantOutcome:
        """One pass under ``lease``, already claimed (the daemon's, or ``run_one_off``'s):
        every commit and CRM write is fenced by it, and the pass stops at its next page
        boundary when the lease is lost or the runner is asked to stop.

        ``spare_core`` (a one-off pass: nothing else runs beside it): a large tenant's
        report KPIs and violation rows are taken in a process of their own while the pass
        audits and scores (``syncd.report_ahead``), and its baseline audit's chunks are
        audited from both ends, the pass's and another process's (``syncd.spare_audit``)."""
        options = options or self.options_factory()
        ahead: list[ReportAhead] = []
        if spare_core and options.as_of is None:
            def take_ahead() -> None:
                taken = ReportAhead.start_if_large(self.db, tenant, self.settings.reports_dir)
                if taken is not None:
                    ahead.append(taken)

            def order_violations() -> None:
                for taken in ahead:
                    taken.order_violations()
            options.on_pulled = take_ahead
            options.on_verdicts = order_violations
            options.spare_core = True
        try:
            return self._pass_and_report(tenant, lease, options, ahead)
        finally:
            for taken in ahead:
                taken.close()

    def _pass_and_report(self, tenant: Tenant, lease: Lease, options: PassOptions,
                         ahead: list[ReportAhead]) -> TenantOutcome:
        options.stop_requested = lambda: self.stop_event.is_set() or lease.lost.is_set()
        db = FencedDatabase(self.db, lease)
        try:
            self._close_abandoned(db, tenant)
            summary = run_pass(db, self.plugins, tenant, options)
        except Interrupted as exc:
            log.warning("tenant %s: %s", tenant.key, exc)
            return TenantOutcome(tenant.key, ok=False, error=str(exc), interrupted=True)
        except RecursionError:  # a JSON answer nested deeper than Python can decode
            message = ("BadPayloadError: a CRM answer is nested too deeply to be read "
                       "(RecursionError while decoding it); the pass stopped")
            log.error("tenant %s failed: %s", tenant.key, message)  # noqa: TRY400
            self._notify_error(tenant.key, BadPayloadError(message))
            return TenantOutcome(tenant.key, ok=False, error=message)
        except Exception as exc:  # isolate: one tenant's failure never stops the others
            message = redact(f"{type(exc).__name__}: {exc}")
            level = logging.ERROR if isinstance(exc, SyncdError) else logging.CRITICAL
            log.log(level, "tenant %s failed: %s", tenant.key, message,
                    exc_info=not isinstance(exc, SyncdError))
            self._notify_error(tenant.key, exc)
            return TenantOutcome(tenant.key, ok=False, error=message)
        path, written = self._write_report(tenant, options, db, summary,
                                           ahead[0] if ahead else None)
        return TenantOutcome(tenant.key, ok=True, summary=summary, report=path,
                             report_outcome=written)

    @staticmethod
    def _close_abandoned(db: store.Database, tenant: Tenant) -> None:
        """Runs left ``running`` by a dead process are closed as ``abandoned``. Safe: ``db``
        is fenced by the lease this process holds on the tenant, so any other ``running``
        row of the tenant belongs to a process that no longer holds it (and the commit is
        rejected if we lost the lease ourselves)."""
        with db.session() as session:
            tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
            closed = store.close_abandoned_runs(session, tenant_id)
        if closed:
            log.warning("tenant %s: closed %d run(s) left running by a process that is gone",
                        tenant.key, closed, extra={"tenant": tenant.key})

    def _write_report(self, tenant: Tenant, options: PassOptions, db: store.Database,
                      summary: PassSummary | None = None, ahead: ReportAhead | None = None,
                      ) -> tuple[str | None, str]:
        """The tenant's report after a good pass: ``(path, "written" | "unchanged" |
        "failed")``. Streamed (``syncd.report_stream``: never the whole tenant in memory);
        kept as it is after a live pass that changed nothing it shows (docs/operations.md,
        "The report file"). ``ahead``: its KPIs and violation rows, taken beside the
        pass."""
        directory = self.settings.reports_dir
        live = options.as_of is None
        if live and summary is not None:
            cadence = tenant.report_minutes if self.report_cadence else 0
            try:
                kept, why = report_stream.current_report(db, tenant, summary, directory,
                                                         cadence_minutes=cadence)
            except Exception:
                log.exception("tenant %s: the report state could not be read", tenant.key)
                kept, why = None, "state unreadable"
            if kept is not None and why == report_stream.DEFERRED:
                due = report_stream.report_due_at(directory, tenant, cadence)
                log.info("tenant %s: report kept until %s (rebuilt at most every %d "
                         "minutes; the dashboard shows the store live)", tenant.key,
                         f"{due:%Y-%m-%d %H:%M} UTC" if due else "the next pass", cadence,
                         extra={"tenant": tenant.key})
                return str(kept), report_stream.DEFERRED
            if kept is not None:
                log.info("tenant %s: report unchanged (the pass changed nothing it shows)",
                         tenant.key, extra={"tenant": tenant.key})
                return str(kept), report_stream.UNCHANGED
            log.debug("tenant %s: report rebuilt: %s", tenant.key, why)
        kpis_taken, clock, written = None, None, None
        wrote = summary is not None and any(summary.writes.values())
        if ahead is not None and live and not wrote:  # else the store moved after them
            kpis_taken, written = ahead.kpis(), ahead.violations  # rows: asked when reached
            clock = ahead.now if kpis_taken is not None else None
        try:
            report_stream.forget_report(directory, tenant.key)
            parts, stats = report_stream.report_parts(db, tenant, as_of=options.as_of,
                                                      clock=clock, kpis_taken=kpis_taken,
                                                      violations_written=written)
            path = report_stream.write_report(parts, directory)
        except Exception:
            log.exception("tenant %s: the report could not be written", tenant.key)
            return None, "failed"
        if not live:
            return str(path), "written"
        clean = True
        try:  # the day's snapshot for the trends (the day's first rebuild)
            history.record_figures(db, tenant, report_stream.snapshot_figures(parts, stats),
                                   datetime.fromisoformat(parts["as_of"]))
        except Exception:
            clean = False
            log.exception("tenant %s: the day's snapshot could not be stored", tenant.key)
        failures = publish_report(self.plugins, tenant, report_stream.sink_view(parts),
                                  whole=lambda: report_stream.materialise(parts))
        if summary is not None:
            summary.report_sink_failures.extend(failures)
            if clean and not failures:  # else the next pass rebuilds and retries
                try:
                    report_stream.remember_report(db, tenant, summary, path)
                except Exception:
                    log.exception("tenant %s: the report state could not be saved",
                                  tenant.key)
        return str(path), "written"

    def _notify_error(self, tenant: str, error: BaseException) -> None:
        try:
            self.plugins.hook.syncd_on_tenant_error(tenant=tenant, error=error)
        except Exception:
            log.exception("a syncd_on_tenant_error hook failed")

    def run_all(self, tenants: Sequence[Tenant]) -> list[TenantOutcome]:
        outcomes = []
        for tenant in tenants:
            if self.stop_event.is_set():
                break
            outcomes.append(self.run_one_off(tenant))
        return outcomes


class Daemon:
    """`syncd run`: claims due tenants through leases in the database and runs their passes.

    The schedule lives in the lease table (``syncd.store.leases``), not in this process, so
    any number of replicas on one PostgreSQL share the tenants: each pass runs in exactly one
    replica, under a fenced database view, while a heartbeat thread renews its lease. The
    main loop only claims, never syncs, so its tick time doubles as the liveness signal.
    """

    def __init__(self, runner: Runner, tenants: Sequence[Tenant], *,
                 max_passes: int | None = None, replica: ReplicaConfig | None = None,
                 metrics: Metrics | None = None, holder: str | None = None,
                 watcher: TenantWatcher | None = None,
                 broken: dict[str, list[ConfigProblem]] | None = None,
                 digest_timer: DigestTimerConfig | None = None,
                 pool: PassPool | None = None) -> None:
        self.runner = runner
        #: The worker processes that run the passes (``replica.worker_processes``); None:
        #: passes in threads of this process.
        self.pool = pool
        #: The tenants that load (and are enabled); updated in place when files change.
        self.tenants = {tenant.key: tenant for tenant in tenants}
        #: Tenant files that do not load: skipped, reported (log, /readyz, metrics).
        self.broken: dict[str, list[ConfigProblem]] = dict(broken or {})
        #: Each tenant's webhook secret (filled by ``start_web``; refreshed on reload).
        self.webhook_secrets: dict[str, str] = {}
        self.watcher = watcher
        self.replica = replica or ReplicaConfig()
        self.metrics = metrics or Metrics()
        self.holder = holder or replica_id()
        self.max_passes = max_passes
        self.ttl = timedelta(seconds=self.replica.lease_seconds)
        self.heartbeat = Heartbeat(runner.db, self.ttl, self.replica.heartbeat)
        self.passes = 0
        self.signals = 0
        self.last_tick = time.monotonic()
        self.started = False
        self.wake = threading.Event()
        self._running: dict[str, tuple[Lease, threading.Thread]] = {}
        self._pending: dict[str, float] = {}  # webhook-triggered tenant -> when to mark due
        self._lock = threading.Lock()
        self._groups: dict[int, list[str]] = defaultdict(list)
        self._regroup()
        self._report_config()
        self.digest_timer = digest_timer or DigestTimerConfig()
        # Imported here: `syncd sync` (the Runner alone) never sends digests, and the mail
        # and Telegram channels are a sixth of the CLI's import time.
        from syncd.digests.service import DigestService

        self.digests: DigestService = DigestService(
            runner.db, self._tenant_list, holder=self.holder,
            claim_seconds=self.digest_timer.claim_seconds, metrics=self.metrics)
        self._digest_thread: threading.Thread | None = None
        #: The in-process timers (``schedule``); see the module docstring.
        self.timers = schedule.Scheduler()
        # schedule types the interval as int; a float (poll_seconds: 0.5) works the same
        poll, check = self.replica.poll_seconds, self.digest_timer.check_seconds
        self._claim_job = self.timers.every(poll).seconds.do(self.tick)  # type: ignore[arg-type]
        self.timers.every(check).seconds.do(self.start_digests)  # type: ignore[arg-type]
        self.timers.every(1).days.do(self.retention)

    def _tenant_list(self) -> list[Tenant]:
        with self._lock:
            return list(self.tenants.values())

    def _regroup(self) -> None:
        groups: dict[int, list[str]] = defaultdict(list)
        for tenant in self.tenants.values():
            groups[tenant.interval_minutes].append(tenant.key)
        self._groups = groups

    def _report_config(self) -> None:
        """Metrics of the tenant files: errors per file (0: it loads)."""
        gauge = self.metrics.tenant_config_errors
        for key in self.tenants:
            gauge.labels(tenant=key).set(0)
        for key, problems in self.broken.items():
            gauge.labels(tenant=key).set(len(problems))

    # -- tenant files ------------------------------------------------------------------------
    def reload_tenants(self) -> bool:
        """Pick up changed tenant files (cheap when none changed); True when reloaded. A
        pass already running keeps the tenant as it was loaded when it started."""
        if self.watcher is None:
            return False
        found = self.watcher.refresh()
        if found is None:
            return False
        self.apply(found)
        return True

    def apply(self, found: TenantSet) -> None:
        """Make ``found`` the daemon's tenants: new and fixed ones are scheduled, broken
        and removed ones skipped (their running pass, if any, finishes)."""
        loaded = {key: t for key, t in found.loaded.items() if t.config.enabled}
        gone = set(self.tenants) | set(self.broken)
        newly_broken = {key: problems for key, problems in found.broken.items()
                        if [str(p) for p in problems]
                        != [str(p) for p in self.broken.get(key, [])]}
        log_broken(newly_broken)
        for key in sorted(set(loaded) & set(self.broken)):
            log.warning("tenant %s: its file loads again; scheduled", key,
                        extra={"tenant": key})
        added = [key for key in loaded if key not in self.tenants]
        if added:
            with self.runner.db.session() as session:
                leases.ensure_leases(session, added)
        with self._lock:
            self.tenants.clear()
            self.tenants.update(loaded)
            self.broken = dict(found.broken)
            self._regroup()
        for key in gone - set(loaded) - set(found.broken):  # file removed, or disabled
            self.metrics.tenant_config_errors.remove(key)
        if self.webhook_secrets or any(t.config.webhook_secret for t in loaded.values()):
            fresh = webhook_secrets(list(loaded.values()))
            self.webhook_secrets.clear()
            self.webhook_secrets.update(fresh)
        self._report_config()

    # -- signals ---------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            raise KeyboardInterrupt  # cold stop: the second signal
        log.warning("%s received: finishing the current page, then stopping",
                    signal.Signals(signum).name)
        self.stop()

    def stop(self) -> None:
        self.runner.stop_event.set()
        if self.pool is not None:
            self.pool.stop()
        self.wake.set()

    @property
    def stopping(self) -> bool:
        return self.runner.stop_event.is_set()

    # -- the loop --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make sure every configured tenant has a lease row (new ones are due at once)."""
        with self.runner.db.session() as session:
            leases.ensure_leases(session, self.tenants)
            for holder in leases.holders(session):
                if dead_local_holder(holder):  # our predecessor here, killed: no waiting
                    count = leases.expire(session, holder)
                    log.warning("took back %d lease(s) of %s (its process is gone)", count,
                                holder)

    def run(self, on_ready: Callable[[], object] | None = None,
            on_tick: Callable[[], None] | None = None) -> None:
        """Claim and run due tenants until stopped; then drain and release."""
        self.prepare()
        self.heartbeat.start()
        self.started = True
        log.info("replica %s: %d tenant(s), %d worker(s) in %s, lease %.0fs", self.holder,
                 len(self.tenants), self.replica.workers,
                 f"{self.pool.processes} processes" if self.pool else "this process",
                 self.replica.lease_seconds)
        if on_ready is not None:
            on_ready()
        try:
            self._claim_job.run()  # the first claim at once, then every poll_seconds
            self.start_digests()
            while not self.stopping:
                if on_tick is not None:
                    on_tick()
                self.wake.wait(self._wait_seconds())
                if self.stopping:
                    break
                if self.wake.is_set() or self._pending_due():  # a pass ended, a webhook
                    self.wake.clear()
                    self._claim_job.run()  # claims now and restarts its interval
                self.timers.run_pending()
            self._drain()
        finally:
            if self.pool is not None:
                self.pool.close()
            self.heartbeat.stop()
        log.info("stopped after %d passes", self.passes)

    def tick(self) -> list[leases.Claim]:
        """One scheduler step: flush debounced webhooks, claim what is due, start it."""
        self.last_tick = time.monotonic()
        self.metrics.scheduler_tick.set(time.time())
        try:
            self.reload_tenants()
        except Exception:  # never let a reload stop the scheduler; the old set stays
            log.exception("re-reading the tenant files failed")
        self._flush_pending()
        claims: list[leases.Claim] = []
        with self._lock:
            busy = set(self._running)
            groups = {minutes: list(keys) for minutes, keys in self._groups.items()}
        free = self.replica.workers - len(busy)
        if free <= 0 or self.stopping:
            return claims
        try:
            with self.runner.db.session() as session:
                for minutes, keys in groups.items():
                    idle = [key for key in keys if key not in busy]
                    claims += leases.claim_due(session, idle, self.holder,
                                               interval=timedelta(minutes=minutes),
                                               ttl=self.ttl, limit=free - len(claims))
                    if len(claims) >= free:
                        break
        except Exception as exc:  # the database is away: try again next tick
            log.warning("claiming tenants failed: %s", redact(f"{type(exc).__name__}: {exc}"))
            return []
        for claim in claims:
            self._start(claim)
        return claims

    def _wait_seconds(self) -> float:
        """Until the next timer is due or a debounced webhook must be flushed; never longer
        than ``poll_seconds`` (``schedule`` reads the wall clock, which may jump)."""
        idle = self.timers.idle_seconds
        wait = self.replica.poll_seconds if idle is None else min(self.replica.poll_seconds,
                                                                  max(0.0, idle))
        with self._lock:
            if self._pending:
                wait = min(wait, max(0.0, min(self._pending.values()) - time.monotonic()))
        return wait

    def _pending_due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(at <= now for at in self._pending.values())

    # -- digests and retention -------------------------------------------------------------
    def start_digests(self) -> None:
        """The digest timer: one digest tick at a time, in its own thread."""
        if self.stopping or (self._digest_thread is not None
                             and self._digest_thread.is_alive()):
            return
        self._digest_thread = threading.Thread(target=self._digest_tick,
                                               name="syncd-digests", daemon=True)
        self._digest_thread.start()

    def _digest_tick(self) -> None:
        try:
            self.digests.tick()
        except Exception as exc:  # the database is away: the next tick tries again
            log.warning("digests: %s", redact(f"{type(exc).__name__}: {exc}"))

    def retention(self) -> None:
        """The retention timer: forget old digest deliveries."""
        try:
            pruned = self.digests.prune(self.digest_timer.retention_days)
        except Exception as exc:
            log.warning("retention: %s", redact(f"{type(exc).__name__}: {exc}"))
            return
        if pruned:
            log.info("retention: %d digest delivery row(s) older than %d days removed",
                     pruned, self.digest_timer.retention_days)

    def _start(self, claim: leases.Claim) -> None:
        lease = Lease(claim.tenant_key, claim.fence, self.holder)
        self.metrics.lease_claims.inc()
        if claim.late_seconds is not None:
            self.metrics.pass_start_lag.observe(claim.late_seconds)
        log.info("tenant %s claimed (fence %d)", claim.tenant_key, claim.fence,
                 extra={"tenant": claim.tenant_key, "fence": claim.fence,
                        "replica": self.holder})
        thread = threading.Thread(target=self._run_claimed, args=(lease,),
                                  name=f"syncd-pass-{claim.tenant_key}", daemon=True)
        with self._lock:
            self._running[claim.tenant_key] = (lease, thread)
        self.heartbeat.add(lease)
        self.metrics.tenants_running.inc()
        thread.start()

    def _run_claimed(self, lease: Lease) -> None:
        with self._lock:
            tenant = self.tenants.get(lease.tenant_key)
        started = time.monotonic()
        outcome: TenantOutcome | None = None
        try:
            if tenant is None:  # its file broke or went away since the claim
                problems = self.broken.get(lease.tenant_key, [])
                outcome = config_outcome(lease.tenant_key, problems)
            elif self.pool is not None and self.pool.can_run(tenant):
                outcome = self._run_in_worker(tenant, lease, self.pool)
            else:
                outcome = self._run_here(tenant, lease)
        finally:
            self.heartbeat.remove(lease)
            self._finish(lease, outcome, time.monotonic() - started)

    def _run_here(self, tenant: Tenant, lease: Lease) -> TenantOutcome:
        """The pass in this thread (no worker processes)."""
        observer = response_observer.set(self.metrics.response_observer(lease.tenant_key))
        cpu = time.thread_time()
        try:
            outcome = self.runner.run_under_lease(tenant, lease)
        finally:
            response_observer.reset(observer)
        outcome.cpu_seconds = time.thread_time() - cpu
        return outcome

    def _run_in_worker(self, tenant: Tenant, lease: Lease, pool: PassPool) -> TenantOutcome:
        """The pass in a worker process (``syncd.pass_pool``); it renews the lease too."""
        done = pool.run(tenant, lease)
        self.metrics.count_responses(lease.tenant_key, done.statuses)
        if done.outcome is None:
            return TenantOutcome(tenant.key, ok=False, error=done.error)
        log.info("tenant %s: the pass ran in worker process %d (%.1f s of CPU)", tenant.key,
                 done.pid, done.cpu_seconds, extra={"tenant": tenant.key})
        outcome: TenantOutcome = done.outcome
        outcome.cpu_seconds = done.cpu_seconds
        return outcome

    def _finish(self, lease: Lease, outcome: TenantOutcome | None, seconds: float) -> None:
        key = lease.tenant_key
        if lease.lost.is_set():
            status = "lease_lost"
            self.metrics.lease_lost.inc()
        elif outcome is None or outcome.interrupted:
            status = "interrupted"
        elif outcome.config_error:
            status = "config_error"
        else:
            status = "ok" if outcome.ok else "failed"
        summary = outcome.summary if outcome else None
        self.metrics.record_pass(key, status, seconds,
                                 pulled=sum(summary.pulled.values()) if summary else 0,
                                 writes=_write_count(summary.writes) if summary else 0,
                                 cpu_seconds=outcome.cpu_seconds if outcome else None)
        if outcome is not None and outcome.report_outcome is not None:
            self.metrics.reports.labels(tenant=key, outcome=outcome.report_outcome).inc()
        context = {"tenant": key, "fence": lease.fence, "replica": self.holder}
        if status == "ok" and summary is not None:
            log.info("tenant %s: pass ok in %.1fs, %d open violations, writes %s",
                     key, summary.seconds, summary.violations_open, summary.writes,
                     extra=context)
        elif status == "lease_lost":
            log.error("tenant %s: lease lost during the pass; its late commits were rejected",
                      key, extra=context)
        if status != "lease_lost":
            try:
                with self.runner.db.session() as session:
                    # handed back mid-pass (SIGTERM): another replica may take it at once
                    leases.release(session, key, lease.holder, lease.fence,
                                   due_now=status == "interrupted")
            except Exception as exc:
                log.warning("tenant %s: releasing the lease failed (it expires): %s", key,
                            type(exc).__name__)
        with self._lock:
            self._running.pop(key, None)
            self.passes += 1
            done = self.max_passes is not None and self.passes >= self.max_passes
        self.metrics.tenants_running.dec()
        if done:
            self.stop()
        self.wake.set()

    def _drain(self) -> None:
        """Wait for the passes in flight to commit their page and release, within budget."""
        deadline = time.monotonic() + self.replica.drain_seconds
        with self._lock:
            threads = [thread for _, thread in self._running.values()]
        if self._digest_thread is not None:  # a digest being sent finishes, in budget
            threads.append(self._digest_thread)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            left = sorted(self._running)
        if left:
            log.error("drain budget of %.0fs spent; leaving %s to lease expiry",
                      self.replica.drain_seconds, ", ".join(left))

    # -- webhooks ----------------------------------------------------------------------------
    def trigger(self, key: str) -> bool:
        """Ask for a pass of ``key`` soon (a webhook). Calls within the debounce window are
        coalesced into one; False when the call was folded into a pending one."""
        if key not in self.tenants:
            raise KeyError(key)
        if self.stopping:  # no loop left to flush it: mark it due for the other replicas now
            with self.runner.db.session() as session:
                leases.request_sync(session, key)
            return True
        with self._lock:
            if key in self._pending:
                return False
            self._pending[key] = time.monotonic() + self.replica.webhook_debounce_seconds
        self.wake.set()
        return True

    def _flush_pending(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [key for key, at in self._pending.items() if at <= now]
        if not due:
            return
        try:
            with self.runner.db.session() as session:
                for key in due:
                    leases.request_sync(session, key)
        except Exception as exc:
            log.warning("marking webhook tenants due failed: %s", type(exc).__name__)
            return
        with self._lock:
            for key in due:
                self._pending.pop(key, None)

    # -- status ------------------------------------------------------------------------------
    def running(self) -> list[str]:
        with self._lock:
            return sorted(self._running)

    def alive(self, max_age: float | None = None) -> bool:
        """The scheduler loop ticked recently (liveness; no database involved)."""
        limit = max_age or max(30.0, 3 * self.replica.poll_seconds)
        return time.monotonic() - self.last_tick <= limit

    def status(self) -> dict[str, Any]:
        return {"replica": self.holder, "passes": self.passes, "running": self.running(),
                "tenants": len(self.tenants), "stopping": self.stopping,
                "broken_tenants": self.broken_report()}

    def broken_report(self) -> dict[str, list[str]]:
        """Each tenant file that does not load, with its problems (redacted)."""
        with self._lock:
            broken = dict(self.broken)
        return {key: [redact(str(p)) for p in problems] for key, problems in broken.items()}


def _write_count(writes: dict[str, int]) -> int:
    return sum(v for k, v in writes.items() if k in {"fields_written", "tasks_created"})


# -- the service: `syncd run` ----------------------------------------------------------------
def webhook_secrets(tenants: Sequence[Tenant]) -> dict[str, str]:
    """Each tenant's resolved webhook secret (registered for redaction). A tenant whose
    secret cannot be resolved gets no webhook endpoint; the others are unaffected."""
    found = {}
    for tenant in tenants:
        raw = tenant.config.webhook_secret
        if raw is None:
            continue
        try:
            value = (secrets.resolve(raw, tenant.file.parent) if isinstance(raw, dict)
                     else str(raw))
        except (secrets.SecretError, SyncdError) as exc:
            log.error(  # noqa: TRY400 - the message says it all, no traceback
"tenant %s: webhook_secret: %s; its webhooks are disabled", tenant.key,
                      redact(str(exc)))
            continue
        secrets.register(value)
        found[tenant.key] = value
    return found


def start_web(settings: Settings, daemon: Daemon, tenants: Sequence[Tenant],
              plugins: Plugins) -> WebServer | None:
    """Serve the ops routes (and the dashboard's, when installed); None when disabled."""
    from syncd.web import WebApp, WebContext, WebServer, ops

    http = settings.daemon.http
    if not http.enabled:
        return None
    auth_token = None
    if http.auth_token is not None:
        auth_token = (secrets.resolve(http.auth_token, settings.file.parent)
                      if isinstance(http.auth_token, dict) else str(http.auth_token))
        secrets.register(auth_token)
    if not auth_token and not _is_loopback(http.host):
        message = (f"{settings.file}: http.auth_token is required when http.host is "
                   f"{http.host!r} (not a loopback address)")
        raise ConfigError(message)
    daemon.webhook_secrets.update(webhook_secrets(tenants))
    context = WebContext(settings=settings, db=daemon.runner.db, plugins=plugins, extras={
        "daemon": daemon, "metrics": daemon.metrics,
        "tenants": daemon.tenants, "webhook_secrets": daemon.webhook_secrets,
        "auth_token": auth_token,
    })
    app = WebApp()
    ops.register(app, context)
    from syncd.web import dashboard
    dashboard.register(app, context)
    try:
        server = WebServer(app, http.host, http.port)
    except OSError as exc:
        message = f"{settings.file}: http: cannot listen on {http.host}:{http.port}: {exc}"
        raise ConfigError(message) from None
    return server.start()


def _is_loopback(host: str) -> bool:
    if host.strip().lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker process needs to build the daemon's runner (it pickles)."""

    settings: Settings
    log_level: str
    log_format: str


def worker_runner(setup: WorkerSetup, stop_event: Any) -> Runner:
    """In a worker process (``syncd.pass_pool``): the runner ``serve`` builds, with its
    own plugins and database connections, stopped by the replica's shared event."""
    from syncd.logs import setup_logging
    from syncd.plugins import make_plugin_manager

    setup_logging(setup.log_level, setup.log_format)
    runner = daemon_runner(setup.settings, make_plugin_manager(),
                           store.Database(setup.settings.database_url))
    runner.stop_event = stop_event
    return runner


def daemon_runner(settings: Settings, plugins: Plugins, db: store.Database) -> Runner:
    """The runner of ``syncd run``'s passes: its pulls overlap by ``overlap_minutes`` and
    its reports keep their cadence."""
    overlap = timedelta(minutes=settings.daemon.overlap_minutes)
    return Runner(settings, plugins, db, options_factory=lambda: PassOptions(overlap=overlap),
                  report_cadence=True)


def pass_pool(settings: Settings) -> PassPool | None:
    """``replica.worker_processes``: one worker process per pass run at once (``workers``);
    None: passes in threads of this process."""
    from syncd.logs import logging_setup

    replica = settings.daemon.replica
    if not replica.worker_processes:
        return None
    processes = replica.workers
    # Without the cipher made here: a worker makes its own from the same key file.
    setup = WorkerSetup(dataclasses.replace(settings, _cipher=None), *logging_setup())
    return PassPool(processes, worker_runner, setup,
                    lease_seconds=replica.lease_seconds,
                    heartbeat_seconds=replica.heartbeat)


def serve(settings: Settings, plugins: Plugins, db: store.Database, tenants: Sequence[Tenant], *,
          max_passes: int | None = None, holder: str | None = None,
          watcher: TenantWatcher | None = None,
          broken: dict[str, list[ConfigProblem]] | None = None) -> int:
    """Run the daemon with its HTTP side until stopped; returns the exit code. Tenants in
    ``broken`` are reported and skipped; ``watcher`` re-reads changed tenant files."""
    guard = SqliteGuard(db).acquire()  # a second replica on SQLite stops here
    try:
        db.upgrade()
        runner = daemon_runner(settings, plugins, db)
        daemon = Daemon(runner, tenants, max_passes=max_passes,
                        replica=settings.daemon.replica, holder=holder, watcher=watcher,
                        broken=broken, digest_timer=settings.daemon.digests,
                        pool=pass_pool(settings))
        log_broken(daemon.broken)
        daemon.install_signal_handlers()
        server = start_web(settings, daemon, tenants, plugins)
        notifier = Notifier()
        log.warning("syncd %s running %d tenant(s) as replica %s (%d tenant file(s) "
                    "skipped); database %s%s", __version__, len(tenants), daemon.holder,
                    len(daemon.broken), db.redacted_url(),
                    f"; HTTP on {server.url}" if server is not None else "")
        try:
            daemon.run(on_ready=lambda: notifier.ready(f"{len(tenants)} tenant(s)"),
                       on_tick=notifier.watchdog)
        finally:
            notifier.stopping()
            if server is not None:
                server.stop()
        return exitcodes.INTERRUPTED if daemon.signals else exitcodes.OK
    finally:
        guard.release()
