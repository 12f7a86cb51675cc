"""The one HTTP policy every connector uses: classification, retries, rate limit, redaction.

Why one place: retrying at several layers multiplies attempts, and every CRM answers
trouble differently (HTML block pages, 204 with no body, truncated JSON). A connector
builds one ``ApiClient`` and never sleeps or retries by itself.

* ``classify(response)`` is the single, table-driven decision "is this response usable,
  and if not, what kind of failure is it". Connectors extend it by passing their own
  ``classify`` callable (which usually handles its vendor cases, then defers to this one).
* Retries (tenacity, bounded: ``max_attempts`` = 8 attempts per request): ``RateLimitedError``
  for every method (a 429 is rejected before processing). "Weather" -- 5xx answers (JSON or
  HTML), an HTML page or an unreadable (truncated, undecodable) body under a 2xx status
  (``GarbledResponseError``), and transport errors -- is retried for idempotent requests.
  A non-idempotent request (a create) that meets weather may have been applied: it is
  retried only when the caller passes ``landed``, a read-back that looks for the write
  (by marker, by name) and returns its result when it did land -- then that result is
  the request's answer and nothing is sent again -- or ``None`` when it provably did not.
  A connection that was never made (refused, connect timeout) is retried for every
  method: nothing reached the server. The wait is the server's ``Retry-After`` (capped at
  ``max_wait``) when it gives one, else full-jitter exponential backoff (base 1 s, cap 30 s).
* Every message goes through ``syncd.secrets.redact``; credentials travel in headers only.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)
from urllib3.exceptions import NameResolutionError, NewConnectionError

from syncd.errors import (
    APIError,
    AuthError,
    BadPayloadError,
    BlockedError,
    FatalAPIError,
    RateLimitedError,
    RetriableAPIError,
)
from syncd.ratelimit import Limiter
from syncd.secrets import redact
from syncd.version import __version__
from syncd.writeguard import write_guard

log = logging.getLogger(__name__)

Classifier = Callable[[requests.Response], APIError | None]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: How much of an unexpected body is quoted in an error message.
SNIPPET_CHARS = 100
#: Backoff when the server gives no Retry-After: full jitter, base 1 s, cap 30 s.
BACKOFF_BASE = 1.0
BACKOFF_CAP = 30.0
#: Attempts per request (the first one included). At a 20% independent fault rate a
#: request fails all 8 with probability 0.2**8 = 2.6e-6.
MAX_ATTEMPTS = 8

_UNSET: Any = object()
#: Failures of the transport itself (nothing usable came back).
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class TransportError(RetriableAPIError):
    """The request did not complete (connection refused/reset, timeout). ``sent`` is False
    when it provably never left (no connection was made): safe to repeat for any method."""

    sent: bool = True


def _never_sent(exc: BaseException) -> bool:
    """A connect timeout or a refused/unresolvable connection: nothing reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError | NameResolutionError)


class GarbledResponseError(BadPayloadError):
    """A 2xx answer whose body is not the JSON it should be: an HTML maintenance or proxy
    page served with 200, a truncated or undecodable body. Weather, not a contract
    violation: retried like a 5xx for idempotent requests (a ``BadPayloadError`` still, so
    callers that handle unreadable answers keep doing so when the retries run out)."""


# --- classification ----------------------------------------------------------------------
#: Statuses decided by status alone, whatever the body says.
_BY_STATUS: dict[int, type[APIError]] = {
    401: AuthError,
    429: RateLimitedError,
}
#: 5xx statuses that are not weather (the server says it will never do this).
_PERMANENT_5XX = frozenset({501, 505})
#: An HTML page instead of JSON: a block page, a proxy error page, or a broken endpoint.
_HTML_BY_STATUS: dict[int, type[APIError]] = {403: BlockedError}


def json_body(response: requests.Response) -> Any:
    """The parsed JSON body (None when empty), decoded once and memoized on the response.

    Raises ``ValueError`` when the body is not JSON.
    """
    cached = response.__dict__.get("_syncd_json", _UNSET)
    if cached is _UNSET:
        content = response.content or b""
        cached = json.loads(content) if content.strip() else None
        response.__dict__["_syncd_json"] = cached
    return cached


def body_snippet(response: requests.Response, limit: int = SNIPPET_CHARS) -> str:
    """The start of the body, on one line and redacted, for error messages."""
    text = (response.content or b"")[: limit * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())[:limit]
    return redact(text)


def is_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type:
        return True
    return (response.content or b"").lstrip()[:1] == b"<"


def retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``Retry-After`` (seconds or HTTP date), else
    ``x-ratelimit-reset`` (seconds); None when neither is usable."""
    value = headers.get("Retry-After")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            try:
                when = parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(when - (time.time() if now is None else now), 0.0)
    value = headers.get("x-ratelimit-reset")
    if value:
        try:
            return max(float(value), 0.0)
        except ValueError:
            return None
    return None


def _describe(response: requests.Response) -> str:
    """``METHOD url: HTTP nnn``, redacted."""
    method = response.request.method if response.request is not None else "?"
    return redact(f"{method} {response.url}: HTTP {response.status_code}")


def _error_text(response: requests.Response) -> str:
    """The API's own error message when the body is JSON, else the body's start."""
    try:
        payload = json_body(response)
    except ValueError:
        return body_snippet(response)
    if isinstance(payload, dict):
        for key in ("error", "message", "detail", "error_description"):
            if payload.get(key):
                return redact(" ".join(str(payload[key]).split())[: SNIPPET_CHARS * 2])
    return body_snippet(response)


def classify(response: requests.Response) -> APIError | None:
    """None when the response carries usable JSON (or nothing: 204/empty 2xx); otherwise
    the exception describing the failure. Never raises."""
    status = response.status_code
    where = _describe(response)
    kind = _BY_STATUS.get(status)
    if kind is RateLimitedError:
        return RateLimitedError(
            f"{where}: rate limited: {_error_text(response)}", status=status,
            url=redact(response.url), retry_after=retry_after(response.headers),
        )
    if kind is not None:
        return kind(f"{where}: {_error_text(response)}", status=status, url=redact(response.url))
    empty = not (response.content or b"").strip()
    if 200 <= status < 300 and (status == 204 or empty):
        return None
    if not empty and is_html(response):
        html_kind = _HTML_BY_STATUS.get(status)
        if html_kind is None:
            if _is_weather_status(status):
                html_kind = RetriableAPIError
            elif 200 <= status < 300:
                html_kind = GarbledResponseError  # a maintenance page served with 200
            else:
                html_kind = BadPayloadError
        return html_kind(
            f"{where}: HTML instead of JSON: {body_snippet(response)}",
            status=status, url=redact(response.url),
            **({"retry_after": _server_retry_after(response)}
               if html_kind is RetriableAPIError else {}),
        )
    if _is_weather_status(status):
        return RetriableAPIError(
            f"{where}: {_error_text(response)}", status=status, url=redact(response.url),
            retry_after=_server_retry_after(response),
        )
    if status >= 400:
        return FatalAPIError(
            f"{where}: {_error_text(response)}", status=status, url=redact(response.url),
        )
    if status >= 300:
        return BadPayloadError(f"{where}: unexpected redirect", status=status,
                               url=redact(response.url))
    try:
        json_body(response)
    except ValueError:
        return GarbledResponseError(
            f"{where}: not valid JSON (truncated?): {body_snippet(response)}",
            status=status, url=redact(response.url),
        )
    return None


def _server_retry_after(response: requests.Response) -> float | None:
    """A 5xx's own ``Retry-After`` (a maintenance window's end); rate-limit counters such
    as ``x-ratelimit-reset`` say nothing about an outage."""
    value = response.headers.get("Retry-After")
    return retry_after({"Retry-After": value}) if value else None


def _is_weather_status(status: int) -> bool:
    return status >= 500 and status not in _PERMANENT_5XX


#: The classifier connectors wrap when they extend classification.
default_classify = classify


# --- retry policy ------------------------------------------------------------------------
def is_weather(error: BaseException) -> bool:
    """A failure another attempt may fix, but after which the request may have been
    applied: 5xx, an unreadable 2xx body, a transport error (not a 429)."""
    if isinstance(error, RateLimitedError):
        return False
    return isinstance(error, RetriableAPIError | GarbledResponseError)


def should_retry(error: BaseException, *, idempotent: bool) -> bool:
    """429 always (it was not processed); weather only when repeating the request cannot
    apply it twice: an idempotent request, or one whose ``landed`` check proved it absent."""
    if isinstance(error, RateLimitedError):
        return True
    if isinstance(error, TransportError) and not error.sent:
        return True
    if not is_weather(error):
        return False
    return idempotent or bool(getattr(error, _NOT_LANDED, False))


#: Set on a weather error of a non-idempotent request whose ``landed`` check found nothing.
_NOT_LANDED = "syncd_not_landed"


#: Test and benchmark hook: when set, every retry wait is handed to this callable instead
#: of the client's own ``sleep`` (tests set a recorder, the weather benchmark a no-op, so
#: nobody really waits out a backoff). Not a setting: production code never sets it.
retry_sleeper: Callable[[float], None] | None = None
#: For tests that run ``syncd`` as a subprocess (no hook reaches it): every retry wait is
#: multiplied by this variable's value (``0``: no waiting). Unset in production.
RETRY_WAIT_SCALE_ENV = "SYNCD_RETRY_WAIT_SCALE"


def _sleep_before_retry(seconds: float, sleep: Callable[[float], None]) -> None:
    if retry_sleeper is not None:
        retry_sleeper(seconds)
        return
    scale = os.environ.get(RETRY_WAIT_SCALE_ENV)
    if scale:
        try:
            seconds *= max(float(scale), 0.0)
        except ValueError:
            log.warning("%s=%r is not a number; ignored", RETRY_WAIT_SCALE_ENV, scale)
    sleep(seconds)


def pause_before_retry(attempt: int, sleep: Callable[[float], None] = time.sleep) -> None:
    """Wait the backoff due after failed attempt number ``attempt`` (full jitter, base
    ``BACKOFF_BASE``, cap ``BACKOFF_CAP``), through the ``retry_sleeper`` hook when set:
    for the few callers that cannot go through ``ApiClient`` (google-auth's token call)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
    _sleep_before_retry(random.uniform(0, ceiling), sleep)


class _Wait:
    """Server-given delay when present (capped), else full-jitter exponential backoff."""

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait
        self._backoff = wait_random_exponential(multiplier=BACKOFF_BASE, max=BACKOFF_CAP)

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        given = getattr(error, "retry_after", None)
        if given is not None:
            return min(float(given), self.max_wait)
        return min(self._backoff(state), self.max_wait)


#: Called with the status code of every response received in the current context (0 for a
#: transport failure). The daemon sets it per tenant pass to count API calls and 429s.
response_observer: ContextVar[Callable[[int], None] | None] = ContextVar(
    "syncd_response_observer", default=None)


# --- the client ----------------------------------------------------------------------------
class ApiClient:
    """One ``requests.Session`` with the syncd policy; returns parsed JSON."""

    def __init__(
        self,
        base_url: str,
        *,
        auth_headers: Mapping[str, str],
        limiter: Limiter | None = None,
        timeout: tuple[float, float] = (10, 60),
        max_attempts: int = MAX_ATTEMPTS,
        max_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        on_request: Callable[[int], None] | None = None,
        user_agent: str = f"syncd/{__version__}",
        classify: Classifier | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.on_request = on_request
        self._sleep = sleep
        self._classify: Classifier = classify or default_classify
        self.session = session or requests.Session()
        self.session.headers.update({
            "User-Agent": user_agent,
            "Accept": "application/json",
            **auth_headers,
        })
        self.requests_made = 0
        self._thread = threading.local()  # requests made by each thread (``requests_here``)
        self.rate_limited = 0
        self.retries = 0  # attempts after a failed one (every request, every reason)
        self.recovered_writes = 0  # non-idempotent requests found applied by ``landed``

    @property
    def requests_here(self) -> int:
        """Requests made so far by the calling thread (a page read ahead by another thread
        is counted there: ``syncd.streams.prefetched``)."""
        return int(getattr(self._thread, "count", 0))

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotent: bool | None = None,
        landed: Callable[[], Any] | None = None,
    ) -> Any:
        """Send with retries; return the parsed JSON body (None for 204/empty).

        ``idempotent`` overrides the method's default (e.g. True for a PATCH setting an
        absolute value). ``landed`` (non-idempotent requests only) is called after weather
        to find out whether the request was applied anyway: it returns the answer to use
        (nothing is sent again) or ``None`` when the write provably did not land (then the
        request is retried). Raises an ``APIError`` subclass with a redacted message.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        url = self.url(path_or_url)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=_Wait(self.max_wait),
            retry=retry_if_exception(lambda exc: should_retry(exc, idempotent=idempotent)),
            sleep=self._wait,
            reraise=True,
            before_sleep=_log_retry,
        )
        check = None if idempotent else landed
        return retrying(self._checked_attempt, method, url, params, json, check)

    def _wait(self, seconds: float) -> None:
        self.retries += 1
        _sleep_before_retry(seconds, self._sleep)

    def _checked_attempt(self, method: str, url: str, params: Mapping[str, Any] | None,
                         body: Any, landed: Callable[[], Any] | None) -> Any:
        try:
            return self._attempt(method, url, params, body)
        except APIError as exc:
            if landed is None or not is_weather(exc) or not getattr(exc, "sent", True):
                raise
            log.warning("%s; looking whether the write landed before sending it again",
                        redact(str(exc)))
            found = landed()
            if found is not None:
                self.recovered_writes += 1
                return found
            setattr(exc, _NOT_LANDED, True)
            raise

    def get(self, path_or_url: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path_or_url, params=params)

    def _attempt(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any,
    ) -> Any:
        guard = write_guard.get()
        if guard is not None:
            guard()
        slot = self.limiter.acquire() if self.limiter is not None else None
        self.requests_made += 1
        self._thread.count = getattr(self._thread, "count", 0) + 1
        if self.on_request is not None:
            self.on_request(1)
        try:
            response = self.session.request(
                method, url, params=params, json=body, timeout=self.timeout,
            )
        except _TRANSPORT_ERRORS as exc:
            _observe(0)
            kind = type(exc).__name__
            message = redact(f"{method} {url}: {kind}: {exc}")
            error = TransportError(message, url=redact(url))
            error.sent = not _never_sent(exc)
            raise error from exc
        finally:
            if slot is not None and self.limiter is not None:
                self.limiter.release(slot)
        if self.limiter is not None:
            self.limiter.observe(response.headers)
        _observe(response.status_code)
        rejection = self._classify(response)
        if rejection is not None:
            if response.status_code == 429:
                self.rate_limited += 1
            raise rejection
        return json_body(response)

    def close(self) -> None:
        self.session.close()


def _observe(status: int) -> None:
    observer = response_observer.get()
    if observer is not None:
        observer(status)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "attempt %d failed (%s); retrying in %.1f s",
        state.attempt_number, redact(str(error)), wait,
    )
