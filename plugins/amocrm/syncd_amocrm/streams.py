"""How amoCRM payloads become ``syncd.records``, and the field catalogue by name.

amoCRM specifics handled here:

* statuses 142 (won) and 143 (lost) exist in *every* pipeline, so a stage is always keyed
  ``"<pipeline id>:<status id>"`` (``stage_key``), in stages, deals and stage history;
* ``custom_fields_values`` is ``null`` (not ``[]``) on a record without values, and a
  field's ``values`` can be null or empty: all of that reads as "no value";
* every timestamp is integer Unix seconds (UTC);
* tasks and call notes both become ``Activity`` records: tasks as ``task:<id>`` with the
  type key ``task_<task_type_id>``, call notes as ``note:<entity>:<id>`` with the type key
  ``call_in`` / ``call_out`` (done at their creation time).

Normalizers are strict where it matters: a record whose id or timestamps cannot be read
raises ``BadPayloadError`` naming the stream and the record id, so the page fails and the
cursor stays where it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, TypedDict

from syncd.errors import BadPayloadError
from syncd.fieldcatalog import FieldCatalog as BaseCatalog
from syncd.fieldcatalog import FieldInfo as BaseInfo
from syncd.normalize import normalize_page
from syncd.records import (
    Activity,
    ActivityType,
    Company,
    Contact,
    Deal,
    DealStatus,
    FieldDef,
    Pipeline,
    Record,
    Stage,
    StageChange,
    User,
)
from syncd.values import (
    FieldProblem,
    field_value,
    from_unix,
    parse_datetime,
    parse_id,
    parse_number,
)
from syncd.values import required_id as _required_id

log = logging.getLogger(__name__)

Entity = Literal["deal", "company", "contact"]
WON, LOST = 142, 143
#: amoCRM's collection per syncd entity.
ENTITY_PATHS: dict[Entity, str] = {"deal": "leads", "company": "companies",
                                   "contact": "contacts"}
#: The standard task types every account has (custom ones come from the account).
STANDARD_TASK_TYPES = {1: "Follow-up", 2: "Meeting"}
CALL_NOTE_TYPES = ("call_in", "call_out")
CALL_NOTE_NAMES = {"call_in": "Incoming call", "call_out": "Outgoing call"}
#: The lead's loss reason is also described as a (standard) field, so the catalogue is
#: stored: ``fields`` row ``deal:loss_reason`` with the reasons as options.
LOSS_REASON_KEY = "loss_reason"


# --- small readers -------------------------------------------------------------------------
def stage_key(pipeline_id: Any, status_id: Any) -> str | None:
    """The stage id syncd stores: statuses are only unique within their pipeline."""
    pipeline, status = ident(pipeline_id), ident(status_id)
    if pipeline is None or status is None:
        return None
    return f"{pipeline}:{status}"


def to_unix(value: datetime) -> int:
    return int(value.astimezone(UTC).timestamp())


def ident(value: Any) -> str | None:
    """An amoCRM id (int or numeric string) as a string; 0 and empty mean "none"."""
    if value is False:  # v1 writes false for "no link"
        return None
    return parse_id(value, zero_is_none=True)


required_id = partial(_required_id, read=ident)


def _embedded_ids(payload: Mapping[str, Any], key: str) -> list[str]:
    inner = payload.get("_embedded")
    items = inner.get(key) if isinstance(inner, dict) else None
    if not isinstance(items, list):
        return []
    items = sorted((i for i in items if isinstance(i, dict)),
                   key=lambda i: not i.get("is_main", False))
    return [x for x in (ident(i.get("id")) for i in items) if x is not None]


# --- custom fields --------------------------------------------------------------------------
@dataclass(slots=True)
class FieldInfo(BaseInfo):
    """``key``: the field's numeric id; ``options``: enum id -> value."""

    code: str | None = None
    api_only: bool = False


def field_info(definition: Mapping[str, Any]) -> FieldInfo:
    """One ``/api/v4/{entity}/custom_fields`` definition."""
    field_id, name = ident(definition.get("id")), definition.get("name")
    if field_id is None or not name:
        message = f"custom field definition without id or name: {definition.get('id')!r}"
        raise BadPayloadError(message)
    options = {}
    for enum in definition.get("enums") or ():
        if isinstance(enum, dict) and enum.get("id") is not None:
            options[str(enum["id"])] = str(enum.get("value", ""))
    return FieldInfo(key=field_id, name=str(name), type=str(definition.get("type") or "text"),
                     code=definition.get("code") or None, options=options,
                     api_only=bool(definition.get("is_api_only")), raw=dict(definition))


