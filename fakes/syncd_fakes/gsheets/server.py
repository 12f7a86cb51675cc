"""A local fake Google Sheets API (and OAuth token endpoint) over real HTTP.

Used by the tests and the benchmark. It follows the documented behaviour the plugin
depends on, quirks included:

* ``POST /token``: the JWT-bearer grant of a service account. The assertion's signature
  is checked against the public key of a key made by ``service_account_key`` (and its
  ``aud`` must be Google's token endpoint, as Google requires); answers
  ``{access_token, expires_in, token_type}``;
* every Sheets call needs ``Authorization: Bearer <token>`` (401 ``UNAUTHENTICATED``
  otherwise) and a spreadsheet shared with the token's account (403
  ``PERMISSION_DENIED`` otherwise); an unknown spreadsheet is a 404 ``NOT_FOUND``;
* ``GET /v4/spreadsheets/{id}`` (tab titles, sheetIds, grid sizes), ``POST ...:batchUpdate``
  with ``addSheet`` and ``updateSheetProperties`` (atomic: a duplicate title fails the whole
  batch with 400); a tab has a grid (1000 x 26 by default) and writing or clearing outside
  it fails with "exceeds grid limits", as in Google;
* ``GET .../values:batchGet``: quoted/unquoted A1 ranges, rows trimmed of trailing empty
  cells and rows, no ``values`` key for an empty range, ``FORMATTED_VALUE`` by default
  (numbers come back as locale-formatted strings, so a client that forgets
  ``UNFORMATTED_VALUE`` reads text), serial numbers for dates;
* ``POST .../values:batchUpdate`` (``valueInputOption`` required; ``USER_ENTERED`` turns
  numeric-looking text like ``00123`` into numbers, ``RAW`` keeps it; JSON null cells are
  left unchanged, ``""`` clears) and ``POST .../values:batchClear``;
* the per-user quota: at most ``per_minute`` requests per rolling minute per account
  (429 ``RESOURCE_EXHAUSTED``), plus injected 429s (``quota_faults``);
* weather (``weather``, a ``syncd_fakes.http.Weather``): every request, the token endpoint's
  included, independently gets a 502, 503, 429, an HTML page under 200 or its body cut
  short (Google documents 429/500/503 as retryable with exponential backoff:
  https://developers.google.com/sheets/api/limits#exponential).

Cells hold what the API holds: numbers (dates as serial numbers), strings, booleans.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from syncd_fakes.http import FakeHTTPServer, Weather

_CELL = re.compile(r"^([A-Z]*)(\d*)$")
#: The audience Google requires in a service account's assertion, whatever the token_uri.
JWT_AUDIENCE = "https://oauth2.googleapis.com/token"


class ApiFailure(Exception):
    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def col_index(letters: str) -> int:
    number = 0
    for ch in letters:
        number = number * 26 + (ord(ch) - 64)
    return number - 1


def col_letters(index: int) -> str:
    index += 1
    out = ""
    while index:
        index, rest = divmod(index - 1, 26)
        out = chr(65 + rest) + out
    return out


def parse_range(text: str) -> tuple[str | None, str]:
    """``(sheet title or None, cells part)``; quoted titles unescape ``''``."""
    if text.startswith("'"):
        i, title = 1, ""
        while i < len(text):
            if text[i] == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    title += "'"
                    i += 2
                    continue
                break
            title += text[i]
            i += 1
        else:
            raise ApiFailure(400, "INVALID_ARGUMENT", f"Unable to parse range: {text}")
        rest = text[i + 1:]
        if rest and not rest.startswith("!"):
            raise ApiFailure(400, "INVALID_ARGUMENT", f"Unable to parse range: {text}")
        return title, rest[1:]
    if "!" in text:
        title, cells = text.split("!", 1)
        return title, cells
    return None, text


@dataclass
class Sheet:
    sheet_id: int
    title: str
    cells: dict[tuple[int, int], Any] = field(default_factory=dict)
    rows: int = 1000  # the grid: values cannot be written outside it
    columns: int = 26
    frozen: tuple[int, int] = (0, 0)  # frozen rows and columns

    def extent(self) -> tuple[int, int]:
        if not self.cells:
            return 0, 0
        return (max(r for r, _ in self.cells) + 1, max(c for _, c in self.cells) + 1)


@dataclass
class Spreadsheet:
    spreadsheet_id: str
    sheets: list[Sheet] = field(default_factory=list)
    shared_with: set[str] = field(default_factory=set)

    def sheet(self, title: str | None) -> Sheet:
        if title is None:
            if not self.sheets:
                raise ApiFailure(400, "INVALID_ARGUMENT", "no sheets")
            return self.sheets[0]
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        raise ApiFailure(400, "INVALID_ARGUMENT", f"Unable to parse range: {title}")


@dataclass
class Account:
    email: str
    public_pem: bytes


def make_key(email: str, token_uri: str) -> tuple[str, bytes]:
    """``(key file JSON, public key PEM)`` of a new service account (RSA 2048)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    key = json.dumps({
        "type": "service_account", "project_id": "demo-project",
        "private_key_id": secrets.token_hex(20), "private_key": pem, "client_email": email,
        "client_id": "1234567890", "token_uri": token_uri,
    })
    return key, public


