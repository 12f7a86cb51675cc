"""The tenant report: violations, client karma with its ledger, segments, counts, people
karma (employees, managers, bonuses), KPIs and the contact matrix.

``build_report`` returns a JSON-able dict whose schema is documented in
docs/report-schema.md (``"schema": "syncd.report/1"``). Live reports read the stored
violation lifecycle; an ``as_of`` report audits the stored data as of that moment without
persisting anything (its violations have no lifecycle dates).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from syncd import history, store
from syncd import load as kpi_load
from syncd.audit.texts import texts
from syncd.config import Tenant
from syncd.engine_model import Clock
from syncd.i18n import normalize_language, translator
from syncd.kpi import compute_kpis
from syncd.mapping import TenantMapper
from syncd.render import (
    RULE_TITLES,
    quarantine_note,
    rule_title,
    violation_text,
    write_failures_note,
)
from syncd.salesbook import SalesBook
from syncd.scoring import people as people_karma
from syncd.scoring.karma import (
    KarmaLine,
    client_totals,
    line_amount,
    line_weight,
    segment_karma,
)
from syncd.store import backlog
from syncd.store.report_reads import deal_labels, karma_line_stream, open_deal_count
from syncd.sync import audit_now, client_lines, make_mapper

SCHEMA = "syncd.report/1"
#: The stage of rules whose stage is the rule's own (rows stored before it was recorded).
IMPLIED_STAGES = {"won_no_followup": "won", "deferred_no_reminder": "deferred"}


def build_report(db: store.Database, tenant: Tenant, *, as_of: datetime | None = None,
                 clock: datetime | None = None, language: str | None = None) -> dict[str, Any]:
    """The report in ``language`` (default: the tenant's; docs/i18n.md)."""
    generated = clock or datetime.now(UTC)
    lang = normalize_language(language or tenant.config.language)
    with db.session() as session:
        tenant_id, open_deals, companies, mapper, last_run, counts = report_basis(
            session, tenant, as_of)
        stored = None if as_of else list(store.open_violations(session, tenant_id))
        # the title and owner of the deals with a finding, not every deal of the tenant
        deals = {} if stored is None else deal_labels(
            session, tenant_id, {v.deal_external_id for v in stored if v.deal_external_id})
        # live: the stored ledger; as of a moment: the lines as they were then (not stored)
        lines = (store.karma_line_rows(session, tenant_id, "client") if as_of is None
                 else client_lines(session, tenant, tenant_id, mapper, as_of))
        people, kpis, matrix = _people_and_kpis(session, tenant, tenant_id, mapper,
                                                as_of or generated, live=as_of is None)
        held = quarantine_section(session, tenant_id)
        backfill = stage_history_section(session, tenant_id)
        rejected = write_failures_section(session, tenant_id)
        trend = history.trend(session, tenant_id, history.local_day(
            as_of or generated, tenant.config.timezone))
    violations = (_live_violations(stored, deals) if stored is not None
                  else _what_if_violations(db, tenant, as_of))
    _mark_history_pending(violations, backfill.pop("pending_ids"))
    karma = _client_karma(lines, companies, mapper, tenant)
    if lang != tenant.config.language:  # stored explanations are in the tenant's language
        _add_summaries(violations, tenant, lang)
    return {
        **report_header(tenant, lang, as_of, generated, last_run),
        "counts": {**counts, "open_deals": open_deals},
        "violations_by_rule": dict(sorted(Counter(v["rule"] for v in violations).items())),
        "violations": violations,
        "client_karma": karma,
        "segments": _segments(karma, companies, mapper),
        "people": people,
        "kpis": kpis,
        "contact_matrix": matrix,
        "quarantine": held,
        "write_failures": rejected,
        "notes": _notes(violations, lang) + evidence_gap_notes(tenant.book, lang)
        + bad_record_notes(held, rejected, lang) + stage_history_notes(backfill, lang),
        "stage_history": backfill,
        "history": trend,
        **titles(tenant, lang, violations),
    }


class ReportBasis(NamedTuple):
    """What every report reads first (the whole and the streamed one alike)."""

    tenant_id: int
    open_deals: int
    companies: list[Any]  # the companies that existed at ``as_of``
    mapper: TenantMapper
    last_run: list[Any]
    counts: dict[str, Any]


def report_basis(session: Session, tenant: Tenant, as_of: datetime | None) -> ReportBasis:
    tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
    return ReportBasis(
        tenant_id, open_deal_count(session, tenant_id),
        [c for c in store.companies(session, tenant_id)
         if as_of is None or c.created_at is None or c.created_at <= as_of],
        make_mapper(session, tenant, tenant_id), store.last_runs(session, tenant_id, limit=1),
        store.counts(session, tenant_id))


def report_header(tenant: Tenant, language: str, as_of: datetime | None,
                  generated: datetime, last_run: list[Any]) -> dict[str, Any]:
    """The report's opening keys, in schema order (shared with ``syncd.report_stream``)."""
    return {
        "schema": SCHEMA,
        "tenant": tenant.key,
        "language": language,
        "plugin": tenant.config.plugin,
        "salesbook": tenant.book.key,
        "salesbook_title": tenant.book.title_in(language),
        "timezone": tenant.config.timezone,
        "currency": tenant.config.currency,
        "as_of": (as_of or generated).isoformat(),
        "live": as_of is None,
        "generated_at": generated.isoformat(),
        "last_sync": _run_dict(last_run[0]) if last_run else None,
    }


def titles(tenant: Tenant, language: str, violations: list[dict[str, Any]],
           ) -> dict[str, dict[str, str]]:
    """What a reader sees instead of codes: rule, stage and action titles in ``language``."""
    return titles_of_rules(tenant, language, {v["rule"] for v in violations})


def titles_of_rules(tenant: Tenant, language: str, rules: Iterable[str],
                    ) -> dict[str, dict[str, str]]:
    """``titles`` given the rules the report's violations have."""
    book = tenant.book
    t = translator(language, "report")
    stage_titles = {s.key: s.title_in(language) for s in book.stages}
    stage_titles |= {"deferred": t.gettext("Deferred"), "won": t.gettext("Won"),
                     "lost": t.gettext("Lost")}
    return {
        "rule_titles": {rule: rule_title(rule, language)
                        for rule in sorted({*RULE_TITLES, *rules})},
        "stage_titles": stage_titles,
        "action_titles": {key: a.title_in(language) for key, a in book.actions.items()},
    }


def _add_summaries(violations: list[dict[str, Any]], tenant: Tenant, language: str) -> None:
    """A report in another language than the tenant's: each violation also gets its short
    phrase in that language (the stored ``explanation`` stays as the audit wrote it)."""
    for v in violations:
        v["summary"] = violation_text(v["rule"], v["stage_key"], v["action_key"],
                                      v["details"] or {}, tenant.book, language)


# -- people karma and KPIs ---------------------------------------------------------------------
def _people_and_kpis(session: Session, tenant: Tenant, tenant_id: int, mapper: TenantMapper,
                     now: datetime, *, live: bool,
                     kpis_taken: tuple[dict[str, Any], dict[str, Any]] | None = None,
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One pass over deals and activities for the KPIs (unless ``kpis_taken``: the live
    KPIs and contact matrix as of ``now``, computed beside the pass's audit by
    ``syncd.report_ahead``); people karma from the stored ledger (live) or, for an
    ``--as-of`` report, from lines computed on the fly up to that month."""
    users = kpi_load.people(session, tenant_id)
    names = {user.user_id: user.name for user in users}
    collected: list[Any] = []
    as_of = None if live else now  # an as-of report sees every deal as it was then
    companies: dict[str, Any] = {}  # read only where the KPIs or the lines need them
    if live and kpis_taken is not None:
        kpis, matrix = kpis_taken
    else:
        companies = kpi_load.company_records(session, tenant_id, mapper)
        kpis, matrix = report_kpis(session, tenant.book, tenant_id, mapper, now, companies,
                                   names, as_of=as_of,
                                   on_deal=None if live else collected.append)
    current = Clock(mapper.tz).month(now)
    lines: Iterable[Any]
    if live:  # read as they are summed: ~6 lines per deal, never all at once
        lines = karma_line_stream(session, tenant_id, people_karma.KIND)
    else:
        violations = [v for v in kpi_load.violation_records(session, tenant_id)
                      if v.opened_at <= now]
        lines = [line for line in people_karma.employee_lines(
            collected, companies.values(), violations, tenant.book, mapper.tz)
            if line.period <= current]
    people = people_section(lines, users, tenant, kpis["period"]["months"], current)
    return people, kpis, matrix


def report_kpis(session: Session, book: SalesBook, tenant_id: int, mapper: TenantMapper,
                now: datetime, companies: dict[str, Any], names: dict[str, str], *,
                as_of: datetime | None = None, on_deal: Any = None,
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report's ``(kpis, contact_matrix)``: one pass over the stored deals, then the
    activities (as they were at ``as_of``, when given)."""
    return compute_kpis(book, mapper.tz, now,
                        kpi_load.deal_records(session, tenant_id, mapper, as_of),
                        kpi_load.activity_records(session, tenant_id, mapper, as_of),
                        companies, names, on_deal=on_deal)


def people_section(lines: Iterable[Any], users: list[people_karma.Person], tenant: Tenant,
                   months: list[str], current: str) -> dict[str, Any]:
    """``{employees, managers, ...}`` for the report's months (newest first), from one pass
    over the ledger ``lines`` (in ledger order: the sums are those of
    ``people_karma.employee_totals``, to the last bit)."""
    weights = tenant.book.karma.employee
    rate = tenant.book.karma.bonus_rate
    names = {user.user_id: user.name for user in users}
    wanted = set(months)
    signed = {criterion: people_karma.employee_weight(criterion, weights)
              for criterion in people_karma.EMPLOYEE_CRITERIA}
    totals: dict[tuple[str, str], float] = {}
    criteria: dict[tuple[str, str], dict[str, float]] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for line in lines:
        key = (line.subject_id, line.period)
        if line.subject_type == people_karma.USER:  # as employee_totals sums them
            weight = signed.get(line.criterion)
            if weight is None:
                weight = people_karma.employee_weight(line.criterion, weights)  # raises
            totals[key] = totals.get(key, 0.0) + weight * line.quantity
        if line.period in wanted:
            cell = criteria.setdefault(key, {})
            cell[line.criterion] = cell.get(line.criterion, 0.0) + people_karma.employee_amount(
                line, weights)
            counts[key] += 1
    employees = [
        {"user_id": user, "name": names.get(user, user), "period": period,
         "karma": round(total, 2), "bonus": people_karma.bonus(total, rate),
         "bonus_final": period < current,
         "criteria": {k: round(v, 2) for k, v in sorted(criteria.get((user, period), {}).items())},
         "lines": counts[(user, period)]}
        for (user, period), total in totals.items() if period in wanted
    ]
    employees.sort(key=lambda row: (row["period"], row["karma"]), reverse=True)
    teams, problems = people_karma.resolve_teams(tenant.config.mapping.teams, users)
    managers = [
        {"user_id": m.manager_id, "name": names.get(m.manager_id, m.manager_id),
         "period": m.period, "members": list(m.members), "team_size": len(m.members),
         "member_karma": [{"user_id": u, "name": names.get(u, u), "karma": round(k, 2)}
                          for u, k in m.member_karma],
         "karma": round(m.karma, 2)}
        for m in people_karma.manager_karma(totals, teams) if m.period in wanted
    ]
    managers.sort(key=lambda row: (row["period"], row["karma"]), reverse=True)
    return {
        "period": current, "months": months, "bonus_rate": rate,
        "teams_from": ("config" if tenant.config.mapping.teams else "crm") if teams else None,
        "employees": employees, "managers": managers, "problems": problems,
    }


def _violation_dict(rule: str, deal_id: str | None, deals: dict[str, Any], **extra: Any,
                    ) -> dict[str, Any]:
    deal = deals.get(deal_id) if deal_id else None
    return {
        "deal_id": deal_id,
        "deal_title": deal.title if deal else None,
        "owner_id": deal.owner_id if deal else None,
        "rule": rule,
        **extra,
    }


def _live_violations(rows: list[Any], deals: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        _violation_dict(
            v.rule, v.deal_external_id, deals, severity=v.severity,
            stage_key=v.stage_key or IMPLIED_STAGES.get(v.rule),
            action_key=v.action_key, crm_stage=v.crm_stage, explanation=v.explanation,
            details=v.details or {}, opened_at=_iso(v.opened_at),
            last_seen_at=_iso(v.last_seen_at),
        )
        for v in sorted(rows, key=lambda r: (r.rule, r.deal_external_id or "", r.stage_key or "",
                                              r.action_key or ""))
    ]


def _what_if_violations(db: store.Database, tenant: Tenant,
                        as_of: datetime | None) -> list[dict[str, Any]]:
    """An ``--as-of`` report's findings: the stored data audited as of that moment (the
    stored violations are the current ones, so this is the one report that audits)."""
    assert as_of is not None
    findings = audit_now(db, tenant, as_of)
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        deals = deal_labels(session, tenant_id, {f.deal_id for f in findings if f.deal_id})
    return [
        _violation_dict(
            f.rule, f.deal_id, deals, severity=f.severity, stage_key=f.stage_key,
            action_key=f.action_key, crm_stage=f.crm_stage, explanation=f.explanation,
            details=f.details, opened_at=None, last_seen_at=None,
        )
        for f in sorted(findings, key=lambda f: (f.rule, f.deal_id or "", f.stage_key or "",
                                                  f.action_key or ""))
    ]


def _client_karma(lines: list[Any], companies: list[Any], mapper: TenantMapper,
                  tenant: Tenant) -> list[dict[str, Any]]:
    """One row per company, every company included: one with no ledger line has karma 0
    (shown as 0, not left out), most karma first."""
    weights = tenant.book.karma.client
    karma_lines = [KarmaLine(subject_type=r.subject_type, subject_id=r.subject_id,
                             criterion=r.criterion, quantity=r.quantity,
                             source_type=r.source_type, source_id=r.source_id,
                             period=r.period or "") for r in lines]
    totals = client_totals(karma_lines, weights)
    by_company: dict[str, list[dict[str, Any]]] = {}
    for line in karma_lines:
        by_company.setdefault(line.subject_id, []).append({
            "criterion": line.criterion, "quantity": line.quantity,
            "amount": round(line_amount(line, weights), 4),
            "source_type": line.source_type, "source_id": line.source_id,
        })
    names = {c.external_id: mapper.karma_company(c) for c in companies}
    everyone = {**dict.fromkeys(names, 0.0), **totals}
    rows = []
    for company_id, total in sorted(everyone.items(), key=lambda x: (-x[1], x[0])):
        company = names.get(company_id)
        rows.append({
            "company_id": company_id,
            "company_name": company.name if company else None,
            "segment": company.segment if company else None,
            "karma": round(total, 2),
            "lines": by_company.get(company_id, []),
        })
    return rows


def _segments(karma: list[dict[str, Any]], companies: list[Any],
              mapper: TenantMapper) -> list[dict[str, Any]]:
    totals = {row["company_id"]: row["karma"] for row in karma}
    result = segment_karma(totals, [mapper.karma_company(c) for c in companies])
    return [{"segment": s.segment, "mean_karma": round(s.mean, 2), "companies": s.count}
            for s in result]


# -- stage history still being backfilled (syncd.store.backlog) -------------------------------
def stage_history_section(session: Session, tenant_id: int, *,
                          with_pending: bool = True) -> dict[str, Any]:
    """Coverage of the stage-history backfill: deals with their history of those owing it
    (``pending_ids``: the deals still waiting, taken out by ``build_report``; left out
    when not ``with_pending``: the streamed report joins the backlog instead)."""
    done, owed = backlog.coverage(session, tenant_id)
    section: dict[str, Any] = {"with_history": done, "owed": owed, "pending": owed - done,
                               "coverage": round(done / owed, 4) if owed else None}
    if with_pending:
        section["pending_ids"] = backlog.pending(session, tenant_id) if done < owed else set()
    return section


def _mark_history_pending(violations: list[dict[str, Any]], pending: set[str]) -> None:
    """A finding built without history because the deal's history is still to be read says
    so (``details.history: "pending"``), instead of claiming the CRM has none."""
    for violation in violations:
        details = violation.get("details")
        if violation.get("deal_id") in pending and isinstance(details, dict) and \
                details.get("history") == "derived":
            violation["details"] = {**details, "history": "pending"}


def stage_history_notes(section: dict[str, Any], language: str) -> list[str]:
    if not section["pending"]:
        return []
    return [translator(language, "report").gettext(
        "Stage history is still being read for {pending} deal(s) ({done} of {owed} done, "
        "within the daily API budget): until it arrives, their findings use the current "
        "stage only.").format(pending=section["pending"], done=section["with_history"],
                              owed=section["owed"])]


def _notes(violations: list[dict[str, Any]], language: str = "en") -> list[str]:
    derived = {v["deal_id"] for v in violations
               if (v.get("details") or {}).get("history") == "derived"}
    if not derived:
        return []
    return [texts(language).say("note.derived_history", count=len(derived))]


def evidence_gap_notes(book: SalesBook, language: str) -> list[str]:
    """What the audit cannot see because the CRM lacks an evidence field (mapped to null)."""
    t = translator(language, "report")
    notes = []
    for gap in book.evidence_gaps:
        values = {"action": gap.action.title_in(language), "field": gap.field}
        if gap.audited:
            notes.append(t.gettext(
                "Action «{action}» is proven only by activities: the CRM has no field for "
                "{field} (mapping.fields.deal.{field}: null).").format(**values))
        else:
            notes.append(t.gettext(
                "Action «{action}» is not audited: the CRM has no field for {field}, the only "
                "evidence the Sales Book accepts for it (mapping.fields.deal.{field}: null)."
            ).format(**values))
    return notes


# -- records and writes that did not make it (docs/operations.md "Bad records") ---------------
def quarantine_section(session: Session, tenant_id: int) -> list[dict[str, Any]]:
    """The tenant's quarantined records: what could not be read or stored, and why."""
    return [{"stream": row.stream, "external_id": row.external_id, "stage": row.stage,
             "problem": row.problem, "first_seen_at": _iso(row.first_seen_at),
             "last_seen_at": _iso(row.last_seen_at), "attempts": row.attempts,
             "payload": row.payload}
            for row in store.quarantined(session, tenant_id)]


def write_failures_section(session: Session, tenant_id: int) -> list[dict[str, Any]]:
    """Writes and tasks the CRM rejected, waiting for their next try (with backoff)."""
    return [{"kind": row.kind, "entity": row.entity, "external_id": row.external_id,
             "field": row.field, "desired_value": row.desired_value, "error": row.error,
             "attempts": row.attempts, "failed_at": _iso(row.updated_at),
             "next_attempt_at": _iso(row.next_attempt_at)}
            for row in store.failed_rows(session, tenant_id)]


def bad_record_notes(held: list[dict[str, Any]], rejected: list[dict[str, Any]],
                     language: str) -> list[str]:
    notes = []
    if held:
        notes.append(quarantine_note(len(held), language))
    if rejected:
        notes.append(write_failures_note(len(rejected), language))
    return notes


def _run_dict(run: Any) -> dict[str, Any]:
    return {"started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at),
            "status": run.status, "full": run.full, "error": run.error}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def write_report(report: dict[str, Any], directory: Path) -> Path:
    """Write the JSON report atomically to ``directory/<tenant>.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{report['tenant']}.json"
    temporary = path.with_suffix(".json.tmp")
    with temporary.open("w", encoding="utf-8") as file:  # in pieces: no copy of it all
        json.dump(report, file, ensure_ascii=False, indent=2)
    temporary.replace(path)
    return path


# -- explanations (syncd explain) ---------------------------------------------------------------
def explain_company(db: store.Database, tenant: Tenant, company_id: str) -> dict[str, Any]:
    """Why a company has its client karma: every ledger line, weighted with today's book."""
    weights = tenant.book.karma.client
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        rows = store.karma_line_rows(session, tenant_id, "client", company_id)
        found = store.companies(session, tenant_id, [company_id])
    lines: list[dict[str, Any]] = [
        {"criterion": r.criterion, "quantity": r.quantity, "weight": _client_weight(r, weights),
         "amount": round(_client_weight(r, weights) * r.quantity, 4),
         "source_type": r.source_type, "source_id": r.source_id} for r in rows]
    return {"tenant": tenant.key, "company_id": company_id,
            "company": found[0].name if found else None,
            "karma": round(sum(line["amount"] for line in lines), 2), "lines": lines}


def _client_weight(row: Any, weights: Any) -> float:
    return line_weight(KarmaLine(row.subject_type, row.subject_id, row.criterion, row.quantity,
                                 row.source_type, row.source_id), weights)


def explain_user(db: store.Database, tenant: Tenant, user_id: str,
                 period: str | None = None) -> dict[str, Any]:
    """Why a user has their karma (per month), their bonus, and their team if a manager."""
    weights = tenant.book.karma.employee
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        users = kpi_load.people(session, tenant_id)
        rows = [r for r in store.karma_line_rows(session, tenant_id, people_karma.KIND)
                if period is None or r.period == period]
    names = {u.user_id: u.name for u in users}
    totals = people_karma.employee_totals(rows, weights)
    periods: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.subject_id != user_id:
            continue
        entry = periods.setdefault(r.period, {"period": r.period, "lines": []})
        weight = people_karma.employee_weight(r.criterion, weights)
        entry["lines"].append({"criterion": r.criterion, "quantity": r.quantity,
                               "weight": weight, "amount": round(weight * r.quantity, 4),
                               "source_type": r.source_type, "source_id": r.source_id})
    for key, entry in periods.items():
        entry["karma"] = round(totals.get((user_id, key), 0.0), 2)
        entry["bonus"] = people_karma.bonus(totals.get((user_id, key), 0.0),
                                            tenant.book.karma.bonus_rate)
    teams, _ = people_karma.resolve_teams(tenant.config.mapping.teams, users)
    managed = [
        {"period": m.period, "karma": round(m.karma, 2),
         "members": [{"user_id": u, "name": names.get(u, u), "karma": round(k, 2)}
                     for u, k in m.member_karma]}
        for m in people_karma.manager_karma(totals, {user_id: teams[user_id]})
    ] if user_id in teams else []
    return {"tenant": tenant.key, "user_id": user_id, "name": names.get(user_id),
            "bonus_rate": tenant.book.karma.bonus_rate,
            "periods": [periods[k] for k in sorted(periods, reverse=True)],
            "team": teams.get(user_id, []), "manager_karma": managed}
