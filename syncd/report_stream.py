"""The tenant report written as it is read: the daemon's pass and ``syncd report --format
json`` write ``syncd.report/1`` without the whole tenant in memory (issue 13 item 2).

``report_parts`` returns what ``syncd.report.build_report`` returns, in the same key order,
except that ``violations`` and ``client_karma`` are ``ReportRows``: re-iterable rows read
from the store chunk by chunk when iterated (never held as a list), and the values that
depend on them (``notes``) are computed while they are written. ``dump``/``write_report``
write the same bytes ``json.dump(build_report(...), indent=2, ensure_ascii=False)`` writes
(tests/test_report_stream.py compares them): each section and each streamed row with
``syncd.report_json`` (the standard library's text, built faster) at its depth.

Where the order comes from (docs/architecture.md, "The report"):

- violations: one cursor over the open violations sorted by the database the way Python
  sorted them (``(rule, deal id or "", stage or "", action or "")``, ties by row id; "C"
  collation on PostgreSQL), joined to their deal's title and owner and to the
  stage-history backlog; ``violations_by_rule`` and the rule titles come from a count by
  rule, the derived-history note from the rows as they pass;
- client karma: the companies' totals (one float per company, summed per company from
  lines read in subject order), sorted as before (most karma first, then id), then each
  batch of companies' lines in ledger order.

An ``--as-of`` report audits and scores the stored data as of a moment without storing
anything: its findings and client lines are computed in memory as before (not the
daemon's pass), and written by the same writer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any

from syncd import __version__, history, store
from syncd.audit.texts import texts
from syncd.config import Tenant, TenantConfig
from syncd.i18n import normalize_language
from syncd.render import violation_text
from syncd.report import (
    IMPLIED_STAGES,
    _client_karma,
    _iso,
    _mark_history_pending,
    _people_and_kpis,
    _segments,
    _what_if_violations,
    bad_record_notes,
    evidence_gap_notes,
    quarantine_section,
    report_basis,
    report_header,
    stage_history_notes,
    stage_history_section,
    titles_of_rules,
    write_failures_section,
)
from syncd.report_json import indented, pieces
from syncd.salesbook import SalesBook
from syncd.scoring.karma import COMPANY, KarmaLine, line_amount, line_weight
from syncd.store import backlog
from syncd.store.report_reads import (
    deals_with_open_violations,
    karma_line_amount_rows,
    karma_lines_of,
    open_violations_in_report_order,
)
from syncd.sync import client_lines

#: Companies whose ledger lines are read together for ``client_karma``.
COMPANY_BATCH = 500


class ReportRows:
    """A report list read when iterated: each iteration reads the rows again (from the
    store, chunk by chunk), none is kept. ``len()`` is known without reading them."""

    def __init__(self, count: int, rows: Callable[[], Iterator[dict[str, Any]]], *,
                 written: Callable[[], Path | None] | None = None) -> None:
        self._count = count
        self._rows = rows
        #: Where the rows are already written out as ``dump`` writes them (``write_rows``),
        #: by a process of their own (``syncd.report_ahead``; asked when ``dump`` reaches
        #: them, None: read them): ``dump`` copies that text.
        self.written = written

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._rows()

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __getitem__(self, part: slice) -> list[dict[str, Any]]:
        """The rows of ``part`` (a slice with no negative bounds, as the table and page
        views take the first rows): only those rows are kept."""
        if not isinstance(part, slice) or any(x is not None and x < 0 for x in
                                              (part.start, part.stop, part.step)):
            raise TypeError("ReportRows takes a slice with no negative bounds")
        rows = self._rows()
        try:
            return list(islice(rows, part.start, part.stop, part.step))
        finally:  # the read stops here: its cursor and session are closed now
            close = getattr(rows, "close", None)
            if close is not None:
                close()

    def __repr__(self) -> str:
        return f"ReportRows({self._count})"


class Later:
    """A report value computed when the writer first reaches it (after the rows before it
    were read), then kept."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self._compute = compute
        self._done = False
        self._value: Any = None

    def compute(self) -> Any:
        if not self._done:
            self._value, self._done = self._compute(), True
        return self._value


@dataclass
class StreamStats:
    """What the rows told as they were written (for notes and the day's snapshot)."""

    derived_deals: set[str] = field(default_factory=set)
    deals_with_violations: int = 0
    client_karma_sum: float = 0.0


