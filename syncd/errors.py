"""The short error taxonomy of syncd.

::

    SyncdError                      every error syncd raises on purpose
    ├── ConfigError                 bad daemon/tenant/Sales Book file; carries file, key, problem
    ├── PluginError                 a plugin failed to load or registered something twice
    └── APIError                    anything a CRM API did that we did not want
        ├── RetriableAPIError       429, 5xx, garbled 200s, connection errors: worth another try
        │   └── RateLimitedError    429 (carries retry_after seconds)
        ├── FatalAPIError           stop this tenant's pass; nothing more will help now
        │   ├── AuthError           token invalid/expired/revoked (401, dead refresh token)
        │   ├── BlockedError        HTML block page / abuse ban (403 with HTML)
        │   └── BudgetExhaustedError daily budget spent; retry after the CRM's reset
        └── BadPayloadError         the response could not be read (HTML instead of JSON,
                                    truncated JSON, a shape we do not understand)

Rules of use: one classification point per client (``syncd.http``); tenacity retries only
``RetriableAPIError`` and transport errors; every message is built before ``raise`` and never
contains a secret (``syncd.secrets.redact`` is applied to anything echoed from a response).
A ``FatalAPIError`` for one tenant never stops the other tenants.
"""

from __future__ import annotations

from dataclasses import dataclass


class SyncdError(Exception):
    """Base class for every error syncd raises on purpose."""


@dataclass
class ConfigProblem:
    """One problem found in a configuration file."""

    file: str
    key: str
    problem: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.problem}" if where else self.problem

    def say(self, lang: str) -> str:
        """The problem in ``lang`` (a ``syncd.i18n.Text`` is translated; other text as is)."""
        from syncd.i18n import say

        where = ": ".join(part for part in (self.file, self.key) if part)
        problem = say(self.problem, lang)
        return f"{where}: {problem}" if where else problem


class ConfigError(SyncdError):
    """Configuration is invalid; carries every problem found, each with file and key."""

    def __init__(self, problems: list[ConfigProblem] | ConfigProblem | str) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem(file="", key="", problem=problems)]
        elif isinstance(problems, ConfigProblem):
            problems = [problems]
        self.problems = problems
        message = "; ".join(str(p) for p in problems)
        super().__init__(message)


class PluginError(SyncdError):
    """A plugin could not be loaded, or two plugins registered the same name."""


class APIError(SyncdError):
    """A CRM API call failed. ``status`` is the HTTP status when there was a response."""

    def __init__(self, message: str, *, status: int | None = None, url: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class RetriableAPIError(APIError):
    """A failure that another attempt may fix (429, 5xx but 501/505, an HTML or cut body
    under 200, connection errors); see docs/operations.md "API weather"."""

    def __init__(
        self, message: str, *, status: int | None = None, url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, url=url)
        self.retry_after = retry_after


class RateLimitedError(RetriableAPIError):
    """HTTP 429 (or a vendor's equivalent): slow down and try again."""


class FatalAPIError(APIError):
    """Stop this tenant's pass: retrying now will not help."""


class AuthError(FatalAPIError):
    """The credentials were rejected (invalid, expired or revoked token)."""


class BlockedError(FatalAPIError):
    """The CRM (or its CDN) answered with a block page: stop calling it."""


class BudgetExhaustedError(FatalAPIError):
    """A daily request/token budget is spent; calls fail until the CRM's reset."""


class BadPayloadError(APIError):
    """The response body could not be read as the documented JSON."""


class SourceMappingError(BadPayloadError):
    """The source lacks a name the tenant file maps (an export's column): the tenant file is
    wrong at ``key`` (``connection.tabs.deals.columns.lost_reason``), not the data.
    ``syncd check`` reports it as an error on that key."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key