class FieldCatalog(BaseCatalog[FieldInfo]):
    """The custom field definitions of one entity (``syncd.fieldcatalog``)."""

    crm = "amocrm"

    def read(self, definitions: Iterable[Mapping[str, Any]]) -> Iterable[FieldInfo]:
        return map(field_info, definitions)

    def named(self, name: str) -> FieldInfo | None:
        return self.custom(name)

    def names(self) -> list[str]:
        return list(self._custom_by_name)

    def values(self, custom_fields_values: Any) -> dict[str, Any]:
        """``{field name: readable value}``; ``null`` lists and values are empty."""
        if custom_fields_values is None:
            return {}
        if not isinstance(custom_fields_values, list):
            message = ("custom_fields_values must be a list, got "
                       f"{type(custom_fields_values).__name__}")
            raise TypeError(message)
        out: dict[str, Any] = {}
        for item in custom_fields_values:
            if not isinstance(item, dict):
                continue
            info = self.by_key.get(str(item.get("field_id")))
            name = info.name if info is not None else item.get("field_name")
            if not name or (name in out and out[name] is not None):
                continue
            kind = info.type if info is not None else str(item.get("field_type") or "text")
            out[str(name)] = resolve_values(kind, item.get("values"), str(name))
        return out


_NUMERIC = frozenset({"numeric", "price", "monetary"})
_DATES = frozenset({"date", "date_time", "birthday"})
_MULTI = frozenset({"multiselect", "category", "chained_list"})


def resolve_values(kind: str, values: Any, name: str = "") -> Any:
    """A field's ``values`` list in readable form (select text, numbers, ISO dates)."""
    if not isinstance(values, list) or not values:
        return None
    plain = [v.get("value") if isinstance(v, dict) else v for v in values]
    plain = [v for v in plain if v is not None and v != ""]
    if not plain:
        return None
    if kind in _MULTI:
        return [str(v) for v in plain]
    first = plain[0]
    if kind in _NUMERIC:
        return field_value(parse_number, first, name or kind)
    if kind == "checkbox":
        return first in (True, 1, "1", "true", "Y")
    if kind in _DATES:  # Unix seconds (as the docs say) or a date text
        moment = field_value(lambda v: parse_datetime(v, UTC, numbers="unix"), first,
                             name or kind)
        if moment is None:
            return None
        return moment.date().isoformat() if kind != "date_time" else moment.isoformat()
    if isinstance(first, int | float) and not isinstance(first, bool):
        return str(first)  # a text field read as a number stays text
    return first  # text, or a structured value (address, legal entity) kept as is


# --- normalizers ---------------------------------------------------------------------------
Reasons = Mapping[str, str]  # loss reason id -> name


def lead_status(payload: Mapping[str, Any]) -> DealStatus:
    if payload.get("is_deleted"):
        return "deleted"
    status = ident(payload.get("status_id"))
    if status == str(WON):
        return "won"
    if status == str(LOST):
        return "lost"
    return "open"


def normalize_lead(payload: Mapping[str, Any], catalog: FieldCatalog | None,
                   reasons: Reasons | None = None) -> Deal:
    status = lead_status(payload)
    closed = from_unix(payload.get("closed_at"))
    reason = None
    inner = payload.get("_embedded")
    embedded = inner.get("loss_reason") if isinstance(inner, dict) else None
    if isinstance(embedded, list) and embedded and isinstance(embedded[0], dict):
        reason = embedded[0].get("name")
    reason_id = ident(payload.get("loss_reason_id"))
    if reason is None and reason_id is not None:
        reason = (reasons or {}).get(reason_id, f"loss reason {reason_id}")
    companies = _embedded_ids(payload, "companies")
    values = catalog.values(payload.get("custom_fields_values")) if catalog else {}
    return Deal(
        external_id=required_id(payload),
        title=str(payload.get("name") or ""),
        status=status,
        pipeline_id=ident(payload.get("pipeline_id")),
        stage_id=stage_key(payload.get("pipeline_id"), payload.get("status_id")),
        owner_id=ident(payload.get("responsible_user_id")),
        company_id=companies[0] if companies else None,
        contact_ids=_embedded_ids(payload, "contacts"),
        value=parse_number(payload.get("price")) or 0.0,
        created_at=from_unix(payload.get("created_at")),
        updated_at=from_unix(payload.get("updated_at")),
        won_at=closed if status == "won" else None,
        lost_at=closed if status == "lost" else None,
        lost_reason=reason if status == "lost" else None,
        fields=values,
        raw=dict(payload),
    )


