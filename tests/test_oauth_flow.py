"""The shared OAuth client flow (syncd.oauth_flow) on its own: seed once, refresh before
expiry, renew once on an expired answer, and say why a grant was refused.

The token endpoint here answers as RFC 6749 section 5.1/5.2 describes (``access_token``,
``refresh_token``, ``expires_in``; ``{"error": "invalid_grant"}`` for a refused grant);
the plugins' own tests cover amoCRM's and Bitrix24's endpoints through their fakes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from syncd.errors import AuthError
from syncd.oauth import TokenCipher, TokenStore
from syncd.oauth_flow import OAuthFlow
from syncd.store import Database

KEY = TokenCipher.generate_key()
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Endpoint:
    """A token endpoint with single-use refresh tokens; ``lifetime`` seconds per token."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.grants: list[dict[str, str]] = []
        self.live_refresh = "seed-refresh"
        self.api = SimpleNamespace(retries=0)
        self.refuse_with: str | None = None
        self.lose_first_answer = False

    def post(self, grant: dict[str, str]) -> Any:
        self.grants.append(grant)
        if self.lose_first_answer:  # the first answer was lost after the rotation
            self.lose_first_answer = False
            self.api.retries += 1
            self.live_refresh = "rotated-and-lost"
        if self.refuse_with or grant.get("refresh_token") != self.live_refresh:
            return {"error": self.refuse_with or "invalid_grant"}
        n = len(self.grants)
        self.live_refresh = f"refresh-{n}"
        return {"access_token": f"access-{n}", "refresh_token": self.live_refresh,
                "expires_in": self.lifetime}


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def flow(database: Database, endpoint: Endpoint, clock: Clock,
         seed: str = "seed-refresh") -> OAuthFlow:
    store = TokenStore(database, "acme", "example", lambda: TokenCipher(KEY), clock=clock)
    return OAuthFlow(provider="Example CRM", tenant="acme", store=lambda: store,
                     seed=("refresh_token", seed), post=endpoint.post,
                     api=lambda: endpoint.api,
                     margin=timedelta(minutes=5), now=clock,
                     refusing_codes={"invalid_grant"}, code_lifetime="30 seconds")


def test_a_token_shorter_lived_than_the_margin_is_used_until_it_expires(
        database: Database) -> None:
    endpoint, clock = Endpoint(lifetime=60), Clock()  # 60 s, the margin is 5 minutes
    oauth = flow(database, endpoint, clock)
    # The seeded token is within the margin at once: refreshed once, and that fresh
    # token is then kept although it is within the margin too.
    first = oauth.current()
    assert [g.get("refresh_token") for g in endpoint.grants] == ["seed-refresh", "refresh-1"]
    assert first.access_token == "access-2"
    assert [oauth.current().access_token for _ in range(3)] == ["access-2"] * 3
    assert len(endpoint.grants) == 2, "no refresh per request for a short-lived token"
    clock.now += timedelta(seconds=61)
    assert oauth.current().access_token == "access-3", "refreshed again once it expired"
    assert len(endpoint.grants) == 3


def test_an_expired_answer_renews_once_and_sends_again(database: Database) -> None:
    endpoint, clock = Endpoint(lifetime=3600), Clock()
    oauth = flow(database, endpoint, clock)
    sent: list[str] = []

    def send(tokens: Any) -> str:
        sent.append(tokens.access_token)
        if len(sent) == 1:
            raise AuthError("token expired", status=401)
        return "answer"

    assert oauth.call(send, expired=lambda exc: exc.status == 401) == "answer"
    assert len(sent) == 2 and sent[0] != sent[1], "sent again with the renewed token"
    with pytest.raises(AuthError, match="forbidden"):
        oauth.call(lambda tokens: (_ for _ in ()).throw(AuthError("forbidden", status=403)),
                   expired=lambda exc: exc.status == 401)
    assert len(endpoint.grants) == 2, "an answer that is not 'expired' refreshes nothing"


def test_a_refused_refresh_after_a_lost_answer_disconnects_and_says_so(
        database: Database) -> None:
    endpoint, clock = Endpoint(lifetime=3600), Clock()
    oauth = flow(database, endpoint, clock)
    used = oauth.current()
    endpoint.lose_first_answer = True
    with pytest.raises(AuthError, match="earlier answer of the token endpoint was lost") as caught:
        oauth.renew(used)
    assert "Example CRM refused the refresh_token grant: invalid_grant" in str(caught.value)
    assert "disconnected" in str(caught.value)
    store = TokenStore(database, "acme", "example", lambda: TokenCipher(KEY))
    assert store.status()[0] == "disconnected"


def test_a_refused_seed_names_what_to_do_and_not_the_seed(database: Database) -> None:
    endpoint, clock = Endpoint(lifetime=3600), Clock()
    oauth = flow(database, endpoint, clock, seed="spent-seed-4711")
    with pytest.raises(AuthError) as caught:
        oauth.current()
    text = str(caught.value)
    assert "tenant acme" in text and "authorization codes live 30 seconds" in text
    assert "authorize the integration again" in text
    assert "spent-seed-4711" not in text


def test_without_a_token_store_the_seed_is_not_spent() -> None:
    endpoint, clock = Endpoint(lifetime=3600), Clock()
    oauth = OAuthFlow(provider="Example CRM", tenant="acme", store=lambda: None,
                      seed=("refresh_token", "seed-refresh"), post=endpoint.post,
                      api=lambda: endpoint.api,
                      margin=timedelta(minutes=5), now=clock, without_store=", or use a key")
    with pytest.raises(AuthError, match=r"needs the database token store.*or use a key"):
        oauth.current()
    assert endpoint.grants == []