class FakeSheets(FakeHTTPServer):
    """The fake API. ``start()`` returns its base URL; also a context manager."""

    thread_name = "fake-sheets"

    def __init__(self, *, per_minute: int = 60, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.monotonic,
                 weather: Weather | None = None) -> None:
        self.per_minute = per_minute
        self.weather = weather
        self.clock = clock
        self.lock = threading.RLock()
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, str] = {}  # access token -> account e-mail
        self.requests: list[tuple[str, str, dict[str, list[str]], Any]] = []
        self.token_requests = 0
        self.scopes: list[str] = []  # the scope of every token issued
        self.quota_faults = 0  # answer the next N Sheets requests with 429
        self.rate_limited = 0
        self._windows: dict[str, deque[float]] = {}
        self._next_sheet_id = 100
        self._bind(host, port)

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    # --- what tests use directly ------------------------------------------------------------
    def service_account_key(self, email: str = "syncd@demo-project.iam.gserviceaccount.com",
                            ) -> str:
        """A new service-account key file's JSON whose ``token_uri`` is this fake."""
        key, public = make_key(email, self.token_uri)
        with self.lock:
            self.accounts[email] = Account(email, public)
        return key

    def create(self, spreadsheet_id: str, tabs: dict[str, Sequence[Sequence[Any]]] | None = None,
               *, shared_with: Sequence[str] = ()) -> Spreadsheet:
        with self.lock:
            book = Spreadsheet(spreadsheet_id, shared_with=set(shared_with))
            self.spreadsheets[spreadsheet_id] = book
            for title, rows in (tabs or {"Sheet1": []}).items():
                self._add_sheet(book, title)
                self.set_tab(spreadsheet_id, title, rows)
            return book

    def set_tab(self, spreadsheet_id: str, title: str, rows: Sequence[Sequence[Any]]) -> None:
        """Replace a tab's content, as a user pasting a table would."""
        with self.lock:
            sheet = self.spreadsheets[spreadsheet_id].sheet(title)
            sheet.cells = {(r, c): v for r, row in enumerate(rows) for c, v in enumerate(row)
                           if v not in ("", None)}
            height, width = sheet.extent()
            sheet.rows, sheet.columns = max(sheet.rows, height), max(sheet.columns, width)

    def tab(self, spreadsheet_id: str, title: str) -> list[list[Any]]:
        """A tab's content as unformatted rows (trailing empties trimmed)."""
        with self.lock:
            sheet = self.spreadsheets[spreadsheet_id].sheet(title)
            height, width = sheet.extent()
            return _trim([[sheet.cells.get((r, c), "") for c in range(width)]
                          for r in range(height)])

    def frozen(self, spreadsheet_id: str, title: str) -> tuple[int, int]:
        """``(frozen rows, frozen columns)`` of a tab."""
        with self.lock:
            return self.spreadsheets[spreadsheet_id].sheet(title).frozen

    def titles(self, spreadsheet_id: str) -> list[str]:
        with self.lock:
            return [s.title for s in self.spreadsheets[spreadsheet_id].sheets]

    def calls(self, kind: str | None = None) -> list[tuple[str, str]]:
        """``(method, endpoint)`` of the Sheets calls received, e.g. ``values:batchGet``."""
        with self.lock:
            out = [(m, _endpoint(p)) for m, p, _, _ in self.requests]
        return [c for c in out if kind is None or c[1] == kind]

    # --- internals --------------------------------------------------------------------------
    def _add_sheet(self, book: Spreadsheet, title: str, rows: int = 1000,
                   columns: int = 26) -> Sheet:
        self._next_sheet_id += 1
        sheet = Sheet(self._next_sheet_id, title, rows=rows, columns=columns)
        book.sheets.append(sheet)
        return sheet

    def issue_token(self, form: dict[str, list[str]]) -> dict[str, Any]:
        grant = (form.get("grant_type") or [""])[0]
        assertion = (form.get("assertion") or [""])[0]
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" or not assertion:
            raise ApiFailure(400, "invalid_grant", "unsupported grant")
        unverified = jwt.decode(assertion, verify=False)
        account = self.accounts.get(str(unverified.get("iss")))
        if account is None:
            raise ApiFailure(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(assertion, certs=account.public_pem, audience=JWT_AUDIENCE)
        except ValueError as exc:
            raise ApiFailure(400, "invalid_grant", f"Invalid JWT: {exc}") from None
        if "spreadsheets" not in str(claims.get("scope", "")):
            raise ApiFailure(400, "invalid_scope", "no spreadsheets scope")
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = account.email
            self.token_requests += 1
            self.scopes.append(str(claims.get("scope", "")))
        return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _admit(self, email: str) -> None:
        if self.quota_faults > 0:
            self.quota_faults -= 1
            self.rate_limited += 1
            raise ApiFailure(429, "RESOURCE_EXHAUSTED", _quota_message())
        window = self._windows.setdefault(email, deque())
        now = self.clock()
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.per_minute:
            self.rate_limited += 1
            raise ApiFailure(429, "RESOURCE_EXHAUSTED", _quota_message())
        window.append(now)

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any,
               auth: str) -> Any:
        with self.lock:
            self.requests.append((method, path, query, body))
            email = self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth else None
            if email is None:
                raise ApiFailure(401, "UNAUTHENTICATED",
                                 "Request had invalid authentication credentials.")
            match = re.match(r"^/v4/spreadsheets/([^/:]+)(.*)$", path)
            if not match:
                raise ApiFailure(404, "NOT_FOUND", "Requested entity was not found.")
            self._admit(email)
            book = self.spreadsheets.get(match.group(1))
            if book is None:
                raise ApiFailure(404, "NOT_FOUND", "Requested entity was not found.")
            if email not in book.shared_with:
                raise ApiFailure(403, "PERMISSION_DENIED",
                                 "The caller does not have permission")
            return self._route(book, method, match.group(2), query, body)

    def _route(self, book: Spreadsheet, method: str, rest: str, query: dict[str, list[str]],
               body: Any) -> Any:
        if method == "GET" and rest == "":
            return {"spreadsheetId": book.spreadsheet_id, "sheets": [
                {"properties": {"sheetId": s.sheet_id, "title": s.title, "index": i,
                                "gridProperties": {"rowCount": s.rows,
                                                   "columnCount": s.columns}}}
                for i, s in enumerate(book.sheets)]}
        if method == "POST" and rest == ":batchUpdate":
            return self._batch_update(book, body)
        if method == "GET" and rest == "/values:batchGet":
            return self._batch_get(book, query)
        if method == "POST" and rest == "/values:batchUpdate":
            return self._values_update(book, body)
        if method == "POST" and rest == "/values:batchClear":
            return self._clear(book, body)
        raise ApiFailure(404, "NOT_FOUND", f"no method {method} {rest}")

    def _batch_update(self, book: Spreadsheet, body: Any) -> Any:
        requests = (body or {}).get("requests") or []
        titles = [s.title for s in book.sheets]
        by_id = {s.sheet_id: s for s in book.sheets}
        for index, request in enumerate(requests):  # validate first: the batch is atomic
            if "updateSheetProperties" in request:
                props = request["updateSheetProperties"].get("properties") or {}
                if props.get("sheetId") not in by_id:
                    raise ApiFailure(400, "INVALID_ARGUMENT",
                                     f"Invalid requests[{index}].updateSheetProperties: "
                                     f"No grid with id: {props.get('sheetId')}")
                continue
            title = ((request.get("addSheet") or {}).get("properties") or {}).get("title")
            if not title:
                raise ApiFailure(400, "INVALID_ARGUMENT",
                                 "only addSheet and updateSheetProperties are supported")
            if title in titles:
                raise ApiFailure(400, "INVALID_ARGUMENT",
                                 f'Invalid requests[{index}].addSheet: A sheet with the name '
                                 f'"{title}" already exists. Please enter another name.')
            titles.append(title)
        replies: list[dict[str, Any]] = []
        for request in requests:
            if "updateSheetProperties" in request:
                props = request["updateSheetProperties"]["properties"]
                grid = props.get("gridProperties") or {}
                sheet = by_id[props["sheetId"]]
                sheet.rows = int(grid.get("rowCount", sheet.rows))
                sheet.columns = int(grid.get("columnCount", sheet.columns))
                replies.append({})
                continue
            props = request["addSheet"]["properties"]
            grid = props.get("gridProperties") or {}
            sheet = self._add_sheet(book, props["title"], int(grid.get("rowCount", 1000)),
                                    int(grid.get("columnCount", 26)))
            sheet.frozen = (int(grid.get("frozenRowCount", 0)),
                            int(grid.get("frozenColumnCount", 0)))
            replies.append({"addSheet": {"properties": {
                "sheetId": sheet.sheet_id, "title": sheet.title,
                "gridProperties": {"rowCount": sheet.rows, "columnCount": sheet.columns}}}})
        return {"spreadsheetId": book.spreadsheet_id, "replies": replies}

    def _bounds(self, book: Spreadsheet, text: str) -> tuple[Sheet, int, int, int, int]:
        """``(sheet, row0, col0, row_end, col_end)`` (end exclusive, open ends = extent)."""
        title, cells = parse_range(text)
        sheet = book.sheet(title)
        height, width = sheet.extent()
        if not cells:
            return sheet, 0, 0, max(height, 1), max(width, 1)
        start, _, end = cells.partition(":")
        m1, m2 = _CELL.match(start), _CELL.match(end or start)
        if not m1 or not m2:
            raise ApiFailure(400, "INVALID_ARGUMENT", f"Unable to parse range: {text}")
        c0 = col_index(m1.group(1)) if m1.group(1) else 0
        r0 = int(m1.group(2)) - 1 if m1.group(2) else 0
        c1 = col_index(m2.group(1)) + 1 if m2.group(1) else max(width, c0 + 1)
        r1 = int(m2.group(2)) if m2.group(2) else max(height, r0 + 1)
        return sheet, r0, c0, r1, c1

    def _batch_get(self, book: Spreadsheet, query: dict[str, list[str]]) -> Any:
        render = (query.get("valueRenderOption") or ["FORMATTED_VALUE"])[0]
        out = []
        for text in query.get("ranges") or []:
            sheet, r0, c0, r1, c1 = self._bounds(book, text)
            rows = [[_render(sheet.cells.get((r, c), ""), render) for c in range(c0, c1)]
                    for r in range(r0, r1)]
            rows = _trim(rows)
            item: dict[str, Any] = {"range": f"'{sheet.title}'!{col_letters(c0)}{r0 + 1}:"
                                             f"{col_letters(c1 - 1)}{r1}",
                                    "majorDimension": "ROWS"}
            if rows:
                item["values"] = rows
            out.append(item)
        return {"spreadsheetId": book.spreadsheet_id, "valueRanges": out}

    def _values_update(self, book: Spreadsheet, body: Any) -> Any:
        option = (body or {}).get("valueInputOption")
        if option not in {"RAW", "USER_ENTERED"}:
            raise ApiFailure(400, "INVALID_ARGUMENT",
                             "Invalid valueInputOption: INPUT_VALUE_OPTION_UNSPECIFIED")
        planned = []
        for item in (body or {}).get("data") or []:
            sheet, r0, c0, _, _ = self._bounds(book, item["range"])
            rows = item.get("values") or []
            width = max((len(r) for r in rows), default=0)
            _check_grid(sheet, item["range"], r0 + len(rows), c0 + width)
            planned.append((sheet, r0, c0, rows))
        cells = 0
        for sheet, r0, c0, rows in planned:
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    if value is None:
                        continue  # JSON null: left unchanged
                    key = (r0 + r, c0 + c)
                    stored = _user_entered(value) if option == "USER_ENTERED" else value
                    if stored == "":
                        sheet.cells.pop(key, None)
                    else:
                        sheet.cells[key] = stored
                    cells += 1
        return {"spreadsheetId": book.spreadsheet_id, "totalUpdatedCells": cells}

    def _clear(self, book: Spreadsheet, body: Any) -> Any:
        cleared = []
        for text in (body or {}).get("ranges") or []:
            sheet, r0, c0, r1, c1 = self._bounds(book, text)
            _check_grid(sheet, text, r1, c1)
            for key in [k for k in sheet.cells if r0 <= k[0] < r1 and c0 <= k[1] < c1]:
                del sheet.cells[key]
            cleared.append(text)
        return {"spreadsheetId": book.spreadsheet_id, "clearedRanges": cleared}