def report_parts(db: store.Database, tenant: Tenant, *, as_of: datetime | None = None,
                 clock: datetime | None = None, language: str | None = None,
                 kpis_taken: tuple[dict[str, Any], dict[str, Any]] | None = None,
                 violations_written: Callable[[], WrittenRows | None] | None = None,
                 ) -> tuple[dict[str, Any], StreamStats]:
    """``build_report``'s keys, in its order, with ``violations`` and ``client_karma`` as
    ``ReportRows`` and ``notes`` as ``Later`` (it needs the violations written first).
    ``kpis_taken``: a live report's KPIs and contact matrix as of ``clock``, already
    computed; ``violations_written``: asked for its violation rows, already written out,
    when the writer reaches them (both by ``syncd.report_ahead``; None, or rows of
    another count or language: read as the report is written)."""
    generated = clock or datetime.now(UTC)
    lang = normalize_language(language or tenant.config.language)
    stats = StreamStats()
    with db.session() as session:
        tenant_id, open_deals, companies, mapper, last_run, counts = report_basis(
            session, tenant, as_of)
        people, kpis, matrix = _people_and_kpis(session, tenant, tenant_id, mapper,
                                                as_of or generated, live=as_of is None,
                                                kpis_taken=kpis_taken)
        held = quarantine_section(session, tenant_id)
        backfill = stage_history_section(session, tenant_id, with_pending=as_of is not None)
        rejected = write_failures_section(session, tenant_id)
        trend = history.trend(session, tenant_id, history.local_day(
            as_of or generated, tenant.config.timezone))
        if as_of is None:
            by_rule = dict(sorted(store.open_counts_by_rule(session, tenant_id).items()))
            stats.deals_with_violations = deals_with_open_violations(session, tenant_id)
            totals = _client_totals(session, tenant_id, tenant)
        else:
            lines = client_lines(session, tenant, tenant_id, mapper, as_of)
    if as_of is None:
        count = sum(by_rule.values())

        def written() -> Path | None:
            ahead = violations_written() if violations_written is not None else None
            if ahead is None or ahead.count != count or ahead.language != lang:
                return None  # not this report's rows: read them as it is written
            stats.derived_deals = set(ahead.derived_deals)
            return ahead.path

        violations = ReportRows(count, lambda: _live_violations(
            db, tenant.key, tenant.config, tenant.book, lang, stats),
            written=None if violations_written is None else written)
        karma, rounded = _streamed_client_karma(db, tenant, companies, mapper, totals)
        segments = _segments([{"company_id": c, "karma": k} for c, k in rounded.items()],
                             companies, mapper)
        stats.client_karma_sum = round(sum(rounded.values()), 2)
        rules: Iterable[str] = by_rule
    else:
        listed = _what_if_violations(db, tenant, as_of)
        _mark_history_pending(listed, backfill.pop("pending_ids"))
        if lang != tenant.config.language:
            _add_summaries(listed, tenant, lang)
        stats.derived_deals = {v["deal_id"] for v in listed
                               if (v.get("details") or {}).get("history") == "derived"}
        stats.deals_with_violations = len({v["deal_id"] for v in listed if v["deal_id"]})
        by_rule = dict(sorted(_count(v["rule"] for v in listed).items()))
        violations = ReportRows(len(listed), lambda: iter(listed))
        karma_list = _client_karma(lines, companies, mapper, tenant)
        karma = ReportRows(len(karma_list), lambda: iter(karma_list))
        segments = _segments(karma_list, companies, mapper)
        stats.client_karma_sum = round(sum(row["karma"] for row in karma_list), 2)
        rules = by_rule
    backfill.pop("pending_ids", None)

    def notes() -> list[str]:
        derived = (texts(lang).say("note.derived_history", count=len(stats.derived_deals))
                   if stats.derived_deals else None)
        return ([derived] if derived else []) + evidence_gap_notes(tenant.book, lang) \
            + bad_record_notes(held, rejected, lang) + stage_history_notes(backfill, lang)

    parts = {
        **report_header(tenant, lang, as_of, generated, last_run),
        "counts": {**counts, "open_deals": open_deals},
        "violations_by_rule": by_rule,
        "violations": violations,
        "client_karma": karma,
        "segments": segments,
        "people": people,
        "kpis": kpis,
        "contact_matrix": matrix,
        "quarantine": held,
        "write_failures": rejected,
        "notes": Later(notes),
        "stage_history": backfill,
        "history": trend,
        **titles_of_rules(tenant, lang, rules),
    }
    return parts, stats