def normalize_company(payload: Mapping[str, Any], catalog: FieldCatalog | None,
                      reasons: Reasons | None = None) -> Company:
    return Company(
        external_id=required_id(payload),
        name=str(payload.get("name") or ""),
        owner_id=ident(payload.get("responsible_user_id")),
        created_at=from_unix(payload.get("created_at")),
        updated_at=from_unix(payload.get("updated_at")),
        deleted=bool(payload.get("is_deleted")),
        fields=catalog.values(payload.get("custom_fields_values")) if catalog else {},
        raw=dict(payload),
    )


def normalize_contact(payload: Mapping[str, Any], catalog: FieldCatalog | None,
                      reasons: Reasons | None = None) -> Contact:
    companies = _embedded_ids(payload, "companies")
    return Contact(
        external_id=required_id(payload),
        name=str(payload.get("name") or ""),
        company_id=companies[0] if companies else None,
        owner_id=ident(payload.get("responsible_user_id")),
        created_at=from_unix(payload.get("created_at")),
        updated_at=from_unix(payload.get("updated_at")),
        deleted=bool(payload.get("is_deleted")),
        fields=catalog.values(payload.get("custom_fields_values")) if catalog else {},
        raw=dict(payload),
    )


class _Links(TypedDict):
    """The record an activity is attached to (amoCRM's ``entity_type`` + ``entity_id``)."""

    deal_id: str | None
    company_id: str | None
    contact_id: str | None


_LINKS: dict[str, Literal["deal_id", "company_id", "contact_id"]] = {
    "leads": "deal_id", "companies": "company_id", "contacts": "contact_id"}


def _links(entity_type: Any, entity_id: Any) -> _Links:
    links: _Links = {"deal_id": None, "company_id": None, "contact_id": None}
    key = _LINKS.get(str(entity_type or ""))
    if key is not None:
        links[key] = ident(entity_id)
    return links


def task_type_key(task_type_id: Any) -> str:
    return f"task_{ident(task_type_id) or 1}"


def normalize_task(payload: Mapping[str, Any], catalog: FieldCatalog | None = None,
                   reasons: Reasons | None = None) -> Activity:
    done = bool(payload.get("is_completed"))
    due = from_unix(payload.get("complete_till"))
    updated = from_unix(payload.get("updated_at"))
    result = payload.get("result")
    result_text = result.get("text") if isinstance(result, dict) else None
    text = str(payload.get("text") or "")
    return Activity(
        external_id=f"task:{required_id(payload)}",
        type=task_type_key(payload.get("task_type_id")),
        subject=text.split("\n", 1)[0][:255],
        done=done,
        due_at=due,
        due_date=due.date() if due else None,
        done_at=updated if done else None,
        owner_id=ident(payload.get("responsible_user_id")),
        created_at=from_unix(payload.get("created_at")),
        updated_at=updated,
        note="\n\n".join(t for t in (text, str(result_text or "")) if t),
        raw=dict(payload),
        **_links(payload.get("entity_type"), payload.get("entity_id")),
    )


def normalize_call_note(payload: Mapping[str, Any], entity_type: str) -> Activity:
    kind = payload.get("note_type")
    if kind not in CALL_NOTE_TYPES:
        message = f"not a call note: {kind!r}"
        raise ValueError(message)
    params = payload.get("params") if isinstance(payload.get("params"), dict) else {}
    created = from_unix(payload.get("created_at"))
    phone = params.get("phone") if isinstance(params, dict) else None
    subject = CALL_NOTE_NAMES[kind] + (f" {phone}" if phone else "")
    return Activity(
        external_id=f"note:{entity_type}:{required_id(payload)}",
        type=str(kind),
        subject=subject,
        done=True,
        due_at=created,
        due_date=created.date() if created else None,
        done_at=created,
        owner_id=ident(payload.get("responsible_user_id") or payload.get("created_by")),
        created_at=created,
        updated_at=from_unix(payload.get("updated_at")) or created,
        note=str(params.get("result") or "") if isinstance(params, dict) else "",
        raw=dict(payload),
        **_links(entity_type, payload.get("entity_id")),
    )


def normalize_user(payload: Mapping[str, Any], catalog: FieldCatalog | None = None,
                   reasons: Reasons | None = None) -> User:
    rights = payload.get("rights") if isinstance(payload.get("rights"), dict) else {}
    active = rights.get("is_active", True) if isinstance(rights, dict) else True
    return User(external_id=required_id(payload), name=str(payload.get("name") or ""),
                email=payload.get("email") or None, active=bool(active), raw=dict(payload))


