"""Bitrix24 REST over HTTP: the two auth modes, ``batch``, and Bitrix24's error signals.

All policy (retries, waits, redaction) lives in ``syncd.http``; this module adds what is
Bitrix24's own:

* a webhook URL carries its secret in the path (``/rest/{user}/{code}/``): the URL and the
  code are registered with ``syncd.secrets`` so no message ever shows them; an OAuth access
  token travels in the JSON body (``auth``), never in a URL;
* OAuth tokens come from the shared flow (``syncd.oauth_flow.OAuthFlow`` over
  ``connector.state.tokens``): an ``expired_token`` answer renews the pair once through
  ``TokenStore.refresh`` (single-use refresh tokens, safe across processes) and repeats
  the call. This module declares Bitrix24's part: the OAuth server's URL, the grant in
  the query, the ``error`` codes that refuse a grant, the default lifetime of an hour;
* 503 ``QUERY_LIMIT_EXCEEDED`` (the leaky bucket) and 429 ``OPERATION_TIME_LIMIT`` are rate
  limits, retried with backoff (they were refused before processing); 503
  ``OVERLOAD_LIMIT`` is a manual block: stop;
* ``batch`` runs up to 50 sub-calls in one request and answers HTTP 200 even when some of
  them failed: the failures come back per command (``result_error``);
* reads and idempotent batches are retried on weather (5xx, an HTML or cut answer, a
  dropped connection) by ``syncd.http``. Creates are not sent twice blindly: a batch of
  ``crm.activity.todo.add`` whose answer was lost is looked up (the ``[syncd:...]`` marker
  in each to-do's description) and only the absent to-dos are sent again; a lost
  ``crm.*.userfield.add`` is looked up by its code in ``crm.*.fields``;
* the OAuth exchange is retried on weather too. Bitrix24 documents that the new refresh
  token replaces the old one; treated as single-use, a retry after an answer lost *after*
  the exchange is refused (``invalid_grant``) and disconnects the tenant with a message
  saying the pair was lost -- exactly what the next pass would meet without the retry.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from syncd.errors import (
    APIError,
    AuthError,
    BadPayloadError,
    BlockedError,
    FatalAPIError,
    RateLimitedError,
)
from syncd.http import ApiClient, default_classify, json_body
from syncd.leakybucket import LeakyBucket
from syncd.limiterpool import process_limiter
from syncd.oauth import TokenStore
from syncd.oauth_flow import OAuthFlow
from syncd.pluginclient import PluginClient
from syncd.secrets import redact, register
from syncd_bitrix24.settings import Bitrix24Settings

log = logging.getLogger(__name__)

MAX_BATCH = 50
#: Errors meaning "renew the access token and try again".
_EXPIRED = frozenset({"expired_token", "invalid_token"})
#: OAuth server answers meaning "this refresh token (or app) is refused for good".
_REJECTED = frozenset({"invalid_grant", "invalid_client", "invalid_request",
                       "invalid_scope", "insufficient_scope", "PAYMENT_REQUIRED"})
#: Refresh this long before the access token's announced expiry.
REFRESH_MARGIN = timedelta(minutes=5)
#: The marker syncd puts in what it creates (``[syncd:v12]``), found again after weather.
MARKER = re.compile(r"\[(syncd:[^\]\s]+)\]")
TODO_ADD = "crm.activity.todo.add"
_USERFIELD_ADD = re.compile(r"crm\.(deal|company|contact)\.userfield\.add")
DEAL_OWNER_TYPE = 2


class TokenExpired(AuthError):
    """The portal says the OAuth access token expired (renew it, then repeat the call)."""


# --- PHP-style query strings (batch sub-calls are ``method?query``) ------------------------
def php_query(params: Mapping[str, Any]) -> str:
    """``params`` as PHP's ``http_build_query`` writes them: ``filter[>ID]=5&select[]=ID``."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        _flatten(str(key), value, pairs)
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='$[]')}" for k, v in pairs)


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            _flatten(f"{prefix}[{key}]", inner, out)
    elif isinstance(value, list | tuple):
        for inner in value:
            _flatten(f"{prefix}[]", inner, out)
    elif value is None:
        out.append((prefix, ""))
    elif isinstance(value, bool):
        out.append((prefix, "Y" if value else "N"))
    else:
        out.append((prefix, str(value)))


