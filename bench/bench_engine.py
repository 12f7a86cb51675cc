"""Benchmark: the full recomputation of a tenant — audit, karma and KPIs — over 1,000,000
deals and 5,000,000 activities with the columnar engine (issue 13 item 5).

    python bench/bench_engine.py                     # 1,000,000 deals, 5 activities each
    python bench/bench_engine.py --deals 100000

The data set is generated seeded, straight into columns (``syncd.audit.columns``): deals
like bench_audit's (~3 stage changes, mostly forward, some skips, backward moves and
deferrals; 60% open, 25% won, 15% lost; loss reasons from the catalogue or not; lead source
mostly filled; 2% snoozed), 5 activities per deal (4 done while the deal was worked on, one
planned next step) and a follow-up for 60% of the won deals on their company. Generation is
timed apart. Then each phase is timed and the total compared with the target: 20 s and
1 GB peak RSS on this 2-core machine. The 1-minute load average is printed with the figures
(the machine is shared: read the seconds with it).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from syncd.audit import audit_deals
from syncd.audit.columns import (
    LOST,
    NONE,
    OPEN,
    UNMAPPED,
    WON,
    ActivityColumns,
    DealTable,
    Numbered,
    micros,
)
from syncd.audit.vector import RULE_ORDER, audit_table
from syncd.kpi import CompanyRecord
from syncd.kpi.columnar import table_kpis
from syncd.salesbook import SalesBook, load_salesbook
from syncd.scoring.columnar import ViolationColumns, table_client_totals, table_employee_totals
from syncd.scoring.karma import KarmaCompany, segment_karma
from syncd.scoring.people import Person, manager_karma, resolve_teams

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
TZ = ZoneInfo("Europe/Moscow")
TARGET_SECONDS, TARGET_MB = 20.0, 1024.0
DAY = 86_400 * 1_000_000  # microseconds
HOUR = DAY // 24
KINDS = ["call", "call", "meeting", "email", "email", "task", "note"]
STEPS = np.array([0, 1, 2, 3, 3, 4, 5, 6])  # stage changes per deal: ~3 on average
CRM_STAGES = ["Sales / Qualification", "Old pipeline / Waiting", "Partners / New"]
REASONS = ["price", "competitor", "no_budget", "no_need", "no_response", "timing"]
USERS = 60
SOURCES = ["Website", "Referral", "Cold call", "Exhibition"]
SEGMENTS = ["smb", "mid", "enterprise", "public"]


def generate(book: SalesBook, deals: int, per_deal: int, seed: int) -> DealTable:
    """A seeded tenant as columns (vectorised: the generator is not what is measured)."""
    rng = np.random.default_rng(seed)
    n, now = deals, micros(NOW)
    keys = [s.key for s in book.stages]
    S = len(keys)
    created = now - DAY - (rng.random(n) * 180 * DAY).astype(np.int64)
    steps = STEPS[rng.integers(0, len(STEPS), n)]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(steps, out=offsets[1:])
    hist_from = np.zeros(offsets[-1], dtype=np.int16)
    hist_to = np.zeros(offsets[-1], dtype=np.int16)
    hist_at = np.zeros(offsets[-1], dtype=np.int64)
    index = np.zeros(n, dtype=np.int64)  # active stage index (kept while deferred)
    from_key = np.zeros(n, dtype=np.int16)
    at = created.copy()
    for k in range(int(steps.max())):
        d = np.flatnonzero(steps > k)
        roll = rng.random(len(d))
        target = np.where(roll < 0.09, np.maximum(index[d] - 1, 0),
                          np.where(roll < 0.14, np.minimum(index[d] + 2, S - 1),
                                   np.minimum(index[d] + 1, S - 1)))
        deferred = roll < 0.05
        to_key = np.where(deferred, S, target).astype(np.int16)
        at[d] = np.minimum(at[d] + DAY + (rng.random(len(d)) * 12 * DAY).astype(np.int64),
                           now - HOUR)
        ti = offsets[d] + k
        hist_from[ti], hist_to[ti], hist_at[ti] = from_key[d], to_key, at[d]
        index[d] = np.where(deferred, index[d], target)
        from_key[d] = to_key
    stage = np.where(rng.random(n) < 0.01, UNMAPPED, from_key).astype(np.int16)
    roll = rng.random(n)
    status = np.where(roll < 0.6, OPEN, np.where(roll < 0.85, WON, LOST)).astype(np.int8)
    closed = np.minimum(at + (rng.random(n) * 20 * DAY).astype(np.int64), now)
    companies = max(1, n // 20)
    company = rng.integers(0, companies, n).astype(np.int32)
    reason_roll = rng.random(n)
    lost = status == LOST
    activities = _activities(rng, created, np.where(status == OPEN, np.minimum(at + 10 * DAY,
                                                                            now), closed),
                             at, per_deal, now)
    won_follow = np.flatnonzero((status == WON) & (rng.random(n) < 0.6))
    followups = _company_followups(rng, company[won_follow], closed[won_follow], companies)
    return DealTable(
        stage_keys=keys, deal_id=Numbered("D", n), status=status, stage=stage,
        crm_stage=np.where(stage == UNMAPPED, rng.integers(0, 3, n), 3).astype(np.int32),
        crm_stages=[*CRM_STAGES, "Sales / (mapped)"],
        stage_ignored=np.zeros(n, dtype=bool), created_at=created,
        won_at=np.where(status == WON, closed, NONE), lost_at=np.where(lost, closed, NONE),
        lost_reason_raw=np.where(lost & (reason_roll >= 0.05),
                                 rng.integers(0, len(REASONS) + 1, n), -1).astype(np.int32),
        reasons_raw=[r.replace("_", " ").title() for r in REASONS] + ["Manager left"],
        lost_reason_key=np.where(lost & (reason_roll >= 0.1),
                                 rng.integers(0, len(REASONS), n), -1).astype(np.int32),
        reason_keys=REASONS,
        contact_count=np.where(rng.random(n) < 0.05, 0, 2).astype(np.int32),
        fields={"lead_source": rng.random(n) < 0.9, "estimate_link": rng.random(n) < 0.85,
                "contract_number": rng.random(n) < 0.85},
        history_derived=steps == 0,
        snooze_until=np.where(rng.random(n) < 0.02, (NOW.date().toordinal() + 5), -1
                              ).astype(np.int32),
        snooze_reason=np.ones(n, dtype=bool), snooze_reasons=None,
        hist_offsets=offsets, hist_from=hist_from, hist_to=hist_to, hist_at=hist_at,
        hist_source=Numbered("h", int(offsets[-1])), kinds=sorted(set(KINDS)),
        activities=activities, company_group=company, company_activities=followups,
        company_id=Numbered("C", companies), owners=Numbered("U", USERS),
        owner=rng.integers(0, USERS, n).astype(np.int32), value=(
            rng.integers(0, 500, n) * 1000).astype(np.float64),
        lead_source=np.where(rng.random(n) < 0.9, rng.integers(0, len(SOURCES), n), -1
                             ).astype(np.int32), lead_sources=SOURCES,
        profit=np.where(rng.random(n) < 0.7, rng.integers(-50, 200, n) * 100.0, np.nan),
        is_tender=rng.random(n) < 0.1, public_incident=rng.random(n) < 0.01,
        groups_are_companies=True,
    )


def company_records(table: DealTable) -> tuple[dict[str, CompanyRecord], list[KarmaCompany]]:
    """The tenant's companies: segments, NPS answers, channels, a few public incidents."""
    assert table.company_id is not None
    records, karma = {}, []
    for i in range(len(table.company_id)):
        cid = table.company_id[i]
        records[cid] = CompanyRecord(cid, f"Company {i}", f"U{i % USERS}",
                                     segment=SEGMENTS[i % len(SEGMENTS)],
                                     nps=float(i % 11) if i % 3 == 0 else None,
                                     channel=("direct", "partner")[i % 2],
                                     region=("North", "South", "East")[i % 3])
        karma.append(KarmaCompany(cid, records[cid].name, records[cid].segment,
                                  1.0 if i % 97 == 0 else 0.0))
    return records, karma


