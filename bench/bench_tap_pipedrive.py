"""Benchmark: `syncd sync` against tap-pipedrive on the same fake Pipedrive, same limits.

    python -m venv /tmp/tapvenv && /tmp/tapvenv/bin/pip install tap-pipedrive==2.1.0
    python bench/bench_tap_pipedrive.py --deals 20000 --tap-python /tmp/tapvenv/bin/python

Serves ``scaled_dataset`` (organizations ~ deals/4, persons ~ deals/2, activities ~ 3 x
deals) from ``syncd_fakes.pipedrive`` at the Lite burst limit (20 requests per rolling 2 s)
and times, each against a fresh fake (fresh rate window):

* tap-pipedrive (the Singer tap from PyPI, run unmodified in its own venv; only its
  hard-coded ``https://api.pipedrive.com`` base is pointed at the fake) syncing users,
  pipelines, stages, activity types, deal fields, organizations, persons, deals and
  activities from ``start_date`` 2000-01-01 into a file (what a Singer target would read);
* ``syncd sync`` (a subprocess, as a user runs it) of one tenant on the same streams into a
  fresh SQLite store, with the audit, karma and report that follow the pull.

Same work on both sides: stage history (one request per deal for both) is off
(``history_days: 0``; the tap's ``dealflow`` is not selected) and so is syncd's write-back
(the tap writes nothing back). The fake accepts the tap's ``?api_token=`` and reports
``x-ratelimit-reset`` in whole seconds (the documented example value), for both runs.
Prints both wall times, requests, 429s, the ratio (target >= 4) and the load average.
``--rounds N`` runs N such pairs back to back and gives the median ratio: this machine's
speed drifts by the minute (syncd's CPU for the same pass varied from 19 to 27 s within
an hour), and a pair run back to back shares most of that drift.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from syncd_fakes.pipedrive.sample import scaled_dataset
from syncd_fakes.pipedrive.server import DEMO_TOKEN, FakePipedrive

REPO = Path(__file__).resolve().parents[1]
PHASES_LAUNCHER = Path(__file__).resolve().parent / "syncd_phases.py"
DEMO_TENANT = REPO / "config" / "demo" / "tenants" / "northwind.yaml"
TAP_STREAMS = ("users", "pipelines", "stages", "activity_types", "deal_fields",
               "organizations", "persons", "deals", "activities")
#: The tap's config.BASE_URL is imported by name into tap_pipedrive.tap; point it at the fake.
TAP_LAUNCHER = ("import sys, tap_pipedrive.tap as tap; tap.BASE_URL = sys.argv.pop(1); "
                "from tap_pipedrive.cli import main; main()")


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1/5 min)"


def fake(dataset: object, args: argparse.Namespace) -> FakePipedrive:
    return FakePipedrive(dataset, burst_limit=args.burst_limit, window=args.window,
                         query_token=True, whole_second_reset=True)


def children_cpu() -> float:
    """CPU seconds of this process's finished children (a run's CPU is the difference)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tap(python: str, base_url: str, work: Path,
            ) -> tuple[float, float, dict[str, int]]:
    config = work / "tap-config.json"
    config.write_text(json.dumps({"api_token": DEMO_TOKEN,
                                  "start_date": "2000-01-01T00:00:00Z"}), encoding="utf-8")
    launcher = [python, "-c", TAP_LAUNCHER, base_url, "--config", str(config)]
    discovered = subprocess.run([*launcher, "--discover"], capture_output=True, text=True,
                                check=True)
    catalog = json.loads(discovered.stdout)
    for stream in catalog["streams"]:
        chosen = stream["tap_stream_id"] in TAP_STREAMS
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == []:
                entry["metadata"]["selected"] = chosen
    catalog_path = work / "tap-catalog.json"
    catalog_path.write_text(json.dumps(catalog), encoding="utf-8")
    output = work / "tap-output.jsonl"
    started, cpu = time.monotonic(), children_cpu()
    with output.open("w", encoding="utf-8") as sink:
        done = subprocess.run([*launcher, "--catalog", str(catalog_path)], stdout=sink,
                              stderr=subprocess.PIPE, text=True, check=False)
    wall, cpu = time.monotonic() - started, children_cpu() - cpu
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        message = f"tap-pipedrive exited with {done.returncode}"
        raise SystemExit(message)
    records: dict[str, int] = {}
    with output.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith('{"type": "RECORD"') or line.startswith('{"type":"RECORD"'):
                stream = json.loads(line)["stream"]
                records[stream] = records.get(stream, 0) + 1
    return wall, cpu, records


