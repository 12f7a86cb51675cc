"""What each Pipedrive stream is, and how its payloads become ``syncd.records``.

One short declaration per entity stream (path, fixed parameters, field catalog, normalizer),
the field catalog that turns 40-char hash keys into field *names*, and the normalizers.
Normalizers are strict where it matters: a record whose id, timestamps or numbers cannot be
read raises ``BadPayloadError`` naming the stream and the record id, so the page fails and
the cursor stays where it was (a record is never skipped silently).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import partial
from typing import Any, Literal, TypeGuard, TypeVar

from syncd.errors import BadPayloadError
from syncd.fieldcatalog import FieldCatalog as BaseCatalog
from syncd.fieldcatalog import FieldInfo
from syncd.normalize import normalize_page
from syncd.records import (
    Activity,
    ActivityType,
    Company,
    Contact,
    Deal,
    Pipeline,
    Record,
    Stage,
    StageChange,
    User,
)
from syncd.streams import version_key
from syncd.values import (
    FieldProblem,
    field_value,
    parse_date,
    parse_datetime,
    parse_flag,
    parse_id,
    parse_number,
)
from syncd.values import required_id as _required_id

log = logging.getLogger(__name__)

Entity = Literal["deal", "company", "contact"]

#: Field definition endpoints (v2, cursor-paged) per entity.
FIELD_PATHS: dict[Entity, str] = {
    "deal": "/api/v2/dealFields",
    "company": "/api/v2/organizationFields",
    "contact": "/api/v2/personFields",
}
#: Deal statuses to list: every status, including deals deleted within the last 30 days
#: (they come back with status "deleted" and end up in ``Page.deleted_ids``).
DEAL_STATUSES = "open,won,lost,deleted"
FLOW_PATH = "/v1/deals/{id}/flow"
#: Tokens one flow request costs: a v1 list (Pipedrive's cost table: "list 20"); at this
#: cost 70,000 flows are the 1.41 M tokens measured in issue 13.
FLOW_TOKENS = 20
#: Deals whose stage history is fetched per Page of the ``stage_history`` stream.
HISTORY_BATCH = 50


# --- small readers -------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """v2 RFC 3339 (``...Z``) or v1 ``YYYY-MM-DD HH:MM:SS`` (UTC, no offset) -> aware UTC."""
    if value is not None and not isinstance(value, str):
        message = f"timestamp must be a string, got {value!r}"
        raise TypeError(message)
    return parse_datetime(value, UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, second precision (what Pipedrive v2 accepts)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ident(value: Any) -> str | None:
    """Any Pipedrive id (int, numeric string, v1 ``{value: id}`` object) as a string."""
    if isinstance(value, dict):
        return ident(value.get("value", value.get("id")))
    if value is False:  # v1 writes false for "no link"
        return None
    return parse_id(value)


required_id = partial(_required_id, read=ident)


# --- custom fields --------------------------------------------------------------------------
class FieldCatalog(BaseCatalog[FieldInfo]):
    """The field definitions of one entity (``syncd.fieldcatalog``), v2 or v1."""

    crm = "pipedrive"

    def read(self, definitions: Iterable[Mapping[str, Any]]) -> Iterable[FieldInfo]:
        return map(field_info, definitions)

    def values(self, custom_fields: Any) -> dict[str, Any]:
        """``{field name: readable value}`` from a v2 ``custom_fields`` object."""
        if custom_fields is None:
            return {}
        if not isinstance(custom_fields, dict):
            message = f"custom_fields must be an object, got {type(custom_fields).__name__}"
            raise TypeError(message)
        out: dict[str, Any] = {}
        for key, value in custom_fields.items():
            info = self.by_key.get(key)
            if info is None:
                continue  # a field created after we read the definitions: stays in raw
            if info.name in out and out[info.name] is not None:
                continue  # duplicate name: the first field wins, like ``custom()``
            out[info.name] = resolve_value(info, value)
        return out

    def standard(self, code: str, default_name: str) -> str:
        info = self.by_key.get(code)
        return info.name if info is not None else default_name


def field_info(definition: Mapping[str, Any]) -> FieldInfo:
    """A v2 field definition (``field_code``/``field_name``) or v1 one (``key``/``name``)."""
    key = definition.get("field_code") or definition.get("key")
    name = definition.get("field_name") or definition.get("name")
    if not key or not name:
        message = f"field definition without code or name: {definition.get('id')!r}"
        raise BadPayloadError(message)
    options: dict[str, str] = {}
    for option in definition.get("options") or ():
        if isinstance(option, dict) and option.get("id") is not None:
            options[str(option["id"])] = str(option.get("label", ""))
    custom = definition.get("is_custom_field")
    if custom is None:
        custom = definition.get("edit_flag", len(str(key)) == 40)
    return FieldInfo(key=str(key), name=str(name), type=str(definition.get("field_type") or
                     "varchar"), custom=bool(custom), options=options, raw=dict(definition))


def resolve_value(info: FieldInfo, value: Any) -> Any:
    """A custom field value in readable form: option labels, plain numbers, ISO dates."""
    if value is None or value == "":
        return None
    kind = info.type
    if kind == "enum":
        option = value.get("id") if isinstance(value, dict) else value
        return info.options.get(str(option).strip(), str(option))
    if kind == "set":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            items = [items]
        return [info.options.get(str(i).strip(), str(i).strip()) for i in items]
    if kind == "monetary":
        inner = value.get("value") if isinstance(value, dict) else value
        return field_value(parse_number, inner, info.name)
    if kind == "double":
        return field_value(parse_number, value, info.name)
    if kind == "date":
        return _iso(field_value(parse_date, value, info.name))
    if kind in {"user", "org", "people"}:
        return ident(value)
    if kind == "address" and isinstance(value, dict):
        return value.get("formatted_address") or value.get("value")
    return value


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


# --- normalizers ---------------------------------------------------------------------------
def _fields(payload: Mapping[str, Any], catalog: FieldCatalog | None,
            extras: Mapping[str, str]) -> dict[str, Any]:
    """Custom fields by name, plus notable standard fields under their (account's) names."""
    values = catalog.values(payload.get("custom_fields")) if catalog is not None else {}
    for code, default_name in extras.items():
        if code not in payload:
            continue
        value = payload[code]
        if isinstance(value, list):  # v2 emails/phones: [{value, primary, label}]
            primary = next((v for v in value if isinstance(v, dict) and v.get("primary")),
                           value[0] if value else None)
            value = primary.get("value") if isinstance(primary, dict) else primary
        elif isinstance(value, dict):
            value = value.get("formatted_address") or value.get("value")
        name = catalog.standard(code, default_name) if catalog is not None else default_name
        values.setdefault(name, value)
    return values


DEAL_EXTRAS = {"expected_close_date": "Expected close date", "probability": "Probability"}
COMPANY_EXTRAS = {"address": "Address"}
CONTACT_EXTRAS = {"emails": "Email", "phones": "Phone", "job_title": "Job title"}
DEAL_STATUS_VALUES = frozenset({"open", "won", "lost", "deleted"})


def normalize_deal(payload: Mapping[str, Any], catalog: FieldCatalog | None) -> Deal:
    status = payload.get("status")
    if parse_flag(payload.get("is_deleted")):
        status = "deleted"
    if status not in DEAL_STATUS_VALUES:
        message = f"unknown deal status {status!r}"
        raise ValueError(message)
    person = ident(payload.get("person_id"))
    value = parse_number(payload.get("value"))
    return Deal(
        external_id=required_id(payload),
        title=str(payload.get("title") or ""),
        status=status,
        pipeline_id=ident(payload.get("pipeline_id")),
        stage_id=ident(payload.get("stage_id")),
        owner_id=ident(payload.get("owner_id", payload.get("user_id"))),
        company_id=ident(payload.get("org_id")),
        contact_ids=[person] if person else [],
        value=value or 0.0,
        currency=payload.get("currency") or None,
        created_at=parse_time(payload.get("add_time")),
        updated_at=parse_time(payload.get("update_time")),
        stage_changed_at=parse_time(payload.get("stage_change_time")),
        won_at=parse_time(payload.get("won_time")),
        lost_at=parse_time(payload.get("lost_time")),
        lost_reason=payload.get("lost_reason"),
        fields=_fields(payload, catalog, DEAL_EXTRAS),
        raw=dict(payload),
    )


def normalize_company(payload: Mapping[str, Any], catalog: FieldCatalog | None) -> Company:
    return Company(
        external_id=required_id(payload),
        name=str(payload.get("name") or ""),
        owner_id=ident(payload.get("owner_id")),
        created_at=parse_time(payload.get("add_time")),
        updated_at=parse_time(payload.get("update_time")),
        deleted=parse_flag(payload.get("is_deleted")),
        fields=_fields(payload, catalog, COMPANY_EXTRAS),
        raw=dict(payload),
    )


def normalize_contact(payload: Mapping[str, Any], catalog: FieldCatalog | None) -> Contact:
    return Contact(
        external_id=required_id(payload),
        name=str(payload.get("name") or ""),
        company_id=ident(payload.get("org_id")),
        owner_id=ident(payload.get("owner_id")),
        created_at=parse_time(payload.get("add_time")),
        updated_at=parse_time(payload.get("update_time")),
        deleted=parse_flag(payload.get("is_deleted")),
        fields=_fields(payload, catalog, CONTACT_EXTRAS),
        raw=dict(payload),
    )


def _due_at(due: date | None, due_time: Any) -> datetime | None:
    if due is None:
        return None
    clock = time(0, 0)
    if due_time:
        clock = time.fromisoformat(str(due_time).strip())
    return datetime.combine(due, clock, tzinfo=UTC)


def _primary_participant(payload: Mapping[str, Any]) -> str | None:
    participants = payload.get("participants") or []
    if not isinstance(participants, list):
        return None
    chosen = next((p for p in participants if isinstance(p, dict) and p.get("primary")), None)
    if chosen is None and participants and isinstance(participants[0], dict):
        chosen = participants[0]
    return ident(chosen.get("person_id")) if chosen else None


def normalize_activity(payload: Mapping[str, Any], catalog: FieldCatalog | None = None,
                       ) -> Activity:
    kind = payload.get("type")
    if not isinstance(kind, str) or not kind:
        message = f"activity without a type: {kind!r}"
        raise ValueError(message)
    due = parse_date(payload.get("due_date"))
    done = parse_flag(payload.get("done"))
    return Activity(
        external_id=required_id(payload),
        type=kind,
        subject=str(payload.get("subject") or ""),
        done=done,
        due_at=_due_at(due, payload.get("due_time")),
        due_date=due,
        done_at=parse_time(payload.get("marked_as_done_time")) if done else None,
        deal_id=ident(payload.get("deal_id")),
        company_id=ident(payload.get("org_id")),
        contact_id=ident(payload.get("person_id")) or _primary_participant(payload),
        owner_id=ident(payload.get("owner_id", payload.get("user_id"))),
        created_at=parse_time(payload.get("add_time")),
        updated_at=parse_time(payload.get("update_time")),
        deleted=parse_flag(payload.get("is_deleted")),
        note=str(payload.get("note") or ""),
        raw=dict(payload),
    )


def normalize_user(payload: Mapping[str, Any], catalog: FieldCatalog | None = None) -> User:
    return User(
        external_id=required_id(payload),
        name=str(payload.get("name") or ""),
        email=payload.get("email") or None,
        active=parse_flag(payload.get("active_flag", True)),
        raw=dict(payload),
    )


def normalize_pipeline(payload: Mapping[str, Any], catalog: FieldCatalog | None = None,
                       ) -> Pipeline:
    return Pipeline(external_id=required_id(payload), name=str(payload.get("name") or ""),
                    raw=dict(payload))


def normalize_stage(payload: Mapping[str, Any], catalog: FieldCatalog | None = None) -> Stage:
    pipeline = ident(payload.get("pipeline_id"))
    if pipeline is None:
        message = "stage without pipeline_id"
        raise ValueError(message)
    return Stage(
        external_id=required_id(payload),
        pipeline_id=pipeline,
        name=str(payload.get("name") or ""),
        order=int(parse_number(payload.get("order_nr")) or 0),
        raw=dict(payload),
    )


def normalize_activity_type(payload: Mapping[str, Any], catalog: FieldCatalog | None = None,
                            ) -> ActivityType:
    key = payload.get("key_string")
    if not key:
        message = "activity type without key_string"
        raise ValueError(message)
    return ActivityType(key=str(key), name=str(payload.get("name") or key),
                        active=parse_flag(payload.get("active_flag", True)))


Normalizer = Callable[[Mapping[str, Any], FieldCatalog | None], Record]
R = TypeVar("R", bound=Record)


def normalize_many(stream: str, items: Sequence[Any],
                   normalize: Callable[[Mapping[str, Any], FieldCatalog | None], R],
                   catalog: FieldCatalog | None = None, *,
                   problems: list[FieldProblem] | None = None,
                   tenant: str | None = None) -> list[R]:
    """A page of Pipedrive payloads (``syncd.normalize.normalize_page``); every normalizer
    takes the entity's field catalog."""
    return normalize_page("pipedrive", stream, items, normalize, catalog, problems=problems,
                          tenant=tenant)


def stage_changes(deal_id: str, rows: Iterable[Any], *,
                  current_stage: str | None = None) -> list[StageChange]:
    """Stage transitions of one deal from its v1 flow, oldest first.

    Kept: ``object == "dealChange"`` rows whose ``data.field_key == "stage_id"``
    (``old_value``/``new_value`` are strings; ``log_time`` is v1 UTC). The flow's creation
    row (``field_key == "add_time"``) becomes a transition from ``None`` into the deal's
    first stage (the ``old_value`` of its earliest stage change, else its current stage),
    with external id ``add-<row id>``.
    """
    changes: list[StageChange] = []
    created: tuple[Any, Mapping[str, Any]] | None = None
    for row in rows:
        if not isinstance(row, dict) or row.get("object") != "dealChange":
            continue
        data = row.get("data")
        if not isinstance(data, dict):
            message = "dealChange row without data"
            raise TypeError(message)
        item = ident(data.get("item_id"))
        if item is not None and item != deal_id:
            continue
        key = data.get("field_key")
        if key == "stage_id":
            at = parse_time(data.get("log_time") or row.get("timestamp"))
            to_stage = ident(data.get("new_value"))
            if at is None or to_stage is None:
                message = f"stage change {data.get('id')!r} without time or new stage"
                raise ValueError(message)
            changes.append(StageChange(
                external_id=required_id(data), deal_id=deal_id,
                from_stage_id=ident(data.get("old_value")), to_stage_id=to_stage, at=at,
                raw=dict(row),
            ))
        elif key == "add_time":
            created = (row, data)
    changes.sort(key=lambda c: (c.at, _sort_id(c.external_id)))
    if created is not None:
        row, data = created
        first = changes[0].from_stage_id if changes else current_stage
        at = parse_time(data.get("log_time") or row.get("timestamp"))
        if first is not None and at is not None:
            changes.insert(0, StageChange(
                external_id=f"add-{required_id(data)}", deal_id=deal_id, from_stage_id=None,
                to_stage_id=first, at=at, raw=dict(row),
            ))
    return changes


def _sort_id(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (0, value)


# --- declarations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EntityStream:
    """An incremental v2 list, sorted ascending by ``update_time``."""

    name: str
    path: str
    normalize: Normalizer
    entity: Entity | None = None  # whose field catalog resolves custom fields
    params: Mapping[str, str] = field(default_factory=dict)


ENTITY_STREAMS: dict[str, EntityStream] = {
    "companies": EntityStream("companies", "/api/v2/organizations", normalize_company,
                              "company"),
    "contacts": EntityStream("contacts", "/api/v2/persons", normalize_contact, "contact"),
    "deals": EntityStream("deals", "/api/v2/deals", normalize_deal, "deal",
                          {"status": DEAL_STATUSES}),
    "activities": EntityStream("activities", "/api/v2/activities", normalize_activity),
}
ARCHIVED_DEALS_PATH = "/api/v2/deals/archived"


@dataclass(frozen=True)
class ReferenceStream:
    """A small list pulled whole every pass (no cursor)."""

    name: str
    path: str
    normalize: Normalizer
    paged: bool = True  # v2 cursor-paged; False: one v1 request


REFERENCE_STREAMS: dict[str, ReferenceStream] = {
    "users": ReferenceStream("users", "/v1/users", normalize_user, paged=False),
    "pipelines": ReferenceStream("pipelines", "/api/v2/pipelines", normalize_pipeline),
    "stages": ReferenceStream("stages", "/api/v2/stages", normalize_stage),
    "activity_types": ReferenceStream("activity_types", "/v1/activityTypes",
                                      normalize_activity_type, paged=False),
}


#: A v2 item's identity and version (``id``, ``update_time``) for the compound cursor.
item_key = version_key("id", "update_time", ident, parse_time)


def is_deleted(record: Record) -> TypeGuard[Deal | Company | Contact | Activity]:
    """A deal whose status is deleted, or a record flagged deleted (only those four have
    either)."""
    if isinstance(record, Deal):
        return record.status == "deleted"
    return bool(getattr(record, "deleted", False))