# --- classification ------------------------------------------------------------------------
def _error_code(response: requests.Response) -> tuple[str, str]:
    try:
        body = json_body(response)
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error") or ""), str(body.get("error_description") or "")


def make_classifier(limiter: LeakyBucket | None) -> Callable[[requests.Response], APIError | None]:
    """Bitrix24's cases first, then the default table of ``syncd.http``."""

    def classify(response: requests.Response) -> APIError | None:
        status = response.status_code
        code, text = _error_code(response)
        where = redact(f"{response.request.method if response.request else '?'} "
                       f"{response.url}: HTTP {status}")
        detail = redact(f"{code}: {text}" if text else code)
        if status == 503 and code == "QUERY_LIMIT_EXCEEDED":
            if limiter is not None:
                limiter.saturate()
            wait = 1.0 / limiter.rate if limiter is not None else 1.0
            return RateLimitedError(f"{where}: {detail}", status=status,
                                    url=redact(response.url), retry_after=wait)
        if status == 503 and code == "OVERLOAD_LIMIT":
            return BlockedError(f"{where}: {detail} (the portal blocked this client; only"
                                " Bitrix24 support can lift it)", status=status,
                                url=redact(response.url))
        if status == 429:
            return RateLimitedError(f"{where}: {detail or 'rate limited'}", status=status,
                                    url=redact(response.url))
        if status == 401 and code in _EXPIRED:
            return TokenExpired(f"{where}: {detail}", status=status, url=redact(response.url))
        if status in {401, 403} and code:
            return AuthError(f"{where}: {detail}", status=status, url=redact(response.url))
        error = default_classify(response)
        if error is not None:
            return error
        if 200 <= status < 300:
            body = json_body(response)
            if isinstance(body, dict) and body.get("error") and "result" not in body:
                return FatalAPIError(f"{where}: {detail}", status=status,
                                     url=redact(response.url))
            if not isinstance(body, dict) or "result" not in body:
                return BadPayloadError(f"{where}: expected a JSON object with 'result'",
                                       status=status, url=redact(response.url))
        return None

    return classify


