"""Terminal output: the progress display for long pulls and the report as tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from syncd.i18n import N_, Translator, translator
from syncd.scoring.karma import NO_SEGMENT
from syncd.sync import PassOptions

DOMAIN = "report"


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


def print_summary(console: Console, summary: dict[str, Any], language: str = "en") -> None:
    t = translator(language, DOMAIN)
    table = Table(title=t.gettext("{tenant}: pulled").format(tenant=summary["tenant"]),
                  show_header=True)
    table.add_column(t.gettext("stream"))
    table.add_column(t.gettext("records"), justify="right")
    table.add_column(t.gettext("new/changed"), justify="right")
    for stream, count in summary["pulled"].items():
        table.add_row(stream, str(count), str(summary["changed"].get(stream, 0)))
    console.print(table)
    console.print(t.gettext(
        "violations open: {open} (opened {opened}, resolved {resolved}); companies with "
        "karma: {companies}; requests: {requests}; writes: {writes}").format(
        open=summary["violations_open"], opened=summary["violations_opened"],
        resolved=summary["violations_resolved"], companies=summary["companies_with_karma"],
        requests=summary["requests"], writes=summary["writes"] or t.gettext("none")),
        highlight=False)
    held, failed = t.gettext("quarantined:"), t.gettext("write failed:")
    for line in summary.get("quarantined") or []:
        console.print(f"[yellow]{held}[/] {escape(line)}")
    for line in summary.get("write_failures") or []:
        console.print(f"[yellow]{failed}[/] {escape(line)}")


def report_translator(report: dict[str, Any]) -> Translator:
    return translator(report.get("language") or "en", DOMAIN)


def print_report(console: Console, report: dict[str, Any], limit: int = 25) -> None:
    t = report_translator(report)
    console.print(t.gettext("[bold]{tenant}[/] ({plugin}, Sales Book {salesbook}), as of "
                            "{as_of}").format(
        tenant=escape(report["tenant"]), plugin=report["plugin"],
        salesbook=escape(report.get("salesbook_title") or report["salesbook"]),
        as_of=report["as_of"][:16].replace("T", " ")), highlight=False)
    counts = ", ".join(f"{t.gettext(COUNT_NAMES.get(k, k))} {v}"
                       for k, v in report["counts"].items())
    console.print(t.gettext("records: {counts}").format(counts=counts), highlight=False)
    titles = report.get("rule_titles") or {}
    by_rule = Table(title=t.gettext("Open violations by rule"))
    by_rule.add_column(t.gettext("rule"))
    by_rule.add_column(t.gettext("count"), justify="right")
    for rule, count in report["violations_by_rule"].items():
        by_rule.add_row(escape(titles.get(rule, rule)), str(count))
    console.print(by_rule)
    _violations_table(console, report, limit, t)
    _karma_table(console, report, limit, t)
    _bad_records_tables(console, report, limit, t)
    word = t.gettext("note:")
    for note in report["notes"]:
        console.print(f"[yellow]{word}[/] {escape(note)}", highlight=False)


#: The report's record counts as a reader names them.
COUNT_NAMES = {
    "users": N_("users"), "pipelines": N_("pipelines"), "stages": N_("stages"),
    "field_defs": N_("field definitions"), "activity_types": N_("activity types"),
    "companies": N_("companies"), "contacts": N_("contacts"), "deals": N_("deals"),
    "activities": N_("activities"), "stage_changes": N_("stage changes"),
    "violations": N_("open violations"), "karma_lines": N_("karma lines"),
    "writebacks": N_("CRM writes"), "sync_runs": N_("passes"), "sync_cursors": N_("cursors"),
    "open_deals": N_("open deals"),
}


def _bad_records_tables(console: Console, report: dict[str, Any], limit: int,
                        t: Translator) -> None:
    """Quarantined records and rejected writes, when there are any."""
    held = report.get("quarantine") or []
    if held:
        table = Table(title=t.gettext("Quarantined records ({n})").format(n=len(held)))
        for column in (N_("stream"), N_("id"), N_("problem"), N_("first seen"),
                       N_("last seen"), N_("tries")):
            table.add_column(t.gettext(column), overflow="fold")
        for row in held[:limit]:
            table.add_row(*(escape(str(cell)) for cell in (
                row["stream"], row["external_id"], row["problem"],
                _moment(row["first_seen_at"]), _moment(row["last_seen_at"]),
                row["attempts"])))
        console.print(table)
    rejected = report.get("write_failures") or []
    if rejected:
        table = Table(title=t.gettext("Rejected CRM writes ({n})").format(n=len(rejected)))
        for column in (N_("kind"), N_("record"), N_("field/marker"), N_("CRM's reason"),
                       N_("next try")):
            table.add_column(t.gettext(column), overflow="fold")
        for row in rejected[:limit]:
            table.add_row(*(escape(str(cell)) for cell in (
                row["kind"], f"{row['entity']} {row['external_id']}", row["field"],
                row["error"] or "", _moment(row["next_attempt_at"]))))
        console.print(table)


def _moment(iso: str | None) -> str:
    """``2026-12-06T07:47:12+00:00`` -> ``2026-12-06 07:47``."""
    return (iso or "")[:16].replace("T", " ")


def _company(row: dict[str, Any]) -> str:
    """The company's id and name (once, when an export names companies by name)."""
    name = row["company_name"] or ""
    return name if name == row["company_id"] else f"{row['company_id']} {name}".strip()


