"""Rules added by plugins (``syncd_register_rules``): what one is, and how it runs.

A custom rule sees the same :class:`~syncd.audit.facts.DealFacts` the built-in rules see
(already as of "now") and returns :class:`Hit` objects; the engine turns each hit into a
:class:`~syncd.audit.facts.Finding` carrying the rule's code, so custom findings flow
through the violation lifecycle, the report, the CRM texts and karma like built-in ones.
Custom rules run after the built-in ones, on every audited deal (mapped stage or not), and
are never suppressed by a snooze.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from syncd.audit.facts import DealFacts, Finding, Severity
from syncd.audit.rules import RULE_CODES
from syncd.errors import PluginError
from syncd.salesbook import SalesBook

LANGUAGES = ("en", "ru")
_CODE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a custom check may know besides the deal: "now" and the tenant's book."""

    now: datetime
    today: date  # in the tenant's timezone
    tz: ZoneInfo
    book: SalesBook
    language: str = "en"  # the tenant's: the language of the findings' explanations


@dataclass(frozen=True, slots=True)
class Hit:
    """One violation a custom check found on a deal. ``details`` must be JSON-able; its
    keys (plus ``deal_id`` and ``deal_title``) fill the rule's explanation template."""

    details: dict[str, Any] = field(default_factory=dict)
    stage_key: str | None = None
    action_key: str | None = None


Check = Callable[[DealFacts, RuleContext], Iterable[Hit]]


@dataclass(frozen=True, slots=True)
class CustomRule:
    """A rule a plugin registers.

    :param code: the rule code in reports and the store (``[a-z][a-z0-9_]*``), unique.
    :param title: ``{"en": ..., "ru": ...}``: the short phrase in CRM fields and tasks.
    :param explanation: ``{"en": ..., "ru": ...}``: a ``str.format`` template over the
        hit's details and ``deal_id``/``deal_title``; the one in the tenant's language is
        the finding's explanation.
    :param check: ``check(facts, context) -> iterable of Hit``.
    :param severity: ``"error"`` or ``"warning"``.
    :param karma_weight: how many ``violation_penalty`` one finding costs its owner
        (a Sales Book's ``karma.employee.rule_weights`` overrides it).
    :param enabled_by_default: on for tenants whose file does not say (``rules:``).
    """

    code: str
    title: Mapping[str, str]
    explanation: Mapping[str, str]
    check: Check
    severity: Severity = "warning"
    karma_weight: float = 1.0
    enabled_by_default: bool = True

    def problems(self) -> list[str]:
        found = []
        if not _CODE.match(self.code):
            found.append("code must match [a-z][a-z0-9_]{1,62}")
        for name, texts in (("title", self.title), ("explanation", self.explanation)):
            missing = [lang for lang in LANGUAGES if not str(texts.get(lang, "")).strip()]
            if missing:
                found.append(f"{name} needs a text in {', '.join(missing)}")
        if self.severity not in ("error", "warning"):
            found.append("severity must be 'error' or 'warning'")
        if not callable(self.check):
            found.append("check is not callable")
        if self.karma_weight < 0:
            found.append("karma_weight must be >= 0")
        return found

    def explain(self, hit: Hit, facts: DealFacts, language: str = "en") -> str:
        template = self.explanation.get(language) or self.explanation["en"]
        values = {"deal_id": facts.deal_id, "deal_title": facts.title, **hit.details}
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            return template  # a template naming a missing detail: shown as written

    def findings(self, facts: DealFacts, context: RuleContext) -> list[Finding]:
        return [Finding(self.code, facts.deal_id, self.severity,
                        self.explain(hit, facts, context.language),
                        hit.stage_key, hit.action_key, None, dict(hit.details))
                for hit in self.check(facts, context)]


class RuleRegistry:
    """Custom rules by code; a code taken twice, or by a built-in rule, is an error."""

    def __init__(self) -> None:
        self._rules: dict[str, CustomRule] = {}

    def add(self, rule: CustomRule) -> None:
        where = getattr(rule.check, "__module__", "?")
        problems = rule.problems()
        if problems:
            raise PluginError(f"custom rule {rule.code!r} ({where}): {'; '.join(problems)}")
        if rule.code in RULE_CODES:
            raise PluginError(f"custom rule {rule.code!r} ({where}) uses a built-in rule code")
        existing = self._rules.get(rule.code)
        if existing is not None and existing is not rule:
            raise PluginError(f"rule code {rule.code!r} registered twice: by "
                              f"{getattr(existing.check, '__module__', '?')} and by {where}")
        self._rules[rule.code] = rule

    def get(self, code: str) -> CustomRule | None:
        return self._rules.get(code)

    def codes(self, module_root: str | None = None) -> list[str]:
        """Rule codes (those of one plugin's top-level module, when given)."""
        return sorted(code for code, rule in self._rules.items() if module_root is None
                      or str(getattr(rule.check, "__module__", "")).split(".")[0] == module_root)

    def for_tenant(self, switches: Mapping[str, bool]) -> tuple[CustomRule, ...]:
        """The rules a tenant runs: each rule's default, unless the tenant file says."""
        return tuple(rule for code, rule in sorted(self._rules.items())
                     if switches.get(code, rule.enabled_by_default))

    def unknown(self, codes: Iterable[str]) -> list[tuple[str, str]]:
        """``(code, message)`` for codes no plugin registered, with a "did you mean"."""
        return [(code, unknown_name_message("custom rule", code, self.codes()))
                for code in codes if code not in self._rules]

    def activate(self) -> None:
        """Make these rules' texts known to the CRM texts of this process (render)."""
        _TITLES.clear()
        _TITLES.update({code: dict(rule.title) for code, rule in self._rules.items()})


#: code -> {"en": title, "ru": title} of the custom rules of the active plugin manager.
_TITLES: dict[str, dict[str, str]] = {}


def custom_title(code: str, language: str) -> str | None:
    """A custom rule's short phrase in a language, or None (not a custom rule)."""
    titles = _TITLES.get(code)
    return None if titles is None else titles.get(language) or titles.get("en")


def unknown_name_message(what: str, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no {what} named {name!r} (installed: {', '.join(known) or 'none'}){hint}"


def run_custom(rules: Sequence[CustomRule], facts: DealFacts,
               context: RuleContext) -> list[Finding]:
    return [finding for rule in rules for finding in rule.findings(facts, context)]
