"""The Bitrix24 connector for syncd (legacy ``crm.*`` REST methods, read through ``batch``).

Streams, in this order (stage history before deals, see below):

* reference streams, read whole every pass, cursor ``None``: ``users`` (``user.get`` with
  ``department.get``: a user's manager is the head of their department), ``pipelines``
  (``crm.category.list``), ``stages`` (``crm.status.list`` per pipeline, with semantics),
  ``fields`` (``crm.{deal,company,contact}.fields``: labels, types, enumeration options),
  ``activity_types`` (Bitrix24's fixed activity kinds; no request);
* entity streams ``companies``, ``deals``, ``activities``, ``contacts``: ascending ID with
  ``filter[>ID]`` and ``start=-1`` (no counting), 50 chained list calls per ``batch``
  request, i.e. up to 2,500 rows per request. Incremental passes add
  ``filter[>=DATE_MODIFY]`` (activities: ``LAST_UPDATED``) at the cursor minus the overlap.
  Rows arrive in ID order, not modification order, so only the stream's last page carries
  the cursor (the highest modification time read, never later than the read's start);
* ``stage_history``: ``crm.stagehistory.list`` by ascending history ID; the cursor is the
  last history ID (every page moves it). It runs before ``deals`` because a closed deal
  sits in a success/failure stage: the deal's stage for the audit is the last in-progress
  stage it was closed from, which the history tells.

``contacts`` comes last, as in ``STANDARD_STREAMS``: the pass audits while they are pulled.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests

from syncd.clientconnector import ClientConnector
from syncd.connector import (
    Gates,
    Inspection,
    StageGate,
    WebhookHint,
)
from syncd.errors import BadPayloadError
from syncd.records import Deal, Page, Record, User
from syncd.store.budget import budget_key
from syncd.streams import Read, Stream, incremental, version_key
from syncd.values import FieldProblem
from syncd_bitrix24.client import MAX_BATCH, Bitrix24Client
from syncd_bitrix24.settings import Bitrix24Settings
from syncd_bitrix24.streams import (
    Entity,
    FieldCatalog,
    ListSpec,
    StageInfo,
    activity_kind,
    activity_types,
    department_managers,
    format_time,
    ident,
    iter_by_id,
    normalize_activity,
    normalize_company,
    normalize_contact,
    normalize_deal,
    normalize_many,
    normalize_pipeline,
    normalize_stage,
    normalize_user,
    parse_time,
    stage_change,
    stage_semantics,
)
from syncd_bitrix24.webhooks import parse_event
from syncd_bitrix24.writer import Bitrix24Writer

__all__ = ["Bitrix24Connector"]

log = logging.getLogger(__name__)

#: How the rows of each entity list but deals (``deal_records``) become records.
_NORMALIZERS: dict[str, Callable[[Any, FieldCatalog | None], Record]] = {
    "companies": normalize_company,
    "contacts": normalize_contact,
    "activities": lambda row, catalog: normalize_activity(row),
}

STREAMS = ("users", "pipelines", "stages", "fields", "activity_types", "companies",
           "stage_history", "deals", "activities", "contacts")
ENTITIES: tuple[Entity, ...] = ("deal", "company", "contact")
#: stream -> (list method, select, the entity whose fields resolve values, modified key)
ENTITY_LISTS: dict[str, tuple[str, list[str], str | None, str]] = {
    "companies": ("crm.company.list", ["*", "UF_*"], "company", "DATE_MODIFY"),
    "contacts": ("crm.contact.list", ["*", "UF_*", "PHONE", "EMAIL"], "contact",
                 "DATE_MODIFY"),
    "deals": ("crm.deal.list", ["*", "UF_*"], "deal", "DATE_MODIFY"),
    "activities": ("crm.activity.list", ["*"], None, "LAST_UPDATED"),
}
HISTORY = ListSpec("crm.stagehistory.list", {"entityTypeId": 2}, items="items")
DEAL_ENTITY_TYPE = 2
#: Users (and departments) read per request: pages of 50 through ``start`` offsets.
USER_PAGES = 40
DEPARTMENT_PAGES = 10


class Bitrix24Connector(ClientConnector[Bitrix24Client]):
    """One Bitrix24 portal, for one tenant pass."""

    name: ClassVar[str] = "bitrix24"
    settings_model: ClassVar[type[Bitrix24Settings]] = Bitrix24Settings

    #: The deal's card on the portal: ``https://PORTAL/crm/deal/details/<id>/``.
    deal_path: ClassVar[str | None] = "/crm/deal/details/{id}/"
    streams: ClassVar[tuple[str, ...]] = STREAMS
    task_batch_size = MAX_BATCH

    def __init__(
        self,
        settings: Bitrix24Settings,
        *,
        tenant: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(settings, tenant=tenant)
        self.settings: Bitrix24Settings = settings
        self.client = Bitrix24Client(settings, tenant=tenant, tokens=lambda: self.state.tokens,
                                     sleep=sleep, clock=clock, now=now, session=session)
        self._now = now
        #: Updates per batch request: 49 leave room for the read-back of the same records.
        self.field_batch_size = MAX_BATCH - 1 if settings.verify_writes else MAX_BATCH
        self._catalogs: dict[str, FieldCatalog] = {}
        self.writer = Bitrix24Writer(self.client, settings, catalog=self.catalog,
                                     forget_catalogs=self._catalogs.clear,
                                     deal_records=self.deal_records)
        self._stage_info: StageInfo | None = None
        self._categories: list[dict[str, Any]] | None = None
        self._last_stage: dict[str, str] = {}  # deal id -> its latest stage seen in history

    # --- pulling ------------------------------------------------------------------------
    def declare_streams(self) -> list[Stream]:
        """Reference lists (one page each), the four ID-ordered entity lists and the stage
        history, in ``STREAMS`` order."""
        return [
            Stream("users", lambda read: [Page("users", self._users())]),
            Stream("pipelines", lambda read: [Page("pipelines", [
                normalize_pipeline(c) for c in self.categories(refresh=True)])]),
            Stream("stages", self._read_stages),
            Stream("fields", lambda read: [Page("fields", [
                d for e in ENTITIES for d in self.catalog(e).field_defs()])]),
            Stream("activity_types", lambda read: [Page("activity_types", activity_types())]),
            *(Stream(name, partial(self._read_entity, name)) for name in ENTITY_LISTS),
            Stream("stage_history", self._read_history),
        ]

    def _read_stages(self, read: Read) -> list[Page]:
        self._stage_info = None
        return [Page("stages", self._stages())]

    # --- reference data -------------------------------------------------------------------
    def categories(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        if self._categories is None or refresh:
            result = self.client.call("crm.category.list", {"entityTypeId": DEAL_ENTITY_TYPE})
            rows = result.get("categories") if isinstance(result, Mapping) else None
            if not isinstance(rows, list):
                message = "bitrix24 crm.category.list: expected result.categories"
                raise BadPayloadError(message)
            if not any(str(r.get("id")) == "0" for r in rows if isinstance(r, Mapping)):
                rows = [{"id": 0, "name": "General", "sort": 0, "isDefault": "Y"}, *rows]
            self._categories = [dict(r) for r in rows if isinstance(r, Mapping)]
        return self._categories

    def _stage_rows(self) -> list[tuple[str, dict[str, Any]]]:
        categories = [str(c["id"]) for c in self.categories()]
        out: list[tuple[str, dict[str, Any]]] = []
        for first in range(0, len(categories), MAX_BATCH):
            chunk = categories[first: first + MAX_BATCH]
            commands = [("crm.status.list", {"filter": {
                "ENTITY_ID": "DEAL_STAGE" if c == "0" else f"DEAL_STAGE_{c}"},
                "order": {"SORT": "ASC"}}) for c in chunk]
            answer = self.client.batch(commands)
            for i, category in enumerate(chunk):
                name = f"c{i}"
                if name in answer.errors:
                    message = (f"bitrix24 crm.status.list for pipeline {category} failed"
                               f" inside a batch: {answer.errors[name]}")
                    raise BadPayloadError(message)
                rows = answer.results.get(name) or []
                out.extend((category, dict(r)) for r in rows if isinstance(r, Mapping))
        return out

    def _stages(self) -> list[Record]:
        """Stage records; the same rows also give the deals their semantics this pass."""
        rows = self._stage_rows()
        self.stage_info(rows)
        return normalize_many("stages", [r for _, r in rows], lambda r: normalize_stage(
            r, _category_of(r)))

    def stage_info(self, rows: Sequence[tuple[str, dict[str, Any]]] | None = None,
                   ) -> StageInfo:
        if self._stage_info is None:
            rows = self._stage_rows() if rows is None else rows
            info = StageInfo()
            for category, row in rows:
                info.stages[str(row.get("STATUS_ID"))] = (category, str(row.get("NAME") or ""),
                                                         stage_semantics(row))
            if self.settings.loss_reason_field:
                info.loss_field = self.catalog("deal").custom(self.settings.loss_reason_field)
                if info.loss_field is None:
                    log.warning("bitrix24: no deal field %r (loss_reason_field); loss reasons"
                                " come from failure stage names", self.settings.loss_reason_field)
            self._stage_info = info
        return self._stage_info

    def catalog(self, entity: str) -> FieldCatalog:
        """The field descriptions of ``entity``, read once per pass (all three entities in
        one batch request)."""
        if entity not in self._catalogs:
            answer = self.client.batch([(f"crm.{e}.fields", {}) for e in ENTITIES])
            for i, name in enumerate(ENTITIES):
                described = answer.results.get(f"c{i}")
                if not isinstance(described, Mapping):
                    error = answer.errors.get(f"c{i}", "no result")
                    message = f"bitrix24 crm.{name}.fields failed inside a batch: {error}"
                    raise BadPayloadError(message)
                self._catalogs[name] = FieldCatalog(name, described)
        return self._catalogs[entity]

    def _users(self) -> list[User]:
        users: list[dict[str, Any]] = []
        departments: list[dict[str, Any]] = []
        start = 0
        want_departments = True
        while True:
            commands: list[tuple[str, Mapping[str, Any]]] = [
                ("user.get", {"sort": "ID", "order": "ASC", "start": start + 50 * i})
                for i in range(USER_PAGES)]
            if want_departments:
                commands += [("department.get", {"sort": "ID", "order": "ASC", "start": 50 * i})
                             for i in range(DEPARTMENT_PAGES)]
            answer = self.client.batch(commands)
            more = True
            for i in range(USER_PAGES):
                page = answer.results.get(f"c{i}")
                if not isinstance(page, list):
                    message = f"bitrix24 user.get failed: {answer.errors.get(f'c{i}', 'no rows')}"
                    raise BadPayloadError(message)
                users.extend(page)
                if len(page) < 50:
                    more = False
                    break
            if want_departments:
                for i in range(DEPARTMENT_PAGES):
                    page = answer.results.get(f"c{USER_PAGES + i}")
                    if not isinstance(page, list):
                        log.warning("bitrix24 department.get failed (%s): no manager hierarchy",
                                    answer.errors.get(f"c{USER_PAGES + i}", "no rows"))
                        break
                    departments.extend(page)
                    if len(page) < 50:
                        break
                want_departments = False
            if not more:
                break
            start += 50 * USER_PAGES
        managers = department_managers(users, departments)
        return normalize_many("users", users, lambda u: normalize_user(
            u, managers.get(str(ident(u.get("ID"))))))

    # --- entity streams -----------------------------------------------------------------
    def _read_entity(self, stream: str, read: Read) -> Iterator[Page]:
        """Rows in ID order modified since the watermark less the overlap; rows read before
        in the same version are dropped, and the cursor moves once, at the end, never past
        the moment the read started (a row changed behind our position is read next time).
        """
        method, select, entity, modified = ENTITY_LISTS[stream]
        mark = read.watermark(parse_time)
        filters: dict[str, Any] = {}
        since = mark.since(read.context.overlap)
        if since is not None:
            filters[f">={modified}"] = format_time(since)
        catalog = self.catalog(entity) if entity else None
        spec = ListSpec(method, {"select": select, "filter": filters})
        started = self._now()

        def parse(rows: list[Any]) -> Page:
            problems: list[FieldProblem] = []
            records: Sequence[Record]
            if stream == "deals":
                records = self.deal_records(rows, catalog, problems=problems)
            else:
                normalize = _NORMALIZERS[stream]
                records = normalize_many(stream, rows, lambda r: normalize(r, catalog),
                                         problems=problems, tenant=self.tenant)
            return Page(stream, records, problems=[str(p) for p in problems])

        key = version_key("ID", modified, ident, parse_time)
        # The next batch is fetched while this one is normalized: the pull waits for the
        # bucket and the portal, not for our parsing (bench/bench_bitrix24.py).
        rows = read.prefetch(iter_by_id(self.client, spec, batch_size=self.settings.batch_size))
        yield from incremental(
            f"bitrix24 {stream}", rows, parse, mark, key, overlap=read.context.overlap,
            ordered=False, cap=started, read_at=started)

    def deal_records(self, rows: Sequence[Any], catalog: FieldCatalog | None, *,
                     problems: list[FieldProblem] | None = None) -> list[Deal]:
        """Deals of one page; closed deals get the stage they were closed from. With
        ``problems``, unreadable custom field values are reported there, per deal."""
        info = self.stage_info()
        missing = [str(r.get("ID")) for r in rows if isinstance(r, Mapping)
                   and str(r.get("STAGE_SEMANTIC_ID") or "P") in {"S", "F"}
                   and str(r.get("ID")) not in info.closed_from]
        self._lookup_closed_from(missing)
        return normalize_many("deals", rows, lambda r: normalize_deal(r, catalog, info),
                              problems=problems, tenant=self.tenant)

    def _lookup_closed_from(self, deal_ids: Sequence[str]) -> None:
        """The last in-progress stage of closed deals whose history was not read this pass."""
        info = self.stage_info()
        wanted = [d for d in dict.fromkeys(deal_ids) if d.isdigit()]
        for first in range(0, len(wanted), MAX_BATCH):
            chunk = wanted[first: first + MAX_BATCH]
            commands = [("crm.stagehistory.list", {
                "entityTypeId": DEAL_ENTITY_TYPE, "order": {"ID": "DESC"}, "start": -1,
                "filter": {"OWNER_ID": deal, "STAGE_SEMANTIC_ID": "P"}}) for deal in chunk]
            answer = self.client.batch(commands)
            for i, deal in enumerate(chunk):
                result = answer.results.get(f"c{i}")
                items = result.get("items") if isinstance(result, Mapping) else None
                if items and isinstance(items[0], Mapping) and items[0].get("STAGE_ID"):
                    info.closed_from[deal] = str(items[0]["STAGE_ID"])

    # --- stage history ------------------------------------------------------------------
    def _read_history(self, read: Read) -> Iterator[Page]:
        """History rows by ascending ID after the cursor (the last ID read): nothing is
        read twice, every page moves the cursor."""
        cursor = read.cursor
        after = 0
        if cursor and not read.full:
            try:
                after = int(cursor)
            except ValueError:
                log.warning("bitrix24 stage_history: unreadable cursor %r; reading all", cursor)
        info = self.stage_info()
        incremental = after > 0  # a read from the start has no earlier rows to look up
        pages = read.prefetch(iter_by_id(self.client, HISTORY, after,
                                         batch_size=self.settings.batch_size))
        for rows in pages:
            if incremental:
                self._previous_stages(rows)
            records: list[Record] = []
            for row in rows:
                if not isinstance(row, Mapping):
                    message = "bitrix24 stage_history: expected an object"
                    raise BadPayloadError(message)
                deal = str(row.get("OWNER_ID"))
                previous = None if str(row.get("TYPE_ID")) == "1" else self._last_stage.get(deal)
                try:
                    change = stage_change(row, previous)
                except (TypeError, ValueError) as exc:
                    message = f"bitrix24 stage_history: row {row.get('ID')!r} is malformed: {exc}"
                    raise BadPayloadError(message) from exc
                records.append(change)
                self._last_stage[deal] = change.to_stage_id
                if str(row.get("STAGE_SEMANTIC_ID") or "P") == "P":
                    info.closed_from[deal] = change.to_stage_id
                after = max(after, int(change.external_id))
            yield Page("stage_history", records, str(after) if rows else cursor)

    def _previous_stages(self, rows: Sequence[Any]) -> None:
        """For deals whose first row here is a move, the stage they moved from (one
        command per deal, 50 per request): only deals whose earlier history we never read."""
        first: dict[str, int] = {}
        seen: set[str] = set()
        for row in rows:
            if not isinstance(row, Mapping):
                continue
            deal = str(row.get("OWNER_ID"))
            if deal in seen:
                continue
            seen.add(deal)
            if str(row.get("TYPE_ID")) != "1" and deal not in self._last_stage:
                first[deal] = int(row.get("ID") or 0)
        deals = list(first)
        for start in range(0, len(deals), MAX_BATCH):
            chunk = deals[start: start + MAX_BATCH]
            answer = self.client.batch([("crm.stagehistory.list", {
                "entityTypeId": DEAL_ENTITY_TYPE, "order": {"ID": "DESC"}, "start": -1,
                "filter": {"OWNER_ID": deal, "<ID": first[deal]}}) for deal in chunk])
            for i, deal in enumerate(chunk):
                result = answer.results.get(f"c{i}")
                items = result.get("items") if isinstance(result, Mapping) else None
                if items and isinstance(items[0], Mapping) and items[0].get("STAGE_ID"):
                    self._last_stage[deal] = str(items[0]["STAGE_ID"])

    # --- describing the portal ------------------------------------------------------------
    def read_gates(self) -> Gates:
        """Stages with their semantics (P/S/F) and the loss reasons as Bitrix24 models them
        (failure-stage names, the options of the loss-reason field). Read only: Bitrix24
        has no rotting setting, its REST API sets no per-stage required fields, and adding
        a failure stage per reason changes the pipeline itself, so a person does it."""
        rows = self._stage_rows()
        info = self.stage_info(rows)
        names = {str(c["id"]): str(c.get("name")) for c in self.categories()}
        stages = [StageGate(id=str(r.get("STATUS_ID")), pipeline=names.get(c, c),
                            name=str(r.get("NAME")), semantics=stage_semantics(r))
                  for c, r in rows]
        reasons = {sid: name for sid, (_, name, semantic) in info.stages.items()
                   if semantic == "F"}
        if info.loss_field is not None:
            reasons.update({f"option:{k}": v for k, v in info.loss_field.options.items()})
        return Gates(stages=stages, loss_reasons=reasons, writable=())

    def inspect(self) -> Inspection:
        """Pipelines with stages and their semantics, loss reasons (failure stage names and
        the options of the configured loss-reason field), field labels, users."""
        rows = self._stage_rows()
        info = self.stage_info(rows)
        described = []
        for category in self.categories():
            cid = str(category["id"])
            stages = [{"id": str(r.get("STATUS_ID")), "name": r.get("NAME"),
                       "order": int(r.get("SORT") or 0),
                       "semantics": {"P": "in progress", "S": "success", "F": "failure"}[
                           stage_semantics(r)]}
                      for c, r in rows if c == cid]
            described.append({"id": cid, "name": category.get("name"), "stages": stages})
        reasons = {name for _, name, semantic in info.stages.values() if semantic == "F"}
        if info.loss_field is not None:
            reasons |= set(info.loss_field.options.values())
        users = self._users()
        return Inspection(
            pipelines=described,
            loss_reasons=sorted(reasons),
            fields={entity: self.catalog(entity).names() for entity in ENTITIES},
            activity_types=[t.key for t in activity_types()],
            activity_kinds=self._activity_kinds(),
            users=[{"id": u.external_id, "name": u.name, "email": getattr(u, "email", None),
                    "active": getattr(u, "active", True),
                    "manager_id": getattr(u, "manager_id", None)} for u in users],
        )

    def _activity_kinds(self) -> dict[str, int]:
        """How many activities the portal holds of each provider-aware kind key (what a
        tenant's ``mapping.activity_types`` can name), most frequent first: one batch
        request per 2,500 activities, reading only the three type fields."""
        spec = ListSpec("crm.activity.list",
                        {"select": ["ID", "TYPE_ID", "PROVIDER_ID", "PROVIDER_TYPE_ID"]})
        counts: Counter[str] = Counter()
        for rows in iter_by_id(self.client, spec, batch_size=self.settings.batch_size):
            for row in rows:
                if isinstance(row, Mapping):
                    try:
                        counts[activity_kind(row)] += 1
                    except ValueError:
                        counts[f"TYPE_ID {row.get('TYPE_ID')!r} (unknown)"] += 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    # --- webhooks -------------------------------------------------------------------------
    def webhook_hint(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        """An outbound event (``event=ONCRMDEALUPDATE&data[FIELDS][ID]=42``, form-encoded;
        JSON accepted too). Only the id travels: the data is re-read through the API."""
        return parse_event(body)

    def rate_budgets(self) -> list[tuple[Any, str]]:
        """Bitrix24's leaky bucket is per portal: one bucket for every process."""
        host = urlsplit(self.settings.webhook_url or self.settings.base_url).netloc
        return [(self.client.limiter, budget_key("bitrix24", host))]


def _category_of(row: Mapping[str, Any]) -> str:
    entity = str(row.get("ENTITY_ID") or "DEAL_STAGE")
    return entity.removeprefix("DEAL_STAGE").removeprefix("_") or "0"
