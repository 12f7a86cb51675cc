"""Terminal output: the progress display for long pulls and the report as tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from syncd.sync import PassOptions


@contextmanager
def pull_progress(tenant: str, options: PassOptions, console: Console) -> Iterator[None]:
    """Show stream and request count while a tenant is pulled (only on a terminal)."""
    if not console.is_terminal:
        yield
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"),
               TextColumn("{task.completed} requests"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{tenant}: starting", total=None)
        options.on_stream = lambda name: progress.update(task, description=f"{tenant}: {name}")
        options.on_request = lambda n: progress.advance(task, n)
        yield


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    table = Table(title=f"{summary['tenant']}: pulled", show_header=True)
    table.add_column("stream")
    table.add_column("records", justify="right")
    table.add_column("new/changed", justify="right")
    for stream, count in summary["pulled"].items():
        table.add_row(stream, str(count), str(summary["changed"].get(stream, 0)))
    console.print(table)
    console.print(
        f"violations open: {summary['violations_open']} "
        f"(opened {summary['violations_opened']}, resolved {summary['violations_resolved']}); "
        f"companies with karma: {summary['companies_with_karma']}; "
        f"requests: {summary['requests']}; writes: {summary['writes'] or 'none'}")
    for line in summary.get("quarantined") or []:
        console.print(f"[yellow]quarantined:[/] {escape(line)}")
    for line in summary.get("write_failures") or []:
        console.print(f"[yellow]write failed:[/] {escape(line)}")


def print_report(console: Console, report: dict[str, Any], limit: int = 25) -> None:
    console.print(f"[bold]{report['tenant']}[/] ({report['plugin']}, Sales Book "
                  f"{report['salesbook']}), as of {report['as_of']}")
    counts = ", ".join(f"{k} {v}" for k, v in report["counts"].items())
    console.print(f"records: {counts}")
    by_rule = Table(title="Open violations by rule")
    by_rule.add_column("rule")
    by_rule.add_column("count", justify="right")
    for rule, count in report["violations_by_rule"].items():
        by_rule.add_row(rule, str(count))
    console.print(by_rule)
    _violations_table(console, report["violations"], limit)
    _karma_table(console, report, limit)
    _bad_records_tables(console, report, limit)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/] {note}")


def _bad_records_tables(console: Console, report: dict[str, Any], limit: int) -> None:
    """Quarantined records and rejected writes, when there are any."""
    held = report.get("quarantine") or []
    if held:
        table = Table(title=f"Quarantined records ({len(held)})")
        for column in ("stream", "id", "problem", "first seen", "last seen", "tries"):
            table.add_column(column, overflow="fold")
        for row in held[:limit]:
            table.add_row(*(escape(str(cell)) for cell in (
                row["stream"], row["external_id"], row["problem"],
                (row["first_seen_at"] or "")[:16], (row["last_seen_at"] or "")[:16],
                row["attempts"])))
        console.print(table)
    rejected = report.get("write_failures") or []
    if rejected:
        table = Table(title=f"Rejected CRM writes ({len(rejected)})")
        for column in ("kind", "record", "field/marker", "CRM's reason", "next try"):
            table.add_column(column, overflow="fold")
        for row in rejected[:limit]:
            table.add_row(*(escape(str(cell)) for cell in (
                row["kind"], f"{row['entity']} {row['external_id']}", row["field"],
                row["error"] or "", (row["next_attempt_at"] or "")[:16])))
        console.print(table)


def _violations_table(console: Console, violations: list[dict[str, Any]], limit: int) -> None:
    table = Table(title=f"Violations (first {min(limit, len(violations))} of {len(violations)})")
    for column in ("deal", "rule", "stage", "action", "explanation"):
        table.add_column(column, overflow="fold")
    for row in violations[:limit]:
        deal = f"{row['deal_id']} {row['deal_title'] or ''}".strip() if row["deal_id"] else "—"
        table.add_row(deal, row["rule"], row["stage_key"] or row["crm_stage"] or "",
                      row["action_key"] or "", row["explanation"])
    console.print(table)


def _karma_table(console: Console, report: dict[str, Any], limit: int) -> None:
    table = Table(title=f"Client karma ({report['currency']})")
    for column in ("company", "segment", "karma", "lines"):
        table.add_column(column, justify="right" if column in {"karma", "lines"} else "left")
    for row in report["client_karma"][:limit]:
        table.add_row(f"{row['company_id']} {row['company_name'] or ''}", row["segment"] or "",
                      f"{row['karma']:.2f}", str(len(row["lines"])))
    console.print(table)
    segments = Table(title="Segment karma (mean)")
    for column in ("segment", "mean karma", "companies"):
        segments.add_column(column)
    for row in report["segments"]:
        segments.add_row(row["segment"], f"{row['mean_karma']:.2f}", str(row["companies"]))
    console.print(segments)


def print_people_and_kpis(out: Console, data: dict[str, Any]) -> None:
    """The table format's people and KPI sections (the JSON and HTML formats have all)."""
    people, kpis = data.get("people") or {}, data.get("kpis") or {}
    board = Table(title=f"Karma leaderboard {people.get('period', '')}")
    for column in ("employee", "karma", "bonus"):
        board.add_column(column, justify="left" if column == "employee" else "right")
    for row in [e for e in people.get("employees", []) if e["period"] == people.get("period")]:
        board.add_row(row["name"], f"{row['karma']:,.2f}", f"{row['bonus']:,.2f}")
    for row in [m for m in people.get("managers", []) if m["period"] == people.get("period")]:
        board.add_row(f"{row['name']} (manager, team of {row['team_size']})",
                      f"{row['karma']:,.2f}", "")
    out.print(board)
    funnel = Table(title="Funnel (last 12 months)")
    for column in ("stage", "entered", "moved on", "lost", "conversion", "median days"):
        funnel.add_column(column, justify="left" if column == "stage" else "right")
    for row in kpis.get("funnel", []):
        conversion = "-" if row["conversion"] is None else f"{row['conversion']:.0%}"
        median = "-" if row["median_days"] is None else f"{row['median_days']:.1f}"
        funnel.add_row(row["title"], str(row["entered"]), str(row["moved_on"]),
                       str(row["lost"]), conversion, median)
    out.print(funnel)
    rate = (kpis.get("win_rate") or {}).get("rate")
    new = kpis.get("new_clients") or {}
    parts = [f"win rate {'-' if rate is None else f'{rate:.1%}'}",
             f"new clients {new.get('total', 0)}"
             + (f" of plan {new['plan']}" if new.get("plan") is not None else "")]
    inversion = kpis.get("plan_inversion")
    if inversion:
        parts.append(f"plan: {inversion['deals_needed']} deals, {inversion['leads_needed']} "
                     "leads a month")
    out.print("KPIs: " + "; ".join(parts), highlight=False)
