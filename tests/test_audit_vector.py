"""The columnar audit (syncd.audit.vector) equals the reference engine (audit_deals).

A property test over random deals built to hit every rule's boundaries: times around "now"
and around each cut-off (stage ages, inactivity, reminders, follow-ups) in a timezone with
a DST change, histories with deferrals, unmapped and unknown stages, events after "now"
(the as-of view), snoozes with and without reasons, notes, untimed activities, company
activities. The findings must be the same objects (rule, deal, stage, action, explanation,
details) in the same order, and so must the run's statistics.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.audit import DEFERRED, ActivityFact, AuditStats, DealFacts, Transition, audit_deals
from syncd.audit.columns import DealTable
from syncd.audit.vector import audit_table
from syncd.salesbook import SalesBook, load_salesbook

BOOKS = Path(__file__).resolve().parents[1] / "config" / "salesbooks"
B2B = load_salesbook(BOOKS / "b2b-services-9.yaml")
SIMPLE = load_salesbook(BOOKS / "simple-product-5.yaml")
BOOK = {"b2b": B2B, "simple": SIMPLE}
NOW = datetime(2024, 3, 31, 9, 30, tzinfo=UTC)  # the day Europe/Berlin moves its clocks
TZ = ZoneInfo("Europe/Berlin")
KINDS = ("call", "meeting", "email", "task", "note", "visit")
DAYS = (0, 1, 6, 7, 8, 9, 10, 11, 13, 14, 15, 29, 30, 31, 59, 61, 90, 120)


def moments() -> st.SearchStrategy[datetime]:
    """Moments near "now" and near every cut-off, on both sides, some in the future."""
    days = st.sampled_from(DAYS).map(lambda d: -d) | st.integers(-3, 40)
    hours = st.sampled_from((-10.5, -9.5, -2, -1, 0, 0.5, 1, 7, 14.5, 22))
    return st.builds(lambda d, h: NOW + timedelta(days=d, hours=h), days, hours)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


@st.composite
def activities(draw: st.DrawFn, prefix: str) -> list[ActivityFact]:
    found = []
    for n in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(KINDS))
        done = draw(st.booleans())
        found.append(ActivityFact(
            id=f"{prefix}{n}", kind=kind, done=done,
            done_at=draw(maybe(moments())) if done or draw(st.booleans()) else None,
            due_at=draw(maybe(moments())), created_at=draw(maybe(moments())),
            is_note=kind == "note" and draw(st.booleans())))
    return found


@st.composite
def facts(draw: st.DrawFn, book: SalesBook, number: int) -> DealFacts:
    keys = [s.key for s in book.stages]
    stage_keys = st.sampled_from([*keys, DEFERRED, None, "ghost"])
    created = draw(moments())
    history, at = [], created
    for n in range(draw(st.integers(0, 6))):
        at = at + timedelta(days=draw(st.integers(0, 20)), hours=draw(st.integers(0, 30)))
        history.append(Transition(draw(stage_keys), draw(stage_keys), at,
                                  draw(st.sampled_from(("", f"h{number}.{n}")))))
    status = draw(st.sampled_from(("open", "open", "won", "lost", "deleted")))
    reasons = [*book.passive.lost.reasons, "made_up"]
    return DealFacts(
        deal_id=f"D{number}", title=f"Deal {number}", status=status,  # type: ignore[arg-type]
        stage_key=draw(stage_keys),
        crm_stage=draw(st.sampled_from(("Sales / A", "Sales / B", "Old / C"))),
        created_at=created, owner_id="U1", company_id=draw(st.sampled_from((None, "C1"))),
        value=100.0,
        won_at=draw(maybe(moments())) if status == "won" else None,
        lost_at=draw(maybe(moments())) if status == "lost" else None,
        lost_reason_raw=draw(st.sampled_from((None, "", "  ", "Too expensive"))),
        lost_reason_key=draw(maybe(st.sampled_from(reasons))),
        contact_count=draw(st.sampled_from((0, 1, 3))),
        fields={name: draw(st.sampled_from(("", " x ", None, 0, [])))
                for name in ("lead_source", "estimate_link", "contract_number")
                if draw(st.booleans())},
        history=history, history_derived=draw(st.booleans()),
        activities=draw(activities(f"a{number}.")),
        company_activities=draw(activities(f"c{number}.")),
        snooze_until=draw(maybe(moments().map(lambda m: m.astimezone(TZ).date()))),
        snooze_reason=draw(st.sampled_from((None, "", "holiday"))),
        stage_ignored=draw(st.booleans()) and draw(st.booleans()))


@st.composite
def tenants(draw: st.DrawFn) -> tuple[str, list[DealFacts]]:
    name = draw(st.sampled_from(tuple(BOOK)))
    count = draw(st.integers(1, 12))
    return name, [draw(facts(BOOK[name], n)) for n in range(count)]


def reference(deals: list[DealFacts], book: SalesBook, language: str):
    stats = AuditStats()
    return list(audit_deals(deals, book, NOW, TZ, stats=stats, language=language)), stats


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenants(), st.sampled_from(("en", "ru")), st.sampled_from((1, 3, 200_000)))
def test_columnar_audit_equals_the_reference(tenant, language, part_size) -> None:
    name, deals = tenant
    book = BOOK[name]
    expected, expected_stats = reference(deals, book, language)
    result = audit_table(DealTable.from_facts(deals, book), book, NOW, TZ, language=language,
                         part_size=part_size)  # parts of the table are audited one by one
    assert list(result.findings()) == expected
    assert list(result.finding_keys()) == [f.key for f in expected]  # without rendering
    stats = result.stats()
    assert stats == expected_stats
    assert len(result) == len(expected)


def test_a_realistic_tenant_gives_the_same_findings() -> None:
    """The benchmark's deals (bench_audit's generator): thousands of findings, all equal."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_audit import NOW as BENCH_NOW
    from bench_audit import DealMaker

    deals = list(DealMaker(B2B, seed=3).deals(1_000))
    tz = ZoneInfo("Europe/Moscow")
    expected = list(audit_deals(deals, B2B, BENCH_NOW, tz))
    result = audit_table(DealTable.from_facts(deals, B2B), B2B, BENCH_NOW, tz, part_size=300)
    assert len(expected) > 2_000
    assert list(result.findings()) == expected


def test_the_engine_benchmark_tenant_audits_the_same_both_ways() -> None:
    """bench_engine's columns, read back as DealFacts (DealTable.facts), through the
    reference engine: the same findings as the columnar audit of those columns."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_engine

    table = bench_engine.generate(B2B, 1_500, 5, seed=11)
    expected = list(audit_deals(table.facts(), B2B, bench_engine.NOW, bench_engine.TZ))
    result = audit_table(table, B2B, bench_engine.NOW, bench_engine.TZ, part_size=400)
    assert len(expected) > 3_000
    assert list(result.findings()) == expected
    assert list(result.finding_keys()) == [f.key for f in expected]


def test_a_table_of_another_book_is_refused() -> None:
    table = DealTable.from_facts([], SIMPLE)
    with pytest.raises(ValueError, match="another Sales Book"):
        audit_table(table, B2B, NOW, TZ)
