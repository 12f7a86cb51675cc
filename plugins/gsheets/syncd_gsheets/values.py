"""Reading one spreadsheet cell exactly: serial dates, ids as text, numbers, flags.

Cells arrive in three shapes: Sheets API values read with ``UNFORMATTED_VALUE`` and
``dateTimeRenderOption=SERIAL_NUMBER`` (JSON numbers, strings, booleans; dates as serial
numbers), openpyxl values (``datetime``, ``int``, ``float``, ``str``), and CSV text. Every
reader here accepts all three, so the same tab mapping audits a live sheet and its export.

Why serial numbers: a formatted date depends on the spreadsheet's locale ("03/04/2026" is
March or April), a serial number does not (days since 1899-12-30, fraction = time of day).

Numbers, dates and date-times are the shared readers under the names the tab reader uses:
``number`` is ``syncd.values.parse_number`` (text in any locale, ``1 234,50``,
``1,234.50``, ``106 000,00 ₽``: that module documents the rules), ``day`` is
``parse_date`` (the time of day, if any, is dropped) and ``moment(value, tz)`` is
``parse_datetime``: aware UTC, naive values in ``tz`` (a sheet's serials carry no timezone:
the tenant's connection says which one).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from syncd.values import SERIAL_EPOCH, blank, from_serial, parse_flag, parse_id
from syncd.values import parse_date as day
from syncd.values import parse_datetime as moment
from syncd.values import parse_number as number

__all__ = ["SERIAL_EPOCH", "blank", "day", "flag", "from_serial", "ident", "moment", "number",
           "plain", "text"]


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
    return parse_id(value, keep_text=True)


def flag(value: Any) -> bool:
    """A yes/no cell, strictly (``syncd.values.parse_flag``): an unknown word is a problem."""
    return parse_flag(value, strict=True)


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