def _check_grid(sheet: Sheet, text: str, rows: int, columns: int) -> None:
    if rows > sheet.rows or columns > sheet.columns:
        raise ApiFailure(400, "INVALID_ARGUMENT",
                         f"Range ({text}) exceeds grid limits. Max rows: {sheet.rows}, max "
                         f"columns: {sheet.columns}")


def _endpoint(path: str) -> str:
    match = re.match(r"^/v4/spreadsheets/[^/:]+(.*)$", path)
    if not match:
        return path
    rest = match.group(1).lstrip("/")
    return rest or "get"


def _quota_message() -> str:
    return ("Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
            "minute per user' of service 'sheets.googleapis.com'")


def _trim(rows: list[list[Any]]) -> list[list[Any]]:
    out = []
    for row in rows:
        values = list(row)
        while values and values[-1] in ("", None):
            values.pop()
        out.append(values)
    while out and not out[-1]:
        out.pop()
    return out


def _render(value: Any, option: str) -> Any:
    if option != "FORMATTED_VALUE" or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else \
            f"{value:,}"
    return str(value)


def _user_entered(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSheets
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        weather, forecast = self.fake.weather, getattr(self, "forecast", None)
        if weather is not None and forecast is not None:
            weather.spoil(self, forecast, status, data, "application/json; charset=UTF-8")
            return
        self.reply_raw(status, data, "application/json; charset=UTF-8")

    def reply_raw(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = unquote(parts.path)
        weather = self.fake.weather
        self.forecast = (weather.draw(method, path, write=method != "GET" and not
                                      path.endswith(":batchGet"))
                         if weather is not None else None)
        if weather is not None and self.forecast is not None and not self.forecast.after:
            weather.answer_instead(self, self.forecast)
            return
        try:
            if path == "/token" and method == "POST":
                form = parse_qs(raw.decode(), keep_blank_values=True)
                self._answer(200, self.fake.issue_token(form))
                return
            body = json.loads(raw) if raw.strip() else None
            query = parse_qs(parts.query, keep_blank_values=True)
            result = self.fake.handle(method, path, query, body,
                                      self.headers.get("Authorization", ""))
            self._answer(200, result)
        except ApiFailure as exc:
            if path == "/token":
                self._answer(exc.code, {"error": exc.status, "error_description": str(exc)})
            else:
                self._answer(exc.code, {"error": {"code": exc.code, "message": str(exc),
                                                  "status": exc.status}})

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


FakeSheets.handler_class = _Handler
