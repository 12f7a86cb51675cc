"""Write-back to Bitrix24: UF fields through ``batch``, verified by reading back; to-dos.

* ``ensure_fields`` creates missing fields with ``crm.{deal|company}.userfield.add``
  (``FIELD_NAME`` gets the ``UF_CRM_`` prefix from Bitrix24) and then re-reads the entity's
  fields: a field counts as existing only once the portal lists it.
* ``write_fields`` sends ``crm.{entity}.update`` calls in batches. Bitrix24 answers
  ``true`` to an update naming a field that does not exist (a misspelt ``UF_CRM_*`` code is
  silently ignored), so with ``verify_writes`` each batch carries 49 updates and, last, one
  ``crm.{entity}.list`` of exactly those records: the value read back must equal the value
  written, and the record read back (with its new ``DATE_MODIFY``) is handed to the core,
  so our own write is not taken for a change on the next pull (no echo).
* tasks are universal to-dos (``crm.activity.todo.add``) whose description carries the
  marker; ``find_tasks`` lists the to-dos of the deals and looks for the markers. A create
  that may have reached the portal is re-sent only when that look-up proves it absent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

from syncd.connector import FieldSpec, FieldWrite, TaskCreate, Writer, WriteResult
from syncd.errors import BadPayloadError, FatalAPIError
from syncd.records import Company, Deal, Record
from syncd.secrets import redact
from syncd.values import parse_number
from syncd_bitrix24.client import DEAL_OWNER_TYPE, MAX_BATCH, BatchResult
from syncd_bitrix24.streams import (
    FieldCatalog,
    FieldInfo,
    normalize_company,
    normalize_many,
)

if TYPE_CHECKING:
    from syncd_bitrix24.client import Bitrix24Client
    from syncd_bitrix24.settings import Bitrix24Settings

log = logging.getLogger(__name__)

#: syncd field kinds -> Bitrix24 user field types.
FIELD_TYPES = {"text": "string", "number": "double"}
_NUMERIC = frozenset({"double", "integer", "money"})
SELECT = ["*", "UF_*"]


def field_code(name: str) -> str:
    """``syncd karma`` -> ``SYNCD_KARMA`` (A-Z, 0-9, _; with ``UF_CRM_`` at most 50)."""
    code = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_") or "SYNCD"
    return code[:43]


class Bitrix24Writer(Writer):
    """The write-back half of ``Bitrix24Connector`` (it holds one): UF fields and to-dos."""

    def __init__(self, client: Bitrix24Client, settings: Bitrix24Settings, *,
                 catalog: Callable[[str], FieldCatalog], forget_catalogs: Callable[[], None],
                 deal_records: Callable[[Sequence[Any], FieldCatalog | None], list[Deal]],
                 ) -> None:
        self.client = client
        self.settings = settings
        self.catalog = catalog  # the connector's, read once per pass
        self.forget_catalogs = forget_catalogs  # after a field was created
        self.deal_records = deal_records  # deal rows as the pull makes them records

    # --- fields -------------------------------------------------------------------------
    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        """Create the fields in ``specs`` that the portal does not list yet, then check
        that the portal lists them."""
        created = []
        for spec in specs:
            existing = self.catalog(spec.entity).custom(spec.name)
            if existing is not None:
                if (existing.type in _NUMERIC) != (spec.type == "number"):
                    log.warning("bitrix24 %s field %r is of type %s, syncd writes %s values",
                                spec.entity, spec.name, existing.type, spec.type)
                continue
            code = field_code(spec.name)
            self.client.call(f"crm.{spec.entity}.userfield.add", {"fields": {
                "FIELD_NAME": code, "USER_TYPE_ID": FIELD_TYPES[spec.type],
                "LABEL": spec.name, "EDIT_FORM_LABEL": spec.name,
                "LIST_COLUMN_LABEL": spec.name, "MULTIPLE": "N", "MANDATORY": "N",
                "SHOW_FILTER": "Y"}}, idempotent=False)
            created.append(spec)
            log.info("created bitrix24 %s field %r (UF_CRM_%s)", spec.entity, spec.name, code)
        if not created:
            return
        self.forget_catalogs()
        for spec in created:
            if self.catalog(spec.entity).custom(spec.name) is None:
                message = (f"bitrix24: the {spec.entity} field {spec.name!r} was created but"
                           " the portal does not list it (rights of the webhook's user?)")
                raise FatalAPIError(message)

    def write_fields(self, changes: Sequence[FieldWrite]) -> list[WriteResult]:
        """Apply ``changes`` in batches; one result per change, in order."""
        results: list[WriteResult | None] = [None] * len(changes)
        per_request = MAX_BATCH - 1 if self.settings.verify_writes else MAX_BATCH
        by_entity: dict[str, list[int]] = {}
        for index, change in enumerate(changes):
            by_entity.setdefault(change.entity, []).append(index)
        for entity, indexes in by_entity.items():
            catalog = self.catalog(entity)
            for first in range(0, len(indexes), per_request):
                chunk = indexes[first: first + per_request]
                for index, outcome in zip(chunk, self._write_chunk(
                        entity, catalog, [changes[i] for i in chunk]), strict=True):
                    results[index] = outcome
        return [r if r is not None else WriteResult(ok=False, error="not written")
                for r in results]

    def _write_chunk(self, entity: str, catalog: FieldCatalog,
                     chunk: Sequence[FieldWrite]) -> list[WriteResult]:
        outcomes: list[WriteResult | None] = [None] * len(chunk)
        commands: list[tuple[str, Mapping[str, Any]]] = []
        sent: list[tuple[int, FieldInfo, Any]] = []
        for position, change in enumerate(chunk):
            info = catalog.custom(change.field_name)
            if info is None:
                outcomes[position] = WriteResult(ok=False, error=(
                    f"the portal lists no {entity} field {change.field_name!r}"))
            elif not change.external_id.isdigit():
                outcomes[position] = WriteResult(ok=False, error=(
                    f"{change.external_id!r} is not a Bitrix24 id"))
            else:
                value = _value(info, change.value)
                commands.append((f"crm.{entity}.update", {
                    "id": change.external_id, "fields": {info.key: value},
                    "params": {"REGISTER_SONET_EVENT": "N"}}))
                sent.append((position, info, value))
        if commands:
            verify = self.settings.verify_writes
            if verify:
                commands.append((f"crm.{entity}.list", {
                    "filter": {"@ID": [chunk[p].external_id for p, _, _ in sent]},
                    "select": SELECT, "start": -1}))
            answer = self.client.batch(commands, idempotent=True)
            read_back = _read_back(answer, entity, len(commands) - 1) if verify else None
            records = self._records(entity, list((read_back or {}).values()), catalog)
            for i, (position, info, value) in enumerate(sent):
                outcomes[position] = _judge(entity, chunk[position], info, value,
                                            answer, f"c{i}", read_back, records)
        return [o or WriteResult(ok=False) for o in outcomes]

    def _records(self, entity: str, rows: list[Mapping[str, Any]],
                 catalog: FieldCatalog) -> dict[str, Record]:
        if not rows:
            return {}
        records: list[Deal] | list[Company]
        if entity == "deal":
            records = self.deal_records(rows, catalog)
        else:
            records = normalize_many("companies", rows, lambda r: normalize_company(r, catalog))
        return {r.external_id: r for r in records}

    # --- tasks --------------------------------------------------------------------------
    def find_tasks(self, tasks: Sequence[TaskCreate]) -> dict[str, str]:
        """``marker -> activity id`` for the tasks already created (one list per deal)."""
        found: dict[str, str] = {}
        wanted = {t.marker for t in tasks}
        for _, row in self.client.todos_of_deals(t.deal_id for t in tasks if t.deal_id.isdigit()):
            text = f"{row.get('DESCRIPTION') or ''}\n{row.get('SUBJECT') or ''}"
            for marker in wanted - found.keys():
                if f"[{marker}]" in text:
                    found[marker] = str(row.get("ID"))
        return found

    def create_tasks(self, tasks: Sequence[TaskCreate]) -> list[WriteResult]:
        """One ``crm.activity.todo.add`` per task, 50 per request, never re-sent after the
        request may have reached the portal (only a 503/429 refusal is retried)."""
        results: list[WriteResult] = []
        for first in range(0, len(tasks), MAX_BATCH):
            chunk = tasks[first: first + MAX_BATCH]
            commands = []
            for task in chunk:
                params: dict[str, Any] = {
                    "ownerTypeId": DEAL_OWNER_TYPE, "ownerId": task.deal_id,
                    "title": task.subject, "description": task.marked_note,
                    "deadline": datetime.combine(task.due, time(12, 0)).isoformat(),
                }
                if task.owner_id and task.owner_id.isdigit():
                    params["responsibleId"] = task.owner_id
                commands.append(("crm.activity.todo.add", params))
            bad = {i for i, t in enumerate(chunk) if not t.deal_id.isdigit()}
            answer = self.client.batch([c for i, c in enumerate(commands) if i not in bad],
                                       idempotent=False,
                                       names=[f"c{i}" for i in range(len(chunk)) if i not in bad])
            for i, task in enumerate(chunk):
                name = f"c{i}"
                if i in bad:
                    results.append(WriteResult(ok=False, error=f"{task.deal_id!r} is not a"
                                               " Bitrix24 deal id"))
                    continue
                result = answer.results.get(name)
                crm_id = result.get("id") if isinstance(result, Mapping) else result
                if name in answer.errors or not crm_id:
                    results.append(WriteResult(ok=False, error=redact(
                        f"crm.activity.todo.add for deal {task.deal_id}:"
                        f" {answer.errors.get(name, 'no id returned')}")))
                else:
                    results.append(WriteResult(ok=True, crm_id=str(crm_id)))
        return results


def _read_back(answer: BatchResult, entity: str, index: int) -> dict[str, Mapping[str, Any]]:
    name = f"c{index}"
    rows = answer.results.get(name)
    if not isinstance(rows, list):
        message = (f"bitrix24 crm.{entity}.list (read-back) failed:"
                   f" {answer.errors.get(name, 'no rows')}")
        raise BadPayloadError(message)
    return {str(r.get("ID")): r for r in rows if isinstance(r, Mapping)}


def _judge(entity: str, change: FieldWrite, info: FieldInfo, value: Any, answer: BatchResult,
           name: str, read_back: dict[str, Mapping[str, Any]] | None,
           records: dict[str, Record]) -> WriteResult:
    """One update's outcome: answered ``true``, and (when verifying) the value reads back."""
    if name in answer.errors or answer.results.get(name) is not True:
        error = answer.errors.get(name) or f"unexpected answer {answer.results.get(name)!r}"
        return WriteResult(ok=False, error=redact(
            f"crm.{entity}.update {change.external_id}: {error}"))
    if read_back is None:
        return WriteResult(ok=True)
    row = read_back.get(change.external_id)
    if row is None:
        return WriteResult(ok=False, error=(
            f"{entity} {change.external_id} cannot be read back after the update"))
    if not _same(info, row.get(info.key), value):
        return WriteResult(ok=False, error=(
            f"{entity} {change.external_id}: the portal accepted the update but {info.key}"
            f" reads back {str(row.get(info.key))[:60]!r}; is the field name right?"))
    return WriteResult(ok=True, record=records.get(change.external_id))


def _value(info: FieldInfo, value: str | float | None) -> Any:
    if value is None:
        return ""
    if info.type in _NUMERIC:
        try:
            return repr(float(value))
        except ValueError:
            return str(value)
    return str(value)


def _same(info: FieldInfo, stored: Any, written: Any) -> bool:
    """Whether the value read back is the value written (numbers compared as numbers)."""
    if info.type in _NUMERIC:
        try:
            a, b = parse_number(stored), parse_number(written)
        except (TypeError, ValueError):
            return False
        if a is None or b is None:
            return a is b or (a in (None, 0.0) and b in (None, 0.0))
        return abs(a - b) < 1e-6
    return str(stored or "").replace("\r\n", "\n") == str(written or "").replace("\r\n", "\n")
