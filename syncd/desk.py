"""The sales head's desk on the tenant page: honest numbers, caveats, links and trends.

``desk(report, language, deals_url)`` is what the page adds to the report's own sections
(``syncd.report_html``): every rate with its counts ("31.3% · 5 of 16") and a mark when the
sample is small, the caveats that apply (no stage history, quarantined records, rejected
writes, CRM stages not mapped to the Sales Book), the links from each count to the deals
behind it (``/dashboard/<tenant>/deals?...``; none in a file written by ``syncd report``),
and the trends from the daily snapshots (this month against last, twelve months).
Texts are in the "dashboard" catalogue; the charts are drawn by the vendored Chart.js.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from syncd import history
from syncd.i18n import N_, translator

DOMAIN = "dashboard"
#: Fewer cases than this behind a rate: the page marks it "small sample".
SMALL_SAMPLE = 10

DealsUrl = Callable[[dict[str, str]], str] | None


def deals_link(base: str | None) -> DealsUrl:
    """``filters -> URL`` of the deals page ``base`` (which may carry a query already, e.g.
    ``?lang=en``); None: no links (a file written by ``syncd report``)."""
    if base is None:
        return None
    join = "&" if "?" in base else "?"
    return lambda filters: f"{base}{join}{urlencode(filters)}" if filters else base


def rate(t: Any, value: float | None, n: int | None, total: int | None) -> dict[str, Any]:
    """A rate with the counts behind it, as the page shows it."""
    if value is None or not total:
        return {"value": None, "text": "–", "of": t.gettext("no data"),  # noqa: RUF001
                "small": False}
    return {"value": value, "text": t.percent(value, 1),
            "of": t.gettext("{n} of {total}").format(n=t.number(n or 0), total=t.number(total)),
            "n": n, "total": total, "small": total < SMALL_SAMPLE}


def honest_rates(report: dict[str, Any], t: Any) -> dict[str, dict[str, Any]]:
    """The KPI cards' counts: card key -> rate with "n of N" (and the NPS answers)."""
    kpis = report.get("kpis") or {}
    win = kpis.get("win_rate") or {}
    churn = kpis.get("churn") or {}
    repeat = kpis.get("repeat_clients") or {}
    nps = kpis.get("nps") or {}
    won, lost = win.get("won") or 0, win.get("lost") or 0
    out = {
        "win-rate": rate(t, win.get("rate"), won, won + lost),
        "churn": rate(t, churn.get("rate"), churn.get("lost"), churn.get("clients_at_start")),
        "repeat": rate(t, repeat.get("share"), repeat.get("repeat"), repeat.get("clients")),
    }
    answers = nps.get("answers") or 0
    out["nps"] = {"of": t.ngettext("{n} answer", "{n} answers", answers).format(n=answers),
                  "small": 0 < answers < SMALL_SAMPLE, "total": answers}
    return out


def caveats(report: dict[str, Any], t: Any) -> list[str]:
    """What to keep in mind reading the page: the report's notes (stage history missing,
    quarantined records, rejected writes) and CRM stages not mapped to the Sales Book."""
    notes = list(report.get("notes") or [])
    unmapped = (report.get("violations_by_rule") or {}).get("unmapped_stage", 0)
    if unmapped:
        notes.append(t.ngettext(
            "{n} CRM stage is not mapped to a Sales Book stage: its deals are left out of the "
            "stage rules and the funnel (mapping.stages in the tenant file).",
            "{n} CRM stages are not mapped to a Sales Book stage: their deals are left out of "
            "the stage rules and the funnel (mapping.stages in the tenant file).",
            unmapped).format(n=unmapped))
    months = (report.get("history") or {}).get("months") or []
    if months and not any(m.get("day") for m in months):
        notes.append(t.gettext("No daily snapshots yet: the trends start with the first "
                               "good pass of a day."))
    return notes


TREND_ROWS = (("open_violations", N_("Open violations")),
              ("deals_with_violations", N_("Deals with violations")),
              ("win_rate", N_("Win rate")), ("churn", N_("Churn")),
              ("employees_karma", N_("Employees' karma (sum)")))


def trends(report: dict[str, Any], t: Any) -> dict[str, Any]:
    """This month (the report now) against last month's last snapshot, and 12 months."""
    months = (report.get("history") or {}).get("months") or []
    last = months[-2] if len(months) >= 2 else {}
    now = history.flat(history.figures(report))
    rows = []
    for key, label in TREND_ROWS:
        before, after = last.get(key), now.get(key)
        rows.append({"key": key, "label": t.gettext(label),
                     "before": _cell(t, before), "after": _cell(t, after),
                     "change": _change(t, before, after, key)})
    chart = {
        "labels": [m["month"] for m in months],
        "series": [
            {"key": "open_violations", "label": t.gettext("Open violations"), "axis": "y",
             "data": [(m.get("open_violations") or {}).get("value") for m in months]},
            {"key": "win_rate", "label": t.gettext("Win rate, %"), "axis": "y1",
             "data": [_percent((m.get("win_rate") or {}).get("value")) for m in months]},
        ],
    }
    return {"last_month": last.get("month"), "last_day": last.get("day"), "rows": rows,
            "months": months, "chart": chart}


