"""Benchmark: the tabular reader and the Google Sheets report sink.

    python bench/bench_tabular.py                 # 20,000 deals + 60,000 activities
    python bench/bench_tabular.py --deals 5000

Prints, for a sheet-as-CRM of N deals (3 activities each): rows/s of the reader on a Sheets
API grid (serial dates), on a CSV export and on an XLSX export (openpyxl read-only); and for
a report of N violations published to the local fake Sheets server: seconds and requests of
the first publish and of an unchanged one (which must write nothing).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from syncd_fakes.gsheets.server import FakeSheets
from syncd_gsheets.files import read_path
from syncd_gsheets.settings import ReportSinkOptions, SpreadsheetSettings
from syncd_gsheets.sink import SheetsReportSink
from syncd_gsheets.tabular import read_tables

STAGES = ("Contact", "Needs discovery", "Presentation", "Objections", "Closing")
DEAL_HEADER = ["ID", "Title", "Status", "Stage", "Owner", "Company", "Value", "Created at",
               "Stage changed at", "Source"]
ACT_HEADER = ["ID", "Type", "Done", "Due", "Deal", "Owner"]


def grids(deals: int) -> dict[str, list[list[Any]]]:
    """A sheet as the API returns it: numbers, serial dates, ragged rows."""
    deal_rows: list[list[Any]] = [DEAL_HEADER]
    act_rows: list[list[Any]] = [ACT_HEADER]
    for i in range(1, deals + 1):
        row: list[Any] = [f"D-{i:06d}", f"Deal {i}", ("open", "won", "lost")[i % 3],
                          STAGES[i % 5], f"user{i % 40}@acme.test", f"C-{i % 2000}",
                          1000 + i % 977, 45000 + i % 600, 45000 + i % 600 + 0.5]
        if i % 4:
            row.append("Website")  # else ragged: the trailing cell is dropped
        deal_rows.append(row)
        for k in range(3):
            act_rows.append([f"A-{i}-{k}", ("call", "meeting", "email")[k], k != 2,
                             45000 + i % 600 + k + 0.25, f"D-{i:06d}", f"user{i % 40}@acme.test"])
    return {"Deals": deal_rows, "Activities": act_rows}


def timed(label: str, rows: int, func: Any) -> Any:
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    sys.stdout.write(f"{label:<34} {seconds:8.2f} s  {rows / seconds:>10,.0f} rows/s\n")
    return result


def write_exports(data: dict[str, list[list[Any]]], directory: Path) -> tuple[Path, Path]:
    import csv

    from openpyxl import Workbook

    csv_dir = directory / "csv"
    csv_dir.mkdir()
    book = Workbook(write_only=True)
    for title, rows in data.items():
        with (csv_dir / f"{title}.csv").open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(rows)
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    xlsx = directory / "export.xlsx"
    book.save(xlsx)
    return csv_dir, xlsx


def bench_reader(deals: int) -> None:
    data = grids(deals)
    rows = sum(len(g) - 1 for g in data.values())
    settings = SpreadsheetSettings(path="/unused", default_pipeline="Sales")
    result = timed("reader, Sheets API grid", rows, lambda: read_tables(data, settings))
    assert not result.problems and len(result.deals) == deals
    with tempfile.TemporaryDirectory() as tmp:
        csv_dir, xlsx = write_exports(data, Path(tmp))
        timed("reader, CSV export (read + parse)", rows,
              lambda: read_tables(read_path(csv_dir), settings))
        timed("reader, XLSX export (read + parse)", rows,
              lambda: read_tables(read_path(xlsx), settings))


def bench_sink(violations: int) -> None:
    report = {"tenant": "bench", "counts": {"deals": violations}, "violations": [
        {"deal_id": f"{i:06d}", "deal_title": f"Deal {i}", "owner_id": str(i % 40),
         "rule": "stalled", "severity": "warning", "stage_key": "closing",
         "crm_stage": "Sales / Closing", "opened_at": "2026-11-01T10:00:00+00:00",
         "explanation": "open in Closing for 12 days (limit 5)"} for i in range(violations)],
        "client_karma": [{"company_id": str(i), "company_name": f"C {i}", "segment": "SMB",
                          "karma": float(i % 97)} for i in range(violations // 10)],
        "segments": [{"segment": "SMB", "mean_karma": 48.0, "companies": violations // 10}]}
    with FakeSheets(per_minute=1000) as fake:
        email = "bench@bench.iam.gserviceaccount.com"
        key = fake.service_account_key(email)
        fake.create("bench-sheet-0001", shared_with=[email])
        options = ReportSinkOptions(spreadsheet_id="bench-sheet-0001", credentials=key,
                                    base_url=fake.base_url, requests_per_minute=600)
        for label in ("first publish", "unchanged publish"):
            start = time.perf_counter()
            result = SheetsReportSink(options).publish(report)
            seconds = time.perf_counter() - start
            sys.stdout.write(f"sink, {label} ({violations:,} violations) {seconds:8.2f} s  "
                             f"{result.requests} requests, {len(result.written)} tabs "
                             "written\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000)
    args = parser.parse_args()
    bench_reader(args.deals)
    bench_sink(args.deals)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(f"peak RSS {peak:,.0f} MB\n")


if __name__ == "__main__":
    main()
