"""Benchmark: how many tenants one machine keeps on schedule with the real daemon loop.

    python bench/bench_capacity.py                       # 50 tenants x 100,000 deals
    python bench/bench_capacity.py --tenants 4 --deals 2000 --rounds 3   # a quick look

Issue 13 item 6. The CRM side is the fake Pipedrive (``syncd_fakes.pipedrive``, serving
``scaled_dataset``) in its own process; every tenant has its own API token (its own burst
window and rate budget, as separate Pipedrive companies have) on one shared dataset. The
syncd side is ``syncd.daemon.Daemon`` with its real loop (claims, leases, heartbeat,
worker threads, report writing) on a SQLite file (``--url`` for PostgreSQL).

Seeding: one real first pass of tenant 0, then its rows are cloned to the other tenants
with ``INSERT ... SELECT`` (records, cursors, audit state and due index, violations,
karma, ledgers), so every tenant starts as a synced 100k-deal account.

Time is compressed honestly: the interval is ``--interval-minutes`` (default 1) instead of
15, and during each compressed interval the fake receives the edits of a *real* 15 minutes
at ``--change-rate`` (1% of deals a day: deals x 0.01 / 96 per interval), so each pass does
a real 15-minute pass's work while the machine must do it 15x as often. Keeping the
schedule here therefore implies keeping it at 15 minutes; the implied capacity at 15 minutes
is 900 s x cores / CPU per tenant-pass.

Prints tenants, CPU per tenant-pass (p50/p95, the pass thread's own CPU), tick lag
(the daemon's ``Claim.late_seconds``, observed as ``syncd_pass_start_lag_seconds``:
p50/p95/max), whether every tenant kept its schedule (lag below one interval), the implied
capacity, the fake's CPU and the load average. Target: >= 50 tenants.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import text, update

from syncd import store
from syncd.config import load_settings, load_tenant
from syncd.daemon import Daemon, Runner, TenantOutcome
from syncd.lease import Lease
from syncd.plugins import make_plugin_manager
from syncd.store import leases
from syncd.store.models import Base, TenantLeaseRow
from syncd.sync import PassOptions

ROOT = Path(__file__).resolve().parents[1]
DEMO_TENANT = ROOT / "config/demo/tenants/northwind.yaml"
#: Requests per 2 s per token. Pipedrive Lite allows 20; the bench allows the settings'
#: maximum so the seeding pass's write-back does not take hours (said in the output).
BURST = 1000


def token(index: int) -> str:
    return f"bench-capacity-token-{index:03d}"


# --- the CRM: the fake Pipedrive in its own process ------------------------------------------
class _AnyOf(str):
    """The fake's token: equal to any of the tenants' tokens (one company account each)."""

    tokens: frozenset[str] = frozenset()

    def __ne__(self, other: object) -> bool:
        return other not in self.tokens

    def __eq__(self, other: object) -> bool:
        return other in self.tokens

    __hash__ = str.__hash__


def serve_fake(conn: Connection, deals: int, tenants: int) -> None:
    """The fake in a child process; "edit" n deals now, "stats", "stop"."""
    from syncd_fakes.pipedrive.sample import scaled_dataset
    from syncd_fakes.pipedrive.server import FakePipedrive

    accepted = _AnyOf("bench")
    accepted.tokens = frozenset(token(i) for i in range(tenants))
    dataset = scaled_dataset(deals, now=datetime.now(UTC))
    rng = random.Random(13)
    with FakePipedrive(dataset, token=accepted, burst_limit=BURST) as fake:
        conn.send(fake.base_url)
        while True:
            command, count = conn.recv()
            if command == "stop":
                return
            if command == "edit":  # a user touches deals: a title edit bumps update_time
                for deal_id in rng.sample(range(1, deals + 1), count):
                    fake.edit("deals", deal_id, title=f"Deal {deal_id} (edited)")
            usage = resource.getrusage(resource.RUSAGE_SELF)
            conn.send((fake.requests_count, fake.rate_limited_count,
                       usage.ru_utime + usage.ru_stime))


# --- seeding ----------------------------------------------------------------------------------
def write_config(root: Path, url: str, base_url: str, tenants: int, minutes: int) -> Path:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    config = {"database_url": url, "tenants_dir": "tenants",
              "salesbooks_dir": str(ROOT / "config/salesbooks"), "reports_dir": "reports",
              "log_level": "WARNING", "interval_minutes": minutes}
    (root / "syncd.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    template = yaml.safe_load(DEMO_TENANT.read_text(encoding="utf-8"))
    for i in range(tenants):
        tenant = {**template, "timezone": "UTC",
                  "connection": {**template["connection"], "base_url": base_url,
                                 "api_token": token(i), "burst_limit": BURST}}
        (root / "tenants" / f"t{i:03d}.yaml").write_text(yaml.safe_dump(tenant),
                                                          encoding="utf-8")
    return root / "syncd.yaml"


def clone_tenant(db: store.Database, source: int, target: int) -> None:
    """Copy every tenant-scoped row of ``source`` to ``target`` (new surrogate ids; a
    violation's link to the run that opened it is dropped, the runs are not copied)."""
    with db.session() as session:
        for table in Base.metadata.sorted_tables:
            if "tenant_id" not in table.columns or table.name == "sync_runs":
                continue
            names = [c.name for c in table.columns
                     if not (c.name == "id" and c.primary_key)]
            picks = [":target" if n == "tenant_id" else "NULL" if n == "run_id" else f'"{n}"'
                     for n in names]
            columns = ", ".join(f'"{n}"' for n in names)
            session.execute(text(f"INSERT INTO {table.name} ({columns}) "
                                 f"SELECT {', '.join(picks)} FROM {table.name} "
                                 "WHERE tenant_id = :source"),
                            {"source": source, "target": target})


# --- the daemon, instrumented ----------------------------------------------------------------
class MeasuredRunner(Runner):
    """The daemon's runner; records each pass's own CPU (its thread's) and outcome."""

    cpu: list[float]
    outcomes: list[TenantOutcome]

    def run_under_lease(self, tenant: Any, lease: Lease,
                        options: PassOptions | None = None) -> TenantOutcome:
        started = time.thread_time()
        outcome = super().run_under_lease(tenant, lease, options)
        self.cpu.append(time.thread_time() - started)
        self.outcomes.append(outcome)
        return outcome


class MeasuredDaemon(Daemon):
    """The daemon; keeps each claim's lateness (also observed in its histogram)."""

    late: list[float]
    passes_of: dict[str, int]

    def _start(self, claim: leases.Claim) -> None:
        if claim.late_seconds is not None:
            self.late.append(claim.late_seconds)
        self.passes_of[claim.tenant_key] = self.passes_of.get(claim.tenant_key, 0) + 1
        super()._start(claim)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="passes per tenant")
    parser.add_argument("--interval-minutes", type=int, default=1,
                        help="the compressed interval (each carries 15 real minutes)")
    parser.add_argument("--change-rate", type=float, default=0.01, help="deals a day")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--url", help="database URL (default: SQLite in a temp dir)")
    args = parser.parse_args(argv)
    interval = args.interval_minutes * 60
    per_interval = max(1, round(args.deals * args.change_rate / 96))
    print(f"load average {os.getloadavg()}; {args.tenants} tenants x {args.deals:,} deals; "
          f"interval compressed 15 min -> {interval} s ({900 / interval:.0f}x), each "
          f"carrying {per_interval} edited deals (a real 15 minutes at "
          f"{args.change_rate:.0%} a day); {args.workers} workers; burst limit {BURST} "
          "per 2 s", flush=True)
    conn, child = multiprocessing.Pipe()
    fake = multiprocessing.get_context("spawn").Process(
        target=serve_fake, args=(child, args.deals, args.tenants), daemon=True)
    fake.start()
    base_url = conn.recv()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/capacity.db"
        config = write_config(Path(tmp), url, base_url, args.tenants, args.interval_minutes)
        settings = load_settings(config)
        plugins = make_plugin_manager()
        tenants = [load_tenant(settings, f"t{i:03d}", plugins.connectors)
                   for i in range(args.tenants)]
        db = store.Database(url)
        db.upgrade()
        runner = MeasuredRunner(settings, plugins, db)
        runner.cpu, runner.outcomes = [], []

        cpu0, wall0 = time.process_time(), time.monotonic()
        first = runner.run_one_off(tenants[0])
        assert first.ok, first.error
        seed_pass = (time.process_time() - cpu0, time.monotonic() - wall0)
        wall0 = time.monotonic()
        with db.session() as session:
            ids = [store.ensure_tenant(session, t.key, t.config.plugin) for t in tenants]
        for target in ids[1:]:
            clone_tenant(db, ids[0], target)
        now = datetime.now(UTC)
        with db.session() as session:  # everyone synced within the last interval, spread
            leases.ensure_leases(session, [t.key for t in tenants])
            for i, tenant in enumerate(tenants):
                session.execute(update(TenantLeaseRow)
                                .where(TenantLeaseRow.tenant_key == tenant.key)
                                .values(acquired_at=now - timedelta(
                                    seconds=interval * (i + 1) / args.tenants)))
        print(f"seed: first pass of t000 {seed_pass[0]:.1f} s CPU / {seed_pass[1]:.1f} s wall; "
              f"cloned to {args.tenants - 1} tenants in {time.monotonic() - wall0:.1f} s",
              flush=True)
        runner.cpu.clear()

        daemon = MeasuredDaemon(runner, tenants, holder="bench-capacity",
                                replica=settings.daemon.replica.model_copy(
                                    update={"workers": args.workers, "poll_seconds": 1}))
        daemon.late, daemon.passes_of = [], {}
        done = threading.Event()

        def inject_and_watch() -> None:
            """Each interval's edits, spread over it in tenths; stop after the rounds."""
            step = interval / 10
            while not done.wait(step):
                conn.send(("edit", max(1, round(per_interval / 10))))
                conn.recv()
                passes = daemon.passes_of
                if len(passes) == len(tenants) and min(passes.values()) >= args.rounds:
                    done.set()
                    daemon.stop()

        watcher = threading.Thread(target=inject_and_watch, daemon=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        conn.send(("stats", 0))
        fake_cpu0 = conn.recv()[2]
        watcher.start()
        daemon.run()
        done.set()
        watcher.join()
        wall = time.monotonic() - wall0
        process_cpu = time.process_time() - cpu0
        conn.send(("stats", 0))
        requests, limited, fake_cpu = conn.recv()
        conn.send(("stop", 0))
        db.dispose()
    fake.join(timeout=30)

    cpu = runner.cpu
    failed = [o for o in runner.outcomes if not o.ok]
    late = daemon.late
    kept = bool(late) and max(late) < interval
    per_pass = statistics.mean(cpu) if cpu else float("nan")
    cores = os.cpu_count() or 1
    print(f"passes: {len(cpu)} ({len(failed)} failed) in {wall:.0f} s wall; daemon process "
          f"CPU {process_cpu:.0f} s ({process_cpu / wall:.2f} cores); fake CPU "
          f"{fake_cpu - fake_cpu0:.0f} s; {requests} requests, {limited} answered 429")
    print(f"CPU per tenant-pass: p50 {quantile(cpu, 0.5):.2f} s, p95 {quantile(cpu, 0.95):.2f} s, "
          f"mean {per_pass:.2f} s")
    print(f"tick lag (claim - due): p50 {quantile(late, 0.5):.1f} s, p95 "
          f"{quantile(late, 0.95):.1f} s, max {max(late, default=float('nan')):.1f} s "
          f"over {len(late)} claims; every tenant kept its {interval} s schedule: {kept}")
    print(f"implied capacity at a real 15-minute interval: {cores} cores x 900 s / "
          f"{per_pass:.2f} s = {int(cores * 900 / per_pass) if cpu else 0} tenants (by CPU; "
          f"one daemon process used {process_cpu / wall:.2f} cores); target >= 50")
    print(f"load average {os.getloadavg()}")
    for outcome in failed[:3]:
        print(f"failed: {outcome.tenant}: {outcome.error}")
    return 0 if kept and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
