"""Reading one spreadsheet cell exactly: serial dates, ids as text, numbers, flags.

Cells arrive in three shapes: Sheets API values read with ``UNFORMATTED_VALUE`` and
``dateTimeRenderOption=SERIAL_NUMBER`` (JSON numbers, strings, booleans; dates as serial
numbers), openpyxl values (``datetime``, ``int``, ``float``, ``str``), and CSV text. Every
reader here accepts all three, so the same tab mapping audits a live sheet and its export.

Why serial numbers: a formatted date depends on the spreadsheet's locale ("03/04/2026" is
March or April), a serial number does not (days since 1899-12-30, fraction = time of day).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

#: Day 0 of Google Sheets and Excel (1900 system, including Lotus' leap-year bug offset).
SERIAL_EPOCH = datetime(1899, 12, 30)
#: Plausible serial range (1900-01-01 .. 9999-12-31): outside it a number is not a date.
_SERIAL_MIN, _SERIAL_MAX = 1.0, 2958465.0
_DAY_FIRST = re.compile(
    r"^(\d{1,2})[./](\d{1,2})[./](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$")
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "x", "да", "done", "✓", "✔"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n", "нет", "-"})


def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text(value: Any) -> str:
    """Any cell as display text (whole floats without ``.0``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def ident(value: Any) -> str | None:
    """An id cell as text, exactly: ``00123`` stays ``00123``, ``123.0`` becomes ``123``."""
    if blank(value):
        return None
    if isinstance(value, bool):
        message = f"an id cannot be a checkbox ({value!r})"
        raise TypeError(message)
    if isinstance(value, float) and not value.is_integer():
        message = f"an id must be a whole number or text, got {value!r}"
        raise ValueError(message)
    return text(value)


def number(value: Any) -> float | None:
    """A number cell; text like ``1 234,50`` or ``1,234.50`` is read too."""
    if blank(value):
        return None
    if isinstance(value, bool):
        message = f"expected a number, got a checkbox ({value!r})"
        raise TypeError(message)
    if isinstance(value, int | float):
        result = float(value)
    else:
        cleaned = str(value).strip().replace("\u00a0", "").replace(" ", "")
        if "," in cleaned and "." in cleaned:
            cleaned = cleaned.replace(",", "")
        else:
            cleaned = cleaned.replace(",", ".")
        try:
            result = float(cleaned)
        except ValueError:
            message = f"expected a number, got {value!r}"
            raise ValueError(message) from None
    if not math.isfinite(result):
        message = f"expected a finite number, got {value!r}"
        raise ValueError(message)
    return result


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    word = str(value or "").strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    message = f"expected yes/no, got {value!r}"
    raise ValueError(message)


def from_serial(serial: float) -> datetime:
    """A serial number as a naive datetime, exact to the millisecond.

    The fraction is a share of 86 400 s held in a double, so 14:30 comes back as
    52199.99999...; rounding to the millisecond restores what the user typed."""
    if not _SERIAL_MIN <= serial <= _SERIAL_MAX:
        message = f"{serial!r} is not a date serial number"
        raise ValueError(message)
    days = int(serial // 1)
    millis = round((serial - days) * 86_400_000)
    return SERIAL_EPOCH + timedelta(days=days, milliseconds=millis)


def _naive(value: Any) -> datetime | date | None:
    """A date-ish cell as a naive datetime, a date, or an aware datetime; None if blank."""
    if blank(value):
        return None
    if isinstance(value, bool):
        message = f"expected a date, got a checkbox ({value!r})"
        raise TypeError(message)
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, int | float):
        return from_serial(float(value))
    raw = str(value).strip()
    match = _DAY_FIRST.match(raw)
    if match:
        day, month, year, hour, minute, second = match.groups()
        if hour is None:
            return date(int(year), int(month), int(day))
        return datetime(int(year), int(month), int(day), int(hour), int(minute),
                        int(second or 0))
    try:
        if len(raw) == 10:
            return date.fromisoformat(raw)
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        message = f"expected a date (YYYY-MM-DD, DD.MM.YYYY or a date cell), got {value!r}"
        raise ValueError(message) from None


def moment(value: Any, tz: tzinfo) -> datetime | None:
    """A date or date-time cell as an aware UTC datetime; naive values are in ``tz``
    (a sheet's serials carry no timezone: the tenant's connection says which one)."""
    parsed = _naive(value)
    if parsed is None:
        return None
    if not isinstance(parsed, datetime):
        parsed = datetime(parsed.year, parsed.month, parsed.day)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def day(value: Any) -> date | None:
    """A date cell as a calendar date (the time of day, if any, is dropped)."""
    parsed = _naive(value)
    if parsed is None:
        return None
    return parsed.date() if isinstance(parsed, datetime) else parsed


def plain(value: Any) -> Any:
    """A cell as a JSON-able value for ``record.fields`` (dates as ISO text)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return value
