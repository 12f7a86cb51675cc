"""A local fake Bitrix24 portal over real HTTP (standard library only).

Used by the tests, ``syncd demo`` and the benchmark. It follows the documented behaviour the
connector depends on, quirks included:

* inbound webhook URLs ``/rest/{user}/{code}/{method}.json`` (401 ``NO_AUTH_FOUND`` for a
  wrong code) and OAuth (``/rest/{method}.json`` with ``auth`` in the body; access tokens
  live ``token_ttl`` seconds, then 401 ``expired_token``; ``/oauth/token/`` rotates a
  single-use refresh token and answers ``invalid_grant`` to a used one);
* the leaky bucket: +1 per HTTP request (a ``batch`` is one), draining ``rate``/s, 503
  ``QUERY_LIMIT_EXCEEDED`` above ``burst`` (counted in ``limit_errors``);
* ``batch`` with up to 50 ``method?query`` commands, ``$result[name][...]`` references,
  and failures per command in ``result_error`` under HTTP 200;
* legacy lists with every scalar a string and datetimes in the portal offset, ``start=-1``
  (no total), ``filter`` operators ``> >= < <= @ !``, ``order``; typed
  ``crm.category.list`` and ``crm.stagehistory.list``;
* ``crm.{deal,company}.update`` silently ignoring unknown fields (and answering ``true``),
  ``crm.*.userfield.add``, ``crm.activity.todo.add``;
* fault injection (``faults``): 503, 429 (``OPERATION_TIME_LIMIT``), 500, an HTML 502,
  truncated JSON, a dropped connection, ``expired`` (401 expired_token), ``inner`` (the
  matching command of a batch fails inside an HTTP 200), and ``block`` (hold the request
  until ``release`` is set, then apply and answer it; ``reached`` is set on arrival);
* weather (``weather``, a ``syncd_fakes.http.Weather``): every HTTP request (a batch is one)
  independently gets a 502, 503 (an HTML page, not ``QUERY_LIMIT_EXCEEDED``), 429, an HTML
  page under 200 or its body cut short, 502/truncation possibly after the writes were
  applied. Bitrix24 lists 500/503 system errors
  (https://apidocs.bitrix24.com/api-reference/common/system-errors.html); the OAuth server
  ``/oauth/token/`` gets the same weather unless ``Weather(spare=...)`` exempts it.

``python -m syncd_fakes.bitrix24.server --port 8766`` serves the sample for manual runs.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from syncd_fakes.bitrix24.sample import (
    Dataset,
    Table,
    portal_time,
    sample_dataset,
    scaled_dataset,
)
from syncd_fakes.http import (
    FakeHandler,
    FakeHTTPServer,
    Fault,
    Forecast,
    Weather,
    choose_fault,
    serve_until_interrupted,
)

PAGE = 50
MAX_BATCH = 50
GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
DATE_KEYS = frozenset({"DATE_MODIFY", "DATE_CREATE", "LAST_UPDATED", "CREATED", "CREATED_TIME",
                       "MOVED_TIME"})
_REFERENCE = re.compile(r"\$result\[([^\]]+)\]((?:\[[^\]]*\])+)")


#: REST methods that only read (a request made only of these is not a write for weather).
_READ_SUFFIXES = (".list", ".get", ".fields")

class ApiProblem(Exception):
    """An error answer: HTTP status, Bitrix24 error code and description."""

    def __init__(self, status: int, code: str, description: str = "") -> None:
        super().__init__(description or code)
        self.status = status
        self.code = code
        self.description = description


def parse_php_query(query: str) -> dict[str, Any]:
    """``filter[>ID]=5&select[]=ID`` -> ``{"filter": {">ID": "5"}, "select": ["ID"]}``."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        parts = re.findall(r"\[([^\]]*)\]", key)
        base = key.split("[", 1)[0]
        path = [base, *parts]
        node: Any = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            following = None if last else path[i + 1]
            if isinstance(node, list):
                if last:
                    node.append(value)
                else:
                    child: Any = [] if following == "" else {}
                    node.append(child)
                    node = child
                continue
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, [] if following == "" else {})
    return out