# --- shared limiters -----------------------------------------------------------------------
def shared_bucket(settings: Bitrix24Settings, *, clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> LeakyBucket:
    """One bucket per portal for the whole process (``syncd.limiterpool``): the portal
    counts every request from this machine, whichever pass or ``inspect`` made it."""
    host = urlsplit(settings.webhook_url or settings.base_url).netloc
    return process_limiter("bitrix24", (host, settings.bucket_burst, settings.bucket_rate),
                           partial(LeakyBucket, settings.bucket_burst, settings.bucket_rate),
                           clock=clock, sleep=sleep)


@dataclass
class BatchResult:
    """What one ``batch`` request answered, per command name."""

    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # name -> "CODE: description"
    totals: dict[str, Any] = field(default_factory=dict)


class Bitrix24Client(PluginClient):
    """Thin Bitrix24 layer over one ``ApiClient`` (one per tenant pass)."""

    def __init__(
        self,
        settings: Bitrix24Settings,
        *,
        tenant: str = "",
        tokens: Callable[[], TokenStore | None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: requests.Session | None = None,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        for secret in (settings.webhook_url, settings.client_secret, settings.refresh_token,
                       settings.auth_code):
            if secret:
                register(secret)
        if settings.webhook_url:
            url = settings.webhook_url.rstrip("/")
            register(url)
            register(url.rsplit("/", 1)[-1])  # the code alone
            self.endpoint = url
        else:
            self.endpoint = f"{settings.base_url}/rest"
        self.limiter = shared_bucket(settings, clock=clock, sleep=sleep)
        self.api = ApiClient(
            self.endpoint, auth_headers={}, limiter=self.limiter,
            timeout=(10, settings.timeout_seconds), sleep=sleep, on_request=self.count,
            classify=make_classifier(self.limiter), session=session,
        )
        self._oauth_api: ApiClient | None = None
        self.oauth = OAuthFlow(
            provider="Bitrix24", tenant=tenant, store=tokens, seed=settings.seed_grant,
            post=self._post_grant, api=self._token_endpoint, margin=REFRESH_MARGIN, now=now,
            refusing_codes=_REJECTED, default_expires_in=3600,
            code_lifetime="a short while", without_store=", or use a webhook_url")


    # --- calls ----------------------------------------------------------------------------
    def call(self, method: str, params: Mapping[str, Any] | None = None, *,
             idempotent: bool = True, landed: Callable[[], Any] | None = None) -> Any:
        """One REST method; returns the envelope's ``result``."""
        return self.envelope(method, params, idempotent=idempotent, landed=landed)["result"]

    def envelope(self, method: str, params: Mapping[str, Any] | None = None, *,
                 idempotent: bool = True, landed: Callable[[], Any] | None = None,
                 ) -> dict[str, Any]:
        body = dict(params or {})
        path = f"{method}.json"
        if landed is None and not idempotent:
            landed = self._userfield_read_back(method, body)
        if not self.settings.uses_oauth:
            return self.api.request("POST", path, json=body, idempotent=idempotent,
                                    landed=landed)
        return self.oauth.call(
            lambda tokens: self.api.request("POST", path, json={**body, "auth":
                                                                tokens.access_token},
                                            idempotent=idempotent, landed=landed),
            expired=lambda exc: isinstance(exc, TokenExpired))

    def batch(self, commands: Sequence[tuple[str, Mapping[str, Any]]], *,
              idempotent: bool = True, names: Sequence[str] | None = None) -> BatchResult:
        """Up to 50 sub-calls in one request; ``names`` default to ``c0``, ``c1``...

        A parameter value may reference an earlier command's result (``$result[c0][49][ID]``).
        """
        if len(commands) > MAX_BATCH:
            message = f"a Bitrix24 batch holds at most {MAX_BATCH} calls, got {len(commands)}"
            raise ValueError(message)
        keys = list(names) if names is not None else [f"c{i}" for i in range(len(commands))]
        cmd = {name: f"{method}?{php_query(params)}"
               for name, (method, params) in zip(keys, commands, strict=True)}
        landed = None if idempotent else self._todo_read_back(keys, commands)
        result = self.call("batch", {"halt": 0, "cmd": cmd}, idempotent=idempotent,
                           landed=landed)
        if not isinstance(result, dict):
            message = f"bitrix24 batch: expected an object in 'result', got {type(result).__name__}"
            raise BadPayloadError(message)
        out = BatchResult()
        results = result.get("result") or {}
        errors = result.get("result_error") or {}
        if isinstance(results, list):  # PHP serialises an empty map as []
            results = {}
        if isinstance(errors, list):
            errors = {}
        for name in keys:
            if name in errors:
                error = errors[name]
                if isinstance(error, dict):
                    text = f"{error.get('error', '')}: {error.get('error_description', '')}"
                else:
                    text = str(error)
                out.errors[name] = redact(text.strip(": "))
            elif name in results:
                out.results[name] = results[name]
        out.totals = result.get("result_total") or {}
        return out

    # --- creates found again after weather ------------------------------------------------
    def _todo_read_back(self, names: Sequence[str],
                        commands: Sequence[tuple[str, Mapping[str, Any]]],
                        ) -> Callable[[], Any] | None:
        """For a batch of marker-carrying to-do creates: find them after weather."""
        wanted: dict[str, tuple[str, str]] = {}
        for name, (method, params) in zip(names, commands, strict=True):
            marker = MARKER.search(str(params.get("description") or ""))
            owner = str(params.get("ownerId") or "")
            if method != TODO_ADD or marker is None or not owner.isdigit():
                return None
            wanted[name] = (owner, f"[{marker.group(1)}]")
        by_name = dict(zip(names, commands, strict=True))

        def landed() -> Any:
            found = self._find_todos(wanted)
            if not found:
                return None  # nothing landed: the batch is sent again as it was
            results: dict[str, Any] = {name: {"id": crm_id} for name, crm_id in found.items()}
            errors: dict[str, Any] = {}
            missing = [name for name in names if name not in found]
            if missing:
                again = self.batch([by_name[n] for n in missing], idempotent=False,
                                   names=missing)
                results.update(again.results)
                errors.update({n: {"error": "", "error_description": text}
                               for n, text in again.errors.items()})
            log.info("bitrix24: %d of %d to-dos were found after a lost answer; %d re-sent",
                     len(found), len(names), len(missing))
            return {"result": {"result": results, "result_error": errors}}

        return landed

    def _find_todos(self, wanted: Mapping[str, tuple[str, str]]) -> dict[str, str]:
        """``command name -> activity id`` of the to-dos in ``wanted`` that exist."""
        found: dict[str, str] = {}
        for owner, row in self.todos_of_deals(owner for owner, _ in wanted.values()):
            text = str(row.get("DESCRIPTION") or "")
            for name, (wanted_owner, marker) in wanted.items():
                if wanted_owner == owner and name not in found and marker in text:
                    found[name] = str(row.get("ID"))
        return found

    def todos_of_deals(self, deals: Iterable[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """``(deal id, row)`` of every to-do of ``deals``: one ``crm.activity.list`` per
        deal, 50 to a ``batch`` request."""
        owners = list(dict.fromkeys(deals))
        for first in range(0, len(owners), MAX_BATCH):
            chunk = owners[first: first + MAX_BATCH]
            answer = self.batch([("crm.activity.list", {
                "filter": {"OWNER_TYPE_ID": DEAL_OWNER_TYPE, "OWNER_ID": owner,
                           "PROVIDER_ID": "CRM_TODO"},
                "select": ["ID", "SUBJECT", "DESCRIPTION"], "order": {"ID": "DESC"},
                "start": -1}) for owner in chunk])
            for i, owner in enumerate(chunk):
                rows = answer.results.get(f"c{i}")
                if not isinstance(rows, list):
                    message = (f"bitrix24: listing the to-dos of deal {owner} failed:"
                               f" {answer.errors.get(f'c{i}', 'no rows')}")
                    raise BadPayloadError(message)
                yield from ((owner, row) for row in rows if isinstance(row, Mapping))

    def _userfield_read_back(self, method: str, body: Mapping[str, Any],
                             ) -> Callable[[], Any] | None:
        match = _USERFIELD_ADD.fullmatch(method)
        fields = body.get("fields")
        if match is None or not isinstance(fields, Mapping) or not fields.get("FIELD_NAME"):
            return None
        code = str(fields["FIELD_NAME"])
        code = code if code.startswith("UF_CRM_") else f"UF_CRM_{code}"

        def landed() -> Any:  # crm.{entity}.fields lists every field, UF_* included
            described = self.call(f"crm.{match.group(1)}.fields")
            if isinstance(described, Mapping) and code in described:
                return {"result": code}
            return None

        return landed

    # --- OAuth (the flow is ``syncd.oauth_flow``'s) ------------------------------------
    def _token_endpoint(self) -> ApiClient:
        """The OAuth server's own client (no portal bucket; made on first use)."""
        if self._oauth_api is None:
            self._oauth_api = ApiClient(self.settings.oauth_url, auth_headers={},
                                        timeout=(10, 30), sleep=self._sleep)
        return self._oauth_api

    def _post_grant(self, grant: dict[str, str]) -> Any:
        """One grant to the OAuth server: the app's keys and the grant in the query."""
        query = {**grant, "client_id": self.settings.client_id,
                 "client_secret": self.settings.client_secret}
        return self._token_endpoint().request("POST", self.settings.oauth_url, params=query,
                                              idempotent=True)

    def close(self) -> None:
        super().close()
        if self._oauth_api is not None:
            self._oauth_api.close()
