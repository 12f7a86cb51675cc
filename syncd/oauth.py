"""OAuth 2 tokens that survive rotation, shared safely by every syncd process of a tenant.

amoCRM/Kommo and Bitrix24 OAuth apps hand out *single-use* refresh tokens: each refresh
returns a new pair and kills the old refresh token. Two processes refreshing the same
tenant at once would each burn the other's token and leave the tenant disconnected. So:

1. **One refresher at a time.** The refresh runs inside a database transaction whose first
   statement writes the tenant's ``credentials`` row: a row lock on PostgreSQL, the write
   lock on SQLite. Whoever waits for it re-reads the stored pair after taking the lock.
2. **Someone else already refreshed?** If the stored access token is no longer the one the
   caller used, the caller gets the stored pair; no second refresh happens.
3. **Commit before use.** The new pair is committed before it is returned, so a crash after
   the refresh never loses the only valid refresh token.
4. **Rejected refresh.** When the provider refuses the refresh token, the stored pair is
   re-read outside the lock (another actor may have stored a fresh one); only if it is
   unchanged is the tenant marked *disconnected*, with what to do to reconnect.

5. **Weather at the token endpoint.** The connectors retry an exchange answered with a 5xx,
   an HTML page or a cut body (``syncd.http``). If that answer was lost *after* the
   provider rotated the pair, the retry presents a dead refresh token and is refused:
   point 4 applies, and the reason says an earlier answer was lost. Nothing could recover
   that pair; the next pass would have presented the same token anyway.

Tokens are encrypted at rest with Fernet (``cryptography``). The key comes from
``SYNCD_SECRET_KEY`` or the daemon config's ``secret_key_file`` (created with mode 0600 the
first time it is needed); replicas sharing a database must share the key.

A tenant file gives a *seed*: an initial refresh token or authorization code. Its hash is
stored; when the file's value changes, the admin reconnected and the seed replaces the
stored pair (that is how a disconnected tenant is brought back).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from syncd.errors import AuthError, ConfigError, ConfigProblem
from syncd.secrets import redact, register
from syncd.store.db import Database
from syncd.store.models import CredentialRow

SECRET_KEY_ENV = "SYNCD_SECRET_KEY"  # noqa: S105 - the name of a variable


@dataclass(frozen=True)
class TokenSet:
    """An access token, the refresh token that renews it, and when the access expires."""

    access_token: str
    refresh_token: str | None = None
    expires_at: datetime | None = None

    def expires_within(self, margin: timedelta, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return self.expires_at - margin <= (now or datetime.now(UTC))

    def __repr__(self) -> str:  # never print a token
        return f"TokenSet(expires_at={self.expires_at!r})"


class RefreshRejected(AuthError):
    """The provider refused the refresh token (``invalid_grant`` and the like).

    Raised by a connector's exchange function; ``TokenStore.refresh`` turns it into a
    re-read and, if nothing newer is stored, a disconnected tenant."""


class TokenCipher:
    """Encrypts tokens for the ``credentials`` table (Fernet: AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: bytes | str) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError):
            message = ("the secret key is not a Fernet key (32 url-safe base64-encoded bytes;"
                       " make one with `syncd secret-key`)")
            raise ConfigError(ConfigProblem("", SECRET_KEY_ENV, message)) from None

    @classmethod
    def generate_key(cls) -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, value: str | None) -> str | None:
        return None if value is None else self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str | None, *, tenant: str) -> str | None:
        if value is None:
            return None
        try:
            return self._fernet.decrypt(value.encode()).decode()
        except InvalidToken:
            message = (f"tenant {tenant}: the stored OAuth tokens cannot be decrypted with this"
                       f" secret key (was {SECRET_KEY_ENV} or the key file changed?)")
            raise AuthError(message) from None


def load_cipher(key_file: Path) -> TokenCipher:
    """The cipher from ``SYNCD_SECRET_KEY``, else from ``key_file`` (created if missing)."""
    from_env = os.environ.get(SECRET_KEY_ENV)
    if from_env:
        register(from_env)
        return TokenCipher(from_env.strip())
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(TokenCipher.generate_key() + "\n")
    key = key_file.read_text().strip()
    register(key)
    return TokenCipher(key)


def fingerprint(seed: str) -> str:
    """A stable, one-way name for a seed credential (stored instead of the seed)."""
    return hashlib.sha256(b"syncd-seed:" + seed.encode()).hexdigest()