def pipelines_and_stages(items: Sequence[Any]) -> tuple[list[Pipeline], list[Stage]]:
    """``/api/v4/leads/pipelines`` items with their embedded statuses."""
    pipelines, stages = [], []
    for item in items:
        pipeline_id = required_id(item)
        pipelines.append(Pipeline(external_id=pipeline_id, name=str(item.get("name") or ""),
                                  raw={k: v for k, v in item.items() if k != "_embedded"}))
        inner = item.get("_embedded")
        statuses = inner.get("statuses") if isinstance(inner, dict) else None
        for status in statuses or ():
            if not isinstance(status, dict):
                continue
            key = stage_key(pipeline_id, status.get("id"))
            if key is None:
                message = f"pipeline {pipeline_id}: status without id"
                raise ValueError(message)
            stages.append(Stage(external_id=key, pipeline_id=pipeline_id,
                                name=str(status.get("name") or ""),
                                order=int(parse_number(status.get("sort")) or 0), raw=dict(status)))
    return pipelines, stages


def activity_types(task_types: Iterable[Any]) -> list[ActivityType]:
    """The account's task types (``task_<id>``) and the two call note types."""
    found = {task_type_key(i): name for i, name in STANDARD_TASK_TYPES.items()}
    for item in task_types:
        if isinstance(item, dict) and ident(item.get("id")) is not None:
            found[task_type_key(item["id"])] = str(item.get("name") or item["id"])
    types = [ActivityType(key=k, name=v) for k, v in found.items()]
    types += [ActivityType(key=k, name=CALL_NOTE_NAMES[k]) for k in CALL_NOTE_TYPES]
    return types


def loss_reason_field(reasons: Mapping[str, str]) -> FieldDef:
    return FieldDef(entity="deal", key=LOSS_REASON_KEY, name="Loss reason", type="select",
                    options=dict(reasons), custom=False)


def _event_status(values: Any) -> str | None:
    if not isinstance(values, list):
        return None
    for value in values:
        status = value.get("lead_status") if isinstance(value, dict) else None
        if isinstance(status, dict):
            return stage_key(status.get("pipeline_id"), status.get("id"))
    return None


def stage_change(event: Mapping[str, Any]) -> StageChange | None:
    """A ``lead_status_changed`` (or ``lead_added``) event as a stage transition; other
    events, and ``lead_added`` without a status, give ``None``."""
    if event.get("entity_type") not in (None, "lead"):
        return None
    to_stage = _event_status(event.get("value_after"))
    if to_stage is None:
        if event.get("type") == "lead_status_changed":
            message = f"status change event {event.get('id')!r} without value_after status"
            raise ValueError(message)
        return None
    at = from_unix(event.get("created_at"))
    if at is None:
        message = f"event {event.get('id')!r} without created_at"
        raise ValueError(message)
    from_stage = None
    if event.get("type") == "lead_status_changed":
        from_stage = _event_status(event.get("value_before"))
    return StageChange(external_id=str(event.get("id") or ""), deal_id=required_id(
        event, "entity_id"), from_stage_id=from_stage, to_stage_id=to_stage, at=at,
        raw=dict(event))


# --- page helpers --------------------------------------------------------------------------
Normalizer = Callable[[Mapping[str, Any], FieldCatalog | None, Reasons | None], Record]


def normalize_many(stream: str, items: Sequence[Any], normalize: Callable[..., Any],
                   *args: Any, problems: list[FieldProblem] | None = None,
                   tenant: str | None = None) -> list[Any]:
    """A page of amoCRM payloads (``syncd.normalize.normalize_page``)."""
    return normalize_page("amocrm", stream, items, normalize, *args, problems=problems,
                          tenant=tenant)


@dataclass(frozen=True)
class EntityStream:
    """An incremental list read in ``updated_at`` order."""

    name: str
    path: str
    key: str  # the ``_embedded`` key
    normalize: Normalizer
    entity: Entity | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


ENTITY_STREAMS: dict[str, EntityStream] = {
    "companies": EntityStream("companies", "/api/v4/companies", "companies",
                              normalize_company, "company"),
    "contacts": EntityStream("contacts", "/api/v4/contacts", "contacts", normalize_contact,
                             "contact"),  # a contact's companies are embedded by default
    "deals": EntityStream("deals", "/api/v4/leads", "leads", normalize_lead, "deal",
                          {"with": "contacts,loss_reason"}),
}
TASKS = EntityStream("activities", "/api/v4/tasks", "tasks", normalize_task)
#: Where call notes live (calls are logged on leads, contacts and companies).
NOTE_PATHS = {"leads": "/api/v4/leads/notes", "contacts": "/api/v4/contacts/notes",
              "companies": "/api/v4/companies/notes"}
EVENTS_PATH = "/api/v4/events"
EVENTS_PAGE = 100  # the Russian docs cap events at 100 per page
EVENT_TYPES = "lead_added,lead_status_changed"
