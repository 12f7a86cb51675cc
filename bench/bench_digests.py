"""Benchmark: what the digest timer costs a replica, and the claim/mark cost per address.

    python bench/bench_digests.py [--tenants 1000] [--ticks 20] [--db URL]

Every tenant has ``digests:`` with two managers and a director (3 weekly addresses). Three
figures, each per digest tick (the daemon runs one every ``digests.check_seconds``, 60 s):

- idle: no digest is due (most of the week): the tick only computes each tenant's slot;
- done: the weekly digest is due but every address already has it (the rest of the send
  window): one read of the period's rows per tenant;
- claims: claim + mark sent, per address, on an empty table (the sending moment itself,
  without building or sending the digest: those cost a report and an SMTP/HTTP round trip).

``--db`` takes a PostgreSQL URL; the default is a temporary SQLite file. Prints the load
average next to the figures (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from syncd import store
from syncd.digest_config import DigestsConfig
from syncd.digests.periods import latest_slot
from syncd.digests.service import DigestService, targets
from syncd.store import digests as deliveries

DIGESTS = DigestsConfig.model_validate({
    "email": {"host": "smtp.example", "sender": "digests@example.org"},
    "managers": [{"manager": "A", "email": "a@example.org"},
                 {"manager": "B", "email": "b@example.org"}],
    "director": {"email": "d@example.org"},
    "monthly": {"enabled": False}})  # the weekly digest is the one measured


@dataclass
class BenchConfig:
    digests: DigestsConfig
    timezone: str = "Europe/Moscow"
    language: str = "ru"


@dataclass
class BenchTenant:
    """What the digest timer reads of a tenant before anything is due to be sent."""

    key: str
    config: BenchConfig


def _ms_per_tick(service: DigestService, ticks: int) -> tuple[float, float]:
    wall, cpu = [], []
    for _ in range(ticks):
        w, c = time.perf_counter(), time.process_time()
        outcomes = service.tick()
        assert outcomes == [], "nothing may be sent in this benchmark"
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-digests-")
    url = args.db or f"sqlite:///{Path(folder) / 'bench.db'}"
    db = store.Database(url)
    db.upgrade()
    tenants: list[Any] = [BenchTenant(f"t{n:04d}", BenchConfig(DIGESTS))
                          for n in range(args.tenants)]
    zone = ZoneInfo("Europe/Moscow")
    monday = latest_slot("weekly", DIGESTS, zone, datetime.now(UTC)).at
    clock = {"now": (monday - timedelta(days=2)).astimezone(UTC)}  # a Saturday: nothing due
    service = DigestService(db, lambda: tenants, clock=lambda: clock["now"])
    idle_wall, idle_cpu = _ms_per_tick(service, args.ticks)

    # the claims: every address of every tenant, claimed and marked sent, one by one
    clock["now"] = monday.astimezone(UTC)
    slot = latest_slot("weekly", DIGESTS, zone, clock["now"])
    addresses = [t.address for t in targets(DIGESTS, "weekly")]
    started = time.perf_counter()
    count = 0
    for tenant in tenants:
        for address in addresses:
            with db.session() as session:
                claim = deliveries.claim(session, tenant_key=tenant.key, kind="weekly",
                                         recipient=address, period=slot.period,
                                         holder=service.holder, now=clock["now"],
                                         ttl=timedelta(minutes=5))
            assert claim is not None
            with db.session() as session:
                deliveries.mark_sent(session, claim, clock["now"])
            count += 1
    claim_ms = (time.perf_counter() - started) * 1000 / count

    clock["now"] = monday.astimezone(UTC) + timedelta(hours=1)  # due, but all sent
    done_wall, done_cpu = _ms_per_tick(service, args.ticks)

    load = os.getloadavg()
    print(f"database: {db.redacted_url()}; {args.tenants} tenants x {len(addresses)} weekly "
          f"addresses; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"idle tick (nothing due):          {idle_wall:8.1f} ms wall, {idle_cpu:8.1f} ms CPU"
          f"  ({idle_wall / args.tenants * 1000:.0f} us per tenant)")
    print(f"done tick (due, all sent):        {done_wall:8.1f} ms wall, {done_cpu:8.1f} ms CPU"
          f"  ({done_wall / args.tenants * 1000:.0f} us per tenant)")
    print(f"claim + mark sent, per address:   {claim_ms:8.2f} ms")
    print(f"share of a 60 s digest interval spent ticking when done: "
          f"{done_wall / 60_000:.2%}")
    db.dispose()


if __name__ == "__main__":
    main()
