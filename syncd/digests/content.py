"""What a digest says, built from the tenant's live report (``syncd.report_live``:
``build_report``'s report with its violations read from the store as they are gone through).

- Weekly, to each manager: their team's open violations (new this week, by rule), the
  team's karma this month, and what to fix first: the open violations that cost the most
  karma (the Sales Book's ``violation_penalty`` x the rule's weight), oldest first among
  equals, each with its deal's title, owner, since when, why, and the CRM link.
- Monthly, to the director: the month's karma and bonus per employee and per team, and the
  KPIs against the Sales Book's plan (revenue, new clients, forward moves, win rate).

A digest is a list of sections of rows of spans (text, optionally a link, optionally
bold), so one content renders as plain text, e-mail HTML and a Telegram message
(``syncd.digests.render``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncd.digests.i18n import Translator, day, money, number, percent, translator
from syncd.digests.periods import Slot
from syncd.render import opened_at, problem_since, rule_title
from syncd.salesbook import SalesBook


@dataclass(frozen=True)
class Span:
    text: str
    url: str | None = None
    bold: bool = False


@dataclass
class Section:
    title: str
    rows: list[list[Span]] = field(default_factory=list)


@dataclass
class Digest:
    kind: str
    period: str
    language: str
    subject: str
    intro: str
    sections: list[Section] = field(default_factory=list)


class NoTeam(LookupError):
    """The configured manager matches no manager with a team in the tenant's data."""


def _name_index(report: dict[str, Any]) -> dict[str, str]:
    people = report.get("people") or {}
    names: dict[str, str] = {}
    for row in people.get("employees", []):
        names.setdefault(row["user_id"], row["name"])
    for row in people.get("managers", []):
        names.setdefault(row["user_id"], row["name"])
        for member in row.get("member_karma", []):
            names.setdefault(member["user_id"], member["name"])
    return names


def find_team(report: dict[str, Any], manager: str) -> tuple[str, str, list[str]]:
    """``(manager id, name, member ids)`` of the manager named by id or name."""
    wanted = manager.strip().casefold()
    rows = [row for row in (report.get("people") or {}).get("managers", [])
            if wanted in {str(row["user_id"]).casefold(), str(row["name"]).strip().casefold()}]
    if not rows:
        message = (f"manager {manager!r} has no team in the data of tenant "
                   f"{report['tenant']} (mapping.teams, or the CRM's users' managers)")
        raise NoTeam(message)
    members: list[str] = []
    for row in rows:
        members += [m for m in row["members"] if m not in members]
    return rows[0]["user_id"], rows[0]["name"], members


def violation_weight(book: SalesBook, rule: str) -> float:
    """Karma one violation of ``rule`` costs its deal's owner."""
    employee = book.karma.employee
    return employee.violation_penalty * employee.rule_weights.get(rule, 1.0)


def fix_first(violations: Sequence[dict[str, Any]], book: SalesBook, now: datetime,
              top: int) -> list[dict[str, Any]]:
    """The ``top`` violations costing the most karma, the oldest problem first among equals."""
    def order(v: dict[str, Any]) -> tuple[float, float, str]:
        since = problem_since(v)
        age = (now - since).total_seconds() if since else 0.0
        return (-violation_weight(book, v["rule"]), -age, str(v.get("deal_id")))
    return sorted(violations, key=order)[:top]


def weekly_digest(report: dict[str, Any], book: SalesBook, slot: Slot, manager: str, *,
                  language: str, top: int, now: datetime,
                  deal_url: Callable[[str], str | None] | None = None) -> Digest:
    """The weekly digest for ``manager``'s team (raises ``NoTeam``)."""
    t = translator(language)
    manager_id, manager_name, members = find_team(report, manager)
    team = {manager_id, *members}
    names = _name_index(report)
    mine = [v for v in report["violations"] if v.get("owner_id") in team]
    new = [v for v in mine if (opened := opened_at(v)) and slot.start <= opened < slot.end]
    subject = t.gettext("Weekly digest, {tenant}: team of {manager}, {week}").format(
        tenant=report["tenant"], manager=manager_name, week=slot.label)
    intro = t.gettext("Open violations on your team's deals: {open} (new this week: {new}).") \
        .format(open=len(mine), new=len(new))
    digest = Digest("weekly", slot.period, language, subject, intro)
    digest.sections.append(_fix_first_section(t, mine, book, now, top, names, deal_url))
    digest.sections.append(_by_rule_section(t, mine, new))
    digest.sections.append(_team_karma_section(t, report, manager_id))
    return digest


