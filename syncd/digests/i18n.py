"""The digests' texts: ``syncd.i18n.translator(lang, "digests")`` (catalogue
``syncd/locale/ru/LC_MESSAGES/digests.po``), plus the number and date formats people expect
in each language."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

try:
    from syncd.i18n import translator as _translator
except ImportError:  # until syncd.i18n lands: a stub with its signature (team.md)
    import gettext
    import re
    from pathlib import Path

    class _Po(gettext.NullTranslations):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.messages: dict[str, str] = {}
            text = path.read_text("utf-8") if path.exists() else ""
            for block in text.split("\n\n"):
                found = dict(re.findall(r'^(msgid|msgstr) ((?:"(?:[^"\\]|\\.)*"\s*)+)',
                                        block, re.M))
                if found.get("msgid") and "msgstr" in found:
                    self.messages[self._join(found["msgid"])] = self._join(found["msgstr"])

        @staticmethod
        def _join(quoted: str) -> str:
            parts = re.findall(r'"((?:[^"\\]|\\.)*)"', quoted)
            return "".join(parts).encode().decode("unicode_escape").encode(
                "latin-1").decode("utf-8")

        def gettext(self, message: str) -> str:
            return self.messages.get(message) or message

    def _translator(lang: str, domain: str) -> Any:
        base = Path(__file__).resolve().parents[1] / "locale"
        return _Po(base / lang / "LC_MESSAGES" / f"{domain}.po")

DOMAIN = "digests"


class Translator(Protocol):
    def gettext(self, message: str) -> str: ...
    def ngettext(self, singular: str, plural: str, n: int) -> str: ...


def translator(language: str) -> Translator:
    return _translator(language, DOMAIN)


def number(value: float | None, language: str, digits: int = 0) -> str:
    """``12 345,5`` in Russian, ``12,345.5`` in English; ``—`` for no value."""
    if value is None:
        return "—"
    text = f"{value:,.{digits}f}"
    if language == "ru":
        text = text.replace(",", "\u00a0").replace(".", ",")
    return text


def percent(value: float | None, language: str) -> str:
    return "—" if value is None else number(value * 100, language) + "\u00a0%"


def money(value: float | None, currency: str, language: str) -> str:
    return "—" if value is None else f"{number(value, language)}\u00a0{currency}"


def day(moment: datetime | str | None) -> str:
    """``07.12.2026`` (both languages read it)."""
    if moment is None:
        return "—"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return f"{moment:%d.%m.%Y}"



__all__ = ["DOMAIN", "Translator", "day", "money", "number", "percent",
           "translator"]
