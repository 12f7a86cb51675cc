"""Benchmark: KPIs and people karma over 1,000,000 deals and 5,000,000 activities, then the
incremental recomputation after 1,000 changed deals.

    python bench/bench_scoring.py                        # 1,000,000 deals, 5 activities each
    python bench/bench_scoring.py --deals 100000

Deals are generated lazily (one at a time) and streamed through the KPI accumulators; the
people ledger keeps them (it needs them to recompute a changed deal's company later).
Activities are generated and streamed, never kept. Each deal has ~2.5 stage changes
(mostly forward, some backward and deferred), a status (55% open, 25% won, 20% lost), an
owner among 60 users in 6 teams, a company among deals/4, a lead source; ~0.6 violations.

Prints wall time per phase, lines and rows, peak RSS and the incremental figures.
Targets: full < 60 s and < 2 GB on 2 cores; after 1,000 changed deals < 2 s.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from syncd.audit.facts import DEFERRED, Transition
from syncd.kpi import ActivityRecord, CompanyRecord, DealRecord, KpiState
from syncd.salesbook import load_salesbook
from syncd.scoring.people import (
    PeopleLedger,
    Person,
    ViolationRecord,
    apply_diff,
    employee_totals,
    manager_karma,
    resolve_teams,
)

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
TZ = ZoneInfo("Europe/Moscow")
DAY_S = 86_400
KINDS = ("call", "call", "meeting", "email", "task")
SOURCES = ("Website", "Referral", "Cold call", "Exhibition", None)
RULES = ("stalled", "inactive", "no_next_step", "missing_action", "no_lead_source")
USERS = [f"U{i}" for i in range(60)]
GRID = 600
POOL_BACK = int(3.2 * 365 * DAY_S // GRID)
POOL_FORWARD = int(366 * DAY_S // GRID)


def _mix(value: int) -> int:
    """A cheap, well-spread hash of an integer (a per-deal random stream's start)."""
    value = (value ^ (value >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    value = (value ^ (value >> 16)) * 0x45D9F3B & 0xFFFFFFFF
    return value ^ (value >> 16)


TABLE_BITS = 20
MASK = (1 << TABLE_BITS) - 1


class Maker:
    """Plausible deals and activities, cheap to draw (the generator's time is counted, and
    printed apart with --generate-only). Deal ``n`` is the same on every call: its random
    numbers come from a fixed table at an offset hashed from ``n``, so the bench needs no
    list of deals to know a changed deal's stored version."""

    def __init__(self, stages: list[str], deals: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.table = [self.rng.random() for _ in range(1 << TABLE_BITS)]
        self.stages, self.deals = stages, deals
        self.companies = max(1, deals // 4)
        self.company_ids = [f"C{i}" for i in range(self.companies)]
        self.epoch = NOW.timestamp()
        # shared datetimes on a 10-minute grid, 3.2 years back and 1 year forward: building
        # a datetime per fact would make the generator, not the code, the bottleneck
        self.pool = [datetime.fromtimestamp(self.epoch - i * GRID, UTC)
                     for i in range(-POOL_FORWARD, POOL_BACK)]

    def at(self, seconds_ago: float) -> datetime:
        return self.pool[int(seconds_ago // GRID) + POOL_FORWARD]

    def deal(self, n: int, *, version: int = 0) -> DealRecord:
        """Deal ``n`` (version 0: as stored; 1: after a change), the same on every call."""
        table, position = self.table, _mix(n * 2 + version)

        def rand() -> float:
            nonlocal position
            position += 1
            return table[position & MASK]

        age = DAY_S + rand() * 3 * 365 * DAY_S
        created = self.at(age)
        index, at, history = 0, age, []
        for step in range(int(rand() * 6)):
            at -= DAY_S + rand() * 12 * DAY_S
            if at <= 3600:
                break
            roll = rand()
            target = (None if roll < 0.05 else max(index - 1, 0) if roll < 0.1
                      else min(index + 1, len(self.stages) - 1))
            to_key = DEFERRED if target is None else self.stages[target]
            history.append(Transition(self.stages[index], to_key, self.at(at),
                                      f"h{n}.{step}"))
            if target is not None:
                index = target
        roll = rand()
        status = "open" if roll < 0.55 else "won" if roll < 0.8 else "lost"
        closed = self.at(max(at - rand() * 20 * DAY_S, 60)) if status != "open" else None
        return DealRecord(
            deal_id=f"D{n}", owner_id=USERS[int(rand() * len(USERS))],
            company_id=self.company_ids[int(rand() * self.companies)], status=status,
            value=float(int(rand() * 500) * 1000 + version), created_at=created,
            won_at=closed if status == "won" else None,
            lost_at=closed if status == "lost" else None,
            stage_key=self.stages[index], lead_source=SOURCES[int(rand() * len(SOURCES))],
            history=tuple(history), history_derived=not history)

    def activities(self, per_deal: int) -> Iterator[ActivityRecord]:
        rand, companies, at = self.rng.random, self.company_ids, self.at
        count, span, ahead = len(companies), 3 * 365 * DAY_S, 300 * DAY_S
        for _ in range(self.deals * per_deal):
            roll = rand()
            done = roll < 0.8
            when = at(roll * 1.25 * span if done else -(roll - 0.8) * 5 * ahead)
            yield ActivityRecord("", KINDS[int(rand() * 5)], done, when,
                                 companies[int(rand() * count)], None, None)

    def violations(self) -> Iterator[ViolationRecord]:
        rand = self.rng.random
        for n in range(int(self.deals * 0.6)):
            yield ViolationRecord(str(n), f"D{int(rand() * self.deals)}",
                                  RULES[int(rand() * len(RULES))],
                                  self.at(rand() * 365 * DAY_S))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--activities-per-deal", type=int, default=5)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--book", default=str(ROOT / "config/salesbooks/b2b-services-9.yaml"))
    parser.add_argument("--generate-only", action="store_true",
                        help="only generate deals, activities and violations (the generator's "
                             "share of the wall time)")
    args = parser.parse_args(argv)
    book = load_salesbook(Path(args.book))
    weights = book.karma.employee
    maker = Maker([s.key for s in book.stages], args.deals, args.seed)
    companies = {cid: CompanyRecord(cid, f"Company {cid}", USERS[i % len(USERS)],
                                    nps=float(i % 11) if i % 3 == 0 else None)
                 for i, cid in enumerate(maker.company_ids)}
    people = [Person(u, f"User {u}", None, USERS[(i // 10) * 10] if i % 10 else None)
              for i, u in enumerate(USERS)]
    names = {p.user_id: p.name for p in people}
    print(f"load:          {os.getloadavg()[0]:.2f} (1-min load average, 2-core machine)")
    if args.generate_only:
        started, cpu = time.perf_counter(), time.process_time()
        for n in range(args.deals):
            maker.deal(n)
        made = sum(1 for _ in maker.activities(args.activities_per_deal))
        made += sum(1 for _ in maker.violations())
        print(f"generated:     {args.deals:,} deals, {made:,} activities and violations  "
              f"{time.perf_counter() - started:.1f} s wall, "
              f"{time.process_time() - cpu:.1f} s CPU")
        return 0

    started, cpu = time.perf_counter(), time.process_time()
    state = KpiState(book, TZ, NOW)
    ledger = PeopleLedger(book, TZ)
    ledger.start(companies.values(), maker.violations())
    for n in range(args.deals):
        deal = maker.deal(n)
        state.add_deal(deal)
        ledger.add(deal)  # the ledger keeps a slim copy, without the history
    t_deals = time.perf_counter()
    activities = 0
    for activity in maker.activities(args.activities_per_deal):
        state.add_activity(activity)
        activities += 1
    t_acts = time.perf_counter()
    kpis = state.kpis(companies, names)
    matrix_rows = len(state.contact_matrix(companies)["rows"])  # built, counted, dropped
    t_kpis = time.perf_counter()
    ledger.finish()
    lines = ledger.line_count()
    totals = employee_totals(ledger.lines(), weights)
    teams, _ = resolve_teams([], people)
    managers = manager_karma(totals, teams)
    t_karma, cpu_full = time.perf_counter(), time.process_time() - cpu
    full = t_karma - started

    print(f"deals:         {args.deals:,} (generate; KPIs; people ledger)  "
          f"{t_deals - started:6.1f} s")
    print(f"activities:    {activities:,} (contact matrix)            {t_acts - t_deals:6.1f} s")
    print(f"KPI results:   funnel rows {len(kpis['funnel'])}, matrix rows "
          f"{matrix_rows:,}   {t_kpis - t_acts:6.1f} s")
    print(f"people karma:  {lines:,} ledger lines, {len(totals):,} user-months, "
          f"{len(managers):,} manager-months  {t_karma - t_kpis:6.1f} s")
    print(f"full total:    {full:.1f} s wall, {cpu_full:.1f} s CPU "
          "(target < 60 s; the generator's share: --generate-only)")
    print(f"peak RSS:      {peak_rss_mb():,.0f} MB (target < 2048 MB)")

    # -- incremental: N changed deals (new status/value/owner), re-scored and re-counted --------
    rng = random.Random(args.seed + 1)
    picked = rng.sample(range(args.deals), min(args.changed, args.deals))
    changed = []
    for n in picked:
        fresh = maker.deal(n, version=1)
        changed.append(fresh)
    started, cpu = time.perf_counter(), time.process_time()
    olds = [maker.deal(int(d.deal_id[1:])) for d in changed]  # as the store held them
    old_lines, new_lines = ledger.update(changed)
    touched = apply_diff(totals, old_lines, new_lines, weights)
    for old, new in zip(olds, changed, strict=True):
        state.update_deal(old, new)
    kpis = state.kpis(companies, names)
    t_update, cpu_update = time.perf_counter(), time.process_time() - cpu
    matrix_rows = len(state.contact_matrix(companies)["rows"])
    t_matrix = time.perf_counter()
    check = employee_totals(ledger.lines(), weights)
    drift = max(abs(check.get(k, 0.0) - v) for k, v in totals.items())
    print(f"changed deals: {len(changed):,}: ledger lines -{len(old_lines):,} "
          f"+{len(new_lines):,}, {len(touched):,} user-months touched")
    print(f"incremental:   {t_update - started:.3f} s wall, {cpu_update:.3f} s "
          "CPU  (ledger diff + totals + KPIs; target < 2 s)")
    print(f"  + matrix:    {t_matrix - t_update:.3f} s  (re-serializing the "
          f"{matrix_rows:,}-row contact matrix)")
    print(f"check:         incremental totals = full recomputation (max drift {drift:.2e})")
    print(f"peak RSS:      {peak_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
