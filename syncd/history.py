"""Daily snapshots of a tenant's figures, for trends and period comparisons (issue 15 item 3).

The first good live pass of a tenant's local day stores what its report says that day
(table ``tenant_snapshots``, one row per tenant and day): open violations (total and by
rule), how many deals they touch, open deals, employees' and managers' karma of the
current month, client karma, the account KPIs with their counts (win rate as won of
closed, churn as lost of clients at start, ...), and the caveats (quarantined records,
rejected writes). Later passes of the same day leave the row alone, so a day's figure is
the morning's, taken the same way every day; a day without a good pass has no row.

``months()`` turns the rows into one point per month (the month's last snapshot), what the
dashboard's trend charts and ``syncd report --compare`` read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from syncd.i18n import N_
from syncd.store.models import TenantSnapshotRow

if TYPE_CHECKING:
    from syncd.config import Tenant
    from syncd.store import Database

#: The KPIs kept per day, and the fields of each (its rate and the counts behind it).
KPI_FIELDS = {
    "win_rate": ("rate", "won", "lost"),
    "churn": ("rate", "lost", "clients_at_start"),
    "repeat_clients": ("share", "repeat", "clients"),
    "new_clients": ("total", "plan"),
    "nps": ("nps", "answers"),
    "clv": ("clv", "clients"),
    "upsale_revenue": ("revenue", "deals"),
}
#: What a comparison lists: (key in ``flat()``, label, higher is better).
MEASURES = (
    ("open_violations", N_("Open violations"), False),
    ("deals_with_violations", N_("Deals with violations"), False),
    ("open_deals", N_("Open deals"), True),
    ("win_rate", N_("Win rate"), True),
    ("churn", N_("Churn"), False),
    ("new_clients", N_("New clients"), True),
    ("employees_karma", N_("Employees' karma (sum)"), True),
    ("client_karma", N_("Client karma (sum)"), True),
)


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """What a snapshot keeps of a report (``syncd.report/1``)."""
    violations = report.get("violations") or []
    people = report.get("people") or {}
    period = people.get("period")
    kpis = report.get("kpis") or {}
    return {
        "open_violations": len(violations),
        "by_rule": dict(report.get("violations_by_rule") or {}),
        "deals_with_violations": len({v.get("deal_id") for v in violations if v.get("deal_id")}),
        "open_deals": (report.get("counts") or {}).get("open_deals"),
        "period": period,
        "employees": {e["user_id"]: e["karma"] for e in people.get("employees") or []
                      if e.get("period") == period},
        "managers": {m["user_id"]: m["karma"] for m in people.get("managers") or []
                     if m.get("period") == period},
        "client_karma": round(sum(c.get("karma") or 0 for c in report.get("client_karma") or []),
                              2),
        "clients": len(report.get("client_karma") or []),
        "kpis": {name: {k: (kpis.get(name) or {}).get(k) for k in keys}
                 for name, keys in KPI_FIELDS.items() if isinstance(kpis.get(name), dict)},
        "quarantined": len(report.get("quarantine") or []),
        "write_failures": len(report.get("write_failures") or []),
    }


def local_day(moment: datetime, timezone: str) -> date:
    return moment.astimezone(ZoneInfo(timezone)).date()


def record(session: Session, tenant_id: int, day: date, data: dict[str, Any],
           taken_at: datetime | None = None) -> bool:
    """Store ``data`` as ``day``'s snapshot unless the day has one; True when stored."""
    if session.scalar(select(TenantSnapshotRow.id).where(
            TenantSnapshotRow.tenant_id == tenant_id, TenantSnapshotRow.day == day)):
        return False
    try:
        with session.begin_nested():  # another process may store the same day first
            session.add(TenantSnapshotRow(tenant_id=tenant_id, day=day, figures=data,
                                          taken_at=taken_at or datetime.now(UTC)))
    except IntegrityError:
        return False
    return True


def record_report(db: Database, tenant: Tenant, report: dict[str, Any]) -> bool:
    """After a good live pass: the day's snapshot from its report (the day's first)."""
    if not report.get("live", True):
        return False

    return record_figures(db, tenant, figures(report), datetime.fromisoformat(report["as_of"]))


def record_figures(db: Database, tenant: Tenant, data: dict[str, Any], moment: datetime) -> bool:
    """Store ``data`` (``figures()`` of a live report as of ``moment``) as the day's
    snapshot unless the tenant's local day has one (the streamed report's way)."""
    from syncd import store

    with db.session(immediate=True) as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        return record(session, tenant_id, local_day(moment, tenant.config.timezone),
                      data, moment)


def snapshots(session: Session, tenant_id: int, since: date | None = None,
              until: date | None = None) -> list[tuple[date, dict[str, Any]]]:
    query = select(TenantSnapshotRow.day, TenantSnapshotRow.figures).where(
        TenantSnapshotRow.tenant_id == tenant_id).order_by(TenantSnapshotRow.day)
    if since is not None:
        query = query.where(TenantSnapshotRow.day >= since)
    if until is not None:
        query = query.where(TenantSnapshotRow.day <= until)
    return [(row.day, row.figures) for row in session.execute(query)]


