# ruff: noqa: RUF001 - Russian text
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
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from syncd import store
from syncd.config import Tenant
from syncd.mapping import TenantMapper
from syncd.onboarding.matching import book_kinds
from syncd.onboarding.todos import file_todos
from syncd.store.models import ActivityRow, FieldDefRow, SyncRunRow

#: A tenant with at most this many finished passes gets the summary without asking.
NEW_TENANT_PASSES = 1
TOP_FINDINGS = 5

FINDINGS: dict[str, dict[str, str]] = {
    "en": {
        "missing_action": "{n} deal(s) moved on without a step the Sales Book requires",
        "skipped_stage": "{n} deal(s) skipped a stage of the sales process",
        "backward_move": "{n} deal(s) went back to an earlier stage",
        "stalled": "{n} deal(s) sit in a stage longer than the Sales Book allows",
        "inactive": "{n} deal(s) have had no contact with the client for too long",
        "no_next_step": "{n} open deal(s) have no next step planned",
        "bad_loss_reason": "{n} lost deal(s) have no valid loss reason: you cannot learn "
                           "why you lose",
        "no_lead_source": "{n} deal(s) do not say where the client came from",
        "no_contact": "{n} deal(s) have no contact person",
        "deferred_no_reminder": "{n} deferred deal(s) have no reminder: they will be "
                                "forgotten",
        "won_no_followup": "{n} won deal(s) have no follow-up with the client",
        "unmapped_stage": "{n} deal(s) are in CRM stages not yet matched to the Sales Book",
        "other": "{n} violation(s) of rule {rule}",
        "headline": "First audit of {tenant}: {deals} deal(s), {violations} issue(s) found",
        "none": "No violations found in the data read.",
    },
    "ru": {
        "missing_action": "{n} сделок ушли дальше без шага, который требует Книга продаж",
        "skipped_stage": "{n} сделок перескочили этап воронки",
        "backward_move": "{n} сделок вернулись на более ранний этап",
        "stalled": "{n} сделок стоят на этапе дольше, чем допускает Книга продаж",
        "inactive": "{n} сделок слишком давно без контакта с клиентом",
        "no_next_step": "у {n} открытых сделок не запланирован следующий шаг",
        "bad_loss_reason": "у {n} проигранных сделок нет допустимой причины отказа: "
                           "не видно, почему вы теряете клиентов",
        "no_lead_source": "у {n} сделок не указано, откуда пришёл клиент",
        "no_contact": "у {n} сделок нет контактного лица",
        "deferred_no_reminder": "у {n} отложенных сделок нет напоминания: о них забудут",
        "won_no_followup": "у {n} выигранных сделок нет последующего контакта с клиентом",
        "unmapped_stage": "{n} сделок на этапах CRM, ещё не сопоставленных с Книгой продаж",
        "other": "нарушений правила {rule}: {n}",
        "headline": "Первый аудит {tenant}: сделок — {deals}, найдено нарушений — "
                    "{violations}",
        "none": "В прочитанных данных нарушений не найдено.",
    },
}


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


def _coverage(session: Session, tenant_id: int, deals: list[Any]) -> dict[str, Any]:
    with_activity = set(session.scalars(select(ActivityRow.deal_external_id).where(
        ActivityRow.tenant_id == tenant_id, ActivityRow.deleted.is_(False),
        ActivityRow.deal_external_id.is_not(None)).distinct()))
    created = [d.created_at for d in deals if d.created_at is not None]
    filled: Counter[str] = Counter()
    for deal in deals:
        filled.update(k for k, v in (deal.fields or {}).items() if v not in (None, "", [], {}))
    names = session.scalars(select(FieldDefRow.name).where(
        FieldDefRow.tenant_id == tenant_id, FieldDefRow.entity == "deal",
        FieldDefRow.deleted.is_(False)))
    statuses = Counter(d.status for d in deals)
    share = len([d for d in deals if d.external_id in with_activity]) / len(deals) if deals \
        else 0.0
    return {
        "deals": len(deals), "open": statuses["open"], "won": statuses["won"],
        "lost": statuses["lost"],
        "first_deal_at": min(created).isoformat() if created else None,
        "history_months": _months(min(created, default=None), max(created, default=None)),
        "share_with_activities": round(share, 3),
        "fields_never_filled": sorted(n for n in set(names) if not filled[n]),
    }


def _gaps(tenant: Tenant, mapper: TenantMapper, deals: list[Any],
          activity_types: Counter[str]) -> dict[str, Any]:
    mapping = tenant.config.mapping
    stages: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for deal in deals:
        names = mapper.stage_names.get(deal.stage_id or "")
        if names is not None and names[1] not in mapping.stages.get(names[0], {}):
            stages[f"{names[0]} / {names[1]}"] += 1
        reason = (deal.lost_reason or "").strip()
        if (deal.status == "lost" and reason and mapper.loss_reason_key(reason) is None
                and not mapper.ignored(deal)):
            reasons[reason] += 1
    known = set(book_kinds(tenant.book))
    kinds = Counter({t: n for t, n in activity_types.items() if mapper.kind(t) not in known})
    todos = file_todos(tenant.file)

    def listed(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"name": name, "count": n} for name, n in counter.most_common()]

    return {"stages": listed(stages), "loss_reasons": listed(reasons),
            "activity_types": listed(kinds),
            "todos": [{"key": t.key, "text": t.problem} for t in todos]}


