"""OAuth token storage under refresh-token rotation (syncd.oauth), on SQLite and PostgreSQL.

Each thread opens its own ``Database`` (its own engine and connections), as a separate
syncd process would; the provider below honours only its newest refresh token.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from syncd.errors import AuthError
from syncd.oauth import RefreshRejected, TokenCipher, TokenSet, TokenStore, load_cipher
from syncd.store import Database

KEY = TokenCipher.generate_key()


class RotatingProvider:
    """Single-use refresh tokens: each refresh returns a new pair and kills the old one."""

    def __init__(self) -> None:
        self.generation = 0
        self.refresh_token = "refresh-0"
        self.exchanges = 0
        self.rejections = 0
        self.lock = threading.Lock()
        self.inside = threading.Event()

    def exchange(self, stored: TokenSet) -> TokenSet:
        with self.lock:
            self.exchanges += 1
            if stored.refresh_token != self.refresh_token:
                self.rejections += 1
                raise RefreshRejected("invalid_grant: refresh token revoked")
            self.generation += 1
            self.refresh_token = f"refresh-{self.generation}"
            return TokenSet(f"access-{self.generation}", self.refresh_token,
                            datetime(2030, 1, 1, tzinfo=UTC))

    def seed(self) -> TokenSet:
        return TokenSet("access-0", "refresh-0", datetime(2030, 1, 1, tzinfo=UTC))


def make_store(url: str, tenant: str = "acme") -> TokenStore:
    return TokenStore(Database(url), tenant, "amocrm", lambda: TokenCipher(KEY))


def test_concurrent_refreshes_rotate_once_and_share_the_new_pair(database: Database) -> None:
    provider = RotatingProvider()
    first = make_store(str(database.url.render_as_string(hide_password=False)))
    used = first.load(seed="code-1", make_seed=provider.seed)
    results: list[TokenSet] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        store = make_store(database.url.render_as_string(hide_password=False))
        try:
            barrier.wait()
            results.append(store.refresh(used, provider.exchange))
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.db.dispose()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert provider.exchanges == 1 and provider.rejections == 0
    assert {r.access_token for r in results} == {"access-1"}
    # the stored pair is the provider's live one: the next refresh works
    assert first.refresh(results[0], provider.exchange).access_token == "access-2"
    first.db.dispose()


def test_tokens_are_encrypted_at_rest(database: Database) -> None:
    store = TokenStore(database, "acme", "amocrm", lambda: TokenCipher(KEY))
    store.load(seed="code-1", make_seed=RotatingProvider().seed)
    with database.engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM credentials")).mappings().one()
    dumped = repr(dict(row))
    assert "access-0" not in dumped and "refresh-0" not in dumped and "code-1" not in dumped
    assert store.load().access_token == "access-0"
    wrong = TokenStore(database, "acme", "amocrm", lambda: TokenCipher(TokenCipher.generate_key()))
    with pytest.raises(AuthError, match="cannot be decrypted"):
        wrong.load()


def test_rejected_refresh_disconnects_with_a_reconnect_hint(database: Database) -> None:
    provider = RotatingProvider()
    store = TokenStore(database, "acme", "amocrm", lambda: TokenCipher(KEY))
    used = store.load(seed="code-1", make_seed=provider.seed)
    provider.refresh_token = "revoked-by-the-user"
    with pytest.raises(AuthError, match="reconnect") as caught:
        store.refresh(used, provider.exchange)
    assert "refresh-0" not in str(caught.value)
    assert store.status()[0] == "disconnected"
    with pytest.raises(AuthError, match="disconnected"):
        store.load(seed="code-1", make_seed=provider.seed)
    # the admin puts a new code in the tenant file: the tenant resumes
    provider.refresh_token = "refresh-0"
    assert store.load(seed="code-2", make_seed=provider.seed).access_token == "access-0"
    assert store.status() == ("ok", None)


def test_a_stale_caller_gets_the_stored_pair_without_refreshing(database: Database) -> None:
    provider = RotatingProvider()
    store = TokenStore(database, "acme", "amocrm", lambda: TokenCipher(KEY))
    used = store.load(seed="code-1", make_seed=provider.seed)
    store.refresh(used, provider.exchange)  # generation 1 stored
    assert store.refresh(used, provider.exchange).access_token == "access-1"
    assert provider.exchanges == 1


def test_rejection_rereads_before_disconnecting(database: Database) -> None:
    """A pair stored between the refused refresh and the re-read is used, not discarded."""
    provider = RotatingProvider()
    store = TokenStore(database, "acme", "amocrm", lambda: TokenCipher(KEY))
    refused = store.load(seed="code-1", make_seed=provider.seed)
    original = store._after_rejection

    def someone_stores_first(rejected: TokenSet, reason: str) -> TokenSet:
        store.save(TokenSet("access-9", "refresh-9"))
        return original(rejected, reason)

    store._after_rejection = someone_stores_first  # type: ignore[method-assign]
    provider.refresh_token = "something-else"
    assert store.refresh(refused, provider.exchange).access_token == "access-9"
    assert store.status() == ("ok", None)


def test_expiry_margin() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    tokens = TokenSet("secret-access", "secret-refresh", now + timedelta(minutes=4))
    assert tokens.expires_within(timedelta(minutes=5), now)
    assert not tokens.expires_within(timedelta(minutes=3), now)
    assert "secret" not in repr(tokens)


def test_key_file_is_created_private_and_reused(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCD_SECRET_KEY", raising=False)
    key_file = tmp_path / "var" / "secret.key"
    cipher = load_cipher(key_file)
    assert key_file.stat().st_mode & 0o777 == 0o600
    sealed = cipher.encrypt("token")
    assert load_cipher(key_file).decrypt(sealed, tenant="t") == "token"
