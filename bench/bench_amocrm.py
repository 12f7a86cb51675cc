"""Benchmark: a full amoCRM pull at 7 requests/second, then a 10,000-value karma write-back.

    python bench/bench_amocrm.py --leads 100000

Serves ``scaled_dataset`` (companies = leads/4, contacts = leads/2, tasks and call notes =
leads/10, ~1.9 events per lead) from the fake amoCRM enforcing 7 requests per rolling
second (429 beyond), pulls every stream through the connector (records are dropped), and
prints wall time against the rate-limit bound (requests / 7; target <= 1.15, zero 429s).

Then writes 10,000 changed karma values the way the core does (``write_fields`` in chunks
of ``connector.field_batch_size``) and prints the requests used against the fewest the API
allows: one PATCH per ``batch_size`` records (250 is the largest batch third parties
report; the official library advises 50), plus the read-back GETs that keep our own write
from echoing as a change (``reread_after_write``).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime

from syncd_amocrm import AmoCRMConnector, AmoCRMSettings
from syncd_fakes.amocrm.sample import scaled_dataset
from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM

from syncd.connector import STANDARD_STREAMS, FieldSpec, FieldWrite, PullContext


def pull(connector: AmoCRMConnector) -> dict[str, tuple[int, int, float]]:
    """Run every stream once from scratch; return stream -> (records, requests, seconds)."""
    stats: dict[str, tuple[int, int, float]] = {}
    context = PullContext()
    for stream in STANDARD_STREAMS:
        started = time.monotonic()
        count = requests = 0
        for page in connector.pull(stream, None, context):
            count += len(page.records)
            requests += page.requests
        stats[stream] = (count, requests, time.monotonic() - started)
    return stats


def write_back(fake: FakeAmoCRM, settings: AmoCRMSettings, values: int) -> None:
    connector = AmoCRMConnector(settings, tenant="bench")
    connector.ensure_fields([FieldSpec("company", "syncd karma", "number")])
    writes = [FieldWrite("company", str(i), "syncd karma", round(i * 0.37 % 97, 2))
              for i in range(1, values + 1)]
    seen = len(fake.requests)
    before = connector.client.requests_made
    started = time.monotonic()
    failed = 0
    chunk = connector.field_batch_size  # what the core hands write_fields at once
    for first in range(0, len(writes), chunk):
        results = connector.write_fields(writes[first: first + chunk])
        failed += sum(not r.ok for r in results)
    wall = time.monotonic() - started
    made = connector.client.requests_made - before
    kinds = Counter(r.method for r in fake.requests[seen:])
    fewest = math.ceil(values / settings.batch_size)
    print(f"\nwrite-back of {values} changed karma values (batch_size {settings.batch_size},"
          f" reread_after_write {settings.reread_after_write}, core chunks of {chunk})")
    print(f"  requests         {made} ({kinds['PATCH']} PATCH, {kinds['GET']} GET read-back)")
    print(f"  fewest possible  {fewest} PATCH at {settings.batch_size} per request;"
          f" {math.ceil(values / 250)} at 250 (unconfirmed hard max)")
    print(f"  requests / fewest at this batch size  {made / fewest:.2f}"
          f"  (PATCH alone: {kinds['PATCH'] / fewest:.2f})")
    print(f"  failed writes    {failed}; wall {wall:.1f} s; 429s so far "
          f"{fake.rate_limited_count}")
    connector.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=7, help="requests per second")
    parser.add_argument("--writes", type=int, default=10_000)
    args = parser.parse_args(argv)
    print(f"load before: {os.getloadavg()}")
    built = time.monotonic()
    dataset = scaled_dataset(args.leads, now=datetime.now(UTC))
    with FakeAmoCRM(dataset, rate_limit=args.rate, window=1.0) as fake:
        print(f"fake amoCRM: {dataset.name}; {dataset.companies.size} companies,"
              f" {dataset.contacts.size} contacts, {dataset.tasks.size} tasks,"
              f" {len(dataset.event_index)} events (built in {time.monotonic() - built:.1f} s)")
        settings = AmoCRMSettings(base_url=fake.base_url, long_lived_token=DEMO_LONG_LIVED_TOKEN,
                                  rate_limit=args.rate)
        connector = AmoCRMConnector(settings, tenant="bench")
        started = time.monotonic()
        stats = pull(connector)
        wall = time.monotonic() - started
        made = connector.client.requests_made
        bound = made / args.rate
        print("\nfull pull")
        for stream, (count, requests, seconds) in stats.items():
            print(f"  {stream:<15} {count:>9} records {requests:>6} requests {seconds:>8.1f} s")
        print(f"  wall time        {wall:.1f} s")
        print(f"  requests made    {made} (server saw {len(fake.requests)})")
        print(f"  429s received    {fake.rate_limited_count}")
        print(f"  rate-limit bound {bound:.1f} s  (requests / {args.rate} rps)")
        print(f"  wall / bound     {wall / bound:.3f}  (target <= 1.15)")
        connector.close()
        write_back(fake, settings, args.writes)
        write_back(fake, settings.model_copy(update={"reread_after_write": False}),
                   args.writes)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (fake server and client in one process): {peak:.0f} MB")
    print(f"load after: {os.getloadavg()}")
    ok = wall / bound <= 1.15 and fake.rate_limited_count == 0
    print("result:", "OK" if ok else "OUTSIDE TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
