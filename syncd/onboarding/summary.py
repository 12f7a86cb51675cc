
"""The first audit as a deliverable: the onboarding summary that opens a new tenant's report.

``syncd report TENANT`` adds it (JSON key ``onboarding``, and the first section of the HTML
page) when the tenant has at most one finished pass, or with ``--onboarding``. It says, in
the tenant's language and in words a client's director reads without a consultant:

* coverage: how many deals, how far back the history goes, the share of deals with at least
  one activity, the deal fields nobody ever fills;
* the mapping's gaps: CRM stages, loss reasons and activity types the tenant file does not
  map (with how many records they hold) and the TODOs ``syncd init`` left in it;
* the top findings of the audit, each a sentence with its count.

Read from the store only (what the first pass pulled); nothing is written.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from syncd import store
from syncd.config import Tenant
from syncd.i18n import N_, Nn_, translator
from syncd.mapping import TenantMapper
from syncd.onboarding.matching import book_kinds
from syncd.onboarding.todos import file_todos
from syncd.render import rule_title
from syncd.store.models import ActivityRow, FieldDefRow, SyncRunRow

#: A tenant with at most this many finished passes gets the summary without asking.
NEW_TENANT_PASSES = 1
TOP_FINDINGS = 5

#: rule -> (singular, plural) of the finding's sentence, counted by ``n``.
FINDINGS: dict[str, tuple[str, str]] = {
    "missing_action": Nn_("{n} deal moved on without a step the Sales Book requires",
                          "{n} deals moved on without a step the Sales Book requires"),
    "skipped_stage": Nn_("{n} deal skipped a stage of the sales process",
                         "{n} deals skipped a stage of the sales process"),
    "backward_move": Nn_("{n} deal went back to an earlier stage",
                         "{n} deals went back to an earlier stage"),
    "stalled": Nn_("{n} deal sits in a stage longer than the Sales Book allows",
                   "{n} deals sit in a stage longer than the Sales Book allows"),
    "inactive": Nn_("{n} deal has had no contact with the client for too long",
                    "{n} deals have had no contact with the client for too long"),
    "no_next_step": Nn_("{n} open deal has no next step planned",
                        "{n} open deals have no next step planned"),
    "bad_loss_reason": Nn_("{n} lost deal has no valid loss reason: you cannot learn why "
                           "you lose",
                           "{n} lost deals have no valid loss reason: you cannot learn why "
                           "you lose"),
    "no_lead_source": Nn_("{n} deal does not say where the client came from",
                          "{n} deals do not say where the client came from"),
    "no_contact": Nn_("{n} deal has no contact person", "{n} deals have no contact person"),
    "deferred_no_reminder": Nn_("{n} deferred deal has no reminder: it will be forgotten",
                                "{n} deferred deals have no reminder: they will be forgotten"),
    "won_no_followup": Nn_("{n} won deal has no follow-up with the client",
                           "{n} won deals have no follow-up with the client"),
    "unmapped_stage": Nn_("{n} deal is in a CRM stage not yet matched to the Sales Book",
                          "{n} deals are in CRM stages not yet matched to the Sales Book"),
}
OTHER_FINDING = Nn_("{rule}: {n} violation", "{rule}: {n} violations")
DOMAIN = "report"


def is_new(db: store.Database, tenant: Tenant) -> bool:
    """True while the tenant has at most ``NEW_TENANT_PASSES`` finished passes."""
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        done = session.scalar(select(func.count()).select_from(SyncRunRow).where(
            SyncRunRow.tenant_id == tenant_id, SyncRunRow.finished_at.is_not(None))) or 0
    return done <= NEW_TENANT_PASSES


def _months(first: datetime | None, last: datetime | None) -> int:
    if first is None or last is None:
        return 0
    return max(0, (last.year - first.year) * 12 + last.month - first.month)


class _DealTally:
    """What the summary says of the deals, counted a chunk at a time (never all deals in
    memory): statuses, the first and last creation, fields ever filled, deals with an
    activity, and deals in CRM stages or with loss reasons the mapping does not know."""

    def __init__(self, tenant: Tenant, mapper: TenantMapper,
                 with_activity: set[str | None]) -> None:
        self.tenant, self.mapper, self.with_activity = tenant, mapper, with_activity
        self.deals = 0
        self.active = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.statuses: Counter[str] = Counter()
        self.filled: Counter[str] = Counter()
        self.stages: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def add(self, deals: Iterable[Any]) -> None:
        mapping, mapper = self.tenant.config.mapping, self.mapper
        for deal in deals:
            self.deals += 1
            self.statuses[deal.status] += 1
            self.active += deal.external_id in self.with_activity
            if deal.created_at is not None:
                self.first = min(filter(None, (self.first, deal.created_at)))
                self.last = max(filter(None, (self.last, deal.created_at)))
            self.filled.update(k for k, v in (deal.fields or {}).items()
                               if v not in (None, "", [], {}))
            names = mapper.stage_names.get(deal.stage_id or "")
            if names is not None and names[1] not in mapping.stages.get(names[0], {}):
                self.stages[f"{names[0]} / {names[1]}"] += 1
            reason = (deal.lost_reason or "").strip()
            if (deal.status == "lost" and reason and mapper.loss_reason_key(reason) is None
                    and not mapper.ignored(deal)):
                self.reasons[reason] += 1


def _coverage(session: Session, tenant_id: int, tally: _DealTally) -> dict[str, Any]:
    names = session.scalars(select(FieldDefRow.name).where(
        FieldDefRow.tenant_id == tenant_id, FieldDefRow.entity == "deal",
        FieldDefRow.deleted.is_(False)))
    share = tally.active / tally.deals if tally.deals else 0.0
    return {
        "deals": tally.deals, "open": tally.statuses["open"], "won": tally.statuses["won"],
        "lost": tally.statuses["lost"],
        "first_deal_at": tally.first.isoformat() if tally.first else None,
        "history_months": _months(tally.first, tally.last),
        "share_with_activities": round(share, 3),
        "fields_never_filled": sorted(n for n in set(names) if not tally.filled[n]),
    }


def _gaps(tenant: Tenant, mapper: TenantMapper, tally: _DealTally,
          activity_types: Counter[str]) -> dict[str, Any]:
    known = set(book_kinds(tenant.book))
    kinds = Counter({t: n for t, n in activity_types.items() if mapper.kind(t) not in known})
    todos = file_todos(tenant.file)

    def listed(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": name, "count": n} for name, n in counter.most_common()]

    return {"stages": listed(tally.stages), "loss_reasons": listed(tally.reasons),
            "activity_types": listed(kinds),
            "todos": [{"key": t.key, "text": t.problem} for t in todos]}


def _findings(report: dict[str, Any], language: str) -> list[str]:
    t = translator(language, DOMAIN)
    counted = report.get("violations_by_rule")
    rules = Counter(counted if counted is not None
                    else (v["rule"] for v in report.get("violations") or []))
    return [t.ngettext(*FINDINGS.get(rule, OTHER_FINDING), n).format(
                n=n, rule=rule_title(rule, language))
            for rule, n in rules.most_common(TOP_FINDINGS)]


def onboarding_summary(db: store.Database, tenant: Tenant,
                       report: dict[str, Any]) -> dict[str, Any]:
    """The ``onboarding`` section of ``report`` (docs/report-schema.md), in the report's
    language."""
    language = report.get("language") or tenant.config.language
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        mapper = TenantMapper(tenant.config, tenant.book, store.stages_by_id(session, tenant_id))
        with_activity = set(session.scalars(select(ActivityRow.deal_external_id).where(
            ActivityRow.tenant_id == tenant_id, ActivityRow.deleted.is_(False),
            ActivityRow.deal_external_id.is_not(None)).distinct()))
        tally = _DealTally(tenant, mapper, with_activity)
        for chunk in store.iter_deal_chunks(session, tenant_id):
            tally.add(chunk)
        coverage = _coverage(session, tenant_id, tally)
        activity_types = Counter(dict(session.execute(
            select(ActivityRow.type, func.count()).where(
                ActivityRow.tenant_id == tenant_id, ActivityRow.deleted.is_(False))
            .group_by(ActivityRow.type)).all()))
    t = translator(language, DOMAIN)
    findings = _findings(report, language)
    read = t.ngettext("{n} deal", "{n} deals", coverage["deals"]).format(n=coverage["deals"])
    issues = len(report.get("violations") or [])
    return {
        "language": language,
        "headline": t.gettext("First audit of {tenant}: {deals}, {issues}").format(
            tenant=tenant.key, deals=read,
            issues=t.ngettext("{n} issue found", "{n} issues found", issues).format(n=issues)),
        "coverage": coverage,
        "gaps": _gaps(tenant, mapper, tally, activity_types),
        "findings": findings or [t.gettext("No violations found in the data read.")],
    }


def summary_html(section: dict[str, Any]) -> str:
    """The summary as the first section of the report page (every text escaped)."""
    from html import escape

    t = translator(section.get("language") or "en", DOMAIN)
    cov = section["coverage"]
    items = [t.ngettext("{n} deal ({open} open, {won} won, {lost} lost)",
                        "{n} deals ({open} open, {won} won, {lost} lost)", cov["deals"]).format(
        n=cov["deals"], open=cov["open"], won=cov["won"], lost=cov["lost"])]
    if cov.get("first_deal_at"):
        first = t.date(date.fromisoformat(cov["first_deal_at"][:10]), "short")
        items.append(t.ngettext("history: {months} month, from {first}",
                                "history: {months} months, from {first}",
                                cov["history_months"]).format(months=cov["history_months"],
                                                              first=first))
    items.append(t.gettext("{share} of deals have at least one activity (call, meeting, task)")
                 .format(share=t.percent(cov["share_with_activities"])))
    if cov["fields_never_filled"]:
        items.append(t.gettext("deal fields never filled: {names}").format(
            names=", ".join(cov["fields_never_filled"])))
    gaps = []
    for key, label in (("stages", N_("CRM stages")), ("loss_reasons", N_("loss reasons")),
                       ("activity_types", N_("activity types"))):
        rows = section["gaps"][key]
        if rows:
            gaps.append(f"{t.gettext(label)}: " + ", ".join(f"{r['name']} ({r['count']})"
                                                            for r in rows))
    if section["gaps"]["todos"]:
        gaps.append(t.gettext("open questions in the setup: {n}").format(
            n=len(section["gaps"]["todos"])))

    def bullets(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"

    title, main = t.gettext("First audit: summary"), t.gettext("Main findings")
    covers, unmatched = t.gettext("What the data covers"), t.gettext(
        "Not yet matched to the Sales Book")
    return (f'<section class="wide" id="onboarding"><h2>{escape(title)}</h2>'
            f"<p><strong>{escape(section['headline'])}</strong></p>"
            f"<h3>{escape(main)}</h3>{bullets(section['findings'])}"
            f"<h3>{escape(covers)}</h3>{bullets(items)}"
            f"<h3>{escape(unmatched)}</h3>"
            f"{bullets(gaps or [t.gettext('everything is matched')])}"
            "</section>\n")
