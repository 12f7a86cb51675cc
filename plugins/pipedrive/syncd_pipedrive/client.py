"""Pipedrive over HTTP: auth header, the two pagination styles, Pipedrive's error signals.

All policy (retries, waits, rate limit, redaction) lives in ``syncd.http``; this module only
adds what is Pipedrive's own:

* the token travels in the ``x-api-token`` header, never in a URL;
* a 429 is either the 2-second burst limit (retry after ``x-ratelimit-reset``) or the
  company's daily token budget (retrying is pointless until the server's midnight): the
  budget case is told apart by ``x-ratelimit-remaining`` not being 0 while a daily counter
  header says nothing is left, and becomes ``BudgetExhaustedError``;
* a 2xx whose JSON says ``success: false`` is not data;
* v2 lists page with ``cursor``/``additional_data.next_cursor``; v1 lists with
  ``start``/``additional_data.pagination`` and answer ``data: null`` when empty;
* creates are never sent twice blindly: a POST that meets weather (5xx, an unreadable
  answer, a dropped connection) is looked up first -- an activity by the ``[syncd:...]``
  marker in its note, a custom field by its name -- and re-sent only when it is absent
  (``syncd.http.ApiClient.request(landed=...)``).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any

import requests

from syncd.errors import APIError, BadPayloadError, BudgetExhaustedError
from syncd.http import ApiClient, default_classify, json_body
from syncd.limiterpool import process_limiter
from syncd.pluginclient import PluginClient
from syncd.ratelimit import RateLimiter
from syncd.secrets import redact
from syncd.streams import NextToken, Offset, paginate
from syncd_pipedrive.settings import PipedriveSettings

#: Headers that count the daily budget down (undocumented, reported by 3P clients), and the
#: legacy POST/PUT fair-use counter.
DAILY_HEADERS = ("x-daily-ratelimit-token-remaining", "x-daily-requests-left")
V1_MAX_LIMIT = 500
#: The marker syncd puts in what it creates (``[syncd:v12]``), found again after weather.
MARKER = re.compile(r"\[(syncd:[^\]\s]+)\]")
#: Where custom fields are created (v1) -> where they are listed (v2).
_FIELD_LISTS = {"dealFields": "/api/v2/dealFields",
                "organizationFields": "/api/v2/organizationFields"}
_FIELD_CREATE = re.compile(r"/(?:api/)?v1/(dealFields|organizationFields)")


def _daily_budget_spent(headers: Mapping[str, str]) -> bool:
    if headers.get("x-ratelimit-remaining", "").strip() == "0":
        return False  # a burst 429: wait for the window, not for midnight
    for name in DAILY_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        try:
            if float(value) <= 0:
                return True
        except ValueError:
            continue
    return False


def classify_pipedrive(response: requests.Response) -> APIError | None:
    """Pipedrive's cases first (daily budget, ``success: false``), then the default table."""
    where = _where(response)
    if response.status_code == 429 and _daily_budget_spent(response.headers):
        return BudgetExhaustedError(
            f"{where}: HTTP 429: the company's daily Pipedrive API budget is spent; "
            "calls fail until the server's midnight",
            status=429, url=redact(response.url),
        )
    error = default_classify(response)
    if error is not None or not 200 <= response.status_code < 300:
        return error
    body = json_body(response)
    if isinstance(body, dict) and body.get("success") is False:
        text = " ".join(str(body.get("error") or "no error text").split())[:200]
        return BadPayloadError(
            redact(f"{where}: success=false: {text}"),
            status=response.status_code, url=redact(response.url),
        )
    return None


