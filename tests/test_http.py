"""The one HTTP policy: classification table, retries and waits, redaction, rate limiter."""

from __future__ import annotations

import json
import random
import socket

import pytest
import requests
import responses
from support import FakeClock

from syncd import secrets
from syncd.errors import (
    AuthError,
    BadPayloadError,
    BlockedError,
    FatalAPIError,
    RateLimitedError,
    RetriableAPIError,
)
from syncd.http import ApiClient, GarbledResponseError, TransportError, classify, retry_after
from syncd.ratelimit import RateLimiter

BASE = "https://crm.example.com"
URL = f"{BASE}/api/v2/things"
TOKEN = "tok-SECRET-0123456789abcdef"




def make_client(waits: list[float], **kwargs) -> ApiClient:
    kwargs.setdefault("max_attempts", 4)
    return ApiClient(BASE, auth_headers={"x-api-token": TOKEN}, sleep=waits.append, **kwargs)


HTML_BLOCK = "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"


def add_response(case: str, method: str) -> None:
    """Register the response for one row of the table (every call gets the same)."""
    kinds = {
        "connection error": {"body": requests.ConnectionError("connection reset by peer")},
        "400": {"status": 400, "json": {"success": False, "error": "Bad request: limit"}},
        "401": {"status": 401, "json": {"success": False, "error": "unauthorized access"}},
        "403 html": {"status": 403, "body": HTML_BLOCK, "content_type": "text/html"},
        "404": {"status": 404, "json": {"success": False, "error": "Deal not found"}},
        "429 retry-after": {"status": 429, "json": {"error": "slow down"},
                            "headers": {"Retry-After": "3"}},
        "429 bare": {"status": 429, "json": {"error": "slow down"}},
        "500": {"status": 500, "json": {"success": False, "error": "internal"}},
        "502": {"status": 502, "json": {"error": "bad gateway"}},
        "503": {"status": 503, "json": {"error": "maintenance"}},
        # x-ratelimit-reset is a rate-limit counter, not an outage's end: only Retry-After
        "503 retry-after": {"status": 503, "json": {"error": "maintenance"},
                            "headers": {"Retry-After": "7", "x-ratelimit-reset": "2"}},
        "502 html": {"status": 502, "body": "<html><title>502 Bad Gateway</title></html>",
                     "content_type": "text/html"},
        "501": {"status": 501, "json": {"error": "not implemented"}},
        "undecodable json": {"status": 200, "body": b'{"data": "\xff\xfe"}',
                             "content_type": "application/json"},
        "html 404": {"status": 404, "body": "<html>Not Found</html>",
                     "content_type": "text/html"},
        "504": {"status": 504, "body": ""},
        "html 200": {"status": 200, "body": "<html><body>Login</body></html>",
                     "content_type": "text/html"},
        "truncated json": {"status": 200, "body": '{"success": true, "data": [{"id": 1, "na',
                           "content_type": "application/json"},
        "204 empty": {"status": 204, "body": ""},
    }
    responses.add(getattr(responses, method), URL, **kinds[case])


# case -> (exception or None, retried for idempotent, retried for POST, server-given wait)
TABLE = {
    "connection error": (TransportError, True, False, None),
    "400": (FatalAPIError, False, False, None),
    "401": (AuthError, False, False, None),
    "403 html": (BlockedError, False, False, None),
    "404": (FatalAPIError, False, False, None),
    "429 retry-after": (RateLimitedError, True, True, 3.0),
    "429 bare": (RateLimitedError, True, True, None),
    "500": (RetriableAPIError, True, False, None),
    "502": (RetriableAPIError, True, False, None),
    "503": (RetriableAPIError, True, False, None),
    "503 retry-after": (RetriableAPIError, True, False, 7.0),
    "502 html": (RetriableAPIError, True, False, None),
    "501": (FatalAPIError, False, False, None),
    "504": (RetriableAPIError, True, False, None),
    "html 200": (GarbledResponseError, True, False, None),
    "truncated json": (GarbledResponseError, True, False, None),
    "undecodable json": (GarbledResponseError, True, False, None),
    "html 404": (BadPayloadError, False, False, None),
    "204 empty": (None, False, False, None),
}
METHODS = {"GET": ("GET", None), "PATCH idempotent": ("PATCH", True), "POST": ("POST", None)}


