"""Benchmark: how many tenants one machine keeps on schedule with the real daemon loop.

    python bench/bench_capacity.py                       # 50 tenants x 100,000 deals
    python bench/bench_capacity.py --tenants 4 --deals 2000 --rounds 3   # a quick look

Issue 13 item 6. The CRM side is the fake Pipedrive (``syncd_fakes.pipedrive``, serving
``scaled_dataset``) in its own process; every tenant has its own API token (its own burst
window and rate budget, as separate Pipedrive companies have) on one shared dataset. The
syncd side is ``syncd.daemon.Daemon`` with its real loop (claims, leases, heartbeat,
worker threads, report writing) on a SQLite file (``--url`` for PostgreSQL).

Seeding: one real first pass of tenant 0 (its write-back not held to
``max_writes_per_run``: the seeded tenants are past their onboarding drain), then its rows
are cloned to the other tenants with ``INSERT ... SELECT`` (records, cursors, audit state
and due index, violations, karma, ledgers), and each clone gets a report file built within
its ``report_minutes`` (spread over them), so every tenant starts as a synced 100k-deal
account in its steady state.

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
import cProfile
import dataclasses
import json
import multiprocessing
import os
import pstats
import random
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, available_timezones

import yaml
from sqlalchemy import event, text, update

from syncd import history, report_stream, store
from syncd.config import load_settings, load_tenant
from syncd.daemon import Daemon, Runner, TenantOutcome, pass_pool
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
#: Seeding estimates (minutes per 100k deals), only to place the tenants' midnight after
#: the seeding and the rounds: the first pass, and one tenant's clone.
SEED_MINUTES_PER_100K = 5.0
CLONE_MINUTES_PER_100K = 0.5


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
def write_config(root: Path, url: str, base_url: str, tenants: int, minutes: int,
                 timezone: str = "UTC") -> Path:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    config = {"database_url": url, "tenants_dir": "tenants",
              "salesbooks_dir": str(ROOT / "config/salesbooks"), "reports_dir": "reports",
              "log_level": "WARNING", "interval_minutes": minutes}
    (root / "syncd.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    template = yaml.safe_load(DEMO_TENANT.read_text(encoding="utf-8"))
    for i in range(tenants):
        tenant = {**template, "timezone": timezone,
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


def seed_reports(directory: Path, tenants: list[Any], now: datetime) -> None:
    """Give every clone the report file and state a tenant in its steady state has: a
    report built within its last ``report_minutes`` (spread over them, as passes spread
    over the interval), with changes noted since (so the daemon rebuilds each one when its
    cadence is up, not all at the first pass). The file is t000's (the content is rebuilt
    before anyone would read it; the bench reads only its fate)."""
    source = directory / f"{tenants[0].key}.json"
    for i, tenant in enumerate(tenants[1:], start=1):
        path = directory / f"{tenant.key}.json"
        shutil.copyfile(source, path)
        stat = path.stat()
        built = now - timedelta(minutes=tenant.report_minutes * i / len(tenants))
        report_stream.ReportState(
            0, history.local_day(now, tenant.config.timezone).isoformat(),
            report_stream.report_fingerprint(tenant), [0, 0], stat.st_size, stat.st_mtime_ns,
            built_as_of=built.isoformat(), pending=["seeded by the bench"],
        ).save(report_stream.state_path(directory, tenant.key))


# --- the midnight: a real local midnight, in one timezone shared by every tenant -------------
def zone_with_midnight_after(moment: datetime) -> tuple[str, datetime]:
    """A timezone whose next local midnight is the first quarter hour at or after ``moment``
    that has one (offsets of :00, :15, :30, :45 exist), and that midnight (UTC)."""
    zones = sorted(available_timezones())
    slot = moment.replace(second=0, microsecond=0) + timedelta(minutes=-moment.minute % 15)
    if slot < moment:
        slot += timedelta(minutes=15)
    for _ in range(4 * 24):
        for zone in zones:
            local = slot.astimezone(ZoneInfo(zone))
            if (local.hour, local.minute, local.second) == (0, 0, 0):
                return zone, slot
        slot += timedelta(minutes=15)
    raise LookupError("no timezone has its midnight in the next day")


# --- the daemon, instrumented ----------------------------------------------------------------
class PassRecord(NamedTuple):
    tenant: str
    started: datetime
    ended: datetime
    cpu: float
    ok: bool
    audited: int
    profiled: bool
    #: API requests of the pass, and the records it read (all streams): a steady-state
    #: pass reads what changed, not what our own write-back stamped (issue 13 item 3).
    requests: int = 0
    pulled: int = 0


class MeasuredRunner(Runner):
    """The daemon's runner; records each pass's own CPU (its thread's), wall and outcome."""

    cpu: list[float]
    outcomes: list[TenantOutcome]
    records: list[PassRecord]
    #: ``--profile``: every ``profile_every``-th pass of each kind runs under cProfile,
    #: merged into "regular" and "daily" (the first pass of a tenant after ``midnight``);
    #: profiled passes are left out of the CPU figures (cProfile slows them).
    profiles: dict[str, pstats.Stats] | None = None
    profile_every = 10
    midnight: datetime | None = None
    profile_lock = threading.Lock()
    seen: dict[str, int]

    def run_under_lease(self, tenant: Any, lease: Lease,
                        options: PassOptions | None = None) -> TenantOutcome:
        started, wall = time.thread_time(), datetime.now(UTC)
        profile: cProfile.Profile | None = None
        kind = "regular"
        if self.profiles is not None:
            with self.profile_lock:
                daily = self.midnight is not None and wall >= self.midnight and not any(
                    r.tenant == tenant.key and r.started >= self.midnight
                    for r in self.records)
                kind = "daily" if daily else "regular"
                self.seen[kind] = self.seen.get(kind, 0) + 1
                if self.seen[kind] % self.profile_every == 1:
                    profile = cProfile.Profile()
        if profile is None:
            outcome = super().run_under_lease(tenant, lease, options)
        else:
            outcome = profile.runcall(super().run_under_lease, tenant, lease, options)
            assert self.profiles is not None
            with self.profile_lock:
                if kind in self.profiles:
                    self.profiles[kind].add(profile)
                else:
                    self.profiles[kind] = pstats.Stats(profile)
        self.record(tenant.key, wall, time.thread_time() - started, outcome,
                    profiled=profile is not None)
        return outcome

    def record(self, tenant: str, started: datetime, cpu: float, outcome: TenantOutcome,
               *, profiled: bool = False) -> None:
        """One pass's figures (``cpu``: the pass's own, in its thread or worker)."""
        self.cpu.append(cpu)
        self.outcomes.append(outcome)
        summary = outcome.summary
        audit = summary.audit if summary is not None else {}
        self.records.append(PassRecord(
            tenant, started, datetime.now(UTC), cpu, outcome.ok,
            int(audit.get("deals_audited") or 0), profiled,
            summary.requests if summary is not None else 0,
            sum(summary.pulled.values()) if summary is not None else 0))


class MeasuredDaemon(Daemon):
    """The daemon; keeps each claim's lateness (also observed in its histogram), and with
    ``--worker-processes`` each pass's record (its CPU the worker's, from the outcome)."""

    late: list[tuple[datetime, float]]
    passes_of: dict[str, int]

    def _run_in_worker(self, tenant: Any, lease: Lease, pool: Any) -> TenantOutcome:
        wall = datetime.now(UTC)
        outcome = super()._run_in_worker(tenant, lease, pool)
        assert isinstance(self.runner, MeasuredRunner)
        self.runner.record(tenant.key, wall, outcome.cpu_seconds or 0.0, outcome)
        return outcome

    def _start(self, claim: leases.Claim) -> None:
        if claim.late_seconds is not None:
            self.late.append((datetime.now(UTC), claim.late_seconds))
        self.passes_of[claim.tenant_key] = self.passes_of.get(claim.tenant_key, 0) + 1
        super()._start(claim)


_WRITES = ("INSERT", "UPDATE", "DELETE", "BEGIN IMMEDIATE", "REPLACE")


def trace_locks(engine: Any, threshold: float, found: list[tuple[float, str]]) -> None:
    """Note every transaction that held SQLite's write lock (first write to commit or
    rollback) longer than ``threshold`` seconds, with the syncd frames that began writing:
    a writer holding it past the busy timeout starves the lease heartbeat."""
    def write(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "write_at" not in conn.info and statement.lstrip().upper().startswith(_WRITES):
            frames = [f"{Path(f.filename).name}:{f.lineno} {f.name}"
                      for f in traceback.extract_stack()
                      if "/syncd/" in f.filename and "/store/db.py" not in f.filename]
            conn.info["write_at"] = (time.monotonic(), " < ".join(reversed(frames[-6:])),
                                     statement.split("\n", maxsplit=1)[0][:80])

    def end(conn: Any) -> None:
        started = conn.info.pop("write_at", None)
        if started is not None and time.monotonic() - started[0] > threshold:
            held = time.monotonic() - started[0]
            found.append((held, f"{started[2]} | {started[1]}"))
            print(f"lock held {held:.1f} s: {started[2]} | {started[1]}", flush=True)

    event.listen(engine, "before_cursor_execute", write)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)


def rss_mb() -> float:
    """This process's resident set now (the daemon: the bench runs it in-process)."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daily_passes(records: list[PassRecord], midnight: datetime) -> dict[str, PassRecord]:
    """Each tenant's first pass that started after the local midnight: the daily one."""
    first: dict[str, PassRecord] = {}
    for record in sorted(records, key=lambda r: r.started):
        if record.started >= midnight and record.tenant not in first:
            first[record.tenant] = record
    return first


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="passes per tenant before the midnight")
    parser.add_argument("--interval-minutes", type=int, default=1,
                        help="the compressed interval (each carries 15 real minutes)")
    parser.add_argument("--change-rate", type=float, default=0.01, help="deals a day")
    parser.add_argument("--report-minutes", type=int, default=60,
                        help="the daemon's report_minutes at a real 15-minute interval "
                             "(compressed with the interval; default 60, its default)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-processes", action="store_true",
                        help="replica.worker_processes: each of the --workers passes in a "
                             "worker process of its own (default: threads of the daemon's "
                             "own process)")
    parser.add_argument("--url", help="database URL (default: SQLite in a temp dir)")
    parser.add_argument("--midnight-in", type=float,
                        help="minutes from the start after which the tenants' local midnight "
                             "falls (default: a seeding estimate + the rounds)")
    parser.add_argument("--no-midnight", action="store_true",
                        help="tenants in UTC, stop after the rounds (no midnight round)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="profile every daemon pass (cProfile; inflates the CPU figures) "
                             "and write PREFIX-regular.pstats / PREFIX-daily.pstats")
    parser.add_argument("--profile-every", type=int, default=10,
                        help="with --profile: profile one pass in this many of each kind")
    parser.add_argument("--after-midnight", type=float, default=30.0, metavar="MINUTES",
                        help="stop this long after the midnight even if some tenants have not "
                             "done their daily pass yet (the catch-up is then longer)")
    parser.add_argument("--trace-locks", type=float, default=5.0, metavar="SECONDS",
                        help="print each transaction holding the write lock longer")
    parser.add_argument("--dump", metavar="JSON",
                        help="write every pass and claim (times, CPU, lag) to this file")
    args = parser.parse_args(argv)
    interval = args.interval_minutes * 60
    per_interval = max(1, round(args.deals * args.change_rate / 96))
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()
    print(f"load average {load_start}; {args.tenants} tenants x {args.deals:,} deals; "
          f"interval compressed 15 min -> {interval} s ({900 / interval:.1f}x), each "
          f"carrying {per_interval} edited deals (a real 15 minutes at "
          f"{args.change_rate:.0%} a day); {args.workers} workers in "
          f"{'worker processes' if args.worker_processes else 'threads'}; burst limit "
          f"{BURST} per 2 s", flush=True)
    if args.profile and args.worker_processes:
        parser.error("--profile profiles passes in this process: not with --worker-processes")
    zone, midnight = "UTC", None
    if not args.no_midnight:
        minutes = args.midnight_in if args.midnight_in is not None else (
            SEED_MINUTES_PER_100K * args.deals / 100_000
            + CLONE_MINUTES_PER_100K * (args.tenants - 1) * args.deals / 100_000
            + (args.rounds + 0.5) * args.interval_minutes)
        zone, midnight = zone_with_midnight_after(
            datetime.now(UTC) + timedelta(minutes=minutes))
        print(f"every tenant in {zone}: its local midnight is at {midnight:%H:%M} UTC "
              f"(in {(midnight - datetime.now(UTC)).total_seconds() / 60:.0f} min); the "
              "first pass after it is the daily one (every open deal falls due)", flush=True)
    conn, child = multiprocessing.Pipe()
    fake = multiprocessing.get_context("spawn").Process(
        target=serve_fake, args=(child, args.deals, args.tenants), daemon=True)
    fake.start()
    base_url = conn.recv()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/capacity.db"
        config = write_config(Path(tmp), url, base_url, args.tenants, args.interval_minutes,
                              zone)
        settings = load_settings(config)
        plugins = make_plugin_manager()
        tenants = [load_tenant(settings, f"t{i:03d}", plugins.connectors)
                   for i in range(args.tenants)]
        # report_minutes compressed as the interval is (60 real minutes: 4 at 1-minute
        # intervals), so the daemon rebuilds each report as often per pass as it would
        for tenant in tenants:
            tenant.report_minutes = max(1, round(args.report_minutes * args.interval_minutes
                                                 / 15))
        db = store.Database(url)
        db.upgrade()
        locks: list[tuple[float, str]] = []
        trace_locks(db.engine, args.trace_locks, locks)
        runner = MeasuredRunner(settings, plugins, db, report_cadence=True)  # as `syncd run`
        runner.cpu, runner.outcomes, runner.records = [], [], []

        # Seeded as a tenant is after its first day: the first pass's write-back (every
        # deal's violations text, every company's karma) done, not deferred over ~110
        # passes by max_writes_per_run (that onboarding drain is not the steady state this
        # bench measures); the limit is back for the rounds.
        writeback = tenants[0].config.writeback
        limit = writeback.max_writes_per_run
        writeback.max_writes_per_run = 10**9
        # ... and under a long lease: one uncapped write-back of ~120,000 fields at load
        # 3-5 once lost its 90 s lease here (no renewal for 88 s, none failing), which a
        # production first pass (1,000 writes) does not risk; the rounds use the default.
        replica = settings.daemon.replica
        settings.daemon = settings.daemon.model_copy(update={
            "replica": replica.model_copy(update={"lease_seconds": 900})})
        cpu0, wall0 = time.process_time(), time.monotonic()
        first = runner.run_one_off(tenants[0])
        assert first.ok, first.error
        seed_pass = (time.process_time() - cpu0, time.monotonic() - wall0)
        # The first pass writes back to (nearly) every deal, which bumps their update time
        # in the CRM: the next pass re-reads them all. That echo is once in a tenant's life,
        # not the steady state; one more pass of t000 absorbs it before the cloning.
        cpu0, wall0 = time.process_time(), time.monotonic()
        settle = runner.run_one_off(tenants[0])
        assert settle.ok and settle.summary is not None, settle.error
        settle_pass = (time.process_time() - cpu0, time.monotonic() - wall0)
        writeback.max_writes_per_run = limit
        settings.daemon = settings.daemon.model_copy(update={"replica": replica})
        seed_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        wall0 = time.monotonic()
        with db.session() as session:
            ids = [store.ensure_tenant(session, t.key, t.config.plugin) for t in tenants]
        for target in ids[1:]:
            clone_tenant(db, ids[0], target)
        cloned = time.monotonic() - wall0
        now = datetime.now(UTC)
        seed_reports(settings.reports_dir, tenants, now)
        with db.session() as session:  # everyone synced within the last interval, spread
            leases.ensure_leases(session, [t.key for t in tenants])
            for i, tenant in enumerate(tenants):
                session.execute(update(TenantLeaseRow)
                                .where(TenantLeaseRow.tenant_key == tenant.key)
                                .values(acquired_at=now - timedelta(
                                    seconds=interval * (i + 1) / args.tenants)))
        size = Path(url.removeprefix("sqlite:///")).stat().st_size / 2**30 \
            if url.startswith("sqlite:///") else float("nan")
        print(f"seed: first pass of t000 {seed_pass[0]:.1f} s CPU / {seed_pass[1]:.1f} s wall, "
              f"settling pass {settle_pass[0]:.1f} s CPU / {settle_pass[1]:.1f} s wall "
              f"(re-read {settle.summary.changed}, wrote {settle.summary.writes}), "
              f"peak RSS {seed_rss:.0f} MB; cloned to {args.tenants - 1} tenants in "
              f"{cloned:.1f} s ({cloned / max(1, args.tenants - 1):.1f} s each); database "
              f"{size:.1f} GiB; load average {os.getloadavg()}", flush=True)
        if midnight is not None and datetime.now(UTC) > midnight - timedelta(
                seconds=args.rounds * interval):
            print(f"warning: the midnight comes before {args.rounds} rounds "
                  "(seeding took longer than estimated; --midnight-in)", flush=True)
        runner.cpu.clear()
        runner.records.clear()
        runner.seen = {}
        if args.profile:
            runner.profiles, runner.midnight = {}, midnight
            runner.profile_every = args.profile_every

        replica = settings.daemon.replica.model_copy(
            update={"workers": args.workers, "worker_processes": args.worker_processes,
                    "poll_seconds": 1})
        pool = pass_pool(dataclasses.replace(settings, daemon=settings.daemon.model_copy(
            update={"replica": replica})))
        daemon = MeasuredDaemon(runner, tenants, holder="bench-capacity", replica=replica,
                                pool=pool)
        daemon.late, daemon.passes_of = [], {}
        done = threading.Event()
        peak_rss = [rss_mb()]

        def finished() -> bool:
            if midnight is not None and datetime.now(UTC) > midnight + timedelta(
                    minutes=args.after_midnight):
                return True  # whatever the rounds: the time is up
            passes = daemon.passes_of
            if len(passes) < len(tenants) or min(passes.values()) < args.rounds:
                return False
            return midnight is None or (
                len(daily_passes(runner.records, midnight)) == len(tenants)) or (
                datetime.now(UTC) > midnight + timedelta(minutes=args.after_midnight))

        def inject_and_watch() -> None:
            """Each interval's edits, spread over it in tenths; stop after the rounds (and
            once every tenant has done its daily pass)."""
            step = interval / 10
            ticks = 0
            while not done.wait(step):
                conn.send(("edit", max(1, round(per_interval / 10))))
                conn.recv()
                peak_rss[0] = max(peak_rss[0], rss_mb())
                ticks += 1
                if ticks % 10 == 0:
                    records, late = list(runner.records), list(daemon.late)
                    recent = [x for _, x in late[-len(tenants):]]
                    cpu_now = statistics.mean([r.cpu for r in records[-len(tenants):]] or [0])
                    print(f"{datetime.now(UTC):%H:%M:%S} passes {len(records)}, fewest per "
                          f"tenant {min(daemon.passes_of.values(), default=0)}, last "
                          f"{len(recent)} claims lag max {max(recent, default=0):.1f} s, CPU "
                          f"mean {cpu_now:.2f} s, "
                          f"RSS {rss_mb():.0f} MB, load {os.getloadavg()[0]:.2f}", flush=True)
                if finished():
                    done.set()
                    daemon.stop()

        watcher = threading.Thread(target=inject_and_watch, daemon=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        conn.send(("stats", 0))
        fake_cpu0 = conn.recv()[2]
        def stop_early(signum: int, frame: Any) -> None:
            # a run stopped by hand (or by a time limit) still prints and dumps what it saw
            print(f"signal {signum}: stopping; the figures below are those so far",
                  flush=True)
            done.set()
            daemon.stop()

        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, stop_early)
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

    if args.dump:
        Path(args.dump).write_text(json.dumps({
            "midnight": midnight.isoformat() if midnight else None, "zone": zone,
            "interval": interval, "passes": [
                [r.tenant, r.started.isoformat(), r.ended.isoformat(), r.cpu, r.ok,
                 r.audited, r.profiled, r.requests, r.pulled] for r in runner.records],
            "claims": [[at.isoformat(), late] for at, late in daemon.late]}), encoding="utf-8")
    failed = [o for o in runner.outcomes if not o.ok]
    daily = daily_passes(runner.records, midnight) if midnight is not None else {}
    regular = [r for r in runner.records if daily.get(r.tenant) is not r]
    cpu = [r.cpu for r in regular if not r.profiled]
    before = [late for at, late in daemon.late if midnight is None or at < midnight]
    kept = bool(before) and max(before) < interval
    per_pass = statistics.mean(cpu) if cpu else float("nan")
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = (f"; worker processes CPU {children.ru_utime + children.ru_stime:.0f} s "
               f"(with the fake's), the largest's peak RSS {children.ru_maxrss / 1024:.0f} MB"
               if args.worker_processes else "")
    print(f"passes: {len(runner.records)} ({len(failed)} failed) in {wall:.0f} s wall; daemon "
          f"process CPU {process_cpu:.0f} s ({process_cpu / wall:.2f} cores), peak RSS "
          f"{peak_rss[0]:.0f} MB while running (sampled), {max_rss:.0f} MB "
          f"with the seeding{workers}; fake CPU {fake_cpu - fake_cpu0:.0f} s; {requests} "
          f"requests, {limited} answered 429")
    reports = Counter(o.report_outcome for o in runner.outcomes if o.ok)
    print(f"report files after the passes: {dict(reports)} (report_minutes "
          f"{tenants[0].report_minutes} at this interval)")
    print(f"CPU per tenant-pass ({len(cpu)} regular passes): p50 {quantile(cpu, 0.5):.2f} s, "
          f"p95 {quantile(cpu, 0.95):.2f} s, mean {per_pass:.2f} s; deals audited p50 "
          f"{quantile([float(r.audited) for r in regular], 0.5):.0f}")
    steady = regular[len(tenants):]  # after each tenant's first pass
    print(f"regular passes after the first round ({len(steady)}): API requests p50 "
          f"{quantile([float(r.requests) for r in steady], 0.5):.0f}, max "
          f"{max((r.requests for r in steady), default=0)}; records read p50 "
          f"{quantile([float(r.pulled) for r in steady], 0.5):.0f}, max "
          f"{max((r.pulled for r in steady), default=0)}")
    print(f"tick lag (claim - due) before the midnight: p50 {quantile(before, 0.5):.1f} s, p95 "
          f"{quantile(before, 0.95):.1f} s, max {max(before, default=float('nan')):.1f} s "
          f"over {len(before)} claims; every tenant kept its {interval} s schedule: {kept}")
    capacity = int(cores * 900 / per_pass) if cpu else 0
    # each process running passes is about one core of Python
    lanes = min(args.workers, cores) if args.worker_processes else 1
    replica_capacity = int(lanes * 900 / per_pass) if cpu else 0
    print(f"implied capacity at a real 15-minute interval: this replica ({lanes} process(es) "
          f"running passes, each about one core of Python) {lanes} x 900 s / "
          f"{per_pass:.2f} s = {replica_capacity} tenants; the machine's {cores} cores x "
          f"900 s / {per_pass:.2f} s = {capacity} (replica.worker_processes, {cores} "
          "workers); "
          "target >= 50")
    if midnight is not None:
        day_cpu = [r.cpu for r in daily.values() if not r.profiled]
        day_mean = statistics.mean(day_cpu) if day_cpu else float("nan")
        catch_up = max((r.ended for r in daily.values()), default=midnight) - midnight
        after = [late for at, late in daemon.late if at >= midnight]
        per_day = 95 * per_pass + day_mean
        print(f"midnight round ({zone}, {midnight:%H:%M} UTC): {len(daily)} daily passes, "
              f"CPU p50 {quantile(day_cpu, 0.5):.2f} s, p95 {quantile(day_cpu, 0.95):.2f} s, "
              f"mean {day_mean:.2f} s, max {max(day_cpu, default=float('nan')):.2f} s; deals "
              f"audited p50 {quantile([float(r.audited) for r in daily.values()], 0.5):.0f}")
        if len(daily) < len(tenants):
            print(f"midnight catch-up NOT finished: {len(daily)} of {len(tenants)} tenants "
                  f"had done their daily pass when the bench stopped, "
                  f"{args.after_midnight:.0f} min after the midnight")
        print(f"midnight catch-up: {len(daily)} tenants finished their daily pass "
              f"{catch_up.total_seconds():.0f} s after the midnight (real 15-minute interval: "
              f"900 s; within it: {catch_up.total_seconds() < 900}); tick lag after the "
              f"midnight max {max(after, default=float('nan')):.1f} s over {len(after)} claims")
        print(f"implied capacity with the daily pass, this replica ({lanes} process(es)): "
              f"by CPU over a day {lanes} x 86400 s / (95 x {per_pass:.2f} + "
              f"{day_mean:.2f}) s = {int(lanes * 86400 / per_day)} tenants; one shared "
              f"timezone, every daily pass within one 15-minute interval {lanes} x 900 s / "
              f"{day_mean:.2f} s = {int(lanes * 900 / day_mean)} tenants ({cores} cores: "
              f"{int(cores * 86400 / per_day)} and {int(cores * 900 / day_mean)})")
    print(f"transactions holding the write lock over {args.trace_locks:.0f} s: {len(locks)}"
          + (f", longest {max(locks)[0]:.1f} s: {max(locks)[1]}" if locks else ""))
    print(f"load average at the start {load_start}, at the end {os.getloadavg()}")
    for outcome in failed[:3]:
        print(f"failed: {outcome.tenant}: {outcome.error}")
    for kind, stats in (runner.profiles or {}).items():
        stats.dump_stats(f"{args.profile}-{kind}.pstats")
        print(f"--- profile of the {kind} passes (cumulative, top 30) ---")
        stats.sort_stats("cumulative").print_stats(30)
    return 0 if kept and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
