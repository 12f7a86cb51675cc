"""The ``connection:`` block of an amoCRM / Kommo tenant file."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from syncd.connector import ConnectionSettings

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Account hosts: amoCRM (Russia), Kommo (international), the legacy amocrm.com.
ACCOUNT_DOMAINS = (".amocrm.ru", ".kommo.com", ".amocrm.com")


class AmoCRMSettings(ConnectionSettings):
    """How to reach one amoCRM or Kommo account.

    ``base_url`` is the account's own host (``https://acme.amocrm.ru`` or
    ``https://acme.kommo.com``); calls never go to the shared www domain. Auth is either a
    private integration's ``long_lived_token``, or OAuth: ``client_id``, ``client_secret``,
    ``redirect_uri`` and a *seed* (``authorization_code`` or ``refresh_token``) that is
    exchanged once; after that the rotating pair lives encrypted in the database
    (``syncd.oauth``), and changing the seed in the file reconnects the tenant.
    """

    secret_keys: ClassVar[tuple[str, ...]] = (
        "long_lived_token", "client_secret", "authorization_code", "refresh_token",
    )

    long_lived_token: str | None = Field(default=None, min_length=1)
    client_id: str | None = Field(default=None, min_length=1)
    client_secret: str | None = Field(default=None, min_length=1)
    redirect_uri: str | None = Field(default=None, min_length=1)
    authorization_code: str | None = Field(default=None, min_length=1)
    refresh_token: str | None = Field(default=None, min_length=1)
    #: Requests per second for this integration (amoCRM documents 7).
    rate_limit: int = Field(default=7, ge=1, le=50)
    #: The limiter's window, seconds (1 for amoCRM; configurable for fakes).
    rate_window: float = Field(default=1.0, gt=0, le=60)
    #: Records per list request (amoCRM's maximum is 250; events are capped at 100).
    page_size: int = Field(default=250, ge=1, le=250)
    #: Entities per batch PATCH/POST (the official library advises at most 50).
    batch_size: int = Field(default=50, ge=1, le=250)
    #: Refresh the OAuth access token when it expires within this many seconds.
    refresh_margin_seconds: int = Field(default=300, ge=0, le=86400)
    #: Read timeout of one request, seconds.
    timeout_seconds: float = Field(default=60, gt=0)
    #: Read written records back (one GET per 250) so our own write is not a change on the
    #: next pull; off: fewer requests, the next pull re-reads them instead.
    reread_after_write: bool = True
    #: Make the custom fields syncd creates API-only (read-only in the amoCRM UI).
    api_only_fields: bool = True

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        for suffix in ("/api/v4", "/api"):
            value = value.removesuffix(suffix)
        parts = urlsplit(value)
        host = parts.hostname or ""
        if parts.scheme not in {"https", "http"} or not host:
            message = "base_url must look like https://yourcompany.amocrm.ru or .kommo.com"
            raise ValueError(message)
        if parts.scheme == "http" and host not in _LOCAL_HOSTS:
            message = "base_url must use https (plain http only for a local fake)"
            raise ValueError(message)
        if parts.query or parts.fragment or parts.path not in {"", "/"}:
            message = "base_url is the account host only (https://yourcompany.amocrm.ru)"
            raise ValueError(message)
        if host not in _LOCAL_HOSTS and (host.startswith("www.")
                                         or not host.endswith(ACCOUNT_DOMAINS)):
            message = ("base_url must be the account's own host: https://SUBDOMAIN.amocrm.ru,"
                       " https://SUBDOMAIN.kommo.com or https://SUBDOMAIN.amocrm.com")
            raise ValueError(message)
        return value

    @model_validator(mode="after")
    def _one_auth_mode(self) -> AmoCRMSettings:
        oauth = (self.client_id, self.client_secret, self.redirect_uri)
        seeds = [s for s in (self.authorization_code, self.refresh_token) if s]
        if self.long_lived_token:
            if any(oauth) or seeds:
                message = ("give either long_lived_token (private integration) or the OAuth"
                           " keys (client_id, client_secret, redirect_uri, seed), not both")
                raise ValueError(message)
            return self
        missing = [name for name, value in zip(("client_id", "client_secret", "redirect_uri"),
                                               oauth, strict=True) if not value]
        if missing:
            message = ("no credentials: give long_lived_token, or OAuth with "
                       + ", ".join(missing) + " and a seed")
            raise ValueError(message)
        if len(seeds) != 1:
            message = ("OAuth needs exactly one seed: authorization_code (from the install"
                       " redirect) or refresh_token")
            raise ValueError(message)
        return self

    @property
    def uses_oauth(self) -> bool:
        return self.long_lived_token is None

    @property
    def seed(self) -> str | None:
        """The credential the tenant file gives to start (or restart) the token chain."""
        return self.authorization_code or self.refresh_token

    @property
    def seed_grant(self) -> tuple[str, str | None]:
        """The seed's OAuth grant type and value (``syncd.oauth_flow.OAuthFlow``)."""
        if self.authorization_code is not None:
            return "authorization_code", self.authorization_code
        return "refresh_token", self.refresh_token
