"""The ``connection:`` block of a Pipedrive tenant file."""

from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from syncd.connector import ConnectionSettings

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class PipedriveSettings(ConnectionSettings):
    """How to reach one Pipedrive company account.

    ``base_url`` is the company domain (``https://acme.pipedrive.com``); it stays
    configurable so tests and the demo can point at a local fake. Plain ``http`` is
    accepted only for localhost: the token must never cross a network in clear text.
    """

    secret_keys: ClassVar[tuple[str, ...]] = ("api_token",)

    api_token: str = Field(min_length=1)
    #: Requests per rolling 2-second window for this token (Lite plan api-token: 20).
    burst_limit: int = Field(default=20, ge=1, le=1000)
    #: The burst window, seconds: Pipedrive documents 2; configurable for fakes and changes.
    burst_window: float = Field(default=2.0, gt=0, le=60)
    #: Records per list request (Pipedrive's maximum is 500).
    page_size: int = Field(default=500, ge=1, le=500)
    #: Stage history is read only for changed deals updated within this many days; 0: never.
    history_days: int = Field(default=365, ge=0)
    #: The company's daily API token budget (30,000 x plan multiplier x seats, plus
    #: top-ups; Lite with one seat: 30,000). Shared with every other integration.
    daily_token_budget: int = Field(default=30_000, ge=1)
    #: The share of ``daily_token_budget`` stage history may spend per day (a deal flow
    #: read costs ``FLOW_TOKENS``); the rest is left to the pull, write-back and others.
    history_budget_share: float = Field(default=0.5, ge=0, le=1)
    #: Read timeout of one request, seconds.
    timeout_seconds: float = Field(default=60, gt=0)
    #: Also read ``/api/v2/deals/archived`` (one more request per pass; archived deals are
    #: excluded from the normal deal list since 2025-07-15). On by default: an archived deal
    #: is a real sale (or loss) and counts for karma and the audit like any other.
    include_archived: bool = True

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        for suffix in ("/api/v2", "/api/v1", "/v1"):
            value = value.removesuffix(suffix)
        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            message = "base_url must look like https://yourcompany.pipedrive.com"
            raise ValueError(message)
        if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
            message = "base_url must use https (plain http only for a local fake)"
            raise ValueError(message)
        if parts.query or parts.fragment:
            message = "base_url must not carry a query string (the token goes in a header)"
            raise ValueError(message)
        return value