@pytest.mark.parametrize("method_name", list(METHODS))
@pytest.mark.parametrize("case", list(TABLE))
@responses.activate
def test_retry_classification_table(case: str, method_name: str) -> None:
    method, idempotent = METHODS[method_name]
    expected, retried_idem, retried_post, given_wait = TABLE[case]
    retried = retried_post if method == "POST" else retried_idem
    add_response(case, method)
    waits: list[float] = []
    client = make_client(waits)
    body = {"custom_fields": {"abc": 1}} if method != "GET" else None

    if expected is None:
        assert client.request(method, "/api/v2/things", json=body, idempotent=idempotent) is None
    else:
        with pytest.raises(expected) as info:
            client.request(method, "/api/v2/things", json=body, idempotent=idempotent)
        assert type(info.value) is expected  # the exact class, not just a base
        assert TOKEN not in str(info.value)

    attempts = 4 if retried else 1
    assert len(responses.calls) == attempts
    assert client.requests_made == attempts
    assert len(waits) == attempts - 1
    if given_wait is not None:
        assert waits == [given_wait] * (attempts - 1)
    else:
        for number, wait in enumerate(waits, start=1):  # full jitter: 0 <= w <= 2^(n-1)
            assert 0 <= wait <= min(30.0, 2.0 ** (number - 1))
    if case.startswith("429"):
        assert client.rate_limited == attempts


@responses.activate
def test_success_returns_parsed_json_and_token_travels_in_header_only() -> None:
    responses.add(responses.GET, URL, json={"success": True, "data": [{"id": 1}]})
    counted: list[int] = []
    client = ApiClient(BASE, auth_headers={"x-api-token": TOKEN}, on_request=counted.append)
    assert client.get("/api/v2/things", params={"limit": 5}) == {
        "success": True, "data": [{"id": 1}],
    }
    sent = responses.calls[0].request
    assert TOKEN not in sent.url
    assert sent.headers["x-api-token"] == TOKEN
    assert sent.headers["User-Agent"].startswith("syncd/")
    assert counted == [1]


@responses.activate
def test_retry_then_success_returns_the_good_body() -> None:
    responses.add(responses.GET, URL, status=503, json={"error": "maintenance"})
    responses.add(responses.GET, URL, status=429, json={}, headers={"x-ratelimit-reset": "2"})
    responses.add(responses.GET, URL, json={"data": "ok"})
    waits: list[float] = []
    client = make_client(waits)
    assert client.get(URL) == {"data": "ok"}
    assert len(responses.calls) == 3
    assert waits[1] == 2.0  # x-ratelimit-reset honoured on the 429
    assert client.rate_limited == 1


@responses.activate
def test_retry_after_is_capped_by_max_wait() -> None:
    responses.add(responses.GET, URL, status=429, json={}, headers={"Retry-After": "86400"})
    waits: list[float] = []
    client = make_client(waits, max_wait=45.0)
    with pytest.raises(RateLimitedError) as info:
        client.get(URL)
    assert info.value.retry_after == 86400
    assert waits == [45.0, 45.0, 45.0]


def test_retry_after_parses_http_dates_and_seconds() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert retry_after({"Retry-After": date}, now=1445412480.0) == pytest.approx(10.0)
    assert retry_after({"x-ratelimit-reset": "1.5"}) == 1.5
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


@responses.activate
def test_secrets_never_reach_error_messages() -> None:
    secrets.register(TOKEN)
    responses.add(responses.GET, f"{BASE}/a", status=400,
                  json={"success": False, "error": f"token {TOKEN} is not valid for x"})
    responses.add(responses.GET, f"{BASE}/b", status=403,
                  body=f"<html>blocked api_token={TOKEN}</html>", content_type="text/html")
    responses.add(responses.GET, f"{BASE}/c", status=200, body=f'{{"echo": "{TOKEN}"',
                  content_type="application/json")
    responses.add(responses.GET, f"{BASE}/d",
                  body=requests.ConnectionError(f"failed for x-api-token: {TOKEN}"))
    client = make_client([], max_attempts=1)
    for path, kind in (("/a", FatalAPIError), ("/b", BlockedError), ("/c", BadPayloadError),
                       ("/d", TransportError)):
        with pytest.raises(kind) as info:
            client.get(path)
        assert TOKEN not in str(info.value), path
        assert "***" in str(info.value), path


