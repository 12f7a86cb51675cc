"""Send each due digest once per period and address, whichever replica gets there first.

``DigestService.tick()`` runs every minute in each replica (the daemon's ``schedule``
timer). For every tenant with ``digests:``, for each kind whose slot is due in the tenant's
timezone (``periods.due_slot``), and for every address of every recipient:

1. a cheap read of the period's rows skips what is sent, given up, claimed by a live
   replica, or waiting for its retry time;
2. the digest is built from the tenant's report (once per tenant and tick);
3. ``store.digests.claim`` inserts (or takes over) the (tenant, kind, recipient, period)
   row in its own transaction: exactly one replica wins it;
4. the digest is sent; then the row is marked ``sent`` (or ``retry`` with a backoff and
   the server's ``retry_after``, or ``failed`` after ``max_attempts``).

**At-least-once, not at-most-once.** A process that dies after claiming leaves the row
``claimed``; once its claim expires (``claim_seconds``; at once when the claimer was a
process on this host that no longer exists) the next tick of any replica sends it. If the
death came after the server accepted the message but before the row was marked, that
address gets the digest twice. The other choice, marking before sending, loses the
digest for the whole period on such a crash, silently. Delivery systems that must not lose
messages choose at-least-once and narrow the duplicate window instead (Celery's
``acks_late``, Sidekiq, SQS and Kafka consumers, the transactional outbox): here the
window is one SMTP transaction or one HTTP request, and each e-mail carries a stable
``Message-ID`` per (tenant, kind, period, address), by which mail systems collapse a
duplicate. A sales head would rather see the Monday digest twice in a rare crash than
not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from syncd.config import Tenant
from syncd.digest_config import DigestsConfig
from syncd.digests import channels, render
from syncd.digests.content import Digest, NoTeam, monthly_digest, weekly_digest
from syncd.digests.periods import KINDS, Slot, due_slot, slot_for_period
from syncd.lease import dead_local_holder, replica_id
from syncd.metrics import Metrics
from syncd.report_live import live_report
from syncd.secrets import redact
from syncd.store import Database
from syncd.store import digests as deliveries

log = logging.getLogger(__name__)

DIRECTOR = "director"


@dataclass(frozen=True)
class Target:
    """One address of one person: ``who`` is a manager as configured, or ``director``."""

    who: str
    address: str  # email:<address> | telegram:<chat>

    @property
    def channel(self) -> str:
        return self.address.split(":", 1)[0]

    @property
    def to(self) -> str:
        return self.address.split(":", 1)[1]


@dataclass
class Outcome:
    tenant: str
    kind: str
    period: str
    address: str
    status: str  # sent | retry | failed | busy (another replica has it) | skipped
    error: str | None = None


def targets(config: DigestsConfig, kind: str) -> list[Target]:
    """Every address a digest of ``kind`` goes to."""
    if kind == "weekly":
        return [Target(m.manager, a) for m in config.managers for a in m.addresses()]
    if config.director is None:
        return []
    return [Target(DIRECTOR, a) for a in config.director.addresses()]


def open_of(wanted: list[Target], rows: dict[str, Any], now: datetime) -> list[Target]:
    """The targets no replica has sent, given up, is sending, or waits to retry."""
    return [target for target in wanted
            if target.address not in rows
            or deliveries.claimable(rows[target.address], now,
                                    dead_local_holder(rows[target.address].claimed_by))]


def digest_zone(tenant: Tenant, config: DigestsConfig) -> ZoneInfo:
    return ZoneInfo(config.timezone or tenant.config.timezone)


def digest_language(tenant: Tenant, config: DigestsConfig) -> str:
    return config.language or tenant.config.language


def deal_url_for(tenant: Tenant) -> Callable[[str], str | None]:
    """The CRM link of a deal, when the tenant's connector knows how to make one."""
    connector, settings = tenant.connector_class, tenant.settings

    def url(deal_id: str) -> str | None:
        try:
            return connector.deal_url(settings, deal_id)
        except Exception:  # a link is a convenience: never a reason not to send
            return None
    return url


def compose(tenant: Tenant, report: dict[str, Any], slot: Slot, who: str, *,
            now: datetime) -> Digest:
    """The digest ``who`` gets for ``slot`` (raises ``NoTeam`` for an unknown manager)."""
    config = tenant.config.digests
    assert config is not None
    language = digest_language(tenant, config)
    if slot.kind == "weekly":
        return weekly_digest(report, tenant.book, slot, who, language=language,
                             top=config.weekly.top, now=now, deal_url=deal_url_for(tenant))
    return monthly_digest(report, tenant.book, slot, language=language)


