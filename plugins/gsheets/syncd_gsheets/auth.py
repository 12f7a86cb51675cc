"""Service-account credentials (google-auth): the key, its e-mail, a fresh bearer token.

The key is the JSON key file's content (the tenant file says ``credentials: {$file:
key.json}``). The token is obtained the documented way, a JWT signed with the key and
exchanged at the key's ``token_uri`` (google-auth does the signing and the exchange; tests
point ``token_uri`` at the local fake). The private key and every token are registered as
secrets, so they never reach a log, an error or the database.

The JWT-bearer exchange is idempotent (each assertion is new; no token rotates), so weather
at the token endpoint -- a 5xx, a 429, an HTML page or a cut body under 200, a dropped
connection -- is retried like a GET (``syncd.http.MAX_ATTEMPTS`` attempts, the same
backoff). google-auth's own retry (real sleeps, 5xx and 429 only) is bypassed: the
transport below turns weather into ``TransportError`` before google-auth sees it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests
from google.auth.exceptions import GoogleAuthError, RefreshError, TransportError
from google.auth.transport.requests import Request
from google.oauth2 import service_account

from syncd.errors import AuthError, ConfigError, ConfigProblem, RetriableAPIError
from syncd.http import MAX_ATTEMPTS, pause_before_retry
from syncd.secrets import redact, register

SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
READONLY_SCOPES = ("https://www.googleapis.com/auth/spreadsheets.readonly",)
_REQUIRED_KEYS = ("client_email", "private_key", "token_uri")


def parse_key(key_json: str, *, where: str = "credentials") -> dict[str, Any]:
    """The key file's JSON, checked to be a service-account key (clear errors otherwise)."""
    try:
        info = json.loads(key_json)
    except json.JSONDecodeError as exc:
        message = (f"not a JSON service-account key file (JSON error at line {exc.lineno}); "
                   "download one in Google Cloud console > IAM > Service accounts > Keys")
        raise ConfigError(ConfigProblem("", where, message)) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        kind = info.get("type") if isinstance(info, dict) else type(info).__name__
        message = f"expected a service-account key (type: service_account), got type {kind!r}"
        raise ConfigError(ConfigProblem("", where, message))
    missing = [k for k in _REQUIRED_KEYS if not info.get(k)]
    if missing:
        message = f"the service-account key lacks {', '.join(missing)}"
        raise ConfigError(ConfigProblem("", where, message))
    register(str(info["private_key"]))
    if info.get("private_key_id"):
        register(str(info["private_key_id"]))
    return info


class _WeatherAwareRequest(Request):
    """google-auth's transport, raising ``TransportError`` on weather (see the module doc)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        response = super().__call__(*args, **kwargs)
        status = response.status
        body = response.data or b""
        weather = status == 429 or (status >= 500 and status not in {501, 505})
        if status == 200:
            try:
                weather = not isinstance(json.loads(body), dict)
            except ValueError:
                weather = True  # an HTML page or a cut body
        if weather:
            snippet = " ".join(body[:200].decode("utf-8", "replace").split())[:100]
            message = f"token endpoint answered HTTP {status}: {snippet}"
            raise TransportError(message)
        return response


class ServiceAccount:
    """One service account: its e-mail (the quota's "user") and its bearer tokens."""

    def __init__(self, key_json: str, *, scopes: tuple[str, ...] = SCOPES,
                 where: str = "credentials",
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        info = parse_key(key_json, where=where)
        self.email = str(info["client_email"])
        self.token_uri = str(info["token_uri"])
        try:
            self.credentials = service_account.Credentials.from_service_account_info(
                info, scopes=list(scopes))
        except (ValueError, GoogleAuthError) as exc:
            message = f"the service-account key of {self.email} cannot be used: {exc}"
            raise ConfigError(ConfigProblem("", where, redact(message))) from None

    def token(self, session: requests.Session) -> str:
        """A valid access token, refreshed (JWT exchange) when missing or about to expire."""
        attempt = 0
        while not self.credentials.valid:
            attempt += 1
            try:
                self.credentials.refresh(_WeatherAwareRequest(session))
            except TransportError as exc:
                if attempt < MAX_ATTEMPTS:
                    pause_before_retry(attempt, self._sleep)
                    continue
                message = (f"service account {self.email}: token endpoint {self.token_uri} "
                           f"failed {attempt} times: {exc}")
                raise RetriableAPIError(redact(message), url=self.token_uri) from None
            except RefreshError as exc:
                message = (f"service account {self.email}: the token request was refused by "
                           f"{self.token_uri}: {exc} (a deleted or disabled key?)")
                raise AuthError(redact(message), url=self.token_uri) from None
            register(str(self.credentials.token))
        return str(self.credentials.token)
