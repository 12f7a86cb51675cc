"""One tenant's OAuth 2 access token over a pass: the client flow every OAuth plugin shares.

``syncd.oauth.TokenStore`` keeps the pair safe across processes; ``OAuthFlow`` is what a
plugin's client does with it, written once (amoCRM and Bitrix24 use it):

* the first request exchanges the tenant file's *seed* (an authorization code or a
  refresh token) once per seed, through ``TokenStore.load``; a refused seed says what to
  do (authorize again and put the new seed in the tenant file);
* a token that expires within ``margin`` is refreshed before the request; a token that a
  refresh just issued is used until it expires even when it lives shorter than the margin
  (else every request would refresh it);
* a request the provider answers with "this token expired" (the plugin says which
  ``AuthError`` that is) refreshes once and is sent once more;
* the exchange is retried on weather by ``syncd.http`` (the plugin's ``ApiClient``). A
  refusal (HTTP 400/401/403, or an ``error`` code the plugin declares refusing, in a 200
  answer) becomes ``RefreshRejected``; when an earlier answer of the same exchange was
  lost, the message says the pair was most likely rotated in that lost answer (see
  ``syncd.oauth``, point 5).

What stays the plugin's: how a grant is sent (``post(grant)``: its token path, its
client fields, JSON body or query), which answers mean "expired", which ``error`` codes
refuse a grant, an answer's default lifetime, and how the access token travels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any, TypeVar

from syncd.errors import AuthError, BadPayloadError, BlockedError, FatalAPIError
from syncd.http import ApiClient
from syncd.oauth import RefreshRejected, TokenSet, TokenStore
from syncd.secrets import redact, register

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses of a token endpoint that mean "this code / refresh token is refused".
REFUSED_STATUSES = frozenset({400, 401, 403})
LOST_ANSWER = (" (after an earlier answer of the token endpoint was lost: {provider} most"
               " likely issued a new pair in that lost answer and revoked this one; the new"
               " pair never reached syncd)")


class OAuthFlow:
    """The access token of one tenant's client, seeded, refreshed and renewed on demand.

    :param provider: the provider's name in messages (``amoCRM``, ``Bitrix24``).
    :param store: the tenant's ``TokenStore`` (read lazily: the core lends it after the
        connector is built); ``None``: no database, a clear ``AuthError``.
    :param seed: ``(grant_type, value)`` of the tenant file's seed: ``("authorization_code",
        code)`` or ``("refresh_token", token)``.
    :param post: sends one grant (``{"grant_type": ..., "code" | "refresh_token": ...}``)
        to the token endpoint and returns the parsed answer; raises what ``ApiClient``
        raises.
    :param api: the ``ApiClient`` ``post`` goes through (its retry count tells a lost
        answer).
    :param refusing_codes: ``error`` codes of a 200 answer that refuse the grant.
    :param default_expires_in: seconds an answer without ``expires_in`` lives; ``None``: it
        does not expire.
    :param code_lifetime: how long the provider's authorization codes live, for the
        message of a refused seed (``about 20 minutes``).
    :param without_store: what else the tenant could use (``, or use a long_lived_token``).
    """

    def __init__(self, *, provider: str, tenant: str, store: Callable[[], TokenStore | None],
                 seed: tuple[str, str | None], post: Callable[[dict[str, str]], Any],
                 api: Callable[[], ApiClient], margin: timedelta, now: Callable[[], datetime],
                 refusing_codes: Collection[str] = (), default_expires_in: float | None = None,
                 code_lifetime: str = "minutes", without_store: str = "") -> None:
        self.provider = provider
        self.tenant = tenant
        self._store_of = store
        self.seed = seed
        self._post = post
        self._api = api
        self.margin = margin
        self._now = now
        self.refusing_codes = frozenset(refusing_codes)
        self.default_expires_in = default_expires_in
        self.code_lifetime = code_lifetime
        self.without_store = without_store
        self._tokens: TokenSet | None = None
        self._renewed: str | None = None  # the access token a refresh of ours issued

    # --- the token to send ------------------------------------------------------------------
    def current(self) -> TokenSet:
        """The pair to use now: seeded on first use, refreshed first when about to expire."""
        if self._tokens is None:
            self._tokens = self._store().load(self.seed[1], self._exchange_seed)
        margin = timedelta(0) if self._tokens.access_token == self._renewed else self.margin
        if self._tokens.expires_within(margin, self._now()):
            return self.renew(self._tokens)
        return self._tokens

    def renew(self, used: TokenSet) -> TokenSet:
        """Refresh ``used`` (expired or rejected) once across every process."""
        self._tokens = self._store().refresh(used, self._exchange_refresh)
        self._renewed = self._tokens.access_token
        return self._tokens

    def call(self, send: Callable[[TokenSet], T], *, expired: Callable[[AuthError], bool]) -> T:
        """``send(tokens)``; when it raises an ``AuthError`` that ``expired`` says is an
        expired or rejected access token, refresh once and send once more."""
        tokens = self.current()
        try:
            return send(tokens)
        except AuthError as exc:
            if not expired(exc):
                raise
            log.info("%s rejected the access token of tenant %s; refreshing it once",
                     self.provider, self.tenant)
        return send(self.renew(tokens))

    # --- the token endpoint -----------------------------------------------------------------
    def _store(self) -> TokenStore:
        store = self._store_of()
        if store is None:
            message = (f"tenant {self.tenant}: {self.provider} OAuth needs the database token"
                       " store (run through `syncd sync`/`syncd inspect` with a database)"
                       f"{self.without_store}")
            raise AuthError(message)
        return store

    def _exchange_seed(self) -> TokenSet:
        """Start the token chain from the tenant file's seed (once per seed)."""
        kind, value = self.seed[0], self.seed[1] or ""
        field = "code" if kind == "authorization_code" else "refresh_token"
        try:
            return self.exchange({"grant_type": kind, field: value})
        except RefreshRejected as exc:
            message = (f"tenant {self.tenant}: {exc}. The tenant file's {kind} is not (or no"
                       f" longer) valid: authorization codes live {self.code_lifetime} and"
                       " work once, refresh tokens work once. To reconnect, authorize the"
                       " integration again and put the new authorization code (or refresh"
                       " token) in the tenant file's connection (from $env or $file).")
            raise AuthError(message, status=exc.status, url=exc.url) from None

    def _exchange_refresh(self, stored: TokenSet) -> TokenSet:
        if not stored.refresh_token:
            message = "no refresh token is stored"
            raise RefreshRejected(message)
        return self.exchange({"grant_type": "refresh_token",
                              "refresh_token": stored.refresh_token})

    def exchange(self, grant: dict[str, str]) -> TokenSet:
        """One grant at the token endpoint, retried on weather (see the module doc)."""
        api = self._api()
        retries_before = api.retries

        def refused(detail: str) -> str:
            lost = LOST_ANSWER.format(provider=self.provider) \
                if api.retries > retries_before else ""
            return redact(f"{self.provider} refused the {grant['grant_type']} grant:"
                          f" {detail}") + lost

        try:
            answer = self._post(grant)
        except FatalAPIError as exc:
            if isinstance(exc, BlockedError) or exc.status not in REFUSED_STATUSES:
                raise
            raise RefreshRejected(refused(str(exc)), status=exc.status, url=exc.url) from None
        code = answer.get("error") if isinstance(answer, dict) else None
        if code is not None and str(code) in self.refusing_codes:
            raise RefreshRejected(refused(str(code)))
        return self.token_set(answer)

    def token_set(self, answer: Any) -> TokenSet:
        """The pair in a token endpoint's answer (``access_token``, ``refresh_token``,
        ``expires_in`` in seconds, as RFC 6749 section 5.1 names them)."""
        if not isinstance(answer, dict) or answer.get("error") or not answer.get("access_token"):
            message = f"{self.provider} token endpoint: no access_token in the answer"
            raise BadPayloadError(message)
        access, refresh = str(answer["access_token"]), answer.get("refresh_token")
        register(access)
        if refresh:
            register(str(refresh))
        now = self._now()
        default = self.default_expires_in or 0.0
        try:
            lifetime = float(answer.get("expires_in") or default)
        except (TypeError, ValueError):
            lifetime = default
        expires_at = now + timedelta(seconds=lifetime) if lifetime > 0 else None
        return TokenSet(access, str(refresh) if refresh else None, expires_at)


__all__ = ["REFUSED_STATUSES", "OAuthFlow"]