def run_syncd(base_url: str, args: argparse.Namespace, work: Path,
              ) -> tuple[float, dict[str, Any]]:
    tenant = yaml.safe_load(DEMO_TENANT.read_text(encoding="utf-8"))
    tenant["connection"].update({"base_url": base_url,
                                 "api_token": {"$env": "BENCH_PIPEDRIVE_TOKEN"},
                                 "burst_limit": args.burst_limit, "history_days": 0})
    tenant["writeback"] = {"enabled": False}
    (work / "tenants").mkdir()
    (work / "tenants" / "bench.yaml").write_text(yaml.safe_dump(tenant), encoding="utf-8")
    config = work / "syncd.yaml"
    config.write_text(yaml.safe_dump({
        "database_url": f"sqlite:///{work / 'syncd.db'}", "tenants_dir": "tenants",
        "salesbooks_dir": str(REPO / "config" / "salesbooks"), "reports_dir": "reports",
        "log_level": "WARNING", "http": {"host": "127.0.0.1", "port": 0}}), encoding="utf-8")
    env = {**os.environ, "BENCH_PIPEDRIVE_TOKEN": DEMO_TOKEN}
    phases = work / "phases.json"
    profile = ["--profile", str(Path(args.profile).resolve())] if args.profile else []
    if args.detail:
        profile.append("--detail")
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(PHASES_LAUNCHER), str(phases), *profile, "--",
                           "--config", str(config), "sync", "--format", "json"],
                          capture_output=True, text=True, env=env, check=False, cwd=work)
    wall = time.monotonic() - started
    if done.returncode not in (0, 4):  # 4: violations/quarantine found, the pass completed
        sys.stderr.write(done.stderr[-3000:])
        message = f"syncd sync exited with {done.returncode}"
        raise SystemExit(message)
    return wall, json.loads(phases.read_text(encoding="utf-8"))


