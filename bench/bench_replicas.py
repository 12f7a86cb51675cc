"""Benchmark: 3 replicas against 1 on 300 tenants with changes (PostgreSQL).

    python bench/bench_replicas.py [--tenants 300] [--replicas 3] [--deals 10] [--fakes 3]
                                   [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each round creates a scratch database (dropped afterwards), starts ``--fakes`` fake
Pipedrive servers as separate processes (tenants spread over them), then ``syncd run``
replicas (``workers: 1`` each), and times how long until every tenant has one successful
pass: a first pass of a tenant pulls everything and writes karma back, i.e. has changes.
Prints tenants per second for 1 replica and for N, and the ratio. All processes share this
machine's cores, the fakes included, so for CPU-bound passes the ratio is bounded by the
free cores; ``--latency`` (default 0.05 s per request, a real CRM's round trip; 0 for none)
makes passes wait on the network as they do in production, which is what replicas overlap.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
import yaml
from psycopg import sql
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support import demo_tenant, syncd_command, write_config  # noqa: E402

from syncd import store  # noqa: E402
from syncd.store.db import normalize_url  # noqa: E402

TOKEN = "bench-replicas-token"


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    admin = normalize_url(admin_url)
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"syncd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def serve_fake(deals: int, latency: float) -> None:
    """``--serve-fake``: one fake Pipedrive whose every answer takes ``latency`` seconds."""
    import threading
    from datetime import UTC, datetime

    from syncd_fakes.pipedrive.sample import sample_dataset
    from syncd_fakes.pipedrive.server import FakePipedrive

    def slow(request: object) -> None:
        time.sleep(latency)  # the simulated network round trip, per request

    fake = FakePipedrive(sample_dataset(datetime.now(UTC), deals=deals), token=TOKEN,
                         burst_limit=100_000, faults=slow if latency else None)
    print(f"fake at {fake.start()}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()


@contextmanager
def fake_servers(count: int, deals: int, latency: float) -> Iterator[list[str]]:
    processes, urls = [], []
    try:
        for _ in range(count):
            process = subprocess.Popen(
                [sys.executable, __file__, "--serve-fake", "--deals", str(deals),
                 "--latency", str(latency)],
                stdout=subprocess.PIPE, text=True)
            processes.append(process)
            assert process.stdout is not None
            found = re.search(r"at (http://\S+)", process.stdout.readline())
            assert found, "the fake did not start"
            urls.append(found.group(1))
        yield urls
    finally:
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            process.wait(timeout=30)


def run_round(admin_url: str, tenants: int, replicas: int, deals: int, fakes: int,
              latency: float) -> float:
    """Seconds until every tenant has one successful pass."""
    with ExitStack() as stack:
        db_url = stack.enter_context(scratch_database(admin_url))
        urls = stack.enter_context(fake_servers(fakes, deals, latency))
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config = write_config(root, db_url, {
            f"t{i:03d}": {**demo_tenant(urls[i % len(urls)], token_env="BENCH_TOKEN"),
                          "interval_minutes": 600}
            for i in range(tenants)})
        data = yaml.safe_load(config.read_text("utf-8"))
        data.update(log_level="WARNING", http={"enabled": False},
                    replica={"workers": 1, "poll_seconds": 0.5, "lease_seconds": 60})
        config.write_text(yaml.safe_dump(data), "utf-8")
        db = store.Database(db_url)
        db.upgrade()  # before the clock starts: replicas would do it once anyway
        env = {**os.environ, "BENCH_TOKEN": TOKEN}
        started = time.monotonic()
        processes = [subprocess.Popen(syncd_command(config, "run"), env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for _ in range(replicas)]
        try:
            while True:
                with db.session() as session:
                    done = session.scalar(select(func.count(func.distinct(
                        store.SyncRunRow.tenant_id))).where(store.SyncRunRow.status == "ok"))
                if done >= tenants:
                    break
                if any(p.poll() is not None for p in processes):
                    raise SystemExit("a replica exited early")
                time.sleep(0.5)  # polling the database for progress
            seconds = time.monotonic() - started
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)
            db.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=300)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--deals", type=int, default=10)
    parser.add_argument("--fakes", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pg", default=os.environ.get(
        "SYNCD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake(args.deals, args.latency)
        return
    print(f"{args.tenants} tenants, {args.deals} deals each, {args.fakes} fake CRMs, "
          f"{args.latency * 1000:.0f} ms per request; "
          f"cpus {os.cpu_count()}; load {os.getloadavg()[0]:.2f}")
    one = run_round(args.pg, args.tenants, 1, args.deals, args.fakes, args.latency)
    print(f"1 replica:  {one:7.1f} s  {args.tenants / one:6.2f} tenants/s")
    many = run_round(args.pg, args.tenants, args.replicas, args.deals, args.fakes,
                     args.latency)
    print(f"{args.replicas} replicas: {many:7.1f} s  {args.tenants / many:6.2f} tenants/s")
    print(f"throughput ratio {args.replicas} vs 1: {one / many:.2f}x "
          f"(load now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