class TokenStore:
    """One tenant's tokens in the database. Thread- and process-safe; see the module doc."""

    def __init__(self, db: Database, tenant: str, provider: str,
                 cipher: Callable[[], TokenCipher], *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.tenant = tenant
        self.provider = provider
        self._cipher_factory = cipher
        self._cipher: TokenCipher | None = None
        self.clock = clock

    @property
    def cipher(self) -> TokenCipher:
        if self._cipher is None:
            self._cipher = self._cipher_factory()
        return self._cipher

    # -- reading -------------------------------------------------------------------------
    def load(self, seed: str | None = None,
             make_seed: Callable[[], TokenSet] | None = None) -> TokenSet:
        """The stored pair. With ``seed`` (the tenant file's credential), a stored pair from
        another seed, or none, is replaced by ``make_seed()`` (e.g. exchanging a code)."""
        wanted = fingerprint(seed) if seed is not None else None
        with self.db.session() as session:
            row = session.get(CredentialRow, self.tenant)
            if row is not None and (wanted is None or row.seed_fingerprint == wanted):
                return self._usable(row)
        if seed is None or make_seed is None:
            message = (f"tenant {self.tenant}: no {self.provider} tokens are stored and the"
                       " tenant file gives none: connect the account first")
            raise AuthError(message)
        return self._seed(wanted, make_seed)

    def status(self) -> tuple[str, str | None]:
        """("ok" | "disconnected" | "absent", reason)."""
        with self.db.session() as session:
            row = session.get(CredentialRow, self.tenant)
            if row is None:
                return "absent", None
            return row.status, row.status_reason

    # -- writing -------------------------------------------------------------------------
    def save(self, tokens: TokenSet) -> None:
        """Store a pair obtained outside ``refresh`` (keeps the seed fingerprint)."""
        with self.db.session() as session:
            row = self._lock(session)
            self._store(row, tokens)

    def refresh(self, used: TokenSet, exchange: Callable[[TokenSet], TokenSet]) -> TokenSet:
        """Renew ``used`` (the pair the caller found expired or rejected) exactly once
        across every process. ``exchange(stored)`` performs the provider's refresh call and
        raises ``RefreshRejected`` when the refresh token is refused."""
        with self.db.session() as session:
            row = self._lock(session)
            if row.status == "disconnected":
                raise AuthError(self.disconnected_message(row.status_reason))
            stored = self._decrypt(row)
            if stored.access_token != used.access_token:
                return stored  # another process refreshed while we waited for the lock
            try:
                fresh = exchange(stored)
            except RefreshRejected as exc:
                rejected, reason = stored, redact(str(exc))
            else:
                self._store(row, fresh)
                return fresh  # committed when the session closes, before anyone uses it
        return self._after_rejection(rejected, reason)

    # -- internals -----------------------------------------------------------------------
    def _after_rejection(self, rejected: TokenSet, reason: str) -> TokenSet:
        with self.db.session() as session:
            row = self._lock(session)
            current = self._decrypt(row)
            if row.status == "ok" and current.access_token != rejected.access_token:
                return current  # someone stored a newer pair: use it
            row.status = "disconnected"
            row.status_reason = reason
            row.updated_at = self.clock()
        raise AuthError(self.disconnected_message(reason))

    def disconnected_message(self, reason: str | None) -> str:
        return (f"tenant {self.tenant}: {self.provider} refused the stored refresh token"
                f" ({reason or 'disconnected'}); the tenant is disconnected. To reconnect,"
                " authorize the integration again and put the new authorization code or"
                " refresh token in the tenant file's connection (from $env or $file); the"
                " next pass stores it and the tenant resumes.")

    def _usable(self, row: CredentialRow) -> TokenSet:
        if row.status == "disconnected":
            raise AuthError(self.disconnected_message(row.status_reason))
        return self._decrypt(row)

    def _seed(self, wanted: str | None, make_seed: Callable[[], TokenSet]) -> TokenSet:
        with self.db.session() as session:
            row = self._lock(session)
            if row.seed_fingerprint == wanted and row.access_token is not None:
                return self._usable(row)  # another process seeded while we waited
            tokens = make_seed()
            self._store(row, tokens)
            row.seed_fingerprint = wanted
        return tokens

    def _lock(self, session: Session) -> CredentialRow:
        """Take the tenant's credentials lock: the transaction's first statement writes."""
        insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
        session.execute(insert(CredentialRow)
                        .values(tenant_key=self.tenant, provider=self.provider, version=0,
                                status="ok", updated_at=self.clock())
                        .on_conflict_do_nothing(index_elements=["tenant_key"]))
        session.execute(update(CredentialRow)
                        .where(CredentialRow.tenant_key == self.tenant)
                        .values(version=CredentialRow.version))
        session.expire_all()
        return session.execute(select(CredentialRow)
                               .where(CredentialRow.tenant_key == self.tenant)).scalar_one()

    def _store(self, row: CredentialRow, tokens: TokenSet) -> None:
        register(tokens.access_token)
        if tokens.refresh_token:
            register(tokens.refresh_token)
        row.access_token = self.cipher.encrypt(tokens.access_token)
        row.refresh_token = self.cipher.encrypt(tokens.refresh_token)
        row.expires_at = tokens.expires_at
        row.version = (row.version or 0) + 1
        row.status = "ok"
        row.status_reason = None
        row.updated_at = self.clock()

    def _decrypt(self, row: CredentialRow) -> TokenSet:
        access = self.cipher.decrypt(row.access_token, tenant=self.tenant) or ""
        refresh = self.cipher.decrypt(row.refresh_token, tenant=self.tenant)
        for value in (access, refresh):
            if value:
                register(value)
        return TokenSet(access, refresh, row.expires_at)


__all__ = ["RefreshRejected", "TokenCipher", "TokenSet", "TokenStore", "fingerprint",
           "load_cipher"]
