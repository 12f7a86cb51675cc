"""How Bitrix24 payloads become ``syncd.records``, and the paging that reads them fast.

Legacy CRM methods (``crm.deal.list`` and friends) answer every scalar as a string
(``"ID": "37"``, ``"OPPORTUNITY": "19999.99"``) and datetimes in the portal's offset
(``2026-03-01T10:00:00+03:00``); the new-style ones (``crm.category.list``,
``crm.stagehistory.list``) answer typed values. Everything is converted here, exactly:
ids to strings of integers, money to floats, datetimes to aware UTC (never by stripping
the offset). A record that cannot be read fails its page with ``BadPayloadError`` naming
the stream and the record id, so the cursor stays where it was.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, TypeVar

from syncd.errors import BadPayloadError, FatalAPIError
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
    Pipeline,
    Record,
    Stage,
    StageChange,
    User,
)
from syncd.values import (
    field_value,
    parse_date,
    parse_datetime,
    parse_flag,
    parse_id,
    parse_number,
)
from syncd.values import required_id as _required_id
from syncd_bitrix24.client import MAX_BATCH, BatchResult, Bitrix24Client

log = logging.getLogger(__name__)

Entity = Literal["deal", "company", "contact"]
PAGE = 50  # Bitrix24's fixed list page size
#: Inner errors of a chained list call worth another batch request (nothing was lost).
TRANSIENT_ERRORS = ("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "INTERNAL_SERVER_ERROR")
MAX_TRANSIENT = 5

#: Activity ``TYPE_ID`` -> the activity type key syncd stores (mapped by the tenant).
ACTIVITY_KINDS = {"1": "meeting", "2": "call", "3": "task", "4": "email", "5": "event",
                  "6": "todo", "0": "other"}
#: The base kinds (the fallback keys of ``activity_kind``'s provider-aware keys).
ACTIVITY_TYPE_NAMES = {"meeting": "Meeting", "call": "Call", "task": "Task", "email": "E-mail",
                       "event": "Calendar event", "todo": "To-do", "other": "Other"}
OWNER_TYPES = {"2": "deal", "3": "contact", "4": "company"}
SEMANTIC_STATUS: dict[str, DealStatus] = {"S": "won", "F": "lost"}


# --- small readers -------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """ISO 8601 with the portal's offset -> aware UTC; ``""``/None -> None. Bitrix24 always
    writes the offset, so a value without one is an error (``syncd.values``, ``tz=None``)."""
    if value is not None and not isinstance(value, str):
        message = f"datetime must be a string, got {value!r}"
        raise TypeError(message)
    return _parse_portal_time(value)


#: Every stamp is read twice per pull (the version key, then the normalizer) and a portal's
#: records share many (a deal's activities, a batch import): a page's worth of recent texts
#: is kept. datetimes are immutable, so sharing one is safe; errors are not cached.
@functools.lru_cache(maxsize=1 << 15)
def _parse_portal_time(value: str | None) -> datetime | None:
    return parse_datetime(value, None)


def format_time(value: datetime) -> str:
    """What a ``DATE_MODIFY`` filter accepts: ISO 8601 with an explicit offset (UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def ident(value: Any) -> str | None:
    """A Bitrix24 id (``"37"``, ``37``); ``""``, ``"0"``, None -> None; integers only."""
    return parse_id(value, zero_is_none=True, numeric=True)


required_id = partial(_required_id, key="ID", read=ident)


# --- fields --------------------------------------------------------------------------------
@dataclass(slots=True)
class FieldInfo(BaseInfo):
    """``key``: FIELD_NAME / the standard field's code; ``name``: its label."""

    multiple: bool = False


#: Standard fields worth keeping in ``record.fields`` (under the portal's own titles).
STANDARD_EXTRAS: dict[str, tuple[str, ...]] = {
    "deal": ("SOURCE_ID", "TYPE_ID", "CLOSEDATE", "PROBABILITY"),
    "company": ("COMPANY_TYPE", "INDUSTRY", "REVENUE"),
    "contact": ("POST", "SOURCE_ID"),
}


class FieldCatalog(BaseCatalog[FieldInfo]):
    """One entity's fields as ``crm.{entity}.fields`` describes them (labels, types and
    enumeration options), so values land in ``record.fields`` under their *labels*."""

    crm = "bitrix24"

    def read(self, definitions: Mapping[str, Any] | None) -> Iterable[FieldInfo]:
        return (field_info(key, spec) for key, spec in (definitions or {}).items()
                if isinstance(spec, Mapping))

    def custom(self, name: str) -> FieldInfo | None:
        """A custom field by label, or by its ``UF_CRM_*`` code."""
        return super().custom(name) or (
            self.by_key.get(name) if name.startswith("UF_") else None)

    def values(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``{label: readable value}`` of the custom fields and notable standard ones."""
        out: dict[str, Any] = {}
        extras = STANDARD_EXTRAS.get(self.entity, ())
        for key, value in payload.items():
            info = self.by_key.get(key)
            if info is None or not (info.custom or key in extras):
                continue
            if info.name in out and out[info.name] is not None:
                continue
            out[info.name] = resolve_value(info, value)
        return out


def field_info(key: str, spec: Mapping[str, Any]) -> FieldInfo:
    """One entry of ``crm.{entity}.fields``: ``{type, isMultiple, title, formLabel,
    listLabel, items: [{ID, VALUE}]}``."""
    custom = key.startswith("UF_")
    label = (spec.get("formLabel") or spec.get("listLabel") or spec.get("title") or key) \
        if custom else (spec.get("title") or key)
    options = {}
    for item in spec.get("items") or ():
        if isinstance(item, Mapping) and item.get("ID") is not None:
            options[str(item["ID"])] = str(item.get("VALUE", ""))
    return FieldInfo(key=key, name=str(label), type=str(spec.get("type") or "string"),
                     custom=custom, multiple=parse_flag(spec.get("isMultiple")), options=options,
                     raw=dict(spec))


def resolve_value(info: FieldInfo, value: Any) -> Any:
    """A field value in readable form: option labels, numbers, UTC datetimes."""
    if info.multiple and isinstance(value, list):
        single = replace(info, multiple=False)
        return [resolve_value(single, v) for v in value if v not in (None, "")]
    if value is None or value == "" or (value is False and info.type != "boolean"):
        return None
    kind = info.type
    if kind == "enumeration":
        return info.options.get(str(value), str(value))
    if kind in {"double", "money"}:
        return field_value(parse_number, value, info.name)
    if kind == "integer":
        parsed = field_value(parse_number, value, info.name)
        return None if parsed is None else int(parsed)
    if kind == "boolean":
        return parse_flag(value)
    if kind == "datetime":
        moment = field_value(parse_time, value, info.name)
        return moment.isoformat() if moment else None
    if kind == "date":
        day = field_value(parse_date, value, info.name)
        return day.isoformat() if day else None
    return value


# --- normalizers ---------------------------------------------------------------------------
@dataclass
class StageInfo:
    """What a deal normalizer needs to know about stages and loss reasons."""

    #: STATUS_ID -> (category id, name, semantics "P"/"S"/"F")
    stages: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    #: deal id -> the last in-progress stage before the deal was closed
    closed_from: dict[str, str] = field(default_factory=dict)
    loss_field: FieldInfo | None = None


def deal_status(payload: Mapping[str, Any], info: StageInfo) -> DealStatus:
    semantic = str(payload.get("STAGE_SEMANTIC_ID") or "").upper()
    if not semantic:
        stage = info.stages.get(str(payload.get("STAGE_ID") or ""))
        semantic = stage[2] if stage else "P"
    return SEMANTIC_STATUS.get(semantic, "open")


def normalize_deal(payload: Mapping[str, Any], catalog: FieldCatalog | None,
                   info: StageInfo) -> Deal:
    deal_id = required_id(payload)
    status = deal_status(payload, info)
    stage_id = str(payload.get("STAGE_ID") or "") or None
    moved = parse_time(payload.get("MOVED_TIME"))
    lost_reason = None
    if status == "lost":
        if info.loss_field is not None:  # the portal's reason field; empty means no reason
            lost_reason = resolve_value(info.loss_field, payload.get(info.loss_field.key))
            if isinstance(lost_reason, list):
                lost_reason = lost_reason[0] if lost_reason else None
        elif stage_id in info.stages:  # no reason field: reasons are failure stages
            lost_reason = info.stages[stage_id][1]
    final_stage = stage_id
    if status != "open" and deal_id in info.closed_from:
        stage_id = info.closed_from[deal_id]  # the process stage the deal was closed from
    contact = ident(payload.get("CONTACT_ID"))
    raw = dict(payload)
    if final_stage != stage_id:
        raw["syncd_final_stage"] = final_stage
    return Deal(
        external_id=deal_id,
        title=str(payload.get("TITLE") or ""),
        status=status,
        pipeline_id=str(ident(payload.get("CATEGORY_ID")) or "0"),
        stage_id=stage_id,
        owner_id=ident(payload.get("ASSIGNED_BY_ID")),
        company_id=ident(payload.get("COMPANY_ID")),
        contact_ids=[contact] if contact else [],
        value=parse_number(payload.get("OPPORTUNITY")) or 0.0,
        currency=payload.get("CURRENCY_ID") or None,
        created_at=parse_time(payload.get("DATE_CREATE")),
        updated_at=parse_time(payload.get("DATE_MODIFY")),
        stage_changed_at=moved,
        won_at=moved if status == "won" else None,
        lost_at=moved if status == "lost" else None,
        lost_reason=str(lost_reason) if lost_reason else None,
        fields=catalog.values(payload) if catalog is not None else {},
        raw=raw,
    )


def _person_name(payload: Mapping[str, Any]) -> str:
    parts = [payload.get(k) for k in ("NAME", "SECOND_NAME", "LAST_NAME")]
    return " ".join(str(p).strip() for p in parts if p and str(p).strip())


def normalize_company(payload: Mapping[str, Any], catalog: FieldCatalog | None) -> Company:
    return Company(
        external_id=required_id(payload),
        name=str(payload.get("TITLE") or ""),
        owner_id=ident(payload.get("ASSIGNED_BY_ID")),
        created_at=parse_time(payload.get("DATE_CREATE")),
        updated_at=parse_time(payload.get("DATE_MODIFY")),
        fields=catalog.values(payload) if catalog is not None else {},
        raw=dict(payload),
    )


def _first_multifield(value: Any) -> Any:
    """``PHONE``/``EMAIL`` arrive as ``[{ID, VALUE, VALUE_TYPE}]``."""
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return value[0].get("VALUE")
    return None


def normalize_contact(payload: Mapping[str, Any], catalog: FieldCatalog | None) -> Contact:
    fields = catalog.values(payload) if catalog is not None else {}
    for key, name in (("EMAIL", "Email"), ("PHONE", "Phone")):
        found = _first_multifield(payload.get(key))
        if found is not None:
            fields.setdefault(name, found)
    return Contact(
        external_id=required_id(payload),
        name=_person_name(payload),
        company_id=ident(payload.get("COMPANY_ID")),
        owner_id=ident(payload.get("ASSIGNED_BY_ID")),
        created_at=parse_time(payload.get("DATE_CREATE")),
        updated_at=parse_time(payload.get("DATE_MODIFY")),
        fields=fields,
        raw=dict(payload),
    )


def activity_kind(payload: Mapping[str, Any]) -> str:
    """The activity type key: ``<kind>:<PROVIDER_ID>:<PROVIDER_TYPE_ID>``.

    ``TYPE_ID`` alone cannot tell a presentation from a reminder: activities created by
    apps are all ``TYPE_ID`` 6 with ``PROVIDER_ID`` ``REST_APP`` and the app's own
    ``PROVIDER_TYPE_ID`` (the ``TYPE_ID`` it registered with ``crm.activity.type.add``),
    and universal to-dos are ``TYPE_ID`` 6 too (``CRM_TODO``). So the key carries the
    provider and its type (``todo:REST_APP:PRESENTATION``, ``todo:CRM_TODO:TODO``,
    ``call:VOXIMPLANT_CALL:CALL``); a tenant's mapping may name the whole key or a prefix
    (``todo:REST_APP``, ``todo``), the longest one listed wins."""
    kind = str(payload.get("TYPE_ID") or "0")
    if kind not in ACTIVITY_KINDS:
        message = f"unknown activity TYPE_ID {kind!r}"
        raise ValueError(message)
    parts = [ACTIVITY_KINDS[kind]]
    provider = str(payload.get("PROVIDER_ID") or "").strip()
    if provider:
        parts.append(provider)
        provider_type = str(payload.get("PROVIDER_TYPE_ID") or "").strip()
        if provider_type:
            parts.append(provider_type)
    return ":".join(parts)[:255]


def normalize_activity(payload: Mapping[str, Any], catalog: FieldCatalog | None = None,
                       ) -> Activity:
    owner_type = OWNER_TYPES.get(str(payload.get("OWNER_TYPE_ID") or ""))
    owner = ident(payload.get("OWNER_ID"))
    done = parse_flag(payload.get("COMPLETED"))
    due = parse_time(payload.get("DEADLINE")) or parse_time(payload.get("START_TIME"))
    updated = parse_time(payload.get("LAST_UPDATED"))
    return Activity(
        external_id=required_id(payload),
        type=activity_kind(payload),
        subject=str(payload.get("SUBJECT") or ""),
        done=done,
        due_at=due,
        due_date=due.date() if due else None,
        done_at=(parse_time(payload.get("END_TIME")) or updated) if done else None,
        deal_id=owner if owner_type == "deal" else None,
        company_id=owner if owner_type == "company" else None,
        contact_id=owner if owner_type == "contact" else None,
        owner_id=ident(payload.get("RESPONSIBLE_ID")),
        created_at=parse_time(payload.get("CREATED")),
        updated_at=updated,
        note=str(payload.get("DESCRIPTION") or ""),
        raw=dict(payload),
    )


def normalize_user(payload: Mapping[str, Any], manager_id: str | None) -> User:
    active = payload.get("ACTIVE", True)
    return User(
        external_id=required_id(payload),
        name=_person_name(payload) or str(payload.get("EMAIL") or payload.get("ID")),
        email=payload.get("EMAIL") or None,
        active=parse_flag(active) if not isinstance(active, bool) else active,
        raw=dict(payload),
        manager_id=manager_id,
    )


def department_managers(users: Sequence[Mapping[str, Any]],
                        departments: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """user id -> the head of the user's department (for a head: of the parent one)."""
    heads: dict[str, str | None] = {}
    parents: dict[str, str | None] = {}
    for row in departments:
        department = ident(row.get("ID"))
        if department is None:
            continue
        heads[department] = ident(row.get("UF_HEAD"))
        parents[department] = ident(row.get("PARENT"))
    out: dict[str, str] = {}
    for user in users:
        user_id = ident(user.get("ID"))
        own = user.get("UF_DEPARTMENT") or []
        if user_id is None or not isinstance(own, list) or not own:
            continue
        dept: str | None = ident(own[0])
        seen: set[str] = set()
        while dept is not None and dept not in seen:
            seen.add(dept)
            head = heads.get(dept)
            if head is not None and head != user_id:
                out[user_id] = head
                break
            dept = parents.get(dept)
    return out


def normalize_pipeline(payload: Mapping[str, Any]) -> Pipeline:
    return Pipeline(external_id=str(int(payload["id"])), name=str(payload.get("name") or ""),
                    raw=dict(payload))


def stage_semantics(payload: Mapping[str, Any]) -> str:
    """``SEMANTICS`` (null/S/F) is the source of truth; ``EXTRA.SEMANTICS`` the fallback."""
    short = str(payload.get("SEMANTICS") or "").upper()
    if short in {"S", "F"}:
        return short
    extra = payload.get("EXTRA")
    long = str(extra.get("SEMANTICS") or "") if isinstance(extra, Mapping) else ""
    return {"success": "S", "failure": "F", "apology": "F"}.get(long, "P")


def normalize_stage(payload: Mapping[str, Any], category: str) -> Stage:
    status_id = str(payload.get("STATUS_ID") or "")
    if not status_id:
        message = "stage without STATUS_ID"
        raise ValueError(message)
    semantic = stage_semantics(payload)
    return Stage(external_id=status_id, pipeline_id=category,
                 name=str(payload.get("NAME") or status_id),
                 order=int(parse_number(payload.get("SORT")) or 0),
                 raw={**payload, "syncd_semantics": semantic})


def activity_types() -> list[ActivityType]:
    return [ActivityType(key=key, name=name) for key, name in ACTIVITY_TYPE_NAMES.items()]


R = TypeVar("R", bound=Record)


#: A page of Bitrix24 payloads (``syncd.normalize.normalize_page``), ids under ``ID``.
normalize_many = partial(normalize_page, "bitrix24", id_key="ID")


def stage_change(row: Mapping[str, Any], previous: str | None) -> StageChange:
    """One ``crm.stagehistory.list`` row (typed values) -> a transition from ``previous``."""
    at = parse_time(row.get("CREATED_TIME"))
    to_stage = str(row.get("STAGE_ID") or "")
    if at is None or not to_stage:
        message = "history row without CREATED_TIME or STAGE_ID"
        raise ValueError(message)
    return StageChange(external_id=required_id(row), deal_id=required_id(row, key="OWNER_ID"),
                       from_stage_id=previous, to_stage_id=to_stage, at=at, raw=dict(row))


# --- chained paging -------------------------------------------------------------------------
@dataclass(frozen=True)
class ListSpec:
    """A list method paged by ascending ID (``filter[>ID]``, ``start=-1``: no counting)."""

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    items: str | None = None  # the key wrapping rows (``items`` for crm.stagehistory.list)
    id_key: str = "ID"


def _rows(result: Any, spec: ListSpec) -> list[Any]:
    if spec.items is not None:
        result = result.get(spec.items) if isinstance(result, Mapping) else None
    if result is None:
        return []
    if not isinstance(result, list):
        message = f"bitrix24 {spec.method}: expected a list of rows, got {type(result).__name__}"
        raise BadPayloadError(message)
    return result


def _read_chain(answer: BatchResult, spec: ListSpec, batch_size: int,
                ) -> tuple[list[Any], bool, str | None]:
    """The rows of one chained batch, whether the list ended, and the failure that cut the
    chain short (None when every command that mattered answered)."""
    rows: list[Any] = []
    for i in range(batch_size):
        name = f"c{i}"
        if name in answer.errors or name not in answer.results:
            return rows, False, answer.errors.get(name, "no result")
        page = _rows(answer.results[name], spec)
        rows.extend(page)
        if len(page) < PAGE:
            return rows, True, None
    return rows, False, None


def iter_by_id(client: Bitrix24Client, spec: ListSpec, after: int = 0, *,
               batch_size: int = MAX_BATCH) -> Iterator[list[Any]]:
    """Every row with ID > ``after``, ascending: one ``batch`` request per up to 2,500 rows.

    Command *i* filters ``>ID`` on the 50th row of command *i-1*
    (``$result[c{i-1}][49][ID]``), as the official SDK does. The first command that returns
    fewer than 50 rows ends the list; the commands chained after it find no 50th row and
    fail or return nothing, which is expected and ignored. An inner failure of a command
    that mattered (HTTP 200 with ``result_error``) keeps the rows before it and, when
    transient, continues from there with a new request; otherwise it fails the stream.
    """
    path = f"[{spec.items}]" if spec.items else ""
    filters = dict(spec.params.get("filter") or {})
    strikes = 0
    while True:
        commands = []
        for i in range(batch_size):
            ref = str(after) if i == 0 else f"$result[c{i - 1}]{path}[{PAGE - 1}][{spec.id_key}]"
            commands.append((spec.method, {**spec.params, "filter": {**filters, ">ID": ref},
                                           "order": {"ID": "ASC"}, "start": -1}))
        rows, finished, failed = _read_chain(client.batch(commands), spec, batch_size)
        if rows:
            try:
                last = int(rows[-1][spec.id_key])
            except (KeyError, TypeError, ValueError) as exc:
                message = f"bitrix24 {spec.method}: a row without a numeric {spec.id_key}"
                raise BadPayloadError(message) from exc
            if last <= after:
                message = f"bitrix24 {spec.method}: IDs not ascending (got {last} after {after})"
                raise BadPayloadError(message)
            after = last
        if failed is not None:
            if not any(code in failed for code in TRANSIENT_ERRORS):
                message = f"bitrix24 {spec.method}: a call inside a batch failed: {failed}"
                raise FatalAPIError(message)
            strikes = 0 if rows else strikes + 1
            if strikes >= MAX_TRANSIENT:
                message = f"bitrix24 {spec.method}: keeps failing inside batch: {failed}"
                raise FatalAPIError(message)
            log.warning("bitrix24 %s: a call inside a batch failed (%s); continuing after"
                        " ID %s", spec.method, failed, after)
            if rows:
                yield rows
            continue
        yield rows
        if finished:
            return
