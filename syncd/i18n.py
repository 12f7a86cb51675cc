"""Translations of everything a person reads: gettext catalogues read through Babel.

A message id is the English text; its Russian lives in
``syncd/locale/ru/LC_MESSAGES/<domain>.po``, one catalogue per area ("report", "cli",
"audit", "crm", "dashboard", "digests", ...). Code asks for a translator of one language and
one domain and calls the standard gettext methods on it::

    from syncd.i18n import translator
    t = translator(tenant.config.language, "report")
    t.gettext("Violations")
    t.ngettext("{n} deal", "{n} deals", n).format(n=n)

The ``.po`` sources are read directly (``babel.messages.pofile.read_po``) and compiled in
memory into ``babel.support.Translations`` once per (language, domain) per process: there is
no build step and no compiled ``.mo`` committed beside its source that could silently drift
from it; reading the catalogues takes milliseconds. English needs no catalogue (the ids are
English); a Russian catalogue without an id falls back to the English text, and a test
(tests/test_i18n.py) keeps that from happening: every id used in the code is in its domain's
catalogue with a non-empty Russian translation. docs/i18n.md says how to add a string.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from babel import Locale
from babel.dates import format_date as _format_date
from babel.dates import format_datetime as _format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal as _format_decimal
from babel.numbers import format_percent as _format_percent
from babel.support import NullTranslations, Translations

if TYPE_CHECKING:
    import jinja2

#: The languages a person can read syncd in (a tenant's ``language``, ``--lang``, ``?lang=``).
LANGUAGES: tuple[str, ...] = ("ru", "en")
#: The language of the message ids.
SOURCE_LANGUAGE = "en"
#: Where the catalogues live: ``<LOCALE_DIR>/<lang>/LC_MESSAGES/<domain>.po``.
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def N_(msgid: str) -> str:
    """Mark a text for extraction where it is defined; translate it where it is shown."""
    return msgid


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a counted text (both forms) for extraction; ``t.ngettext(*marked, n)`` shows it.
    Mapping files name it as a keyword: ``keywords = Nn_:1,2``."""
    return singular, plural


class Text(str):
    """A message meant for a person, said in English and able to be said again in another
    language: ``str(text)`` (logs, JSON, tests) is the English; ``text.say("ru")`` the
    translation from the ``cli`` catalogue, values that are ``Text`` said too. Mapping files
    name it as a keyword (``keywords = Text``), so ``Text("...", name=x)`` is extracted."""

    msgid: str
    values: dict[str, Any]

    def __new__(cls, msgid: str, /, **values: Any) -> Text:
        made = str.__new__(cls, msgid.format(**values))
        made.msgid, made.values = msgid, values
        return made

    def say(self, lang: str, domain: str = "cli") -> str:
        values = {k: v.say(lang, domain) if isinstance(v, Text) else v
                  for k, v in self.values.items()}
        return translator(lang, domain).gettext(self.msgid).format(**values)

    def __reduce__(self) -> tuple[Any, ...]:  # copy/pickle keep the message, not just text
        return (_text, (self.msgid, self.values))


class Phrase(Text):
    """A text without values, marked with ``N_()`` where it is written and passed on as a
    part of a message (``Text("cannot read {raw!r} as {expected}", expected=Phrase(x))``):
    said as its translation, never formatted (a ``{`` in it is kept). A ``Text`` given
    is returned as it is."""

    # misc: a Text given is returned as it is, so this __new__ may return the base class
    def __new__(cls, msgid: str, /) -> Text:  # type: ignore[misc]
        if isinstance(msgid, Text):
            return msgid
        made = str.__new__(cls, msgid)
        made.msgid, made.values = msgid, {}
        return made

    def say(self, lang: str, domain: str = "cli") -> str:
        return translator(lang, domain).gettext(self.msgid) if self.msgid else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (Phrase, (self.msgid,))


