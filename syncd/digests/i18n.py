"""The digests' texts: ``syncd.i18n.translator(lang, "digests")`` (catalogue
``syncd/locale/ru/LC_MESSAGES/digests.po``), and numbers, money and days in the reader's
format."""

from __future__ import annotations

from datetime import datetime

from syncd.i18n import Translator
from syncd.i18n import translator as _translator

DOMAIN = "digests"


def translator(language: str) -> Translator:
    return _translator(language, DOMAIN)


def number(t: Translator, value: float | None, digits: int = 0) -> str:
    """``12 345,5`` in Russian, ``12,345.5`` in English; ``—`` for no value."""
    return "—" if value is None else t.number(value, digits)


def percent(t: Translator, value: float | None) -> str:
    return "—" if value is None else t.percent(value)


def money(t: Translator, value: float | None, currency: str) -> str:
    return "—" if value is None else f"{t.number(value, 0)}\u00a0{currency}"


def day(t: Translator, moment: datetime | str | None) -> str:
    """``07.12.2026`` (ru) / ``12/7/26`` (en)."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return t.date(moment.date(), "short")


__all__ = ["DOMAIN", "Translator", "day", "money", "number", "percent", "translator"]