def _response(status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update({"Content-Type": content_type, **(headers or {})})
    response.url = URL
    return response


def test_classify_messages_quote_the_body_start_and_api_error() -> None:
    html = _response(502, b"<html>" + b"x" * 500 + b"</html>", "text/html")
    error = classify(html)
    assert isinstance(error, RetriableAPIError)
    assert "HTML instead of JSON" in str(error)
    assert len(str(error)) < 250  # only the first ~100 chars of the body
    api = classify(_response(400, json.dumps({"error": "Field limit exceeded"}).encode()))
    assert isinstance(api, FatalAPIError)
    assert "Field limit exceeded" in str(api)
    assert api.status == 400
    ok = _response(200, b'{"data": []}', "text/plain")  # wrong content type, valid JSON
    assert classify(ok) is None


# --- RateLimiter ---------------------------------------------------------------------------
def test_limiter_never_exceeds_limit_in_any_window_even_with_latency() -> None:
    """A simulated server counting arrivals (somewhere between send and answer) never sees
    more than `limit` requests in any rolling window."""
    clock = FakeClock()
    limiter = RateLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    rng = random.Random(3)
    arrivals: list[float] = []
    for _ in range(60):
        slot = limiter.acquire()
        latency = rng.uniform(0.001, 0.3)
        arrivals.append(clock.now + rng.uniform(0, latency))
        clock.now += latency
        limiter.release(slot)
        clock.now += rng.uniform(0, 0.05)  # the caller's own work between requests
    for first in arrivals:
        in_window = [a for a in arrivals if first <= a < first + 1.0]
        assert len(in_window) <= 5
    # and it is not needlessly slow: 60 requests at 5/s take about 12 windows
    assert clock.now - 1000.0 < 12 * (1.0 + 0.3 + 0.05 + 0.05) + 1


def test_limiter_lets_a_burst_through_without_waiting() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, 2.0, clock=clock, sleep=clock.sleep)
    for _ in range(20):
        limiter.release(limiter.acquire())
    assert clock.sleeps == []
    limiter.release(limiter.acquire())
    assert sum(clock.sleeps) == pytest.approx(2.0 + limiter.margin)


def test_remaining_zero_with_our_own_window_full_waits_for_the_window_not_the_reset() -> None:
    """Pipedrive answers the 20th request of a burst with ``x-ratelimit-remaining: 0`` and
    a whole-second ``x-ratelimit-reset: 2`` counted from that answer. The window is full of
    our own requests, so the 21st may go when the 1st is ``window + margin`` old, as the
    server's rolling window allows; waiting the reset out from the 20th answer would lose
    the burst's own send time every window (issue 13 item 7)."""
    clock = FakeClock()
    limiter = RateLimiter(20, 2.0, clock=clock, sleep=clock.sleep)
    start = clock.now
    for index in range(20):
        slot = limiter.acquire()
        clock.now += 0.05  # each answer takes 50 ms: the burst spans a second
        limiter.release(slot)
        limiter.observe({"x-ratelimit-limit": "20", "x-ratelimit-remaining": str(19 - index),
                         "x-ratelimit-reset": "2"})
    burst_end = clock.now
    limiter.acquire()
    # the 1st answer came at start + 0.05: the 21st goes at start + 0.05 + 2.0 + margin,
    # not at the 20th answer + 2.0 + margin (a second later)
    assert clock.now == pytest.approx(start + 0.05 + 2.0 + limiter.margin)
    assert clock.now < burst_end + 2.0


@pytest.mark.parametrize(("own", "reset"), [
    (5, 2.0),   # fewer of our own requests than the limit: the token is spent elsewhere too
    (20, 5.0),  # our window is full, but the server's is longer than configured
])
def test_a_servers_nothing_left_that_is_not_our_own_doing_is_waited_out(
        own: int, reset: float) -> None:
    """The server says none is left, and either not all of the window is ours or its
    reset is longer than our window: its reset is obeyed."""
    clock = FakeClock()
    limiter = RateLimiter(20, 2.0, clock=clock, sleep=clock.sleep)
    for _ in range(own):
        limiter.release(limiter.acquire())
    limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    before = clock.now
    limiter.acquire()
    assert clock.now - before == pytest.approx(reset + limiter.margin)


def test_observe_remaining_zero_waits_reset_and_adopts_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(20, 2.0, clock=clock, sleep=clock.sleep)
    limiter.release(limiter.acquire())
    limiter.observe({"x-ratelimit-limit": "40", "x-ratelimit-remaining": "0",
                     "x-ratelimit-reset": "1.5"})
    assert limiter.limit == 40
    start = clock.now
    limiter.acquire()
    assert clock.now - start >= 1.5
    limiter.observe({"x-ratelimit-remaining": "7", "x-ratelimit-reset": "9"})
    before = clock.now
    limiter.acquire()
    assert clock.now == before  # remaining > 0: no pause


