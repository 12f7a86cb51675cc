"""A report dict -> the grids of the report tabs (pure functions, no I/O).

Each tab is a list of rows of plain values (str, int, float, bool). IDs are always
strings, numbers stay numbers. Sections of the report another part of syncd may not have
computed yet (``people``, ``kpis``, ``contact_matrix``) render a one-line "not computed"
note instead; unknown extra fields in them are rendered too (a generic table of their
scalar keys), so the tabs survive the report growing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Grid = list[list[Any]]

#: Tab keys in the order they appear; titles are ``prefix + label``.
TAB_KEYS = ("summary", "violations", "client_karma", "people", "kpis", "contact_matrix")
LABELS: dict[str, dict[str, str]] = {
    "en": {"summary": "Summary", "violations": "Violations", "client_karma": "Client karma",
           "people": "People", "kpis": "KPIs", "contact_matrix": "Contact matrix"},
    "ru": {"summary": "Сводка", "violations": "Нарушения", "client_karma": "Карма клиентов",
           "people": "Сотрудники", "kpis": "KPI", "contact_matrix": "Матрица контактов"},
}
#: Contact-matrix cell marks, as in the Sales Book's table: call, visit, contract.
MARKS = {"en": {"call": "Call", "visit": "Visit", "contract": "Contract", "planned": "plan"},
         "ru": {"call": "Зв", "visit": "В", "contract": "Дог", "planned": "план"}}  # noqa: RUF001
#: Counts that grow with every pass (not with the client's data): left out of the Summary
#: tab, or every pass would rewrite it.
VOLATILE_COUNTS = frozenset({"sync_runs", "sync_cursors", "writebacks", "field_defs",
                             "karma_lines"})
#: A timestamp with a time of day (``2026-11-23T13:36:43.7231+00:00``).
_TIMESTAMP = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?$")
NOT_COMPUTED = {
    "en": "not computed: this report has no {key!r} section (this syncd version or this "
          "tenant does not compute it yet)",
    "ru": "не рассчитано: в отчёте нет раздела {key!r} (эта версия syncd или этот клиент его "  # noqa: RUF001
          "пока не считает)",
}


def cell(value: Any) -> Any:
    """A report value as a sheet value: numbers stay numbers, everything else text."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_inline(v)}" for k, v in value.items())
    if isinstance(value, Sequence):
        return ", ".join(_inline(v) for v in value)
    return str(value)


