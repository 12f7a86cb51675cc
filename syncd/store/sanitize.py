"""Text the databases accept, on both backends alike, and error texts fit to store.

PostgreSQL rejects U+0000 (NUL) in ``text`` columns and the ``\\u0000`` escape in ``jsonb``;
neither backend can encode an unpaired UTF-16 surrogate (``"\\ud800"`` from a CRM's JSON)
as UTF-8. One rule everywhere, so SQLite and PostgreSQL store the same thing and the same
content hash: each such character becomes U+FFFD (the replacement character "�") in every
text column and in every string (keys included) of a JSON column. The position stays
visible, so a stored raw payload still shows where the CRM sent the bad character.

Stored error texts are cleaned the same way, redacted and bounded (``bounded_error``);
an SQLAlchemy error is described without its SQL statement and parameters
(``describe_error``), which can hold kilobytes of a page's data.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.exc import StatementError

from syncd.secrets import redact
from syncd.store.types import EncodedJSON, encode_json, json_default

REPLACEMENT = "\ufffd"
#: Stored error texts (run rows, tenants, quarantine, write ledger) are cut to this many
#: characters.
MAX_ERROR_CHARS = 2_000
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with NUL and unpaired surrogates replaced by U+FFFD (fast when clean)."""
    if "\x00" in value or (not value.isascii() and not _encodable(value)):
        return _BAD_CHARS.sub(REPLACEMENT, value)
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_json(value: Any) -> Any:
    """A copy of a JSON-able value with every string (and key) cleaned by ``clean_text``."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_json(k) if isinstance(k, str) else k: clean_json(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return value


def encode_clean_json(value: Any) -> tuple[EncodedJSON, bytes]:
    """Canonical JSON text of ``value`` (``encode_json``) with bad characters cleaned, and
    its UTF-8 bytes. Clean payloads cost one search of the bytes for ``\\u0000``."""
    text = encode_json(value)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = b"\\u0000"  # force the clean path below
    if b"\\u0000" in data:
        text = encode_json(clean_json(value))
        data = text.encode("utf-8")
    return text, data


def clean_row_text(row: dict[str, Any]) -> None:
    """Clean the ``str`` values of a row in place (its scalar columns)."""
    for name, value in row.items():
        if type(value) is str:
            cleaned = clean_text(value)
            if cleaned is not value:
                row[name] = cleaned


def describe_error(exc: BaseException) -> str:
    """One line naming what went wrong, never an SQL statement or its parameters."""
    if isinstance(exc, StatementError):
        orig = exc.orig
        if orig is not None:
            detail = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
            return f"database error {type(orig).__name__}: {detail}".rstrip(": ")
        return f"database error {type(exc).__name__}"
    text = str(exc).strip()
    return text or type(exc).__name__


def bounded_error(text: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """An error text fit to store and show: redacted, cleaned, at most ``limit`` chars."""
    if text is None:
        return None
    text = clean_text(redact(text))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def clean_json_text(value: Any) -> Any:
    """``value`` made storable in a JSON column (``clean_json`` only when needed)."""
    text = json.dumps(value, default=json_default, ensure_ascii=False)
    if "\\u0000" in text or not _encodable(text):
        return clean_json(json.loads(json.dumps(value, default=json_default)))
    return value
