"""Run the syncd command line with its pass's phases timed (a launcher for benchmarks).

    python bench/syncd_phases.py OUT.json [--profile OUT.prof] [--detail] -- --config C sync ...

Wraps, in this process only, the functions a `syncd sync` pass goes through -- the pull
(``syncd.sync._pull``), storing its pages (``_store_page``, inside the pull), the field
check, the audit and karma (``_audit_and_score``), building and writing the report
and the day's snapshot -- and writes each phase's wall seconds, the calling thread's CPU
seconds and its calls' spans (phases may overlap: the audit starts in a thread of its own
while the last streams are pulled) to ``OUT.json``, with the process's whole CPU (every
thread) and wall time from before the command line was imported. ``--profile`` also
writes a cProfile of the main thread (the prefetch thread that fetches pages and the
audit's thread are not in it); ``--detail`` also times the
steps inside the audit, the karma, the report and the store (``DETAIL``; they are nested
in the phases above, so they are not added to them).
Nothing in syncd is changed: the wrappers call the same functions.
"""

from __future__ import annotations

import atexit
import cProfile
import functools
import importlib
import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

STARTED_WALL = time.monotonic()
PHASES: dict[str, list[float]] = {}
#: Each phase's calls as (start, end) seconds since the launcher started: phases may run
#: side by side (the audit begins in a thread of its own while the last streams are pulled).
SPANS: dict[str, list[tuple[float, float]]] = {}


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
            ended = time.monotonic()
            spent = PHASES.setdefault(name, [0.0, 0.0, 0])
            spent[0] += ended - wall
            spent[1] += time.thread_time() - cpu
            spent[2] += 1
            SPANS.setdefault(name, []).append((wall - STARTED_WALL, ended - STARTED_WALL))
    return wrapper


#: (module, function, phase): the functions a pass goes through, timed where they exist
#: (the pass is refactored often; a function that is gone is simply not timed).
TIMED = (
    ("syncd.sync", "_pull", "pull (incl. store)"),
    ("syncd.sync", "_store_page", "store pages"),
    ("syncd.sync", "check_stored_fields", "field check"),
    ("syncd.sync", "_audit_and_score", "audit + karma"),
    ("syncd.sync", "audit_store", "audit"),
    ("syncd.sync", "score_store", "karma"),
    ("syncd.daemon", "build_report", "report: build"),
    ("syncd.daemon", "write_report", "report: write"),
    ("syncd.history", "record_report", "report: day snapshot"),
    # the streamed report a pass writes (syncd.daemon.Runner._write_report calls these
    # through the module, so wrapping the module's functions times them)
    ("syncd.report_stream", "report_parts", "report: parts"),
    ("syncd.report_stream", "write_report", "report: write"),
    ("syncd.history", "record_figures", "report: day snapshot"),
    # waiting for the parts a one-off pass takes beside it (syncd.report_ahead)
    ("syncd.report_ahead", "ReportAhead.kpis", "report: wait, KPIs"),
    ("syncd.report_ahead", "ReportAhead.violations", "report: wait, rows"),
    # a chunk audited by the process auditing beside the pass (syncd.spare_audit): the wait
    ("syncd.spare_audit", "SpareAudit.take", "audit: wait, chunks audited beside"),
)
#: Within those phases (with ``--detail``): where the audit, the karma and the report go.
DETAIL = (
    ("syncd.deal_walk", "read_chunk", "  walk: read chunks"),
    ("syncd.audit_pass", "AuditStage.audit", "  audit: judge + write"),
    ("syncd.audit_pass", "store.apply_deal_findings", "    audit: violations"),
    ("syncd.karma_pass", "KarmaStage.add", "  karma: add chunks"),
    ("syncd.karma_pass", "KarmaStage.finish", "  karma: finish"),
    ("syncd.report_stream", "_people_and_kpis", "  report: people + KPIs"),
    ("syncd.sync", "store.upsert_page_isolating", "  store: upsert"),
)


def instrument(detail: bool = False) -> None:
    for module_name, dotted, phase in TIMED + (DETAIL if detail else ()):
        owner: Any = importlib.import_module(module_name)  # the wall clock starts before
        *path, name = dotted.split(".")  # "Class.method" or "module.function" in the module
        for attribute in path:
            owner = getattr(owner, attribute, None)
        function = getattr(owner, name, None)
        if function is not None:
            setattr(owner, name, timed(phase, function))


def write(out: str) -> None:
    phases = {name: {"wall": round(wall, 3), "cpu": round(cpu, 3), "calls": calls,
                     "spans": [[round(a, 3), round(b, 3)] for a, b in SPANS.get(name, ())]}
              for name, (wall, cpu, calls) in PHASES.items()}
    total = {"wall": round(time.monotonic() - STARTED_WALL, 3), "cpu": round(process_cpu(), 3)}
    with open(out, "w", encoding="utf-8") as sink:
        json.dump({"phases": phases, "process": total}, sink)


def main() -> None:
    args = sys.argv[1:]
    out = args.pop(0)
    profile_to = None
    detail = False
    while args and args[0] in ("--profile", "--detail"):
        if args[0] == "--detail":
            detail = True
            args = args[1:]
        else:
            profile_to = args[1]
            args = args[2:]
    if args and args[0] == "--":
        args = args[1:]
    atexit.register(write, out)
    instrument(detail)
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
