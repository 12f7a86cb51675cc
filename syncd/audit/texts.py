# ruff: noqa: RUF001  (Russian texts: Cyrillic letters that look Latin are meant)
"""The audit's explanations in every language a tenant can choose (``language: en|ru``).

One template per message key; a rule picks its key (``missing_action.won``, ...) and fills
the named values. Every key exists in every language (a test checks it), so a finding is
never half-translated. Stage and action titles come from the Sales Book as written.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"

#: Message key -> template, per language.
EXPLANATIONS: dict[str, dict[str, str]] = {
    "en": {
        "missing_action.won": "Deal was won at stage '{stage}' on {day} without the required "
                              "action '{action}' ({gap}).",
        "missing_action.left": "Deal left stage '{stage}' for '{to_stage}' on {day} without the "
                               "required action '{action}' ({gap}).",
        "gap.kinds": "no done {kinds} by then",
        "gap.field": "the {field} field is empty",
        "gap.and": " and ",
        "skipped_stage": "Deal moved from '{from_stage}' to '{to_stage}' on {day}, skipping "
                         "the required stage '{stage}'.",
        "backward_move": "Deal moved back from '{from_stage}' to '{to_stage}' on {day}{more}.",
        "backward_move.more": ", and {count} more time(s) since",
        "stalled": "Deal has been in stage '{stage}' for {days} days since {day}, over the "
                   "stage's limit of {limit} days.",
        "inactive": "Deal has had no done activity, note or stage change for {days} days, "
                    "since {day} (limit {limit} days).",
        "no_next_step": "Open deal in stage '{stage}' has no planned activity due today "
                        "({today}) or later.",
        "bad_loss_reason.empty": "Deal was lost on {day} with no loss reason.",
        "bad_loss_reason.not_in_catalogue": "Deal was lost on {day} with the reason "
                                            "'{reason}', which is not in the loss-reason "
                                            "catalogue.",
        "bad_loss_reason.not_allowed_at_stage": "Deal was lost on {day} at stage '{stage}' "
                                                "with the reason '{reason}', which is allowed "
                                                "only at {allowed}.",
        "deferred_no_reminder": "Deferred deal has no {kinds} done in the last {days} days or "
                                "planned for the next {days} days.",
        "won_no_followup": "Deal was won on {day}, {days} days ago, and no follow-up activity "
                           "({kinds}) has been created for it or its company since (limit "
                           "{limit} days).",
        "no_lead_source": "Deal has no lead source recorded (the lead_source field is empty).",
        "no_contact": "Deal has no contact person linked to it.",
        "unmapped_stage": "CRM stage '{crm_stage}' is not mapped to a stage of the Sales Book; "
                          "its {count} deal(s) were skipped by the stage rules.",
        "word.or": "or",
        "word.unknown_date": "an unknown date",
        "word.unknown_stage": "(unknown)",
        "word.deferred": "Deferred",
        "word.won": "Won",
        "note.derived_history": "{count} deal(s) had no stage history in the CRM: their "
                                "history is just the current stage since its last change, so "
                                "stage-order findings may be incomplete.",
    },
    "ru": {
        "missing_action.won": "Сделка выиграна на этапе «{stage}» {day} без обязательного "
                              "действия «{action}» ({gap}).",
        "missing_action.left": "Сделка перешла с этапа «{stage}» на «{to_stage}» {day} без "
                               "обязательного действия «{action}» ({gap}).",
        "gap.kinds": "к тому времени нет выполненного действия: {kinds}",
        "gap.field": "поле {field} не заполнено",
        "gap.and": " и ",
        "skipped_stage": "Сделка перешла с этапа «{from_stage}» на «{to_stage}» {day}, "
                         "пропустив обязательный этап «{stage}».",
        "backward_move": "Сделка вернулась с этапа «{from_stage}» на «{to_stage}» {day}{more}.",
        "backward_move.more": ", и ещё {count} раз(а) после этого",
        "stalled": "Сделка находится на этапе «{stage}» {days} дн. с {day}, дольше лимита "
                   "этапа в {limit} дн.",
        "inactive": "По сделке нет выполненных действий, заметок или смены этапа {days} дн., "
                    "с {day} (лимит {limit} дн.).",
        "no_next_step": "У открытой сделки на этапе «{stage}» нет запланированного действия "
                        "на сегодня ({today}) или позже.",
        "bad_loss_reason.empty": "Сделка проиграна {day} без причины отказа.",
        "bad_loss_reason.not_in_catalogue": "Сделка проиграна {day} с причиной «{reason}», "
                                            "которой нет в справочнике причин отказа.",
        "bad_loss_reason.not_allowed_at_stage": "Сделка проиграна {day} на этапе «{stage}» с "
                                                "причиной «{reason}», допустимой только на "
                                                "этапах: {allowed}.",
        "deferred_no_reminder": "У отложенной сделки нет действия ({kinds}), выполненного за "
                                "последние {days} дн. или запланированного на следующие "
                                "{days} дн.",
        "won_no_followup": "Сделка выиграна {day}, {days} дн. назад, и с тех пор для неё или "
                           "её компании не создано последующее действие ({kinds}) (лимит "
                           "{limit} дн.).",
        "no_lead_source": "У сделки не указан источник лида (поле lead_source пустое).",
        "no_contact": "К сделке не привязано контактное лицо.",
        "unmapped_stage": "Этап CRM «{crm_stage}» не сопоставлен с этапом Книги продаж; его "
                          "сделки ({count}) пропущены правилами этапов.",
        "word.or": "или",
        "word.unknown_date": "в неизвестную дату",
        "word.unknown_stage": "(неизвестно)",
        "word.deferred": "Отложена",
        "word.won": "Выиграна",
        "note.derived_history": "Сделок без истории этапов в CRM: {count}. Их история — "
                                "только текущий этап с его последней смены, поэтому нарушения "
                                "порядка этапов могут быть неполными.",
    },
}

#: The message keys each rule code can produce (a test checks both languages have them).
RULE_MESSAGES: dict[str, tuple[str, ...]] = {
    "missing_action": ("missing_action.won", "missing_action.left", "gap.kinds",
                       "gap.field", "gap.and"),
    "skipped_stage": ("skipped_stage",),
    "backward_move": ("backward_move", "backward_move.more"),
    "stalled": ("stalled",),
    "inactive": ("inactive",),
    "no_next_step": ("no_next_step",),
    "bad_loss_reason": ("bad_loss_reason.empty", "bad_loss_reason.not_in_catalogue",
                        "bad_loss_reason.not_allowed_at_stage"),
    "no_lead_source": ("no_lead_source",),
    "no_contact": ("no_contact",),
    "deferred_no_reminder": ("deferred_no_reminder",),
    "won_no_followup": ("won_no_followup",),
    "unmapped_stage": ("unmapped_stage",),
}


class Texts:
    """The explanations of one language (an unknown language falls back to English)."""

    __slots__ = ("_templates", "language")

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language if language in EXPLANATIONS else DEFAULT_LANGUAGE
        self._templates = EXPLANATIONS[self.language]

    def say(self, key: str, **values: Any) -> str:
        return self._templates[key].format(**values)

    def or_list(self, words: Iterable[str]) -> str:
        """``a``, ``a or b``, ``a, b or c`` (``или`` in Russian)."""
        items = list(words)
        if len(items) <= 1:
            return "".join(items)
        return f"{', '.join(items[:-1])} {self._templates['word.or']} {items[-1]}"


_cache: dict[str, Texts] = {}


def texts(language: str = DEFAULT_LANGUAGE) -> Texts:
    found = _cache.get(language)
    if found is None:
        found = _cache[language] = Texts(language)
    return found
