"""Benchmark: the dashboard's pages and the report JSON over a big stored tenant, built
the whole-report way (``build_report``: every violation in memory, as before) and the
live way (``syncd.report_live``: the two long lists read from the store as they are gone
through; the deal list keeps only the page it shows).

    python bench/bench_incremental.py --deals 100000 --phases first --url sqlite:////tmp/b.db
    python bench/bench_dashboard_store.py --url sqlite:////tmp/b.db --deals 100000

The tenant is bench_incremental's generated account (seed it first, as above). Each page
is built in a fresh process, so its peak RSS is its own. Prints CPU seconds, wall seconds
and peak RSS per page and way, the ratio, and the load average.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_incremental as generated

from syncd import deal_list, store
from syncd.report import build_report
from syncd.report_html import render_html
from syncd.report_live import live_report, write_json

PAGES = ("tenant page", "deals page 1", "deals of one owner", "report json")


class _Counting(io.TextIOBase):
    """A text sink that only counts what is written (the JSON's size)."""

    def __init__(self) -> None:
        self.chars = 0

    def write(self, text: str) -> int:
        self.chars += len(text)
        return len(text)


def build(url: str, deals: int, way: str, page: str) -> dict[str, Any]:
    db = store.Database(url)
    tenant = generated.make_tenant(generated.Account(deals))
    cpu, wall = time.process_time(), time.monotonic()
    report = (build_report(db, tenant, language="ru") if way == "whole"
              else live_report(db, tenant, language="ru"))
    size = 0
    if page == "tenant page":
        size = len(render_html(report, language="ru", deals_url="/dashboard/bench/deals",
                               chart_src="/dashboard/static/chart.umd.min.js"))
    elif page == "report json":
        sink = _Counting()
        if way == "whole":
            sink.write(json.dumps(report, ensure_ascii=False, indent=2))
        else:
            write_json(report, sink)
        size = sink.chars
    else:
        owner = "U7" if page == "deals of one owner" else ""
        filters = deal_list.Filters.from_args({"owner": owner, "sort": "since"})
        with db.session() as session:
            tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
            if way == "whole":
                violations = report["violations"]
                where = deal_list.directory(session, tenant, tenant_id,
                                            (str(v["deal_id"]) for v in violations
                                             if v.get("deal_id")))
            else:
                where = deal_list.directory(session, tenant, tenant_id)
        if way == "whole":
            every = deal_list.rows(violations, where, tenant.book, "ru",
                                   report.get("stage_titles"))
            shown = deal_list.select_rows(every, filters)
            rows, _, _ = filters.page_of(shown)
            deal_list.choices(every)
        else:
            rows = deal_list.listing(deal_list.iter_rows(
                report["violations"], where, tenant.book, "ru", report.get("stage_titles")),
                filters, where).rows
        size = len(rows)
    return {"cpu_s": round(time.process_time() - cpu, 2),
            "wall_s": round(time.monotonic() - wall, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "size": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a database seeded by bench_incremental")
    parser.add_argument("--deals", type=int, default=100_000, help="the seeded account's size")
    parser.add_argument("--ways", default="live,whole")
    parser.add_argument("--pages", default=",".join(PAGES))
    parser.add_argument("--way", help=argparse.SUPPRESS)
    parser.add_argument("--page", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(build(args.url, args.deals, args.way, args.page)))
        return 0
    db = store.Database(args.url)
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, "bench", "benchcrm")
        open_violations = sum(store.open_counts_by_rule(session, tenant_id).values())
    print(f"{args.deals:,} deals, {open_violations:,} open violations, "
          f"{args.url.split(':')[0]}; load average {os.getloadavg()}")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for page in args.pages.split(","):
        for way in args.ways.split(","):
            out = subprocess.run([sys.executable, __file__, "--url", args.url, "--deals",
                                  str(args.deals), "--way", way, "--page", page],
                                 check=True, capture_output=True, text=True).stdout
            result = results[page, way] = json.loads(out.strip().splitlines()[-1])
            print(f"{page:20} {way:6} cpu {result['cpu_s']:7.2f} s  wall {result['wall_s']:7.2f}"
                  f" s  peak RSS {result['peak_rss_mb']:6} MB  size {result['size']:,}")
        if (page, "live") in results and (page, "whole") in results:
            live, whole = results[page, "live"], results[page, "whole"]
            print(f"{'':20} whole/live: CPU {whole['cpu_s'] / max(live['cpu_s'], 0.01):.1f}x, "
                  f"RSS {whole['peak_rss_mb'] / max(live['peak_rss_mb'], 1):.1f}x")
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
