"""The amoCRM / Kommo connector for syncd (API v4).

Streams, in ``STANDARD_STREAMS`` order (``contacts`` is pulled last, after the stage history:
the pass audits while they are pulled):

* reference streams, pulled whole every pass, cursor ``None``: ``users``, ``pipelines`` and
  ``stages`` (one ``/leads/pipelines`` request for both; stages keyed
  ``"<pipeline>:<status>"`` because 142/143 repeat in every pipeline), ``fields`` (custom
  field definitions of leads, companies, contacts, plus the loss reason catalogue as the
  options of the standard ``deal:loss_reason`` field), ``activity_types`` (the account's
  task types and the two call note types);
* entity streams, incremental on ``updated_at``: ``companies``, ``contacts``, ``deals``.
  amoCRM pages by offset, which drifts when records change while we read; so each request
  starts at the highest ``updated_at`` read so far (``filter[updated_at][from]``, sorted
  ascending), page 1, and the boundary records are de-duplicated: a keyset walk. Every page
  can then carry its cursor. Deleted leads (``with=only_deleted``) go to ``deleted_ids``
  when their payload says ``is_deleted: true`` (never on the query's word alone);
* ``activities``: tasks and call notes (of leads, contacts and companies) updated since the
  cursor, sorted by id (stable under edits); the cursor moves once, at the end, to the
  newest ``updated_at`` read, capped at the stream's start;
* ``stage_history``: the events log (``lead_added``, ``lead_status_changed``) created since
  the cursor, in a closed window ``[cursor - overlap, start]``: that is exactly the stage
  history of every lead changed since the last pass, at 100 events per request, instead of
  one request per ten changed leads (``filter[entity_id]`` takes at most ten ids).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from itertools import pairwise
from typing import Any, ClassVar

import requests

from syncd.clientconnector import ClientConnector
from syncd.connector import (
    STANDARD_STREAMS,
    GateChange,
    Gates,
    Inspection,
    StageGate,
    WebhookHint,
)
from syncd.errors import BadPayloadError
from syncd.records import FieldDef, Page, Pipeline, Stage
from syncd.secrets import register
from syncd.store.budget import budget_key
from syncd.streams import KeyOf, Read, Stream, incremental, version_key
from syncd.values import FieldProblem, from_unix
from syncd_amocrm.client import AmoCRMClient, embedded
from syncd_amocrm.settings import AmoCRMSettings
from syncd_amocrm.streams import (
    CALL_NOTE_TYPES,
    ENTITY_PATHS,
    ENTITY_STREAMS,
    EVENT_TYPES,
    EVENTS_PAGE,
    EVENTS_PATH,
    NOTE_PATHS,
    TASKS,
    Entity,
    EntityStream,
    FieldCatalog,
    activity_types,
    ident,
    loss_reason_field,
    normalize_call_note,
    normalize_many,
    normalize_user,
    pipelines_and_stages,
    stage_change,
    stage_key,
    to_unix,
)
from syncd_amocrm.webhooks import parse_webhook
from syncd_amocrm.writer import REREAD_CHUNK, AmoCRMWriter

__all__ = ["AmoCRMConnector"]

log = logging.getLogger(__name__)


class AmoCRMConnector(ClientConnector[AmoCRMClient]):
    """One amoCRM or Kommo account, for one tenant pass."""

    name: ClassVar[str] = "amocrm"
    settings_model: ClassVar[type[AmoCRMSettings]] = AmoCRMSettings

    #: The lead's card: ``https://SUBDOMAIN.amocrm.ru/leads/detail/<id>``.
    deal_path: ClassVar[str | None] = "/leads/detail/{id}"
    streams: ClassVar[tuple[str, ...]] = STANDARD_STREAMS

    def __init__(
        self,
        settings: AmoCRMSettings,
        *,
        tenant: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(settings, tenant=tenant)
        self.settings: AmoCRMSettings = settings
        for secret in (settings.long_lived_token, settings.client_secret,
                       settings.authorization_code, settings.refresh_token):
            if secret:
                register(secret)
        self.client = AmoCRMClient(settings, tenant=tenant,
                                   token_store=lambda: self.state.tokens, sleep=sleep,
                                   clock=clock, now=now, session=session)
        self._now = now
        self._catalogs: dict[str, FieldCatalog] = {}
        self._reasons: dict[str, str] | None = None
        self._pipelines: tuple[list[Pipeline], list[Stage]] | None = None
        self.writer = AmoCRMWriter(self.client, settings, catalog=self.catalog,
                                   loss_reasons=self.loss_reasons)
        self.task_batch_size = settings.batch_size
        # The core hands write_fields this many writes at once: PATCHed in batch_size
        # chunks, then read back in one GET (filter[id][] takes 250 ids), so 10,000 values
        # cost 200 PATCHes + 40 GETs instead of 200 + 200.
        self.field_batch_size = max(settings.batch_size, REREAD_CHUNK)

    # --- pulling ------------------------------------------------------------------------
    def declare_streams(self) -> list[Stream]:
        """Reference lists, the three keyset-walked entity lists, activities (tasks and
        call notes) and the lead events log, in ``STANDARD_STREAMS`` order."""
        return [
            Stream("users", self._read_users),
            Stream("pipelines", partial(self._read_pipelines, "pipelines")),
            Stream("stages", partial(self._read_pipelines, "stages")),
            Stream("fields", self._read_fields),
            Stream("activity_types", self._read_activity_types),
            *(Stream(name, partial(self._read_entity, spec))
              for name, spec in ENTITY_STREAMS.items()),
            Stream("activities", self._read_activities),
            Stream("stage_history", self._read_history),
        ]

    def _read_users(self, read: Read) -> Iterator[Page]:
        for items in self.client.iter_pages("/api/v4/users", "users"):
            yield Page("users", normalize_many("users", items, normalize_user))

    def _read_pipelines(self, stream: str, read: Read) -> Iterator[Page]:
        pipelines, stages = self.pipelines(refresh=stream == "pipelines")
        yield Page(stream, pipelines if stream == "pipelines" else stages)

    def _read_activity_types(self, read: Read) -> Iterator[Page]:
        account = self.client.call("GET", "/api/v4/account", params={"with": "task_types"})
        inner = account.get("_embedded") if isinstance(account, dict) else None
        types = inner.get("task_types") if isinstance(inner, dict) else None
        yield Page("activity_types", activity_types(types or ()))

    # --- reference data -------------------------------------------------------------------
    def pipelines(self, *, refresh: bool = False) -> tuple[list[Pipeline], list[Stage]]:
        """Pipelines with their statuses (one request per pass)."""
        if self._pipelines is None or refresh:
            body = self.client.call("GET", "/api/v4/leads/pipelines")
            items, _ = embedded(body, "pipelines", "/api/v4/leads/pipelines")
            self._pipelines = normalize_many_pair(items)
        return self._pipelines

    def catalog(self, entity: Entity) -> FieldCatalog:
        """The custom field definitions of ``entity``, read once per pass."""
        catalog = self._catalogs.get(entity)
        if catalog is None:
            path = f"/api/v4/{ENTITY_PATHS[entity]}/custom_fields"
            definitions = [d for page in self.client.iter_pages(path, "custom_fields",
                                                                limit=50) for d in page]
            catalog = FieldCatalog(entity, definitions)
            self._catalogs[entity] = catalog
        return catalog

    def loss_reasons(self) -> dict[str, str]:
        """The account's loss reason catalogue: id -> name (read once per pass)."""
        if self._reasons is None:
            reasons: dict[str, str] = {}
            for items in self.client.iter_pages("/api/v4/leads/loss_reasons", "loss_reasons"):
                for item in items:
                    reason_id = ident(item.get("id"))
                    if reason_id is not None:
                        reasons[reason_id] = str(item.get("name") or reason_id)
            self._reasons = reasons
        return self._reasons

    def _read_fields(self, read: Read) -> Iterator[Page]:
        for entity in ENTITY_PATHS:
            self._catalogs.pop(entity, None)
            records: list[FieldDef] = self.catalog(entity).field_defs()
            if entity == "deal":
                self._reasons = None
                records.append(loss_reason_field(self.loss_reasons()))
            yield Page("fields", records)

    # --- entities -------------------------------------------------------------------------
    def _read_entity(self, spec: EntityStream, read: Read) -> Iterator[Page]:
        """A keyset walk from the watermark less the overlap (``_keyset``); items read
        before in the same version are dropped (``syncd.streams.Watermark``)."""
        mark = read.watermark(_legacy_cursor)
        start = mark.since(read.context.overlap)
        since = None if start is None else to_unix(start)
        catalog = self.catalog(spec.entity) if spec.entity else None
        reasons = self.loss_reasons() if spec.name == "deals" else None
        walk = _Keyset(since)

        def parse(items: list[Any]) -> Page:
            problems: list[FieldProblem] = []
            records = normalize_many(spec.name, items, spec.normalize, catalog, reasons,
                                     problems=problems, tenant=self.tenant)
            deleted = [r.external_id for r in records
                       if getattr(r, "status", "") == "deleted" or getattr(r, "deleted", False)]
            return Page(spec.name, records, None, deleted_ids=deleted,
                        problems=[str(p) for p in problems])

        yield from incremental(
            f"amocrm {spec.name}", self._keyset(spec.path, spec.key, dict(spec.params), walk),
            parse, mark, _item_key(""), overlap=read.context.overlap,
            ordered=lambda: walk.ordered, read_at=self._now())
        if spec.name == "deals":
            yield from self._deleted_leads(since)

    def _keyset(self, path: str, key: str, params: dict[str, Any],
                walk: _Keyset) -> Iterator[list[dict[str, Any]]]:
        """Every record updated at or after ``walk.since`` in ascending ``updated_at`` order.

        Each request restarts at page 1 from the highest ``updated_at`` read so far, so a
        record that moves while we read cannot shift a page boundary over an unread one;
        records read twice at a boundary second are dropped. Only a page whose records all
        share one second moves to the next page of that second. If amoCRM ever answers out
        of order, the walk falls back to plain pages from the original start (slower and
        exposed to drift, but never skipping what a sorted walk would have jumped over).
        """
        frm, page = walk.since, 1
        seen: set[tuple[Any, Any]] = set()
        while True:
            query = {**params, "order[updated_at]": "asc", "limit": self.settings.page_size,
                     "page": page}
            if frm is not None:
                query["filter[updated_at][from]"] = frm
            items, more = embedded(self.client.call("GET", path, params=query), key, path)
            stamps = [s for s in (_stamp(i) for i in items) if s is not None]
            if walk.ordered and any(a > b for a, b in pairwise(stamps)):
                log.warning("amocrm %s: answer not sorted by updated_at; reading plain pages"
                            " from the start and holding the cursor", path)
                walk.ordered = False
                frm, page, seen = walk.since, 1, set()
                continue
            fresh = [i for i in items if (i.get("id"), i.get("updated_at")) not in seen]
            yield fresh
            if not more:
                return
            last = max(stamps) if stamps else None
            if not walk.ordered or last is None:
                page += 1
                if not walk.ordered:
                    continue
            elif frm is None or last > frm:
                frm, page = last, 1
                seen = set()
            else:
                page += 1
            seen |= {(i.get("id"), i.get("updated_at")) for i in items if _stamp(i) == frm}

    def _deleted_leads(self, since: int | None) -> Iterator[Page]:
        """Leads deleted (and still restorable) since ``since``: ``with=only_deleted``.

        A lead counts as deleted only when its own payload says ``is_deleted: true``: a
        server (or proxy) that ignores the ``only_deleted`` filter answers with live leads,
        and taking the whole answer for deleted would delete the tenant's book. Leads in
        that answer without the flag are left alone and the mismatch is logged once."""
        params: dict[str, Any] = {"with": "only_deleted"}
        if since is not None:
            params["filter[updated_at][from]"] = since
        ignored = 0
        for items in self.client.iter_pages("/api/v4/leads", "leads", params):
            flagged = [i for i in items if isinstance(i, dict) and i.get("is_deleted") is True]
            ignored += len(items) - len(flagged)
            ids = [x for x in (ident(i.get("id")) for i in flagged) if x is not None]
            if ids:
                yield Page("deals", [], None, deleted_ids=ids)
        if ignored:
            log.warning("amocrm tenant %s: the deleted-leads query (with=only_deleted) "
                        "answered %d leads not marked is_deleted; they are not deleted",
                        self.tenant, ignored)

    # --- activities -----------------------------------------------------------------------
    def _read_activities(self, read: Read) -> Iterator[Page]:
        """Tasks, then call notes (sorted by id, so the cursor moves on the last page only,
        never past the moment the read began)."""
        mark = read.watermark(_legacy_cursor)
        began = self._now()
        base: dict[str, Any] = {"order[id]": "asc"}
        start = mark.since(read.context.overlap)
        if start is not None:
            base["filter[updated_at][from]"] = to_unix(start)
        note_params = {**base, "filter[note_type][]": list(CALL_NOTE_TYPES)}
        sources = [("task", TASKS.path, TASKS.key, base),
                   *((entity, path, "notes", note_params) for entity, path in NOTE_PATHS.items())]

        def raw_pages() -> Iterator[list[tuple[str, Any]]]:
            for source, path, key, params in sources:
                for items in self.client.iter_pages(path, key, params):
                    if items:  # a 204: nothing from this source
                        yield [(source, item) for item in items]

        def parse(tagged: list[tuple[str, Any]]) -> Page:
            records: list[Any] = []
            for source in dict.fromkeys(s for s, _ in tagged):
                items = [i for s, i in tagged if s == source]
                records += (normalize_many("activities", items, TASKS.normalize)
                            if source == "task" else
                            normalize_many("activities", items, normalize_call_note, source))
            return Page("activities", records)

        yield from incremental("amocrm activities", raw_pages(), parse, mark,
                               lambda pair: _item_key(pair[0])(pair[1]),
                               overlap=read.context.overlap, ordered=False, cap=began,
                               read_at=began)

    # --- stage history --------------------------------------------------------------------
    def _read_history(self, read: Read) -> Iterator[Page]:
        """Events created in ``[watermark - overlap, now]``; events read before are dropped,
        and the watermark moves to the end of the window."""
        mark = read.watermark(_legacy_cursor)
        until = self._now()
        params: dict[str, Any] = {"filter[type]": EVENT_TYPES, "filter[entity]": "lead",
                                  "filter[created_at][to]": to_unix(until)}
        start = mark.since(read.context.overlap)
        if start is not None:
            params["filter[created_at][from]"] = to_unix(start)
        pending: Page | None = None
        for items in self.client.iter_pages(EVENTS_PATH, "events", params,
                                            limit=min(EVENTS_PAGE, self.settings.page_size)):
            if pending is not None:
                yield pending
            keys = [_event_key(item) for item in items]
            fresh = [i for i, k in zip(items, keys, strict=True) if mark.fresh(k)]
            mark.note_all(keys, until)
            pending = Page("stage_history", normalize_many("stage_history", fresh,
                                                           stage_change))
        last = pending or Page("stage_history", [])
        last.cursor = mark.dump(until, read.context.overlap)
        yield last

    # --- the CRM's own gates (syncd drift / plan / apply) ---------------------------------
    def read_gates(self) -> Gates:
        """Stages (amoCRM has no rotting setting) and the loss-reason catalogue, read anew.
        The deal fields' ``required_statuses`` say which fields each status requires."""
        pipelines, stages = self.pipelines()
        names = {p.external_id: p.name for p in pipelines}
        self._reasons = None
        self._catalogs.pop("deal", None)
        catalog = self.catalog("deal")
        required: dict[str, list[str]] = {}
        for info in catalog.by_key.values():
            for pair in info.raw.get("required_statuses") or ():
                key = stage_key(pair.get("pipeline_id"), pair.get("status_id")) \
                    if isinstance(pair, dict) else None
                if key is not None:
                    required.setdefault(key, []).append(info.name)
        return Gates(
            stages=[StageGate(id=s.external_id, pipeline=names.get(s.pipeline_id, "?"),
                              name=s.name,
                              required_fields=tuple(required.get(s.external_id, ())))
                    for s in stages],
            loss_reasons=dict(self.loss_reasons()),
            deal_fields={n: i.key for n in catalog.names() if (i := catalog.named(n))},
            writable=("loss_reason_add", "loss_reason_delete", "field_required"))

    def apply_gate(self, change: GateChange) -> GateChange:
        path = "/api/v4/leads/loss_reasons"
        if change.kind == "loss_reason_add":
            body = self.client.call("POST", path, json=[{"name": change.after}],
                                    idempotent=False)
            items, _ = embedded(body, "loss_reasons", path)
            if not items or ident(items[0].get("id")) is None:
                message = f"amocrm {path}: the answer names no new loss reason"
                raise BadPayloadError(message)
            self._reasons = None
            return replace(change, target=str(ident(items[0]["id"])))
        if change.kind == "loss_reason_delete":
            self.client.call("DELETE", f"{path}/{change.target}", idempotent=True)
            self._reasons = None
            return change
        if change.kind == "field_required":
            pairs = []
            for key in change.after or ():
                pipeline_id, status_id = str(key).split(":", 1)
                pairs.append({"pipeline_id": int(pipeline_id), "status_id": int(status_id)})
            self.client.call("PATCH", "/api/v4/leads/custom_fields",
                             json=[{"id": int(change.target), "required_statuses": pairs}],
                             idempotent=True)
            self._catalogs.pop("deal", None)
            return change
        raise NotImplementedError(f"amocrm cannot make a {change.kind} change")

    # --- describing the account -----------------------------------------------------------
    def inspect(self) -> Inspection:
        """Pipelines with their statuses (ids ``pipeline:status``), the loss reason
        catalogue, custom field names per entity, activity type keys and users."""
        pipelines, stages = self.pipelines()
        described = []
        for pipeline in pipelines:
            own = sorted((s for s in stages if s.pipeline_id == pipeline.external_id),
                         key=lambda s: (s.order, s.external_id))
            described.append({"id": pipeline.external_id, "name": pipeline.name,
                              "stages": [{"id": s.external_id, "name": s.name,
                                          "order": s.order} for s in own]})
        account = self.client.call("GET", "/api/v4/account", params={"with": "task_types"})
        inner = account.get("_embedded") if isinstance(account, dict) else None
        types = activity_types((inner or {}).get("task_types") or ())
        users = [u for items in self.client.iter_pages("/api/v4/users", "users")
                 for u in normalize_many("users", items, normalize_user)]
        return Inspection(
            pipelines=described,
            loss_reasons=sorted(set(self.loss_reasons().values())),
            fields={entity: self.catalog(entity).names() for entity in ENTITY_PATHS},
            activity_types=[f"{t.key} ({t.name})" for t in types],
            users=[{"id": u.external_id, "name": u.name, "email": u.email,
                    "active": u.active} for u in users],
        )

    def webhook_hint(self, headers: Mapping[str, str], body: bytes) -> WebhookHint:
        """The entity and ids an amoCRM webhook names (see ``syncd_amocrm.webhooks``)."""
        return parse_webhook(headers, body)

    def rate_budgets(self) -> list[tuple[Any, str]]:
        """amoCRM counts 7 requests/s per integration: one budget for every process."""
        who = self.settings.client_id or self.settings.long_lived_token
        return [(self.client.limiter, budget_key("amocrm", self.settings.base_url, who))]