def _count(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


# -- violations ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrittenRows:
    """A report's violation rows written ahead into a file (``write_violations``)."""

    path: Path
    count: int
    language: str
    derived_deals: frozenset[str]


def write_violations(db: store.Database, key: str, config: TenantConfig, book: SalesBook,
                     path: Path) -> WrittenRows:
    """Write the live report's ``violations`` list (in the tenant's language) into
    ``path`` exactly as ``dump`` writes it, for a report written later
    (``report_parts(..., violations_written=...)``)."""
    language = normalize_language(config.language)
    stats = StreamStats()
    with path.open("w", encoding="utf-8") as file:
        count = write_rows(_live_violations(db, key, config, book, language, stats), file)
    return WrittenRows(path, count, language, frozenset(stats.derived_deals))


def _live_violations(db: store.Database, key: str, config: TenantConfig, book: SalesBook,
                     language: str, stats: StreamStats) -> Iterator[dict[str, Any]]:
    """The open violations as ``build_report`` lists them, read chunk by chunk; the deals
    behind the derived-history note are collected as they pass."""
    other_language = language != config.language
    stats.derived_deals = set()
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, key, config.plugin)
        for chunk in open_violations_in_report_order(session, tenant_id):
            for row in chunk:
                details = row.details or {}
                if row.history_pending and isinstance(details, dict) and \
                        details.get("history") == "derived":
                    details = {**details, "history": "pending"}
                item = {
                    "deal_id": row.deal_external_id,
                    "deal_title": row.deal_title if row.deal_found else None,
                    "owner_id": row.deal_owner_id if row.deal_found else None,
                    "rule": row.rule,
                    "severity": row.severity,
                    "stage_key": row.stage_key or IMPLIED_STAGES.get(row.rule),
                    "action_key": row.action_key,
                    "crm_stage": row.crm_stage,
                    "explanation": row.explanation,
                    "details": details,
                    "opened_at": _iso(row.opened_at),
                    "last_seen_at": _iso(row.last_seen_at),
                }
                if isinstance(details, dict) and details.get("history") == "derived":
                    stats.derived_deals.add(row.deal_external_id)
                if other_language:
                    item["summary"] = violation_text(item["rule"], item["stage_key"],
                                                     item["action_key"], details or {},
                                                     book, language)
                yield item


def _add_summaries(violations: list[dict[str, Any]], tenant: Tenant, language: str) -> None:
    for v in violations:
        v["summary"] = violation_text(v["rule"], v["stage_key"], v["action_key"],
                                      v["details"] or {}, tenant.book, language)


# -- client karma --------------------------------------------------------------------------------
def _client_totals(session: Any, tenant_id: int, tenant: Tenant) -> dict[str, float]:
    """Company id -> client karma under today's weights (``client_totals`` without the
    lines in memory: each company's amounts are summed as its lines pass)."""
    weights = tenant.book.karma.client
    per_criterion: dict[str, float] = {}
    totals: dict[str, float] = {}
    current: str | None = None
    amounts: list[float] = []
    for chunk in karma_line_amount_rows(session, tenant_id, "client", COMPANY):
        for subject_id, criterion, quantity in chunk:
            if subject_id != current:
                if current is not None:
                    totals[current] = math.fsum(amounts)
                current, amounts = subject_id, []
            weight = per_criterion.get(criterion)
            if weight is None:
                weight = per_criterion[criterion] = line_weight(
                    KarmaLine(COMPANY, subject_id, criterion, quantity, "", ""), weights)
            amounts.append(weight * quantity)
    if current is not None:
        totals[current] = math.fsum(amounts)
    return totals


