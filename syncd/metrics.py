"""Prometheus metrics of the daemon (prometheus-client), served at ``/metrics``.

Names follow the Prometheus conventions: one ``syncd_`` prefix, base units, ``_total`` on
counters. The ``tenant`` label is the tenant key from the config (bounded: one per tenant
file); nothing else a CRM sends ever becomes a label value, and no secret is a label.
Each ``Metrics`` has its own registry, so tests and benchmarks can make several.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from syncd import __version__

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600)
#: Pass start lag: a poll (5 s by default) is the floor; an interval (15 min) is the alarm.
LAG_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)


class Metrics:
    """The daemon's counters, gauges and histograms in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.syncs = Counter("syncd_syncs", "Tenant passes by outcome "
                             "(ok, failed, interrupted, lease_lost, config_error).",
                             ["tenant", "status"], registry=r)
        self.records_pulled = Counter("syncd_records_pulled", "Records read from the CRM.",
                                      ["tenant"], registry=r)
        self.writes = Counter("syncd_writes", "Values and tasks written back to the CRM.",
                              ["tenant"], registry=r)
        self.api_requests = Counter("syncd_api_requests", "HTTP requests sent to the CRM.",
                                    ["tenant"], registry=r)
        self.api_rate_limited = Counter("syncd_api_rate_limited",
                                        "CRM answers 429 (rate limited).", ["tenant"],
                                        registry=r)
        self.sync_duration = Histogram("syncd_sync_duration_seconds",
                                       "Duration of one tenant pass.", ["tenant"],
                                       buckets=DURATION_BUCKETS, registry=r)
        self.pass_cpu = Histogram("syncd_pass_cpu_seconds",
                                  "CPU time of one tenant pass (its own thread or worker "
                                  "process): what sizing a replica's tenants is about.",
                                  ["tenant"], buckets=DURATION_BUCKETS, registry=r)
        self.pass_start_lag = Histogram(
            "syncd_pass_start_lag_seconds", "How late a scheduled pass starts: its claim "
            "time minus its due time (last start + interval, or the expiry of a lease taken "
            "over); passes asked for now (new tenant, webhook) are not observed.",
            buckets=LAG_BUCKETS, registry=r)
        self.last_success = Gauge("syncd_last_success_timestamp_seconds",
                                  "When the tenant's last pass succeeded (Unix time).",
                                  ["tenant"], registry=r)
        self.lease_claims = Counter("syncd_lease_claims", "Tenant leases claimed by this "
                                    "replica.", registry=r)
        self.lease_lost = Counter("syncd_lease_lost", "Leases lost while a pass ran "
                                  "(another replica took the tenant over).", registry=r)
        self.webhooks = Counter("syncd_webhooks", "Webhook calls by result (accepted, "
                                "echo, unauthorized, bad_payload, unknown_tenant).",
                                ["tenant", "result"], registry=r)
        self.tenants_running = Gauge("syncd_tenants_running",
                                     "Tenant passes running in this replica.", registry=r)
        self.tenant_config_errors = Gauge(
            "syncd_tenant_config_errors", "Errors in the tenant's file (0: it loads; more: "
            "the tenant is skipped until the file is fixed).", ["tenant"], registry=r)
        self.reports = Counter("syncd_reports", "Report files after good passes by outcome "
                               "(written; unchanged: kept, the pass changed nothing the "
                               "report shows; deferred: kept, built within the tenant's "
                               "report_minutes; failed).", ["tenant", "outcome"], registry=r)
        self.digests = Counter("syncd_digests", "Digest deliveries by outcome (sent, retry, "
                               "failed).", ["tenant", "kind", "channel", "status"], registry=r)
        self.scheduler_tick = Gauge("syncd_scheduler_last_tick_timestamp_seconds",
                                    "When the scheduler loop last ran (Unix time).",
                                    registry=r)
        build = Gauge("syncd_build_info", "Always 1; the version in a label.", ["version"],
                      registry=r)
        build.labels(version=__version__).set(1)

    def count_responses(self, tenant: str, statuses: dict[int, int]) -> None:
        """Add a worker process's answer counts (status -> answers) for ``tenant``."""
        total = sum(statuses.values())
        if total:
            self.api_requests.labels(tenant=tenant).inc(total)
        if statuses.get(429):
            self.api_rate_limited.labels(tenant=tenant).inc(statuses[429])

    def response_observer(self, tenant: str) -> Callable[[int], None]:
        """Counts one tenant's API answers (see ``syncd.http.response_observer``)."""
        requests = self.api_requests.labels(tenant=tenant)
        limited = self.api_rate_limited.labels(tenant=tenant)

        def observe(status: int) -> None:
            requests.inc()
            if status == 429:
                limited.inc()
        return observe

    def record_pass(self, tenant: str, status: str, seconds: float, pulled: int = 0,
                    writes: int = 0, cpu_seconds: float | None = None) -> None:
        self.syncs.labels(tenant=tenant, status=status).inc()
        self.sync_duration.labels(tenant=tenant).observe(seconds)
        if cpu_seconds is not None:
            self.pass_cpu.labels(tenant=tenant).observe(cpu_seconds)
        if pulled:
            self.records_pulled.labels(tenant=tenant).inc(pulled)
        if writes:
            self.writes.labels(tenant=tenant).inc(writes)
        if status == "ok":
            self.last_success.labels(tenant=tenant).set(time.time())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["Metrics"]
