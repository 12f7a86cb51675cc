"""The report as one self-contained HTML page: the dashboard a sales head opens.

The page carries the report JSON (``syncd.report/1``) in a ``<script type=
"application/json">`` block and a small inline script draws everything from it: summary
cards, violations by rule and owner, client karma and segments, the people leaderboard, the
funnel, forward moves against the target and the contact matrix, as inline SVG and CSS. No
external file, font or network request is needed, so the same page works served by the
daemon (``syncd.web.dashboard``) and written to disk (``syncd report --format html``).
Every text goes through ``textContent``: CRM names cannot inject markup.
"""

from __future__ import annotations

import html
import json
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from syncd.desk import violations_by_owner
from syncd.i18n import jinja_env, normalize_language, translations

TEMPLATES = Path(__file__).resolve().parent / "templates"
CSS = "\n".join((TEMPLATES / name).read_text(encoding="utf-8")
                for name in ("dashboard.css", "dashboard/desk.css"))
SCRIPT = (TEMPLATES / "dashboard.js").read_text(encoding="utf-8")
#: The desk's charts (syncd/desk.py) and the vendored Chart.js they are drawn with.
CHARTS = (TEMPLATES / "dashboard" / "charts.js").read_text(encoding="utf-8")
CHART_LIBRARY = TEMPLATES / "vendor" / "chart.umd.min.js"
DOMAIN = "report"

def embed_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


#: What the page shows of long lists (the JSON report keeps everything).
TOP_COMPANIES = 15
MATRIX_ROWS = 60


def page_view(report: dict[str, Any]) -> dict[str, Any]:
    """The part of the report the page draws: counts instead of the violation list, the
    top companies without their ledgers, the first matrix rows, the last two months of
    people. A tenant with a million deals still gets a page of a few hundred kilobytes."""
    view = {key: value for key, value in report.items()
            if key not in ("violations", "client_karma", "contact_matrix", "people")}
    view["violations_open"] = len(report.get("violations") or [])
    view["violations_by_owner"] = violations_by_owner(report)
    view["client_karma"] = [{k: v for k, v in row.items() if k != "lines"}
                            for row in (report.get("client_karma") or [])[:TOP_COMPANIES]]
    matrix = report.get("contact_matrix") or {"months": [], "rows": []}
    view["contact_matrix"] = {**matrix, "rows": matrix["rows"][:MATRIX_ROWS],
                              "rows_total": len(matrix["rows"])}
    people = dict(report.get("people") or {})
    recent = set((people.get("months") or [])[-2:])
    for key in ("employees", "managers"):
        people[key] = [row for row in people.get(key) or [] if row.get("period") in recent]
    view["people"] = people
    view.update(bad_records_view(report))
    return view


#: Quarantined records and rejected writes the page lists (the JSON report keeps all).
BAD_RECORD_ROWS = 50


def bad_records_view(report: dict[str, Any]) -> dict[str, Any]:
    """The first quarantined records (without their raw payloads) and rejected writes."""
    held = report.get("quarantine") or []
    rejected = report.get("write_failures") or []
    return {
        "quarantine": [{k: v for k, v in row.items() if k != "payload"}
                       for row in held[:BAD_RECORD_ROWS]],
        "quarantine_total": len(held),
        "write_failures": rejected[:BAD_RECORD_ROWS],
        "write_failures_total": len(rejected),
    }


def _body(report: dict[str, Any], language: str, desk: dict[str, Any]) -> str:
    """The page body (templates/report_body.html) in ``language``; a new tenant's
    onboarding summary (``syncd.onboarding.summary``, escaped HTML) opens it, then the
    desk's caveats and trends (templates/dashboard/desk_*.html, autoescaped)."""
    onboarding = ""
    if report.get("onboarding"):
        from syncd.onboarding.summary import summary_html

        onboarding = summary_html(report["onboarding"])
    parts = {name: Markup(_desk_template(language, name).render(d=desk))  # noqa: S704  (autoescaped)
             for name in ("desk_top", "desk_rules")}
    parts["nav"] = Markup(_desk_template(language, "desk_nav").render(d=desk))  # noqa: S704  (autoescaped)
    return _template(language).render(onboarding=Markup(onboarding), **parts)  # noqa: S704  (escaped by summary_html)


@cache
def _desk_template(language: str, name: str) -> jinja2.Template:
    return jinja_env(language, "dashboard").get_template(f"dashboard/{name}.html")


@cache
def _template(language: str) -> jinja2.Template:
    return jinja_env(language, DOMAIN).get_template("report_body.html")


def page_texts(language: str) -> dict[str, str]:
    """The script's texts: the "report" catalogue of ``language`` (English: none needed)."""
    found = translations(language, DOMAIN)
    return {key: text for key, text in getattr(found, "_catalog", {}).items()
            if isinstance(key, str) and key}


@cache
def _chart_library() -> str:
    return CHART_LIBRARY.read_text(encoding="utf-8")


def render_html(report: dict[str, Any], *, refresh_seconds: int | None = None,
                language: str | None = None, deals_url: str | None = None,
                chart_src: str | None = None) -> str:
    """The whole page for one tenant's report (one self-contained document), in
    ``language`` (default: the report's).

    Served by the dashboard, ``deals_url`` is the tenant's deals page (every count links
    to its deals) and ``chart_src`` the address of the vendored Chart.js; written to a
    file, there are no links and Chart.js is inlined (the page works offline either way).
    """
    from syncd.desk import deals_link, desk

    lang = normalize_language(language or report.get("language") or "en")
    title = html.escape(f"syncd · {report.get('tenant', '')}")
    refresh = (f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">'
               if refresh_seconds else "")
    board = desk(report, lang, deals_link(deals_url))
    view = {**page_view(report), "language": lang,
            "desk": {"rates": board["rates"], "links": board["links"],
                     "texts": board["texts"]}}
    charts = {"rules": board["rules"], "trend": {"chart": board["trend"]["chart"]}}
    library = (f'<script src="{html.escape(chart_src)}"></script>' if chart_src
               else f"<script>{_chart_library()}</script>")
    scripts = "'self' 'unsafe-inline'" if chart_src else "'unsafe-inline'"
    return (
        f"<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        f"style-src 'unsafe-inline'; script-src {scripts}; img-src data:\">"
        f"{refresh}<title>{title}</title><style>{CSS}</style></head><body>"
        f"{_body(report, lang, board)}"
        f"<script type=\"application/json\" id=\"report-data\">{embed_json(view)}"
        "</script>"
        f"<script type=\"application/json\" id=\"report-texts\">{embed_json(page_texts(lang))}"
        "</script>"
        f"<script type=\"application/json\" id=\"desk-data\">{embed_json(charts)}</script>"
        f"<script>{SCRIPT}</script>{library}<script>{CHARTS}</script></body></html>\n"
    )