def _violations_table(console: Console, report: dict[str, Any], limit: int,
                      t: Translator) -> None:
    violations = report["violations"]
    rules, stages = report.get("rule_titles") or {}, report.get("stage_titles") or {}
    actions = report.get("action_titles") or {}
    table = Table(title=t.gettext("Violations (first {shown} of {total})").format(
        shown=min(limit, len(violations)), total=len(violations)))
    for column in (N_("deal"), N_("rule"), N_("stage"), N_("action"), N_("explanation")):
        table.add_column(t.gettext(column), overflow="fold")
    for row in violations[:limit]:
        deal = f"{row['deal_id']} {row['deal_title'] or ''}".strip() if row["deal_id"] else "—"
        stage = stages.get(row["stage_key"] or "", row["stage_key"] or row["crm_stage"] or "")
        table.add_row(*(escape(str(cell)) for cell in (
            deal, rules.get(row["rule"], row["rule"]), stage,
            actions.get(row["action_key"] or "", row["action_key"] or ""),
            row.get("summary") or row["explanation"])))
    console.print(table)


def _karma_table(console: Console, report: dict[str, Any], limit: int, t: Translator) -> None:
    table = Table(title=t.gettext("Client karma ({currency})").format(
        currency=report["currency"]))
    for column, right in ((N_("company"), False), (N_("segment"), False), (N_("karma"), True),
                          (N_("lines"), True)):
        table.add_column(t.gettext(column), justify="right" if right else "left")
    for row in report["client_karma"][:limit]:
        table.add_row(escape(_company(row)),
                      escape(segment_label(row["segment"], t) if row["segment"] else ""),
                      t.number(row["karma"], 2),
                      str(len(row["lines"])))
    console.print(table)
    segments = Table(title=t.gettext("Segment karma (mean)"))
    for column in (N_("segment"), N_("mean karma"), N_("companies")):
        segments.add_column(t.gettext(column))
    for row in report["segments"]:
        segments.add_row(escape(segment_label(row["segment"], t)), t.number(row["mean_karma"], 2),
                         str(row["companies"]))
    console.print(segments)


def segment_label(segment: str, t: Translator) -> str:
    """A segment as a reader sees it: companies without one are "(no segment)" in their
    language (the JSON keeps the key ``"(none)"``, docs/report-schema.md)."""
    return t.gettext("(no segment)") if segment == NO_SEGMENT else segment


def print_people_and_kpis(out: Console, data: dict[str, Any]) -> None:
    """The table format's people and KPI sections (the JSON and HTML formats have all)."""
    t = report_translator(data)
    people, kpis = data.get("people") or {}, data.get("kpis") or {}
    board = Table(title=t.gettext("Karma leaderboard {period}").format(
        period=people.get("period", "")))
    for column in (N_("employee"), N_("karma"), N_("bonus")):
        board.add_column(t.gettext(column), justify="left" if column == "employee" else "right")
    for row in [e for e in people.get("employees", []) if e["period"] == people.get("period")]:
        board.add_row(escape(row["name"]), t.number(row["karma"], 2), t.number(row["bonus"], 2))
    for row in [m for m in people.get("managers", []) if m["period"] == people.get("period")]:
        board.add_row(escape(t.ngettext("{name} (manager, team of {n})",
                                        "{name} (manager, team of {n})", row["team_size"])
                             .format(name=row["name"], n=row["team_size"])),
                      t.number(row["karma"], 2), "")
    out.print(board)
    stage_titles = data.get("stage_titles") or {}
    funnel = Table(title=t.gettext("Funnel (last 12 months)"))
    for column in (N_("stage"), N_("entered"), N_("moved on"), N_("lost"), N_("conversion"),
                   N_("median days")):
        funnel.add_column(t.gettext(column), justify="left" if column == "stage" else "right")
    for row in kpis.get("funnel", []):
        conversion = "-" if row["conversion"] is None else t.percent(row["conversion"])
        median = "-" if row["median_days"] is None else t.number(row["median_days"], 1)
        funnel.add_row(escape(stage_titles.get(row.get("stage") or "", row["title"])),
                       str(row["entered"]), str(row["moved_on"]), str(row["lost"]),
                       conversion, median)
    out.print(funnel)
    rate = (kpis.get("win_rate") or {}).get("rate")
    new = kpis.get("new_clients") or {}
    parts = [t.gettext("win rate {rate}").format(rate="-" if rate is None
                                                 else t.percent(rate, 1)),
             t.gettext("new clients {n}").format(n=new.get("total", 0))
             + (t.gettext(" of plan {plan}").format(plan=new["plan"])
                if new.get("plan") is not None else "")]
    inversion = kpis.get("plan_inversion")
    if inversion:
        parts.append(t.gettext("plan: {deals} deals, {leads} leads a month").format(
            deals=inversion["deals_needed"], leads=inversion["leads_needed"]))
    out.print(t.gettext("KPIs: {parts}").format(parts="; ".join(parts)), highlight=False)