def _streamed_client_karma(db: store.Database, tenant: Tenant, companies: list[Any],
                           mapper: Any, totals: dict[str, float],
                           ) -> tuple[ReportRows, dict[str, float]]:
    """``client_karma`` rows (every company, most karma first) whose lines are read per
    batch of companies when iterated; and each company's rounded karma (for segments)."""
    names = {c.external_id: mapper.karma_company(c) for c in companies}
    everyone = {**dict.fromkeys(names, 0.0), **totals}
    order = sorted(everyone.items(), key=lambda x: (-x[1], x[0]))
    rounded = {company_id: round(total, 2) for company_id, total in order}
    weights = tenant.book.karma.client

    def rows() -> Iterator[dict[str, Any]]:
        with db.session() as session:
            tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
            for start in range(0, len(order), COMPANY_BATCH):
                batch = order[start:start + COMPANY_BATCH]
                lines: dict[str, list[dict[str, Any]]] = {}
                for r in karma_lines_of(session, tenant_id, "client", [c for c, _ in batch]):
                    line = KarmaLine(subject_type=r.subject_type, subject_id=r.subject_id,
                                     criterion=r.criterion, quantity=r.quantity,
                                     source_type=r.source_type, source_id=r.source_id,
                                     period=r.period or "")
                    lines.setdefault(r.subject_id, []).append({
                        "criterion": line.criterion, "quantity": line.quantity,
                        "amount": round(line_amount(line, weights), 4),
                        "source_type": line.source_type, "source_id": line.source_id,
                    })
                for company_id, total in batch:
                    company = names.get(company_id)
                    yield {
                        "company_id": company_id,
                        "company_name": company.name if company else None,
                        "segment": company.segment if company else None,
                        "karma": round(total, 2),
                        "lines": lines.get(company_id, []),
                    }

    return ReportRows(len(order), rows), rounded


# -- writing ------------------------------------------------------------------------------------
def _dumps(value: Any, depth: int) -> str:
    """``value`` as ``json.dump(..., indent=2)`` writes it ``depth`` levels deep (the same
    text, built without the standard library's pure-Python indenting encoder)."""
    return indented(value, "  " * depth)


def write_rows(rows: Iterable[dict[str, Any]], file: IO[str]) -> int:
    """A report list of rows as ``dump`` writes it (two levels deep); returns the count."""
    written = 0
    for row in rows:
        file.write(("[\n    " if written == 0 else ",\n    ") + _dumps(row, 2))
        written += 1
    file.write("\n  ]" if written else "[]")
    return written


def dump(parts: dict[str, Any], file: IO[str]) -> None:
    """Write ``parts`` as ``json.dump(report, file, ensure_ascii=False, indent=2)`` writes
    the materialised report: byte for byte, one row at a time."""
    file.write("{")
    for index, (key, part) in enumerate(parts.items()):
        file.write(("\n  " if index == 0 else ",\n  ") + json.dumps(key, ensure_ascii=False)
                   + ": ")
        value = part.compute() if isinstance(part, Later) else part
        if isinstance(value, ReportRows):
            path = value.written() if value.written is not None else None
            if path is not None:
                with path.open(encoding="utf-8") as rows:
                    shutil.copyfileobj(rows, file)
            else:
                write_rows(value, file)
        else:  # in pieces: a big section (the contact matrix) is never one string
            for piece in pieces(value, "  "):
                file.write(piece)
    file.write("\n}" if parts else "}")


def materialise(parts: dict[str, Any]) -> dict[str, Any]:
    """The report as a plain dict (what ``build_report`` returns), lists and all."""
    report: dict[str, Any] = {}
    for key, part in parts.items():
        value = part.compute() if isinstance(part, Later) else part
        report[key] = list(value) if isinstance(value, ReportRows) else value
    return report


