"""The Pipedrive connector for syncd (API v2 where it exists, v1 for the rest).

Streams, in ``STANDARD_STREAMS`` order:

* reference streams, pulled whole every pass, cursor ``None``: ``users`` (v1),
  ``pipelines``, ``stages``, ``fields`` (deal/organization/person field definitions),
  ``activity_types`` (v1);
* entity streams, incremental on ``update_time``: ``companies``, ``contacts``, ``deals``,
  ``activities``. Each asks for ``updated_since = cursor - overlap`` sorted ascending by
  ``update_time``, so every page can carry the highest ``update_time`` read so far as its
  cursor. A pass with nothing new costs exactly one request per entity stream;
* ``stage_history``: the v1 deal flow of each changed deal updated within
  ``history_days``, 50 deals per page, cursor ``None``.

Archived deals (excluded from the deal list by Pipedrive since 2025-07-15) are read too
unless ``include_archived: false``: they are real sales and count for karma (one more
request per pass).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests

from syncd.connector import (
    STANDARD_STREAMS,
    Connector,
    GateChange,
    Gates,
    Inspection,
    PullContext,
    StageGate,
    WebhookHint,
)
from syncd.errors import BadPayloadError, FatalAPIError
from syncd.records import Deal, Page, StageChange
from syncd.secrets import register
from syncd.store.budget import budget_key
from syncd.values import FieldProblem
from syncd_pipedrive.client import PipedriveClient
from syncd_pipedrive.settings import PipedriveSettings
from syncd_pipedrive.streams import (
    ARCHIVED_DEALS_PATH,
    ENTITY_STREAMS,
    FIELD_PATHS,
    FLOW_PATH,
    HISTORY_BATCH,
    REFERENCE_STREAMS,
    EntityStream,
    FieldCatalog,
    format_time,
    is_deleted,
    normalize_many,
    parse_time,
    stage_changes,
)
from syncd_pipedrive.webhooks import read_hint
from syncd_pipedrive.writer import PipedriveWriter

__all__ = ["PipedriveConnector", "PipedriveSettings"]

log = logging.getLogger(__name__)


class PipedriveConnector(PipedriveWriter, Connector):
    """One Pipedrive company account, for one tenant pass."""

    name: ClassVar[str] = "pipedrive"
    settings_model: ClassVar[type[PipedriveSettings]] = PipedriveSettings
    streams: ClassVar[tuple[str, ...]] = STANDARD_STREAMS

    def __init__(
        self,
        settings: PipedriveSettings,
        *,
        tenant: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(settings, tenant=tenant)
        self.settings: PipedriveSettings = settings
        register(settings.api_token)
        self.client = PipedriveClient(settings, sleep=sleep, clock=clock, session=session)
        self._now = now
        self._catalogs: dict[str, FieldCatalog] = {}
        #: deal id -> (update_time, stage id) of deals read in this pass (for stage history).
        self._deals_seen: dict[str, tuple[datetime | None, str | None]] = {}

    # --- pulling ------------------------------------------------------------------------
    def pull(self, stream: str, cursor: str | None, context: PullContext) -> Iterator[Page]:
        self.client.on_request = context.on_request
        if stream in REFERENCE_STREAMS:
            yield from self._pull_reference(stream)
        elif stream == "fields":
            yield from self._pull_fields(context)
        elif stream in ENTITY_STREAMS:
            yield from self._pull_entity(ENTITY_STREAMS[stream], cursor, context)
        elif stream == "stage_history":
            yield from self._pull_stage_history(context)
        else:
            message = f"pipedrive has no stream {stream!r}"
            raise ValueError(message)

    def catalog(self, entity: str) -> FieldCatalog:
        """The field definitions of ``entity``, read once per pass (the ``fields`` stream
        reads them first, so entity streams cost no extra request)."""
        catalog = self._catalogs.get(entity)
        if catalog is None:
            definitions = [d for page in self.client.iter_v2(FIELD_PATHS[entity]) for d in page]
            catalog = FieldCatalog(entity, definitions)  # type: ignore[arg-type]
            self._catalogs[entity] = catalog
        return catalog

    def reread(self, stream: str, payloads: Sequence[Mapping[str, Any]]) -> Page | None:
        """Normalize quarantined payloads again (entity and reference streams)."""
        if stream in ENTITY_STREAMS:
            spec = ENTITY_STREAMS[stream]
            catalog = self.catalog(spec.entity) if spec.entity else None
            return Page(stream, normalize_many(stream, list(payloads), spec.normalize, catalog))
        if stream in REFERENCE_STREAMS:
            return Page(stream, normalize_many(stream, list(payloads),
                                               REFERENCE_STREAMS[stream].normalize))
        return None

    def _pull_reference(self, stream: str) -> Iterator[Page]:
        spec = REFERENCE_STREAMS[stream]
        before = self.client.requests_made
        pages = self.client.iter_v2(spec.path) if spec.paged else iter(
            [self.client.get_list(spec.path)])
        for items in pages:
            records = normalize_many(stream, items, spec.normalize)
            yield Page(stream, records, None, requests=self.client.requests_made - before)
            before = self.client.requests_made

    def _pull_fields(self, context: PullContext) -> Iterator[Page]:
        for entity in FIELD_PATHS:
            before = self.client.requests_made
            self._catalogs.pop(entity, None)
            catalog = self.catalog(entity)
            yield Page("fields", catalog.field_defs(), None,
                       requests=self.client.requests_made - before)
            if context.stop_requested():
                return

    def _pull_entity(self, spec: EntityStream, cursor: str | None,
                     context: PullContext) -> Iterator[Page]:
        start = None if context.full else _read_cursor(spec.name, cursor)
        params: dict[str, Any] = {**spec.params, "sort_by": "update_time",
                                  "sort_direction": "asc"}
        if start is not None:
            params["updated_since"] = format_time(start - context.overlap)
        before = self.client.requests_made
        catalog = self.catalog(spec.entity) if spec.entity else None
        high = start
        if spec.name == "deals" and self.settings.include_archived:
            archived_high = None
            for page in self._entity_pages(spec, ARCHIVED_DEALS_PATH, params, catalog, None):
                archived_high = _later(archived_high, _parse_page_cursor(page.cursor))
                page.cursor = None  # committed only after the main list is read too
                page.requests = self.client.requests_made - before
                before = self.client.requests_made
                yield page
                if context.stop_requested():
                    return
            high = _later(high, archived_high)
        for page in self._entity_pages(spec, spec.path, params, catalog, high):
            page.requests = self.client.requests_made - before
            before = self.client.requests_made
            yield page
            if context.stop_requested():
                return

    def _entity_pages(self, spec: EntityStream, path: str, params: dict[str, Any],
                      catalog: FieldCatalog | None, high: datetime | None) -> Iterator[Page]:
        """Pages of one sorted list; each page's cursor is the highest update_time so far.

        If the API breaks its ascending order, the cursor stops moving for the rest of the
        stream (the next pass re-reads from there) and a warning is logged.
        """
        last: datetime | None = None
        frozen = False
        for items in self.client.iter_v2(path, params):
            problems: list[FieldProblem] = []
            records = normalize_many(spec.name, items, spec.normalize, catalog,
                                     problems=problems, tenant=self.tenant)
            for record in records:
                stamp = getattr(record, "updated_at", None)
                if isinstance(record, Deal):
                    self._deals_seen[record.external_id] = (stamp, record.stage_id)
                if stamp is None:
                    continue
                if last is not None and stamp < last and not frozen:
                    frozen = True
                    log.warning("pipedrive %s: update_time not ascending at record %s; "
                                "cursor kept at %s", spec.name, record.external_id,
                                format_time(high) if high else None)
                last = stamp if last is None else max(last, stamp)
                if not frozen:
                    high = _later(high, stamp)
            deleted = [r.external_id for r in records if is_deleted(r)]
            cursor = format_time(high) if high is not None and not frozen else None
            yield Page(spec.name, records, cursor, deleted_ids=deleted,
                       problems=[str(p) for p in problems])

    def _pull_stage_history(self, context: PullContext) -> Iterator[Page]:
        days = self.settings.history_days
        if days == 0:
            return
        horizon = self._now() - timedelta(days=days)
        for deal_id, stored in context.stored_deals.items():  # owed by an unfinished pass
            self._deals_seen.setdefault(deal_id, stored)
        wanted = []
        for deal_id in sorted(context.changed_deal_ids, key=_id_order):
            seen = self._deals_seen.get(deal_id)
            # Deals not read in this pass have unknown update times: include them.
            if seen is not None and seen[0] is not None and seen[0] < horizon:
                continue
            if not deal_id.isdigit():
                log.warning("pipedrive stage_history: %r is not a deal id; skipped", deal_id)
                continue
            wanted.append(deal_id)
        for first in range(0, len(wanted), HISTORY_BATCH):
            before = self.client.requests_made
            records: list[StageChange] = []
            for deal_id in wanted[first: first + HISTORY_BATCH]:
                records.extend(self._deal_history(deal_id))
            yield Page("stage_history", records, None,
                       requests=self.client.requests_made - before)
            if context.stop_requested():
                return

    def _deal_history(self, deal_id: str) -> list[StageChange]:
        path = FLOW_PATH.format(id=int(deal_id))
        rows: list[Any] = []
        try:
            for items in self.client.iter_v1(path, {"items": "dealChange"}):
                rows.extend(items)
        except FatalAPIError as exc:
            if exc.status in {404, 410}:  # deleted for good since we read it: no history
                log.info("pipedrive deal %s has no flow (HTTP %s)", deal_id, exc.status)
                return []
            raise
        current = self._deals_seen.get(deal_id, (None, None))[1]
        try:
            return stage_changes(deal_id, rows, current_stage=current)
        except (KeyError, TypeError, ValueError) as exc:
            message = f"pipedrive stage_history: deal {deal_id} flow is malformed: {exc}"
            raise BadPayloadError(message) from exc

    # --- the CRM's own gates (syncd drift / plan / apply) ---------------------------------
    def read_gates(self) -> Gates:
        """Stage rotting (``is_deal_rot_enabled``/``days_to_rotten``). Pipedrive's API has no
        endpoint for the lost-reason list (Company settings > Lost reasons), nor for the
        "required/important fields" of a stage: those are reported as manual steps."""
        pipelines = {p["id"]: p.get("name") for page in self.client.iter_v2("/api/v2/pipelines")
                     for p in page if not p.get("is_deleted")}
        stages = []
        for page in self.client.iter_v2("/api/v2/stages"):
            for stage in page:
                if stage.get("is_deleted") or stage.get("pipeline_id") not in pipelines:
                    continue
                days = stage.get("days_to_rotten") if stage.get("is_deal_rot_enabled") else None
                stages.append(StageGate(
                    id=str(stage["id"]), pipeline=str(pipelines[stage["pipeline_id"]]),
                    name=str(stage.get("name")), rotting_days=days, rotting_supported=True))
        return Gates(stages=stages, loss_reasons=None, writable=("stage_rotting",))

    def apply_gate(self, change: GateChange) -> GateChange:
        if change.kind != "stage_rotting":
            raise NotImplementedError(f"pipedrive cannot make a {change.kind} change")
        days = change.after
        body = ({"is_deal_rot_enabled": True, "days_to_rotten": int(days)} if days
                else {"is_deal_rot_enabled": False})
        self.client.call("PATCH", f"/api/v2/stages/{change.target}", json=body,
                         idempotent=True)
        return change

    # --- describing the account -----------------------------------------------------------
    def inspect(self) -> Inspection:
        """Pipelines with stages, field names per entity, activity types, users, and the
        distinct loss reasons written on lost deals.

        Pipedrive has no endpoint listing the predefined lost reasons (Company settings >
        Lost reasons), so the reasons are collected from the lost deals themselves: the
        texts actually in use are what a tenant's mapping must cover anyway.
        """
        users = normalize_many("users", self.client.get_list("/v1/users"),
                               REFERENCE_STREAMS["users"].normalize)
        pipelines = [p for page in self.client.iter_v2("/api/v2/pipelines") for p in page]
        stages = [s for page in self.client.iter_v2("/api/v2/stages") for s in page]
        types = normalize_many("activity_types", self.client.get_list("/v1/activityTypes"),
                               REFERENCE_STREAMS["activity_types"].normalize)
        reasons: set[str] = set()
        for page in self.client.iter_v2("/api/v2/deals", {"status": "lost"}):
            for deal in page:
                text = deal.get("lost_reason") if isinstance(deal, dict) else None
                if isinstance(text, str) and text.strip():
                    reasons.add(text.strip())
        described = []
        for pipeline in sorted(pipelines, key=lambda p: (p.get("order_nr") or 0, p["id"])):
            if pipeline.get("is_deleted"):
                continue
            own = sorted((s for s in stages if s.get("pipeline_id") == pipeline["id"]
                          and not s.get("is_deleted")),
                         key=lambda s: (s.get("order_nr") or 0, s["id"]))
            described.append({
                "id": str(pipeline["id"]), "name": pipeline.get("name"),
                "stages": [{"id": str(s["id"]), "name": s.get("name"),
                            "order": s.get("order_nr")} for s in own],
            })
        return Inspection(
            pipelines=described,
            loss_reasons=sorted(reasons),
            fields={entity: self.catalog(entity).names() for entity in FIELD_PATHS},
            activity_types=[t.key for t in types if getattr(t, "active", True)],
            users=[{"id": u.external_id, "name": u.name, "email": getattr(u, "email", None),
                    "active": getattr(u, "active", True)} for u in users],
        )

    def webhook_hint(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        """What a Pipedrive webhook says changed; our own custom-field writes are echoes."""
        return read_hint(headers, body)

    def rate_budgets(self) -> list[tuple[Any, str]]:
        """Pipedrive's burst limit is per token: one budget for every process using it."""
        key = budget_key("pipedrive", self.settings.base_url, self.settings.api_token)
        return [(self.client.limiter, key)]

    def close(self) -> None:
        self.client.close()


def _read_cursor(stream: str, cursor: str | None) -> datetime | None:
    if not cursor:
        return None
    try:
        return parse_time(cursor)
    except (TypeError, ValueError):
        log.warning("pipedrive %s: unreadable cursor %r; pulling everything", stream, cursor)
        return None


def _parse_page_cursor(cursor: str | None) -> datetime | None:
    return parse_time(cursor) if cursor else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _id_order(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)