def _fix_first_section(t: Translator, violations: list[dict[str, Any]], book: SalesBook,
                       now: datetime, top: int, names: dict[str, str],
                       deal_url: Callable[[str], str | None] | None) -> Section:
    section = Section(t.gettext("What to fix first"))
    for violation in fix_first(violations, book, now, top):
        deal_id = violation.get("deal_id")
        title = violation.get("deal_title") or (
            t.gettext("Deal {id}").format(id=deal_id) if deal_id else violation.get("crm_stage")
            or "—")
        url = deal_url(str(deal_id)) if deal_url and deal_id else None
        owner = names.get(violation.get("owner_id") or "", violation.get("owner_id") or "—")
        since = problem_since(violation)
        section.rows.append([
            Span(title, url=url, bold=True),
            Span(" — " + rule_title(violation["rule"], t.lang)),
            Span(" · " + t.gettext("owner: {owner}").format(owner=owner)),
            Span(" · " + t.gettext("since {day}").format(day=day(t, since))),
            Span(". " + violation.get("explanation", "")),
        ])
    if not section.rows:
        section.rows.append([Span(t.gettext("Nothing to fix: no open violations."))])
    return section


def _by_rule_section(t: Translator, mine: list[dict[str, Any]],
                     new: list[dict[str, Any]]) -> Section:
    section = Section(t.gettext("Open violations by rule"))
    counts, fresh = Counter(v["rule"] for v in mine), Counter(v["rule"] for v in new)
    for rule, count in counts.most_common():
        section.rows.append([Span(rule_title(rule, t.lang) + ": "), Span(str(count), bold=True),
                             Span(" " + t.gettext("(new this week: {new})").format(
                                 new=fresh.get(rule, 0)))])
    return section


def _team_karma_section(t: Translator, report: dict[str, Any], manager_id: str,
                        ) -> Section:
    people = report.get("people") or {}
    period = people.get("period")
    section = Section(t.gettext("Team karma, {month} so far").format(month=period))
    row = next((r for r in people.get("managers", [])
                if r["user_id"] == manager_id and r["period"] == period), None)
    if row is None:
        section.rows.append([Span(t.gettext("No karma this month yet."))])
        return section
    section.rows.append([Span(t.gettext("Team (mean): ")),
                         Span(number(t, row["karma"], 1), bold=True)])
    for member in sorted(row["member_karma"], key=lambda m: m["karma"], reverse=True):
        section.rows.append([Span(f"{member['name']}: "),
                             Span(number(t, member["karma"], 1))])
    return section


def monthly_digest(report: dict[str, Any], book: SalesBook, slot: Slot, *,
                   language: str) -> Digest:
    """The monthly digest for the director: karma and bonuses, KPIs against the plan."""
    t = translator(language)
    month = slot.period
    subject = t.gettext("Monthly digest, {tenant}: {month}").format(
        tenant=report["tenant"], month=month)
    open_now = len(report["violations"])
    intro = t.gettext("Karma, bonuses and KPIs for {month}. Open violations now: {open}.") \
        .format(month=month, open=open_now)
    digest = Digest("monthly", month, language, subject, intro)
    digest.sections.append(_bonus_section(t, report, month))
    digest.sections.append(_teams_section(t, report, month))
    digest.sections.append(_kpi_section(t, report, book, month))
    return digest


