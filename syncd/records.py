"""Normalized records: what every connector turns its CRM's payloads into.

A connector yields these; the store upserts them by ``(tenant, external_id)``; the audit
engine reads them back. All ids are the CRM's own ids as strings. All datetimes are
timezone-aware UTC. Money values are floats in the deal's currency. ``fields`` holds the
record's custom (and notable standard) fields keyed by the field's human *name* in the CRM
(never by a hash key), so a tenant's mapping can say ``lead_source: "Lead source"``.
``raw`` is the untouched CRM payload: nothing unmapped is ever dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

DealStatus = Literal["open", "won", "lost", "deleted"]
FieldEntity = Literal["deal", "company", "contact", "activity"]


@dataclass(slots=True)
class User:
    external_id: str
    name: str
    email: str | None = None
    active: bool = True
    raw: dict[str, Any] = field(default_factory=dict)
    #: The user's manager in the CRM (e.g. their Bitrix24 department head), if the CRM
    #: knows one; manager karma uses it when the tenant file names no teams.
    manager_id: str | None = None


@dataclass(slots=True)
class Pipeline:
    external_id: str
    name: str
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Stage:
    external_id: str
    pipeline_id: str
    name: str
    order: int = 0
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class FieldDef:
    """A CRM field definition (custom or standard), for name-based mapping."""

    entity: FieldEntity
    key: str  # the CRM's key (e.g. Pipedrive's 40-char hash)
    name: str  # the human name shown in the CRM
    type: str = "text"
    options: dict[str, str] = field(default_factory=dict)  # option id -> label
    custom: bool = True
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ActivityType:
    key: str
    name: str
    active: bool = True


@dataclass(slots=True)
class Company:
    external_id: str
    name: str
    owner_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Contact:
    external_id: str
    name: str
    company_id: str | None = None
    owner_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Deal:
    external_id: str
    title: str
    status: DealStatus
    pipeline_id: str | None
    stage_id: str | None
    owner_id: str | None = None
    company_id: str | None = None
    contact_ids: list[str] = field(default_factory=list)
    value: float = 0.0
    currency: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    stage_changed_at: datetime | None = None
    won_at: datetime | None = None
    lost_at: datetime | None = None
    lost_reason: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Activity:
    external_id: str
    type: str  # the CRM's activity type key (mapped onto canonical kinds by the tenant)
    subject: str = ""
    done: bool = False
    due_at: datetime | None = None  # due date(+time); date-only dues are at 00:00 UTC
    due_date: date | None = None
    done_at: datetime | None = None
    deal_id: str | None = None
    company_id: str | None = None
    contact_id: str | None = None
    owner_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted: bool = False
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class StageChange:
    """One stage transition of a deal, from the CRM's history API."""

    external_id: str  # the CRM's id of the history entry (stable across pulls)
    deal_id: str
    from_stage_id: str | None
    to_stage_id: str
    at: datetime
    raw: dict[str, Any] = field(default_factory=dict)


Record = (
    User | Pipeline | Stage | FieldDef | ActivityType | Company | Contact | Deal | Activity
    | StageChange
)


@dataclass(slots=True)
class Page:
    """One page of one stream, and the cursor it lets the stream advance to.

    The store commits ``records`` and ``cursor`` in one transaction. ``cursor`` is ``None``
    when this page does not move the stream's cursor (e.g. a middle page of an unsorted
    stream); the connector yields the final cursor on the last page.
    ``deleted_ids`` lists external ids the CRM reports as deleted in this page.
    """

    stream: str
    records: Sequence[Record]
    cursor: str | None = None
    deleted_ids: Sequence[str] = ()
    requests: int = 0  # HTTP requests this page took (for progress and metrics)
    #: Source rows that could not be read and were skipped, each naming where (e.g. a
    #: spreadsheet's tab and row number); surfaced in the pass summary, never fatal.
    problems: Sequence[str] = ()
    #: ``stage_history`` of a backfilled connector: deals whose history this page completes.
    covered: Sequence[str] = ()


PageIterator = Iterator[Page]