def month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_list(today: date, count: int = 12) -> list[str]:
    """The ``count`` months up to ``today``'s, oldest first."""
    index = today.year * 12 + today.month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count + 1, index + 1)]


def months(session: Session, tenant_id: int, today: date, count: int = 12) -> list[dict[str, Any]]:
    """One entry per month of the last ``count`` (oldest first): the month's last snapshot
    (``day`` and ``figures``), or ``None`` figures for a month without one."""
    wanted = month_list(today, count)
    first = date.fromisoformat(f"{wanted[0]}-01")
    last: dict[str, tuple[date, dict[str, Any]]] = {}
    for day, data in snapshots(session, tenant_id, first, today):
        last[month_key(day)] = (day, data)
    return [{"month": m, "day": last[m][0].isoformat() if m in last else None,
             "figures": last[m][1] if m in last else None} for m in wanted]


def trend(session: Any, tenant_id: int, today: date, count: int = 12) -> dict[str, Any]:
    """The report's ``history``: the last ``count`` months, each the compared measures of
    its last snapshot (``flat``; ``day`` None: no snapshot that month)."""
    return {"months": [{"month": m["month"], "day": m["day"], **flat(m["figures"])}
                       for m in months(session, tenant_id, today, count)]}


def flat(data: dict[str, Any] | None) -> dict[str, Any]:
    """The compared measures of one snapshot: each ``{"value", "n", "of"}`` (counts behind a
    rate; None where the snapshot has no such figure)."""
    if not data:
        return {}
    kpis = data.get("kpis") or {}
    win = kpis.get("win_rate") or {}
    churn = kpis.get("churn") or {}
    closed = (win.get("won") or 0) + (win.get("lost") or 0)
    return {
        "open_violations": {"value": data.get("open_violations")},
        "deals_with_violations": {"value": data.get("deals_with_violations")},
        "open_deals": {"value": data.get("open_deals")},
        "win_rate": {"value": win.get("rate"), "n": win.get("won"), "of": closed},
        "churn": {"value": churn.get("rate"), "n": churn.get("lost"),
                  "of": churn.get("clients_at_start")},
        "new_clients": {"value": (kpis.get("new_clients") or {}).get("total")},
        "employees_karma": {"value": round(sum((data.get("employees") or {}).values()), 2)},
        "client_karma": {"value": data.get("client_karma")},
    }


def compare(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The measures side by side: ``{key, label, before, after, change, better}``."""
    a, b = flat(before), flat(after)
    rows = []
    for key, label, higher_is_better in MEASURES:
        old, new = a.get(key) or {}, b.get(key) or {}
        x, y = old.get("value"), new.get("value")
        change = round(y - x, 4) if isinstance(x, (int, float)) and isinstance(
            y, (int, float)) else None
        better = None if not change else (change > 0) == higher_is_better
        rows.append({"key": key, "label": label, "before": old or None, "after": new or None,
                     "change": change, "better": better})
    return rows


def compare_section(db: Database, tenant: Tenant, report: dict[str, Any],
                    month: str) -> dict[str, Any]:
    """``syncd report --compare MONTH``: the report's own figures against MONTH's last
    snapshot (``snapshot_day`` None: no snapshot that month, nothing to compare)."""
    from syncd import store

    first = date.fromisoformat(f"{month}-01")
    end = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        found = snapshots(session, tenant_id, first, date.fromordinal(end.toordinal() - 1))
    day, data = found[-1] if found else (None, None)
    return {"month": month, "snapshot_day": day.isoformat() if day else None,
            "as_of": report.get("as_of"),
            "measures": [{**row, "label": str(row["label"])}
                         for row in compare(data, figures(report))]}



def compare_lines(section: dict[str, Any], language: str) -> list[str]:
    """``syncd report --compare`` as text lines (the table report)."""
    from syncd.i18n import translator

    t = translator(language, "dashboard")
    if not section.get("snapshot_day"):
        return [t.gettext("No daily snapshot in {month}: nothing to compare.").format(
            month=section["month"])]
    lines = [t.gettext("Compared with {day} (the last snapshot of {month}):").format(
        day=section["snapshot_day"], month=section["month"])]
    for row in section["measures"]:
        lines.append(f"  {t.gettext(row['label'])}: {_show(row['before'], t)} → "
                     f"{_show(row['after'], t)}")
    return lines


def _show(cell: dict[str, Any] | None, t: Any) -> str:
    if not cell or cell.get("value") is None:
        return "–"  # noqa: RUF001 - the en dash of an empty cell
    value = cell["value"]
    if "of" in cell:
        text = t.percent(value, 1) if isinstance(value, float) else str(value)
        return f"{text} ({t.gettext('{n} of {total}').format(n=cell['n'], total=cell['of'])})"
    return t.number(value)


__all__ = ["compare", "compare_lines", "compare_section", "figures", "flat", "month_list",
           "months", "record", "record_report", "snapshots", "trend"]
