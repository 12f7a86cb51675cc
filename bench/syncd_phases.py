"""Run the syncd command line with its pass's phases timed (a launcher for benchmarks).

    python bench/syncd_phases.py OUT.json [--profile OUT.prof] -- --config C sync ...

Wraps, in this process only, the functions a `syncd sync` pass goes through -- the pull
(``syncd.sync._pull``), storing its pages (``_store_page``, inside the pull), the field
check, the audit (``audit_store``), karma (``score_store``), building and writing the report
and the day's snapshot -- and writes each phase's wall seconds and the calling thread's CPU
seconds to ``OUT.json``, with the process's whole CPU (every thread) and wall time from
before the command line was imported. ``--profile`` also writes a cProfile of the main
thread (the prefetch thread that fetches pages is not in it).
Nothing in syncd is changed: the wrappers call the same functions.
"""

from __future__ import annotations

import atexit
import cProfile
import functools
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

STARTED_WALL = time.monotonic()
PHASES: dict[str, list[float]] = {}


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent = PHASES.setdefault(name, [0.0, 0.0, 0])
            spent[0] += time.monotonic() - wall
            spent[1] += time.thread_time() - cpu
            spent[2] += 1
    return wrapper


def instrument() -> None:
    import syncd.daemon as daemon  # imported here: the wall clock starts before them
    import syncd.sync as sync

    sync._pull = timed("pull (incl. store)", sync._pull)
    sync._store_page = timed("store pages", sync._store_page)
    sync.check_stored_fields = timed("field check", sync.check_stored_fields)
    sync.audit_store = timed("audit", sync.audit_store)
    sync.score_store = timed("karma", sync.score_store)
    daemon.build_report = timed("report: build", daemon.build_report)
    daemon.write_report = timed("report: write", daemon.write_report)
    daemon.history.record_report = timed("report: day snapshot", daemon.history.record_report)


def write(out: str) -> None:
    phases = {name: {"wall": round(wall, 3), "cpu": round(cpu, 3), "calls": calls}
              for name, (wall, cpu, calls) in PHASES.items()}
    total = {"wall": round(time.monotonic() - STARTED_WALL, 3), "cpu": round(process_cpu(), 3)}
    with open(out, "w", encoding="utf-8") as sink:
        json.dump({"phases": phases, "process": total}, sink)


def main() -> None:
    args = sys.argv[1:]
    out = args.pop(0)
    profile_to = None
    if args[0] == "--profile":
        profile_to = args[1]
        args = args[2:]
    if args and args[0] == "--":
        args = args[1:]
    atexit.register(write, out)
    instrument()
    from syncd.cli import main as cli

    sys.argv = ["syncd", *args]
    if profile_to is None:
        cli()
        return
    profiler = cProfile.Profile()
    try:
        profiler.runcall(cli)
    finally:
        profiler.dump_stats(profile_to)


if __name__ == "__main__":
    main()