def generic(value: Any) -> Any:
    """A value of a section this module does not know in detail: like ``cell``, but a
    timestamp shows as its date. Such sections carry "now"-like stamps (a KPI period ending
    at the pass), and a tab must not change when only the clock did."""
    if isinstance(value, str):
        match = _TIMESTAMP.match(value)
        if match:
            return match.group(1)
    if isinstance(value, datetime):
        return value.date().isoformat()
    return cell(value)


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return str(value.get("name") or value.get("user_id") or value.get("id")
                   or ", ".join(f"{k}={v}" for k, v in value.items()))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def ident(value: Any) -> str:
    """An id as text, always (``"00123"`` must not become 123)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _not_computed(key: str, language: str) -> Grid:
    return [[NOT_COMPUTED[language].format(key=key)]]


def _records_table(items: Sequence[Mapping[str, Any]], first: Sequence[str],
                   id_keys: frozenset[str] = frozenset()) -> Grid:
    """A table of dicts: ``first`` columns, then every other key in order of appearance."""
    keys = list(first)
    for item in items:
        for key in item:
            if key not in keys:
                keys.append(key)
    rows: Grid = [list(keys)]
    for item in items:
        rows.append([ident(item.get(k)) if k in id_keys or k.endswith("_id")
                     else generic(item.get(k)) for k in keys])
    return rows


def _user_names(report: Mapping[str, Any]) -> dict[str, str]:
    people = report.get("people") or {}
    names = {}
    for group in ("employees", "managers"):
        for person in people.get(group) or ():
            if isinstance(person, Mapping) and person.get("user_id") is not None:
                names[ident(person["user_id"])] = str(person.get("name") or "")
    return names


def summary_tab(report: Mapping[str, Any], language: str) -> Grid:
    """Stable facts only (no pass timestamps): unchanged data must give an unchanged tab."""
    rows: Grid = [["tenant", report.get("tenant", "")], ["plugin", report.get("plugin", "")],
                  ["salesbook", report.get("salesbook", "")],
                  ["timezone", report.get("timezone", "")],
                  ["currency", report.get("currency", "")], [], ["counts", ""]]
    for key, value in (report.get("counts") or {}).items():
        if key not in VOLATILE_COUNTS:
            rows.append([key, cell(value)])
    rows += [[], ["violations by rule", ""]]
    for rule, count in (report.get("violations_by_rule") or {}).items():
        rows.append([rule, cell(count)])
    last_sync = report.get("last_sync") or {}
    problems = last_sync.get("problems") if isinstance(last_sync, Mapping) else None
    if problems:
        rows += [[], ["unreadable source rows (skipped)", ""],
                 *[[str(p), ""] for p in problems]]
    notes = list(report.get("notes") or ())
    for key in ("people", "kpis", "contact_matrix"):
        if report.get(key) is None:
            notes.append(NOT_COMPUTED[language].format(key=key))
    if notes:
        rows += [[], ["notes", ""], *[[str(n), ""] for n in notes]]
    return rows


def violations_tab(report: Mapping[str, Any]) -> Grid:
    names = _user_names(report)
    tz = _zone(report.get("timezone"))
    rows: Grid = [["deal_id", "deal", "owner_id", "owner", "rule", "severity", "stage",
                   "crm_stage", "since", "explanation"]]
    for v in report.get("violations") or ():
        owner = ident(v.get("owner_id"))
        rows.append([ident(v.get("deal_id")), cell(v.get("deal_title")), owner,
                     names.get(owner, ""), cell(v.get("rule")), cell(v.get("severity")),
                     cell(v.get("stage_key")), cell(v.get("crm_stage")),
                     local_minute(v.get("opened_at"), tz), cell(v.get("explanation"))])
    return rows


def _zone(name: Any) -> ZoneInfo | None:
    try:
        return ZoneInfo(str(name)) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_minute(value: Any, tz: ZoneInfo | None) -> Any:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM`` in the tenant's timezone (what people read
    and sort by); anything else as is."""
    if not isinstance(value, str):
        return cell(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if tz is not None and moment.tzinfo is not None:
        moment = moment.astimezone(tz)
    return moment.strftime("%Y-%m-%d %H:%M")


def client_karma_tab(report: Mapping[str, Any]) -> Grid:
    """Segment averages first (short), then every company; each company row also carries
    its segment's average, so a filter on the sheet keeps the comparison."""
    segments = list(report.get("segments") or ())
    means = {s.get("segment"): s.get("mean_karma") for s in segments}
    rows: Grid = [["segment", "mean_karma", "companies"]]
    rows += [[cell(s.get("segment")), cell(s.get("mean_karma")), cell(s.get("companies"))]
             for s in segments]
    rows += [[], ["company_id", "company", "segment", "karma", "segment_mean_karma"]]
    for c in report.get("client_karma") or ():
        segment = c.get("segment")
        rows.append([ident(c.get("company_id")), cell(c.get("company_name")), cell(segment),
                     cell(c.get("karma")), cell(means.get(segment if segment else "(none)"))])
    return rows


def people_tab(report: Mapping[str, Any], language: str) -> Grid:
    people = report.get("people")
    if not isinstance(people, Mapping):
        return _not_computed("people", language)
    rows: Grid = [["employees"]]
    rows += _records_table(_ranked(people.get("employees")),
                           ("user_id", "name", "karma", "bonus"), frozenset({"user_id"}))
    rows += [[], ["managers"]]
    rows += _records_table(_ranked(people.get("managers")),
                           ("user_id", "name", "karma", "members"), frozenset({"user_id"}))
    for key, value in people.items():
        if key not in {"employees", "managers"}:
            rows += [[], [str(key)], *_value_rows(value)]
    return rows


def _ranked(people: Any) -> list[Mapping[str, Any]]:
    """Latest period first (when rows carry one), then highest karma, ties by name and id:
    one order for the same data, every pass (equal karma must not swap rows)."""
    items = [p for p in people or () if isinstance(p, Mapping)]

    def karma(person: Mapping[str, Any]) -> float:
        value = person.get("karma")
        return float(value) if isinstance(value, int | float) else 0.0

    ranked = sorted(items, key=lambda p: (-karma(p), str(p.get("name") or ""),
                                          ident(p.get("user_id"))))
    return sorted(ranked, key=lambda p: str(p.get("period") or ""), reverse=True)


def _value_rows(value: Any) -> Grid:
    if isinstance(value, Sequence) and not isinstance(value, str) and value and all(
            isinstance(v, Mapping) for v in value):
        return _records_table(list(value), ())
    if isinstance(value, Mapping):
        return [[str(k), generic(v)] for k, v in value.items()]
    return [[generic(value)]]


def kpis_tab(report: Mapping[str, Any], language: str) -> Grid:
    kpis = report.get("kpis")
    if not isinstance(kpis, Mapping):
        return _not_computed("kpis", language)
    scalars = [[str(k), generic(v)] for k, v in kpis.items()
               if not isinstance(v, Mapping | list | tuple)]
    rows: Grid = [["kpi", "value"], *scalars]
    for key, value in kpis.items():
        if isinstance(value, Mapping | list | tuple):
            rows += [[], [str(key)], *_value_rows(value)]
    return rows


def _marks(entry: Any, language: str) -> str:
    if not isinstance(entry, Mapping):
        return cell(entry) if entry else ""
    marks = MARKS[language]
    parts = []
    for kind in ("call", "visit", "contract"):
        count = entry.get(kind) or 0
        if count:
            parts.append(marks[kind] if count == 1 else f"{marks[kind]}×{_inline(count)}")  # noqa: RUF001
    for kind, count in entry.items():
        if kind not in {"call", "visit", "contract", "planned"} and isinstance(
                count, int | float) and not isinstance(count, bool) and count:
            parts.append(f"{kind}×{_inline(count)}")  # noqa: RUF001
    text = " ".join(parts)
    if entry.get("planned"):
        return f"{marks['planned']}: {text}".strip() if text else marks["planned"]
    return text


def contact_matrix_tab(report: Mapping[str, Any], language: str) -> Grid:
    """One row per client, one column per month (36 back, 12 planned forward): a call that
    reached a decision maker, a visit, a contract ("Зв", "B", "Дог" in the Russian Sales
    Book); planned months are marked."""
    matrix = report.get("contact_matrix")
    if not isinstance(matrix, Mapping):
        return _not_computed("contact_matrix", language)
    months = [str(m) for m in matrix.get("months") or ()]
    rows_in = [r for r in matrix.get("rows") or () if isinstance(r, Mapping)]
    extra: list[str] = []
    for row in rows_in:
        for key, value in row.items():
            if key not in {"company_id", "company", "cells"} and key not in extra and not \
                    isinstance(value, Mapping | list):
                extra.append(key)
    rows: Grid = [["company_id", "company", *extra, *months]]
    for row in rows_in:
        cells = row.get("cells") or {}
        rows.append([ident(row.get("company_id")), cell(row.get("company")),
                     *[generic(row.get(k)) for k in extra],
                     *[_marks(cells.get(m), language) for m in months]])
    return rows


def render(report: Mapping[str, Any], language: str = "en") -> dict[str, Grid]:
    """``tab key -> grid`` for every report tab."""
    language = language if language in LABELS else "en"
    return {
        "summary": summary_tab(report, language),
        "violations": violations_tab(report),
        "client_karma": client_karma_tab(report),
        "people": people_tab(report, language),
        "kpis": kpis_tab(report, language),
        "contact_matrix": contact_matrix_tab(report, language),
    }


def titles(prefix: str, language: str) -> dict[str, str]:
    labels = LABELS.get(language, LABELS["en"])
    return {key: f"{prefix}{labels[key]}" for key in TAB_KEYS}
