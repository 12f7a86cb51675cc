"""Sending: e-mail over SMTP (stdlib ``smtplib`` + ``email``) and Telegram (Bot API
``sendMessage``, https://core.telegram.org/bots/api#sendmessage).

Each sender raises ``SendError`` with ``retry`` (worth trying again: a connection failure,
a 4xx SMTP reply, a 5xx or 429 from Telegram) and ``retry_after`` (seconds the server asked
us to wait: Telegram's ``parameters.retry_after`` on a 429, "In case of exceeding flood
control, the number of seconds left to wait before the request can be repeated",
https://core.telegram.org/bots/api#responseparameters). Waiting is the caller's business:
the service records the retry time and moves on; nothing here sleeps.

Secrets (the SMTP password, the bot token) are resolved here, registered for redaction,
and never appear in an error or a log line: Telegram's URL carries the token, so every
message built from a request error is redacted.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import requests

from syncd import secrets
from syncd.digest_config import SmtpConfig, TelegramConfig
from syncd.secrets import redact


class SendError(Exception):
    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(redact(message))
        self.retry = retry
        self.retry_after = retry_after


def _secret(value: Any, base_dir: Path | None) -> str:
    if isinstance(value, dict):
        try:
            return secrets.resolve(value, base_dir)
        except secrets.SecretError as exc:
            raise SendError(f"missing secret: {exc}", retry=True) from None
    secrets.register(str(value))
    return str(value)


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str
    #: A stable Message-ID: a retried send carries the same one, so mail systems that
    #: deduplicate by it (Gmail does) show one message even if it was sent twice.
    message_id: str


def message_id(tenant: str, kind: str, period: str, recipient: str, sender: str) -> str:
    domain = sender.rsplit("@", 1)[-1].strip(" >") or "syncd.local"
    local = f"digest.{tenant}.{kind}.{period}.{abs(hash_text(recipient))}"
    return f"<{local}@{domain}>"


def hash_text(text: str) -> int:
    """A stable (not per-process) hash, for ids."""
    import hashlib

    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16)


def send_email(config: SmtpConfig, to: str, mail: Mail, *, base_dir: Path | None) -> None:
    message = EmailMessage()
    message["Subject"] = mail.subject
    message["From"] = config.sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = mail.message_id or make_msgid()
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to digests
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    password = (_secret(config.password, base_dir) if config.password is not None else None)
    host, port, timeout = config.host, config.effective_port, config.timeout_seconds
    ca_file = None
    if config.ca_file:
        ca_file = Path(config.ca_file).expanduser()
        ca_file = ca_file if ca_file.is_absolute() or base_dir is None else base_dir / ca_file
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if config.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout,
                                                    context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            if config.security == "starttls":
                client.starttls(context=context)
            if config.username is not None and password is not None:
                client.login(config.username, password)
            client.send_message(message)
    except smtplib.SMTPResponseException as exc:
        # 4xx: transient (greylisting, a full queue); 5xx: this will not work as it is
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        raise SendError(f"SMTP {host}:{port} answered {exc.smtp_code} {text}",
                        retry=400 <= exc.smtp_code < 500 or isinstance(
                            exc, smtplib.SMTPAuthenticationError)) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendError(f"SMTP {host}:{port} refused the recipient {to}: "
                        f"{exc.recipients}", retry=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP {host}:{port}: {type(exc).__name__}: {exc}",
                        retry=True) from None


def send_telegram(config: TelegramConfig, chat_id: str, text: str, *,
                  base_dir: Path | None, session: requests.Session | None = None) -> int:
    """Send one message; returns its ``message_id``."""
    token = _secret(config.bot_token, base_dir)
    url = f"{config.base_url}/bot{token}/sendMessage"
    payload = {"chat_id": chat_id, "text": text, "parse_mode": "HTML",
               "link_preview_options": {"is_disabled": True}}
    http = session or requests
    try:
        response = http.post(url, json=payload, timeout=config.timeout_seconds)
    except requests.RequestException as exc:
        raise SendError(f"Telegram: {type(exc).__name__}: {exc}", retry=True) from None
    try:
        body = response.json()
    except ValueError:
        raise SendError(f"Telegram answered {response.status_code} without JSON",
                        retry=response.status_code >= 500) from None
    if isinstance(body, dict) and body.get("ok") is True:
        result = body.get("result") or {}
        return int(result.get("message_id", 0)) if isinstance(result, dict) else 0
    code = body.get("error_code", response.status_code) if isinstance(body, dict) else 0
    description = body.get("description", "") if isinstance(body, dict) else ""
    parameters = (body.get("parameters") or {}) if isinstance(body, dict) else {}
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if code == 429 or retry_after is not None:
        raise SendError(f"Telegram: flood control ({code} {description})", retry=True,
                        retry_after=float(retry_after) if retry_after is not None else None)
    raise SendError(f"Telegram: chat {chat_id}: {code} {description}",
                    retry=int(code or 0) >= 500) from None


__all__ = ["Mail", "SendError", "hash_text", "message_id", "send_email", "send_telegram"]
