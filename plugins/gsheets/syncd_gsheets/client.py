"""Google Sheets API v4 over ``syncd.http.ApiClient``: batch reads and writes only.

* Quota: 60 requests per minute per user, and a service account is one user for every
  spreadsheet and tenant it serves. So the limiter is process-wide, keyed by the service
  account's e-mail (``shared_limiter``): two tenants on the same key share one budget.
  Every call here is one batch request (a batch counts as one request).
* 429 ``RESOURCE_EXHAUSTED`` is a ``RateLimitedError``: the ApiClient backs off (full-jitter
  exponential, Google's prescription) and retries. Writes are idempotent (``values:
  batchUpdate`` sets absolute values, ``values:batchClear`` clears), so they are retried
  too; ``addSheet`` is not (a repeat fails with "already exists"): after weather the tabs
  are listed, and the batch is re-sent only when none of its tabs exists (a batchUpdate is
  atomic). No ``values:append`` is used anywhere.
* 403 ``PERMISSION_DENIED`` means the spreadsheet is not shared with the service account:
  the error says so and names the account's e-mail, the one thing the user must do.
* Sheet titles are always quoted in A1 ranges (``'It''s'!A1``): an unquoted title can
  resolve to a named range instead of the tab.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import requests

from syncd.errors import APIError, AuthError, BadPayloadError, FatalAPIError, RateLimitedError
from syncd.http import ApiClient, default_classify, json_body, retry_after
from syncd.limiterpool import process_limiter
from syncd.pluginclient import PluginClient
from syncd.ratelimit import RateLimiter
from syncd.secrets import redact
from syncd_gsheets.auth import SCOPES, ServiceAccount

Grid = list[list[Any]]
QUOTA_WINDOW = 60.0
#: A new tab's grid (what Sheets gives when no size is asked for).
DEFAULT_ROWS, DEFAULT_COLUMNS = 1000, 26
#: Google recommends payloads of at most 2 MB; keep a margin for the JSON envelope.
MAX_PAYLOAD = 1_800_000
#: Rows per value range when a big table is split across requests.
BLOCK_ROWS = 2000


@dataclass(frozen=True)
class SheetInfo:
    sheet_id: int
    rows: int
    columns: int


def payload_batches(data: Sequence[tuple[str, Grid]],
                    limit: int = MAX_PAYLOAD) -> list[list[tuple[str, Grid]]]:
    """Split value ranges into requests of at most ``limit`` bytes of JSON: a big table is
    cut into blocks of ``BLOCK_ROWS`` rows (each its own range, ``'T'!A2001`` ...)."""
    pieces: list[tuple[str, Grid, int]] = []
    for ref, rows in data:
        title, _, start = ref.rpartition("!")
        match = re.fullmatch(r"([A-Z]+)(\d+)", start) if title else None
        if match is None or len(rows) <= BLOCK_ROWS:
            pieces.append((ref, rows, len(json.dumps(rows))))
            continue
        column, first = match.group(1), int(match.group(2))
        for offset in range(0, len(rows), BLOCK_ROWS):
            block = rows[offset:offset + BLOCK_ROWS]
            pieces.append((f"{title}!{column}{first + offset}", block, len(json.dumps(block))))
    batches: list[list[tuple[str, Grid]]] = []
    size = 0
    for ref, rows, weight in pieces:
        if not batches or size + weight > limit:
            batches.append([])
            size = 0
        batches[-1].append((ref, rows))
        size += weight
    return batches

def shared_limiter(email: str, per_minute: int, *, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> RateLimiter:
    """One limiter per service account for the whole process (``syncd.limiterpool``).

    Google counts the quota per user, and a service account is one user whatever tenant or
    spreadsheet it serves; when two tenants configure different rates for the same key,
    the lower one wins."""
    limiter = process_limiter("gsheets", email.casefold(), partial(
        RateLimiter, per_minute, QUOTA_WINDOW, margin=1.0), clock=clock, sleep=sleep)
    limiter.limit = min(limiter.limit, per_minute)
    return limiter


def quote_sheet(title: str) -> str:
    """A sheet title as an A1 sheet reference, always quoted, ``'`` doubled."""
    return "'" + title.replace("'", "''") + "'"


def column_letter(index: int) -> str:
    """1 -> A, 27 -> AA."""
    letters = ""
    while index > 0:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def a1(title: str, start: str = "", end: str = "") -> str:
    ref = quote_sheet(title)
    if start:
        ref += f"!{start}" + (f":{end}" if end else "")
    return ref


