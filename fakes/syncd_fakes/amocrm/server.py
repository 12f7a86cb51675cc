"""A local fake amoCRM account over real HTTP (standard library only).

Used by the tests, ``syncd demo`` and the benchmark. It follows the documented behaviour
the connector depends on, quirks included:

* ``Authorization: Bearer`` with a long-lived token or an OAuth access token that has not
  expired (401 problem+json otherwise);
* ``POST /oauth2/access_token``: ``authorization_code`` (single use) and
  ``refresh_token`` grants; **each refresh token works once**: reusing one answers 401
  "Token has been revoked"; every refresh returns a new pair (``token_exchanges`` logs
  them, ``chain_alive()`` says whether the newest refresh token still works);
* HAL lists (``_embedded``, ``_links.next``), ``page``/``limit`` (<= 250; events <= 100),
  **204 with an empty body** when a page has nothing, ``filter[updated_at][from|to]``,
  ``filter[id][]``, ``order[updated_at|id]``, ``with=contacts,loss_reason,only_deleted``;
  ``custom_fields_values`` is ``null`` on records without values;
* batched ``PATCH /api/v4/{leads|companies}`` (bumps ``updated_at``; 400 with
  ``validation-errors`` for a bad item, nothing applied), batched ``POST /api/v4/tasks``,
  ``POST /api/v4/{entity}/custom_fields``;
* ``rate_limit`` requests per rolling ``window`` seconds: 429 beyond it; after
  ``ban_after`` 429s every request gets the HTML 403 ban page;
* fault injection (``faults``): 429, 503, an HTML 403 ban page, HTML 502, truncated JSON,
  204, a dropped connection, or holding a request on a ``threading.Event``;
* weather (``weather``, a ``syncd_fakes.http.Weather``): every request independently gets a
  502, 503, 429, an HTML page under 200 or its body cut short, 502/truncation possibly
  after a write was applied (amoCRM lists 429, 5xx and HTML answers among its errors:
  https://www.amocrm.com/developers/content/api/errors/). The token endpoint is not spared
  unless ``Weather(spare=...)`` says so: a refresh whose answer is lost has rotated the
  token, and the old one is refused, as documented for amoCRM.

``python -m syncd_fakes.amocrm.server --port 8766`` serves the sample for manual runs.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from syncd_fakes.amocrm.sample import Dataset, Table, event, sample_dataset, scaled_dataset
from syncd_fakes.http import (
    FakeHandler,
    FakeHTTPServer,
    Fault,
    Weather,
    choose_fault,
    serve_until_interrupted,
)

DEMO_LONG_LIVED_TOKEN = "demo-amocrm-long-lived-token"  # noqa: S105 - the fake's own
CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"  # noqa: S105 - the fake's own
REDIRECT_URI = "https://syncd.example/oauth/amocrm"
MAX_LIMIT, EVENTS_MAX_LIMIT = 250, 100
BAN_PAGE = ("<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden"
            "</h1></center><hr><center>nginx</center></body></html>")
GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
ENTITY_ROUTES = {"leads": "leads", "contacts": "contacts", "companies": "companies"}


class Problem(Exception):
    """An error answer: HTTP status plus a problem+json body."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.extra = extra