def write_report(parts: dict[str, Any], directory: Path) -> Path:
    """Write the report atomically to ``directory/<tenant>.json``, streamed."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{parts['tenant']}.json"
    temporary = path.with_suffix(".json.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        dump(parts, file)
    temporary.replace(path)
    return path


def sink_view(parts: dict[str, Any]) -> dict[str, Any]:
    """The report a streaming report sink gets once the file is written: every value
    computed, ``violations`` and ``client_karma`` still ``ReportRows`` (syncd.sinks)."""
    return {key: part.compute() if isinstance(part, Later) else part
            for key, part in parts.items()}


def snapshot_figures(parts: dict[str, Any], stats: StreamStats) -> dict[str, Any]:
    """``history.figures`` of the report, from its parts and what its rows told (the rows
    are not read again)."""
    summary = {key: ([] if isinstance(value, ReportRows) else value)
               for key, value in parts.items() if not isinstance(value, Later)}
    data = history.figures(summary)
    data["open_violations"] = len(parts["violations"])
    data["deals_with_violations"] = stats.deals_with_violations
    data["client_karma"] = stats.client_karma_sum
    data["clients"] = len(parts["client_karma"])
    return data


# -- a pass that changed nothing the report shows keeps the report it has ---------------------
#: Write-back counts that change nothing stored (items still waiting for their retry).
_QUIET_WRITES = frozenset({"fields_waiting", "tasks_waiting"})
#: The code that decides what a report says (a changed one rebuilds every report once).
_REPORT_CODE = ("report.py", "report_stream.py", "render.py", "history.py", "load.py",
                "kpi", "scoring", "store/report_reads.py")


def pass_changes(summary: Any) -> list[str]:
    """What a finished pass changed that a report shows (``PassSummary``); empty: nothing.

    Records stored (inserted or updated), deals re-audited (their violations'
    ``last_seen_at``), violations opened or resolved, karma ledgers rewritten, CRM writes
    done, rejected or deferred (the write ledger), records held in quarantine (retried,
    counted each pass), rows skipped as unreadable."""
    reasons = []
    if not summary.live:
        reasons.append("what-if pass")
    if any(summary.changed.values()):
        reasons.append("records stored")
    audit = summary.audit or {}
    if audit.get("deals_audited", 1):
        reasons.append("deals audited")
    if summary.violations_opened or summary.violations_resolved:
        reasons.append("violations opened or resolved")
    if audit.get("karma") != "unchanged":
        reasons.append("karma recomputed")
    if any(count for key, count in summary.writes.items() if key not in _QUIET_WRITES):
        reasons.append("CRM writes")
    if summary.quarantined or summary.problems:
        reasons.append("bad records")
    return reasons


@functools.cache
def _code_digest() -> str:
    root = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _REPORT_CODE:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(file.read_bytes() if file.exists() else name.encode())
    return digest.hexdigest()


def report_fingerprint(tenant: Tenant) -> str:
    """Digest of everything besides the store that decides a report's content: the tenant
    file, its Sales Book, custom rules, syncd's version and report code."""
    payload = {
        "config": tenant.config.model_dump(mode="json"),
        "book": tenant.book.model_dump(mode="json"),
        "custom_rules": sorted(f"{getattr(r.check, '__module__', '')}.{r.code}"
                               for r in tenant.custom_rules),
        "version": __version__,
        "code": _code_digest(),
    }
    text = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def state_path(directory: Path, tenant_key: str) -> Path:
    """Where the daemon notes which pass the report file is current for (beside it)."""
    return directory / f".{tenant_key}.json.state"


@dataclass(frozen=True)
class ReportState:
    """What a report file was current for: the run after which it was (last) confirmed,
    the tenant's local day, the fingerprint, the stage-history coverage, and the file
    itself (size and mtime: a file replaced or touched by hand is rebuilt); when the pass
    that built it ran (``built_as_of``), and what changed since that the file does not
    show yet (``pending``: changes of passes within the report cadence)."""

    run_id: int
    day: str
    fingerprint: str
    backlog: list[int]
    size: int
    mtime_ns: int
    built_as_of: str = ""
    pending: list[str] = field(default_factory=list)

    def moved_to(self, run_id: int, backlog: list[int], pending: list[str]) -> ReportState:
        return dataclasses.replace(self, run_id=run_id, backlog=backlog, pending=pending)

    def save(self, path: Path) -> None:
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.__dict__), "utf-8")
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> ReportState | None:
        try:
            return cls(**json.loads(path.read_text("utf-8")))
        except (OSError, ValueError, TypeError):
            return None


def _runs_and_backlog(db: store.Database, tenant: Tenant) -> tuple[list[int], list[int]]:
    """The ids of the tenant's last two runs (this pass's first) and the stage-history
    coverage ``[done, owed]``."""
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        runs = [run.id for run in store.last_runs(session, tenant_id, limit=2)]
        done, owed = backlog.coverage(session, tenant_id)
    return runs, [done, owed]


