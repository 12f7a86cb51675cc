"""A baseline audit's chunks audited from both ends: the pass from the first up, a
process of its own from the last down (issue 13, item 7).

A tenant's first audit judges every deal and writes every verdict, chunk by chunk
(``syncd.deal_walk``), and then the karma reads each chunk's violations. On a 2-core
machine a one-off pass (``syncd sync``) leaves a core idle: there a process audits chunks
from the last down, each in its own transaction (read, judge with ``audit_pass.Judge``,
write the due rows and violations as ``AuditStage.record`` does), while the pass audits
from the first up and scores the karma of every chunk in row-id order as before; for a
chunk the process audited, the pass reads the deals (not their activities) and the
violations it wrote. The audit's outcome adds up both ends' counts.

Who audits which chunk is decided by a pair of shared counters under one lock: the pass
claims chunks from the first up, the process from the last down, and they meet wherever
their speeds have them meet; no chunk is audited twice. The pass takes a chunk the
process audited only if it holds the same deals (both read the same pages of the same
stored rows, which nothing writes while the audit runs; a mismatch is audited again by
the pass, which then finds the process's rows and keeps them). A process that fails or
dies leaves the chunks it did not report to the pass (logged): a pass never depends on
it. Every commit of the process proves the pass's lease first (``FencedDatabase``), as
the pass's own commits do.

Used only for the baseline audit (the tenant's first: it opens violations but queues no
task; a later full audit queues tasks in the transaction that opens their violations,
which stays the pass's) of a tenant of ``spare_core.MIN_DEALS`` live deals or more with no custom
rules (a rule from a plugin is loaded by the tenant's process, not by this one), on a
file or server database (a process cannot see an in-memory one), and only by
``syncd sync`` (``PassOptions.spare_core``): ``syncd run`` keeps every core busy with its
workers' passes. What the process logs while it judges (a mapped field that cannot be
read) is logged again by the pass, in its tenant's scope.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from syncd import spare_core, store
from syncd.audit_pass import Judge, mapper_of, write_verdicts
from syncd.config import Tenant, TenantConfig
from syncd.deal_chunk import read_chunk
from syncd.lease import FencedDatabase, Lease
from syncd.salesbook import SalesBook
from syncd.store import auditstate
from syncd.store.sanitize import describe_error

log = logging.getLogger(__name__)

#: The process claims no chunk until it has started; until then the pass claims them all.
_NOT_STARTED = 2**62


@dataclass
class Audited:
    """What the process wrote for one chunk: its deals, in the walk's order, and the
    counts the pass's audit outcome adds up."""

    deal_ids: list[str]
    audited: int = 0
    opened: int = 0
    resolved: int = 0
    changed: int = 0
    opened_deal_ids: set[str] = field(default_factory=set)
    #: What the process logged while it audited the chunk: (logger, level, message).
    logged: list[tuple[str, int, str]] = field(default_factory=list)


@dataclass
class _Claims:
    """The shared counters: the next chunk the pass claims (``[0]``) and the last the
    process claimed (``[1]``); chunks below ``[0]`` are the pass's, from ``[1]`` up the
    process's."""

    shared: Any  # multiprocessing Array('q', [low, high]) with its lock

    def pass_claims(self, index: int) -> bool:
        """The pass's claim on chunk ``index`` (its next): False when the process has it."""
        with self.shared.get_lock():
            if index < self.shared[1]:
                self.shared[0] = index + 1
                return True
            return False

    def process_claims(self, pages: int | None = None) -> int | None:
        """The process's next chunk, from the last down (``pages`` on its first claim), or
        None once it meets the pass."""
        with self.shared.get_lock():
            top = self.shared[1] if pages is None else min(pages, self.shared[1])
            index = top - 1
            if index < self.shared[0]:
                self.shared[1] = max(self.shared[0], top)
                return None
            self.shared[1] = index
            return index