class TitleText(Text):
    """A Sales Book object's title (``title``/``titles``) said in the reader's language."""

    titled: Any

    def __new__(cls, titled: Any, /) -> TitleText:
        made = str.__new__(cls, titled.title)
        made.msgid, made.values, made.titled = "{title}", {"title": titled.title}, titled
        return made

    def say(self, lang: str, domain: str = "cli") -> str:
        return str(self.titled.title_in(lang))

    def __reduce__(self) -> tuple[Any, ...]:
        return (TitleText, (self.titled,))


def _text(msgid: str, values: dict[str, Any]) -> Text:
    return Text(msgid, **values)


def say(text: str, lang: str) -> str:
    """``text`` in ``lang`` when it is a ``Text``; any other string as it is."""
    return text.say(lang) if isinstance(text, Text) else text


def normalize_language(lang: str | None) -> str:
    """``"ru"``, ``"ru-RU"``, ``"ru_RU"``, ``"RU"`` -> ``"ru"``; an unknown language is an error."""
    code = (lang or "").strip().replace("-", "_").split("_", 1)[0].lower()
    if code not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}: syncd speaks {', '.join(LANGUAGES)}")
    return code


def environment_language(environ: Mapping[str, str] | None = None) -> str:
    """The reader's language from the locale environment, read as gettext reads it
    (``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``: the first one set decides):
    ``ru_RU.UTF-8`` -> ``ru``; ``C``, ``POSIX``, unset or a language syncd does not speak
    -> English. What a command says when neither ``--lang`` nor a tenant's ``language``
    applies (docs/i18n.md)."""
    env = os.environ if environ is None else environ
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if not value:
            continue
        for part in value.split(":"):  # LANGUAGE may list several: ru:en
            try:
                return normalize_language(part.split(".", 1)[0].split("@", 1)[0])
            except ValueError:
                continue
        return SOURCE_LANGUAGE
    return SOURCE_LANGUAGE


def domains() -> tuple[str, ...]:
    """Every catalogue domain shipped (the Russian ``.po`` files' names)."""
    folder = LOCALE_DIR / "ru" / "LC_MESSAGES"
    return tuple(sorted(path.stem for path in folder.glob("*.po")))


