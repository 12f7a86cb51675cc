"""Benchmark: what the shared rate budget costs per request (SQLite and PostgreSQL).

    python bench/bench_rate_budget.py [--requests 2000] [--processes 2]
                                      [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Every CRM request of a limiter with a shared budget first reserves its send time in the
``rate_budgets`` row of its integration (one short locked transaction). This measures that
reservation alone (a rule that never makes anyone wait), in one process and with
``--processes`` processes reserving on the same row at once, on a scratch SQLite file and
a scratch PostgreSQL database (dropped afterwards). Prints the mean, median and 95th
percentile in milliseconds next to the machine's load average: compare with amoCRM's
budget of one request per ~143 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from syncd.ratelimit import RateLimiter  # noqa: E402
from syncd.store import Database  # noqa: E402
from syncd.store.budget import BudgetStore, Window, budget_key  # noqa: E402
from syncd.store.db import normalize_url  # noqa: E402

RULE = Window(limit=10**9, window=1.0)  # never waits: only the bookkeeping is timed
KEY = budget_key("bench", "https://example.invalid", "account")


def _reserve_many(url: str, count: int, results: multiprocessing.Queue | None = None,
                  ) -> list[float]:
    db = Database(url)
    store = BudgetStore(db)
    store.reserve(KEY, RULE)  # connect and create the row outside the timing
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        store.reserve(KEY, RULE)
        timings.append(time.perf_counter() - started)
    db.dispose()
    if results is not None:
        results.put(timings)
    return timings


def _concurrent(url: str, count: int, processes: int) -> list[float]:
    queue: multiprocessing.Queue = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=_reserve_many, args=(url, count, queue))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    timings = [t for _ in workers for t in queue.get(timeout=600)]
    for worker in workers:
        worker.join()
    return timings


def _local_only(count: int) -> list[float]:
    limiter = RateLimiter(10**9, 1.0)
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        limiter.release(limiter.acquire())
        timings.append(time.perf_counter() - started)
    return timings


def _line(label: str, timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return (f"{label:<47} n={len(ms):>5}  mean {statistics.fmean(ms):7.3f} ms  "
            f"median {statistics.median(ms):7.3f} ms  p95 {p95:7.3f} ms")


def _libpq(url: str) -> str:
    return normalize_url(url).set(drivername="postgresql").render_as_string(False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--pg", default=os.environ.get(
        "SYNCD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(_line("in-process limiter only (baseline)", _local_only(args.requests)))
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        Database(url).upgrade()
        print(_line("sqlite: shared budget, 1 process", _reserve_many(url, args.requests)))
        print(_line(f"sqlite: shared budget, {args.processes} processes at once",
                    _concurrent(url, args.requests // args.processes, args.processes)))
    admin = normalize_url(args.pg)
    name = f"syncd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(args.pg), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = admin.set(database=name).render_as_string(False)
        Database(url).upgrade()
        print(_line("postgresql: shared budget, 1 process", _reserve_many(url, args.requests)))
        print(_line(f"postgresql: shared budget, {args.processes} processes at once",
                    _concurrent(url, args.requests // args.processes, args.processes)))
    finally:
        with psycopg.connect(_libpq(args.pg), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
    load_after = os.getloadavg()
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} "
          f"(1 min) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