def google_error(response: requests.Response) -> tuple[str, str]:
    """``(status, message)`` of a Google error body ``{"error": {code, message, status}}``."""
    try:
        body = json_body(response)
    except ValueError:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("status") or ""), " ".join(str(error.get("message") or "").split())
    return "", ""


def make_classifier(spreadsheet_id: str, email: str) -> Callable[[requests.Response],
                                                                 APIError | None]:
    def classify(response: requests.Response) -> APIError | None:
        status, text = google_error(response)
        url = redact(response.url)
        code = response.status_code
        if code == 403 and (status == "PERMISSION_DENIED" or not status):
            message = (f"spreadsheet {spreadsheet_id} is not shared with the service account "
                       f"{email}: open the spreadsheet, Share, add {email} as Editor "
                       f"(Google said: {text or 'HTTP 403'})")
            return AuthError(redact(message), status=403, url=url)
        if code == 404:
            message = (f"spreadsheet {spreadsheet_id} not found (check spreadsheet_id; Google "
                       f"said: {text or 'HTTP 404'})")
            return FatalAPIError(redact(message), status=404, url=url)
        if code == 429:
            message = f"Sheets quota exceeded for {email} ({status or 'HTTP 429'}): {text}"
            return RateLimitedError(redact(message), status=429, url=url,
                                    retry_after=retry_after(response.headers))
        if code == 401:
            message = f"Sheets refused the token of {email}: {text or 'HTTP 401'}"
            return AuthError(redact(message), status=401, url=url)
        if code == 400 and text:
            message = f"Sheets rejected the request ({status}): {text}"
            return FatalAPIError(redact(message), status=400, url=url)
        return default_classify(response)
    return classify