def catalogue_path(lang: str, domain: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"


@cache
def translations(lang: str, domain: str) -> NullTranslations:
    """The gettext translations of one domain in one language (cached per process).

    An object with the standard ``gettext``/``ngettext``/``pgettext``/``npgettext`` methods,
    also what ``jinja2.Environment.install_gettext_translations`` takes.
    """
    lang = normalize_language(lang)
    source = catalogue_path("ru", domain)
    if not source.is_file():
        raise LookupError(f"no message catalogue for domain {domain!r} (expected {source}); "
                          f"domains: {', '.join(domains())}")
    if lang == SOURCE_LANGUAGE:
        return NullTranslations()
    with catalogue_path(lang, domain).open("rb") as po:
        catalog = read_po(po, locale=lang, domain=domain)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return Translations(fp=compiled, domain=domain)


class Translator:
    """One language and one domain: the gettext calls plus the language's number/date formats."""

    __slots__ = ("_t", "domain", "lang", "locale")

    def __init__(self, lang: str, domain: str) -> None:
        self.lang = normalize_language(lang)
        self.domain = domain
        self.locale = Locale.parse(self.lang)
        self._t = translations(self.lang, domain)

    def gettext(self, message: str) -> str:
        return self._t.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self._t.ngettext(singular, plural, n)

    def pgettext(self, context: str, message: str) -> str:
        return str(self._t.pgettext(context, message))

    def npgettext(self, context: str, singular: str, plural: str, n: int) -> str:
        return str(self._t.npgettext(context, singular, plural, n))

    def number(self, value: float, digits: int | None = None) -> str:
        """``1234.5`` -> ``1,234.5`` (en) / ``1 234,5`` (ru)."""
        if digits is None:
            return _format_decimal(value, locale=self.locale)
        pattern = "#,##0" + ("." + "0" * digits if digits else "")
        return _format_decimal(value, format=pattern, locale=self.locale)

    def percent(self, ratio: float, digits: int = 0) -> str:
        """``0.25`` -> ``25%`` (en) / ``25 %`` (ru)."""
        pattern = self.locale.percent_formats[None].pattern  # "#,##0%" / "#,##0\xa0%"
        if digits:
            pattern = pattern.replace("#,##0", "#,##0." + "0" * digits, 1)
        return _format_percent(ratio, format=pattern, locale=self.locale)

    def date(self, value: date, form: str = "medium") -> str:
        """A day as its readers write it (``form``: short, medium, long or a CLDR pattern)."""
        return _format_date(value, format=form, locale=self.locale)

    def datetime(self, value: datetime, form: str = "short") -> str:
        return _format_datetime(value, format=form, locale=self.locale)

    def join_or(self, words: Iterable[str]) -> str:
        """``a``, ``a or b``, ``a, b or c`` (``или`` in Russian)."""
        items = list(words)
        if len(items) <= 1:
            return "".join(items)
        return self.gettext("{first} or {last}").format(first=", ".join(items[:-1]),
                                                        last=items[-1])


@cache
def translator(lang: str, domain: str) -> Translator:
    """The translator of ``domain`` in ``lang`` (one of LANGUAGES; ``ru-RU`` is ``ru``)."""
    return Translator(lang, domain)


def merged_translations(lang: str, domain_names: Sequence[str]) -> NullTranslations:
    """Several domains as one gettext object (the first domain naming an id wins)."""
    lang = normalize_language(lang)
    if lang == SOURCE_LANGUAGE:
        for domain in domain_names:
            translations(lang, domain)  # an unknown domain is an error in English too
        return NullTranslations()
    merged = Translations(domain="+".join(domain_names))
    for domain in reversed(domain_names):  # later merges override: the first domain wins
        found = translations(lang, domain)
        assert isinstance(found, Translations)
        merged.merge(found)
        merged.plural = found.plural  # merge() copies the messages, not the plural rule
    return merged


def install(env: jinja2.Environment, lang: str, domain_names: Sequence[str]) -> None:
    """Give a Jinja2 environment (with ``jinja2.ext.i18n``) the catalogues of ``lang``.

    Templates use ``{{ _("Deals") }}``, ``{{ ngettext("%(num)d deal", "%(num)d deals", n) }}``
    (new-style gettext: values are passed as keywords and autoescaped) and the filters
    ``number``, ``percent`` and ``day`` in the language's formats.
    """
    env.add_extension("jinja2.ext.i18n")
    # attr-defined: jinja2.ext.i18n adds this method to the Environment at runtime
    env.install_gettext_translations(  # type: ignore[attr-defined]
        merged_translations(lang, domain_names), newstyle=True)
    t = Translator(lang, domain_names[0])
    env.filters["number"] = t.number
    env.filters["percent"] = t.percent
    env.filters["day"] = t.date
    env.globals["lang"] = t.lang


def jinja_env(lang: str, domain: str | Sequence[str] | None = None, *,
              loader: jinja2.BaseLoader | None = None, **options: Any) -> jinja2.Environment:
    """A Jinja2 environment speaking ``lang`` with the given domain(s) (default: all of them).

    Autoescaping is on for HTML/XML templates; ``loader`` defaults to syncd/templates/.
    """
    import jinja2

    if domain is None:
        names: Sequence[str] = domains()
    elif isinstance(domain, str):
        names = (domain,)
    else:
        names = tuple(domain)
    autoescape = options.pop("autoescape", jinja2.select_autoescape(("html", "htm", "xml")))
    env = jinja2.Environment(
        loader=loader or jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=autoescape, **options)  # noqa: S701  (HTML escaped unless a caller says)
    install(env, lang, names)
    return env


__all__ = [
    "LANGUAGES",
    "LOCALE_DIR",
    "N_",
    "SOURCE_LANGUAGE",
    "Nn_",
    "Phrase",
    "Text",
    "TitleText",
    "Translator",
    "catalogue_path",
    "domains",
    "environment_language",
    "install",
    "jinja_env",
    "merged_translations",
    "normalize_language",
    "say",
    "translations",
    "translator",
]
