"""amoCRM / Kommo over HTTP: bearer auth with OAuth rotation, HAL paging, amoCRM's signals.

All retry, wait and rate-limit policy lives in ``syncd.http``; this module adds what is
amoCRM's own:

* the access token travels in the ``Authorization: Bearer`` header. With OAuth it comes
  from the shared flow (``syncd.oauth_flow.OAuthFlow`` over the tenant's
  ``syncd.oauth.TokenStore``): refreshed *before* a request when it expires within
  ``refresh_margin_seconds``, and once more when a request still gets a 401. The store
  serialises refreshes across processes (single-use refresh tokens); this module declares
  amoCRM's part: the token path, the JSON grant with the integration's keys;
* the token exchange is retried on weather (5xx, an HTML or cut answer, a dropped
  connection). amoCRM kills the old refresh token the moment it issues a new pair, so a
  retry after an answer that was *lost* after amoCRM processed it is refused (401): the
  pair was rotated in the lost answer and nothing can recover it. Retrying loses
  nothing -- without the retry the next pass would present the same stored refresh token
  -- and it saves the pass whenever the failure came before amoCRM processed the
  exchange (a 503 maintenance page, a 429, a refused connection). When a retry is
  refused after a lost answer, the tenant is disconnected with a message saying so;
* creates are never sent twice blindly: a ``POST /api/v4/tasks`` or ``.../custom_fields``
  that meets weather is looked up first (a task by the ``[syncd:...]`` marker in its
  text, a field by its name) and only what is absent is sent again;
* an HTML 403 is amoCRM's ban for exceeding the limits: a loud ``BlockedError`` that
  stops the tenant (retrying would extend the ban);
* a list with nothing to show answers 204 with an empty body: an empty page, not an error;
* lists are HAL: items under ``_embedded.<entity>``, more pages while ``_links.next``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import requests

from syncd.errors import (
    APIError,
    AuthError,
    BadPayloadError,
    BlockedError,
    FatalAPIError,
)
from syncd.http import ApiClient, default_classify
from syncd.limiterpool import process_limiter
from syncd.oauth_flow import OAuthFlow
from syncd.pluginclient import PluginClient
from syncd.ratelimit import RateLimiter
from syncd.secrets import redact, register
from syncd.streams import PageNumber, paginate
from syncd_amocrm.settings import AmoCRMSettings

if TYPE_CHECKING:
    from syncd.oauth import TokenStore

log = logging.getLogger(__name__)

TOKEN_PATH = "/oauth2/access_token"  # noqa: S105 - a path
TASKS_PATH = "/api/v4/tasks"
#: The marker syncd puts in what it creates (``[syncd:v12]``), found again after weather.
MARKER = re.compile(r"\[(syncd:[^\]\s]+)\]")
_FIELD_CREATE = re.compile(r"/api/v4/(leads|contacts|companies)/custom_fields")
FIND_CHUNK = 50  # lead ids per task lookup
FIELDS_PAGE = 50  # custom field lists take limit <= 50


def classify_amocrm(response: requests.Response) -> APIError | None:
    """amoCRM's cases first (the HTML ban, payment required), then the default table."""
    error = default_classify(response)
    if isinstance(error, BlockedError):
        return BlockedError(
            f"{redact(response.url)}: amoCRM answered HTTP 403 with an HTML page: the"
            " account or this IP is banned for exceeding the API limits. syncd stopped"
            " calling it; the ban is lifted by amoCRM support, not by waiting.",
            status=403, url=redact(response.url))
    if error is not None and response.status_code == 402:
        return FatalAPIError(f"{error}: the account's plan does not allow this API feature",
                             status=402, url=error.url)
    return error


