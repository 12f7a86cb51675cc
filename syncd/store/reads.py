"""The read side the audit is built from, sized for a million deals per tenant.

Deals stream in keyset-paginated chunks ordered by id (constant memory, no OFFSET); the
activities, stage changes and companies of a chunk are fetched by CRM id in bounded
``IN`` lists.

These readers return immutable SQLAlchemy ``Row`` objects, not ORM instances: loading an
ORM object costs about three times as much as a row, and the audit of a big tenant reads a
million deals and several million activities per pass. A row has every column of its table
as an attribute, plus the record-named aliases of ``models`` (``stage_id``, ``company_id``,
``deal_id``...); the ``...View`` protocols below spell that out for type checkers. ``raw``
payloads are left out unless asked for (``with_raw=True``): the audit works on normalized
columns, and a payload can outweigh the rest of the row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, Row, false, func, inspect, select
from sqlalchemy.orm import Session

from syncd.store._sql import ensure_statistics, in_chunk_size, sequence_chunks
from syncd.store.models import (
    RECORD_MODELS,
    ActivityRow,
    CompanyRow,
    DealRow,
    KarmaLineRow,
    PipelineRow,
    StageChangeRow,
    StageRow,
    SyncCursorRow,
    SyncRunRow,
    ViolationRow,
    WritebackRow,
)


class DealView(Protocol):
    id: int
    external_id: str
    title: str
    status: str
    stage_id: str | None
    pipeline_id: str | None
    owner_id: str | None
    company_id: str | None
    contact_ids: list[str]
    value: float
    currency: str | None
    created_at: datetime | None
    updated_at: datetime | None
    stage_changed_at: datetime | None
    won_at: datetime | None
    lost_at: datetime | None
    lost_reason: str | None
    fields: dict[str, Any]
    deleted: bool


class ActivityView(Protocol):
    id: int
    external_id: str
    type: str
    subject: str
    done: bool
    due_at: datetime | None
    due_date: date | None
    done_at: datetime | None
    deal_id: str | None
    company_id: str | None
    contact_id: str | None
    owner_id: str | None
    created_at: datetime | None
    note: str
    deleted: bool


class StageChangeView(Protocol):
    id: int
    external_id: str
    deal_id: str
    from_stage_id: str | None
    to_stage_id: str
    at: datetime


class CompanyView(Protocol):
    id: int
    external_id: str
    name: str
    owner_id: str | None
    fields: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


def view_columns(model: type[Any], *, with_raw: bool = False) -> list[ColumnElement[Any]]:
    """The table's columns (``raw`` only if asked) plus the model's synonyms as labels."""
    table = model.__table__
    columns: list[ColumnElement[Any]] = [c for c in table.columns
                                         if with_raw or c.name != "raw"]
    columns += [table.c[prop.name].label(prop.key) for prop in inspect(model).synonyms]
    return columns


def iter_deal_chunks(session: Session, tenant_id: int, chunk_size: int = 2000, *,
                     with_raw: bool = False,
                     include_deleted: bool = False) -> Iterator[list[DealView]]:
    """The tenant's deals, ``chunk_size`` at a time, in id order (deleted ones skipped)."""
    ensure_statistics(session, ["deals", "activities", "stage_changes", "companies"])
    table = DealRow.__table__
    columns = view_columns(DealRow, with_raw=with_raw)
    last_id = 0
    while True:
        stmt = (select(*columns)
                .where(table.c.tenant_id == tenant_id, table.c.id > last_id)
                .order_by(table.c.id).limit(chunk_size))
        if not include_deleted:
            stmt = stmt.where(table.c.deleted == false())
        rows = session.execute(stmt).all()
        if not rows:
            return
        yield cast(list[DealView], rows)
        last_id = rows[-1].id


def _by_ids(session: Session, tenant_id: int, model: type[Any], column: str, *,
            ids: Iterable[str | None], order: Sequence[str], with_raw: bool,
            view: type[Any] | None = None) -> dict[str, list[Row[Any]]]:
    """Non-deleted rows whose ``column`` is one of ``ids``, grouped by it (every id a key);
    with ``view`` (a protocol), only the attributes it declares."""
    table = model.__table__
    wanted = list(dict.fromkeys(i for i in ids if i is not None))
    grouped: dict[str, list[Row[Any]]] = {i: [] for i in wanted}
    columns = (view_columns(model, with_raw=with_raw) if view is None or with_raw
               else _protocol_columns(model, view))
    # By position: ``row._mapping[column]`` built a mapping view per row (0.9 s of a
    # 20k-deal audit's 108k activity rows under cProfile).
    at = next(i for i, c in enumerate(columns) if c is table.c[column]
              or getattr(c, "element", None) is table.c[column])
    for chunk in sequence_chunks(wanted, in_chunk_size(session)):
        stmt = (select(*columns)
                .where(table.c.tenant_id == tenant_id, table.c[column].in_(chunk),
                       table.c.deleted == false())
                .order_by(*(table.c[name] for name in order)))
        for row in session.execute(stmt).all():  # one fetch, not a call per row
            grouped[row[at]].append(row)
    return grouped


