"""The audit's explanations in every language a tenant can choose (``language: en|ru``).

One English template per message key (a gettext message id of the "audit" domain, translated
in syncd/locale/ru/LC_MESSAGES/audit.po); a rule picks its key (``missing_action.won``, ...)
and fills the named values. tests/test_i18n.py checks every id has its Russian, so a finding
is never half-translated. Stage and action titles come from the Sales Book as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from syncd.i18n import N_, translator

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
DOMAIN = "audit"

#: Message key -> English template (the message id).
MESSAGES: dict[str, str] = {
    "missing_action.won": N_("Deal was won at stage '{stage}' on {day} without the required "
                             "action '{action}' ({gap})."),
    "missing_action.left": N_("Deal left stage '{stage}' for '{to_stage}' on {day} without the "
                              "required action '{action}' ({gap})."),
    "gap.kinds": N_("no done {kinds} by then"),
    "gap.field": N_("the {field} field is empty"),
    "gap.and": N_(" and "),
    "skipped_stage": N_("Deal moved from '{from_stage}' to '{to_stage}' on {day}, skipping the "
                        "required stage '{stage}'."),
    "backward_move": N_("Deal moved back from '{from_stage}' to '{to_stage}' on {day}{more}."),
    "backward_move.more": N_(", and {count} more time(s) since"),
    "stalled": N_("Deal has been in stage '{stage}' for {days} days since {day}, over the "
                  "stage's limit of {limit} days."),
    "inactive": N_("Deal has had no done activity, note or stage change for {days} days, since "
                   "{day} (limit {limit} days)."),
    "no_next_step": N_("Open deal in stage '{stage}' has no planned activity due today ({today}) "
                       "or later."),
    "bad_loss_reason.empty": N_("Deal was lost on {day} with no loss reason."),
    "bad_loss_reason.not_in_catalogue": N_("Deal was lost on {day} with the reason '{reason}', "
                                           "which is not in the loss-reason catalogue."),
    "bad_loss_reason.not_allowed_at_stage": N_("Deal was lost on {day} at stage '{stage}' with "
                                               "the reason '{reason}', which is allowed only at "
                                               "{allowed}."),
    "deferred_no_reminder": N_("Deferred deal has no {kinds} done in the last {days} days or "
                               "planned for the next {days} days."),
    "won_no_followup": N_("Deal was won on {day}, {days} days ago, and no follow-up activity "
                          "({kinds}) has been created for it or its company since (limit {limit} "
                          "days)."),
    "no_lead_source": N_("Deal has no lead source recorded (the lead_source field is empty)."),
    "no_contact": N_("Deal has no contact person linked to it."),
    "unmapped_stage": N_("CRM stage '{crm_stage}' is not mapped to a stage of the Sales Book; "
                         "its {count} deal(s) were skipped by the stage rules."),
    "word.or": N_("or"),
    "word.unknown_date": N_("an unknown date"),
    "word.unknown_stage": N_("(unknown)"),
    "word.deferred": N_("Deferred"),
    "word.won": N_("Won"),
    "note.derived_history": N_("{count} deal(s) had no stage history in the CRM: their history "
                               "is just the current stage since its last change, so stage-order "
                               "findings may be incomplete."),
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


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")

#: Canonical activity kinds and deal fields as a reader names them (explanations list them).
KIND_NAMES: dict[str, str] = {
    "call": N_("call"), "meeting": N_("meeting"), "email": N_("email"), "task": N_("task"),
    "note": N_("note"),
}
FIELD_NAMES: dict[str, str] = {
    "lead_source": N_("lead source"), "estimate_link": N_("estimate link"),
    "contract_number": N_("contract number"), "invoice_number": N_("invoice number"),
}


class Texts:
    """The explanations of one language (an unknown language falls back to English)."""

    __slots__ = ("_fields", "_kinds", "_templates", "language")

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        t = translator(self.language, DOMAIN)
        self._templates = {key: t.gettext(text) for key, text in MESSAGES.items()}
        self._kinds = {key: t.gettext(text) for key, text in KIND_NAMES.items()}
        self._fields = {key: t.gettext(text) for key, text in FIELD_NAMES.items()}

    def say(self, key: str, **values: Any) -> str:
        """The message ``key`` filled with ``values`` (a canonical ``field`` by its name;
        ISO days as the reader writes them: 05.02.2026 in Russian)."""
        if "field" in values:
            values["field"] = self._fields.get(values["field"], values["field"])
        if self.language == "ru":
            for name in ("day", "today"):
                day = values.get(name)
                if isinstance(day, str) and _ISO_DAY.fullmatch(day):
                    values[name] = f"{day[8:10]}.{day[5:7]}.{day[:4]}"
        return self._templates[key].format(**values)

    def or_list(self, words: Iterable[str]) -> str:
        """``a``, ``a or b``, ``a, b or c`` (``или`` in Russian); canonical activity kinds by
        their names (``звонок или встреча``)."""
        items = [self._kinds.get(word, word) for word in words]
        if len(items) <= 1:
            return "".join(items)
        return f"{', '.join(items[:-1])} {self._templates['word.or']} {items[-1]}"


_cache: dict[str, Texts] = {}


def texts(language: str = DEFAULT_LANGUAGE) -> Texts:
    found = _cache.get(language)
    if found is None:
        found = _cache[language] = Texts(language)
    return found