def normalize_many_pair(items: list[Any]) -> tuple[list[Pipeline], list[Stage]]:
    """Pipelines and stages of one ``/leads/pipelines`` answer; malformed: the page fails."""
    try:
        return pipelines_and_stages(items)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        message = f"amocrm pipelines: malformed pipeline list: {type(exc).__name__}: {exc}"
        raise BadPayloadError(message) from exc


class _Keyset:
    """The state of one keyset walk: where it started and whether answers came sorted."""

    def __init__(self, since: int | None) -> None:
        self.since = since
        self.ordered = True


def _stamp(item: dict[str, Any]) -> int | None:
    try:
        moment = from_unix(item.get("updated_at"))
    except (TypeError, ValueError):
        return None
    return to_unix(moment) if moment is not None else None


def _legacy_cursor(text: str) -> datetime | None:
    """A cursor written before compound cursors: Unix seconds."""
    return from_unix(int(text))


def _item_key(prefix: str) -> KeyOf:
    """``(id, updated_at)`` of an amoCRM item; ``prefix`` keeps tasks and notes apart."""
    return version_key("id", "updated_at", ident, from_unix, prefix)


#: An event's identity and version: events never change, ``created_at`` will do.
_event_key = version_key("id", "created_at", lambda v: str(v) if v else None, from_unix)
