# ruff: noqa: RUF001, RUF002  (Cyrillic currency words and U+2212 are the point)
"""One reader for the numbers, amounts, dates and datetimes every source produces.

Every plugin and the mapping read values through this module, so ``"12,5"`` means the
same thing whether it came from Pipedrive, amoCRM, Bitrix24, a Google sheet or a CSV
export. Readers return ``None`` for a blank value and raise ``ValueProblem`` (a
``ValueError``) for a value they cannot read; they never guess silently.

Numbers (``parse_number``; ``parse_amount`` also returns the currency)
    Accepted: JSON numbers; text with group separators ``" "``, no-break space U+00A0,
    narrow no-break space U+202F, thin space U+2009, figure space U+2007, apostrophes
    (``1'234.50``), ``"."`` or ``","``; decimal separator ``","`` or ``"."``; a minus
    ``-`` or ``−`` (U+2212) in front, a trailing ``-``, or accounting parentheses
    ``(1 234,50)``; a leading ``+``; a currency sign or code before or after
    (``₽ руб. руб р. RUB RUR $ USD € EUR £ GBP ₸ KZT ₴ UAH BYN``); exponent notation
    ``1.5E3``; Bitrix24 money ``"100|EUR"``.

    Which separator is the decimal one:
      * both ``","`` and ``"."`` present: the one that comes last (``1.234,50`` and
        ``1,234.50`` are both 1234.5); the other must group digits by three;
      * one separator repeated (``1,234,567``, ``1.234.567``): it groups thousands;
      * one separator once (``12,5``, ``1.5``, ``1,234``): it is the decimal separator.
        This is the ambiguous case: ``"1,234"`` reads as 1.234, as a Russian-locale
        spreadsheet (LibreOffice, Google Sheets, Excel with the ``ru`` locale) reads it;
        a source known to write English-locale integers passes ``decimal="."`` and then
        ``"1,234"`` is 1234. A separator whose groups are not of three digits
        (``1,23,4``) is an error, never a guess.

Dates and datetimes (``parse_date``, ``parse_datetime``)
    Accepted: ``date``/``datetime`` objects; ISO 8601 (``2025-12-31``,
    ``2025-12-31T14:30``, ``...:00Z``, ``...+03:00``, ``2025-12-31 14:30:00``); day-first
    text (``31.12.2025``, ``31/12/2025``, ``31.12.2025 14:30``, ``31.12.2025 14:30:15``);
    numbers as Excel/Sheets serial days (``numbers="serial"``, the default) or as Unix
    seconds (``numbers="unix"``; milliseconds when above 10^11). A datetime without an
    offset is in ``tz`` (``tz=None``: an offset is required); every datetime comes back
    as aware UTC. Slashed dates are day-first (``03/04/2026`` is 3 April), as Russian and
    European exports write them; US month-first text is not supported (a sheet read
    through the API gives serial numbers, which have no such ambiguity).

Ids (``parse_id``)
    Numbers, digit strings and whole floats as one canonical string (``"37"``); see its
    options for 0-means-none, numeric-only and sheet ids kept as written.

Problems
    Inside ``reading_record(...)``, ``field_value(parse, raw, field)`` turns a value that
    cannot be read into a ``FieldProblem`` (tenant, stream, record id, field, raw value)
    in the caller's list and gives ``None`` for that field; the record is kept. Outside
    a ``reading_record`` scope the ``ValueProblem`` propagates: nothing is dropped
    silently.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Literal, TypeVar

from syncd.i18n import N_, Phrase, Text

__all__ = [
    "CURRENCIES",
    "NUMBER_STYLES",
    "SERIAL_EPOCH",
    "Amount",
    "FieldProblem",
    "ValueProblem",
    "field_value",
    "format_number",
    "from_serial",
    "from_unix",
    "parse_amount",
    "parse_date",
    "parse_datetime",
    "parse_id",
    "parse_number",
    "reading_record",
    "required_id",
]

T = TypeVar("T")


class ValueProblem(ValueError):
    """A value that cannot be read as what was expected; ``raw`` is the value as given."""

    def __init__(self, raw: Any, expected: str, detail: str = "") -> None:
        self.raw = raw
        self.expected = expected
        # a Text: the English as before (str), said again in a tenant's language (docs/i18n.md)
        message = (Text("cannot read {raw!r} as {expected} ({detail})", raw=raw,
                        expected=Phrase(expected), detail=Phrase(detail)) if detail
                   else Text("cannot read {raw!r} as {expected}", raw=raw,
                             expected=Phrase(expected)))
        super().__init__(message)


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# --- ids -------------------------------------------------------------------------------------
_INTEGER = re.compile(r"^-?[0-9]+$")


def parse_id(value: Any, *, zero_is_none: bool = False, numeric: bool = False,
             keep_text: bool = False) -> str | None:
    """A CRM or sheet id as a string, exactly: ``37``, ``"37"`` and ``37.0`` are ``"37"``.

    Blank is None. ``zero_is_none``: 0 means "no record" (amoCRM, Bitrix24 links).
    ``numeric``: only integers are ids (Bitrix24). ``keep_text``: digit strings are kept as
    written (``"00123"`` stays ``"00123"``: a sheet's ids are text); otherwise a digit string
    is normalized (``"0037"`` -> ``"37"``). Booleans and fractional numbers are errors."""
    # What APIs send almost always (an int, or a canonical digit string), decided at once:
    # every id of every record pulled comes through here.
    if type(value) is int:
        return None if zero_is_none and value == 0 else str(value)
    if type(value) is str and value.isascii() and value.isdigit() and value[0] != "0":
        return value
    return _parse_id(value, zero_is_none=zero_is_none, numeric=numeric, keep_text=keep_text)


def _parse_id(value: Any, *, zero_is_none: bool, numeric: bool, keep_text: bool,
              ) -> str | None:
    if blank(value):
        return None
    if isinstance(value, bool):
        raise ValueProblem(value, N_("an id"), N_("a yes/no value"))
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueProblem(value, N_("an id"), N_("not a whole number"))
        value = int(value)
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
        if _INTEGER.match(text):
            text = text if keep_text else str(int(text))
        elif numeric:
            raise ValueProblem(value, N_("an id"), N_("not a whole number"))
    else:
        raise ValueProblem(value, N_("an id"), f"a {type(value).__name__}")
    if zero_is_none and _INTEGER.match(text) and int(text) == 0:
        return None
    return text


def required_id(payload: Mapping[str, Any], key: str = "id", *,
                read: Callable[[Any], str | None] = parse_id) -> str:
    """The id a record cannot be without: ``payload[key]`` read by ``read`` (the source's id
    reader, e.g. ``partial(parse_id, zero_is_none=True)``); none there is a ``ValueError``
    naming the key. A plugin binds its own reader and key once:
    ``required_id = partial(values.required_id, read=ident)``."""
    value = read(payload.get(key))
    if value is None:
        message = f"missing {key}"
        raise ValueError(message)
    return value


# --- yes/no ----------------------------------------------------------------------------------
#: Words read as yes / no (case-insensitive, trimmed): APIs (``true``, ``1``, Bitrix24's
#: ``Y``/``N``) and people (``да``, ``нет``, ``x``, ``✓`` in a spreadsheet cell).
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "x", "да", "д", "done", "✓", "✔"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n", "нет", "н", "-"})


def parse_flag(value: Any, *, strict: bool = False) -> bool:
    """A yes/no value: booleans, numbers (non-zero is yes), or one of ``TRUE_WORDS`` /
    ``FALSE_WORDS``; None is no. Anything else is no, or with ``strict`` (a person typed it)
    a ``ValueProblem``."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        word = value.strip().casefold()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS or not strict:
            return False
    elif not strict:
        return bool(value)
    raise ValueProblem(value, N_("yes or no"))


# --- numbers ---------------------------------------------------------------------------------
#: Currency signs and codes (case-insensitive) -> ISO 4217 code.
CURRENCIES: dict[str, str] = {
    "₽": "RUB", "руб.": "RUB", "руб": "RUB", "р.": "RUB", "р": "RUB", "rub": "RUB",
    "rur": "RUB", "$": "USD", "usd": "USD", "us$": "USD", "€": "EUR", "eur": "EUR",
    "£": "GBP", "gbp": "GBP", "₸": "KZT", "kzt": "KZT", "тг": "KZT", "тг.": "KZT",
    "₴": "UAH", "uah": "UAH", "грн": "UAH", "грн.": "UAH", "byn": "BYN", "br": "BYN",
    "cny": "CNY", "¥": "CNY", "юань": "CNY",
}
_CURRENCY_ALT = "|".join(re.escape(c) for c in sorted(CURRENCIES, key=len, reverse=True))
_LEADING_CURRENCY = re.compile(rf"^(?:{_CURRENCY_ALT})(?![a-zа-яё])", re.IGNORECASE)
_TRAILING_CURRENCY = re.compile(rf"(?<![a-zа-яё])(?:{_CURRENCY_ALT})$", re.IGNORECASE)
#: Group separators that are never decimal separators.
_SPACES = ("\u00a0", "\u202f", "\u2009", "\u2007", " ", "'", "\u2019")
_MINUS = ("-", "\u2212", "\u2012", "\u2013")
_BODY = re.compile(r"^[0-9.,]+$")
_EXPONENT = re.compile(r"^[0-9]+(?:\.[0-9]+)?[eE][+-]?[0-9]+$")
_GROUPED = re.compile(r"^[0-9]{1,3}(?:,[0-9]{3})+$")


@dataclass(frozen=True, slots=True)
class Amount:
    """A money amount and its ISO currency code when the text named one."""

    value: float
    currency: str | None = None


def parse_amount(value: Any, *, decimal: Literal[",", "."] | None = None) -> Amount | None:
    """A number with an optional currency sign or code (see the module doc)."""
    if blank(value):
        return None
    if isinstance(value, bool):
        raise ValueProblem(value, N_("a number"), N_("a yes/no value"))
    if isinstance(value, int | float):
        return Amount(_finite(float(value), value))
    if isinstance(value, dict):  # Pipedrive monetary {value, currency}
        inner = parse_amount(value.get("value"), decimal=decimal)
        currency = value.get("currency")
        if inner is None:
            return None
        return Amount(inner.value, str(currency).upper() if currency else inner.currency)
    if not isinstance(value, str):
        raise ValueProblem(value, N_("a number"), f"a {type(value).__name__}")
    text = value.strip()
    currency = None
    if "|" in text:  # Bitrix24 money field: "100|EUR"
        text, _, code = text.partition("|")
        currency = code.strip().upper() or None
    number, found = _number_text(text, value, decimal)
    return Amount(number, currency or found)


def parse_number(value: Any, *, decimal: Literal[",", "."] | None = None) -> float | None:
    """A number, or ``None`` when blank; currency signs are allowed and dropped."""
    amount = parse_amount(value, decimal=decimal)
    return None if amount is None else amount.value


def _number_text(text: str, raw: Any, decimal: str | None) -> tuple[float, str | None]:
    negative, currency, text = _sign_and_currency(text.strip(), raw)
    for space in _SPACES:
        text = text.replace(space, "")
    if not text:
        raise ValueProblem(raw, N_("a number"), N_("no digits"))
    if _EXPONENT.match(text):
        result = float(text)
    elif _BODY.match(text):
        result = float(_canonical(text, raw, decimal))
    else:
        raise ValueProblem(raw, N_("a number"))
    return _finite(-result if negative else result, raw), currency


def _strip_currency(text: str, *patterns: re.Pattern[str]) -> tuple[str | None, str]:
    for pattern in patterns:
        match = pattern.search(text)
        if match:
            found = CURRENCIES[match.group(0).casefold()]
            return found, (text[:match.start()] + text[match.end():]).strip()
    return None, text


def _sign_and_currency(text: str, raw: Any) -> tuple[bool, str | None, str]:
    """Take off accounting parentheses, minus/plus signs and one currency sign or code."""
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1].strip()
    if text.endswith(tuple(_MINUS)) and len(text) > 1:
        negative, text = True, text[:-1].strip()
    currency, text = _strip_currency(text, _LEADING_CURRENCY, _TRAILING_CURRENCY)
    if text.startswith(tuple(_MINUS)):
        if negative:
            raise ValueProblem(raw, N_("a number"), N_("two minus signs"))
        negative, text = True, text[1:].strip()
    elif text.startswith("+"):
        text = text[1:].strip()
    if currency is None:  # "-₽ 5" / "- $5": the sign came before the currency
        currency, text = _strip_currency(text, _LEADING_CURRENCY)
    return negative, currency, text