def _activities(rng: np.random.Generator, start: np.ndarray, last: np.ndarray,
                planned_at: np.ndarray, per_deal: int, now: int) -> ActivityColumns:
    """``per_deal - 1`` done activities between ``start`` and ``last`` and one planned."""
    n = len(start)
    kinds = sorted(set(KINDS))
    span = np.maximum(last - start, HOUR)
    done_count = per_deal - 1
    when = (start[:, None] + (rng.random((n, done_count)) * span[:, None]).astype(np.int64))
    kind = np.array([kinds.index(k) for k in KINDS], dtype=np.int32)
    done_kind = kind[rng.integers(0, len(KINDS), (n, done_count))]
    due = now + (rng.integers(-5, 13, n) * DAY)
    plan_kind = kind[rng.integers(0, len(KINDS) - 1, n)]
    kinds_all = np.concatenate([done_kind, plan_kind[:, None]], axis=1).ravel()
    done = np.zeros((n, per_deal), dtype=bool)
    done[:, :done_count] = True
    done_at = np.full((n, per_deal), NONE, dtype=np.int64)
    done_at[:, :done_count] = when
    due_at = np.full((n, per_deal), NONE, dtype=np.int64)
    due_at[:, done_count] = due
    created = np.empty((n, per_deal), dtype=np.int64)
    created[:, :done_count] = when
    created[:, done_count] = planned_at
    offsets = np.arange(0, n * per_deal + 1, per_deal, dtype=np.int64)
    return ActivityColumns(offsets, kinds_all, done.ravel(),
                           kinds_all == kinds.index("note"), done_at.ravel(), due_at.ravel(),
                           created.ravel())