def _covered(spans: list[list[float]]) -> float:
    """Seconds covered by the union of ``spans`` ([start, end] pairs)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def print_phases(timed: dict[str, Any], wall: float) -> None:
    """Where syncd's wall time went: each phase's wall seconds and the CPU seconds of the
    thread that ran it; phases that ran side by side are counted once in the rest."""
    phases = timed["phases"]
    process = timed["process"]
    inside = {"store pages": "pull (incl. store)", "audit": "audit + karma",
              "report: wait, rows": "report: write",
              "karma": "audit + karma"}  # timed within another phase: not counted twice
    top = [k for k in phases if inside.get(k) not in phases and not k.startswith(" ")]
    named = _covered([span for k in top for span in phases[k].get("spans", [])])
    print(f"  syncd process: wall {process['wall']:.1f} s, CPU {process['cpu']:.1f} s "
          f"(all threads)")
    for name, spent in phases.items():
        print(f"    {name:<22} wall {spent['wall']:6.2f} s ({spent['wall'] / wall:4.0%}), "
              f"thread CPU {spent['cpu']:6.2f} s, {spent['calls']} calls")
    pull, audit = phases.get("pull (incl. store)"), phases.get("audit + karma")
    if pull and pull.get("spans"):
        ends = [span[1] for spent in phases.values() for span in spent.get("spans", [])]
        print(f"    {'timeline':<22} pull from {pull['spans'][0][0]:.2f} s to "
              f"{pull['spans'][-1][1]:.2f} s, last phase ended at {max(ends):.2f} s, "
              f"process ended at {process['wall']:.2f} s (since the launcher started)")
    if pull and audit:
        beside = _covered(pull["spans"]) + _covered(audit["spans"]) - _covered(
            pull["spans"] + audit["spans"])
        print(f"    {'audit beside the pull':<22} wall {beside:6.2f} s (counted once)")
    print(f"    {'start-up, rest':<22} wall {wall - named:6.2f} s ({(wall - named) / wall:4.0%})"
          " (interpreter, imports, config, migrations, lease, run rows)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--burst-limit", type=int, default=20, help="requests per window")
    parser.add_argument("--window", type=float, default=2.0, help="seconds")
    parser.add_argument("--tap-python", default="/tmp/tapvenv/bin/python",
                        help="the python of a venv with tap-pipedrive installed")
    parser.add_argument("--syncd-only", action="store_true",
                        help="time syncd alone (no ratio): for profiling")
    parser.add_argument("--detail", action="store_true",
                        help="also time the steps inside the audit, karma, report and store")
    parser.add_argument("--profile", default=None,
                        help="write a cProfile of syncd's main thread to this file")
    parser.add_argument("--rounds", type=int, default=1,
                        help="pairs of runs, tap then syncd, back to back: a shared host's "
                             "speed drifts by minutes, so each pair's ratio is printed and "
                             "the median is the figure")
    args = parser.parse_args(argv)
    if not args.syncd_only and not Path(args.tap_python).exists():
        print(f"no {args.tap_python}: python -m venv /tmp/tapvenv && "
              "/tmp/tapvenv/bin/pip install tap-pipedrive==2.1.0")
        return 2
    version = "" if args.syncd_only else subprocess.run(
        [args.tap_python, "-m", "pip", "show", "tap-pipedrive"],
        capture_output=True, text=True, check=False).stdout
    version = next((line.split(":", 1)[1].strip() for line in version.splitlines()
                    if line.startswith("Version:")), "unknown")
    dataset = scaled_dataset(args.deals, now=datetime.now(UTC))
    print(f"fake Pipedrive: {dataset.name}; {len(dataset.deals)} deals, "
          f"{len(dataset.organizations)} organizations, {len(dataset.persons)} persons, "
          f"{len(dataset.activities)} activities; {args.burst_limit} requests / "
          f"{args.window:g} s; {os.cpu_count()} CPUs")
    ratios = [_round(dataset, args, version) for _ in range(max(1, args.rounds))]
    if args.syncd_only:
        return 0
    ratio = statistics.median(ratios)
    if len(ratios) > 1:
        print("tap-pipedrive / syncd sync per round: "
              + ", ".join(f"{r:.2f}x" for r in ratios))
    print(f"tap-pipedrive / syncd sync: {ratio:.2f}x{' (median)' if len(ratios) > 1 else ''} "
          f"(target >= 4), {load()}")
    return 0 if ratio >= 4 else 1


def _round(dataset: Any, args: argparse.Namespace, version: str) -> float:
    """One pair of runs, tap-pipedrive then syncd sync (or syncd alone): the ratio."""
    with tempfile.TemporaryDirectory(prefix="bench-tap-") as tmp:
        work = Path(tmp)
        (work / "tap").mkdir()
        (work / "syncd").mkdir()
        tap_wall = 0.0
        if not args.syncd_only:
            print(f"tap-pipedrive {version}: starting, {load()}")
            with fake(dataset, args) as server:
                tap_wall, tap_cpu, records = run_tap(args.tap_python, server.base_url,
                                                     work / "tap")
                tap_requests, tap_429 = server.requests_count, server.rate_limited_count
            print(f"  wall {tap_wall:.1f} s, CPU {tap_cpu:.1f} s, {tap_requests} requests "
                  "(incl. discovery), "
                  f"{tap_429} 429s, {load()}")
            print("  records: " + ", ".join(f"{k} {v}" for k, v in sorted(records.items())))
        print(f"syncd sync: starting, {load()}")
        with fake(dataset, args) as server:
            syncd_wall, timed = run_syncd(server.base_url, args, work / "syncd")
            syncd_requests, syncd_429 = server.requests_count, server.rate_limited_count
        bound = syncd_requests * args.window / args.burst_limit
        print(f"  wall {syncd_wall:.1f} s, {syncd_requests} requests (rate-limit bound "
              f"{bound:.1f} s), {syncd_429} 429s, {load()}")
        print_phases(timed, syncd_wall)
    return tap_wall / syncd_wall


if __name__ == "__main__":
    sys.exit(main())
