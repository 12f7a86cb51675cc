"""Benchmark: a full Bitrix24 pull at the default leaky bucket, then a karma write-back.

    python bench/bench_bitrix24.py --deals 100000 --writes 10000

Serves ``scaled_dataset`` (companies = deals/4, contacts = deals/2, activities = 3 x deals,
stage history = 2 x deals) from the fake Bitrix24 in a separate process, enforcing the
default bucket (burst 50, drain 2/s; a request above it gets 503 QUERY_LIMIT_EXCEEDED).

Pull: every stream through the connector (records are dropped). The bound the batch API
allows is computed from the rows: a request carries at most 50 list calls of 50 rows, so a
stream of R rows needs at least floor(R / 2500) + 1 requests (the last one sees the end),
each reference stream one; N such requests take (N - 50) / 2 s after the free burst. Prints
wall time, requests, the bound and the ratio (target <= 1.15), and limit errors (target 0).

Write-back: ``write_fields`` of ``--writes`` changed karma values (company UF field), with
the read-back verification (49 updates + 1 read per request) and without it (50 per
request; target <= ceil(writes / 50) requests).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

from syncd_bitrix24 import Bitrix24Connector, Bitrix24Settings
from syncd_fakes.bitrix24.sample import scaled_dataset

from syncd.connector import FieldSpec, FieldWrite, PullContext

ROWS_PER_REQUEST = 50 * 50
REFERENCE_REQUESTS = {"users": 1, "pipelines": 1, "stages": 1, "fields": 1,
                      "activity_types": 0}
CODE = "benchcode0b24"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stats(base: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/fake/stats", timeout=10) as answer:
        return json.loads(answer.read())


def serve(deals: int, burst: int, rate: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd_fakes.bitrix24.server", "--scaled", "--deals",
         str(deals), "--port", str(port), "--code", CODE, "--burst", str(burst),
         "--rate", str(rate)], stdout=subprocess.DEVNULL, env=os.environ)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            stats(base)
            return process, base
        except OSError:
            time.sleep(0.05)
    process.kill()
    message = "the fake did not start"
    raise SystemExit(message)


def minimal_requests(rows: dict[str, int]) -> int:
    return sum(REFERENCE_REQUESTS.values()) + sum(
        count // ROWS_PER_REQUEST + 1 for count in rows.values())


def bound_seconds(requests: int, burst: int, rate: float) -> float:
    return max(0, requests - burst) / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2.0)
    args = parser.parse_args()
    process, base = serve(args.deals, args.burst, args.rate)
    try:
        run(args, base)
    finally:
        process.terminate()
        process.wait(timeout=10)


def run(args: argparse.Namespace, base: str) -> None:
    dataset = scaled_dataset(args.deals, now=datetime.now(UTC))
    rows = {"companies": dataset.companies.size, "contacts": dataset.contacts.size,
            "deals": dataset.deals.size, "activities": dataset.activities.size,
            "stage_history": dataset.history.size}
    settings = Bitrix24Settings(base_url=base, webhook_url=f"{base}/rest/1/{CODE}/",
                                bucket_burst=args.burst, bucket_rate=args.rate)
    connector = Bitrix24Connector(settings, tenant="bench")
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1/5 min), "
          f"{os.cpu_count()} CPUs")
    print(f"full pull of {args.deals:,} deals, {rows['companies']:,} companies, "
          f"{rows['contacts']:,} contacts, {rows['activities']:,} activities, "
          f"{rows['stage_history']:,} history rows; bucket {args.burst} + {args.rate}/s")
    server_cpu = stats(base)["cpu_seconds"]
    started, cpu = time.monotonic(), time.process_time()
    pulled: dict[str, int] = {}
    per_stream: dict[str, tuple[int, float]] = {}
    for stream in connector.streams:
        before, t0 = connector.client.requests_made, time.monotonic()
        count = 0
        for page in connector.pull(stream, None, PullContext(full=True)):
            count += len(page.records)
        pulled[stream] = count
        per_stream[stream] = (connector.client.requests_made - before, time.monotonic() - t0)
    wall, cpu = time.monotonic() - started, time.process_time() - cpu
    requests = connector.client.requests_made
    for stream, (made, seconds) in per_stream.items():
        print(f"  {stream:15s} {pulled[stream]:>9,} records {made:>5} requests {seconds:7.1f} s")
    minimum = minimal_requests(rows)
    bound = bound_seconds(minimum, args.burst, args.rate)
    server = stats(base)
    print(f"pull: wall {wall:.1f} s, requests {requests} (minimum {minimum}), "
          f"bound {bound:.1f} s (burst {args.burst} then {args.rate}/s), "
          f"ratio {wall / bound if bound else float('nan'):.3f} (target <= 1.15), "
          f"limit errors {server['limit_errors']} (client saw {connector.client.limiter.refusals};"
          " target 0)")
    one, five, _ = os.getloadavg()
    print(f"  client CPU {cpu:.1f} s, fake server CPU "
          f"{server['cpu_seconds'] - server_cpu:.1f} s (its own process); "
          f"load {one:.2f} / {five:.2f} (1/5 min) after the pull")
    for stream, expected in rows.items():
        if pulled[stream] != expected:
            print(f"  MISMATCH {stream}: pulled {pulled[stream]}, portal has {expected}")

    connector.ensure_fields([FieldSpec("company", "syncd karma", "number")])
    writes = [FieldWrite("company", str(i), "syncd karma", round(i * 0.37 % 100, 2))
              for i in range(1, args.writes + 1)]
    for verify in (True, False):
        connector.settings.verify_writes = verify
        before, t0 = connector.client.requests_made, time.monotonic()
        results = connector.write_fields(writes)
        made = connector.client.requests_made - before
        failed = sum(1 for r in results if not r.ok)
        label = "verified (49 + read-back)" if verify else "unverified (50)"
        print(f"write-back {label}: {len(writes):,} karma values, {made} requests "
              f"(ceil(n/50) = {math.ceil(len(writes) / 50)}), {failed} failed, "
              f"{time.monotonic() - t0:.1f} s")
        writes = [FieldWrite(w.entity, w.external_id, w.field_name, float(w.value or 0) + 1)
                  for w in writes]
    print(f"limit errors overall: {stats(base)['limit_errors']}")
    connector.close()


if __name__ == "__main__":
    main()
