"""Parts of a one-off pass's report, taken in a process of their own while the pass runs
(issue 13, item 7).

Two parts of the live report need nothing the rest of the pass still computes:

- the KPIs and the contact matrix read deals, stage changes, activities, companies and
  users, never a verdict or a karma line: they can be computed as soon as the pull has
  stored those, while the audit and the karma run;
- the violation rows need the audit's verdicts, not the karma: they can be written out
  (``syncd.report_stream.write_violations``) once the audit has written its last
  verdict, while the karma finishes and the report's other parts are built.

A thread would not help (the pass is Python CPU work under one interpreter lock), a
process does: on a 2-core machine a first 20k-deal pass writes its report about as much
sooner as these take (~2.5 s of ~30 s).

Only ``syncd sync`` uses it (``Runner.run_one_off``): it runs one tenant at a time and
leaves a core idle, while ``syncd run`` keeps every core busy with its workers' passes,
where another process would only add its start-up. And only for tenants of ``spare_core.MIN_DEALS``
deals or more, below which the process's start-up (~0.5 s of imports) costs more than it
saves.

The process gets the database URL, the tenant's key, config and Sales Book (no connector,
no secrets) and the moment the KPIs are taken: the report uses that moment as its clock,
so the numbers and the report's ``generated_at`` agree. The report computes a part
itself when the process failed, or when the pass wrote into the CRM after the part was
taken (write-back stores what it wrote; the report must see the store as it is).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from syncd import load as kpi_load
from syncd import spare_core, store
from syncd.audit_pass import mapper_of
from syncd.config import Tenant, TenantConfig
from syncd.report import report_kpis
from syncd.report_stream import WrittenRows, write_violations
from syncd.salesbook import SalesBook
from syncd.store.sanitize import describe_error

log = logging.getLogger(__name__)


Taken = tuple[dict[str, Any], dict[str, Any]]


def live_kpis(db: store.Database, key: str, config: TenantConfig, book: SalesBook,
              now: datetime) -> Taken:
    """The live report's KPIs and contact matrix as of ``now`` (as ``syncd.report``'s
    ``_people_and_kpis`` computes them)."""
    with db.session() as session:
        row = store.get_tenant(session, key)
        if row is None:
            raise LookupError(f"tenant {key} is not in the database")
        mapper = mapper_of(session, config, book, row.id)
        companies = kpi_load.company_records(session, row.id, mapper)
        names = {user.user_id: user.name for user in kpi_load.people(session, row.id)}
        return report_kpis(session, book, row.id, mapper, now, companies, names)


class ReportAhead:
    """The process taking a report's KPIs, then (when ordered) writing its violation rows.

    Start it once the pull has stored what the KPIs read; ``order_violations`` once the
    audit's verdicts are final; ``kpis`` and ``violations`` wait for each part (None: not
    to be had, the report computes it); ``close`` ends the process and drops its file."""

    def __init__(self, db: store.Database, tenant: Tenant, directory: Path) -> None:
        self.now = datetime.now(UTC)
        self.path = directory / f".{tenant.key}.violations.tmp"
        self.kpis_path = directory / f".{tenant.key}.kpis.tmp"
        context = multiprocessing.get_context("spawn")  # no thread copied mid-lock
        self._answers, answers = context.Pipe(duplex=False)
        orders, self._orders = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_work, name=f"syncd-report-{tenant.key}", daemon=True,
            args=(answers, orders, db.url, tenant.key, tenant.config, tenant.book, self.now,
                  self.path, self.kpis_path))
        directory.mkdir(parents=True, exist_ok=True)
        self._process.start()
        answers.close()  # the child's ends: closed here, a dead child shows as EOF
        orders.close()
        self._kpis: Taken | None = None
        self._kpis_read = False
        self._ordered = False

    @classmethod
    def start_if_large(cls, db: store.Database, tenant: Tenant,
                       directory: Path) -> ReportAhead | None:
        """Start when the tenant has ``spare_core.MIN_DEALS`` live deals or more (else
        None)."""
        with db.session() as session:
            row = store.get_tenant(session, tenant.key)
        if row is None or not spare_core.large_enough(db, row.id):
            return None
        try:
            return cls(db, tenant, directory)
        except Exception as exc:  # no process to be had: the report computes its parts
            log.warning("tenant %s: the report's parts could not be taken beside the pass "
                        "(%s); the report computes them", tenant.key, describe_error(exc))
            return None

    def order_violations(self) -> None:
        """The audit's verdicts are final: write the violation rows out."""
        try:
            self._orders.send(("violations",))
            self._ordered = True
        except (OSError, ValueError):  # the process is gone or closed: the report reads them
            pass

    def kpis(self) -> Taken | None:
        """The KPIs and contact matrix as of ``now``, or None (logged)."""
        if not self._kpis_read:
            self._kpis_read = True
            answer = self._receive()
            if answer[0] == "kpis":
                answer = self._read_kpis()
            if answer[0] == "kpis":
                self._kpis = (answer[1], answer[2])
            else:
                log.warning("the KPIs taken beside the pass failed (%s); the report "
                            "computes them", answer[1])
        return self._kpis

    def violations(self) -> WrittenRows | None:
        """The violation rows written out, or None (not ordered, or failed: logged)."""
        if not self._ordered:
            return None
        self.kpis()  # their answer comes first
        answer = self._receive()
        if answer[0] == "violations":
            written: WrittenRows = answer[1]
            return written
        log.warning("the violation rows written beside the pass failed (%s); the report "
                    "reads them", answer[1])
        return None

    def close(self) -> None:
        """End the process (its answers unread, if any) and drop its file."""
        self._answers.close()
        self._orders.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        for path in (self.path, self.kpis_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _read_kpis(self) -> tuple[Any, ...]:
        """The KPIs the process wrote into ``kpis_path``, as ``("kpis", kpis, matrix)``."""
        try:
            with self.kpis_path.open("rb") as file:
                kpis, matrix = pickle.load(file)  # noqa: S301 - our own process's file
        except Exception as exc:
            return ("failed", f"its answer could not be read ({describe_error(exc)})")
        return ("kpis", kpis, matrix)

    def _receive(self) -> tuple[Any, ...]:
        """The process's next answer; never raises (a part not to be had is computed by
        the report, so a broken answer must not cost the report)."""
        try:
            answer: tuple[Any, ...] = self._answers.recv()
        except (EOFError, OSError) as exc:
            answer = ("failed", f"the process ended without an answer ({type(exc).__name__})")
        except Exception as exc:  # an answer that cannot be read back (unpickling)
            answer = ("failed", f"its answer could not be read ({describe_error(exc)})")
        return answer


def _work(answers: Connection, orders: Connection, url: URL, key: str, config: TenantConfig,
          book: SalesBook, now: datetime, path: Path, kpis_path: Path) -> None:
    """The child: write the KPIs and contact matrix into ``kpis_path`` and send
    ``("kpis",)``; then, when ordered, write the violation rows into ``path`` and send
    ``("violations", WrittenRows)``; ``("failed", why)`` for what could not be done.
    Each answer is a few bytes (``syncd.spare_core``): sent whole, a 20k-deal tenant's KPIs
    kept this process waiting on the pipe until the report read them, and the rows it had
    been ordered long before came only then (the report waited ~0.5 s for them)."""
    db = store.Database(url)
    try:
        try:
            kpis, matrix = live_kpis(db, key, config, book, now)
            with kpis_path.open("wb") as file:
                pickle.dump((kpis, matrix), file, pickle.HIGHEST_PROTOCOL)
            spare_core.answer(answers, ("kpis",))
        except Exception as exc:
            spare_core.answer(answers, ("failed", describe_error(exc)))
        try:
            orders.recv()
        except (EOFError, OSError):
            return  # the pass ended without ordering them
        try:
            written = write_violations(db, key, config, book, path)
            spare_core.answer(answers, ("violations", written))
        except Exception as exc:
            spare_core.answer(answers, ("failed", describe_error(exc)))
    finally:
        db.dispose()
        answers.close()

