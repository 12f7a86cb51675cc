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
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime

from syncd_fakes.pipedrive.sample import scaled_dataset
from syncd_fakes.pipedrive.server import DEMO_TOKEN, FakePipedrive
from syncd_pipedrive import PipedriveConnector, PipedriveSettings

from syncd import store
from syncd.connector import STANDARD_STREAMS, PullContext
from syncd.records import Page

STREAMS = tuple(s for s in STANDARD_STREAMS if s != "stage_history")
ENTITY_PATHS = {"companies": "/api/v2/organizations", "contacts": "/api/v2/persons",
                "deals": "/api/v2/deals", "activities": "/api/v2/activities"}


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
    args = parser.parse_args(argv)
    sink = Sink(args.store)
    rate = args.burst_limit / args.window

    built = time.monotonic()
    dataset = scaled_dataset(args.deals, now=datetime.now(UTC))
    with FakePipedrive(dataset, burst_limit=args.burst_limit, window=args.window) as fake:
        print(f"fake Pipedrive: {dataset.name}; {len(dataset.organizations)} organizations, "
              f"{len(dataset.persons)} persons, {len(dataset.activities)} activities "
              f"(index built in {time.monotonic() - built:.1f} s)")
        settings = PipedriveSettings(base_url=fake.base_url, api_token=DEMO_TOKEN,
                                     burst_limit=args.burst_limit, burst_window=args.window,
                                     page_size=args.page_size)
        where = store.redacted_url(args.store) if args.store else "dropped (no store)"
        print(f"pages committed to: {where}")
        print(f"streams: {', '.join(STREAMS)} (stage_history excluded: one request per "
              "changed deal, not a paging workload)")

        cursors: dict[str, str] = {}
        connector = PipedriveConnector(settings, tenant="bench")
        started = time.monotonic()
        stats = pull(connector, cursors, sink)
        wall = time.monotonic() - started
        made = connector.client.requests_made
        bound = made / rate
        print("\nfull pull")
        for stream, (count, requests, seconds) in stats.items():
            print(f"  {stream:<15} {count:>9} records {requests:>6} requests {seconds:>8.1f} s")
        print(f"  wall time        {wall:.1f} s")
        print(f"  requests made    {made} (server saw {fake.requests_count})")
        print(f"  429s received    {fake.rate_limited_count}")
        print(f"  rate-limit bound {bound:.1f} s  (requests / {rate:g} rps)")
        print(f"  wall / bound     {wall / bound:.3f}  (target <= 1.15)")
        steady = max(made - args.burst_limit, 1) / rate  # the first burst is free
        print(f"  wall / bound without the first free burst  {wall / steady:.3f}")
        connector.close()

        seen = len(fake.requests)
        again = PipedriveConnector(settings, tenant="bench")
        stats = pull(again, cursors, sink)
        paths = Counter(path for _, path, _, _ in fake.requests[seen:])
        print("\nincremental pull, nothing changed")
        worst = 0
        for stream, path in ENTITY_PATHS.items():
            count, requests, _ = stats[stream]
            worst = max(worst, paths[path])
            print(f"  {stream:<15} {paths[path]} request(s), {count} record(s) re-read in "
                  "the overlap window")
        print(f"  requests per entity stream: max {worst} (target <= 1); 429s so far: "
              f"{fake.rate_limited_count}")
        again.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (fake server and client in one process): {peak:.0f} MB")
    ok = wall / bound <= 1.15 and fake.rate_limited_count == 0 and worst <= 1
    print("result:", "OK" if ok else "OUTSIDE TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