def shared_limiter(
    settings: PipedriveSettings, *, clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> RateLimiter:
    """One limiter per token and host for the whole process (``syncd.limiterpool``):
    Pipedrive's burst limit is per token."""
    digest = hashlib.sha256(settings.api_token.encode()).hexdigest()
    key = (settings.base_url, digest, settings.burst_limit, settings.burst_window)
    return process_limiter("pipedrive", key, partial(
        RateLimiter, settings.burst_limit, settings.burst_window), clock=clock, sleep=sleep)


def _where(response: requests.Response) -> str:
    method = response.request.method if response.request is not None else "?"
    return redact(f"{method} {response.url}")


class PipedriveClient(PluginClient):
    """Thin Pipedrive layer over one ``ApiClient`` (one per tenant pass)."""

    def __init__(
        self,
        settings: PipedriveSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        session: requests.Session | None = None,
    ) -> None:
        self.page_size = settings.page_size
        self.limiter = shared_limiter(settings, clock=clock, sleep=sleep)
        self.api = ApiClient(
            settings.base_url,
            auth_headers={"x-api-token": settings.api_token},
            limiter=self.limiter,
            timeout=(10, settings.timeout_seconds),
            sleep=sleep,
            on_request=self.count,
            classify=classify_pipedrive,
            session=session,
        )


    # --- single calls -------------------------------------------------------------------
    def call(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        json: Any = None, idempotent: bool | None = None,
    ) -> Any:
        """One request; returns the envelope's ``data`` (checked to be present). A create
        that syncd can find again (see the module doc) is verified before a re-send."""
        landed = self._read_back(path, json) if method.upper() == "POST" else None
        body = self.api.request(method, path, params=params, json=json, idempotent=idempotent,
                                landed=landed)
        return _envelope(body, path)[0]

    def _read_back(self, path: str, body: Any) -> Callable[[], Any] | None:
        """How to find ``body`` after a POST to ``path`` met weather (None: no way)."""
        if not isinstance(body, dict):
            return None
        if path == "/api/v2/activities":
            marker = MARKER.search(str(body.get("note") or ""))
            deal_id = body.get("deal_id")
            if marker is None or not isinstance(deal_id, int):
                return None
            return lambda: self._find_activity(deal_id, f"[{marker.group(1)}]")
        match = _FIELD_CREATE.fullmatch(path)
        if match and body.get("name"):
            return lambda: self._find_field(_FIELD_LISTS[match.group(1)], str(body["name"]))
        return None

    def _find_activity(self, deal_id: int, marker: str) -> dict[str, Any] | None:
        for items in self.iter_v2("/api/v2/activities", {"deal_id": deal_id}):
            for item in items:
                if (isinstance(item, dict) and not item.get("is_deleted")
                        and marker in str(item.get("note") or "")):
                    return {"success": True, "data": item}
        return None

    def _find_field(self, path: str, name: str) -> dict[str, Any] | None:
        for items in self.iter_v2(path):
            for item in items:
                if isinstance(item, dict) and (item.get("field_name") or item.get("name")) \
                        == name:
                    return {"success": True, "data": item}
        return None

    def get_list(self, path: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """A small, unpaged list (``/v1/users``, ``/v1/activityTypes``)."""
        return _as_list(self.call("GET", path, params=params), path)

    # --- paging (the loops are the core's: ``syncd.streams.paginate``) ---------------------
    def iter_v2(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[list[Any]]:
        """Every page of a v2 list, following ``additional_data.next_cursor``."""
        return paginate(lambda query: self.api.get(path, params=query),
                        lambda body: _as_list(_envelope(body, path)[0], path),
                        NextToken(lambda body: _extra(body).get("next_cursor")),
                        {"limit": self.page_size, **(params or {})}, where=f"pipedrive {path}")

    def iter_v1(self, path: str, params: Mapping[str, Any] | None = None, *,
                before_next: Callable[[], None] | None = None) -> Iterator[list[Any]]:
        """Every page of a v1 offset-paged list; ``data: null`` is an empty page.
        ``before_next`` is called before each request after the first (it may raise)."""
        def fetch(query: dict[str, Any]) -> Any:
            if before_next is not None and query.get("start"):
                before_next()
            return self.api.get(path, params=query)

        return paginate(fetch,
                        lambda body: _as_list(_envelope(body, path)[0], path),
                        Offset("start", next_offset=_v1_next_start),
                        {**(params or {}), "start": 0,
                         "limit": min(self.page_size, V1_MAX_LIMIT)}, where=f"pipedrive {path}")


def _envelope(body: Any, path: str) -> tuple[Any, Any]:
    """``(data, additional_data)`` of a Pipedrive response envelope."""
    if not isinstance(body, dict) or "data" not in body:
        kind = "an empty body" if body is None else f"a {type(body).__name__}"
        message = f"pipedrive {path}: expected a JSON envelope with 'data', got {kind}"
        raise BadPayloadError(message)
    return body["data"], body.get("additional_data") or {}


def _extra(body: Any) -> Mapping[str, Any]:
    extra = body.get("additional_data") if isinstance(body, dict) else None
    return extra if isinstance(extra, dict) else {}


def _v1_next_start(body: Any) -> Any:
    """v1 ``additional_data.pagination``: the next ``start`` while more items follow."""
    pagination = _extra(body).get("pagination")
    if not isinstance(pagination, dict) or not pagination.get("more_items_in_collection"):
        return None
    return pagination.get("next_start")


def _as_list(data: Any, path: str) -> list[Any]:
    if data is None:
        return []
    if not isinstance(data, list):
        message = f"pipedrive {path}: expected a list in 'data', got {type(data).__name__}"
        raise BadPayloadError(message)
    return data