def _canonical(text: str, raw: Any, decimal: str | None) -> str:
    """Digits with ``.``/``,`` -> a float literal, by the rules in the module doc."""
    commas, dots = text.count(","), text.count(".")
    if commas and dots:
        point = "," if text.rfind(",") > text.rfind(".") else "."
    elif commas + dots == 0:
        return text
    else:
        sep = "," if commas else "."
        count = commas or dots
        if count > 1:
            point = "." if sep == "," else ","  # repeated: grouping only
        elif decimal is not None and decimal != sep and _GROUPED.match(text.replace(".", ",")):
            point = decimal  # a hinted source: "1,234" with decimal="." is 1234
        else:
            point = sep
    group = "," if point == "." else "."
    whole, _, fraction = text.partition(point) if point in text else (text, "", "")
    if point in fraction or group in fraction:
        raise ValueProblem(raw, N_("a number"), N_("a separator after the decimal one"))
    if group in whole:
        if not _GROUPED.match(whole.replace(group, ",")):
            raise ValueProblem(raw, N_("a number"),
                               Text("digits grouped oddly around {group!r}", group=group))
        whole = whole.replace(group, "")
    if not whole and not fraction:
        raise ValueProblem(raw, N_("a number"), N_("no digits"))
    return f"{whole or '0'}.{fraction or '0'}"


