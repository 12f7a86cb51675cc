"""Write-back to Pipedrive: custom fields by name, one PATCH per record, marker-tagged tasks.

Pipedrive has no bulk update, so every field write is one ``PATCH /api/v2/{entity}/{id}``
with ``{"custom_fields": {hash: value}}``. Setting an absolute value is idempotent in effect,
so those PATCHes are retried like GETs. Creating a task is not: the POST is retried only on
429 (rejected before processing), and ``find_task`` looks for the task's marker in the notes
of the deal's activities so an interrupted create can be recovered instead of repeated.

Field creation uses v1 (``POST /v1/dealFields`` / ``/v1/organizationFields`` with ``name``
and ``field_type``): the v2 field endpoints (2025-12) are used for reading, but their create
body is not documented in our notes, and v1 field creation is not among the endpoints out of
support.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from syncd.connector import (
    FieldSpec,
    FieldWrite,
    TaskCreate,
    Writer,
    WriteResult,
    is_item_failure,
)
from syncd.errors import (
    APIError,
    BadPayloadError,
)
from syncd.fieldcatalog import FieldInfo
from syncd.records import Record
from syncd.secrets import redact
from syncd_pipedrive.streams import (
    Entity,
    FieldCatalog,
    field_info,
    normalize_activity,
    normalize_company,
    normalize_deal,
    normalize_many,
)

if TYPE_CHECKING:
    from syncd_pipedrive.client import PipedriveClient

log = logging.getLogger(__name__)

#: Where custom fields are created (v1) and records patched (v2), per writable entity.
CREATE_FIELD_PATHS = {"deal": "/v1/dealFields", "company": "/v1/organizationFields"}
RECORD_PATHS = {"deal": "/api/v2/deals", "company": "/api/v2/organizations"}
#: syncd field kinds -> Pipedrive field types. "text" is Pipedrive's large text (~65k
#: characters): a violation summary can be longer than a 255-character varchar.
FIELD_TYPES = {"text": "text", "number": "double"}
_NUMERIC_TYPES = frozenset({"double", "monetary"})
class PipedriveWriter(Writer):
    """The write-back half of ``PipedriveConnector`` (it holds one): one PATCH per write."""

    def __init__(self, client: PipedriveClient, *,
                 catalog: Callable[[Entity], FieldCatalog]) -> None:
        self.client = client
        self.catalog = catalog  # the connector's, read once per pass

    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        """Create the custom fields in ``specs`` that do not exist yet (matched by name)."""
        for spec in specs:
            catalog = self.catalog(spec.entity)
            wanted = FIELD_TYPES[spec.type]
            existing = catalog.custom(spec.name)
            if existing is not None:
                if (existing.type in _NUMERIC_TYPES) != (wanted in _NUMERIC_TYPES):
                    log.warning("pipedrive %s field %r is of type %s, syncd writes %s values",
                                spec.entity, spec.name, existing.type, spec.type)
                continue
            data = self.client.call("POST", CREATE_FIELD_PATHS[spec.entity],
                                    json={"name": spec.name, "field_type": wanted})
            if not isinstance(data, dict):
                message = f"pipedrive: creating field {spec.name!r} returned no field"
                raise BadPayloadError(message)
            info = field_info({**data, "is_custom_field": True})
            catalog.add(info)
            log.info("created pipedrive %s field %r (%s)", spec.entity, spec.name, wanted)

    def write_field(self, change: FieldWrite) -> WriteResult:
        """PATCH one custom field to an absolute value; return the record as saved."""
        catalog = self.catalog(change.entity)
        info = catalog.custom(change.field_name)
        if info is None:
            return WriteResult(ok=False, error=f"no {change.entity} field named "
                               f"{change.field_name!r} (ensure_fields not called?)")
        if not change.external_id.isdigit():
            return WriteResult(ok=False, error=f"{change.external_id!r} is not a Pipedrive id")
        try:
            value = _coerce(info, change.value)
        except ValueError:
            return WriteResult(ok=False, error=f"field {change.field_name!r} is numeric; "
                               f"cannot write {change.value!r}")
        path = f"{RECORD_PATHS[change.entity]}/{int(change.external_id)}"
        try:
            data = self.client.call("PATCH", path, json={"custom_fields": {info.key: value}},
                                    idempotent=True)
        except APIError as exc:
            if is_item_failure(exc):
                return WriteResult(ok=False, error=redact(str(exc)))
            raise
        return WriteResult(ok=True, record=self._saved_record(change.entity, data, catalog))

    def find_task(self, task: TaskCreate) -> str | None:
        """The id of a task of ``task.deal_id`` whose note carries ``task.marker``."""
        if not task.deal_id.isdigit():
            return None
        params = {"deal_id": int(task.deal_id)}
        for items in self.client.iter_v2("/api/v2/activities", params):
            for item in items:
                if not isinstance(item, dict) or item.get("is_deleted"):
                    continue
                if f"[{task.marker}]" in str(item.get("note") or ""):  # v1 is not v12
                    return str(item.get("id"))
        return None

    def create_task(self, task: TaskCreate) -> WriteResult:
        """POST one task activity (re-sent only when the marker look-up proves it absent)."""
        if not task.deal_id.isdigit():
            return WriteResult(ok=False, error=f"{task.deal_id!r} is not a Pipedrive deal id")
        body: dict[str, Any] = {
            "subject": task.subject,
            "type": task.task_type or "task",
            "deal_id": int(task.deal_id),
            "due_date": task.due.isoformat(),
            "note": task.marked_note,
        }
        if task.owner_id and task.owner_id.isdigit():
            body["owner_id"] = int(task.owner_id)
        try:
            data = self.client.call("POST", "/api/v2/activities", json=body)
        except APIError as exc:
            if is_item_failure(exc):
                return WriteResult(ok=False, error=redact(str(exc)))
            raise
        record = normalize_many("activities", [data], normalize_activity)[0]
        return WriteResult(ok=True, crm_id=record.external_id, record=record)

    def _saved_record(self, entity: str, data: Any, catalog: FieldCatalog) -> Record | None:
        if not isinstance(data, dict):
            return None
        normalize = normalize_deal if entity == "deal" else normalize_company
        stream = "deals" if entity == "deal" else "companies"
        return normalize_many(stream, [data], normalize, catalog)[0]


def _coerce(info: FieldInfo, value: str | float | None) -> Any:
    """v2 rejects numbers sent as strings: send numeric fields as numbers."""
    if value is None or value == "":
        return None
    if info.type in _NUMERIC_TYPES:
        return float(value)
    return value if isinstance(value, str) else str(value)
