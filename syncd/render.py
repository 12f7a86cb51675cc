"""Short, human-readable violation texts in the tenant's language (for CRM fields, tasks).

The text must be stable for the same violations (sorted, no timestamps that change every
run), or every pass would rewrite every deal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from syncd.audit.registry import custom_title
from syncd.i18n import N_, translator
from syncd.salesbook import SalesBook

RULE_ORDER = (
    "missing_action", "skipped_stage", "backward_move", "stalled", "inactive", "no_next_step",
    "bad_loss_reason", "no_lead_source", "no_contact", "deferred_no_reminder",
    "won_no_followup", "unmapped_stage",
)

#: What a person reads instead of a rule code (report tables, the HTML report, the dashboard).
RULE_TITLES: dict[str, str] = {
    "missing_action": N_("Mandatory action missing"),
    "skipped_stage": N_("Stage skipped"),
    "backward_move": N_("Moved back a stage"),
    "stalled": N_("Stalled in a stage"),
    "inactive": N_("No touch for too long"),
    "no_next_step": N_("No next step planned"),
    "bad_loss_reason": N_("Loss reason missing or not allowed"),
    "no_lead_source": N_("Lead source missing"),
    "no_contact": N_("No contact person"),
    "deferred_no_reminder": N_("Deferred deal without a reminder"),
    "won_no_followup": N_("Won deal without a follow-up"),
    "unmapped_stage": N_("CRM stage not mapped to the Sales Book"),
}

#: One violation as a short phrase (CRM fields, tasks): rule or ``rule.problem`` -> text.
PHRASES: dict[str, str] = {
    "missing_action": N_("missing “{action}” at {stage}"),
    "skipped_stage": N_("skipped stage {stage}"),
    "backward_move": N_("moved back to {stage}"),
    "stalled": N_("stalled in {stage} (limit {max_days} d)"),
    "inactive": N_("no touch for over {limit} d"),
    "no_next_step": N_("no next step planned"),
    "bad_loss_reason": N_("loss reason not valid: “{reason}”"),
    "bad_loss_reason.empty": N_("no loss reason"),
    "bad_loss_reason.not_in_catalogue": N_("loss reason not in the catalogue: “{reason}”"),
    "bad_loss_reason.not_allowed_at_stage": N_("loss reason “{reason}” not allowed at {stage}"),
    "no_lead_source": N_("lead source missing"),
    "no_contact": N_("no contact person"),
    "deferred_no_reminder": N_("deferred, no reminder within {limit} d"),
    "won_no_followup": N_("won, no follow-up created"),
    "unmapped_stage": N_("CRM stage not mapped"),
}
HEADER = N_("Sales Book: {count} issue(s)")
TASK = N_("Fix: {text}")
DOMAIN = "crm"


def rule_title(rule: str, language: str) -> str:
    """A rule's title in a language (a plugin's rule: its own title; else the code)."""
    if rule in RULE_TITLES:
        return translator(language, DOMAIN).gettext(RULE_TITLES[rule])
    return custom_title(rule, language) or rule


def _rank(rule: str) -> int:
    return RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER)


def violation_text(rule: str, stage_key: str | None, action_key: str | None,
                   details: dict[str, Any], book: SalesBook, language: str) -> str:
    """One violation as a short phrase."""
    t = translator(language, DOMAIN)
    stage = book.stage(stage_key) if stage_key and book.has_stage(stage_key) else None
    action = book.actions.get(action_key) if action_key else None
    values = {
        "stage": stage.title_in(language) if stage else (stage_key or ""),
        "max_days": stage.max_days if stage else details.get("max_days", ""),
        "action": action.title_in(language) if action else (action_key or ""),
        "reason": (details.get("reason_raw") or details.get("reason_key")
                   or details.get("reason") or details.get("lost_reason") or "—"),
        "limit": details.get("limit_days") or details.get("limit") or _limit(rule, book),
    }
    if rule not in PHRASES:  # a plugin's rule: its own title in the language
        return custom_title(rule, language) or rule
    variant = f"{rule}.{details['problem']}" if details.get("problem") else rule
    return t.gettext(PHRASES.get(variant, PHRASES[rule])).format(**values)


def _limit(rule: str, book: SalesBook) -> int:
    if rule == "inactive":
        return book.inactive_days
    if rule == "deferred_no_reminder":
        return book.passive.deferred.remind_every_days
    return 0


def deal_summary(violations: Iterable[Any], book: SalesBook, language: str,
                 max_length: int = 1000) -> str:
    """All open violations of one deal as one stable text ('' when there are none)."""
    rows = sorted(violations, key=lambda v: (_rank(v.rule), _stage_rank(book, v.stage_key),
                                             v.action_key or ""))
    if not rows:
        return ""
    t = translator(language, DOMAIN)
    phrases = [violation_text(v.rule, v.stage_key, v.action_key, v.details or {}, book,
                              language) for v in rows]
    text = t.gettext(HEADER).format(count=len(rows)) + ": " + "; ".join(phrases)
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def _stage_rank(book: SalesBook, key: str | None) -> int:
    return book.stage_index(key) if key and book.has_stage(key) else -1


def task_subject(rule: str, stage_key: str | None, action_key: str | None,
                 details: dict[str, Any], book: SalesBook, language: str) -> str:
    text = violation_text(rule, stage_key, action_key, details, book, language)
    return translator(language, DOMAIN).gettext(TASK).format(text=text)[:250]


# -- records and writes that did not make it (report notes) ---------------------------------
QUARANTINE_NOTE = N_("{count} record(s) could not be read or stored and are held in "
                     "quarantine (see \"quarantine\"); they are retried every pass.")
WRITE_FAILURES_NOTE = N_("{count} CRM write(s) or task(s) were rejected (see "
                         "\"write_failures\"); they are retried with backoff.")


def quarantine_note(count: int, language: str) -> str:
    return translator(language, DOMAIN).gettext(QUARANTINE_NOTE).format(count=count)


def write_failures_note(count: int, language: str) -> str:
    return translator(language, DOMAIN).gettext(WRITE_FAILURES_NOTE).format(count=count)


#: The ``details`` keys (docs/rules.md) that date when a violation's problem began: in a
#: stage since, no touch since, deferred since, left a stage, lost, won, moved.
SINCE_KEYS = ("entered_at", "last_touch_at", "deferred_since", "left_at", "lost_at",
              "won_at", "at")


def opened_at(violation: Mapping[str, Any]) -> datetime | None:
    """When a pass first saw a report violation (its ``opened_at``)."""
    value = violation.get("opened_at")
    return datetime.fromisoformat(value) if value else None


def problem_since(violation: Mapping[str, Any]) -> datetime | None:
    """When the problem began: the rule's own date when it has one (a deal stalled since it
    entered the stage, inactive since its last touch), else when a pass first saw it."""
    found = [opened_at(violation)]
    details = violation.get("details") or {}
    for key in SINCE_KEYS:
        value = details.get(key)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            found.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    known = [moment for moment in found if moment is not None]
    return min(known) if known else None