#: ``current_report``'s answers besides a reason to rebuild.
UNCHANGED, DEFERRED = "unchanged", "deferred"
#: A new local day waits for the cadence like any change, but never longer than this after
#: the last build: each day's snapshot is taken within its first hour, and the tenants
#: that share a midnight do not all rebuild in its first minutes.
NEW_DAY_WAIT = timedelta(minutes=60)
NEW_DAY = "a new local day"


def current_report(db: store.Database, tenant: Tenant, summary: Any, directory: Path, *,
                   cadence_minutes: int = 0) -> tuple[Path | None, str]:
    """After a good live pass: the tenant's report file if it is kept, else None; and why
    (``UNCHANGED``, ``DEFERRED``, or the reason to rebuild).

    Kept ``UNCHANGED`` when it is still what a rebuild would show. With
    ``cadence_minutes`` (the daemon's ``report_minutes``), a file built less than that
    many minutes before this pass is also kept when the pass changed only data or the
    local day (``DEFERRED``; a new day waits ``NEW_DAY_WAIT`` at most): what changed is
    noted in its state, and the first pass after the cadence rebuilds it. A changed
    configuration, Sales Book or syncd, and a missing or edited file rebuild it at once.
    Either way the state moves on to this pass."""
    reasons = pass_changes(summary)
    if reasons and not cadence_minutes:
        return None, ", ".join(reasons)
    path = directory / f"{tenant.key}.json"
    state = ReportState.load(state_path(directory, tenant.key))
    if state is None:
        return None, ", ".join(reasons) or "no report state"
    as_of = datetime.fromisoformat(summary.as_of)
    day = history.local_day(as_of, tenant.config.timezone).isoformat()
    try:
        stat = path.stat()
    except OSError:
        return None, "no report file"
    if state.fingerprint != report_fingerprint(tenant):
        return None, "configuration, Sales Book or syncd changed"
    if (stat.st_size, stat.st_mtime_ns) != (state.size, state.mtime_ns):
        return None, "report file changed"
    runs, coverage = _runs_and_backlog(db, tenant)
    changes = [*state.pending, *reasons]
    if state.day != day:
        changes.append(NEW_DAY)
    wait = _cadence(cadence_minutes, changes)
    if len(runs) < 2 or state.run_id != runs[1]:
        changes.append("a pass since the report was built is not accounted for")
    if state.backlog != coverage:
        changes.append("stage history read")
    pending = sorted(set(changes))
    if not pending:
        state.moved_to(runs[0], coverage, []).save(state_path(directory, tenant.key))
        return path, UNCHANGED
    if not (cadence_minutes and state.built_as_of and runs
            and as_of - datetime.fromisoformat(state.built_as_of) < wait):
        return None, ", ".join(pending)
    state.moved_to(runs[0], coverage, pending).save(state_path(directory, tenant.key))
    return path, DEFERRED


def report_due_at(directory: Path, tenant: Tenant, cadence_minutes: int) -> datetime | None:
    """When a deferred report will be rebuilt (the first pass after this), or None."""
    state = ReportState.load(state_path(directory, tenant.key))
    if state is None or not state.built_as_of:
        return None
    return datetime.fromisoformat(state.built_as_of) + _cadence(cadence_minutes,
                                                                 state.pending)


def _cadence(minutes: int, pending: list[str]) -> timedelta:
    """How long after its build a report with ``pending`` changes may be kept."""
    wait = timedelta(minutes=minutes)
    return min(wait, NEW_DAY_WAIT) if NEW_DAY in pending else wait


def remember_report(db: store.Database, tenant: Tenant, summary: Any, path: Path) -> None:
    """Note that the report at ``path`` is current after this (live) pass."""
    runs, coverage = _runs_and_backlog(db, tenant)
    if not runs:
        return
    stat = path.stat()
    day = history.local_day(datetime.fromisoformat(summary.as_of),
                            tenant.config.timezone).isoformat()
    ReportState(runs[0], day, report_fingerprint(tenant), coverage, stat.st_size,
                stat.st_mtime_ns, built_as_of=summary.as_of).save(
                    state_path(path.parent, tenant.key))


def forget_report(directory: Path, tenant_key: str) -> None:
    """The report file is not (or may not be) a live pass's: the next pass rebuilds it."""
    state_path(directory, tenant_key).unlink(missing_ok=True)
