"""Short, human-readable violation texts in the tenant's language (for CRM fields, tasks).

The text must be stable for the same violations (sorted, no timestamps that change every
run), or every pass would rewrite every deal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncd.audit.registry import custom_title
from syncd.salesbook import SalesBook

RULE_ORDER = (
    "missing_action", "skipped_stage", "backward_move", "stalled", "inactive", "no_next_step",
    "bad_loss_reason", "no_lead_source", "no_contact", "deferred_no_reminder",
    "won_no_followup", "unmapped_stage",
)

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "missing_action": "missing “{action}” at {stage}",
        "skipped_stage": "skipped stage {stage}",
        "backward_move": "moved back to {stage}",
        "stalled": "stalled in {stage} (limit {max_days} d)",
        "inactive": "no touch for over {limit} d",
        "no_next_step": "no next step planned",
        "bad_loss_reason": "loss reason not valid: “{reason}”",
        "bad_loss_reason.empty": "no loss reason",
        "bad_loss_reason.not_in_catalogue": "loss reason not in the catalogue: “{reason}”",
        "bad_loss_reason.not_allowed_at_stage": "loss reason “{reason}” not allowed at {stage}",
        "no_lead_source": "lead source missing",
        "no_contact": "no contact person",
        "deferred_no_reminder": "deferred, no reminder within {limit} d",
        "won_no_followup": "won, no follow-up created",
        "unmapped_stage": "CRM stage not mapped",
        "header": "Sales Book: {count} issue(s)",
        "task": "Fix: {text}",
    },
    "ru": {
        "missing_action": "не выполнено «{action}» на этапе «{stage}»",
        "skipped_stage": "пропущен этап «{stage}»",
        "backward_move": "возврат на этап «{stage}»",
        "stalled": "завис на этапе «{stage}» (лимит {max_days} дн.)",
        "inactive": "нет касаний больше {limit} дн.",
        "no_next_step": "нет запланированного следующего шага",
        "bad_loss_reason": "недопустимая причина отказа: «{reason}»",
        "bad_loss_reason.empty": "не указана причина отказа",
        "bad_loss_reason.not_in_catalogue": "причины отказа нет в справочнике: «{reason}»",
        "bad_loss_reason.not_allowed_at_stage": "причина отказа «{reason}» недопустима на "
                                                "этапе «{stage}»",
        "no_lead_source": "не указан источник лида",
        "no_contact": "нет контактного лица",
        "deferred_no_reminder": "отложена, нет напоминания за {limit} дн.",
        "won_no_followup": "выиграна, нет последующей задачи",
        "unmapped_stage": "этап CRM не сопоставлен",
        "header": "Книга продаж: нарушений — {count}",
        "task": "Исправить: {text}",
    },
}


def _rank(rule: str) -> int:
    return RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER)


def violation_text(rule: str, stage_key: str | None, action_key: str | None,
                   details: dict[str, Any], book: SalesBook, language: str) -> str:
    """One violation as a short phrase."""
    texts = TEXTS.get(language, TEXTS["en"])
    stage = book.stage(stage_key) if stage_key and book.has_stage(stage_key) else None
    action = book.actions.get(action_key) if action_key else None
    values = {
        "stage": stage.title if stage else (stage_key or ""),
        "max_days": stage.max_days if stage else details.get("max_days", ""),
        "action": action.title if action else (action_key or ""),
        "reason": (details.get("reason_raw") or details.get("reason_key")
                   or details.get("reason") or details.get("lost_reason") or "—"),
        "limit": details.get("limit_days") or details.get("limit") or _limit(rule, book),
    }
    if rule not in texts:  # a plugin's rule: its own title in the language
        return custom_title(rule, language) or rule
    variant = f"{rule}.{details['problem']}" if details.get("problem") else rule
    return texts.get(variant, texts[rule]).format(**values)


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
    texts = TEXTS.get(language, TEXTS["en"])
    phrases = [violation_text(v.rule, v.stage_key, v.action_key, v.details or {}, book,
                              language) for v in rows]
    text = texts["header"].format(count=len(rows)) + ": " + "; ".join(phrases)
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def _stage_rank(book: SalesBook, key: str | None) -> int:
    return book.stage_index(key) if key and book.has_stage(key) else -1


def task_subject(rule: str, stage_key: str | None, action_key: str | None,
                 details: dict[str, Any], book: SalesBook, language: str) -> str:
    texts = TEXTS.get(language, TEXTS["en"])
    text = violation_text(rule, stage_key, action_key, details, book, language)
    return texts["task"].format(text=text)[:250]


# -- records and writes that did not make it (report notes) ---------------------------------
BAD_RECORD_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "quarantine": "{count} record(s) could not be read or stored and are held in "
                      "quarantine (see \"quarantine\"); they are retried every pass.",
        "write_failures": "{count} CRM write(s) or task(s) were rejected (see "
                          "\"write_failures\"); they are retried with backoff.",
    },
    "ru": {
        "quarantine": "Записей, которые не удалось прочитать или сохранить: {count}; они "
                      "в карантине (см. «quarantine») и повторяются при каждой синхронизации.",
        "write_failures": "Записей в CRM или задач, отклонённых CRM: {count} (см. "
                          "«write_failures»); повтор — позже, пауза растёт после каждой ошибки.",
    },
}


def quarantine_note(count: int, language: str) -> str:
    texts = BAD_RECORD_TEXTS.get(language, BAD_RECORD_TEXTS["en"])
    return texts["quarantine"].format(count=count)


def write_failures_note(count: int, language: str) -> str:
    texts = BAD_RECORD_TEXTS.get(language, BAD_RECORD_TEXTS["en"])
    return texts["write_failures"].format(count=count)
