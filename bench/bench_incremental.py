"""Benchmark: pass cost against what changed, on one stored tenant (issue 13, items 1, 2, 6).

    python bench/bench_incremental.py                    # 100,000 deals, SQLite in a temp dir
    python bench/bench_incremental.py --deals 20000 --url postgresql+psycopg://...

Each phase runs ``syncd.sync.run_pass`` in a fresh process (so peak RSS is that phase's own)
against an in-process CRM that generates a plausible B2B account: ``deals/4`` companies,
~3.75 activities and ~2 stage changes per deal, 30% open / 45% won / 25% lost. The CRM
accepts writes, and write-back is on with no per-pass write limit (every company's karma
and every deal's violations text is written on the first pass; ``--no-writeback`` turns
it off, as the figures before issue 13 item 2 were measured). Phases:

1. ``first``: first full pass (pull, store, audit, karma, write-back) of the whole account;
   ``report``: then the tenant's live report as a pass writes it (``syncd.report_stream``,
   streamed to a JSON file), in a process of its own; ``report_dict``: the same report
   built whole (``syncd.report.build_report`` + ``write_report``: the dashboard's and
   ``syncd report``'s way, and the pass's before issue 13 item 2);
2. ``none``: a pass with nothing new (the CRM returns no records);
3. ``changed``: a pass after ``--changed`` deals were edited (each also gets an activity);
4. ``daily``: a pass 1,000 changes later that also crosses the tenant's local midnight
   (every open deal and open follow-up finding is due);
5. ``tick``: a pass with the change of one 15-minute interval at 1% of deals a day.

With ``--pass-report`` every pass phase also ends as the daemon's pass does
(``Runner._write_report`` of ``syncd run``: the streamed report, the day's snapshot, the
file kept when the pass changed nothing it shows, and kept while it is younger than
``--report-minutes``, the daemon's ``report_minutes``, 60 by default), inside the phase's
figures; the report's fate is printed (``written`` / ``unchanged`` / ``deferred``), and
the capacity adds the day's other report rebuilds (the ``report`` phase's CPU each).

Prints CPU seconds, peak RSS and CRM writes per phase, the audit mode and deals audited,
and the capacity of one 2-core machine at a 15-minute interval (extrapolated from the
measured CPU per tenant-pass: 95 ``tick`` passes and one ``daily`` pass per day; the CRM's
own request time is not CPU and is left out). Targets: first pass and report < 300 MB;
no-change pass <= 2 s CPU and <= 250 MB; 1,000 changed deals <= 5 s CPU; >= 50 tenants
per machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from syncd import report_stream, store
from syncd.config import Tenant, TenantConfig
from syncd.connector import (
    ConnectionSettings,
    Connector,
    FieldSpec,
    FieldWrite,
    Inspection,
    PullContext,
    TaskCreate,
    WriteResult,
)
from syncd.plugins import make_plugin_manager
from syncd.records import Activity, Company, Deal, Page, Pipeline, Stage, StageChange
from syncd.report import build_report, write_report
from syncd.salesbook import load_salesbook
from syncd.sync import PassOptions, run_pass

ROOT = Path(__file__).resolve().parents[1]
BOOK = load_salesbook(ROOT / "config/salesbooks/b2b-services-9.yaml")
#: The first pass's clock: 14:00 in Moscow.
NOW = datetime(2026, 6, 15, 11, 0, tzinfo=UTC)
STAGES = [f"s{i}" for i in range(1, len(BOOK.stages) + 1)]
STAGE_NAMES = {**{k: f"Stage {k}" for k in STAGES}, "sd": "On hold", "s8": "Limbo"}
KINDS = ("call", "call", "meeting", "email", "task", "note")
REASONS = ("Price", "competitor", "No budget", None)
PAGE = 1000
DAY = timedelta(days=1)


class Account:
    """A deterministic generated CRM account; ``version`` edits ``changed`` deals."""

    def __init__(self, deals: int, seed: int = 1) -> None:
        self.deals = deals
        self.seed = seed

    def deal(self, n: int, version: int = 0) -> tuple[Deal, list[Activity], list[StageChange]]:
        rng = random.Random(self.seed * 1_000_003 + n * 7 + version * 1_000_000_007)
        created = NOW - timedelta(days=rng.uniform(1, 540))
        roll = rng.random()
        status = "open" if roll < 0.3 else "won" if roll < 0.75 else "lost"
        stage_index = rng.randrange(len(STAGES))
        stage = "sd" if status == "open" and rng.random() < 0.08 else STAGES[stage_index]
        history, at, here = [], created, 0
        for h in range(rng.choice((0, 1, 2, 2, 3, 4))):
            at = at + timedelta(days=rng.uniform(0.5, 20))
            if at >= NOW:
                break
            to = min(here + rng.choice((1, 1, 1, 2, -1)), len(STAGES) - 1)
            to = max(to, 0)
            history.append(StageChange(f"H{n}_{h}", f"D{n}", STAGES[here], STAGES[to], at))
            here = to
        closed = min(at + timedelta(days=rng.uniform(1, 30)), NOW - timedelta(hours=1))
        fields: dict[str, Any] = {"Source": rng.choice(("ads", "referral", "", "web"))}
        if rng.random() < 0.5:
            fields["Estimate link"] = "https://docs/x"
        if rng.random() < 0.3:
            fields["Contract"] = f"K-{n}"
        if rng.random() < 0.2:
            fields["Profit"] = str(rng.randint(-50, 500))
        if status == "open" and rng.random() < 0.05:
            fields["Snooze until"] = (NOW + timedelta(days=rng.randint(1, 20))).date().isoformat()
            fields["Snooze reason"] = "vacation"
        deal = Deal(f"D{n}", f"Deal {n}", status, "p1", stage, owner_id=f"U{n % 60}",
                    company_id=f"C{n % max(1, self.deals // 4)}",
                    contact_ids=[] if rng.random() < 0.1 else [f"P{n}"],
                    value=float(rng.choice((900, 1500, 4000, 12000))), created_at=created,
                    updated_at=NOW - timedelta(hours=version), stage_changed_at=at,
                    won_at=closed if status == "won" else None,
                    lost_at=closed if status == "lost" else None,
                    lost_reason=rng.choice(REASONS) if status == "lost" else None,
                    fields=fields)
        activities = []
        for a in range(rng.choice((1, 2, 3, 4, 5, 6, 5))):
            kind = rng.choice(KINDS)
            when = created + timedelta(days=rng.uniform(0, 60))
            done = when < NOW and rng.random() < 0.85
            activities.append(Activity(
                f"A{n}_{a}", kind, subject=kind, done=done, done_at=when if done else None,
                due_at=None if done else NOW + timedelta(days=rng.uniform(-10, 20)),
                deal_id=f"D{n}", company_id=deal.company_id, owner_id=deal.owner_id,
                created_at=min(when, NOW - timedelta(hours=2))))
        return deal, activities, history


class GeneratedCRM(Connector):
    """Serves the account: everything on a full pull, ``changes`` deals otherwise."""

    name = "benchcrm"
    streams = ("pipelines", "stages", "companies", "deals", "activities", "stage_history")
    account: ClassVar[Account]
    changes: ClassVar[list[int]] = []  # deal numbers changed since the last pass
    version: ClassVar[int] = 0

    def pull(self, stream: str, cursor: str | None, context: PullContext) -> Iterator[Page]:
        first = context.full or cursor is None
        numbers = range(self.account.deals) if first else self.changes
        if stream == "pipelines":
            yield Page(stream, [Pipeline("p1", "Sales")] if first else [], cursor="1")
        elif stream == "stages":
            yield Page(stream, [Stage(k, "p1", v, i) for i, (k, v)
                                in enumerate(STAGE_NAMES.items())] if first else [], cursor="1")
        elif stream == "companies":
            count = max(1, self.account.deals // 4) if first else 0
            for start in range(0, count, PAGE):
                yield Page(stream, [Company(f"C{i}", f"Company {i}", fields={
                    "Segment": ("smb", "ent", "gov")[i % 3]})
                    for i in range(start, min(count, start + PAGE))])
            yield Page(stream, [], cursor="1")
        else:
            for start in range(0, len(numbers), PAGE):
                records: list[Any] = []
                for n in numbers[start:start + PAGE]:
                    deal, activities, history = self.account.deal(
                        n, 0 if first else self.version)
                    records += {"deals": [deal], "activities": activities,
                                "stage_history": history}[stream]
                yield Page(stream, records, requests=1)
            yield Page(stream, [], cursor="1")

    def inspect(self) -> Inspection:
        return Inspection()

    # Writes are accepted and forgotten: the next pull serves the account as generated.
    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        pass

    def write_fields(self, changes: Sequence[FieldWrite]) -> list[WriteResult]:
        return [WriteResult(ok=True) for _ in changes]

    def find_tasks(self, tasks: Sequence[TaskCreate]) -> dict[str, str]:
        return {}

    def create_tasks(self, tasks: Sequence[TaskCreate]) -> list[WriteResult]:
        return [WriteResult(ok=True, crm_id=f"T-{task.marker}") for task in tasks]


def make_tenant(account: Account, *, writeback: bool = True) -> Tenant:
    connector = type("GeneratedCRMForBench", (GeneratedCRM,), {"account": account})
    config = {
        "plugin": "benchcrm", "salesbook": BOOK.key, "timezone": "Europe/Moscow",
        "connection": {"base_url": "mem://"},
        "mapping": {
            "stages": {"Sales": {**{f"Stage {k}": s.key for k, s in zip(STAGES, BOOK.stages,
                                                                          strict=True)},
                                 "On hold": "deferred"}},
            "loss_reasons": {"Price": "price", "No budget": "no_budget"},
            "activity_types": {k: k for k in KINDS},
            "fields": {"deal": {"lead_source": "Source", "estimate_link": "Estimate link",
                                "contract_number": "Contract", "profit": "Profit",
                                "snooze_until": "Snooze until",
                                "snooze_reason": "Snooze reason"},
                       "company": {"segment": "Segment"}},
        },
        "writeback": {"enabled": writeback, "max_writes_per_run": 10_000_000},
    }
    return Tenant(key="bench", file=Path("bench.yaml"),
                  config=TenantConfig.model_validate(config), book=BOOK,
                  connector_class=connector, settings=ConnectionSettings(base_url="mem://"),
                  interval_minutes=15)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase(url: str, deals: int, name: str, changed: int, at: str,
          writeback: bool = True, reports: str | None = None,
          report_minutes: int = 0) -> dict[str, Any]:
    """One pass (or the report) in this process; returns its figures."""
    account = Account(deals)
    tenant = make_tenant(account, writeback=writeback)
    if name in ("report", "report_dict"):
        return report_phase(url, tenant, datetime.fromisoformat(at), whole=name == "report_dict")
    numbers = random.Random(hash((name, changed)) & 0xFFFF).sample(range(deals), changed) \
        if changed else []
    tenant.connector_class.changes = sorted(numbers)  # type: ignore[attr-defined]
    tenant.connector_class.version = {"changed": 1, "daily": 2, "tick": 3}.get(name, 0)  # type: ignore[attr-defined]
    db = store.Database(url)
    db.upgrade()
    plugins = make_plugin_manager(load_entrypoints=False)
    now = datetime.fromisoformat(at)
    rss_before = peak_rss_mb()
    cpu = time.process_time()
    wall = time.monotonic()
    options = PassOptions(clock=lambda: now, full=name == "first")
    summary = run_pass(db, plugins, tenant, options)
    audit = dict(summary.audit)
    if reports is not None:  # the daemon's end of a pass (syncd.daemon.Runner)
        from types import SimpleNamespace

        from syncd.daemon import Runner

        runner = Runner(SimpleNamespace(reports_dir=Path(reports)),  # type: ignore[arg-type]
                        plugins, db, report_cadence=report_minutes > 0)
        tenant.report_minutes = report_minutes
        audit["report"] = runner._write_report(tenant, options, db, summary)[1]
    return {"phase": name, "cpu_s": round(time.process_time() - cpu, 2),
            "wall_s": round(time.monotonic() - wall, 2), "peak_rss_mb": round(peak_rss_mb()),
            "rss_before_pass_mb": round(rss_before), "audit": audit,
            "changed": summary.changed, "violations_open": summary.violations_open,
            "writes": summary.writes}


def report_phase(url: str, tenant: Tenant, now: datetime, *, whole: bool = False,
                 ) -> dict[str, Any]:
    """Write the tenant's live report as JSON: streamed, as a pass does, or built whole."""
    db = store.Database(url)
    rss_before = peak_rss_mb()
    cpu = time.process_time()
    wall = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        if whole:
            report = build_report(db, tenant, clock=now)
            size = write_report(report, Path(tmp)).stat().st_size
            count = len(report["violations"])
        else:
            parts, _ = report_stream.report_parts(db, tenant, clock=now)
            size = report_stream.write_report(parts, Path(tmp)).stat().st_size
            count = len(parts["violations"])
    return {"phase": "report_dict" if whole else "report",
            "cpu_s": round(time.process_time() - cpu, 2),
            "wall_s": round(time.monotonic() - wall, 2), "peak_rss_mb": round(peak_rss_mb()),
            "rss_before_pass_mb": round(rss_before), "audit": {"json_mb": round(size / 2**20, 1)},
            "changed": {}, "violations_open": count, "writes": {}}


