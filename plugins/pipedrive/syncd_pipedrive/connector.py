"""The Pipedrive connector for syncd (API v2 where it exists, v1 for the rest).

Streams, in ``STANDARD_STREAMS`` order (``contacts`` is pulled last, after the stage history:
the pass audits while they are pulled):

* reference streams, pulled whole every pass, cursor ``None``: ``users`` (v1),
  ``pipelines``, ``stages``, ``fields`` (deal/organization/person field definitions),
  ``activity_types`` (v1);
* entity streams, incremental on ``update_time``: ``companies``, ``contacts``, ``deals``,
  ``activities``. Each asks for ``updated_since = cursor - overlap`` sorted ascending by
  ``update_time``, so every page can carry the highest ``update_time`` read so far as its
  cursor. A pass with nothing new costs exactly one request per entity stream;
* ``stage_history``: the v1 deal flow of each changed deal updated within
  ``history_days``, 50 deals per page, cursor ``None``. One request per deal: it is a
  budgeted backfill (``history_backfill``; ``syncd.store.backlog``): each pass reads the
  deals the core hands over, within ``history_budget_share`` of ``daily_token_budget``.

Archived deals (excluded from the deal list by Pipedrive since 2025-07-15) are read too
unless ``include_archived: false``: they are real sales and count for karma (one more
request per pass).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, ClassVar

import requests

from syncd.clientconnector import ClientConnector
from syncd.connector import (
    STANDARD_STREAMS,
    GateChange,
    Gates,
    HistoryBackfill,
    Inspection,
    StageGate,
    WebhookHint,
)
from syncd.errors import BadPayloadError, FatalAPIError
from syncd.records import Deal, Page, Record, StageChange
from syncd.secrets import register
from syncd.store.budget import budget_key
from syncd.streams import Read, Stream, incremental
from syncd.values import FieldProblem
from syncd_pipedrive.client import PipedriveClient
from syncd_pipedrive.settings import PipedriveSettings
from syncd_pipedrive.streams import (
    ARCHIVED_DEALS_PATH,
    ENTITY_STREAMS,
    FIELD_PATHS,
    FLOW_PATH,
    FLOW_TOKENS,
    HISTORY_BATCH,
    REFERENCE_STREAMS,
    Entity,
    EntityStream,
    FieldCatalog,
    Normalizer,
    ReferenceStream,
    format_time,
    is_deleted,
    item_key,
    normalize_activity_type,
    normalize_many,
    normalize_user,
    stage_changes,
)
from syncd_pipedrive.webhooks import read_hint
from syncd_pipedrive.writer import PipedriveWriter

__all__ = ["PipedriveConnector"]

log = logging.getLogger(__name__)


class PipedriveConnector(ClientConnector[PipedriveClient]):
    """One Pipedrive company account, for one tenant pass."""

    name: ClassVar[str] = "pipedrive"
    settings_model: ClassVar[type[PipedriveSettings]] = PipedriveSettings

    #: The deal's card in the web app: ``https://COMPANY.pipedrive.com/deal/<id>``.
    deal_path: ClassVar[str | None] = "/deal/{id}"
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
        self._catalogs: dict[Entity, FieldCatalog] = {}
        self.writer = PipedriveWriter(self.client, catalog=self.catalog)
        #: deal id -> (update_time, stage id) of deals read in this pass (for stage history).
        self._deals_seen: dict[str, tuple[datetime | None, str | None]] = {}

    # --- pulling ------------------------------------------------------------------------
    def declare_streams(self) -> list[Stream]:
        """Reference lists, the field catalogs, the four incremental entity lists and the
        per-deal flows, in ``STANDARD_STREAMS`` order."""
        declared = [Stream(name, partial(self._read_reference, spec),
                           reread=partial(self._reread, name, spec.normalize, None))
                    for name, spec in REFERENCE_STREAMS.items()]
        declared.append(Stream("fields", self._read_fields))
        declared += [Stream(name, partial(self._read_entity, spec),
                            reread=partial(self._reread_entity, spec))
                     for name, spec in ENTITY_STREAMS.items()]
        declared.append(Stream("stage_history", self._read_stage_history))
        return declared

    def catalog(self, entity: Entity) -> FieldCatalog:
        """The field definitions of ``entity``, read once per pass (the ``fields`` stream
        reads them first, so entity streams cost no extra request)."""
        catalog = self._catalogs.get(entity)
        if catalog is None:
            definitions = [d for page in self.client.iter_v2(FIELD_PATHS[entity]) for d in page]
            catalog = FieldCatalog(entity, definitions)
            self._catalogs[entity] = catalog
        return catalog

    def _reread(self, stream: str, normalize: Normalizer, catalog: FieldCatalog | None,
                payloads: Sequence[Mapping[str, Any]]) -> list[Record]:
        return normalize_many(stream, list(payloads), normalize, catalog)

    def _reread_entity(self, spec: EntityStream,
                       payloads: Sequence[Mapping[str, Any]]) -> list[Record]:
        catalog = self.catalog(spec.entity) if spec.entity else None
        return self._reread(spec.name, spec.normalize, catalog, payloads)

    def _read_reference(self, spec: ReferenceStream, read: Read) -> Iterator[Page]:
        pages = self.client.iter_v2(spec.path) if spec.paged else iter(
            [self.client.get_list(spec.path)])
        for items in pages:
            yield Page(spec.name, normalize_many(spec.name, items, spec.normalize))

    def _read_fields(self, read: Read) -> Iterator[Page]:
        for entity in FIELD_PATHS:
            self._catalogs.pop(entity, None)
            yield Page("fields", self.catalog(entity).field_defs())

    def _read_entity(self, spec: EntityStream, read: Read) -> Iterator[Page]:
        """A v2 list sorted ascending by ``update_time`` from the watermark less the
        overlap; items already read in the same version are dropped (``Watermark``).
        Archived deals come first and move the cursor only with the main list."""
        mark = read.watermark()
        params: dict[str, Any] = {**spec.params, "sort_by": "update_time",
                                  "sort_direction": "asc"}
        since = mark.since(read.context.overlap)
        if since is not None:
            params["updated_since"] = format_time(since)
        catalog = self.catalog(spec.entity) if spec.entity else None
        parse = partial(self._entity_page, spec, catalog)
        started = self._now()
        lists = [(spec.path, True)]
        if spec.name == "deals" and self.settings.include_archived:
            lists.insert(0, (ARCHIVED_DEALS_PATH, False))
        for path, commit in lists:
            if not read.complete():
                return  # the archived list was cut short by a stop: no cursor moves
            yield from incremental(
                f"pipedrive {spec.name}", read.prefetch(self.client.iter_v2(path, params)), parse,
                mark, item_key, overlap=read.context.overlap, cap=started, commit=commit,
                read_at=started)

    def _entity_page(self, spec: EntityStream, catalog: FieldCatalog | None,
                     items: list[Any]) -> Page:
        problems: list[FieldProblem] = []
        records = normalize_many(spec.name, items, spec.normalize, catalog,
                                 problems=problems, tenant=self.tenant)
        for record in records:
            if isinstance(record, Deal):
                self._deals_seen[record.external_id] = (record.updated_at, record.stage_id)
        return Page(spec.name, records, deleted_ids=[r.external_id for r in records
                                                     if is_deleted(r)],
                    problems=[str(p) for p in problems])

    def history_backfill(self) -> HistoryBackfill | None:
        """Flow reads within the configured share of the daily token budget."""
        if self.settings.history_days == 0:
            return None
        share = self.settings.daily_token_budget * self.settings.history_budget_share
        return HistoryBackfill(requests_per_day=int(share // FLOW_TOKENS),
                               horizon_days=self.settings.history_days)

    def _read_stage_history(self, read: Read) -> Iterator[Page]:
        days = self.settings.history_days
        if days == 0:
            return
        context = read.context
        if context.history_deals is not None:
            yield from self._backfill_history(read, context.history_deals,
                                              context.history_allowance)
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
            records: list[StageChange] = []
            for deal_id in wanted[first: first + HISTORY_BATCH]:
                records.extend(self._deal_history(deal_id) or [])
            yield Page("stage_history", records, None)

    def _backfill_history(self, read: Read, deal_ids: list[str],
                          allowance: int | None) -> Iterator[Page]:
        """The flows of ``deal_ids`` in order, stopping before the request that would
        exceed ``allowance``; each page names the deals it completes (``covered``)."""
        for deal_id, stored in read.context.stored_deals.items():  # their current stage
            self._deals_seen.setdefault(deal_id, stored)
        start = read.meter()

        def affordable() -> bool:
            return allowance is None or read.meter() - start < allowance

        for first in range(0, len(deal_ids), HISTORY_BATCH):
            records: list[StageChange] = []
            covered: list[str] = []
            for deal_id in deal_ids[first: first + HISTORY_BATCH]:
                if not deal_id.isdigit():
                    log.warning("pipedrive stage_history: %r is not a deal id; skipped", deal_id)
                    covered.append(deal_id)
                    continue
                if not affordable():
                    break
                changes = self._deal_history(deal_id, affordable)
                if changes is not None:
                    records.extend(changes)
                    covered.append(deal_id)
            # Even empty: its requests (a flow cut off by the allowance) count as spent.
            yield Page("stage_history", records, None, covered=covered)
            if not affordable() or read.context.stop_requested():
                return

    def _deal_history(self, deal_id: str,
                      affordable: Callable[[], bool] = lambda: True) -> list[StageChange] | None:
        """One deal's transitions; None when ``affordable`` ran out between its flow pages
        (the deal stays owed: its history is read whole or not at all)."""
        path = FLOW_PATH.format(id=int(deal_id))
        rows: list[Any] = []

        def before_next() -> None:
            if not affordable():
                raise _OutOfAllowance

        try:
            for items in self.client.iter_v1(path, {"items": "dealChange"},
                                             before_next=before_next):
                rows.extend(items)
        except _OutOfAllowance:
            return None
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
        users = normalize_many("users", self.client.get_list("/v1/users"), normalize_user)
        pipelines = [p for page in self.client.iter_v2("/api/v2/pipelines") for p in page]
        stages = [s for page in self.client.iter_v2("/api/v2/stages") for s in page]
        types = normalize_many("activity_types", self.client.get_list("/v1/activityTypes"),
                               normalize_activity_type)
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


def _id_order(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)


class _OutOfAllowance(Exception):
    """The history allowance ran out between two pages of one deal's flow."""