class Collection:
    """One entity's records, with a ``(updated_at, id)`` index for ordered paging."""

    def __init__(self, table: Table) -> None:
        self.rows: dict[int, dict[str, Any]] = dict(table.rows)
        self.size = table.size if table.factory else 0
        self.factory = table.factory
        index = [(int(r.get("updated_at") or 0), i) for i, r in self.rows.items()]
        if self.factory is not None and table.stamp is not None:
            index += [(table.stamp(i), i) for i in range(1, self.size + 1)
                      if i not in self.rows]
        index.sort()
        self.index = index

    def get(self, record_id: int) -> dict[str, Any] | None:
        row = self.rows.get(record_id)
        if row is None and self.factory is not None and 1 <= record_id <= self.size:
            row = self.factory(record_id)
        return row

    def next_id(self) -> int:
        return max([self.size, *self.rows, 0]) + 1

    def put(self, record: dict[str, Any]) -> None:
        record_id = int(record["id"])
        old = self.get(record_id)
        if old is not None:
            key = (int(old.get("updated_at") or 0), record_id)
            position = bisect.bisect_left(self.index, key)
            if position < len(self.index) and self.index[position] == key:
                self.index.pop(position)
        self.rows[record_id] = record
        bisect.insort(self.index, (int(record.get("updated_at") or 0), record_id))

    def remove(self, record_id: int) -> dict[str, Any] | None:
        old = self.get(record_id)
        if old is None:
            return None
        key = (int(old.get("updated_at") or 0), record_id)
        position = bisect.bisect_left(self.index, key)
        if position < len(self.index) and self.index[position] == key:
            self.index.pop(position)
        self.rows.pop(record_id, None)
        if self.factory is not None and record_id <= self.size:
            self.rows[record_id] = {"id": record_id, "_gone": True}
        return old

    def walk(self, order: str, since: int | None, until: int | None,
             ) -> Iterator[dict[str, Any]]:
        if order == "updated_at":
            start = bisect.bisect_left(self.index, (since, -1)) if since is not None else 0
            keys = self.index[start:]
            for stamp, record_id in keys:
                if until is not None and stamp > until:
                    return
                record = self.get(record_id)
                if record is not None and not record.get("_gone"):
                    yield record
            return
        ids = sorted(set(range(1, self.size + 1)) | set(self.rows)) if self.factory else \
            sorted(self.rows)
        for record_id in ids:
            record = self.get(record_id)
            if record is None or record.get("_gone"):
                continue
            stamp = int(record.get("updated_at") or 0)
            if (since is None or stamp >= since) and (until is None or stamp <= until):
                yield record


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    token: str | None = None

    def one(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def many(self, name: str) -> list[str]:
        return self.query.get(name, []) + self.query.get(f"{name}[]", [])


class FakeAmoCRM(FakeHTTPServer):
    """The fake account. ``start()`` returns its base URL; also a context manager."""

    thread_name = "fake-amocrm"

    def __init__(self, dataset: Dataset, *, long_lived_token: str = DEMO_LONG_LIVED_TOKEN,
                 client_id: str = CLIENT_ID, client_secret: str = CLIENT_SECRET,
                 redirect_uri: str = REDIRECT_URI, rate_limit: int = 7, window: float = 1.0,
                 ban_after: int | None = None, access_ttl: int = 86400,
                 faults: list[Fault] | None = None, weather: Weather | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.dataset = dataset
        self.long_lived_token = long_lived_token
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uri = redirect_uri
        self.rate_limit, self.window, self.ban_after = rate_limit, window, ban_after
        self.access_ttl = access_ttl
        self.faults = faults
        self.weather = weather
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.requests: list[Request] = []
        self.writes: list[tuple[str, str, Any]] = []
        self.rate_limited_count = 0
        self.banned = False
        self._arrivals: deque[float] = deque()
        # OAuth state
        self.auth_codes: set[str] = set()
        self.access_tokens: dict[str, float] = {}  # token -> expires (epoch seconds)
        self.refresh_tokens: dict[str, bool] = {}  # token -> still usable
        self.newest_refresh: str | None = None
        self.token_exchanges: list[tuple[str, bool]] = []  # (grant type, accepted)
        # data
        self.leads = Collection(dataset.leads)
        self.companies = Collection(dataset.companies)
        self.contacts = Collection(dataset.contacts)
        self.tasks = Collection(dataset.tasks)
        self.notes = {k: Collection(v) for k, v in dataset.notes.items()}
        self.deleted_leads: dict[int, dict[str, Any]] = {}
        self.custom_fields = {k: list(v) for k, v in dataset.custom_fields.items()}
        self.events = list(dataset.events)
        self._events_by_id = {e["id"]: e for e in self.events}
        self._event_cache: dict[tuple[Any, ...], list[tuple[int, str]]] = {}
        self._event_keys = [(e["created_at"], e["id"]) for e in self.events]
        if dataset.event_factory is not None:
            self._event_keys = list(dataset.event_index)
        self._next_field_id = 9000
        self._bind(host, port)

    # --- what tests use directly ------------------------------------------------------------
    def issue_code(self) -> str:
        """An authorization code, as the install redirect would hand it over."""
        code = "code-" + secrets.token_hex(8)
        with self.lock:
            self.auth_codes.add(code)
        return code

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        with self.lock:
            for token in self.access_tokens:
                self.access_tokens[token] = 0.0

    def revoke_refresh_tokens(self) -> None:
        """Kill every refresh token (unused for three months, or the integration was
        reinstalled elsewhere): only a new authorization brings the tenant back."""
        with self.lock:
            for token in self.refresh_tokens:
                self.refresh_tokens[token] = False

    def chain_alive(self) -> bool:
        with self.lock:
            return bool(self.newest_refresh and self.refresh_tokens.get(self.newest_refresh))

    def refresh_grants(self) -> list[bool]:
        with self.lock:
            return [ok for kind, ok in self.token_exchanges if kind == "refresh_token"]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
        """Wait until ``predicate()`` holds (checked on every request); False on timeout."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def collection(self, entity: str) -> Collection:
        return {"leads": self.leads, "companies": self.companies, "contacts": self.contacts,
                "tasks": self.tasks}[entity]

    def record(self, entity: str, record_id: int) -> dict[str, Any] | None:
        with self.lock:
            row = self.collection(entity).get(record_id)
            return json.loads(json.dumps(row)) if row is not None else None

    def field_value(self, entity: str, record_id: int, name: str) -> Any:
        record = self.record(entity, record_id) or {}
        for item in record.get("custom_fields_values") or ():
            if item.get("field_name") == name:
                values = item.get("values") or []
                return values[0].get("value") if values else None
        return None

    def edit(self, entity: str, record_id: int, *, at: int | None = None,
             **changes: Any) -> dict[str, Any]:
        """Change a record as a user would (bumps updated_at; status moves get events)."""
        with self.lock:
            collection = self.collection(entity)
            record = json.loads(json.dumps(collection.get(record_id)))
            now = at or int(time.time())
            if entity == "leads" and "status_id" in changes and \
                    changes["status_id"] != record["status_id"]:
                pipeline = changes.get("pipeline_id", record["pipeline_id"])
                self.events.append(event(f"e{secrets.token_hex(6)}", "lead_status_changed",
                                         record_id, now, 1,
                                         [{"lead_status": {"id": record["status_id"],
                                                           "pipeline_id": pipeline}}],
                                         [{"lead_status": {"id": changes["status_id"],
                                                           "pipeline_id": pipeline}}]))
                self._event_keys.append((now, self.events[-1]["id"]))
                self._event_keys.sort()
                self._events_by_id[self.events[-1]["id"]] = self.events[-1]
            record.update(changes)
            record["updated_at"] = now
            collection.put(record)
            return record

    def add_lead(self, **fields: Any) -> dict[str, Any]:
        with self.lock:
            now = int(time.time())
            record = {"id": self.leads.next_id(), "name": "New lead", "price": 0,
                      "responsible_user_id": 1, "status_id": None, "pipeline_id": None,
                      "loss_reason_id": None, "created_at": now, "updated_at": now,
                      "closed_at": None, "is_deleted": False, "custom_fields_values": None,
                      "_embedded": {"tags": [], "companies": [], "contacts": []}, **fields}
            self.leads.put(record)
            self.events.append(event(f"n{record['id']}", "lead_added", record["id"], now, 1,
                                     [], [{"lead_status": {"id": record["status_id"],
                                                           "pipeline_id": record["pipeline_id"]}}]))
            self._event_keys.append((now, self.events[-1]["id"]))
            self._event_keys.sort()
            self._events_by_id[self.events[-1]["id"]] = self.events[-1]
            return record

    def delete_lead(self, record_id: int) -> None:
        with self.lock:
            old = self.leads.remove(record_id)
            if old is not None:
                self.deleted_leads[record_id] = {"id": record_id, "is_deleted": True,
                                                 "updated_at": int(time.time())}

    # --- request handling -----------------------------------------------------------------
    def handle(self, handler: _Handler, method: str) -> None:
        request = _read_request(handler, method)
        with self.changed:
            self.requests.append(request)
            self.changed.notify_all()
        if self.banned:
            handler.reply_raw(403, BAN_PAGE.encode(), "text/html")
            return
        if not self._admit():
            handler.reply(429, {"title": "Too Many Requests", "status": 429,
                                "detail": "Too many requests"})
            return
        forecast = (self.weather.draw(method, request.path, write=method != "GET")
                    if self.weather is not None else None)
        if self.weather is not None and forecast is not None and not forecast.after:
            self.weather.answer_instead(handler, forecast)
            return
        fault = self._fault_for(request)
        if fault is not None and fault.kind != "block":
            self._misbehave(handler, fault)
            fault.finished.set()
            return
        if fault is not None:
            fault.reached.set()
            fault.release.wait(fault.timeout)
        status, payload = self._answer(request)
        try:
            if status == 204 and forecast is None:
                handler.reply_raw(204, b"", "")
            else:
                handler.reply(status, payload, None, forecast, self.weather)
        finally:
            if fault is not None:
                fault.finished.set()

    def _answer(self, request: Request) -> tuple[int, Any]:
        try:
            if request.body is ...:
                _malformed()
            if request.path == "/oauth2/access_token" and request.method == "POST":
                return self._token(request)
            self._authenticate(request.token)
            with self.lock:
                if request.method in {"PATCH", "POST", "PUT", "DELETE"}:
                    self.writes.append((request.method, request.path, request.body))
                return self._route(request)
        except Problem as problem:
            return problem.status, {"title": _TITLES.get(problem.status, "Error"),
                                    "type": f"https://httpstatus.es/{problem.status}",
                                    "status": problem.status, "detail": str(problem),
                                    **problem.extra}

    def _admit(self) -> bool:
        now = time.monotonic()
        with self.lock:
            while self._arrivals and self._arrivals[0] <= now - self.window:
                self._arrivals.popleft()
            if len(self._arrivals) < self.rate_limit:
                self._arrivals.append(now)
                return True
            self.rate_limited_count += 1
            if self.ban_after is not None and self.rate_limited_count >= self.ban_after:
                self.banned = True
            return False

    def _fault_for(self, request: Request) -> Fault | None:
        if not self.faults:
            return None
        with self.lock:
            return choose_fault(self.faults,
                                lambda fault: fault.matches(request.method, request.path))

    def _misbehave(self, handler: _Handler, fault: Fault) -> None:
        kind = fault.kind
        if kind == "429":
            handler.reply_raw(429, b"Too Many Requests", "text/plain", {"Retry-After": "0.2"})
        elif kind == "503":
            handler.reply(503, {"title": "Service Unavailable", "status": 503})
        elif kind == "html403":
            handler.reply_raw(403, BAN_PAGE.encode(), "text/html")
        elif kind == "html502":
            handler.reply_raw(502, GATEWAY_PAGE.encode(), "text/html")
        elif kind == "truncated":
            handler.reply_raw(200, b'{"_page":1,"_embedded":{"leads":[{"id":1,"name":"Cu',
                              "application/hal+json")
        elif kind == "empty204":
            handler.reply_raw(204, b"", "")
        elif kind == "reset":
            handler.close_connection = True
        else:
            message = f"unknown fault kind {kind!r}"
            raise ValueError(message)

    # --- OAuth ----------------------------------------------------------------------------
    def _authenticate(self, token: str | None) -> None:
        if token and token == self.long_lived_token:
            return
        with self.lock:
            expires = self.access_tokens.get(token or "")
        if expires is None or expires <= time.time():
            raise Problem(401, "Unauthorized", hint="Token has expired or is invalid")

    def _token(self, request: Request) -> tuple[int, Any]:
        body = request.body if isinstance(request.body, dict) else {}
        grant = str(body.get("grant_type") or "")
        with self.lock:
            if body.get("client_id") != self.client_id or \
                    body.get("client_secret") != self.client_secret:
                self.token_exchanges.append((grant, False))
                raise Problem(401, "Client authentication failed", hint="invalid_client")
            if body.get("redirect_uri") != self.redirect_uri:
                self.token_exchanges.append((grant, False))
                raise Problem(400, "Redirect URI mismatch")
            if grant == "authorization_code":
                code = str(body.get("code") or "")
                if code not in self.auth_codes:
                    self.token_exchanges.append((grant, False))
                    raise Problem(400, "Authorization code has expired",
                                  hint="Authorization code has been revoked")
                self.auth_codes.discard(code)
            elif grant == "refresh_token":
                presented = str(body.get("refresh_token") or "")
                if not self.refresh_tokens.get(presented):
                    self.token_exchanges.append((grant, False))
                    raise Problem(401, "Unauthorized", hint="Token has been revoked")
                self.refresh_tokens[presented] = False  # single use, dead at once
            else:
                raise Problem(400, f"Unsupported grant type {grant!r}")
            self.token_exchanges.append((grant, True))
            access = "acc-" + secrets.token_hex(12)
            refresh = "ref-" + secrets.token_hex(12)
            self.access_tokens[access] = time.time() + self.access_ttl
            self.refresh_tokens[refresh] = True
            self.newest_refresh = refresh
        return 200, {"token_type": "Bearer", "expires_in": self.access_ttl,
                     "access_token": access, "refresh_token": refresh,
                     "server_time": int(time.time())}

    def seed_refresh_token(self) -> str:
        """A refresh token as if the account had been connected earlier."""
        with self.lock:
            refresh = "ref-" + secrets.token_hex(12)
            self.refresh_tokens[refresh] = True
            self.newest_refresh = refresh
            return refresh

    # --- routing --------------------------------------------------------------------------
    _ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
        ("GET", re.compile(r"/api/v4/account"), "account"),
        ("GET", re.compile(r"/api/v4/users"), "users"),
        ("GET", re.compile(r"/api/v4/leads/pipelines"), "pipelines"),
        ("GET", re.compile(r"/api/v4/leads/loss_reasons"), "loss_reasons"),
        ("POST", re.compile(r"/api/v4/leads/loss_reasons"), "add_loss_reasons"),
        ("DELETE", re.compile(r"/api/v4/leads/loss_reasons/(\d+)"), "delete_loss_reason"),
        ("GET", re.compile(r"/api/v4/(leads|companies|contacts)/custom_fields"), "fields"),
        ("PATCH", re.compile(r"/api/v4/(leads|companies|contacts)/custom_fields"),
         "update_fields"),
        ("POST", re.compile(r"/api/v4/(leads|companies|contacts)/custom_fields"),
         "create_fields"),
        ("GET", re.compile(r"/api/v4/(leads|companies|contacts)/notes"), "notes"),
        ("GET", re.compile(r"/api/v4/(leads|companies|contacts)"), "list"),
        ("PATCH", re.compile(r"/api/v4/(leads|companies|contacts)"), "patch"),
        ("PATCH", re.compile(r"/api/v4/(leads|companies|contacts)/(\d+)"), "patch_one"),
        ("GET", re.compile(r"/api/v4/tasks"), "tasks"),
        ("POST", re.compile(r"/api/v4/tasks"), "create_tasks"),
        ("GET", re.compile(r"/api/v4/events"), "events"),
    )

    def _route(self, request: Request) -> tuple[int, Any]:
        for method, pattern, name in self._ROUTES:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return getattr(self, f"_do_{name}")(request, *match.groups())
        if any(p.fullmatch(request.path) for _, p, _ in self._ROUTES):
            raise Problem(405, f"Method {request.method} not allowed")
        raise Problem(404, f"Unknown path {request.path}")

    def _page(self, request: Request, key: str,
              rows: Iterator[dict[str, Any]] | list[Any] | _Lazy,
              max_limit: int = MAX_LIMIT) -> tuple[int, Any]:
        limit = _int(request.one("limit", "50"), "limit")
        page = _int(request.one("page", "1"), "page")
        if not 1 <= limit <= max_limit:
            raise Problem(400, f"limit must be between 1 and {max_limit}")
        if page < 1:
            raise Problem(400, "page must be positive")
        skip = (page - 1) * limit
        rest: Iterator[dict[str, Any]]
        if isinstance(rows, list | _Lazy):  # sliceable: only the page is built
            chosen = list(rows[skip: skip + limit])
            more = skip + limit < len(rows)
            rest = iter(())
        else:
            chosen, more, rest = [], False, rows
        for position, row in enumerate(rest):
            if position < skip:
                continue
            if len(chosen) == limit:
                more = True
                break
            chosen.append(row)
        if not chosen:
            return 204, None
        links: dict[str, Any] = {"self": {"href": f"{request.path}?page={page}"}}
        if more:
            links["next"] = {"href": f"{request.path}?page={page + 1}"}
        return 200, {"_page": page, "_links": links, "_embedded": {key: chosen}}

    def _do_account(self, request: Request) -> tuple[int, Any]:
        body: dict[str, Any] = {"id": 31337, "name": self.dataset.name, "subdomain": "northwind",
                                "currency": "EUR", "is_loss_reason_enabled": True}
        if "task_types" in (request.one("with") or ""):
            body["_embedded"] = {"task_types": [
                {"id": 1, "name": "Follow-up", "code": "FOLLOW_UP"},
                {"id": 2, "name": "Meeting", "code": "MEETING"},
                *self.dataset.task_types]}
        return 200, body

    def _do_users(self, request: Request) -> tuple[int, Any]:
        return self._page(request, "users", list(self.dataset.users))

    def _do_pipelines(self, request: Request) -> tuple[int, Any]:
        return 200, {"_total_items": len(self.dataset.pipelines),
                     "_links": {"self": {"href": request.path}},
                     "_embedded": {"pipelines": self.dataset.pipelines}}

    def _do_loss_reasons(self, request: Request) -> tuple[int, Any]:
        return self._page(request, "loss_reasons", list(self.dataset.loss_reasons))

    # Adding and deleting loss reasons as the official PHP library does it
    # (amocrm/amocrm-api-php src/AmoCRM/EntitiesServices/Leads/LossReasons.php: add = POST
    # of an array of {name, sort} to /api/v4/leads/loss_reasons answering
    # _embedded.loss_reasons with the new ids; delete = DELETE .../loss_reasons/{id}, 204).
    # https://www.amocrm.ru/developers/content/crm_platform/leads-api documents the list.
    def _do_add_loss_reasons(self, request: Request) -> tuple[int, Any]:
        items = request.body
        if not isinstance(items, list) or not items:
            raise Problem(400, "Request body must be a non-empty array")
        created = []
        now = int(time.time())
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                    or not item["name"].strip():
                raise Problem(400, "Invalid loss reason: name is required")
            if any(r["name"] == item["name"] for r in self.dataset.loss_reasons):
                raise Problem(400, f"Loss reason {item['name']!r} already exists")
            new_id = max((r["id"] for r in self.dataset.loss_reasons), default=0) + 1
            reason = {"id": new_id, "name": item["name"], "sort": int(item.get("sort", 100)),
                      "created_at": now, "updated_at": now}
            self.dataset.loss_reasons.append(reason)
            created.append(reason)
        return 200, {"_total_items": len(created), "_embedded": {"loss_reasons": created}}

    def _do_delete_loss_reason(self, request: Request, reason_id: str) -> tuple[int, Any]:
        found = [r for r in self.dataset.loss_reasons if r["id"] == int(reason_id)]
        if not found:
            raise Problem(404, "Loss reason not found")
        self.dataset.loss_reasons.remove(found[0])
        return 204, None

    def _do_fields(self, request: Request, entity: str) -> tuple[int, Any]:
        return self._page(request, "custom_fields", list(self.custom_fields[entity]), 50)

    # "Update custom fields", PATCH /api/v4/{entity}/custom_fields (admin only): an array of
    # {id, ...changed properties}; ``required_statuses`` is the list of {status_id,
    # pipeline_id} a lead must have the field filled to enter, and replaces the old list.
    # https://developers.kommo.com/reference/update-custom-fields
    def _do_update_fields(self, request: Request, entity: str) -> tuple[int, Any]:
        items = request.body
        if not isinstance(items, list) or not items:
            raise Problem(400, "Request body must be a non-empty array")
        statuses = {(p["id"], st["id"]) for p in self.dataset.pipelines
                    for st in (p.get("_embedded") or {}).get("statuses") or ()}
        definitions = {d["id"]: d for d in self.custom_fields[entity]}
        updated = []
        for item in items:
            definition = definitions.get(item.get("id")) if isinstance(item, dict) else None
            if definition is None:
                raise Problem(400, "Invalid custom field id")
            required = item.get("required_statuses")
            if required is not None:
                if not isinstance(required, list) or any(
                        not isinstance(r, dict)
                        or (r.get("pipeline_id"), r.get("status_id")) not in statuses
                        for r in required):
                    raise Problem(400, "required_statuses: unknown pipeline or status")
                definition["required_statuses"] = [
                    {"status_id": r["status_id"], "pipeline_id": r["pipeline_id"]}
                    for r in required]
            updated.append(definition)
        return 200, {"_total_items": len(updated), "_embedded": {"custom_fields": updated}}

    def _do_create_fields(self, request: Request, entity: str) -> tuple[int, Any]:
        items = request.body
        if not isinstance(items, list) or not items:
            raise Problem(400, "Request body must be a non-empty array")
        created = []
        for item in items:
            if not isinstance(item, dict) or not item.get("name") or item.get("type") not in {
                    "text", "numeric", "textarea", "select", "url", "date", "checkbox"}:
                raise Problem(400, "Invalid custom field", **{"validation-errors": [
                    {"request_id": "0", "errors": [{"code": "NotSupportedChoice",
                                                    "path": "type", "detail": "bad type"}]}]})
            self._next_field_id += 1
            definition = {"id": self._next_field_id, "name": item["name"],
                          "type": item["type"], "code": None, "sort": item.get("sort", 500),
                          "is_api_only": bool(item.get("is_api_only")), "enums": None,
                          "is_deletable": True}
            self.custom_fields[entity].append(definition)
            created.append(definition)
        return 200, {"_total_items": len(created), "_embedded": {"custom_fields": created}}

    def _do_list(self, request: Request, entity: str) -> tuple[int, Any]:
        collection = self.collection(entity)
        with_ = set((request.one("with") or "").split(","))
        since = _opt_int(request.one("filter[updated_at][from]"), "filter[updated_at][from]")
        until = _opt_int(request.one("filter[updated_at][to]"), "filter[updated_at][to]")
        if entity == "leads" and "only_deleted" in with_:
            rows = [r for r in self.deleted_leads.values()
                    if (since is None or r["updated_at"] >= since)]
            return self._page(request, entity, rows)
        ids = request.many("filter[id]")
        order = "id"
        for name in ("updated_at", "id", "created_at"):
            direction = request.one(f"order[{name}]")
            if direction is not None:
                if direction != "asc":
                    raise Problem(400, "only ascending order is supported by the fake")
                order = "updated_at" if name == "updated_at" else "id"
        found: Iterable[dict[str, Any]]
        if ids:
            wanted = sorted({_int(i, "filter[id]") for i in ids})
            found = [r for i in wanted if (r := collection.get(i)) and not r.get("_gone")]
        else:
            found = collection.walk(order, since, until)
        return self._page(request, entity, (self._shape(entity, r, with_) for r in found))

    def _shape(self, entity: str, record: dict[str, Any], with_: set[str]) -> dict[str, Any]:
        out = dict(record)
        embedded = dict(out.get("_embedded") or {})
        if entity == "leads":
            if "contacts" not in with_:
                embedded.pop("contacts", None)
            if "loss_reason" in with_ and out.get("loss_reason_id"):
                reason = next((r for r in self.dataset.loss_reasons
                               if r["id"] == out["loss_reason_id"]), None)
                embedded["loss_reason"] = [reason] if reason else []
        out["_embedded"] = embedded
        return out

    def _do_patch(self, request: Request, entity: str) -> tuple[int, Any]:
        items = request.body
        if not isinstance(items, list) or not items:
            raise Problem(400, "Request body must be a non-empty array")
        if len(items) > MAX_LIMIT:
            raise Problem(400, f"At most {MAX_LIMIT} entities per request")
        collection = self.collection(entity)
        errors, updated = [], []
        # amoCRM validates the whole array first and applies nothing when one item is bad:
        # HTTP 400 (problem+json) with ``validation-errors: [{request_id, errors: [{code,
        # path, detail}]}]``, request_id being the item's index in the array (amoCRM API
        # errors page, amocrm.com/developers/content/api/errors; summarised in
        # /work/shared/api-notes/amocrm-bitrix24.md A14 and A16).
        for position, item in enumerate(items):
            problem = self._patch_problem(entity, collection, item)
            if problem is not None:
                missing = "not found" in problem and problem.startswith("entity")
                errors.append({"request_id": str(position), "errors": [
                    {"code": "NotFound" if "not found" in problem else "InvalidValue",
                     "path": "id" if missing or "integer id" in problem
                     else "custom_fields_values", "detail": problem}]})
        if errors:
            raise Problem(400, "Request validation failed", **{"validation-errors": errors})
        now = int(time.time())
        for position, item in enumerate(items):
            record = self._apply_patch(entity, collection, item, now)
            updated.append({"id": record["id"], "updated_at": now,
                            "request_id": str(item.get("request_id", position))})
        return 200, {"_links": {"self": {"href": request.path}},
                     "_embedded": {entity: updated}}

    def _do_patch_one(self, request: Request, entity: str, record_id: str) -> tuple[int, Any]:
        item = request.body
        if not isinstance(item, dict):
            raise Problem(400, "Request body must be an object")
        item = {**item, "id": int(record_id)}
        collection = self.collection(entity)
        problem = self._patch_problem(entity, collection, item)
        if problem is not None:
            raise Problem(404 if "not found" in problem else 400, problem)
        record = self._apply_patch(entity, collection, item, int(time.time()))
        return 200, {"id": record["id"], "updated_at": record["updated_at"]}

    def _patch_problem(self, entity: str, collection: Collection, item: Any) -> str | None:
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            return "each item needs an integer id"
        record = collection.get(item["id"])
        if record is None or record.get("_gone"):
            return f"entity {item['id']} not found"
        definitions = {d["id"]: d for d in self.custom_fields[entity]}
        for value in item.get("custom_fields_values") or ():
            definition = definitions.get(value.get("field_id"))
            if definition is None:
                return f"field {value.get('field_id')} not found"
            if "field_name" in value or "field_type" in value:
                return "field_name and field_type are read-only"
            values = value.get("values")
            if values is None:
                continue
            if not isinstance(values, list) or not all(isinstance(v, dict) and "value" in v
                                                       for v in values):
                return f"field {definition['id']}: values must be [{{value: ...}}] or null"
            if definition["type"] == "numeric":
                for v in values:
                    try:
                        float(v["value"])
                    except (TypeError, ValueError):
                        return f"field {definition['id']} is numeric"
        return None

    def _apply_patch(self, entity: str, collection: Collection, item: dict[str, Any],
                     now: int) -> dict[str, Any]:
        record = json.loads(json.dumps(collection.get(item["id"])))
        definitions = {d["id"]: d for d in self.custom_fields[entity]}
        current = {v["field_id"]: v for v in record.get("custom_fields_values") or ()}
        for value in item.get("custom_fields_values") or ():
            definition = definitions[value["field_id"]]
            if value.get("values") is None:
                current.pop(definition["id"], None)
                continue
            shaped = [{"value": v["value"]} for v in value["values"]]
            if definition["type"] == "numeric":
                shaped = [{"value": str(v["value"])} for v in value["values"]]
            current[definition["id"]] = {"field_id": definition["id"],
                                         "field_name": definition["name"], "field_code": None,
                                         "field_type": definition["type"], "values": shaped}
        record["custom_fields_values"] = list(current.values()) or None
        for key in ("name", "price", "status_id", "pipeline_id", "responsible_user_id"):
            if key in item:
                record[key] = item[key]
        record["updated_at"] = now
        record["updated_by"] = 0
        collection.put(record)
        return record

    def _do_tasks(self, request: Request) -> tuple[int, Any]:
        since = _opt_int(request.one("filter[updated_at][from]"), "filter[updated_at][from]")
        entity_type = request.one("filter[entity_type]")
        entity_ids = {_int(i, "filter[entity_id]") for i in request.many("filter[entity_id]")}
        completed = request.one("filter[is_completed]")

        def accept(task: dict[str, Any]) -> bool:
            if entity_type and task.get("entity_type") != entity_type:
                return False
            if entity_ids and task.get("entity_id") not in entity_ids:
                return False
            return completed is None or bool(task.get("is_completed")) == (completed == "1")

        if entity_ids and self.tasks.size == 0:
            rows: Any = sorted((t for t in self.tasks.rows.values() if accept(t)),
                               key=lambda t: t["id"])
        else:
            rows = (t for t in self.tasks.walk("id", since, None) if accept(t))
        return self._page(request, "tasks", rows)

    def _do_create_tasks(self, request: Request) -> tuple[int, Any]:
        items = request.body
        if not isinstance(items, list) or not items:
            raise Problem(400, "Request body must be a non-empty array")
        errors = []
        for position, item in enumerate(items):
            ok = (isinstance(item, dict) and isinstance(item.get("text"), str)
                  and isinstance(item.get("complete_till"), int)
                  and (item.get("entity_type") is None or (
                      item.get("entity_type") == "leads"
                      and self.leads.get(int(item.get("entity_id") or 0)) is not None)))
            if not ok:
                errors.append({"request_id": str(item.get("request_id", position))
                               if isinstance(item, dict) else str(position),
                               "errors": [{"code": "InvalidValue", "path": "entity_id",
                                           "detail": "bad task"}]})
        if errors:
            raise Problem(400, "Request validation failed", **{"validation-errors": errors})
        created = []
        now = int(time.time())
        for position, item in enumerate(items):
            task = {"id": self.tasks.next_id(), "created_by": 0, "updated_by": 0,
                    "created_at": now, "updated_at": now,
                    "responsible_user_id": item.get("responsible_user_id", 1), "group_id": 0,
                    "entity_id": item.get("entity_id"), "entity_type": item.get("entity_type"),
                    "is_completed": False, "task_type_id": item.get("task_type_id", 1),
                    "text": item["text"], "duration": 0,
                    "complete_till": item["complete_till"], "result": [],
                    "account_id": 31337}
            self.tasks.put(task)
            created.append({"id": task["id"],
                            "request_id": str(item.get("request_id", position))})
        return 200, {"_embedded": {"tasks": created}}

    def _do_notes(self, request: Request, entity: str) -> tuple[int, Any]:
        since = _opt_int(request.one("filter[updated_at][from]"), "filter[updated_at][from]")
        types = set(request.many("filter[note_type]"))
        rows = (n for n in self.notes[entity].walk("id", since, None)
                if not types or n.get("note_type") in types)
        return self._page(request, "notes", rows)

    def _do_events(self, request: Request) -> tuple[int, Any]:
        types = set(filter(None, (request.one("filter[type]") or "").split(",")))
        entity = request.one("filter[entity]")
        if entity not in (None, "lead"):
            return 204, None  # this account's log only has lead events
        since = _opt_int(request.one("filter[created_at][from]"), "filter[created_at][from]")
        until = _opt_int(request.one("filter[created_at][to]"), "filter[created_at][to]")
        window = self._event_window(since, until, frozenset(types))
        return self._page(request, "events", [self._event(k[1]) for k in window]
                          if len(window) <= EVENTS_MAX_LIMIT else _Lazy(window, self._event),
                          EVENTS_MAX_LIMIT)

    def _event_window(self, since: int | None, until: int | None,
                      types: frozenset[str]) -> list[tuple[int, str]]:
        """The keys of the events in a filter, computed once per filter (every page of one
        query asks for the same window; a real server has an index for this)."""
        cache_key = (since, until, types, len(self._event_keys))
        window = self._event_cache.get(cache_key)
        if window is None:
            keys = self._event_keys
            start = bisect.bisect_left(keys, (since, "")) if since is not None else 0
            stop = (bisect.bisect_right(keys, (until, "\uffff")) if until is not None
                    else len(keys))
            window = keys[start:stop]
            if types:
                window = [k for k in window if self._event_type(k[1]) in types]
            self._event_cache = {cache_key: window}
        return window

    def _event(self, event_id: str) -> dict[str, Any]:
        found = self._events_by_id.get(event_id)
        if found is None and self.dataset.event_factory is not None:
            found = self.dataset.event_factory(event_id)
        if found is None:
            raise Problem(500, f"event {event_id} lost")
        return found

    def _event_type(self, event_id: str) -> str:
        found = self._events_by_id.get(event_id)
        if found is not None:
            return str(found["type"])
        return "lead_added" if event_id.startswith("a") else "lead_status_changed"


class _Lazy:
    """A list of keys that builds its items only when sliced (big event windows)."""

    def __init__(self, keys: list[tuple[int, str]], build: Callable[[str], Any]) -> None:
        self.keys, self.build = keys, build

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: slice) -> list[Any]:
        return [self.build(k[1]) for k in self.keys[index]]


_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 429: "Too Many Requests"}


class _Handler(FakeHandler):
    fake: FakeAmoCRM

    def content_type_for(self, status: int) -> str:
        return "application/problem+json" if status >= 400 else "application/hal+json"


FakeAmoCRM.handler_class = _Handler


def _read_request(handler: _Handler, method: str) -> Request:
    parts = urlsplit(handler.path)
    raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
    try:
        if "x-www-form-urlencoded" in handler.headers.get("Content-Type", ""):
            body: Any = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        else:
            body = json.loads(raw) if raw.strip() else None
    except ValueError:
        body = ...
    auth = handler.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.startswith("Bearer ") else None
    return Request(method, parts.path, parse_qs(parts.query, keep_blank_values=True), body,
                   token)


def _malformed() -> None:
    raise Problem(400, "Malformed JSON body")


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise Problem(400, f"{name} must be an integer") from None


def _opt_int(value: str | None, name: str) -> int | None:
    return None if value in (None, "") else _int(value, name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake amoCRM account locally.")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--leads", type=int, default=60)
    parser.add_argument("--scaled", action="store_true")
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    dataset = (scaled_dataset(args.leads, now=now) if args.scaled
               else sample_dataset(now, deals=args.leads))
    fake = FakeAmoCRM(dataset, port=args.port)
    serve_until_interrupted(fake, lambda url: (
        f"fake amoCRM ({dataset.name}) at {url}  long-lived token: {DEMO_LONG_LIVED_TOKEN}"))


if __name__ == "__main__":
    main()
