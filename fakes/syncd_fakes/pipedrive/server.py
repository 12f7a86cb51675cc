"""A local fake Pipedrive account over real HTTP (standard library only).

Used by the tests, ``syncd demo`` and the benchmark. It follows the documented behaviour
the connector depends on, so a connector bug shows up here as it would against Pipedrive:

* ``x-api-token`` header auth (401 ``{success: false, error}`` otherwise; a token in the
  query string is *not* accepted unless ``query_token=True``: the ``api_token`` query
  parameter is Pipedrive's older documented transport, still used by third-party clients
  such as tap-pipedrive, https://pipedrive.readme.io/docs/core-api-concepts-authentication);
* v2 lists with cursor paging (``limit`` <= 500, opaque ``next_cursor``), ``updated_since``
  (>=) / ``updated_until`` (<), ``sort_by`` ``id|update_time|add_time``, ``sort_direction``,
  deal ``status`` (default: everything but deleted; archived deals only under
  ``/deals/archived``), activity ``deal_id``/``org_id``/``person_id``/``owner_id``/``done``;
* v1 field lists ``dealFields``, ``organizationFields``, ``personFields``, ``activityFields``
  (``start``/``limit`` offset paging, ``additional_data.pagination``; fields carry ``key``,
  ``name``, ``field_type``: https://developers.pipedrive.com/docs/api/v1/DealFields#getDealFields);
* v1 ``users``, ``activityTypes`` and ``deals/{id}/flow`` (offset paging, ``data: null``
  when empty, string old/new values, ``YYYY-MM-DD HH:MM:SS`` times, newest first);
* PATCH of deal/organization ``custom_fields`` (rejecting unknown keys and numbers sent as
  strings, bumping ``update_time``), POST of activities and of custom fields (v1);
* a rolling ``window``-second limit of ``burst_limit`` requests per token: 429 with
  ``x-ratelimit-limit/remaining/reset`` (those headers are on every response; the reset in
  fractional seconds, or rounded up to whole seconds with ``whole_second_reset=True`` as in
  the rate-limit page's example value ``2``, https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting);
  optionally a daily budget (429 with ``x-daily-ratelimit-token-remaining: 0``);
* fault injection (``faults``): 429, 503, an HTML 403 block page, HTML 502, truncated
  JSON, 204 with no body, a dropped connection, or holding a request on a
  ``threading.Event`` (the crash test blocks the Nth write until it has killed the client);
* weather (``weather``, a ``syncd_fakes.http.Weather``): every request independently gets a
  502, 503, 429, an HTML page under 200 or its body cut short, 502/truncation possibly
  after a write was applied. Pipedrive documents 429, 500, 503 (maintenance) and gateway
  answers: https://pipedrive.readme.io/docs/core-api-concepts-http-status-codes

``python -m syncd_fakes.pipedrive.server --port 8765 --deals 100`` serves one for manual runs.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from syncd_fakes.http import (
    FakeHandler,
    FakeHTTPServer,
    Fault,
    Weather,
    choose_fault,
    serve_until_interrupted,
)
from syncd_fakes.pipedrive.sample import (
    STAGE_NAMES,
    Dataset,
    Table,
    flow_row,
    sample_dataset,
    scaled_dataset,
    v1_time,
    v2_time,
)

MAX_LIMIT = 500
DEMO_TOKEN = "demo-token"  # noqa: S105 - the fake's public token
DEFAULT_LIMIT = 100
FIELD_TYPES = frozenset({"varchar", "varchar_auto", "text", "double", "monetary", "date", "set",
                         "enum", "user", "org", "people", "phone", "time", "timerange",
                         "daterange", "address"})
BLOCK_PAGE = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    "<body><h1>Sorry, you have been blocked</h1><p>You are unable to access pipedrive.com"
    "</p></body></html>"
)
GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class ApiProblem(Exception):
    """An error answer: HTTP status plus Pipedrive's error envelope."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- the in-memory store --------------------------------------------------------------------
def _epoch(value: str | None) -> int:
    if not value:
        return 0
    return int(datetime.fromisoformat(value).timestamp())


