"""The audit driver: every rule over deals as they were at "now", snoozes applied in one
place, and one ``unmapped_stage`` finding per unmapped CRM stage.

Pure: ``now`` (aware) and the tenant's timezone are inputs; nothing reads a clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from syncd.audit.facts import DealFacts, Finding
from syncd.audit.registry import CustomRule, RuleContext, run_custom
from syncd.audit.rules import RULES, SNOOZABLE, UNMAPPED_RULES, AuditRun, BookIndex, unmapped_stage
from syncd.audit.timeline import Calendar, as_of
from syncd.salesbook import SalesBook

__all__ = ["AuditStats", "DealVerdict", "Suppressed", "as_of", "audit_deal", "audit_deals",
           "audit_each"]

EXAMPLE_DEALS = 5
AUDITED_STATUSES = frozenset({"open", "won", "lost"})
_INDEX_CACHE_SIZE = 32
_indexes: dict[int, BookIndex] = {}


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A finding a snooze hid, so a report can say the deal is paused and what it hides."""

    finding: Finding
    snooze_until: date
    snooze_reason: str | None


@dataclass(slots=True)
class AuditStats:
    """Optional counters filled by a run (pass one to ``audit_deal``/``audit_deals``)."""

    deals: int = 0  # deals read
    not_created_yet: int = 0  # created after "now": not audited
    not_audited_status: int = 0  # status other than open/won/lost (e.g. deleted): skipped
    unmapped: int = 0  # deals whose stage at "now" is unmapped
    findings: Counter[str] = field(default_factory=Counter)  # rule -> findings emitted
    suppressed: list[Suppressed] = field(default_factory=list)


def audit_deal(facts: DealFacts, book: SalesBook, now: datetime, tz: ZoneInfo, *,
               stats: AuditStats | None = None, language: str = "en") -> list[Finding]:
    """Every finding for one deal as it was at ``now`` (no ``unmapped_stage`` row: that one
    aggregates deals, see :func:`audit_deals`); explanations in ``language`` (en, ru)."""
    run = _run(book, now, tz, language)
    stats = stats if stats is not None else AuditStats()
    current = _current(facts, run, stats)
    return [] if current is None else _audit(current, run, stats)


def audit_deals(deals: Iterable[DealFacts], book: SalesBook, now: datetime, tz: ZoneInfo, *,
                stats: AuditStats | None = None, language: str = "en",
                custom_rules: Sequence[CustomRule] = ()) -> Iterator[Finding]:
    """Stream the findings of many deals, each as of ``now``, then one ``unmapped_stage``
    finding per CRM stage whose deals have no canonical stage (sorted by CRM stage);
    explanations in ``language`` (en, ru). ``custom_rules`` (plugins' rules,
    syncd.audit.registry) run after the built-in ones."""
    run = _run(book, now, tz, language)  # validates now before the first deal is read
    stats = stats if stats is not None else AuditStats()
    context = RuleContext(run.cal.now, run.cal.today, tz, book, language)
    return _stream(deals, run, stats, custom_rules, context)


@dataclass(slots=True)
class DealVerdict:
    """One deal's audit: the deal as of "now" (None: not audited, see ``AuditStats``), its
    findings (custom rules' included), and the CRM stage it counts under for
    ``unmapped_stage`` (None: mapped or ignored)."""

    facts: DealFacts
    current: DealFacts | None
    findings: list[Finding]
    unmapped_stage: str | None = None


def audit_each(deals: Iterable[DealFacts], book: SalesBook, now: datetime, tz: ZoneInfo, *,
               stats: AuditStats | None = None, language: str = "en",
               custom_rules: Sequence[CustomRule] = ()) -> Iterator[DealVerdict]:
    """``audit_deals`` deal by deal: one verdict per deal, no ``unmapped_stage`` rows (the
    caller aggregates ``DealVerdict.unmapped_stage``, e.g. over a whole tenant's store when
    only some deals are re-audited)."""
    run = _run(book, now, tz, language)
    stats = stats if stats is not None else AuditStats()
    context = RuleContext(run.cal.now, run.cal.today, tz, book, language)
    for deal in deals:
        current = _current(deal, run, stats)
        if current is None:
            yield DealVerdict(deal, None, [])
            continue
        unmapped = None
        if not run.index.is_mapped(current.stage_key) and not current.stage_ignored:
            unmapped = current.crm_stage
        findings = _audit(current, run, stats)
        if custom_rules:
            findings = [*findings, *_count(run_custom(custom_rules, current, context), stats)]
        yield DealVerdict(deal, current, findings, unmapped)


def _stream(deals: Iterable[DealFacts], run: AuditRun, stats: AuditStats,
            custom_rules: Sequence[CustomRule] = (),
            context: RuleContext | None = None) -> Iterator[Finding]:
    unmapped: dict[str, list[str]] = {}
    counts: Counter[str] = Counter()
    for deal in deals:
        current = _current(deal, run, stats)
        if current is None:
            continue
        if not run.index.is_mapped(current.stage_key) and not current.stage_ignored:
            counts[current.crm_stage] += 1
            examples = unmapped.setdefault(current.crm_stage, [])
            if len(examples) < EXAMPLE_DEALS:
                examples.append(current.deal_id)
        yield from _audit(current, run, stats)
        if custom_rules and context is not None:
            yield from _count(run_custom(custom_rules, current, context), stats)
    for crm_stage in sorted(unmapped):
        finding = unmapped_stage(crm_stage, unmapped[crm_stage], counts[crm_stage],
                                 run.texts)
        stats.findings[finding.rule] += 1
        yield finding


def _count(findings: list[Finding], stats: AuditStats) -> list[Finding]:
    for finding in findings:
        stats.findings[finding.rule] += 1
    return findings


def _run(book: SalesBook, now: datetime, tz: ZoneInfo, language: str = "en") -> AuditRun:
    return AuditRun(_book_index(book), Calendar(now, tz), language)


def _book_index(book: SalesBook) -> BookIndex:
    """The book's lookups, built once per book object and reused across runs."""
    index = _indexes.get(id(book))
    if index is None or index.book is not book:
        if len(_indexes) >= _INDEX_CACHE_SIZE:
            _indexes.clear()
        index = _indexes[id(book)] = BookIndex(book)
    return index


def _current(facts: DealFacts, run: AuditRun, stats: AuditStats) -> DealFacts | None:
    """The deal to audit as of "now", or None (not created yet, or deleted)."""
    stats.deals += 1
    if facts.status not in AUDITED_STATUSES:
        stats.not_audited_status += 1
        return None
    current = as_of(facts, run.cal.now)
    if current is None:
        stats.not_created_yet += 1
    elif not run.index.is_mapped(current.stage_key):
        stats.unmapped += 1
    return current


def _audit(facts: DealFacts, run: AuditRun, stats: AuditStats) -> list[Finding]:
    subject = run.subject(facts)
    rules = RULES if subject.walk is not None else UNMAPPED_RULES
    findings = [finding for rule in rules for finding in rule(subject)]
    if findings and facts.snooze_until is not None and subject.snoozed:
        findings = _apply_snooze(findings, facts.snooze_until, facts.snooze_reason, stats)
    for finding in findings:
        stats.findings[finding.rule] += 1
    return findings


def _apply_snooze(findings: list[Finding], until: date, reason: str | None,
                  stats: AuditStats) -> list[Finding]:
    kept = []
    for finding in findings:
        if finding.rule in SNOOZABLE:
            stats.suppressed.append(Suppressed(finding, until, reason))
        else:
            kept.append(finding)
    return kept
