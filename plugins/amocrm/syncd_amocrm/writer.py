"""Write-back to amoCRM: custom fields by name in batched PATCHes, marker-tagged tasks.

* Fields are created by name when missing (``POST /api/v4/{leads|companies}/custom_fields``,
  ``is_api_only`` so people cannot overwrite a machine-written value in the UI; needs an
  account admin). Numbers go to a ``numeric`` field, the violations text to a ``textarea``.
* Values are written with one ``PATCH /api/v4/{leads|companies}`` per ``batch_size``
  records (an array of ``{id, custom_fields_values}``). Setting an absolute value is
  idempotent in effect, so those PATCHes are retried like GETs. If amoCRM rejects a batch
  (400 with ``validation-errors``; nothing of it is applied), the batch is bisected
  (``syncd.bisect``): one bad record among 50 costs at most 12 more requests, not 50, and
  fails alone with amoCRM's reason.
* Echoes: a PATCH answers only ``{id, updated_at}``; with ``reread_after_write`` (default)
  the written records are read back (one GET per 250) and returned, so the store holds
  exactly what amoCRM holds and our own write is not a change on the next pull.
* Tasks: ``POST /api/v4/tasks`` takes a batch; each task's ``request_id`` is its marker,
  and the marker is also in the task text, so ``find_tasks`` can find a task whose
  creation was interrupted (a POST that may have reached amoCRM is re-sent only for the
  items the marker look-up proves absent).
  A task batch rejected with ``validation-errors`` created nothing and is bisected too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from syncd.bisect import send_bisecting
from syncd.connector import (
    FieldSpec,
    FieldWrite,
    TaskCreate,
    Writer,
    WriteResult,
    is_item_failure,
)
from syncd.errors import (
    BadPayloadError,
    BlockedError,
    FatalAPIError,
    RetriableAPIError,
)
from syncd.records import Company, Deal, Record
from syncd.secrets import redact
from syncd_amocrm.client import embedded
from syncd_amocrm.streams import (
    ENTITY_PATHS,
    Entity,
    FieldCatalog,
    FieldInfo,
    field_info,
    ident,
    normalize_company,
    normalize_lead,
    normalize_many,
    normalize_task,
    to_unix,
)

if TYPE_CHECKING:
    from syncd_amocrm.client import AmoCRMClient
    from syncd_amocrm.settings import AmoCRMSettings

log = logging.getLogger(__name__)

#: syncd field kinds -> amoCRM field types ("textarea": a violation summary can be long).
FIELD_TYPES = {"text": "textarea", "number": "numeric"}
_NUMERIC_TYPES = frozenset({"numeric", "price", "monetary"})
REREAD_CHUNK = 250
FOLLOW_UP_TASK_TYPE = 1


class AmoCRMWriter(Writer):
    """The write-back half of ``AmoCRMConnector`` (it holds one): fields and tasks."""

    def __init__(self, client: AmoCRMClient, settings: AmoCRMSettings, *,
                 catalog: Callable[[Entity], FieldCatalog],
                 loss_reasons: Callable[[], dict[str, str]]) -> None:
        self.client = client
        self.settings = settings
        self.catalog = catalog  # the connector's, read once per pass
        self.loss_reasons = loss_reasons

    # --- fields ---------------------------------------------------------------------------
    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        """Create the custom fields in ``specs`` that do not exist yet (matched by name)."""
        entities: tuple[Entity, ...] = ("deal", "company")
        for entity in entities:
            catalog = self.catalog(entity)
            missing = []
            for spec in (s for s in specs if s.entity == entity):
                existing = catalog.named(spec.name)
                if existing is None:
                    missing.append(spec)
                elif (existing.type in _NUMERIC_TYPES) != (spec.type == "number"):
                    log.warning("amocrm %s field %r is of type %s, syncd writes %s values",
                                entity, spec.name, existing.type, spec.type)
            if not missing:
                continue
            path = f"/api/v4/{ENTITY_PATHS[entity]}/custom_fields"
            body = [{"name": s.name, "type": FIELD_TYPES[s.type],
                     "is_api_only": self.settings.api_only_fields, "sort": 1000}
                    for s in missing]
            try:
                answer = self.client.call("POST", path, json=body)
            except FatalAPIError as exc:
                if exc.status == 403 and not isinstance(exc, BlockedError):
                    names = ", ".join(repr(s.name) for s in missing)
                    message = (f"{exc}: creating custom fields needs an amoCRM account admin;"
                               f" create {entity} field(s) {names} by hand (numbers: type"
                               " Numeric, text: type Text area) or reconnect as an admin")
                    raise FatalAPIError(message, status=403, url=exc.url) from None
                raise
            created, _ = embedded(answer, "custom_fields", path)
            for definition in created:
                catalog.add(field_info(definition))
                log.info("created amocrm %s field %r (%s)", entity, definition.get("name"),
                         definition.get("type"))

    def write_fields(self, changes: Sequence[FieldWrite]) -> list[WriteResult]:
        """Batched PATCHes per entity; one result per change, in order."""
        results: list[WriteResult | None] = [None] * len(changes)
        by_entity: dict[Entity, list[tuple[int, dict[str, Any]]]] = {}
        for index, change in enumerate(changes):
            item, problem = self._patch_item(change)
            if problem is not None:
                results[index] = WriteResult(ok=False, error=problem)
            else:
                by_entity.setdefault(change.entity, []).append((index, item))
        for entity, items in by_entity.items():
            path = f"/api/v4/{ENTITY_PATHS[entity]}"
            size = self.settings.batch_size
            for first in range(0, len(items), size):
                for index, outcome in self._patch_batch(path, items[first: first + size]):
                    results[index] = outcome
            if self.settings.reread_after_write:
                try:
                    self._attach_records(entity, changes, results)
                except (RetriableAPIError, BadPayloadError) as exc:
                    # The writes are done; only the echo guard is lost (the next pull
                    # re-reads these records). Never report an applied write as failed.
                    log.warning("amocrm: reading back written %s records failed: %s",
                                entity, redact(str(exc)))
        return [r or WriteResult(ok=False, error="not written") for r in results]

    def _patch_item(self, change: FieldWrite) -> tuple[dict[str, Any], str | None]:
        info = self.catalog(change.entity).named(change.field_name)
        if info is None:
            return {}, (f"no {change.entity} field named {change.field_name!r}"
                        " (ensure_fields not called?)")
        if not change.external_id.isdigit():
            return {}, f"{change.external_id!r} is not an amoCRM id"
        try:
            values = _values(info, change.value)
        except ValueError:
            return {}, f"field {change.field_name!r} is numeric; cannot write {change.value!r}"
        return {"id": int(change.external_id),
                "custom_fields_values": [{"field_id": int(info.key), "values": values}]}, None

    def _patch_batch(self, path: str, items: list[tuple[int, dict[str, Any]]],
                     ) -> list[tuple[int, WriteResult]]:
        """PATCH ``items``; a batch rejected for its items is bisected down to the bad ones."""
        def send(batch: list[tuple[int, dict[str, Any]]]) -> list[tuple[int, WriteResult]]:
            self.client.call("PATCH", path, json=[item for _, item in batch], idempotent=True)
            return [(index, WriteResult(ok=True)) for index, _ in batch]

        def failed(pair: tuple[int, dict[str, Any]], exc: Exception,
                   ) -> tuple[int, WriteResult]:
            error = redact(f"record {pair[1].get('id')}: {exc}")
            log.warning("amocrm rejected the write of %s", error)
            return pair[0], WriteResult(ok=False, error=error)

        return send_bisecting(items, send, rejected=is_item_failure, failed=failed,
                              on_split=lambda size, exc: log.info(
                                  "amocrm rejected a batch of %d writes (%s); bisecting",
                                  size, redact(str(exc))))

    def _attach_records(self, entity: Entity, changes: Sequence[FieldWrite],
                        results: list[WriteResult | None]) -> None:
        """Read the written records back so the store holds what amoCRM now holds."""
        wanted = sorted({changes[i].external_id for i, r in enumerate(results)
                         if r is not None and r.ok and changes[i].entity == entity}, key=int)
        records: dict[str, Record] = {}
        for first in range(0, len(wanted), REREAD_CHUNK):
            for record in self._read_records(entity, wanted[first: first + REREAD_CHUNK]):
                records[record.external_id] = record
        for index, result in enumerate(results):
            if result is not None and result.ok and changes[index].entity == entity:
                result.record = records.get(changes[index].external_id)

    def _read_records(self, entity: Entity, ids: list[str]) -> list[Deal | Company]:
        path = f"/api/v4/{ENTITY_PATHS[entity]}"
        params: dict[str, Any] = {"filter[id][]": ids}
        if entity == "deal":
            params["with"] = "contacts,loss_reason"
        catalog = self.catalog(entity)
        normalize = normalize_lead if entity == "deal" else normalize_company
        reasons = self.loss_reasons() if entity == "deal" else None
        stream = "deals" if entity == "deal" else "companies"
        out: list[Deal | Company] = []
        for items in self.client.iter_pages(path, ENTITY_PATHS[entity], params,
                                            limit=REREAD_CHUNK):
            out.extend(normalize_many(stream, items, normalize, catalog, reasons))
        return out

    # --- tasks ----------------------------------------------------------------------------
    def find_tasks(self, tasks: Sequence[TaskCreate]) -> dict[str, str]:
        """``{marker: task id}`` of the tasks in ``tasks`` that already exist in amoCRM
        (their marker is in the task text); tasks of the same leads are read in bulk."""
        markers = {t.marker for t in tasks}
        found: dict[str, str] = {}
        for item in self.client.tasks_of_leads(t.deal_id for t in tasks if t.deal_id.isdigit()):
            text = str(item.get("text") or "")
            for marker in markers - found.keys():
                if f"[{marker}]" in text:  # bracketed: v1 is not v12
                    found[marker] = str(item.get("id"))
        return found

    def create_tasks(self, tasks: Sequence[TaskCreate]) -> list[WriteResult]:
        """Batched ``POST /api/v4/tasks``; one result per task, in order."""
        results: list[WriteResult] = []
        size = self.settings.batch_size
        for first in range(0, len(tasks), size):
            results.extend(self._post_tasks(list(tasks[first: first + size])))
        return results

    def _post_tasks(self, tasks: list[TaskCreate]) -> list[WriteResult]:
        bodies: list[dict[str, Any] | None] = [_task_body(t) for t in tasks]
        results: list[WriteResult | None] = [
            None if b is not None else WriteResult(ok=False, error=f"{t.deal_id!r} is not an"
                                                   " amoCRM lead id")
            for t, b in zip(tasks, bodies, strict=True)]
        sendable = [(i, b) for i, b in enumerate(bodies) if b is not None]

        def failed(pair: tuple[int, dict[str, Any]], exc: Exception,
                   ) -> tuple[int, WriteResult]:
            error = redact(f"task for lead {pair[1].get('entity_id')}: {exc}")
            log.warning("amocrm rejected the %s", error)
            return pair[0], WriteResult(ok=False, error=error)

        # a rejected batch created nothing (validation comes first): bisect to the bad task
        for index, result in send_bisecting(
                sendable, self._post_task_batch, rejected=is_item_failure, failed=failed,
                on_split=lambda size, exc: log.info(
                    "amocrm rejected a batch of %d tasks (%s); bisecting", size,
                    redact(str(exc)))):
            results[index] = result
        return [r or WriteResult(ok=False, error="not created") for r in results]

    def _post_task_batch(self, sendable: list[tuple[int, dict[str, Any]]],
                         ) -> list[tuple[int, WriteResult]]:
        answer = self.client.call("POST", "/api/v4/tasks", json=[b for _, b in sendable])
        created, _ = embedded(answer, "tasks", "/api/v4/tasks")
        by_request = {str(c.get("request_id")): c for c in created}
        out: list[tuple[int, WriteResult]] = []
        for position, (index, body) in enumerate(sendable):
            item = by_request.get(body["request_id"])
            if item is None and position < len(created):
                item = created[position]  # request_id not echoed: answers keep the order
            task_id = ident(item.get("id")) if isinstance(item, dict) else None
            if task_id is None:
                out.append((index, WriteResult(ok=False, error="amoCRM returned no task id")))
                continue
            now = to_unix(datetime.now(UTC))
            record = normalize_task({**body, "id": int(task_id), "is_completed": False,
                                     "created_at": now, "updated_at": now})
            out.append((index, WriteResult(ok=True, crm_id=task_id, record=record)))
        return out


def task_type_id(key: str | None) -> int:
    """amoCRM's ``task_type_id`` of a task type key (``task_4`` or ``4``); without one,
    1 (Follow-up), amoCRM's only standard type besides 2 (Meeting)."""
    text = (key or "").removeprefix("task_")
    return int(text) if text.isdigit() else FOLLOW_UP_TASK_TYPE


def _task_body(task: TaskCreate) -> dict[str, Any] | None:
    if not task.deal_id.isdigit():
        return None
    text = task.marked_note
    if task.subject and not text.startswith(task.subject):
        text = f"{task.subject}\n{text}"
    due = datetime.combine(task.due, time(23, 59), tzinfo=UTC)
    body: dict[str, Any] = {"text": text, "complete_till": to_unix(due),
                            "entity_id": int(task.deal_id), "entity_type": "leads",
                            "task_type_id": task_type_id(task.task_type),
                            "request_id": task.marker}
    if task.owner_id and task.owner_id.isdigit():
        body["responsible_user_id"] = int(task.owner_id)
    return body


def _values(info: FieldInfo, value: str | float | None) -> list[dict[str, Any]] | None:
    """A field's ``values``; ``None`` clears the field (amoCRM's documented way)."""
    if value is None or value == "":
        return None
    if info.type in _NUMERIC_TYPES:
        number = float(value)
        return [{"value": int(number) if number.is_integer() else number}]
    return [{"value": value if isinstance(value, str) else str(value)}]

