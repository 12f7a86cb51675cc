"""One page of a CRM's raw payloads into records: the loop every plugin needs.

Each payload is normalized by the plugin's own function; what happens around it is the
same for every CRM and lives here once:

* a payload that is not a JSON object fails the page (``BadPayloadError``);
* with ``problems``, the record is read inside ``syncd.values.reading_record``: a custom
  field value that cannot be read is reported there (tenant, stream, record id, field,
  value) and left empty; the record is kept;
* a record that cannot be read at all goes to the quarantine (``syncd.badrecords.reject``)
  when a pass collects them; otherwise it fails the page, naming CRM, stream and record id
  (redacted);
* a ``None`` result (a payload that is no record of this stream) is left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from syncd.badrecords import reject
from syncd.errors import BadPayloadError
from syncd.secrets import redact
from syncd.values import FieldProblem, reading_record

R = TypeVar("R")

#: What a normalizer raises for a record it cannot read.
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, OverflowError)


def normalize_page(crm: str, stream: str, items: Iterable[Any],
                   normalize: Callable[..., R | None], *args: Any,
                   problems: list[FieldProblem] | None = None, tenant: str | None = None,
                   id_key: str = "id") -> list[R]:
    """``normalize(item, *args)`` for every item of one page (see the module doc).
    ``id_key`` names the payload's id (``"ID"`` for Bitrix24), else ``"id"``."""
    records: list[R] = []
    for item in items:
        if not isinstance(item, Mapping):
            message = f"{crm} {stream}: expected an object, got {type(item).__name__}"
            raise BadPayloadError(message)
        record_id = item.get(id_key, item.get("id"))
        try:
            if problems is None:
                record = normalize(item, *args)
            else:
                with reading_record(problems, stream=stream, record_id=record_id,
                                    tenant=tenant):
                    record = normalize(item, *args)
        except UNREADABLE as exc:
            message = redact(f"{crm} {stream}: record {record_id!r} is malformed: "
                             f"{type(exc).__name__}: {exc}")
            if reject(stream, item if isinstance(item, dict) else dict(item), message):
                continue  # quarantined by the pass; the rest of the page goes on
            raise BadPayloadError(message) from exc
        if record is not None:
            records.append(record)
    return records
