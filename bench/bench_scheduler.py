"""Benchmark: the scheduler's own overhead with 1,000 tenants on one replica.

    python bench/bench_scheduler.py [--tenants 1000] [--ticks 200] [--db URL]

Every tenant has a 5-minute interval and was synced a moment ago, so nothing is due and
nothing changes: what is left is the scheduler itself. Each tick is what the daemon's loop
does every ``poll_seconds`` (flush debounced webhooks, one claim statement per interval
group over the lease table). Prints CPU and wall time per tick and what that costs per
5-minute interval at the default 5-second poll. ``--db`` takes a PostgreSQL URL (the lease
table's real home with several replicas); the default is a temporary SQLite file.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, update

from syncd import store
from syncd.config import ReplicaConfig
from syncd.daemon import Daemon, Runner
from syncd.store.models import TenantLeaseRow


@dataclass
class BenchTenant:
    """What the scheduler reads of a tenant: its key and interval."""

    key: str
    interval_minutes: int = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--db", default=None, help="database URL (default: temp SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = store.Database(args.db or Path(tmp) / "bench.db")
        db.upgrade()
        tenants: list[Any] = [BenchTenant(f"bench-scheduler-{i:04d}") for i in range(args.tenants)]
        runner = Runner(settings=None, plugins=None, db=db)  # type: ignore[arg-type]
        daemon = Daemon(runner, tenants, replica=ReplicaConfig(poll_seconds=5),
                        holder="bench")
        daemon.prepare()
        with db.session() as session:  # everyone synced just now: nothing due
            session.execute(update(TenantLeaseRow).values(acquired_at=datetime.now(UTC),
                                                          holder=None, expires_at=None))
        for _ in range(10):  # warm caches and the connection pool
            daemon.tick()
        cpu, wall = [], []
        for _ in range(args.ticks):
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            claimed = daemon.tick()
            cpu.append(time.process_time() - cpu_start)
            wall.append(time.perf_counter() - wall_start)
            assert not claimed, "nothing should be due"
        with db.session() as session:  # leave a shared --db as it was
            session.execute(delete(TenantLeaseRow).where(
                TenantLeaseRow.tenant_key.in_([t.key for t in tenants])))
        db.dispose()

    ticks_per_interval = 5 * 60 / 5
    cpu_ms = statistics.mean(cpu) * 1000
    print(f"database: {db.dialect}; tenants: {args.tenants}; ticks: {args.ticks}; "
          f"load: {os.getloadavg()[0]:.2f}")
    print(f"scheduler CPU per tick: mean {cpu_ms:.2f} ms, p95 "
          f"{sorted(cpu)[int(0.95 * len(cpu))] * 1000:.2f} ms")
    print(f"scheduler wall per tick: mean {statistics.mean(wall) * 1000:.2f} ms, "
          f"p95 {sorted(wall)[int(0.95 * len(wall))] * 1000:.2f} ms")
    print(f"per 5-minute interval ({ticks_per_interval:.0f} ticks at 5 s): "
          f"{cpu_ms * ticks_per_interval / 1000:.3f} CPU s = "
          f"{cpu_ms * ticks_per_interval / 1000 / 300 * 100:.3f} % of one core; "
          f"{cpu_ms / args.tenants * 1000:.2f} us CPU per tenant per tick")


if __name__ == "__main__":
    main()
