"""The daemon: every tenant on its interval, one tenant's failure isolated, clean stop.

Signal handlers only set flags. The first SIGTERM/SIGINT asks for a warm stop: the running
pass finishes its current page (committed with its cursor) and returns; no new pass starts.
A second signal exits at once (exit code 130); committed data is consistent either way.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import schedule

from syncd import secrets, store
from syncd.config import Settings, Tenant
from syncd.errors import SyncdError
from syncd.plugins import Plugins
from syncd.report import build_report, write_report
from syncd.secrets import redact
from syncd.sync import Interrupted, PassOptions, PassSummary, run_pass

log = logging.getLogger(__name__)


@dataclass
class TenantOutcome:
    tenant: str
    ok: bool
    summary: PassSummary | None = None
    error: str | None = None
    report: str | None = None
    interrupted: bool = False


@dataclass
class Runner:
    """Runs tenant passes with failure isolation; shared by `syncd sync` and `syncd run`."""

    settings: Settings
    plugins: Plugins
    db: store.Database
    options_factory: Callable[[], PassOptions] = PassOptions
    stop_event: threading.Event = field(default_factory=threading.Event)

    def run_tenant(self, tenant: Tenant, options: PassOptions | None = None) -> TenantOutcome:
        options = options or self.options_factory()
        options.stop_requested = self.stop_event.is_set
        try:
            summary = run_pass(self.db, self.plugins, tenant, options)
        except Interrupted as exc:
            log.warning("tenant %s: %s", tenant.key, exc)
            return TenantOutcome(tenant.key, ok=False, error=str(exc), interrupted=True)
        except Exception as exc:  # isolate: one tenant's failure never stops the others
            message = redact(f"{type(exc).__name__}: {exc}")
            level = logging.ERROR if isinstance(exc, SyncdError) else logging.CRITICAL
            log.log(level, "tenant %s failed: %s", tenant.key, message,
                    exc_info=not isinstance(exc, SyncdError))
            self._notify_error(tenant.key, exc)
            return TenantOutcome(tenant.key, ok=False, error=message)
        path = self._write_report(tenant, options)
        return TenantOutcome(tenant.key, ok=True, summary=summary, report=path)

    def _write_report(self, tenant: Tenant, options: PassOptions) -> str | None:
        try:
            report = build_report(self.db, tenant, as_of=options.as_of)
            path = str(write_report(report, self.settings.reports_dir))
        except Exception:
            log.exception("tenant %s: the report could not be written", tenant.key)
            return None
        if options.as_of is None:
            self._publish_report(tenant, report)
        return path

    def _publish_report(self, tenant: Tenant, report: dict[str, Any]) -> None:
        """Hand the report to every sink the tenant file lists (``reports:``)."""
        for sink, raw_options in tenant.config.reports.items():
            try:
                sink_options = {**secrets.resolve_all(raw_options, tenant.file.parent),
                                "sink": sink}
                self.plugins.hook.syncd_publish_report(tenant=tenant, report=report,
                                                       options=sink_options)
            except (SyncdError, secrets.SecretError) as exc:
                log.error("tenant %s: report sink %s failed: %s", tenant.key, sink,  # noqa: TRY400
                          redact(str(exc)))
            except Exception:
                log.exception("tenant %s: report sink %s failed", tenant.key, sink)

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
            outcomes.append(self.run_tenant(tenant))
        return outcomes


class Daemon:
    """`syncd run`: a dedicated ``schedule.Scheduler``, waits on an Event, never bare sleeps."""

    def __init__(self, runner: Runner, tenants: Sequence[Tenant], *,
                 max_passes: int | None = None) -> None:
        self.runner = runner
        self.tenants = list(tenants)
        self.scheduler = schedule.Scheduler()
        self.max_passes = max_passes
        self.passes = 0
        self.signals = 0

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            raise KeyboardInterrupt  # cold stop: the second signal
        log.warning("%s received: finishing the current page, then stopping",
                    signal.Signals(signum).name)
        self.runner.stop_event.set()

    def _job(self, tenant: Tenant) -> None:
        if self.runner.stop_event.is_set():
            return
        outcome = self.runner.run_tenant(tenant)
        self.passes += 1
        if outcome.ok and outcome.summary is not None:
            log.info("tenant %s: pass ok in %.1fs, %d open violations, writes %s",
                     tenant.key, outcome.summary.seconds, outcome.summary.violations_open,
                     outcome.summary.writes)
        if self.max_passes is not None and self.passes >= self.max_passes:
            self.runner.stop_event.set()

    def run(self) -> None:
        """Run every tenant now, then each on its interval, until stopped."""
        for tenant in self.tenants:
            self.scheduler.every(tenant.interval_minutes).minutes.do(self._job, tenant)
            log.info("tenant %s scheduled every %d min", tenant.key, tenant.interval_minutes)
        self.scheduler.run_all()  # first pass for everyone at start
        while not self.runner.stop_event.is_set():
            self.scheduler.run_pending()
            idle = self.scheduler.idle_seconds
            wait = 60.0 if idle is None else max(0.0, min(idle, 60.0))
            self.runner.stop_event.wait(wait)
        log.info("stopped after %d passes", self.passes)

    def status(self) -> dict[str, Any]:
        return {"passes": self.passes, "jobs": len(self.scheduler.get_jobs())}