class SpareAudit:
    """The process auditing a baseline audit's chunks from the last down.

    ``take(index, ids)``, called by the pass for each chunk in order before it reads it,
    returns what the process wrote for it (``Audited``; waiting for it if the process is
    auditing it), or None: the pass audits it. ``close`` ends the process and drops its
    files."""

    def __init__(self, db: store.Database, tenant: Tenant, tenant_id: int, now: datetime,
                 run_id: int | None, chunk: int) -> None:
        context = multiprocessing.get_context("spawn")  # no thread copied mid-lock
        lease = db.lease if isinstance(db, FencedDatabase) else None
        fence = None if lease is None else (lease.tenant_key, lease.fence, lease.holder)
        self._directory = Path(tempfile.mkdtemp(prefix=f"syncd-audit-{tenant.key}-"))
        self._claims = _Claims(context.Array("q", [0, _NOT_STARTED]))
        self._answers, answers = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_work, name=f"syncd-audit-{tenant.key}", daemon=True,
            args=(answers, self._claims, db.url, fence, tenant_id, tenant.config,
                  tenant.book, now, run_id, chunk, self._directory,
                  logging.getLogger().getEffectiveLevel()))
        try:
            self._process.start()
        except BaseException:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise
        answers.close()  # the child's end: closed here, a dead child shows as EOF
        self._done: set[int] = set()
        self._gone = False
        self._started = False
        #: Chunks the pass took from the process (for the tests and the benchmark).
        self.taken = 0

    @classmethod
    def start_if_useful(cls, db: store.Database, tenant: Tenant, tenant_id: int,
                        now: datetime, run_id: int | None,
                        chunk: int) -> SpareAudit | None:
        """Start when auditing beside the pass can pay (the module's notes), else None."""
        if (tenant.custom_rules or not spare_core.shared_database(db.url)
                or not spare_core.large_enough(db, tenant_id)):
            return None
        try:
            return cls(db, tenant, tenant_id, now, run_id, chunk)
        except Exception as exc:  # no process to be had: the pass audits every chunk
            log.warning("tenant %s: no process could audit beside the pass (%s); the pass "
                        "audits every chunk", tenant.key, describe_error(exc))
            return None

    def ready(self, timeout: float | None = None) -> bool:
        """Wait until the process has claimed its first chunk, or has none to claim, or is
        gone (the tests' way to have it audit some chunks). False on a timeout."""
        while not self._started and not self._gone:
            if not self._answers.poll(timeout):
                return False
            self._receive()
        return True

    def take(self, index: int, ids: Sequence[str]) -> Audited | None:
        """What the process wrote for chunk ``index`` (the deals ``ids``), or None."""
        if self._claims.pass_claims(index):
            return None
        while index not in self._done and not self._gone:
            self._receive()
        if index not in self._done:
            return None  # the process went before reporting it: the pass audits it
        path = self._directory / f"{index}.pickle"
        try:
            with path.open("rb") as file:
                audited = pickle.load(file)  # noqa: S301 - our own process's file
            path.unlink()
        except Exception as exc:
            log.warning("chunk %s audited beside the pass could not be read (%s); the pass "
                        "audits it", index, describe_error(exc))
            return None
        if not isinstance(audited, Audited) or audited.deal_ids != list(ids):
            log.warning("chunk %s audited beside the pass holds other deals than the pass "
                        "read; the pass audits it", index)
            return None
        for name, level, message in audited.logged:
            logging.getLogger(name).log(level, "%s", message)
        self.taken += 1
        return audited

    def close(self) -> None:
        """End the process (whatever it is doing) and drop its files."""
        self._answers.close()
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        shutil.rmtree(self._directory, ignore_errors=True)

    def _receive(self) -> None:
        try:
            answer = self._answers.recv()
        except Exception as exc:  # EOF (it died) or an answer that cannot be read
            answer = ("failed", f"the process ended without an answer "
                                f"({type(exc).__name__})")
        if answer[0] == "chunk":
            self._done.add(answer[1])
        elif answer[0] == "started":
            self._started = True
        elif answer[0] == "failed":
            log.warning("the process auditing beside the pass failed (%s); the pass audits "
                        "the chunks it left", answer[1])
            self._gone = True
        else:  # "finished": it met the pass
            self._gone = True


class _Kept(logging.Handler):
    """What the process logs while it audits a chunk, kept to be sent with it."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.name, record.levelno, record.getMessage()))


def _work(answers: Connection, claims: _Claims, url: URL,
          fence: tuple[str, int, str] | None, tenant_id: int, config: TenantConfig,
          book: SalesBook, now: datetime, run_id: int | None, chunk: int, directory: Path,
          level: int) -> None:
    """The child: audit chunks from the last down until it meets the pass. Answers (a few
    bytes each, so it never waits on the pass to read them): ``("started",)``, then
    ``("chunk", index)`` for each chunk committed (its ``Audited`` in ``directory``), then
    ``("finished",)``; or ``("failed", why)``."""
    kept = _Kept(level)
    root = logging.getLogger()
    root.handlers[:] = [kept]
    root.setLevel(level)
    inner = store.Database(url)
    db = inner if fence is None else FencedDatabase(inner, Lease(*fence))
    try:
        with db.session() as session:
            mapper = mapper_of(session, config, book, tenant_id)
            starts = auditstate.deal_page_starts(session, tenant_id, chunk)
        judge = Judge(book, config.language, mapper, now)
        index = claims.process_claims(len(starts))
        spare_core.answer(answers, ("started",))
        while index is not None:
            with db.session() as session:
                page = auditstate.deal_page(session, tenant_id, starts[index], chunk)
                judged = judge(read_chunk(session, tenant_id, page))
                ids = [row.external_id for row in page]
                result = write_verdicts(session, tenant_id, ids, judged, now, run_id)
            audited = Audited(ids, len(judged.due), len(result.opened), result.resolved,
                              result.changed, {v.deal_external_id for v in result.opened
                                               if v.deal_external_id is not None},
                              kept.records)
            kept.records = []
            with (directory / f"{index}.pickle").open("wb") as file:
                pickle.dump(audited, file, pickle.HIGHEST_PROTOCOL)
            spare_core.answer(answers, ("chunk", index))
            index = claims.process_claims()
        spare_core.answer(answers, ("finished",))
    except Exception as exc:
        spare_core.answer(answers, ("failed", describe_error(exc)))
    finally:
        inner.dispose()
        answers.close()