@responses.activate
def test_api_client_goes_through_the_limiter() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, 1.0, margin=0.0, clock=clock, sleep=clock.sleep)
    responses.add(responses.GET, URL, json={"ok": True})
    client = ApiClient(BASE, auth_headers={}, limiter=limiter, sleep=clock.sleep)
    for _ in range(5):
        client.get(URL)
    assert len(responses.calls) == 5
    assert sum(clock.sleeps) == pytest.approx(2.0)  # requests 3 and 5 each waited a window


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0, 2.0)


# --- weather: non-idempotent writes verified by a read-back, the sleep hook --------------
@responses.activate
def test_a_create_that_met_weather_is_sent_again_only_when_the_read_back_finds_nothing(
        ) -> None:
    responses.add(responses.POST, URL, status=502, body="<html>502 Bad Gateway</html>",
                  content_type="text/html")
    responses.add(responses.POST, URL, status=200, body='{"data": {"id": 4',
                  content_type="application/json")  # applied, answer cut
    checks: list[str] = []

    def landed() -> dict | None:
        checks.append("looked")
        return None if len(checks) == 1 else {"data": {"id": 4, "found": True}}

    waits: list[float] = []
    client = make_client(waits)
    answer = client.request("POST", URL, json={"subject": "x"}, landed=landed)
    assert answer == {"data": {"id": 4, "found": True}}, "the second answer was lost: found"
    assert len(responses.calls) == 2, "sent again once (the first provably absent), not twice"
    assert checks == ["looked", "looked"]
    assert client.recovered_writes == 1 and client.retries == 1


@responses.activate
def test_a_rejected_create_is_not_looked_up_and_not_retried() -> None:
    responses.add(responses.POST, URL, status=422, json={"error": "bad subject"})
    client = make_client([])
    with pytest.raises(FatalAPIError):
        client.request("POST", URL, json={}, landed=lambda: pytest.fail("looked up"))
    assert len(responses.calls) == 1


@responses.activate
def test_landed_is_ignored_for_idempotent_requests_they_are_simply_retried() -> None:
    responses.add(responses.PATCH, URL, status=503, json={})
    responses.add(responses.PATCH, URL, json={"ok": True})
    client = make_client([])
    assert client.request("PATCH", URL, json={}, idempotent=True,
                          landed=lambda: pytest.fail("looked up")) == {"ok": True}


@responses.activate
def test_weather_exhausts_the_default_eight_attempts_then_fails_loudly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    responses.add(responses.GET, URL, status=200, body="<html>maintenance</html>",
                  content_type="text/html")
    hooked: list[float] = []
    monkeypatch.setattr("syncd.http.retry_sleeper", hooked.append)

    def never(_: float) -> None:
        pytest.fail("the client's own sleep is bypassed by the test hook")

    client = ApiClient(BASE, auth_headers={}, sleep=never)
    with pytest.raises(GarbledResponseError, match="HTML instead of JSON"):
        client.get(URL)
    assert len(responses.calls) == 8 and len(hooked) == 7 and client.retries == 7
    assert all(0 <= wait <= 30.0 for wait in hooked)


@responses.activate
def test_subprocess_tests_scale_retry_waits_through_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    responses.add(responses.GET, URL, status=503, json={}, headers={"Retry-After": "4"})
    responses.add(responses.GET, URL, json={"ok": 1})
    monkeypatch.setenv("SYNCD_RETRY_WAIT_SCALE", "0.25")
    waits: list[float] = []
    assert make_client(waits).get(URL) == {"ok": 1}
    assert waits == [1.0], "the 4 s Retry-After, scaled"


def test_a_connection_never_made_is_retried_even_for_a_create() -> None:
    with socket.socket() as probe:  # a local port nobody listens on: refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = ApiClient(f"http://127.0.0.1:{port}", auth_headers={}, sleep=waits.append,
                       max_attempts=3)
    with pytest.raises(TransportError) as caught:
        client.request("POST", "/tasks", json={"subject": "x"},
                       landed=lambda: pytest.fail("never sent: nothing to look up"))
    assert caught.value.sent is False
    assert client.requests_made == 3 and len(waits) == 2