def _as_datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    parsed = datetime.fromisoformat(text if "T" in text or " " in text else f"{text}T00:00:00")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _compare(key: str, actual: Any, wanted: Any) -> tuple[Any, Any]:
    if key in DATE_KEYS:
        return _as_datetime(actual), _as_datetime(wanted)
    if key.endswith("ID") and str(wanted).lstrip("-").isdigit():
        try:
            return int(actual or 0), int(wanted)
        except (TypeError, ValueError):
            return str(actual), str(wanted)
    return str(actual if actual is not None else ""), str(wanted)


_FILTER_KEY = re.compile(r"^(>=|<=|!@|>|<|@|!|=)?(.*)$")
_ORDER = {"=": operator.eq, "!": operator.ne, ">": operator.gt, ">=": operator.ge,
          "<": operator.lt, "<=": operator.le}


def compile_filters(filters: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """The ``filter`` of a list call as one predicate over rows: the keys are read and the
    wanted values converted once per call, not once per row."""
    tests: list[Callable[[dict[str, Any]], bool]] = []
    for raw_key, wanted in filters.items():
        match = _FILTER_KEY.match(raw_key)
        if match is None:  # a key with a line break
            raise ApiProblem(400, "INVALID_FILTER", f"filter {raw_key!r}")
        op, key = (match.group(1) or "="), match.group(2)
        if op in {"@", "!@"}:
            options = {str(o) for o in (wanted if isinstance(wanted, list) else [wanted])}
            tests.append(_membership(key, options, inside=op == "@"))
            continue
        if isinstance(wanted, str) and wanted.startswith("$result["):
            raise ApiProblem(400, "ERROR_BATCH_REFERENCE", f"unresolved reference {wanted}")
        tests.append(_comparison(op, key, wanted))
    return lambda row: all(test(row) for test in tests)


def _membership(key: str, options: set[str], *,
                inside: bool) -> Callable[[dict[str, Any]], bool]:
    def test(row: dict[str, Any]) -> bool:
        return (str(row.get(key)) in options) == inside

    return test


def _comparison(op: str, key: str, wanted: Any) -> Callable[[dict[str, Any]], bool]:
    compare = _ORDER[op]

    def test(row: dict[str, Any]) -> bool:
        left, right = _compare(key, row.get(key), wanted)
        if left is None or right is None:
            return op in {"=", "!"} and (left == right) == (op == "=")
        return bool(compare(left, right))

    return test


def matches(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    return compile_filters(filters)(row)


class FakeBitrix24(FakeHTTPServer):
    """An in-memory portal served on 127.0.0.1; ``with FakeBitrix24(...) as fake:``."""

    thread_name = "fake-bitrix24"

    def __init__(self, dataset: Dataset | None = None, *, webhook_code: str = "fakecode123",
                 user_id: int = 1, burst: int = 50, rate: float = 2.0, port: int = 0,
                 client_id: str = "local.app", client_secret: str = "app-secret",  # noqa: S107
                 token_ttl: float = 3600.0, weather: Weather | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.dataset = dataset or sample_dataset(datetime.now(UTC))
        self.webhook_code = webhook_code
        self.user_id = user_id
        self.burst = burst
        self.rate = rate
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.clock = clock
        self.faults: list[Fault] | None = None
        self.weather = weather
        self.requests: list[tuple[str, list[str]]] = []  # (REST method, batch commands)
        #: Applied writes, in order: ("POST", REST method, parameters) (as ``syncd demo`` shows).
        self.writes: list[tuple[str, str, dict[str, Any]]] = []
        self.limit_errors = 0
        self.refreshes = 0
        self.access_tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.refresh_tokens: set[str] = set()
        self.auth_codes: set[str] = set()
        self._level = 0.0
        self._at = time.monotonic()
        self._lock = threading.RLock()
        self._bind("127.0.0.1", port)

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/rest/{self.user_id}/{self.webhook_code}/"

    @property
    def oauth_url(self) -> str:
        return f"{self.base_url}/oauth/token/"

    # --- test helpers ---------------------------------------------------------------------
    def issue_refresh_token(self) -> str:
        token = secrets.token_hex(16)
        self.refresh_tokens.add(token)
        return token

    def table(self, entity: str) -> Table:
        return {"deal": self.dataset.deals, "company": self.dataset.companies,
                "contact": self.dataset.contacts, "activity": self.dataset.activities}[entity]

    def record(self, entity: str, record_id: int) -> dict[str, Any]:
        row = self.table(entity).get(record_id)
        if row is None:
            raise KeyError(record_id)
        return row

    def edit(self, entity: str, record_id: int, **changes: Any) -> dict[str, Any]:
        """Change a record as a user would (bumps DATE_MODIFY)."""
        with self._lock:
            row = dict(self.record(entity, record_id))
            row.update({k: (v if v is None or isinstance(v, list) else str(v))
                        for k, v in changes.items()})
            row["DATE_MODIFY"] = portal_time(self.clock())
            self.table(entity).put(row)
            return row

    def move_deal(self, deal_id: int, stage: str) -> None:
        """Move a deal to ``stage`` as a user would: history row, semantics, MOVED_TIME."""
        from syncd_fakes.bitrix24.sample import SEMANTIC, history_row

        with self._lock:
            now = self.clock()
            history = self.dataset.history
            history.put(history_row(history.next_id(), deal_id, stage, now))
            self.edit("deal", deal_id, STAGE_ID=stage, STAGE_SEMANTIC_ID=SEMANTIC[stage],
                      MOVED_TIME=portal_time(now),
                      CLOSED="N" if SEMANTIC[stage] == "P" else "Y")

    def add_deal(self, **values: Any) -> int:
        from syncd_fakes.bitrix24.sample import SEMANTIC, deal_row, history_row

        with self._lock:
            now = self.clock()
            deals = self.dataset.deals
            deal_id = deals.next_id()
            stage = values.pop("stage", "NEW")
            deals.put(deal_row(deal_id, title=values.pop("title", f"Deal {deal_id}"),
                               stage=stage, owner=values.pop("owner", 1),
                               company=values.pop("company", None),
                               contact=values.pop("contact", None),
                               amount=values.pop("amount", 1000.0), created=now, modified=now,
                               moved=now, uf=values))
            history = self.dataset.history
            history.put(history_row(history.next_id(), deal_id, stage, now, created=True))
            assert SEMANTIC[stage]
            return deal_id

    # --- HTTP -----------------------------------------------------------------------------
    def _bucket_admits(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._level = max(0.0, self._level - (now - self._at) * self.rate)
            self._at = now
            if self._level + 1 > self.burst:
                self.limit_errors += 1
                return False
            self._level += 1
            return True

    def handle(self, handler: _Handler, verb: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        path = unquote(parts.path)
        if path == "/fake/stats":  # for benchmarks running the fake in another process
            handler.reply(200, {"requests": len(self.requests), "limit_errors":
                                self.limit_errors, "writes": len(self.writes),
                                "cpu_seconds": time.process_time()})
            return
        try:
            if path.rstrip("/") == "/oauth/token":
                self._handle_oauth(handler, verb, path, parts.query, raw)
                return
            method, body = self._route(path, parts.query, raw)
        except ApiProblem as problem:
            handler.reply(problem.status, {"error": problem.code,
                                           "error_description": problem.description})
            return
        commands = self._command_methods(method, body)
        with self._lock:
            self.requests.append((method, commands))
        if not self._bucket_admits():
            handler.reply(503, {"error": "QUERY_LIMIT_EXCEEDED",
                                "error_description": "Too many requests"})
            return
        forecast = self._forecast(verb, method, write=not all(
            m.endswith(_READ_SUFFIXES) for m in commands or [method]))
        if self.weather is not None and forecast is not None and not forecast.after:
            self.weather.answer_instead(handler, forecast)
            return
        fault = self._fault(commands or [method])
        inner_fail = None
        if fault is not None:
            if fault.kind == "block":
                fault.reached.set()
                fault.release.wait(fault.timeout)
            elif fault.kind == "inner":
                inner_fail = fault.method
            else:
                self._misbehave(handler, fault.kind)
                fault.finished.set()
                return
        try:
            self._authorize(path, body)
            envelope = self._dispatch(method, body, inner_fail)
            handler.reply(200, {**envelope, "time": self._time_block()}, None, forecast,
                          self.weather)
        except ApiProblem as problem:
            handler.reply(problem.status, {"error": problem.code,
                                           "error_description": problem.description})
        finally:
            if fault is not None:
                fault.finished.set()

    def _route(self, path: str, query: str, raw: bytes) -> tuple[str, dict[str, Any]]:
        match = re.match(r"^/rest/(?:(\d+)/([^/]+)/)?([\w.]+?)(?:\.json)?$", path)
        if match is None:
            raise ApiProblem(404, "ERROR_METHOD_NOT_FOUND", f"no such path {path}")
        body: dict[str, Any] = parse_php_query(query) if query else {}
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = parse_php_query(raw.decode())
            if not isinstance(parsed, dict):
                raise ApiProblem(400, "INVALID_REQUEST", "body must be an object")
            body.update(parsed)
        body["_webhook"] = (match.group(1), match.group(2))
        return match.group(3), body

    def _authorize(self, path: str, body: dict[str, Any]) -> None:
        user, code = body.pop("_webhook")
        if code is not None:
            if code != self.webhook_code or int(user) != self.user_id:
                raise ApiProblem(401, "NO_AUTH_FOUND", "Wrong authorization data")
            return
        token = body.pop("auth", None)
        with self._lock:
            expiry = self.access_tokens.get(str(token))
        if expiry is None:
            raise ApiProblem(401, "NO_AUTH_FOUND", "Wrong authorization data")
        if expiry < time.monotonic():
            raise ApiProblem(401, "expired_token", "The access token provided has expired.")

    def _oauth(self, params: dict[str, str]) -> tuple[int, Any]:
        if params.get("client_id") != self.client_id or \
                params.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Invalid client"}
        grant = params.get("grant_type")
        with self._lock:
            if grant == "refresh_token":
                used = params.get("refresh_token", "")
                if used not in self.refresh_tokens:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "Invalid refresh token"}
                self.refresh_tokens.discard(used)
            elif grant == "authorization_code":
                code = params.get("code", "")
                if code not in self.auth_codes:
                    return 400, {"error": "invalid_grant", "error_description": "Invalid code"}
                self.auth_codes.discard(code)
            else:
                return 400, {"error": "invalid_request", "error_description": "grant_type"}
            self.refreshes += 1
            access, refresh = secrets.token_hex(16), secrets.token_hex(16)
            self.access_tokens[access] = time.monotonic() + self.token_ttl
            self.refresh_tokens.add(refresh)
        return 200, {"access_token": access, "refresh_token": refresh,
                     "expires_in": int(self.token_ttl), "expires": int(time.time() +
                                                                     self.token_ttl),
                     "scope": "crm,user,department", "domain": f"127.0.0.1:{self.port}",
                     "server_endpoint": "https://oauth.bitrix.info/rest/",
                     "client_endpoint": f"{self.base_url}/rest/", "status": "L",
                     "member_id": "fake", "user_id": 1}

    def expire_tokens(self) -> None:
        """Every access token handed out so far expires now."""
        with self._lock:
            for token in self.access_tokens:
                self.access_tokens[token] = 0.0

    def _handle_oauth(self, handler: _Handler, verb: str, path: str, query: str,
                      raw: bytes) -> None:
        forecast = self._forecast(verb, path, write=True)
        if self.weather is not None and forecast is not None and not forecast.after:
            self.weather.answer_instead(handler, forecast)
            return
        status, payload = self._oauth({**dict(parse_qsl(query)), **dict(parse_qsl(raw.decode()))})
        handler.reply(status, payload, None, forecast, self.weather)

    def _forecast(self, verb: str, what: str, *, write: bool) -> Forecast | None:
        return self.weather.draw(verb, what, write=write) if self.weather is not None else None

    def _command_methods(self, method: str, body: dict[str, Any]) -> list[str]:
        if method != "batch":
            return []
        cmd = body.get("cmd")
        if not isinstance(cmd, dict):
            return []
        return [str(v).split("?", 1)[0] for v in cmd.values()]

    def _fault(self, methods: list[str]) -> Fault | None:
        """A fault's ``method`` is a prefix of the REST method (or, for a batch, of one of
        its commands); bucket refusals come first."""
        with self._lock:
            return choose_fault(self.faults or (), lambda fault: fault.method is None or any(
                m.startswith(fault.method) for m in methods))

    def _misbehave(self, handler: _Handler, kind: str) -> None:
        if kind == "503":
            handler.reply(503, {"error": "QUERY_LIMIT_EXCEEDED",
                                "error_description": "Too many requests"})
        elif kind == "429":
            handler.reply(429, {"error": "OPERATION_TIME_LIMIT",
                                "error_description": "Method is blocked due to operation time"
                                                     " limit."})
        elif kind == "500":
            handler.reply(500, {"error": "INTERNAL_SERVER_ERROR",
                                "error_description": "Internal server error"})
        elif kind == "expired":
            handler.reply(401, {"error": "expired_token",
                                "error_description": "The access token provided has expired."})
        elif kind == "html502":
            handler.reply_raw(502, GATEWAY_PAGE.encode(), "text/html", {})
        elif kind == "truncated":
            handler.reply_raw(200, b'{"result": [{"ID": "1", "TIT', "application/json", {})
        elif kind == "reset":
            handler.close_connection = True
            handler.connection.close()
        else:
            message = f"unknown fault kind {kind!r}"
            raise ValueError(message)

    def _time_block(self) -> dict[str, Any]:
        now = time.time()
        return {"start": now, "finish": now, "duration": 0.001, "processing": 0.001,
                "date_start": portal_time(self.clock()), "date_finish": portal_time(
                    self.clock()), "operating": 0}

    # --- methods ------------------------------------------------------------------------
    def _dispatch(self, method: str, params: dict[str, Any], inner_fail: str | None,
                  ) -> dict[str, Any]:
        """The whole envelope: ``result`` (+ ``total``/``next`` for lists)."""
        if method == "batch":
            return {"result": self._batch(params, inner_fail)}
        return self._call(method, params, with_envelope=True)

    def _batch(self, params: dict[str, Any], inner_fail: str | None) -> dict[str, Any]:
        cmd = params.get("cmd") or {}
        if not isinstance(cmd, dict):
            raise ApiProblem(400, "INVALID_REQUEST", "cmd must be an object")
        if len(cmd) > MAX_BATCH:
            raise ApiProblem(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = str(params.get("halt", "0")) in {"1", "true"}
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        totals: dict[str, Any] = {}
        failed_once = False
        for name, command in cmd.items():
            method, _, query = str(command).partition("?")
            if method == "batch":
                raise ApiProblem(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "no nested batch")
            inject = inner_fail is not None and not failed_once and method.startswith(inner_fail)
            failed_once = failed_once or inject
            try:
                _injected_failure(inject)
                sub = self._resolve(parse_php_query(query), results)
                envelope = self._call(method, sub, with_envelope=True)
            except ApiProblem as problem:
                errors[name] = {"error": problem.code, "error_description": problem.description}
                if halt:
                    break
                continue
            results[name] = envelope["result"]
            if "total" in envelope:
                totals[name] = envelope["total"]
        return {"result": results or [], "result_error": errors or [],
                "result_total": totals or [], "result_next": [], "result_time": []}

    def _resolve(self, value: Any, results: dict[str, Any]) -> Any:
        if isinstance(value, dict):
            return {k: self._resolve(v, results) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, results) for v in value]
        if not isinstance(value, str) or "$result[" not in value:
            return value

        def lookup(match: re.Match[str]) -> str:
            node: Any = results.get(match.group(1))
            for key in re.findall(r"\[([^\]]*)\]", match.group(2)):
                if isinstance(node, list) and key.isdigit() and int(key) < len(node):
                    node = node[int(key)]
                elif isinstance(node, dict) and key in node:
                    node = node[key]
                else:
                    return match.group(0)  # left as written: the call will refuse it
            return str(node)

        return _REFERENCE.sub(lookup, value)

    def _call(self, method: str, params: dict[str, Any], *,
              with_envelope: bool = False) -> Any:
        handler = _METHODS.get(method)
        if handler is None:
            entity_match = re.match(r"^crm\.(deal|company|contact)\.(fields|update|list|"
                                    r"userfield\.add)$", method)
            if entity_match is None:
                raise ApiProblem(404, "ERROR_METHOD_NOT_FOUND", f"Method not found: {method}")
            entity, action = entity_match.groups()
            envelope = getattr(self, f"_entity_{action.replace('.', '_')}")(entity, params)
        else:
            envelope = handler(self, params)
        return envelope if with_envelope else envelope["result"]

    # lists
    def _list(self, table: Table, params: dict[str, Any], *,
              typed_items: bool = False) -> dict[str, Any]:
        filters = params.get("filter") or {}
        if not isinstance(filters, dict):
            raise ApiProblem(400, "", "Parameter 'filter' must be array.")
        order = params.get("order") or {"ID": "ASC"}
        descending = str(next(iter(order.values()), "ASC")).upper() == "DESC"
        start = int(params.get("start", 0) or 0)
        candidates = self._candidates(table, filters, descending)
        accept = compile_filters(filters)
        rows: list[dict[str, Any]] = []
        total = 0
        for row_id in candidates:
            row = table.get(row_id)
            if row is None or not accept(row):
                continue
            if start == -1:
                rows.append(row)
                if len(rows) == PAGE:
                    break
                continue
            total += 1
            if start <= total - 1 < start + PAGE:
                rows.append(row)
        select = params.get("select")
        if isinstance(select, list) and select and "*" not in select:
            keep = set(select) | {"ID"}
            rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
        result: Any = {"items": rows} if typed_items else rows
        envelope: dict[str, Any] = {"result": result}
        if start == -1:
            envelope["total"] = 0
        else:
            envelope["total"] = total
            if start + PAGE < total:
                envelope["next"] = start + PAGE
        return envelope

    def _candidates(self, table: Table, filters: dict[str, Any],
                    descending: bool) -> Iterator[int]:
        owner = filters.get("OWNER_ID")
        if owner is not None and table.by_owner is not None:
            owned = set(table.by_owner(int(owner))) | {
                i for i, r in table.rows.items() if str(r.get("OWNER_ID")) == str(owner)}
            yield from sorted(owned, reverse=descending)
            return
        after = filters.get(">ID")
        if isinstance(after, str) and after.startswith("$result["):
            raise ApiProblem(400, "ERROR_BATCH_REFERENCE", f"unresolved reference {after}")
        if not descending and after is not None and str(after).isdigit():
            yield from table.ids_after(int(after))
            return
        ids = list(table.ids_after(0))
        yield from (reversed(ids) if descending else ids)

    def _entity_list(self, entity: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._list(self.table(entity), params)

    def _entity_fields(self, entity: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"result": self.dataset.fields[entity]}

    def _entity_update(self, entity: str, params: dict[str, Any]) -> dict[str, Any]:
        record_id = str(params.get("id") or params.get("ID") or "")
        fields = params.get("fields")
        if not record_id.isdigit() or not isinstance(fields, dict):
            raise ApiProblem(400, "", "ID is not defined or invalid.")
        with self._lock:
            row = self.table(entity).get(int(record_id))
            if row is None:
                raise ApiProblem(400, "", "Not found")
            known = self.dataset.fields[entity]
            applied = {k: ("" if v is None else str(v)) for k, v in fields.items()
                       if k in known and k not in {"ID", "DATE_CREATE", "DATE_MODIFY"}}
            row = {**row, **applied,
                   "DATE_MODIFY": portal_time(self.clock()), "MODIFY_BY_ID": str(self.user_id)}
            self.table(entity).put(row)  # unknown fields: silently ignored, like Bitrix24
            self.writes.append(("POST", f"crm.{entity}.update",
                                {"id": record_id, "fields": fields}))
        return {"result": True}

    def _entity_userfield_add(self, entity: str, params: dict[str, Any]) -> dict[str, Any]:
        fields = params.get("fields") or {}
        name = str(fields.get("FIELD_NAME") or "")
        if not re.fullmatch(r"[A-Z0-9_]+", name):
            raise ApiProblem(400, "ERROR_CORE", "FIELD_NAME: A-Z, 0-9 and _ only")
        code = name if name.startswith("UF_CRM_") else f"UF_CRM_{name}"
        with self._lock:
            known = self.dataset.fields[entity]
            if code in known:
                raise ApiProblem(400, "ERROR_CORE", f"field {code} already exists")
            label = str(fields.get("EDIT_FORM_LABEL") or fields.get("LABEL") or code)
            kind = str(fields.get("USER_TYPE_ID") or "string")
            known[code] = {"type": kind, "isRequired": False, "isReadOnly": False,
                           "isMultiple": False, "title": code, "formLabel": label,
                           "listLabel": label, "filterLabel": label}
            self.writes.append(("POST", f"crm.{entity}.userfield.add", {"fields": fields}))
            return {"result": len(known) + 1000}

    def _todo_add(self, params: dict[str, Any]) -> dict[str, Any]:
        owner = str(params.get("ownerId") or "")
        if str(params.get("ownerTypeId")) != "2" or not owner.isdigit() or \
                self.dataset.deals.get(int(owner)) is None:
            raise ApiProblem(400, "NOT_FOUND", "Owner not found")
        if not params.get("deadline"):
            raise ApiProblem(400, "ERROR_WRONG_DEADLINE", "deadline is required")
        with self._lock:
            now = self.clock()
            table = self.dataset.activities
            activity_id = table.next_id()
            table.put({"ID": str(activity_id), "OWNER_ID": owner, "OWNER_TYPE_ID": "2",
                       "TYPE_ID": "6", "PROVIDER_ID": "CRM_TODO", "PROVIDER_TYPE_ID": "TODO",
                       "SUBJECT": str(params.get("title") or ""), "COMPLETED": "N",
                       "STATUS": "1", "RESPONSIBLE_ID": str(params.get("responsibleId") or
                                                            self.user_id),
                       "AUTHOR_ID": str(self.user_id), "PRIORITY": "2", "DIRECTION": "0",
                       "START_TIME": "", "END_TIME": "",
                       "DEADLINE": portal_time(_as_datetime(params["deadline"]) or now),
                       "CREATED": portal_time(now), "LAST_UPDATED": portal_time(now),
                       "DESCRIPTION": str(params.get("description") or ""),
                       "DESCRIPTION_TYPE": "1"})
            self.writes.append(("POST", "crm.activity.todo.add", dict(params)))
        return {"result": {"id": activity_id}}

    def _activity_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._list(self.dataset.activities, params)

    def _history_list(self, params: dict[str, Any]) -> dict[str, Any]:
        if str(params.get("entityTypeId")) != "2":
            raise ApiProblem(400, "NOT_FOUND", "entityTypeId 2 only in this fake")
        return self._list(self.dataset.history, params, typed_items=True)

    def _category_list(self, params: dict[str, Any]) -> dict[str, Any]:
        if str(params.get("entityTypeId")) != "2":
            raise ApiProblem(400, "NOT_FOUND", "entityTypeId 2 only in this fake")
        return {"result": {"categories": self.dataset.categories}, "total": len(
            self.dataset.categories)}

    def _status_list(self, params: dict[str, Any]) -> dict[str, Any]:
        filters = params.get("filter") or {}
        rows = [s for s in self.dataset.statuses if matches(s, filters)]
        return {"result": rows, "total": len(rows)}

    def _paged(self, rows: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        start = int(params.get("start", 0) or 0)
        page = rows[start: start + PAGE]
        envelope: dict[str, Any] = {"result": page, "total": len(rows)}
        if start + PAGE < len(rows):
            envelope["next"] = start + PAGE
        return envelope

    def _user_get(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._paged(self.dataset.users, params)

    def _department_get(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._paged(self.dataset.departments, params)


def _injected_failure(inject: bool) -> None:
    if inject:
        raise ApiProblem(500, "INTERNAL_SERVER_ERROR", "injected inner failure")


_METHODS: dict[str, Callable[[FakeBitrix24, dict[str, Any]], dict[str, Any]]] = {
    "crm.activity.list": FakeBitrix24._activity_list,
    "crm.activity.todo.add": FakeBitrix24._todo_add,
    "crm.stagehistory.list": FakeBitrix24._history_list,
    "crm.category.list": FakeBitrix24._category_list,
    "crm.status.list": FakeBitrix24._status_list,
    "user.get": FakeBitrix24._user_get,
    "department.get": FakeBitrix24._department_get,
}


class _Handler(FakeHandler):
    fake: FakeBitrix24


FakeBitrix24.handler_class = _Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Bitrix24 portal locally.")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--deals", type=int, default=48)
    parser.add_argument("--scaled", action="store_true")
    parser.add_argument("--code", default="demo0webhook0code")
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--rate", type=float, default=2.0)
    args = parser.parse_args(argv)
    now = datetime.now(UTC)
    dataset = scaled_dataset(args.deals, now=now) if args.scaled else sample_dataset(
        now, args.deals)
    fake = FakeBitrix24(dataset, webhook_code=args.code, burst=args.burst, rate=args.rate,
                        port=args.port)
    serve_until_interrupted(fake, lambda _url: (
        f"fake Bitrix24 ({dataset.name}): webhook {fake.webhook_url}  (Ctrl-C stops)"))


if __name__ == "__main__":
    main()
