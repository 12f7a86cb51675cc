"""Benchmark: audit 1,000,000 synthetic deals streamed from a generator.

    python bench/bench_audit.py                  # 1,000,000 deals, b2b-services-9
    python bench/bench_audit.py --deals 100000 --generate-only

Each deal is realistic for a B2B CRM: ~3 stage transitions (mostly forward, some skips,
backward moves and deferrals), ~5 activities (done calls, meetings, emails, notes and a
planned next step), a loss reason from the catalogue or not, lead source mostly filled.
Deals are made lazily, one at a time, so memory stays flat. Prints wall time, deals/s,
findings (per rule) and peak RSS. Targets: under 60 s and under 2 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from syncd.audit import DEFERRED, ActivityFact, AuditStats, DealFacts, Transition, audit_deals
from syncd.salesbook import SalesBook, load_salesbook

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
TZ = ZoneInfo("Europe/Moscow")
KINDS = ("call", "call", "meeting", "email", "email", "task", "note")
UNMAPPED = ("Sales / Qualification", "Old pipeline / Waiting", "Partners / New")
REASONS = ("price", "competitor", "no_budget", "no_need", "no_response", "timing")
HOUR = timedelta(hours=1)
DAY_S = 86_400
STEPS = (0, 1, 2, 3, 3, 4, 5, 6)  # transitions per deal: ~3 on average
ACT_IDS = ("a0", "a1", "a2", "a3")
SNOOZE = (NOW + timedelta(days=5)).date()
ACTIVE = timedelta(days=10)  # deals are worked on until ~10 days after their last move


class DealMaker:
    """Makes one plausible deal at a time against a book's stage order (cheap random draws:
    the generator's own time counts in the wall time)."""

    def __init__(self, book: SalesBook, seed: int) -> None:
        self.rng = random.Random(seed)
        self.stages = [s.key for s in book.stages]
        self.last = len(self.stages) - 1

    def deals(self, count: int) -> Iterator[DealFacts]:
        for n in range(count):
            yield self.deal(f"D{n}")

    def deal(self, deal_id: str) -> DealFacts:
        rand = self.rng.random
        created = NOW - timedelta(seconds=DAY_S + rand() * 180 * DAY_S)
        history, stage, at = self.history(created)
        roll = rand()
        status = "open" if roll < 0.6 else "won" if roll < 0.85 else "lost"
        closed_at = None if status == "open" else min(at + timedelta(days=rand() * 20), NOW)
        return DealFacts(
            deal_id=deal_id, title=deal_id, status=status, stage_key=stage,
            crm_stage=UNMAPPED[int(rand() * 3)] if stage is None else f"Sales / {stage}",
            created_at=created, company_id=f"C{int(rand() * 50_000)}",
            value=float(int(rand() * 500) * 1000),
            won_at=closed_at if status == "won" else None,
            lost_at=closed_at if status == "lost" else None,
            **self.loss(status), contact_count=0 if rand() < 0.05 else 2,
            fields=self.fields(), history=history, history_derived=not history,
            activities=self.activities(created, closed_at or min(at + ACTIVE, NOW), 5, at),
            company_activities=self.activities(closed_at, closed_at, 1, closed_at)
            if status == "won" and rand() < 0.6 else [],
            snooze_until=SNOOZE if rand() < 0.02 else None,
        )

    def history(self, created: datetime) -> tuple[list[Transition], str | None, datetime]:
        rand, at, index, from_key = self.rng.random, created, 0, self.stages[0]
        history: list[Transition] = []
        for step in range(STEPS[int(rand() * len(STEPS))]):
            target = self.next_index(index)
            at = min(at + timedelta(seconds=DAY_S + rand() * 12 * DAY_S), NOW - HOUR)
            to_key = DEFERRED if target is None else self.stages[target]
            history.append(Transition(from_key, to_key, at, f"h{step}"))
            index, from_key = (index if target is None else target), to_key
        stage = from_key if rand() >= 0.01 else None  # 1%: an unmapped CRM stage
        return history, stage, at

    def next_index(self, index: int) -> int | None:
        roll = self.rng.random()
        if roll < 0.05:
            return None  # deferred
        if roll < 0.09:
            return max(index - 1, 0)  # backward
        if roll < 0.14:
            return min(index + 2, self.last)  # a skip
        return min(index + 1, self.last)

    def activities(self, start: datetime | None, last: datetime | None, count: int,
                   planned_at: datetime | None) -> list[ActivityFact]:
        """``count - 1`` done activities between ``start`` and ``last`` (while the deal was
        worked on), and one planned step created at ``planned_at``."""
        if start is None or last is None:
            return []
        rand, span = self.rng.random, max((last - start).total_seconds(), 3600.0)
        acts = []
        for i in range(count - 1):
            when = start + timedelta(seconds=rand() * span)
            kind = KINDS[int(rand() * len(KINDS))]
            acts.append(ActivityFact(ACT_IDS[i], kind, True, when, None, when, kind == "note"))
        due = NOW + timedelta(days=int(rand() * 18) - 5)
        acts.append(ActivityFact("next", KINDS[int(rand() * 6)], False, None, due, planned_at))
        return acts

    def fields(self) -> dict[str, str]:
        rand, fields = self.rng.random, {}
        if rand() < 0.9:
            fields["lead_source"] = "website"
        if rand() < 0.85:
            fields["estimate_link"] = "https://estimates.example/x"
        if rand() < 0.85:
            fields["contract_number"] = "C-2024-1"
        return fields

    def loss(self, status: str) -> dict[str, str | None]:
        if status != "lost":
            return {}
        roll = self.rng.random()
        if roll < 0.05:
            return {"lost_reason_raw": None, "lost_reason_key": None}
        if roll < 0.1:
            return {"lost_reason_raw": "Manager left", "lost_reason_key": None}
        key = REASONS[int(roll * 100) % len(REASONS)]
        return {"lost_reason_raw": key.replace("_", " ").title(), "lost_reason_key": key}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--book", default=str(ROOT / "config/salesbooks/b2b-services-9.yaml"))
    parser.add_argument("--generate-only", action="store_true",
                        help="only generate the deals (to see the generator's share)")
    args = parser.parse_args(argv)
    book = load_salesbook(Path(args.book))
    deals = DealMaker(book, args.seed).deals(args.deals)
    stats = AuditStats()
    started = time.perf_counter()
    if args.generate_only:
        findings = sum(1 for _ in deals)
        by_rule: Counter[str] = Counter()
    else:
        findings = sum(1 for _ in audit_deals(deals, book, NOW, TZ, stats=stats))
        by_rule = stats.findings
    wall = time.perf_counter() - started
    print(f"deals:        {args.deals:,}{' (generated only)' if args.generate_only else ''}")
    print(f"wall time:    {wall:.1f} s")
    print(f"deals/s:      {args.deals / wall:,.0f}")
    print(f"findings:     {findings:,}" if not args.generate_only else "findings:     -")
    for rule, count in sorted(by_rule.items()):
        print(f"  {rule:<22}{count:>10,}")
    if stats.suppressed:
        print(f"  (suppressed by snooze: {len(stats.suppressed):,})")
    print(f"peak RSS:     {peak_rss_mb():,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
