"""The ``connection:`` block of a Bitrix24 tenant file."""

from __future__ import annotations

from typing import ClassVar, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from syncd.connector import ConnectionSettings

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Where Bitrix24 issues and renews OAuth tokens (cloud portals and on-premise alike).
OAUTH_URL = "https://oauth.bitrix.info/oauth/token/"


def _check_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        message = f"{what} must look like https://yourcompany.bitrix24.com"
        raise ValueError(message)
    if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        message = f"{what} must use https (plain http only for a local fake)"
        raise ValueError(message)
    if parts.query or parts.fragment:
        message = f"{what} must not carry a query string"
        raise ValueError(message)
    return value


class Bitrix24Settings(ConnectionSettings):
    """How to reach one Bitrix24 portal: an inbound webhook or an OAuth application.

    * webhook: ``webhook_url`` is the whole ``https://portal/rest/{user}/{code}/`` URL (the
      code in its path is the secret, so the URL comes from ``$env``/``$file``);
    * OAuth: ``client_id`` + ``client_secret`` + a seed (``refresh_token`` or a fresh
      ``auth_code``); the rotating token pair lives encrypted in the database.

    ``bucket_burst``/``bucket_rate`` are the portal's leaky bucket (50 and 2/s by default;
    250 and 5/s on Enterprise plans).
    """

    secret_keys: ClassVar[tuple[str, ...]] = (
        "webhook_url", "client_secret", "refresh_token", "auth_code")

    webhook_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    auth_code: str | None = None
    oauth_url: str = OAUTH_URL
    #: The portal's leaky bucket: block above ``bucket_burst``, drains ``bucket_rate``/s.
    bucket_burst: int = Field(default=50, ge=1, le=10_000)
    bucket_rate: float = Field(default=2.0, gt=0, le=1000)
    #: Sub-calls per ``batch`` request (Bitrix24's maximum is 50).
    batch_size: int = Field(default=50, ge=1, le=50)
    #: Read timeout of one request, seconds: Bitrix24 kills requests at 60 s.
    timeout_seconds: float = Field(default=55, gt=0, lt=60)
    #: A deal field (label or ``UF_CRM_*`` code) holding the loss reason; when empty the
    #: reason is the failure stage's name.
    loss_reason_field: str | None = None
    #: Read every written record back in the same batch (49 updates + 1 read per request).
    #: False: 50 updates per request, and the next pull is the read-back.
    verify_writes: bool = True
    #: Stage history rows older than this many days are not read on a full pull; 0: never.
    history_days: int = Field(default=730, ge=0)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        value = value.removesuffix("/rest")
        return _check_url(value, "base_url")

    @field_validator("webhook_url", "oauth_url")
    @classmethod
    def _check_other_urls(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        _check_url(value, "the URL")
        return value

    @model_validator(mode="after")
    def _one_auth_mode(self) -> Self:
        oauth = any((self.client_id, self.client_secret, self.refresh_token, self.auth_code))
        if self.webhook_url and oauth:
            message = "give either webhook_url or the OAuth keys (client_id, ...), not both"
            raise ValueError(message)
        if self.webhook_url:
            if "/rest/" not in self.webhook_url:
                message = "webhook_url must look like https://portal/rest/<user id>/<code>/"
                raise ValueError(message)
            return self
        if not (self.client_id and self.client_secret):
            message = ("set webhook_url, or client_id and client_secret (with refresh_token"
                       " or auth_code) for an OAuth application")
            raise ValueError(message)
        if not (self.refresh_token or self.auth_code):
            message = "an OAuth application needs refresh_token or auth_code to start from"
            raise ValueError(message)
        return self

    @property
    def uses_oauth(self) -> bool:
        return self.webhook_url is None

    @property
    def seed_grant(self) -> tuple[str, str | None]:
        """The seed's OAuth grant type and value (``syncd.oauth_flow.OAuthFlow``)."""
        if self.refresh_token:
            return "refresh_token", self.refresh_token
        return "authorization_code", self.auth_code