def rules(report: dict[str, Any], link: DealsUrl) -> list[dict[str, Any]]:
    titles = report.get("rule_titles") or {}
    by_rule = sorted((report.get("violations_by_rule") or {}).items(), key=lambda x: -x[1])
    return [{"rule": rule, "title": titles.get(rule, rule), "count": count,
             "href": link({"rule": rule}) if link else None} for rule, count in by_rule]


def violations_by_owner(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Open violations per owner (``"(none)"``: no owner) and rule: counted by the database
    in a live report (``syncd.report_live``), else from the report's rows."""
    counted = report.get("violations_by_owner")
    if counted is not None:
        return dict(counted)
    by_owner: dict[str, dict[str, int]] = {}
    for violation in report.get("violations") or []:
        cell = by_owner.setdefault(violation.get("owner_id") or "(none)", {})
        rule = str(violation.get("rule") or "")
        cell[rule] = cell.get(rule, 0) + 1
    return by_owner


def teams(report: dict[str, Any], link: DealsUrl) -> list[dict[str, Any]]:
    """Open violations per team (a manager and their members, this month's teams)."""
    people = report.get("people") or {}
    managers = [m for m in people.get("managers") or [] if m.get("period") == people.get("period")]
    team_of: dict[str, str] = {}
    for manager in managers:
        for member in [manager["user_id"], *manager.get("members", [])]:
            team_of.setdefault(str(member), str(manager["user_id"]))
    counts: dict[str, int] = {}
    for owner, rules in violations_by_owner(report).items():
        team = team_of.get(owner)
        if team:
            counts[team] = counts.get(team, 0) + sum(rules.values())
    names = {str(m["user_id"]): m.get("name") or m["user_id"] for m in managers}
    return [{"manager_id": team, "name": names.get(team, team), "count": count,
             "href": link({"team": team}) if link else None}
            for team, count in sorted(counts.items(), key=lambda x: (-x[1], x[0]))]


def desk(report: dict[str, Any], language: str, link: DealsUrl) -> dict[str, Any]:
    """Everything the page's desk parts show, in ``language``."""
    t = translator(language, DOMAIN)
    trend = trends(report, t)
    return {
        "caveats": caveats(report, t),
        "rates": honest_rates(report, t),
        "rules": rules(report, link),
        "teams": teams(report, link),
        "trend": trend,
        "language": language,
        "links": {"deals": link({}) if link else None,
                  "rule": link({"rule": "RULE"}).replace("RULE", "{rule}") if link else None,
                  "owner": link({"owner": "OWNER"}).replace("OWNER", "{owner}") if link else None,
                  "owner_rule": (link({"owner": "OWNER", "rule": "RULE"}).replace(
                      "OWNER", "{owner}").replace("RULE", "{rule}") if link else None)},
        "texts": {"small": t.gettext("small sample"),
                  "small_title": t.gettext("Fewer than {k} cases: too few to read much "
                                           "into").format(k=SMALL_SAMPLE)},
        "small_sample": SMALL_SAMPLE,
    }


def _percent(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 1)


def _cell(t: Any, cell: dict[str, Any] | None) -> dict[str, Any]:
    if not cell or cell.get("value") is None:
        return {"text": "–", "of": None, "small": False}  # noqa: RUF001
    value = cell["value"]
    if "of" in cell:
        shown = rate(t, value, cell.get("n"), cell.get("of"))
        return {"text": shown["text"], "of": shown["of"], "small": shown["small"]}
    return {"text": t.number(value, 2 if isinstance(value, float) and value % 1 else 0),
            "of": None, "small": False}


def _change(t: Any, before: dict[str, Any] | None, after: dict[str, Any] | None,
            key: str) -> str:
    x, y = (before or {}).get("value"), (after or {}).get("value")
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
        return ""
    delta = y - x
    if key in ("win_rate", "churn"):
        points = round(delta * 100, 1)
        return t.gettext("{sign}{points} pp").format(sign="+" if points > 0 else "",
                                                     points=t.number(points, 1))
    return ("+" if delta > 0 else "") + t.number(round(delta, 2),
                                                 2 if isinstance(delta, float) and delta % 1
                                                 else 0)


__all__ = ["SMALL_SAMPLE", "caveats", "deals_link", "desk", "honest_rates", "rate", "rules",
           "trends"]