def _bonus_section(t: Translator, report: dict[str, Any], month: str,
                   ) -> Section:
    people = report.get("people") or {}
    currency = report.get("currency", "")
    section = Section(t.gettext("Karma and bonus per employee"))
    rows = [r for r in people.get("employees", []) if r["period"] == month]
    for row in sorted(rows, key=lambda r: r["karma"], reverse=True):
        section.rows.append([
            Span(f"{row['name']}: "),
            Span(t.gettext("karma {karma}").format(karma=number(t, row["karma"], 1)),
                 bold=True),
            Span(", " + t.gettext("bonus {bonus}").format(
                bonus=money(t, row["bonus"], currency))),
        ])
    if rows:
        total = sum(r["bonus"] for r in rows)
        section.rows.append([Span(t.gettext("Bonuses in total: ")),
                             Span(money(t, total, currency), bold=True)])
        if not all(r.get("bonus_final") for r in rows):
            section.rows.append([Span(t.gettext("The month is not over yet: figures may "
                                                "still change."))])
    else:
        section.rows.append([Span(t.gettext("No karma recorded for {month}.").format(
            month=month))])
    return section


def _teams_section(t: Translator, report: dict[str, Any], month: str,
                   ) -> Section:
    people = report.get("people") or {}
    section = Section(t.gettext("Team karma (mean of the members)"))
    rows = [r for r in people.get("managers", []) if r["period"] == month]
    for row in sorted(rows, key=lambda r: r["karma"], reverse=True):
        section.rows.append([Span(t.gettext("Team of {manager}: ").format(manager=row["name"])),
                             Span(number(t, row["karma"], 1), bold=True),
                             Span(" " + t.gettext("({n} people)").format(n=row["team_size"]))])
    if not rows:
        section.rows.append([Span(t.gettext("No teams configured (mapping.teams)."))])
    return section


def _kpi_section(t: Translator, report: dict[str, Any], book: SalesBook, month: str,
                 ) -> Section:
    kpis = report.get("kpis") or {}
    currency = report.get("currency", "")
    plan = book.kpis
    section = Section(t.gettext("KPIs against the plan"))
    revenue = (kpis.get("revenue_by_month") or {}).get(month, 0.0)
    if plan.revenue_per_month:
        section.rows.append([
            Span(t.gettext("Revenue: ")), Span(money(t, revenue, currency), bold=True),
            Span(" " + t.gettext("of plan {plan} ({share})").format(
                plan=money(t, plan.revenue_per_month, currency),
                share=percent(t, revenue / plan.revenue_per_month)))])
    else:
        section.rows.append([Span(t.gettext("Revenue: ")),
                             Span(money(t, revenue, currency), bold=True),
                             Span(" " + t.gettext("(no plan set)"))])
    new_clients = next((m for m in (kpis.get("new_clients") or {}).get("by_month", [])
                        if m["month"] == month), None)
    if new_clients is not None:
        planned = new_clients.get("plan")
        tail = (t.gettext("of plan {plan}").format(plan=planned) if planned is not None
                else t.gettext("(no plan set)"))
        section.rows.append([Span(t.gettext("New clients: ")),
                             Span(str(new_clients["new_clients"]), bold=True),
                             Span(" " + tail)])
    moves = kpis.get("forward_moves") or {}
    owners = moves.get("owners") or []
    if owners:
        weeks = len(moves.get("weeks") or [])
        on_target = sum(1 for owner in owners if owner.get("weeks_on_target", 0) >= weeks / 2)
        label = t.gettext("Forward moves (target {target} a week): ").format(
            target=moves.get("target"))
        text = t.gettext("{n} of {total} people on target at least half of the last "
                         "{weeks} weeks").format(n=on_target, total=len(owners), weeks=weeks)
        section.rows.append([Span(label), Span(text, bold=True)])
    win = kpis.get("win_rate") or {}
    if win:
        closed = (win.get("won") or 0) + (win.get("lost") or 0)
        section.rows.append([Span(t.gettext("Win rate (12 months): ")),
                             Span(percent(t, win.get("rate")), bold=True),
                             Span(" " + t.gettext("({won} won of {closed} closed)").format(
                                 won=win.get("won") or 0, closed=closed))])
    return section


__all__ = ["Digest", "NoTeam", "Section", "Span", "find_team", "fix_first",
           "monthly_digest", "problem_since", "violation_weight", "weekly_digest"]