def shared_limiter(settings: AmoCRMSettings, *, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> RateLimiter:
    """One limiter per integration and account for the whole process
    (``syncd.limiterpool``): amoCRM counts requests per integration."""
    who = settings.client_id or settings.long_lived_token or ""
    digest = hashlib.sha256(who.encode()).hexdigest()
    key = (settings.base_url, digest, settings.rate_limit, settings.rate_window)
    return process_limiter("amocrm", key, partial(
        RateLimiter, settings.rate_limit, settings.rate_window), clock=clock, sleep=sleep)


class AmoCRMClient(PluginClient):
    """Thin amoCRM layer over one ``ApiClient`` (one per tenant pass)."""

    def __init__(
        self,
        settings: AmoCRMSettings,
        *,
        tenant: str,
        token_store: Callable[[], TokenStore | None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self.tenant = tenant
        self.limiter = shared_limiter(settings, clock=clock, sleep=sleep)
        self.api = ApiClient(
            settings.base_url, auth_headers={}, limiter=self.limiter,
            timeout=(10, settings.timeout_seconds), sleep=sleep, on_request=self.count,
            classify=classify_amocrm, session=session,
        )
        self.oauth = OAuthFlow(
            provider="amoCRM", tenant=tenant, store=token_store, seed=settings.seed_grant,
            post=self._post_grant, api=lambda: self.api,
            margin=timedelta(seconds=settings.refresh_margin_seconds), now=now,
            code_lifetime="about 20 minutes", without_store=", or use a long_lived_token")

    # --- auth -----------------------------------------------------------------------------
    def _post_grant(self, grant: dict[str, str]) -> Any:
        """One grant to ``/oauth2/access_token`` (JSON, with the integration's keys)."""
        body = {"client_id": self.settings.client_id,
                "client_secret": self.settings.client_secret,
                "redirect_uri": self.settings.redirect_uri, **grant}
        self.api.session.headers.pop("Authorization", None)  # not for the token endpoint
        return self.api.request("POST", TOKEN_PATH, json=body, idempotent=True)

    def _bearer(self, token: str) -> None:
        register(token)
        self.api.session.headers["Authorization"] = f"Bearer {token}"

    # --- single calls -----------------------------------------------------------------------
    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             json: Any = None, idempotent: bool | None = None) -> Any:
        """One request; the parsed body (``None`` for 204). A 401 refreshes OAuth once. A
        create syncd can find again (see the module doc) is verified before a re-send."""
        landed = self._read_back(path, json) if method.upper() == "POST" else None

        def send(token: str) -> Any:
            self._bearer(token)
            return self.api.request(method, path, params=params, json=json,
                                    idempotent=idempotent, landed=landed)

        if self.settings.uses_oauth:
            return self.oauth.call(lambda tokens: send(tokens.access_token),
                                   expired=lambda exc: exc.status == 401)
        try:
            return send(self.settings.long_lived_token or "")
        except AuthError as exc:
            if exc.status != 401:
                raise
            message = (f"{exc}. The long-lived token was rejected (expired or revoked):"
                       " create a new one in the integration's Keys and scopes tab and"
                       " put it in the tenant file's connection.long_lived_token")
            raise AuthError(message, status=401, url=exc.url) from None

    # --- creates found again after weather --------------------------------------------------
    def _read_back(self, path: str, body: Any) -> Callable[[], Any] | None:
        """How to find the items of a batched create after weather (None: no way)."""
        if not isinstance(body, list) or not body or not all(isinstance(b, dict) for b in body):
            return None
        if path == TASKS_PATH:
            keys = [_task_key(b) for b in body]
            if any(k is None for k in keys):
                return None
            return lambda: self._resend_missing(path, body, "tasks", self._find_tasks(body))
        match = _FIELD_CREATE.fullmatch(path)
        if match and all(b.get("name") for b in body):
            return lambda: self._resend_missing(path, body, "custom_fields",
                                                self._find_fields(path, body))
        return None

    def _resend_missing(self, path: str, body: list[dict[str, Any]], key: str,
                        found: dict[int, dict[str, Any]]) -> Any:
        """None when nothing landed (the caller re-sends all); else the found items plus
        the answer to re-sending only the missing ones, as one HAL answer."""
        if not found:
            return None
        missing = [item for i, item in enumerate(body) if i not in found]
        items = [found[i] for i in sorted(found)]
        if missing:
            again, _ = embedded(self.call("POST", path, json=missing), key, path)
            items.extend(again)
        log.info("amoCRM: %d of %d created %s were found after a lost answer; %d re-sent",
                 len(found), len(body), key, len(missing))
        return {"_embedded": {key: items}}

    def _find_tasks(self, body: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """``{index in body: {id, request_id}}`` of the tasks that exist already."""
        # every body has a key (_read_back checked); one without could not be found anyway
        wanted = {i: key for i, b in enumerate(body) if (key := _task_key(b)) is not None}
        found: dict[int, dict[str, Any]] = {}
        for item in self.tasks_of_leads(lead for lead, _ in wanted.values()):
            text = str(item.get("text") or "")
            for index, (lead, marker) in wanted.items():
                if index not in found and marker in text and str(item.get("entity_id")) == lead:
                    found[index] = {"id": item.get("id"),
                                    "request_id": body[index].get("request_id")}
        return found

    def tasks_of_leads(self, leads: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Every task of the leads ``leads`` (numeric ids), ``FIND_CHUNK`` leads a request."""
        ordered = sorted(set(leads), key=int)
        for first in range(0, len(ordered), FIND_CHUNK):
            params = {"filter[entity_type]": "leads",
                      "filter[entity_id][]": ordered[first: first + FIND_CHUNK],
                      "order[id]": "asc"}
            for items in self.iter_pages(TASKS_PATH, "tasks", params):
                yield from items

    def _find_fields(self, path: str, body: list[dict[str, Any]],
                     ) -> dict[int, dict[str, Any]]:
        names = {str(b["name"]): i for i, b in enumerate(body)}
        found: dict[int, dict[str, Any]] = {}
        for items in self.iter_pages(path, "custom_fields", limit=FIELDS_PAGE):
            for item in items:
                index = names.get(str(item.get("name")))
                if index is not None and index not in found:
                    found[index] = item
        return found

    # --- paging (the loop is the core's: ``syncd.streams.paginate``) ----------------------
    def iter_pages(self, path: str, key: str, params: Mapping[str, Any] | None = None, *,
                   limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every page of a HAL list (``page`` from 1, ``limit``); 204 is an empty end."""
        query = {**(params or {}), "limit": limit or self.settings.page_size}
        query["page"] = int(query.pop("page", 1))
        return paginate(lambda q: self.call("GET", path, params=q),
                        lambda body: embedded(body, key, path)[0],
                        PageNumber(lambda body: embedded(body, key, path)[1]), query)


def _task_key(body: dict[str, Any]) -> tuple[str, str] | None:
    """(lead id, ``[marker]``) of a task body, None when it carries no marker."""
    marker = MARKER.search(str(body.get("text") or ""))
    if marker is None or body.get("entity_id") is None:
        return None
    return str(body["entity_id"]), f"[{marker.group(1)}]"


def embedded(body: Any, key: str, path: str) -> tuple[list[dict[str, Any]], bool]:
    """``(items, has next page)`` of a HAL list body; ``None`` (204) is an empty last page."""
    if body is None:
        return [], False
    if not isinstance(body, dict):
        message = f"amocrm {path}: expected a JSON object, got {type(body).__name__}"
        raise BadPayloadError(message)
    inner = body.get("_embedded")
    items = inner.get(key) if isinstance(inner, dict) else None
    if items is None:
        message = f"amocrm {path}: no _embedded.{key} in the response"
        raise BadPayloadError(message)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        message = f"amocrm {path}: _embedded.{key} is not a list of objects"
        raise BadPayloadError(message)
    links = body.get("_links")
    more = isinstance(links, dict) and isinstance(links.get("next"), dict)
    return items, more and bool(items)