def _protocol_columns(model: type[Any], view: type[Any]) -> list[ColumnElement[Any]]:
    """The columns behind the attributes ``view`` declares (a synonym labelled by its
    name): what a reader of that view reads, and no more."""
    table = model.__table__
    synonyms = {prop.key: prop.name for prop in inspect(model).synonyms}
    return [table.c[synonyms[name]].label(name) if name in synonyms else table.c[name]
            for name in view.__annotations__]


def activities_for_deals(session: Session, tenant_id: int, deal_ids: Iterable[str], *,
                         with_raw: bool = False) -> dict[str, list[ActivityView]]:
    """Non-deleted activities linked to each deal (every asked id is a key), in id order:
    ``ActivityView``'s attributes (all columns with ``with_raw``)."""
    found = _by_ids(session, tenant_id, ActivityRow, "deal_external_id", ids=deal_ids,
                    order=("id",), with_raw=with_raw, view=ActivityView)
    return cast(dict[str, list[ActivityView]], found)


def activities_for_companies(session: Session, tenant_id: int, company_ids: Iterable[str], *,
                             with_raw: bool = False) -> dict[str, list[ActivityView]]:
    """Non-deleted activities linked to each company (deal-linked ones included):
    ``ActivityView``'s attributes (all columns with ``with_raw``)."""
    found = _by_ids(session, tenant_id, ActivityRow, "company_external_id", ids=company_ids,
                    order=("id",), with_raw=with_raw, view=ActivityView)
    return cast(dict[str, list[ActivityView]], found)


def stage_changes_for_deals(session: Session, tenant_id: int, deal_ids: Iterable[str], *,
                            with_raw: bool = False) -> dict[str, list[StageChangeView]]:
    """Each deal's stage changes, oldest first (ties by id)."""
    found = _by_ids(session, tenant_id, StageChangeRow, "deal_external_id", ids=deal_ids,
                    order=("at", "id"), with_raw=with_raw)
    return cast(dict[str, list[StageChangeView]], found)


def stages_by_id(session: Session, tenant_id: int) -> dict[str, tuple[str, str]]:
    """``stage id -> (pipeline name, stage name)``; a pipeline we do not hold shows its id."""
    stmt = (select(StageRow.external_id, StageRow.pipeline_external_id, PipelineRow.name,
                   StageRow.name)
            .outerjoin(PipelineRow, (PipelineRow.tenant_id == StageRow.tenant_id)
                       & (PipelineRow.external_id == StageRow.pipeline_external_id))
            .where(StageRow.tenant_id == tenant_id))
    return {stage_id: (pipeline_name or pipeline_id, stage_name)
            for stage_id, pipeline_id, pipeline_name, stage_name in session.execute(stmt)}


def companies(session: Session, tenant_id: int, ids: Iterable[str] | None = None, *,
              with_raw: bool = False) -> list[CompanyView]:
    """Non-deleted companies in id order: all of the tenant's, or those in ``ids``."""
    if ids is not None:
        found = _by_ids(session, tenant_id, CompanyRow, "external_id", ids=ids,
                        order=("id",), with_raw=with_raw)
        rows = sorted((group[0] for group in found.values() if group), key=lambda c: c.id)
        return cast(list[CompanyView], rows)
    table = CompanyRow.__table__
    stmt = (select(*view_columns(CompanyRow, with_raw=with_raw))
            .where(table.c.tenant_id == tenant_id, table.c.deleted == false())
            .order_by(table.c.id))
    return cast(list[CompanyView], session.execute(stmt).all())


def deal_owners(session: Session, tenant_id: int,
                deal_ids: Iterable[str]) -> dict[str, str | None]:
    """``deal id -> owner id`` for the given deals we hold (e.g. to assign tasks)."""
    wanted = list(dict.fromkeys(deal_ids))
    owners: dict[str, str | None] = {}
    for chunk in sequence_chunks(wanted, in_chunk_size(session)):
        stmt = select(DealRow.external_id, DealRow.owner_external_id).where(
            DealRow.tenant_id == tenant_id, DealRow.external_id.in_(chunk))
        owners.update(session.execute(stmt).all())
    return owners


def live_deal_count(session: Session, tenant_id: int) -> int:
    """The tenant's deals that are not deleted."""
    return int(session.scalar(select(func.count()).select_from(DealRow).where(
        DealRow.tenant_id == tenant_id, DealRow.deleted == false())) or 0)


def counts(session: Session, tenant_id: int) -> dict[str, int]:
    """Row counts by table: record tables count non-deleted rows, ``violations`` the open
    ones, the other tables all of the tenant's rows."""
    result: dict[str, int] = {}
    for name, model in RECORD_MODELS.items():
        result[name] = session.scalar(select(func.count()).select_from(model).where(
            model.tenant_id == tenant_id, model.deleted == false())) or 0
    result["violations"] = session.scalar(select(func.count()).select_from(ViolationRow).where(
        ViolationRow.tenant_id == tenant_id, ViolationRow.resolved_at.is_(None))) or 0
    for other in (KarmaLineRow, WritebackRow, SyncRunRow, SyncCursorRow):
        result[other.__tablename__] = session.scalar(
            select(func.count()).select_from(other).where(other.tenant_id == tenant_id)) or 0
    return result