def _findings(report: dict[str, Any], language: str) -> list[str]:
    texts = FINDINGS.get(language, FINDINGS["en"])
    rules = Counter(v["rule"] for v in report.get("violations") or [])
    return [texts.get(rule, texts["other"]).format(n=n, rule=rule)
            for rule, n in rules.most_common(TOP_FINDINGS)]


def onboarding_summary(db: store.Database, tenant: Tenant,
                       report: dict[str, Any]) -> dict[str, Any]:
    """The ``onboarding`` section of ``report`` (docs/report-schema.md)."""
    language = tenant.config.language
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        deals = [d for chunk in store.iter_deal_chunks(session, tenant_id) for d in chunk]
        mapper = TenantMapper(tenant.config, tenant.book, store.stages_by_id(session, tenant_id))
        coverage = _coverage(session, tenant_id, deals)
        activity_types = Counter(dict(session.execute(
            select(ActivityRow.type, func.count()).where(
                ActivityRow.tenant_id == tenant_id, ActivityRow.deleted.is_(False))
            .group_by(ActivityRow.type)).all()))
    texts = FINDINGS.get(language, FINDINGS["en"])
    findings = _findings(report, language)
    return {
        "language": language,
        "headline": texts["headline"].format(
            tenant=tenant.key, deals=coverage["deals"],
            violations=len(report.get("violations") or [])),
        "coverage": coverage,
        "gaps": _gaps(tenant, mapper, deals, activity_types),
        "findings": findings or [texts["none"]],
    }


LABELS: dict[str, dict[str, str]] = {
    "en": {"title": "First audit: summary", "coverage": "What the data covers",
           "deals": "deals", "open": "open", "won": "won", "lost": "lost",
           "history": "history: {months} month(s), from {first}",
           "activities": "{share:.0%} of deals have at least one activity (call, meeting, "
                         "task)",
           "never": "deal fields never filled: {names}",
           "gaps": "Not yet matched to the Sales Book",
           "stages": "CRM stages", "loss_reasons": "loss reasons",
           "activity_types": "activity types", "todos": "open questions in the setup",
           "findings": "Main findings", "no_gaps": "everything is matched"},
    "ru": {"title": "Первый аудит: итоги", "coverage": "Что охватывают данные",
           "deals": "сделок", "open": "открыто", "won": "выиграно", "lost": "проиграно",
           "history": "история: {months} мес., с {first}",
           "activities": "у {share:.0%} сделок есть хотя бы одно действие (звонок, встреча, "
                         "задача)",
           "never": "поля сделки, которые никто не заполняет: {names}",
           "gaps": "Ещё не сопоставлено с Книгой продаж",
           "stages": "этапы CRM", "loss_reasons": "причины отказа",
           "activity_types": "типы действий", "todos": "открытые вопросы настройки",
           "findings": "Главное", "no_gaps": "всё сопоставлено"},
}


def summary_html(section: dict[str, Any]) -> str:
    """The summary as the first section of the report page (every text escaped)."""
    from html import escape

    labels = LABELS.get(section.get("language") or "en", LABELS["en"])
    cov = section["coverage"]
    items = [f"{cov['deals']} {labels['deals']} ({labels['open']} {cov['open']}, "
             f"{labels['won']} {cov['won']}, {labels['lost']} {cov['lost']})"]
    if cov.get("first_deal_at"):
        items.append(labels["history"].format(months=cov["history_months"],
                                              first=cov["first_deal_at"][:10]))
    items.append(labels["activities"].format(share=cov["share_with_activities"]))
    if cov["fields_never_filled"]:
        items.append(labels["never"].format(names=", ".join(cov["fields_never_filled"])))
    gaps = []
    for key in ("stages", "loss_reasons", "activity_types"):
        rows = section["gaps"][key]
        if rows:
            gaps.append(f"{labels[key]}: " + ", ".join(f"{r['name']} ({r['count']})"
                                                       for r in rows))
    if section["gaps"]["todos"]:
        gaps.append(f"{labels['todos']}: {len(section['gaps']['todos'])}")

    def bullets(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>"

    return (f'<section class="wide" id="onboarding"><h2>{escape(labels["title"])}</h2>'
            f"<p><strong>{escape(section['headline'])}</strong></p>"
            f"<h3>{escape(labels['findings'])}</h3>{bullets(section['findings'])}"
            f"<h3>{escape(labels['coverage'])}</h3>{bullets(items)}"
            f"<h3>{escape(labels['gaps'])}</h3>{bullets(gaps or [labels['no_gaps']])}"
            "</section>\n")
