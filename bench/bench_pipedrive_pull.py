"""Benchmark: a full Pipedrive pull at the Lite burst limit, then an incremental no-op pull.

    python bench/bench_pipedrive_pull.py --deals 100000

Serves ``scaled_dataset`` (orgs ~ deals/4, persons ~ deals/2, activities ~ 3 x deals) from
the fake Pipedrive enforcing 20 requests per rolling 2 s, pulls users..activities through
the connector (records are dropped, or committed with ``--store``),
and prints wall time against the rate-limit bound (requests / 10 rps; target <= 1.15 with
zero 429s). ``--store URL`` commits every page with its cursor to a real store, as
`syncd sync` does. Then a second pass with the committed cursors and nothing changed, printing the
requests per entity stream (target: 1 each). ``stage_history`` is excluded: it costs one
request per changed deal and says nothing about paging throughput.

The fake serves from its own process (``--fake-in-process`` for the old layout): a real
Pipedrive does not share our interpreter, and in one process the fake's JSON encoding
competed with the client for the GIL, so the ratio measured the fake as much as the pull.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from syncd_fakes.pipedrive.sample import scaled_dataset
from syncd_fakes.pipedrive.server import DEMO_TOKEN, FakePipedrive
from syncd_pipedrive import PipedriveConnector, PipedriveSettings

from syncd import store
from syncd.connector import STANDARD_STREAMS, PullContext
from syncd.records import Page

STREAMS = tuple(s for s in STANDARD_STREAMS if s != "stage_history")
ENTITY_PATHS = {"companies": "/api/v2/organizations", "contacts": "/api/v2/persons",
                "deals": "/api/v2/deals", "activities": "/api/v2/activities"}


def serve(conn: Connection, deals: int, burst_limit: int, window: float) -> None:
    """The fake in a child process: answers "stats" with its counters and the paths
    requested since a given index, and "stop"."""
    dataset = scaled_dataset(deals, now=datetime.now(UTC))
    with FakePipedrive(dataset, burst_limit=burst_limit, window=window) as fake:
        conn.send((fake.base_url, dataset.name, len(dataset.organizations),
                   len(dataset.persons), len(dataset.activities)))
        while True:
            command, since = conn.recv()
            if command == "stop":
                return
            conn.send((fake.requests_count, fake.rate_limited_count,
                       [path for _, path, _, _ in fake.requests[since:]]))


class FakeHandle:
    """The fake, in this process or in a child process, with the same few questions."""

    def __init__(self, deals: int, burst_limit: int, window: float, *,
                 in_process: bool) -> None:
        self.fake: Any = None
        if in_process:
            dataset = scaled_dataset(deals, now=datetime.now(UTC))
            self.fake = FakePipedrive(dataset, burst_limit=burst_limit, window=window)
            self.base_url = self.fake.start()
            self.info = (dataset.name, len(dataset.organizations), len(dataset.persons),
                         len(dataset.activities))
            return
        self.conn, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=serve, args=(child, deals, burst_limit, window), daemon=True)
        self.process.start()
        self.base_url, *info = self.conn.recv()
        self.info = tuple(info)

    def stats(self, since: int = 0) -> tuple[int, int, list[str]]:
        if self.fake is not None:
            return (self.fake.requests_count, self.fake.rate_limited_count,
                    [path for _, path, _, _ in self.fake.requests[since:]])
        self.conn.send(("stats", since))
        return self.conn.recv()

    def stop(self) -> None:
        if self.fake is not None:
            self.fake.stop()
            return
        self.conn.send(("stop", 0))
        self.process.join(timeout=10)


class Sink:
    """Where pages go: dropped (connector only) or committed to a real store with their
    cursor in one transaction, exactly as `syncd sync` does."""

    def __init__(self, url: str | None) -> None:
        self.database = None
        if url:
            self.database = store.Database(url)
            self.database.upgrade()
            with self.database.session() as session:
                self.tenant_id = store.ensure_tenant(session, "bench", "pipedrive")

    def commit(self, page: Page) -> None:
        if self.database is None:
            return
        with self.database.session() as session:
            store.upsert_page(session, self.tenant_id, page)
            if page.cursor is not None:
                store.set_cursor(session, self.tenant_id, page.stream, page.cursor)


def pull(connector: PipedriveConnector, cursors: dict[str, str], sink: Sink,
         ) -> dict[str, tuple[int, int, float]]:
    """Run every stream once; return stream -> (records, requests, seconds)."""
    stats: dict[str, tuple[int, int, float]] = {}
    context = PullContext()
    for stream in STREAMS:
        started = time.monotonic()
        count = requests = 0
        for page in connector.pull(stream, cursors.get(stream), context):
            sink.commit(page)
            count += len(page.records)
            requests += page.requests
            if page.cursor is not None:
                cursors[stream] = page.cursor
        stats[stream] = (count, requests, time.monotonic() - started)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--burst-limit", type=int, default=20, help="requests per window")
    parser.add_argument("--window", type=float, default=2.0, help="seconds")
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--store", metavar="URL", default=None,
                        help="commit every page to this database (e.g. sqlite:///var/bench.db "
                             "or postgresql+psycopg://postgres@127.0.0.1/test); default: drop")
    parser.add_argument("--fake-in-process", action="store_true",
                        help="serve the fake from this process (shares the GIL with the pull)")
    args = parser.parse_args(argv)
    sink = Sink(args.store)
    rate = args.burst_limit / args.window

    built = time.monotonic()
    fake = FakeHandle(args.deals, args.burst_limit, args.window,
                      in_process=args.fake_in_process)
    try:
        name, organizations, persons, activities = fake.info
        where = "this process" if args.fake_in_process else "its own process"
        print(f"fake Pipedrive: {name}; {organizations} organizations, {persons} persons, "
              f"{activities} activities (built in {time.monotonic() - built:.1f} s, served "
              f"from {where})")
        one, five, _ = os.getloadavg()
        print(f"load {one:.2f} / {five:.2f} (1/5 min), {os.cpu_count()} CPUs")
        settings = PipedriveSettings(base_url=fake.base_url, api_token=DEMO_TOKEN,
                                     burst_limit=args.burst_limit, burst_window=args.window,
                                     page_size=args.page_size)
        where = store.redacted_url(args.store) if args.store else "dropped (no store)"
        print(f"pages committed to: {where}")
        print(f"streams: {', '.join(STREAMS)} (stage_history excluded: one request per "
              "changed deal, not a paging workload)")

        cursors: dict[str, str] = {}
        connector = PipedriveConnector(settings, tenant="bench")
        started, cpu = time.monotonic(), time.process_time()
        stats = pull(connector, cursors, sink)
        wall, cpu = time.monotonic() - started, time.process_time() - cpu
        made = connector.client.requests_made
        seen, limited, _ = fake.stats(1 << 62)
        bound = made / rate
        print("\nfull pull")
        for stream, (count, requests, seconds) in stats.items():
            print(f"  {stream:<15} {count:>9} records {requests:>6} requests {seconds:>8.1f} s")
        print(f"  wall time        {wall:.1f} s (client CPU {cpu:.1f} s)")
        print(f"  requests made    {made} (server saw {seen})")
        print(f"  429s received    {limited}")
        print(f"  rate-limit bound {bound:.1f} s  (requests / {rate:g} rps)")
        print(f"  wall / bound     {wall / bound:.3f}  (target <= 1.15)")
        steady = max(made - args.burst_limit, 1) / rate  # the first burst is free
        print(f"  wall / bound without the first free burst  {wall / steady:.3f}")
        one, five, _ = os.getloadavg()
        print(f"  load {one:.2f} / {five:.2f} (1/5 min)")
        connector.close()

        again = PipedriveConnector(settings, tenant="bench")
        stats = pull(again, cursors, sink)
        _, limited, requested = fake.stats(seen)
        paths = Counter(requested)
        print("\nincremental pull, nothing changed")
        worst = 0
        for stream, path in ENTITY_PATHS.items():
            count, requests, _ = stats[stream]
            worst = max(worst, paths[path])
            print(f"  {stream:<15} {paths[path]} request(s), {count} record(s) re-read in "
                  "the overlap window")
        print(f"  requests per entity stream: max {worst} (target <= 1); 429s so far: "
              f"{limited}")
        again.close()
    finally:
        fake.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    what = "fake server and client" if args.fake_in_process else "client"
    print(f"\npeak memory ({what}): {peak:.0f} MB")
    ok = wall / bound <= 1.15 and limited == 0 and worst <= 1
    print("result:", "OK" if ok else "OUTSIDE TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