def _company_followups(rng: np.random.Generator, company: np.ndarray, at: np.ndarray,
                       companies: int) -> ActivityColumns:
    """One follow-up activity per given win, on the deal's company, created at the win."""
    order = np.argsort(company, kind="stable")
    company, at = company[order], at[order]
    counts = np.bincount(company, minlength=companies)
    offsets = np.zeros(companies + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    kinds = sorted(set(KINDS))
    kind = np.array([kinds.index(k) for k in ("call", "email", "meeting", "task")],
                    dtype=np.int32)[rng.integers(0, 4, len(at))]
    size = len(at)
    return ActivityColumns(offsets, kind, np.zeros(size, dtype=bool), np.zeros(size, dtype=bool),
                           np.full(size, NONE, dtype=np.int64), at + 3 * DAY, at)


def reference(table: DealTable, book: SalesBook, sample: int, audit_cpu: float) -> None:
    """The first ``sample`` deals through the reference engine, from DealFacts built from
    the same columns: the findings must be the same; CPU per deal compared."""
    facts = list(table.facts(0, sample))
    cpu = time.process_time()
    expected = list(audit_deals(facts, book, NOW, TZ))
    reference_cpu = time.process_time() - cpu
    same = list(audit_table(table.part(0, sample), book, NOW, TZ).findings()) == expected
    per_deal = reference_cpu / sample * 1e6
    columnar = audit_cpu / len(table) * 1e6
    print(f"reference:     audit_deals on the first {sample:,} deals: {reference_cpu:.1f} s CPU "
          f"= {per_deal:.1f} µs/deal (~{per_deal * len(table) / 1e6:.0f} s CPU for "
          f"{len(table):,}); columnar {columnar:.2f} µs/deal -> {per_deal / columnar:.0f}x; "
          f"same {len(expected):,} findings: {'yes' if same else 'NO'}")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--activities-per-deal", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--book", default=str(ROOT / "config/salesbooks/b2b-services-9.yaml"))
    parser.add_argument("--render", type=int, default=100_000,
                        help="render this many findings as Finding objects (explanations)")
    parser.add_argument("--reference", type=int, default=20_000,
                        help="also audit the first N deals with the reference engine "
                             "(DealFacts, audit_deals): same findings? CPU per deal?")
    args = parser.parse_args(argv)
    book = load_salesbook(Path(args.book))
    print(f"load average:  {os.getloadavg()[0]:.2f} (1 min; 2-core machine) at start")

    started = time.perf_counter()
    table = generate(book, args.deals, args.activities_per_deal, args.seed)
    companies, karma_companies = company_records(table)
    people = [Person(f"U{i}", f"User {i}", None, f"U{(i // 10) * 10}" if i % 10 else None)
              for i in range(USERS)]
    names = {p.user_id: p.name for p in people}
    generated = time.perf_counter() - started
    acts = len(table.activities) + len(table.company_activities)
    print(f"generated:     {len(table):,} deals, {len(table.hist_at):,} stage changes, "
          f"{acts:,} activities  {generated:6.1f} s (not counted)")

    phases: list[tuple[str, float]] = []
    cpu = time.process_time()
    clock = time.perf_counter()
    result = audit_table(table, book, NOW, TZ)
    phases.append(("audit", time.perf_counter() - clock))
    audit_cpu = time.process_time() - cpu
    by_rule = result.by_rule()
    print(f"audit:         {len(result):,} findings  {phases[-1][1]:6.1f} s")
    for rule, count in sorted(by_rule.items()):
        print(f"  {rule:<22}{count:>10,}")

    clock = time.perf_counter()
    kept = ~result.suppressed
    violations = ViolationColumns(result.deal[kept], result.rule[kept], RULE_ORDER,
                                  np.full(int(kept.sum()), micros(NOW), dtype=np.int64))
    client = table_client_totals(table, karma_companies, book.karma.client, NOW)
    segments = segment_karma(client, karma_companies)
    employee = table_employee_totals(table, companies, violations, book, TZ)
    teams, _ = resolve_teams([], people)
    managers = manager_karma(employee, teams)
    phases.append(("karma", time.perf_counter() - clock))
    print(f"karma:         {len(client):,} clients, {len(segments)} segments, "
          f"{len(employee):,} user-months, {len(managers):,} manager-months  "
          f"{phases[-1][1]:6.1f} s")

    clock = time.perf_counter()
    kpis, matrix = table_kpis(table, book, TZ, NOW, companies, names)
    phases.append(("kpis", time.perf_counter() - clock))
    print(f"KPIs:          funnel {len(kpis['funnel'])} stages, win rate "
          f"{kpis['win_rate']['rate']}, contact matrix {len(matrix['rows']):,} clients  "
          f"{phases[-1][1]:6.1f} s")
    del matrix

    total = sum(seconds for _, seconds in phases)
    cpu_total = time.process_time() - cpu
    peak = peak_rss_mb()
    print(f"total:         {total:.1f} s wall, {cpu_total:.1f} s CPU; target {TARGET_SECONDS:.0f} s"
          f" -> ratio {total / TARGET_SECONDS:.2f}")
    print(f"peak RSS:      {peak:,.0f} MB; target {TARGET_MB:,.0f} MB -> ratio "
          f"{peak / TARGET_MB:.2f}")

    if args.render:
        clock = time.perf_counter()
        rendered = 0
        for _ in result.findings():
            rendered += 1
            if rendered >= args.render:
                break
        seconds = time.perf_counter() - clock
        print(f"rendering:     {rendered:,} Finding objects (explanation + details) "
              f"{seconds:.1f} s = {seconds / max(rendered, 1) * 1e6:.1f} µs each (on demand, "
              "not in the total)")
    clock, cpu = time.perf_counter(), time.process_time()
    keys = sum(1 for _ in result.finding_keys())
    print(f"keys:          {keys:,} Finding.key strings (what a pass compares with the stored "
          f"violations) {time.perf_counter() - clock:.1f} s wall, "
          f"{time.process_time() - cpu:.1f} s CPU (not in the total)")
    if args.reference:
        reference(table, book, min(args.reference, len(table)), audit_cpu)
    print(f"load average:  {os.getloadavg()[0]:.2f} (1 min) at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