class DigestService:
    """Due digests, claimed in the store, sent, marked. One per replica."""

    def __init__(self, db: Database, tenants: Callable[[], Iterable[Tenant]], *,
                 holder: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 claim_seconds: float = 300, metrics: Metrics | None = None) -> None:
        self.db = db
        self.tenants = tenants
        self.holder = holder or replica_id("digests")
        self.clock = clock
        self.claim_ttl = timedelta(seconds=claim_seconds)
        self.metrics = metrics
        self._warned: set[tuple[str, str, str]] = set()

    # -- the timer ---------------------------------------------------------------------------
    def tick(self) -> list[Outcome]:
        """Send what is due now; one tenant's failure never stops the others. The rows of
        every due period are read in one query per (kind, period), not one per tenant."""
        now = self.clock()
        due: list[tuple[Tenant, DigestsConfig, list[Slot]]] = []
        for tenant in list(self.tenants()):
            config = tenant.config.digests
            if config is None or not config.enabled:
                continue
            try:
                zone = digest_zone(tenant, config)
                slots = [slot for kind in KINDS
                         if (slot := due_slot(kind, config, zone, now)) is not None]
            except Exception as exc:  # a bad zone or schedule hurts only its tenant
                self._tenant_failed(tenant, exc)
                continue
            if slots:
                due.append((tenant, config, slots))
        if not due:
            return []
        sent = self._rows({(slot.kind, slot.period): [] for _, _, slots in due
                           for slot in slots}, due)
        outcomes: list[Outcome] = []
        for tenant, config, slots in due:
            try:
                outcomes += self._tenant(tenant, config, slots, sent, now)
            except Exception as exc:
                self._tenant_failed(tenant, exc)
        return outcomes

    @staticmethod
    def _tenant_failed(tenant: Tenant, exc: Exception) -> None:
        log.error("tenant %s: digests failed: %s", tenant.key,
                  redact(f"{type(exc).__name__}: {exc}"), extra={"tenant": tenant.key})

    def _rows(self, periods: dict[tuple[str, str], list[str]],
              due: list[tuple[Tenant, DigestsConfig, list[Slot]]],
              ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """``(tenant, kind, period) -> recipient -> row`` of every due period."""
        for tenant, _, slots in due:
            for slot in slots:
                periods[(slot.kind, slot.period)].append(tenant.key)
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        with self.db.session() as session:
            for (kind, period), keys in periods.items():
                for row in deliveries.deliveries_of(session, kind, period, keys):
                    found.setdefault((row.tenant_key, kind, period), {})[row.recipient] = row
        return found

    def _tenant(self, tenant: Tenant, config: DigestsConfig, slots: list[Slot],
                rows: dict[tuple[str, str, str], dict[str, Any]],
                now: datetime) -> list[Outcome]:
        outcomes: list[Outcome] = []
        report: dict[str, Any] | None = None
        for slot in slots:
            todo = open_of(targets(config, slot.kind),
                           rows.get((tenant.key, slot.kind, slot.period), {}), now)
            if not todo:
                continue
            if report is None:
                report = live_report(self.db, tenant, clock=now,
                                     language=digest_language(tenant, config))
            outcomes += self.deliver(tenant, slot, todo, report, now)
        return outcomes

    def open_targets(self, tenant: Tenant, config: DigestsConfig, slot: Slot,
                     now: datetime) -> list[Target]:
        """The targets of ``slot`` that no replica has sent, given up or is sending."""
        with self.db.session() as session:
            rows = {row.recipient: row for row in deliveries.deliveries(
                session, tenant.key, slot.kind, slot.period)}
        return open_of(targets(config, slot.kind), rows, now)

    def deliver(self, tenant: Tenant, slot: Slot, todo: list[Target],
                report: dict[str, Any], now: datetime) -> list[Outcome]:
        outcomes = []
        composed: dict[str, Digest | None] = {}
        for target in todo:
            if target.who not in composed:
                composed[target.who] = self._compose(tenant, report, slot, target.who, now)
            digest = composed[target.who]
            if digest is None:
                outcomes.append(Outcome(tenant.key, slot.kind, slot.period, target.address,
                                        "skipped"))
                continue
            outcomes.append(self._send_claimed(tenant, slot, target, digest, now))
        return outcomes

    def _compose(self, tenant: Tenant, report: dict[str, Any], slot: Slot, who: str,
                 now: datetime) -> Digest | None:
        try:
            return compose(tenant, report, slot, who, now=now)
        except NoTeam as exc:
            key = (tenant.key, who, slot.period)
            if key not in self._warned:  # once per period, not every minute
                self._warned.add(key)
                log.warning("tenant %s: weekly digest not sent: %s", tenant.key, exc,
                            extra={"tenant": tenant.key})
            return None

    def _send_claimed(self, tenant: Tenant, slot: Slot, target: Target, digest: Digest,
                      now: datetime) -> Outcome:
        with self.db.session() as session:
            rows = deliveries.deliveries(session, tenant.key, slot.kind, slot.period)
            row = next((r for r in rows if r.recipient == target.address), None)
            dead = dead_local_holder(row.claimed_by) if row is not None else None
            claim = deliveries.claim(session, tenant_key=tenant.key, kind=slot.kind,
                                     recipient=target.address, period=slot.period,
                                     holder=self.holder, now=now, ttl=self.claim_ttl,
                                     dead_holder=dead)
        if claim is None:
            return Outcome(tenant.key, slot.kind, slot.period, target.address, "busy")
        config = tenant.config.digests
        assert config is not None
        try:
            self.send(tenant, config, target, digest, slot)
        except channels.SendError as exc:
            return self._failed(tenant, config, slot, target, claim, exc)
        with self.db.session() as session:
            deliveries.mark_sent(session, claim, self.clock())
        log.info("tenant %s: %s digest %s sent to %s", tenant.key, slot.kind, slot.period,
                 target.address, extra={"tenant": tenant.key})
        self._count(tenant, slot, target, "sent")
        return Outcome(tenant.key, slot.kind, slot.period, target.address, "sent")

    def _failed(self, tenant: Tenant, config: DigestsConfig, slot: Slot, target: Target,
                claim: deliveries.DigestClaim, exc: channels.SendError) -> Outcome:
        error = str(exc)
        retry_at = None
        if exc.retry and claim.attempts < config.max_attempts:
            backoff = min(60.0, 2.0 ** (claim.attempts - 1)) * 60  # 1, 2, 4 ... 60 min
            retry_at = self.clock() + timedelta(seconds=max(backoff, exc.retry_after or 0))
        with self.db.session() as session:
            deliveries.mark_failed(session, claim, error, retry_at=retry_at)
        status = "retry" if retry_at is not None else "failed"
        if retry_at is not None:
            log.warning("tenant %s: %s digest %s to %s failed (attempt %d), retrying at "
                        "%s: %s", tenant.key, slot.kind, slot.period, target.address,
                        claim.attempts, f"{retry_at:%Y-%m-%d %H:%M:%S} UTC", error,
                        extra={"tenant": tenant.key})
        else:
            log.error("tenant %s: %s digest %s to %s given up after %d attempt(s): %s",
                      tenant.key, slot.kind, slot.period, target.address, claim.attempts,
                      error, extra={"tenant": tenant.key})
        self._count(tenant, slot, target, status)
        return Outcome(tenant.key, slot.kind, slot.period, target.address, status, error)

    def _count(self, tenant: Tenant, slot: Slot, target: Target, status: str) -> None:
        if self.metrics is not None:
            self.metrics.digests.labels(tenant=tenant.key, kind=slot.kind,
                                        channel=target.channel, status=status).inc()

    @staticmethod
    def send(tenant: Tenant, config: DigestsConfig, target: Target, digest: Digest,
             slot: Slot) -> None:
        base_dir = tenant.file.parent
        if target.channel == "email":
            assert config.email is not None
            mail = channels.Mail(
                digest.subject, render.as_text(digest), render.as_html(digest),
                channels.message_id(tenant.key, slot.kind, slot.period, target.address,
                                    config.email.sender))
            channels.send_email(config.email, target.to, mail, base_dir=base_dir)
        else:
            assert config.telegram is not None
            channels.send_telegram(config.telegram, target.to, render.as_telegram(digest),
                                   base_dir=base_dir)

    # -- by hand: `syncd digest` ---------------------------------------------------------------
    def slot(self, tenant: Tenant, kind: str, period: str | None) -> Slot:
        """The named period's slot, or the latest one (due or not) when None."""
        config = tenant.config.digests
        assert config is not None
        zone = digest_zone(tenant, config)
        if period is not None:
            return slot_for_period(kind, config, zone, period)
        from syncd.digests.periods import latest_slot

        return latest_slot(kind, config, zone, self.clock())

    def preview(self, tenant: Tenant, kind: str, period: str | None = None,
                ) -> tuple[Slot, list[tuple[Target, Digest | None, str | None]]]:
        """What ``kind`` for ``period`` would send: each target with its digest (None and
        the reason when it has none) and, per address, the row's status if any."""
        config = tenant.config.digests
        assert config is not None
        slot = self.slot(tenant, kind, period)
        now = self.clock()
        report = live_report(self.db, tenant, clock=now,
                             language=digest_language(tenant, config))
        with self.db.session() as session:
            rows = {row.recipient: row.status for row in deliveries.deliveries(
                session, tenant.key, slot.kind, slot.period)}
        found = []
        for target in targets(config, kind):
            try:
                digest: Digest | None = compose(tenant, report, slot, target.who, now=now)
                reason = rows.get(target.address)
            except NoTeam as exc:
                digest, reason = None, str(exc)
            found.append((target, digest, reason))
        return slot, found

    def send_period(self, tenant: Tenant, kind: str, period: str | None = None,
                    ) -> list[Outcome]:
        """Send ``kind`` for ``period`` now (a missed one, by hand), through the same claims:
        an address that already got it is not sent it again."""
        config = tenant.config.digests
        assert config is not None
        slot = self.slot(tenant, kind, period)
        now = self.clock()
        todo = self.open_targets(tenant, config, slot, now)
        if not todo:
            return []
        report = live_report(self.db, tenant, clock=now,
                             language=digest_language(tenant, config))
        return self.deliver(tenant, slot, todo, report, now)

    # -- retention -----------------------------------------------------------------------------
    def prune(self, days: int = 400) -> int:
        """Forget delivery rows older than ``days`` (a timer runs it once a day)."""
        with self.db.session() as session:
            return deliveries.prune(session, self.clock() - timedelta(days=days))


__all__ = ["DIRECTOR", "DigestService", "Outcome", "Target", "compose", "deal_url_for",
           "targets"]