class Collection:
    """One entity's records with a ``(update_time, id)`` index for keyset paging."""

    def __init__(self, table: Table) -> None:
        self.rows: dict[int, dict[str, Any]] = dict(table.rows)
        self.size = table.size if table.factory else 0
        self.factory = table.factory
        stamp = table.stamp
        index = [(_epoch(r.get("update_time")), i) for i, r in self.rows.items()]
        if self.factory is not None and stamp is not None:
            index += [(stamp(i), i) for i in range(1, self.size + 1) if i not in self.rows]
        index.sort()
        self.index = index

    def get(self, record_id: int) -> dict[str, Any] | None:
        row = self.rows.get(record_id)
        if row is None and self.factory is not None and 1 <= record_id <= self.size:
            row = self.factory(record_id)
        return row

    def ids(self) -> list[int]:
        virtual = range(1, self.size + 1) if self.factory is not None else ()
        return sorted(set(virtual) | set(self.rows))

    def _sort_key(self, record_id: int, sort_by: str) -> int:
        if sort_by == "id":
            return record_id
        record = self.get(record_id) or {}
        return _epoch(record.get(sort_by))

    def next_id(self) -> int:
        return max([self.size, *self.rows]) + 1

    def put(self, record: dict[str, Any]) -> None:
        """Insert or replace a record, keeping the index in order."""
        record_id = int(record["id"])
        old = self.get(record_id)
        if old is not None:
            key = (_epoch(old.get("update_time")), record_id)
            position = bisect.bisect_left(self.index, key)
            if position < len(self.index) and self.index[position] == key:
                self.index.pop(position)
        self.rows[record_id] = record
        bisect.insort(self.index, (_epoch(record.get("update_time")), record_id))

    def walk(self, sort_by: str, descending: bool, after: list[int] | None,
             since: int | None, until: int | None) -> Iterator[tuple[list[int], dict[str, Any]]]:
        """Records in ``sort_by`` order strictly after the keyset ``after``."""
        if sort_by == "update_time":
            keys: list[tuple[int, int]] = self.index
        else:
            keys = sorted((self._sort_key(i, sort_by), i) for i in self.ids())
        order = range(len(keys) - 1, -1, -1) if descending else range(len(keys))
        if not descending:
            if after is not None:
                start = bisect.bisect_right(keys, (after[0], after[1]))
            elif since is not None and sort_by == "update_time":
                start = bisect.bisect_left(keys, (since, -1))
            else:
                start = 0
            order = range(start, len(keys))
        for position in order:
            key, record_id = keys[position]
            if descending and after is not None and (key, record_id) >= tuple(after):
                continue
            record = self.get(record_id)
            if record is None:
                continue
            stamp = _epoch(record.get("update_time"))
            if since is not None and stamp < since:
                continue
            if until is not None and stamp >= until:
                if sort_by == "update_time" and not descending:
                    return
                continue
            yield [key, record_id], record


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any


FaultPolicy = Callable[[Request], "Fault | str | None"] | list[Fault]


