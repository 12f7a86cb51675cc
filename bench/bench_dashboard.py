"""Benchmark: the dashboard's pages for a big tenant, without the database.

    python bench/bench_dashboard.py --violations 20000 --owners 40

Builds a synthetic report with N open violations over owners, rules and stages of the
shipped Sales Book, then times what a request adds on top of the (cached) report:
the deal list (rows, a manager filter, sorting) and the Jinja2 page, and the tenant page
(``render_html`` with the desk). Prints milliseconds per step and the pages' sizes.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from syncd import deal_list
from syncd.report_html import render_html
from syncd.salesbook import load_salesbook

RULES = ("stalled", "inactive", "no_next_step", "missing_action", "no_lead_source",
         "bad_loss_reason", "skipped_stage", "backward_move")


def synthetic_report(violations: int, owners: int, book: object) -> dict:
    stages = [s.key for s in book.stages]  # type: ignore[attr-defined]
    start = datetime(2026, 6, 1, tzinfo=UTC)
    rows = [{"deal_id": str(10_000 + i // 2), "deal_title": f"Deal {i // 2}",
             "owner_id": str(i % owners), "rule": RULES[i % len(RULES)],
             "stage_key": stages[i % len(stages)], "explanation": "Deal has been in stage "
             "'Estimate' for 40 days since 2026-10-01, over the stage's limit of 14 days.",
             "opened_at": (start + timedelta(hours=i)).isoformat(), "details": {}}
            for i in range(violations)]
    by_rule: dict[str, int] = {}
    for v in rows:
        by_rule[v["rule"]] = by_rule.get(v["rule"], 0) + 1
    return {"schema": "syncd.report/1", "tenant": "big", "language": "ru",
            "plugin": "pipedrive", "salesbook": "b2b", "currency": "RUB",
            "as_of": datetime.now(UTC).isoformat(), "last_sync": None,
            "counts": {"open_deals": violations // 2}, "violations_by_rule": by_rule,
            "violations": rows, "segments": [], "client_karma": [],
            "people": {"period": "2026-12", "months": ["2026-11", "2026-12"], "employees": [],
                       "managers": []},
            "kpis": {"win_rate": {"won": 40, "lost": 60, "rate": 0.4}, "funnel": [],
                     "forward_moves": {"weeks": [], "owners": [], "target": 5}},
            "contact_matrix": {"months": [], "rows": []},
            "history": {"months": [{"month": f"2026-{m:02d}", "day": None}
                                   for m in range(1, 13)]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--violations", type=int, default=20_000)
    parser.add_argument("--owners", type=int, default=40)
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    book = load_salesbook(root / "config" / "salesbooks" / "b2b-services-9.yaml")
    report = synthetic_report(args.violations, args.owners, book)
    where = deal_list.Directory({str(i): f"Manager {i}" for i in range(args.owners)}, {},
                                {}, {}, lambda deal: f"https://big.pipedrive.com/deal/{deal}")
    timings = {}
    t0 = time.perf_counter()
    rows = deal_list.rows(report["violations"], where, book, "ru")
    timings["deal list rows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mine = deal_list.select_rows(rows, deal_list.Filters(owner="7", sort="stage"))
    timings["filter one manager + sort"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    everything = deal_list.select_rows(rows, deal_list.Filters())
    timings["sort all"] = time.perf_counter() - t0
    from syncd.web import templating

    request = SimpleNamespace(args=_Args(), script_root="")
    first, number, pages = deal_list.Filters().page_of(everything)
    render_html(report, language="ru")  # compile the templates once, as a running server has
    for _ in range(2):  # the first call compiles the template; a running server has it
        t0 = time.perf_counter()
        page = templating.render("deals.html", request, "ru", tenant="big", rows=first,  # type: ignore[arg-type]
                                 shown=len(everything), page=number, pages=pages,
                                 page_query=lambda n: f"page={n}",
                                 total=len(rows), deal_count=len(rows) // 2,
                                 filters=deal_list.Filters(), fvals=dict.fromkeys(
                                     ("owner", "team", "pipeline", "rule", "stage"), ""),
                                 choices=deal_list.choices(rows), sorts=deal_list.SORTS,
                                 filter_fields=[], columns=[], sort_query=lambda key: "",
                                 lang_override=False, lang_only="", lang_suffix="", notes=[])
    timings[f"deals page, first {len(first)} rows (Jinja2)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    desk_page = render_html(report, language="ru", deals_url="/dashboard/big/deals",
                            chart_src="/dashboard/static/chart.umd.min.js")
    timings["tenant page (render_html + desk)"] = time.perf_counter() - t0
    print(f"{args.violations} violations, {args.owners} owners, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    for name, seconds in timings.items():
        print(f"  {name:<36} {seconds * 1000:8.1f} ms")
    print(f"  one manager's rows: {len(mine)}; deals page {len(page) / 1e6:.1f} MB, "
          f"tenant page {len(desk_page) / 1e3:.0f} kB")
    assert len(mine) == sum(v["owner_id"] == "7" for v in report["violations"])
    assert date.today()  # the bench needs no clock beyond this


class _Args(dict):
    def items(self, multi: bool = False) -> object:  # werkzeug's MultiDict signature
        return super().items()


if __name__ == "__main__":
    main()
