"""Benchmark: stage history as a budget-aware backfill (issue 13, item 4).

    python bench/bench_history_backfill.py                       # 2,000 deals, 6,000 tokens
    python bench/bench_history_backfill.py --deals 20000 --budget 30000 --share 0.5

Serves ``scaled_dataset`` from the fake Pipedrive (burst limit lifted: this measures the
budget, not the pacing) and runs ``syncd.sync.run_pass`` on a SQLite store, first twice on
one local day, then one pass a day until every owed deal has its history. Prints per pass
the flow requests (against the day's allowance: ``share x budget / 20`` tokens a flow), all
requests, and the coverage (deals with history / deals owing it), then the first pass's
wall time and the requests an unbudgeted pass spends on flows for comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from syncd_fakes.pipedrive.sample import scaled_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import store
from syncd.config import load_settings, load_tenant
from syncd.plugins import make_plugin_manager
from syncd.store import backlog
from syncd.sync import PassOptions, run_pass

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-history-token"
FLOW = re.compile(r"/v1/deals/\d+/flow$")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deals", type=int, default=2000)
    parser.add_argument("--budget", type=int, default=6000, help="daily token budget")
    parser.add_argument("--share", type=float, default=0.5, help="history_budget_share")
    parser.add_argument("--max-days", type=int, default=60)
    args = parser.parse_args()
    per_day = int(args.budget * args.share // 20)
    now = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    with tempfile.TemporaryDirectory() as tmp, FakePipedrive(
            scaled_dataset(args.deals, now=now), token=TOKEN, burst_limit=1000) as fake:
        root = Path(tmp)
        url = f"sqlite:///{root / 'syncd.db'}"
        tenant_file = yaml.safe_load((REPO / "config/demo/tenants/northwind.yaml").read_text())
        tenant_file["connection"].update(
            base_url=fake.base_url, api_token={"$env": "BENCH_PIPEDRIVE_TOKEN"},
            burst_limit=1000, daily_token_budget=args.budget,
            history_budget_share=args.share)
        (root / "tenants").mkdir()
        (root / "tenants" / "northwind.yaml").write_text(yaml.safe_dump(tenant_file))
        (root / "syncd.yaml").write_text(yaml.safe_dump({
            "database_url": url, "tenants_dir": "tenants",
            "salesbooks_dir": str(REPO / "config/salesbooks"), "reports_dir": "reports"}))
        os.environ["BENCH_PIPEDRIVE_TOKEN"] = TOKEN
        plugins = make_plugin_manager()
        tenant = load_tenant(load_settings(root / "syncd.yaml"), "northwind", plugins.connectors)
        db = store.Database(url)
        db.upgrade()
        print(f"{args.deals} deals; budget {args.budget} tokens/day x {args.share:.0%} "
              f"= {per_day} flow requests/day")
        print(f"{'pass':>4} {'day':>4} {'flows':>6} {'allow':>6} {'requests':>8} "
              f"{'coverage':>16} {'seconds':>8}")
        day, number, first_seconds = 0, 0, 0.0
        while day <= args.max_days:
            same_day = number == 1  # the second pass runs on the first pass's day
            if number and not same_day:
                day += 1
            at = now + timedelta(days=day, minutes=number)
            flows_before, requests_before = _flows(fake), len(fake.requests)
            started = time.perf_counter()
            run_pass(db, plugins, tenant, PassOptions(clock=lambda at=at: at, write=False))
            seconds = time.perf_counter() - started
            first_seconds = first_seconds or seconds
            flows = _flows(fake) - flows_before
            with db.session() as session:
                done, owed = backlog.coverage(
                    session, store.ensure_tenant(session, "northwind", "pipedrive"))
            number += 1
            print(f"{number:>4} {day:>4} {flows:>6} {per_day:>6} "
                  f"{len(fake.requests) - requests_before:>8} "
                  f"{done:>6}/{owed:<6} {done / max(owed, 1):>4.0%} {seconds:>7.2f}s")
            if flows > per_day:
                print("FAIL: a pass spent more than its daily share", file=sys.stderr)
                return 1
            if done == owed and not same_day:
                break
        print(f"first audit after {first_seconds:.1f} s (not waiting for {owed} flows); "
              f"full history after {day + 1} day(s) at {per_day}/day; unbudgeted, the first "
              f"pass would have made {owed} flow requests = {owed * 20} tokens "
              f"({owed * 20 / args.budget:.0%} of the daily budget)")
    return 0


def _flows(fake: FakePipedrive) -> int:
    return sum(1 for path in fake.paths_requested() if FLOW.search(path))


if __name__ == "__main__":
    sys.exit(main())