PHASES = (  # name, changed deals, clock
    ("first", 0, NOW),
    ("report", 0, NOW + timedelta(minutes=5)),
    ("report_dict", 0, NOW + timedelta(minutes=5)),
    ("none", 0, NOW + timedelta(minutes=15)),
    ("changed", 1000, NOW + timedelta(minutes=30)),
    ("daily", 1000, NOW + timedelta(hours=10, minutes=15)),  # 00:15 in Moscow
    ("tick", 0, NOW + timedelta(hours=10, minutes=30)),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--url", help="database URL (default: SQLite in a temp dir)")
    parser.add_argument("--changed", type=int, default=1000)
    parser.add_argument("--no-writeback", action="store_true",
                        help="passes without write-back (the figures before issue 13 item 2)")
    parser.add_argument("--pass-report", action="store_true",
                        help="every pass also writes the report as the daemon does")
    parser.add_argument("--report-minutes", type=int, default=60,
                        help="with --pass-report: the daemon's report_minutes (default 60, "
                             "its default; 0: a report after every pass that changed data)")
    parser.add_argument("--reports", help=argparse.SUPPRESS)
    parser.add_argument("--phases", default=",".join(name for name, _, _ in PHASES
                                                     if name != "report_dict"),
                        help="the phases to run, in order (default: all)")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--at", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(args.url, args.deals, args.phase, args.count, args.at,
                               writeback=not args.no_writeback, reports=args.reports,
                               report_minutes=args.report_minutes)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/bench.db"
        tick = max(1, round(args.deals * 0.01 / 96))  # 1% of deals a day, 96 passes a day
        results = {}
        wanted = args.phases.split(",")
        daemon_report = (f", report as the daemon writes it (report_minutes "
                         f"{args.report_minutes})" if args.pass_report else "")
        print(f"{args.deals:,} deals, {url.split(':')[0]}, write-back "
              f"{'off' if args.no_writeback else 'on'}{daemon_report}; "
              f"load average {os.getloadavg()}")
        for name, changed, at in PHASES:
            if name not in wanted:
                continue
            count = {"changed": args.changed, "tick": tick}.get(name, changed)
            out = subprocess.run(
                [sys.executable, __file__, "--deals", str(args.deals), "--url", url,
                 "--phase", name, "--count", str(count), "--at", at.isoformat(),
                 *(["--no-writeback"] if args.no_writeback else []),
                 *(["--reports", f"{tmp}/reports", "--report-minutes",
                    str(args.report_minutes)] if args.pass_report else [])],
                check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            results[name] = result
            writes = {k: v for k, v in result["writes"].items() if v}
            print(f"{name:11} changed={count:<6} cpu {result['cpu_s']:7.2f} s  wall "
                  f"{result['wall_s']:7.2f} s  peak RSS {result['peak_rss_mb']:5} MB  "
                  f"audit {result['audit']}  open violations {result['violations_open']}"
                  f"  writes {writes}")
        if not {"tick", "daily", "none", "changed", "first"} <= results.keys():
            print(f"load average {os.getloadavg()}")
            return 0
        per_day = 95 * results["tick"]["cpu_s"] + results["daily"]["cpu_s"]
        how = "95 ticks + 1 daily pass"
        if args.pass_report and args.report_minutes and "report" in results:
            # the ticks above kept the report (deferred); the daemon rebuilds it once per
            # report_minutes besides the daily pass's rebuild: that many more reports
            rebuilds = min(95, max(0, 24 * 60 // args.report_minutes - 1))
            per_day += rebuilds * results["report"]["cpu_s"]
            how += f" + {rebuilds} report rebuilds"
        per_pass = per_day / 96
        capacity = int(2 * 15 * 60 / per_pass) if per_pass else 0
        print(f"CPU per tenant-pass at 1%/day ({how}): {per_pass:.2f} s; "
              f"a 2-core machine at a 15-minute interval keeps ~{capacity} such tenants "
              f"on schedule (extrapolated; CRM request time excluded)")
        print(f"targets: no-change {results['none']['cpu_s']} s CPU (<= 2), "
              f"{results['none']['peak_rss_mb']} MB (<= 250); {args.changed} changed "
              f"{results['changed']['cpu_s']} s CPU (<= 5); first pass "
              f"{results['first']['peak_rss_mb']} MB (< 300); report "
              f"{results.get('report', {}).get('peak_rss_mb')} MB (< 300); "
              f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
