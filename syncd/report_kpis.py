"""The report's KPIs, taken in a process of their own while a one-off pass audits (issue 13,
item 7).

The KPIs and the contact matrix read deals, stage changes, activities, companies and
users, never a verdict or a karma line, so they can be computed as soon as the pull has
stored those, while the audit and the karma run. A thread would not help (both are
Python CPU work under one interpreter lock), a process does: on a 2-core machine a first
20k-deal pass writes its report about as much sooner as the KPIs take (~1.5 s of ~30 s).

Only ``syncd sync`` uses it (``Runner.run_one_off``): it runs one tenant at a time and
leaves a core idle, while ``syncd run`` keeps every core busy with its workers' passes,
where another process would only add its start-up. And only for tenants of ``MIN_DEALS``
deals or more, below which the process's start-up (~0.5 s of imports) costs more than it
saves.

The process gets the database URL, the tenant's key, config and Sales Book (no connector,
no secrets), and the moment the KPIs are taken: the report uses that moment as its clock,
so the numbers and the report's ``generated_at`` agree. The report falls back to computing
the KPIs itself when the process failed, or when the pass wrote into the CRM after they
were taken (write-back stores what it wrote; the KPIs must see the store as the report
does).
"""

from __future__ import annotations

import logging
import multiprocessing
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import false, func, select
from sqlalchemy.engine import URL

from syncd import load as kpi_load
from syncd import store
from syncd.config import Tenant, TenantConfig
from syncd.kpi import compute_kpis
from syncd.salesbook import SalesBook
from syncd.store.sanitize import describe_error
from syncd.sync import mapper_of

log = logging.getLogger(__name__)

#: Tenants with fewer deals compute their KPIs in the report, as before.
MIN_DEALS = 5_000

Taken = tuple[dict[str, Any], dict[str, Any]]


def live_kpis(db: store.Database, key: str, config: TenantConfig,
              book: SalesBook, now: datetime) -> Taken:
    """The live report's KPIs and contact matrix as of ``now`` (as ``syncd.report``'s
    ``_people_and_kpis`` computes them)."""
    with db.session() as session:
        row = store.get_tenant(session, key)
        if row is None:
            raise LookupError(f"tenant {key} is not in the database")
        tenant_id = row.id
        mapper = mapper_of(session, config, book, tenant_id)
        companies = kpi_load.company_records(session, tenant_id, mapper)
        names = {user.user_id: user.name for user in kpi_load.people(session, tenant_id)}
        return compute_kpis(book, mapper.tz, now,
                            kpi_load.deal_records(session, tenant_id, mapper),
                            kpi_load.activity_records(session, tenant_id, mapper),
                            companies, names)


class KpisAhead:
    """The KPIs being taken in a spawned process; ``result`` waits for them."""

    def __init__(self, db: store.Database, tenant: Tenant) -> None:
        self.now = datetime.now(UTC)
        context = multiprocessing.get_context("spawn")  # no thread copied mid-lock
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_take, name=f"syncd-kpis-{tenant.key}", daemon=True,
            args=(send, db.url, tenant.key, tenant.config, tenant.book, self.now))
        self._process.start()
        send.close()  # the child's end: the parent's copy closed, EOF shows a dead child

    @classmethod
    def start_if_large(cls, db: store.Database, tenant: Tenant) -> KpisAhead | None:
        """Start when the tenant has ``MIN_DEALS`` live deals or more (else None)."""
        with db.session() as session:
            row = store.get_tenant(session, tenant.key)
            deals = 0 if row is None else session.scalar(
                select(func.count()).select_from(store.DealRow).where(
                    store.DealRow.tenant_id == row.id, store.DealRow.deleted == false())) or 0
        if deals < MIN_DEALS:
            return None
        try:
            return cls(db, tenant)
        except Exception as exc:  # no process to be had: the report computes them
            log.warning("tenant %s: the KPIs could not be taken beside the audit (%s); "
                        "the report computes them", tenant.key, describe_error(exc))
            return None

    def result(self) -> Taken | None:
        """The KPIs and contact matrix, or None when the process failed (logged)."""
        try:
            outcome = self._receive.recv()
        except (EOFError, OSError) as exc:
            outcome = ("failed", f"the process ended without an answer ({type(exc).__name__})")
        finally:
            self.close()
        if outcome[0] == "ok":
            return outcome[1], outcome[2]
        log.warning("the KPIs taken beside the audit failed (%s); the report computes them",
                    outcome[1])
        return None

    def close(self) -> None:
        """Drop the process (its answer unread, if any)."""
        self._receive.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()


def _take(send: Connection, url: URL, key: str, config: TenantConfig, book: SalesBook,
          now: datetime) -> None:
    """The child: take the KPIs and send ``("ok", kpis, matrix)`` or ``("failed", why)``."""
    db = store.Database(url)
    try:
        kpis, matrix = live_kpis(db, key, config, book, now)
        answer: tuple[Any, ...] = ("ok", kpis, matrix)
    except Exception as exc:
        answer = ("failed", describe_error(exc))
    finally:
        db.dispose()
    try:
        send.send(answer)
    except (BrokenPipeError, OSError):
        pass  # the report no longer waits for it
    finally:
        send.close()