class SheetsClient(PluginClient):
    """One spreadsheet, one service account (one instance per pass or publish)."""

    def __init__(
        self, *, base_url: str, spreadsheet_id: str, credentials: str,
        requests_per_minute: int = 60, timeout: float = 60,
        scopes: tuple[str, ...] = SCOPES, where: str = "credentials",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.account = ServiceAccount(credentials, scopes=scopes, where=where, sleep=sleep)
        self.spreadsheet_id = spreadsheet_id
        self.limiter = limiter or shared_limiter(self.account.email, requests_per_minute,
                                                 clock=clock, sleep=sleep)
        self.api = ApiClient(
            base_url, auth_headers={}, limiter=self.limiter, timeout=(10, timeout),
            sleep=sleep, on_request=self.count,
            classify=make_classifier(spreadsheet_id, self.account.email), session=session,
        )
        self._path = f"/v4/spreadsheets/{spreadsheet_id}"


    def _call(self, method: str, suffix: str, *, params: Any = None, json: Any = None,
              idempotent: bool | None = None, landed: Callable[[], Any] | None = None,
              ) -> Any:
        token = self.account.token(self.api.session)
        self.api.session.headers["Authorization"] = f"Bearer {token}"
        body = self.api.request(method, self._path + suffix, params=params, json=json,
                                idempotent=idempotent, landed=landed)
        if not isinstance(body, dict):
            message = (f"Sheets {method} {suffix or '/'}: expected a JSON object, got "
                       f"{type(body).__name__}")
            raise BadPayloadError(message)
        return body

    # --- reads --------------------------------------------------------------------------
    def sheets(self) -> dict[str, SheetInfo]:
        """Every tab: title -> id and grid size (``spreadsheets.get`` with a field mask)."""
        body = self._call("GET", "", params={
            "fields": "sheets.properties(sheetId,title,gridProperties(rowCount,columnCount))"})
        found = {}
        for sheet in body.get("sheets") or ():
            props = (sheet.get("properties") or {}) if isinstance(sheet, dict) else {}
            if "title" not in props:
                continue
            grid = props.get("gridProperties") or {}
            found[str(props["title"])] = SheetInfo(
                sheet_id=int(props.get("sheetId") or 0),
                rows=int(grid.get("rowCount") or DEFAULT_ROWS),
                columns=int(grid.get("columnCount") or DEFAULT_COLUMNS))
        return found

    def sheet_titles(self) -> dict[str, int]:
        """``title -> sheetId`` of every tab."""
        return {title: info.sheet_id for title, info in self.sheets().items()}

    def batch_get(self, ranges: Sequence[str]) -> list[Grid]:
        """Values of ``ranges`` in request order: unformatted, dates as serial numbers.
        An empty range has no ``values`` key at all: it reads as ``[]``."""
        if not ranges:
            return []
        body = self._call("GET", "/values:batchGet", params={
            "ranges": list(ranges), "majorDimension": "ROWS",
            "valueRenderOption": "UNFORMATTED_VALUE", "dateTimeRenderOption": "SERIAL_NUMBER",
        })
        value_ranges = body.get("valueRanges")
        if not isinstance(value_ranges, list) or len(value_ranges) != len(ranges):
            message = (f"Sheets values:batchGet: expected {len(ranges)} valueRanges, got "
                       f"{len(value_ranges) if isinstance(value_ranges, list) else 'none'}")
            raise BadPayloadError(message)
        grids = []
        for item in value_ranges:
            rows = item.get("values", []) if isinstance(item, dict) else None
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                message = "Sheets values:batchGet: a valueRange's values is not a list of rows"
                raise BadPayloadError(message)
            grids.append(rows)
        return grids

    # --- writes -------------------------------------------------------------------------
    def add_sheets(self, titles: Iterable[str], *,
                   sizes: Mapping[str, tuple[int, int]] | None = None,
                   frozen: Mapping[str, tuple[int, int]] | None = None,
                   ) -> dict[str, SheetInfo]:
        """Create tabs in one ``spreadsheets.batchUpdate`` (re-sent after weather only when
        the tabs are not there: see the module doc),
        each with at least ``sizes[title] = (rows, columns)`` cells and ``frozen[title] =
        (rows, columns)`` frozen (headers stay in view); returns the new tabs."""
        requests_: list[dict[str, Any]] = []
        for title in titles:
            rows, columns = (sizes or {}).get(title, (DEFAULT_ROWS, DEFAULT_COLUMNS))
            grid: dict[str, int] = {"rowCount": max(rows, DEFAULT_ROWS),
                    "columnCount": max(columns, DEFAULT_COLUMNS)}
            frozen_rows, frozen_columns = (frozen or {}).get(title, (0, 0))
            if frozen_rows:
                grid["frozenRowCount"] = frozen_rows
            if frozen_columns:
                grid["frozenColumnCount"] = frozen_columns
            requests_.append({"addSheet": {"properties": {"title": title,
                                                          "gridProperties": grid}}})
        if not requests_:
            return {}
        wanted = [r["addSheet"]["properties"]["title"] for r in requests_]
        body = self._call("POST", ":batchUpdate", json={"requests": requests_},
                          idempotent=False, landed=lambda: self._added(wanted))
        created = {}
        for asked, reply in zip(requests_, body.get("replies") or (), strict=False):
            props = ((reply or {}).get("addSheet") or {}).get("properties") or {}
            asked_grid = asked["addSheet"]["properties"]["gridProperties"]
            if "title" in props:
                created[str(props["title"])] = SheetInfo(
                    sheet_id=int(props.get("sheetId") or 0), rows=asked_grid["rowCount"],
                    columns=asked_grid["columnCount"])
        return created

    def _added(self, titles: list[str]) -> dict[str, Any] | None:
        """After weather: the replies of an ``addSheet`` batch that did land (a batchUpdate
        is atomic: every tab exists, or none); None when none does (then it is re-sent)."""
        existing = self.sheets()
        if not all(title in existing for title in titles):
            return None
        return {"replies": [{"addSheet": {"properties": {
            "sheetId": existing[t].sheet_id, "title": t}}} for t in titles]}

    def resize_sheets(self, sizes: Mapping[int, tuple[int, int]]) -> None:
        """Set the grid size of tabs (``sheetId -> (rows, columns)``) in one batchUpdate.
        Values cannot be written outside a tab's grid ("exceeds grid limits"). Setting an
        absolute size is idempotent, so this one is retried."""
        requests_ = [{"updateSheetProperties": {
            "properties": {"sheetId": sheet_id,
                           "gridProperties": {"rowCount": rows, "columnCount": columns}},
            "fields": "gridProperties(rowCount,columnCount)"}}
            for sheet_id, (rows, columns) in sizes.items()]
        if requests_:
            self._call("POST", ":batchUpdate", json={"requests": requests_}, idempotent=True)

    def write_values(self, data: Sequence[tuple[str, Grid]]) -> int:
        """Set ``range -> rows`` with RAW input (strings stay strings, numbers stay numbers,
        nothing is parsed as a formula or a date), in as few ``values:batchUpdate`` requests
        as the recommended 2 MB payload allows; returns the number of requests."""
        made = 0
        for batch in payload_batches(data):
            self._call("POST", "/values:batchUpdate", json={
                "valueInputOption": "RAW",
                "data": [{"range": r, "majorDimension": "ROWS", "values": v} for r, v in batch],
            }, idempotent=True)
            made += 1
        return made

    def clear(self, ranges: Sequence[str]) -> None:
        if ranges:
            self._call("POST", "/values:batchClear", json={"ranges": list(ranges)},
                       idempotent=True)