def _finite(result: float, raw: Any) -> float:
    if not math.isfinite(result):
        raise ValueProblem(raw, N_("a finite number"))
    return result


#: The number styles ``format_number`` writes (and ``parse_number`` reads back).
NUMBER_STYLES = ("ru", "ru_nbsp", "ru_narrow", "de", "en", "plain", "swiss")
_STYLE_SEPARATORS = {"ru": (" ", ","), "ru_nbsp": ("\u00a0", ","),
                     "ru_narrow": ("\u202f", ","), "de": (".", ","), "en": (",", "."),
                     "plain": ("", "."), "swiss": ("'", ".")}


def format_number(value: float, style: str, *, decimals: int = 2) -> str:
    """``value`` written as a person (or an export) of ``style`` writes it:
    ``ru`` ``1 234,50``, ``de`` ``1.234,50``, ``en`` ``1,234.50``, ``swiss`` ``1'234.50``."""
    group, point = _STYLE_SEPARATORS[style]
    text = f"{abs(value):,.{decimals}f}"
    whole, _, fraction = text.partition(".")
    whole = whole.replace(",", group)
    sign = "-" if value < 0 and float(text.replace(",", "")) != 0 else ""
    return sign + whole + (point + fraction if decimals else "")


# --- dates -------------------------------------------------------------------------------------
#: Day 0 of Excel and Google Sheets (1900 system, past Lotus' leap-year bug).
SERIAL_EPOCH = datetime(1899, 12, 30)
_SERIAL_MIN, _SERIAL_MAX = 1.0, 2958465.0  # 1900-01-01 .. 9999-12-31
_DAY_FIRST = re.compile(
    r"^(\d{1,2})[./](\d{1,2})[./](\d{4})(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
_UNIX_MS = 10**11  # above this a Unix timestamp is in milliseconds


def from_serial(serial: float) -> datetime:
    """An Excel/Sheets serial number as a naive datetime, exact to the millisecond."""
    if not _SERIAL_MIN <= serial <= _SERIAL_MAX:
        raise ValueProblem(serial, N_("a date serial number"),
                           N_("out of the 1900..9999 range"))
    days = int(serial // 1)
    millis = round((serial - days) * 86_400_000)
    return SERIAL_EPOCH + timedelta(days=days, milliseconds=millis)


def from_unix(value: Any) -> datetime | None:
    """Unix seconds (or milliseconds) as a number or digit string -> aware UTC;
    ``0``/blank -> None (amoCRM writes 0 for "never")."""
    if blank(value) or value is False:
        return None
    if isinstance(value, bool):
        raise ValueProblem(value, N_("a Unix timestamp"))
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueProblem(value, N_("a Unix timestamp")) from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueProblem(value, N_("a Unix timestamp"))
    if value <= 0:
        return None
    seconds = value / 1000 if value > _UNIX_MS else value
    try:
        return datetime.fromtimestamp(int(seconds), UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueProblem(value, N_("a Unix timestamp"), N_("out of range")) from None


def _naive(value: Any, numbers: str) -> datetime | date | None:
    if blank(value):
        return None
    if isinstance(value, bool):
        raise ValueProblem(value, N_("a date"), N_("a yes/no value"))
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, int | float):
        return from_unix(value) if numbers == "unix" else from_serial(float(value))
    if not isinstance(value, str):
        raise ValueProblem(value, N_("a date"), f"a {type(value).__name__}")
    raw = value.strip()
    if numbers == "unix" and raw.isdigit():
        return from_unix(raw)
    match = _DAY_FIRST.match(raw)
    try:
        if match:
            day, month, year, hour, minute, second = match.groups()
            if hour is None:
                return date(int(year), int(month), int(day))
            return datetime(int(year), int(month), int(day), int(hour), int(minute),
                            int(second or 0))
        if len(raw) == 10:
            return date.fromisoformat(raw)
        return datetime.fromisoformat(raw.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueProblem(value, N_("a date (YYYY-MM-DD, DD.MM.YYYY or ISO 8601)")) from None


#: The shape APIs write (RFC 3339 with ``Z`` or an offset): read by the C parser directly,
#: a few microseconds per value saved on every timestamp of every record pulled.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})\Z")


def parse_datetime(value: Any, tz: tzinfo | None = UTC, *,
                   numbers: Literal["serial", "unix"] = "serial") -> datetime | None:
    """A date or datetime as aware UTC; values without an offset are in ``tz`` (a date
    alone is its midnight in ``tz``). ``tz=None``: an offset is required (a source that
    always writes one, like Bitrix24, sent something else)."""
    if type(value) is str and _RFC3339.match(value):
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            pass  # e.g. month 13: the general reader below names the problem
    parsed = _naive(value, numbers)
    if parsed is None:
        return None
    if not isinstance(parsed, datetime):
        parsed = datetime(parsed.year, parsed.month, parsed.day)
    if parsed.tzinfo is None:
        if tz is None:
            raise ValueProblem(value, N_("a datetime with an offset"))
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def parse_date(value: Any, tz: tzinfo | None = None, *,
               numbers: Literal["serial", "unix"] = "serial") -> date | None:
    """A calendar date. A datetime's own date is taken, or its date in ``tz`` when given
    (a CRM's ``2025-12-31T23:30:00+00:00`` is 1 January in Moscow)."""
    parsed = _naive(value, numbers)
    if parsed is None:
        return None
    if isinstance(parsed, datetime):
        if tz is not None and parsed.tzinfo is not None:
            parsed = parsed.astimezone(tz)
        return parsed.date()
    return parsed


# --- problems, per record ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FieldProblem:
    """A field value that could not be read; the record was kept without it."""

    stream: str
    record_id: str
    field: str
    raw: Any
    reason: str
    tenant: str | None = None

    def __str__(self) -> str:
        where = f"tenant {self.tenant!r} " if self.tenant else ""
        return (f"{where}stream {self.stream} record {self.record_id} field {self.field!r}: "
                f"{self.reason}; the field is left empty")


@dataclass(slots=True)
class _Scope:
    stream: str
    record_id: str
    tenant: str | None
    sink: list[FieldProblem]


_scope: ContextVar[_Scope | None] = ContextVar("syncd_values_scope", default=None)


@contextmanager
def reading_record(sink: list[FieldProblem], *, stream: str, record_id: Any,
                   tenant: str | None = None) -> Iterator[None]:
    """While reading one record, unreadable field values go to ``sink``."""
    token = _scope.set(_Scope(stream, str(record_id), tenant, sink))
    try:
        yield
    finally:
        _scope.reset(token)


def field_value(parse: Callable[[Any], T], raw: Any, field: str) -> T | None:
    """``parse(raw)``; inside ``reading_record`` an unreadable value becomes a
    ``FieldProblem`` and ``None``; outside, the ``ValueProblem`` propagates."""
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        scope = _scope.get()
        if scope is None:
            raise
        scope.sink.append(FieldProblem(scope.stream, scope.record_id, field, raw, str(exc),
                                       scope.tenant))
        return None
