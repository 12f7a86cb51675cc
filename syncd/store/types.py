"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no timezone-aware timestamp: a ``DateTime(timezone=True)`` column silently drops
``tzinfo`` and hands back naive values, so comparisons with aware "now" values explode far
from the cause. ``UTCDateTime`` normalizes to UTC on the way in and returns aware UTC on the
way out, on both backends. ``JSONType`` is plain JSON on SQLite and JSONB on PostgreSQL
(JSONB compares by value and indexes well; the payloads are the CRM's ``raw`` dicts).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


def json_default(value: Any) -> Any:
    """Serialize what CRM payloads and custom fields hold beyond plain JSON.

    Dates become ISO strings (so a ``date`` custom field survives storage), ``Decimal`` a
    float and sets sorted lists; anything else its ``str``, because a payload we cannot
    store is worse than one stored as text.
    """
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class EncodedJSON(str):
    """JSON text already encoded: the engine's serializer passes it through untouched.

    The upsert encodes each payload once, hashes that text and stores the same text, instead
    of encoding it again in the driver (payload encoding dominates the cost of a page).
    """

    __slots__ = ()


def json_dumps(value: Any) -> str:
    """The engine's JSON serializer (both backends): one encoding everywhere."""
    if type(value) is EncodedJSON:
        return value
    return json.dumps(value, default=json_default, ensure_ascii=False, separators=(",", ":"))


def encode_json(value: Any) -> EncodedJSON:
    """Canonical JSON text (sorted keys): equal content gives equal text and hash."""
    return EncodedJSON(json.dumps(value, default=json_default, ensure_ascii=False,
                                  separators=(",", ":"), sort_keys=True))


def to_utc(value: datetime) -> datetime:
    """Aware UTC from any datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (UTC).

    Naive input is taken to be UTC (records promise aware UTC; being lenient here beats
    failing a whole page). On SQLite the value is stored naive-UTC so that string ordering
    is time ordering; on PostgreSQL it is a ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = to_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, one fast step straight to SQLAlchemy's own DATETIME text format
        (``isoformat`` is C and gives exactly ``YYYY-MM-DD HH:MM:SS.ffffff``); bulk upserts
        bind millions of timestamps."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, datetime):
                raise TypeError(f"expected a datetime, got {type(value).__name__}")
            if value.tzinfo is not None:
                value = value.astimezone(UTC)
            # The first 26 characters drop the "+00:00" of an aware value.
            return value.isoformat(sep=" ", timespec="microseconds")[:26]

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        """On SQLite, parse the stored UTC text straight into an aware value (one C call;
        the audit reads millions of timestamps)."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: Any) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                try:
                    return datetime.fromisoformat(value + "+00:00")
                except ValueError:  # written with an offset of its own (not by us)
                    value = datetime.fromisoformat(value)
            return to_utc(value)

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return to_utc(value)


#: JSON everywhere, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")
