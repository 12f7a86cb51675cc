"""The ``digests:`` block of a tenant file, validated by pydantic (docs/digests.md).

It lives with the settings (``syncd.config`` embeds it in ``TenantConfig``), not inside the
``syncd.digests`` package, whose senders import the report: no import cycle.

Every problem names its dotted key (``digests.managers.0.email``), so ``syncd check`` can
say what is wrong and where. Secrets (the SMTP password, the bot token) are given as
``{$env: NAME}`` or ``{$file: path}`` and resolved only when a digest is sent; an inline
secret is accepted but ``syncd check`` warns about it.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
#: One address: something@domain.tld (what a person types; the SMTP server is the judge).
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
#: A Telegram chat: a numeric id (negative for groups) or a public ``@channelusername``.
_CHAT = re.compile(r"^(-?\d{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _secret_shape(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in {"$env", "$file"}:
        return value
    message = "a secret is {$env: NAME} or {$file: path}"
    raise ValueError(message)


class SmtpConfig(_Model):
    """The SMTP server digests are sent through."""

    host: str = Field(min_length=1)
    #: Default by ``security``: 587 (starttls), 465 (ssl), 25 (none).
    port: int | None = Field(default=None, ge=1, le=65535)
    #: ``starttls`` (submission, port 587), ``ssl`` (implicit TLS, port 465) or ``none``
    #: (a relay on a trusted network only).
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: Any = None
    #: The From header, e.g. ``"Sales audit <digests@consultancy.ru>"``.
    sender: str = Field(min_length=3)
    timeout_seconds: float = Field(default=30, gt=0, le=300)
    #: A CA bundle to trust for the server's certificate (a private CA); default: the
    #: system's. Relative to the tenant file.
    ca_file: str | None = None

    @field_validator("password")
    @classmethod
    def _password_shape(cls, value: Any) -> Any:
        return _secret_shape(value)

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.security]

    @model_validator(mode="after")
    def _login_pairs(self) -> SmtpConfig:
        if (self.username is None) != (self.password is None):
            message = "username and password go together (give both, or neither)"
            raise ValueError(message)
        return self


class TelegramConfig(_Model):
    """The Telegram bot digests are sent by (Bot API ``sendMessage``)."""

    bot_token: Any
    #: The Bot API server (a local Bot API server, or a proxy); requests go to
    #: ``<base_url>/bot<token>/sendMessage``.
    base_url: str = "https://api.telegram.org"
    timeout_seconds: float = Field(default=30, gt=0, le=300)

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: Any) -> Any:
        if value is None:
            message = "the bot's token is required ({$env: NAME} or {$file: path})"
            raise ValueError(message)
        return _secret_shape(value)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            message = f"not an http(s) URL: {value!r}"
            raise ValueError(message)
        return value.rstrip("/")


class Recipient(_Model):
    """Where one person's digest goes: e-mail addresses and/or Telegram chats."""

    email: list[str] = Field(default_factory=list)
    telegram: list[str] = Field(default_factory=list)

    @field_validator("email", mode="before")
    @classmethod
    def _emails(cls, value: Any) -> Any:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list):
            return value
        for address in values:
            if not isinstance(address, str) or not _EMAIL.match(address.strip()):
                message = f"not an e-mail address: {address!r}"
                raise ValueError(message)
        return [address.strip() for address in values]

    @field_validator("telegram", mode="before")
    @classmethod
    def _chats(cls, value: Any) -> Any:
        values = [value] if isinstance(value, str | int) else value
        if not isinstance(values, list):
            return value
        chats = []
        for chat in values:
            text = str(chat).strip() if isinstance(chat, str | int) else ""
            if isinstance(chat, bool) or not _CHAT.match(text):
                message = (f"not a Telegram chat: {chat!r} (a numeric chat id, or "
                           "@channelusername)")
                raise ValueError(message)
            chats.append(text)
        return chats

    @model_validator(mode="after")
    def _somewhere(self) -> Recipient:
        if not self.email and not self.telegram:
            message = "give an e-mail address (email) or a Telegram chat (telegram)"
            raise ValueError(message)
        return self

    def addresses(self) -> list[str]:
        """Each delivery address as ``channel:address``: one claim row each."""
        return [f"email:{a}" for a in self.email] + [f"telegram:{c}" for c in self.telegram]


class ManagerRecipient(Recipient):
    #: The manager as in ``mapping.teams`` (or the CRM): a user id, name or e-mail.
    manager: str = Field(min_length=1)


class WeeklySchedule(_Model):
    enabled: bool = True
    weekday: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                     "sunday"] = "monday"
    hour: int = Field(default=9, ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)
    #: How many violations "what to fix first" lists.
    top: int = Field(default=10, ge=1, le=50)


class MonthlySchedule(_Model):
    enabled: bool = True
    #: Day of the month (at most 28, so every month has it).
    day: int = Field(default=1, ge=1, le=28)
    hour: int = Field(default=9, ge=0, le=23)
    minute: int = Field(default=0, ge=0, le=59)


class DigestsConfig(_Model):
    """``digests:`` in a tenant file."""

    enabled: bool = True
    #: Default: the tenant's ``language``.
    language: Literal["en", "ru"] | None = None
    #: Default: the tenant's ``timezone``; digests go out at this zone's local time.
    timezone: str | None = None
    weekly: WeeklySchedule = Field(default_factory=WeeklySchedule)
    monthly: MonthlySchedule = Field(default_factory=MonthlySchedule)
    #: A digest not sent within this many hours of its time (the daemon was down) is
    #: skipped: a Monday digest arriving on Thursday helps nobody.
    send_window_hours: int = Field(default=24, ge=1, le=24 * 6)
    #: Attempts per digest and address before it is given up (marked ``failed``).
    max_attempts: int = Field(default=6, ge=1, le=50)
    email: SmtpConfig | None = None
    telegram: TelegramConfig | None = None
    managers: list[ManagerRecipient] = Field(default_factory=list)
    director: Recipient | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            message = f"unknown timezone {value!r} (use an IANA name like Europe/Moscow)"
            raise ValueError(message) from None
        return value

    @model_validator(mode="after")
    def _channels_configured(self) -> DigestsConfig:
        people: list[tuple[str, Recipient]] = [
            (f"managers.{i}", m) for i, m in enumerate(self.managers)]
        if self.director is not None:
            people.append(("director", self.director))
        for where, person in people:
            if person.email and self.email is None:
                message = (f"{where}.email: e-mail recipients need digests.email (the SMTP "
                           "server to send through)")
                raise ValueError(message)
            if person.telegram and self.telegram is None:
                message = (f"{where}.telegram: Telegram recipients need digests.telegram "
                           "(the bot's token)")
                raise ValueError(message)
        seen: set[str] = set()
        for i, manager in enumerate(self.managers):
            key = manager.manager.strip().casefold()
            if key in seen:
                message = f"managers.{i}.manager: {manager.manager!r} is listed twice"
                raise ValueError(message)
            seen.add(key)
        return self


def inline_secrets(config: DigestsConfig) -> list[str]:
    """The dotted keys of secrets written inline (``syncd check`` warns about them)."""
    found = []
    if config.email is not None and isinstance(config.email.password, str):
        found.append("digests.email.password")
    if config.telegram is not None and isinstance(config.telegram.bot_token, str):
        found.append("digests.telegram.bot_token")
    return found


__all__ = ["WEEKDAYS", "DigestsConfig", "ManagerRecipient", "MonthlySchedule", "Recipient",
           "SmtpConfig", "TelegramConfig", "WeeklySchedule", "inline_secrets"]