def _standard_fields(*fields: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [{"field_code": code, "field_name": name, "field_type": kind,
             "is_custom_field": False, "options": None} for code, name, kind in fields]


#: v1 field lists of the entities the fake keeps no custom fields for: standard fields only.
_STANDARD_ONLY_FIELDS: dict[str, list[dict[str, Any]]] = {
    "activityFields": _standard_fields(
        ("id", "ID", "int"), ("subject", "Subject", "varchar"), ("type", "Type", "enum"),
        ("done", "Done", "boolean"), ("due_date", "Due date", "date"),
        ("deal_id", "Deal", "int"), ("org_id", "Organization", "int"),
        ("person_id", "Person", "int"), ("owner_id", "Assigned to user", "user"),
        ("update_time", "Update time", "date")),
    "noteFields": _standard_fields(
        ("id", "ID", "int"), ("content", "Content", "text"), ("deal_id", "Deal", "int"),
        ("org_id", "Organization", "int"), ("person_id", "Person", "int"),
        ("update_time", "Update time", "date")),
    "productFields": _standard_fields(
        ("id", "ID", "int"), ("name", "Name", "varchar"), ("code", "Product code", "varchar"),
        ("unit", "Unit", "varchar"), ("update_time", "Update time", "date")),
}


class _RollingWindow:
    """Arrival times of the last ``window`` seconds, per token."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.arrivals: deque[float] = deque()

    def admit(self, now: float) -> tuple[bool, int, float]:
        """(admitted, remaining, reset seconds)."""
        while self.arrivals and self.arrivals[0] <= now - self.window:
            self.arrivals.popleft()
        admitted = len(self.arrivals) < self.limit
        if admitted:
            self.arrivals.append(now)
        remaining = self.limit - len(self.arrivals)
        reset = (self.arrivals[0] + self.window - now) if self.arrivals else 0.0
        return admitted, max(remaining, 0), max(reset, 0.0)


class FakePipedrive(FakeHTTPServer):
    """The fake account. ``start()`` returns its base URL; also a context manager."""

    thread_name = "fake-pipedrive"

    def __init__(
        self,
        dataset: Dataset,
        *,
        token: str = DEMO_TOKEN,
        burst_limit: int = 20,
        window: float = 2.0,
        faults: FaultPolicy | None = None,
        weather: Weather | None = None,
        daily_budget: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        host: str = "127.0.0.1",
        port: int = 0,
        query_token: bool = False,
        whole_second_reset: bool = False,
    ) -> None:
        self.dataset = dataset
        self.token = token
        self.query_token = query_token
        self.whole_second_reset = whole_second_reset
        self.burst_limit = burst_limit
        self.window = window
        self.faults = faults
        self.weather = weather
        self.daily_budget = daily_budget
        self.clock = clock
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.writes: list[tuple[str, str, Any]] = []
        self.requests_count = 0
        self.rate_limited_count = 0
        self.daily_used = 0
        self._windows: dict[str, _RollingWindow] = {}
        self.deals = Collection(dataset.deals)
        self.organizations = Collection(dataset.organizations)
        self.persons = Collection(dataset.persons)
        self.activities = Collection(dataset.activities)
        self.flows: dict[int, list[dict[str, Any]]] = {k: list(v) for k, v in
                                                       dataset.flows.items()}
        self.field_defs = {"dealFields": list(dataset.deal_fields),
                           "organizationFields": list(dataset.organization_fields),
                           "personFields": list(dataset.person_fields)}
        self._next_flow_id = 10_000_000
        self._next_field_id = 1000
        self._bind(host, port)

    # --- what tests use directly ------------------------------------------------------------
    def collection(self, entity: str) -> Collection:
        return {"deals": self.deals, "organizations": self.organizations,
                "persons": self.persons, "activities": self.activities}[entity]

    def record(self, entity: str, record_id: int) -> dict[str, Any] | None:
        with self.lock:
            row = self.collection(entity).get(record_id)
            return json.loads(json.dumps(row)) if row is not None else None

    def edit(self, entity: str, record_id: int, *, at: datetime | None = None,
             **changes: Any) -> dict[str, Any]:
        """Change a record as a CRM user would (bumps update_time to now, or to ``at`` to
        simulate a late commit; stage moves get a flow row). ``custom_fields`` merges."""
        with self.lock:
            return self._apply_edit(entity, record_id, changes, user=1, at=at)

    def add(self, entity: str, record: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            collection = self.collection(entity)
            now = v2_time(self.clock())
            record = {"add_time": now, "is_deleted": False, **record, "update_time": now}
            record.setdefault("id", collection.next_id())
            collection.put(record)
            if entity == "deals":  # its flow starts with the creation row, as in Pipedrive
                self._next_flow_id += 1
                created = datetime.fromisoformat(record["add_time"])
                self.flows.setdefault(int(record["id"]), []).append(flow_row(
                    self._next_flow_id, int(record["id"]), key="add_time", old=None,
                    new=v1_time(created), at=created, user=int(record.get("owner_id") or 1)))
            return record

    def paths_requested(self) -> list[str]:
        with self.lock:
            return [path for _, path, _, _ in self.requests]

    # --- request handling -----------------------------------------------------------------
    def handle(self, handler: _Handler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = ...
        request = Request(method, path, query, body)
        with self.lock:
            self.requests.append((method, path, query, body))
            self.requests_count += 1
        token = handler.headers.get("x-api-token")
        if token is None and self.query_token:
            token = query.get("api_token")
        if token != self.token:
            handler.reply(401, {"success": False, "error": "unauthorized access",
                                "errorCode": 401,
                                "error_info": "Please check developers.pipedrive.com"})
            return
        headers, limited = self._rate(token)
        if limited is not None:  # rejected before anything else happens, as a real 429 is
            with self.lock:
                self.rate_limited_count += 1
            handler.reply(429, {"success": False, "error": limited,
                                "error_info": "Please check developers.pipedrive.com"},
                          headers)
            return
        forecast = (self.weather.draw(method, path, write=method != "GET")
                    if self.weather is not None else None)
        if self.weather is not None and forecast is not None and not forecast.after:
            self.weather.answer_instead(handler, forecast)
            return
        fault = self._fault_for(request)
        if fault is not None and fault.kind != "block":
            self._misbehave(handler, fault, headers)
            fault.finished.set()
            return
        if body is ...:
            handler.reply(400, {"success": False, "error": "Malformed JSON body"}, headers)
            return
        if method in {"PATCH", "POST", "PUT", "DELETE"}:
            with self.lock:  # received: recorded even if held (and never answered) below
                self.writes.append((method, path, body))
        if fault is not None:
            fault.reached.set()
            fault.release.wait(fault.timeout)
        try:
            with self.lock:
                status, payload = self._route(request)
        except ApiProblem as problem:
            status, payload = problem.status, {"success": False, "error": str(problem),
                                               "data": None, "additional_data": None}
        try:
            handler.reply(status, payload, headers, forecast, self.weather)
        finally:
            if fault is not None:
                fault.finished.set()

    def _fault_for(self, request: Request) -> Fault | None:
        if self.faults is None:
            return None
        if callable(self.faults):
            decided = self.faults(request)
            return Fault(decided) if isinstance(decided, str) else decided
        with self.lock:
            return choose_fault(self.faults,
                                lambda fault: fault.matches(request.method, request.path))

    def _rate(self, token: str) -> tuple[dict[str, str], str | None]:
        now = time.monotonic()
        with self.lock:
            window = self._windows.setdefault(token, _RollingWindow(self.burst_limit,
                                                                    self.window))
            admitted, remaining, reset = window.admit(now)
            headers = {"x-ratelimit-limit": str(self.burst_limit),
                       "x-ratelimit-remaining": str(remaining),
                       "x-ratelimit-reset": (str(math.ceil(reset)) if self.whole_second_reset
                                             else f"{reset:.3f}")}
            problem = None if admitted else "Request over limit"
            if self.daily_budget is not None:
                if admitted:
                    self.daily_used += 1
                left = self.daily_budget - self.daily_used
                headers["x-daily-ratelimit-token-remaining"] = str(max(left, 0))
                if left < 0:
                    problem = "Daily API token budget exceeded"
                    headers["x-ratelimit-remaining"] = str(max(remaining, 1))
        return headers, problem

    def _misbehave(self, handler: _Handler, fault: Fault, headers: dict[str, str]) -> None:
        kind = fault.kind
        if kind == "429":
            handler.reply(429, {"success": False, "error": "Request over limit"},
                          {**headers, "x-ratelimit-remaining": "0", "x-ratelimit-reset": "0.2"})
        elif kind in {"503", "500"}:
            handler.reply(int(kind), {"success": False, "error": "Service unavailable"},
                          headers)
        elif kind == "html403":
            handler.reply_raw(403, BLOCK_PAGE.encode(), "text/html", headers)
        elif kind == "html502":
            handler.reply_raw(502, GATEWAY_PAGE.encode(), "text/html", headers)
        elif kind == "truncated":
            handler.reply_raw(200, b'{"success": true, "data": [{"id": 1, "title": "Cut',
                              "application/json", headers)
        elif kind == "empty204":
            handler.reply_raw(204, b"", "application/json", headers)
        elif kind == "reset":
            handler.close_connection = True
        else:
            message = f"unknown fault kind {kind!r}"
            raise ValueError(message)

    # --- routing -------------------------------------------------------------------------
    _ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
        ("GET", re.compile(r"/api/v2/deals/archived"), "list_archived"),
        ("GET", re.compile(r"/api/v2/(deals|persons|organizations|activities)"), "list"),
        ("GET", re.compile(r"/api/v2/(deals|persons|organizations|activities)/(\d+)"), "one"),
        ("PATCH", re.compile(r"/api/v2/(deals|organizations)/(\d+)"), "patch"),
        ("POST", re.compile(r"/api/v2/activities"), "create_activity"),
        ("GET", re.compile(r"/api/v2/(pipelines|stages)"), "reference"),
        ("PATCH", re.compile(r"/api/v2/stages/(\d+)"), "patch_stage"),
        ("GET", re.compile(r"/api/v2/(dealFields|organizationFields|personFields)"), "fields"),
        ("POST", re.compile(r"/(?:api/)?v1/(dealFields|organizationFields)"), "create_field"),
        ("GET", re.compile(r"/(?:api/)?v1/(users|activityTypes)"), "v1_list"),
        ("GET", re.compile(r"/(?:api/)?v1/(dealFields|organizationFields|personFields"
                           r"|activityFields|noteFields|productFields)"), "v1_fields"),
        ("GET", re.compile(r"/(?:api/)?v1/deals/(\d+)/flow"), "flow"),
    )

    def _route(self, request: Request) -> tuple[int, Any]:
        for method, pattern, name in self._ROUTES:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return getattr(self, f"_do_{name}")(request, *match.groups())
        if any(p.fullmatch(request.path) for _, p, _ in self._ROUTES):
            raise ApiProblem(405, f"Method {request.method} not allowed")
        raise ApiProblem(404, f"Unknown method {request.path}")

    # --- v2 lists -------------------------------------------------------------------------
    def _do_list_archived(self, request: Request) -> tuple[int, Any]:
        return self._do_list(request, "deals", archived=True)

    def _do_list(self, request: Request, entity: str, *, archived: bool = False,
                 ) -> tuple[int, Any]:
        query = request.query
        limit = _int(query.get("limit", DEFAULT_LIMIT), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiProblem(400, f"limit must be between 1 and {MAX_LIMIT}")
        sort_by = query.get("sort_by", "id")
        if sort_by not in {"id", "update_time", "add_time"}:
            raise ApiProblem(400, f"Invalid sort_by {sort_by}")
        direction = query.get("sort_direction", "asc")
        if direction not in {"asc", "desc"}:
            raise ApiProblem(400, f"Invalid sort_direction {direction}")
        since = _rfc3339(query.get("updated_since"), "updated_since")
        until = _rfc3339(query.get("updated_until"), "updated_until")
        after = None
        if query.get("cursor"):
            after = _decode_cursor(query["cursor"], sort_by)
        accept = self._filter(entity, query, archived)
        items: list[dict[str, Any]] = []
        next_cursor = None
        last_key: list[int] = []
        for key, record in self.collection(entity).walk(sort_by, direction == "desc", after,
                                                        since, until):
            if not accept(record):
                continue
            if len(items) == limit:
                next_cursor = _encode_cursor(sort_by, last_key)
                break
            items.append(record)
            last_key = key
        return 200, {"success": True, "data": items,
                     "additional_data": {"next_cursor": next_cursor}}

    def _filter(self, entity: str, query: dict[str, str],
                archived: bool) -> Callable[[dict[str, Any]], bool]:
        wanted: dict[str, int] = {}
        for name in ("owner_id", "deal_id", "person_id", "org_id", "pipeline_id", "stage_id"):
            if query.get(name):
                wanted[name] = _int(query[name], name)
        statuses = None
        if entity == "deals":
            statuses = set(query.get("status", "open,won,lost").split(","))
            unknown = statuses - {"open", "won", "lost", "deleted"}
            if unknown:
                raise ApiProblem(400, f"Invalid status {','.join(sorted(unknown))}")
        done = query.get("done")

        def accept(record: dict[str, Any]) -> bool:
            if any(record.get(k) != v for k, v in wanted.items()):
                return False
            if statuses is not None:
                status = "deleted" if record.get("is_deleted") else record.get("status")
                if status not in statuses or bool(record.get("is_archived")) != archived:
                    return False
            return done is None or bool(record.get("done")) == (done in {"1", "true"})

        return accept

    def _do_one(self, request: Request, entity: str, record_id: str) -> tuple[int, Any]:
        record = self.collection(entity).get(int(record_id))
        if record is None:
            raise ApiProblem(404, f"{entity[:-1].title()} not found")
        return 200, {"success": True, "data": record}

    def _do_reference(self, request: Request, entity: str) -> tuple[int, Any]:
        rows = self.dataset.pipelines if entity == "pipelines" else self.dataset.stages
        if entity == "stages" and request.query.get("pipeline_id"):
            pipeline = _int(request.query["pipeline_id"], "pipeline_id")
            rows = [s for s in rows if s["pipeline_id"] == pipeline]
        return self._paged_list(request, rows)

    #: "Update stage details", PATCH /api/v2/stages/{id}: every body field optional;
    #: rotting is ``is_deal_rot_enabled`` (boolean) and ``days_to_rotten`` (integer, applies
    #: only when rotting is enabled). https://developers.pipedrive.com/docs/api/v1/Stages#updateStage
    _STAGE_FIELDS: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "name": str, "pipeline_id": int, "deal_probability": int,
        "is_deal_rot_enabled": bool, "days_to_rotten": (int, type(None))}

    def _do_patch_stage(self, request: Request, stage_id: str) -> tuple[int, Any]:
        stage = next((s for s in self.dataset.stages if s["id"] == int(stage_id)), None)
        if stage is None or stage.get("is_deleted"):
            raise ApiProblem(404, "Stage not found")
        body = request.body if isinstance(request.body, dict) else None
        if body is None:
            raise ApiProblem(400, "Body must be a JSON object")
        for key, value in body.items():
            wanted = self._STAGE_FIELDS.get(key)
            if wanted is None:
                raise ApiProblem(400, f"Unknown field {key}")
            if (isinstance(value, bool) and wanted is int) or not isinstance(value, wanted):
                raise ApiProblem(400, f"Invalid value for {key}")
        stage.update(body)
        stage["update_time"] = v2_time(datetime.now(UTC))
        return 200, {"success": True, "data": stage}

    def _do_fields(self, request: Request, kind: str) -> tuple[int, Any]:
        return self._paged_list(request, self.field_defs[kind])

    def _paged_list(self, request: Request, rows: list[dict[str, Any]]) -> tuple[int, Any]:
        limit = _int(request.query.get("limit", DEFAULT_LIMIT), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiProblem(400, f"limit must be between 1 and {MAX_LIMIT}")
        start = 0
        if request.query.get("cursor"):
            start = _decode_cursor(request.query["cursor"], "offset")[0]
        page = rows[start: start + limit]
        more = start + limit < len(rows)
        return 200, {"success": True, "data": page, "additional_data": {
            "next_cursor": _encode_cursor("offset", [start + limit, 0]) if more else None}}

    # --- v1 -------------------------------------------------------------------------------
    def _do_v1_list(self, request: Request, kind: str) -> tuple[int, Any]:
        rows = self.dataset.users if kind == "users" else self.dataset.activity_types
        return 200, {"success": True, "data": rows or None}

    def _do_v1_fields(self, request: Request, kind: str) -> tuple[int, Any]:
        """v1 "Get all deal fields" (and organization/person/activity fields): offset paging
        with ``start``/``limit`` (max 500) and ``additional_data.pagination``; each field has
        ``id``, ``key`` (the hash for custom fields), ``name``, ``field_type`` and, for
        enum/set, ``options``. The fake has no activity, note or product custom fields:
        those lists hold standard fields only (v1 NoteFields, ProductFields,
        ActivityFields in the same reference)."""
        start = _int(request.query.get("start", 0), "start")
        limit = _int(request.query.get("limit", DEFAULT_LIMIT), "limit")
        if start < 0 or not 1 <= limit <= MAX_LIMIT:
            raise ApiProblem(400, f"start must be >= 0 and limit between 1 and {MAX_LIMIT}")
        defs = self.field_defs.get(kind) or _STANDARD_ONLY_FIELDS[kind]
        rows = [{"id": number, "key": d["field_code"], "name": d["field_name"],
                 "field_type": d["field_type"], "edit_flag": d["is_custom_field"],
                 "active_flag": True, "mandatory_flag": False, "order_nr": number,
                 **({"options": d["options"]} if d.get("options") else {})}
                for number, d in enumerate(defs, start=1)]
        page = rows[start: start + limit]
        more = start + limit < len(rows)
        pagination: dict[str, Any] = {"start": start, "limit": limit,
                                      "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return 200, {"success": True, "data": page or None,
                     "additional_data": {"pagination": pagination}}

    def _do_flow(self, request: Request, deal_id: str) -> tuple[int, Any]:
        number = int(deal_id)
        if self.deals.get(number) is None:
            raise ApiProblem(404, "Deal not found")
        rows = self.flows.get(number)
        if rows is None and self.dataset.flow_factory is not None:
            rows = self.dataset.flow_factory(number)
        rows = list(rows or [])
        if request.query.get("all_changes") not in {"1", "true"}:
            rows = [r for r in rows if r["data"]["field_key"] in
                    {"add_time", "stage_id", "status", "value", "title", "lost_reason",
                     "user_id", "org_id", "person_id", "pipeline_id"}]
        items = set(filter(None, request.query.get("items", "").split(",")))
        if not items or "activity" in items:
            rows += [{"object": "activity", "timestamp": v1_time(
                datetime.fromisoformat(a["add_time"])), "data": a}
                for a in self._deal_activities(number)]
        if items:
            rows = [r for r in rows if r["object"] in items]
        rows.sort(key=lambda r: (r["timestamp"], r["data"].get("id", 0)), reverse=True)
        start = _int(request.query.get("start", 0), "start")
        limit = _int(request.query.get("limit", DEFAULT_LIMIT), "limit")
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiProblem(400, f"limit must be between 1 and {MAX_LIMIT}")
        page = rows[start: start + limit]
        more = start + limit < len(rows)
        pagination: dict[str, Any] = {"start": start, "limit": limit,
                                      "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return 200, {"success": True, "data": page or None,
                     "additional_data": {"pagination": pagination}}

    def _deal_activities(self, deal_id: int) -> list[dict[str, Any]]:
        if self.activities.size > 50_000:
            return []  # the scaled account: not worth a scan
        return [a for i in self.activities.ids()
                if (a := self.activities.get(i)) and a.get("deal_id") == deal_id]

    # --- writes ---------------------------------------------------------------------------
    def _do_patch(self, request: Request, entity: str, record_id: str) -> tuple[int, Any]:
        body = request.body
        if not isinstance(body, dict) or not body:
            raise ApiProblem(400, "Request body must be a non-empty JSON object")
        record = self._apply_edit(entity, int(record_id), body, user=1, strict=True)
        return 200, {"success": True, "data": record}

    _EDITABLE = frozenset({"title", "value", "currency", "stage_id", "status", "lost_reason",
                           "owner_id", "person_id", "org_id", "name", "expected_close_date",
                           "custom_fields", "is_deleted", "is_archived"})

    def _apply_edit(self, entity: str, record_id: int, changes: dict[str, Any], *,
                    user: int, strict: bool = False, at: datetime | None = None,
                    ) -> dict[str, Any]:
        collection = self.collection(entity)
        current = collection.get(record_id)
        if current is None:
            raise ApiProblem(404, f"{entity[:-1].title()} not found")
        if current.get("is_deleted") and strict:
            raise ApiProblem(410, f"{entity[:-1].title()} is deleted")
        record = json.loads(json.dumps(current))
        unknown = set(changes) - self._EDITABLE
        if strict and unknown:
            raise ApiProblem(400, f"Unknown field(s): {', '.join(sorted(unknown))}")
        now = at or self.clock()
        for key, value in changes.items():
            if key == "custom_fields":
                record["custom_fields"] = {**(record.get("custom_fields") or {}),
                                           **self._checked_custom(entity, value, strict)}
            elif key == "stage_id" and value != record.get("stage_id"):
                self._flow_change(record_id, old=record.get("stage_id"), new=value, at=now,
                                  user=user)
                record["stage_id"] = value
                record["stage_change_time"] = v2_time(now)
            else:
                record[key] = value
        record["update_time"] = v2_time(now)
        collection.put(record)
        return record

    def _checked_custom(self, entity: str, values: Any, strict: bool) -> dict[str, Any]:
        if not isinstance(values, dict):
            raise ApiProblem(400, "custom_fields must be an object")
        kind = "dealFields" if entity == "deals" else (
            "organizationFields" if entity == "organizations" else "personFields")
        defs = {d["field_code"]: d for d in self.field_defs[kind] if d["is_custom_field"]}
        for key, value in values.items():
            definition = defs.get(key)
            if definition is None:
                if strict:
                    raise ApiProblem(400, f"Unknown custom field {key}")
                continue
            numeric = definition["field_type"] in {"double", "monetary"}
            if strict and numeric and value is not None and not isinstance(value, int | float):
                raise ApiProblem(400, f"Custom field {definition['field_name']} expects a "
                                      "number")
        return values

    def _flow_change(self, deal_id: int, *, old: Any, new: Any, at: datetime,
                     user: int) -> None:
        """Record a stage move in the deal's flow, as Pipedrive does."""
        self._next_flow_id += 1
        row = flow_row(self._next_flow_id, deal_id, key="stage_id",
                       old=None if old is None else str(old),
                       new=None if new is None else str(new), at=at, user=user,
                       labels=(STAGE_NAMES.get(old), STAGE_NAMES.get(new)))
        self.flows.setdefault(deal_id, []).append(row)

    def _do_create_activity(self, request: Request) -> tuple[int, Any]:
        body = request.body
        if not isinstance(body, dict):
            raise ApiProblem(400, "Request body must be a JSON object")
        deal = None
        if body.get("deal_id") is not None:
            if not isinstance(body["deal_id"], int):
                raise ApiProblem(400, "deal_id must be an integer")
            deal = self.deals.get(body["deal_id"])
            if deal is None:
                raise ApiProblem(400, "Deal not found")
        types = {t["key_string"] for t in self.dataset.activity_types}
        kind = body.get("type", "task")
        if kind not in types:
            raise ApiProblem(400, f"Unknown activity type {kind}")
        now = v2_time(self.clock())
        person = deal.get("person_id") if deal else None
        record = {
            "id": self.activities.next_id(), "subject": body.get("subject") or kind.title(),
            "type": kind, "owner_id": body.get("owner_id") or 1,
            "deal_id": body.get("deal_id"), "org_id": deal.get("org_id") if deal else None,
            "person_id": person,
            "participants": [{"person_id": person, "primary": True}] if person else [],
            "done": bool(body.get("done", False)), "due_date": body.get("due_date"),
            "due_time": body.get("due_time"), "duration": body.get("duration"),
            "busy": False, "add_time": now, "update_time": now,
            "marked_as_done_time": now if body.get("done") else None,
            "note": body.get("note") or "", "is_deleted": False,
        }
        self.activities.put(record)
        return 201, {"success": True, "data": record}

    def _do_create_field(self, request: Request, kind: str) -> tuple[int, Any]:
        body = request.body
        if not isinstance(body, dict) or not body.get("name"):
            raise ApiProblem(400, "Field name is required")
        field_type = body.get("field_type")
        if field_type not in FIELD_TYPES:
            raise ApiProblem(400, f"Invalid field_type {field_type}")
        self._next_field_id += 1
        key = hashlib.sha1(f"{kind}:{body['name']}:{self._next_field_id}".encode()).hexdigest()  # noqa: S324
        self.field_defs[kind].append({
            "field_code": key, "field_name": body["name"], "field_type": field_type,
            "is_custom_field": True, "is_optional_response_field": False, "options": None,
            "subfields": None,
        })
        collection = self.deals if kind == "dealFields" else self.organizations
        if collection.size == 0:  # new keys show up (as null) on every record
            for record in collection.rows.values():
                record.setdefault("custom_fields", {})[key] = None
        now = self.clock()
        return 201, {"success": True, "data": {
            "id": self._next_field_id, "key": key, "name": body["name"],
            "field_type": field_type, "edit_flag": True, "active_flag": True,
            "add_time": v1_time(now), "update_time": v1_time(now),
        }}


class _Handler(FakeHandler):
    fake: FakePipedrive


FakePipedrive.handler_class = _Handler


# --- helpers --------------------------------------------------------------------------------


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiProblem(400, f"{name} must be an integer") from None


def _rfc3339(value: str | None, name: str) -> int | None:
    if not value:
        return None
    if "T" not in value or not (value.endswith("Z") or "+" in value[10:] or "-" in value[10:]):
        raise ApiProblem(400, f"{name} must be an RFC 3339 date-time")
    try:
        return int(datetime.fromisoformat(value).timestamp())
    except ValueError:
        raise ApiProblem(400, f"{name} must be an RFC 3339 date-time") from None


def _encode_cursor(kind: str, key: list[int]) -> str:
    return base64.urlsafe_b64encode(json.dumps([kind, *key]).encode()).decode()


def _decode_cursor(cursor: str, kind: str) -> list[int]:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError:
        raise ApiProblem(400, "Invalid cursor") from None
    if not isinstance(decoded, list) or len(decoded) != 3 or decoded[0] != kind:
        raise ApiProblem(400, "Invalid cursor")
    return [int(decoded[1]), int(decoded[2])]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Pipedrive account locally.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--deals", type=int, default=60)
    parser.add_argument("--scaled", action="store_true",
                        help="generated volume (benchmark data) instead of the sample story")
    parser.add_argument("--token", default=DEMO_TOKEN)
    parser.add_argument("--burst-limit", type=int, default=20)
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    dataset = (scaled_dataset(args.deals, now=now) if args.scaled
               else sample_dataset(now, deals=args.deals))
    fake = FakePipedrive(dataset, token=args.token, burst_limit=args.burst_limit,
                         port=args.port)
    serve_until_interrupted(fake, lambda url: (
        f"fake Pipedrive ({dataset.name}) at {url}  token: {args.token}  (Ctrl-C stops)"))


if __name__ == "__main__":
    main()
