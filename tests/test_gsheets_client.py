"""The Sheets API calls, one by one, against `responses` (no server, no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from google.auth import jwt
from support import FakeClock
from syncd_fakes.gsheets.server import JWT_AUDIENCE, make_key
from syncd_gsheets.client import (
    SheetsClient,
    a1,
    column_letter,
    payload_batches,
    quote_sheet,
    shared_limiter,
)

from syncd.errors import AuthError, ConfigError, FatalAPIError, RateLimitedError
from syncd.http import MAX_ATTEMPTS
from syncd.secrets import redact

BASE = "https://sheets.test"
TOKEN_URI = "https://oauth2.test/token"
SHEET = "1AbCdEfGhIjKlMnOp"
EMAIL = "reports@acme-syncd.iam.gserviceaccount.com"
KEY, PUBLIC = make_key(EMAIL, TOKEN_URI)
API = f"{BASE}/v4/spreadsheets/{SHEET}"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.POST, TOKEN_URI, json={"access_token": "ya29.unit-token-1",
                                                  "expires_in": 3600, "token_type": "Bearer"})
        yield mock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def client(clock: FakeClock, **extra: object) -> SheetsClient:
    return SheetsClient(base_url=BASE, spreadsheet_id=SHEET, credentials=KEY,
                        sleep=clock.sleep, clock=clock, **extra)  # type: ignore[arg-type]


def google_error(code: int, status: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "status": status}}


def test_a1_ranges_always_quote_titles() -> None:
    assert quote_sheet("Deals") == "'Deals'"
    assert a1("It's", "A1") == "'It''s'!A1"
    assert a1("Q1 Data", "A2", "C") == "'Q1 Data'!A2:C"
    assert [column_letter(n) for n in (1, 26, 27, 52, 703)] == ["A", "Z", "AA", "AZ", "AAA"]


def test_token_is_a_signed_jwt_exchanged_once_and_sent_as_bearer(
        mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.GET, API, json={"sheets": [
        {"properties": {"sheetId": 0, "title": "Deals"}},
        {"properties": {"sheetId": 7, "title": "It's"}}]})
    sheets = client(clock)
    assert sheets.sheet_titles() == {"Deals": 0, "It's": 7}
    assert sheets.sheet_titles() == {"Deals": 0, "It's": 7}
    token_calls = [c for c in mocked.calls if c.request.url == TOKEN_URI]
    assert len(token_calls) == 1, "the token is reused while valid"
    body = token_calls[0].request.body
    form = parse_qs(body.decode() if isinstance(body, bytes) else body)
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(form["assertion"][0], certs=PUBLIC, audience=JWT_AUDIENCE)
    assert claims["iss"] == EMAIL
    assert "https://www.googleapis.com/auth/spreadsheets" in claims["scope"]
    api_call = next(c for c in mocked.calls if c.request.url.startswith(API))
    assert api_call.request.headers["Authorization"] == "Bearer ya29.unit-token-1"
    assert "sheets.properties" in api_call.request.url
    assert "ya29.unit-token-1" not in redact("token ya29.unit-token-1"), "tokens are secrets"


def test_batch_get_reads_unformatted_serial_values_in_one_request(
        mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.GET, f"{API}/values:batchGet", json={"valueRanges": [
        {"range": "'Deals'!A1:Z1000", "values": [["ID", "Created"], ["00123", 46296.5]]},
        {"range": "'Empty'!A1:Z1000"},  # an empty range has no "values" key at all
    ]})
    grids = client(clock).batch_get([a1("Deals"), a1("Empty")])
    assert grids == [[["ID", "Created"], ["00123", 46296.5]], []]
    call = next(c for c in mocked.calls if "batchGet" in c.request.url)
    query = parse_qs(urlsplit(call.request.url).query)
    assert query["ranges"] == ["'Deals'", "'Empty'"]
    assert query["valueRenderOption"] == ["UNFORMATTED_VALUE"]
    assert query["dateTimeRenderOption"] == ["SERIAL_NUMBER"]


def test_not_shared_says_so_and_names_the_service_account(
        mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.GET, API, status=403, json=google_error(
        403, "PERMISSION_DENIED", "The caller does not have permission"))
    with pytest.raises(AuthError) as caught:
        client(clock).sheet_titles()
    message = str(caught.value)
    assert f"spreadsheet {SHEET} is not shared with the service account {EMAIL}" in message
    assert "Editor" in message
    assert len([c for c in mocked.calls if c.request.url.startswith(API)]) == 1, "not retried"


def test_quota_429_backs_off_and_retries(mocked: responses.RequestsMock,
                                         clock: FakeClock) -> None:
    quota = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric "
                         "'Read requests' and limit 'Read requests per minute per user'")
    mocked.add(responses.GET, API, status=429, json=quota)
    mocked.add(responses.GET, API, status=429, json=quota)
    mocked.add(responses.GET, API, json={"sheets": []})
    sheets = client(clock)
    assert sheets.sheet_titles() == {}
    assert len(clock.sleeps) == 2, "two backoffs, then success"
    assert sheets.api.rate_limited == 2


def test_quota_429_gives_up_after_bounded_attempts(mocked: responses.RequestsMock,
                                                   clock: FakeClock) -> None:
    mocked.add(responses.GET, API, status=429, json=google_error(429, "RESOURCE_EXHAUSTED",
                                                                 "Quota exceeded"))
    with pytest.raises(RateLimitedError, match=f"Sheets quota exceeded for {EMAIL}"):
        client(clock).sheet_titles()
    assert len([c for c in mocked.calls if c.request.url.startswith(API)]) == MAX_ATTEMPTS


def test_values_writes_are_raw_and_idempotent_so_retried(mocked: responses.RequestsMock,
                                                          clock: FakeClock) -> None:
    mocked.add(responses.POST, f"{API}/values:batchUpdate", status=503,
               json=google_error(503, "UNAVAILABLE", "The service is currently unavailable."))
    mocked.add(responses.POST, f"{API}/values:batchUpdate", json={"totalUpdatedCells": 2})
    client(clock).write_values([(a1("syncd Violations", "A1"), [["00123", 4.5]])])
    bodies = [json.loads(c.request.body) for c in mocked.calls if "batchUpdate" in c.request.url]
    assert len(bodies) == 2, "retried after a 503: setting values twice is harmless"
    assert bodies[1] == {"valueInputOption": "RAW", "data": [{
        "range": "'syncd Violations'!A1", "majorDimension": "ROWS", "values": [["00123", 4.5]]}]}


def test_add_sheet_after_weather_is_looked_up_not_blindly_repeated(
        mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.POST, f"{API}:batchUpdate", status=503,
               json=google_error(503, "UNAVAILABLE", "backend error"))
    mocked.add(responses.GET, API, json={"sheets": [  # it landed all the same
        {"properties": {"sheetId": 11, "title": "syncd KPIs"}},
        {"properties": {"sheetId": 12, "title": "syncd People"}}]})
    created = client(clock).add_sheets(["syncd KPIs", "syncd People"],
                                       sizes={"syncd People": (5000, 30)},
                                       frozen={"syncd People": (1, 0)})
    assert {t: i.sheet_id for t, i in created.items()} == {"syncd KPIs": 11, "syncd People": 12}
    assert created["syncd People"].rows == 5000
    calls = [c for c in mocked.calls if c.request.url.endswith(":batchUpdate")]
    assert len(calls) == 1, "found, not created twice"
    assert json.loads(calls[0].request.body) == {"requests": [
        {"addSheet": {"properties": {"title": "syncd KPIs", "gridProperties": {
            "rowCount": 1000, "columnCount": 26}}}},
        {"addSheet": {"properties": {"title": "syncd People", "gridProperties": {
            "rowCount": 5000, "columnCount": 30, "frozenRowCount": 1}}}}]}


def test_add_sheet_is_resent_when_the_lookup_finds_no_tab(
        mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.POST, f"{API}:batchUpdate", status=502, body="<html>502</html>",
               content_type="text/html")
    mocked.add(responses.GET, API, json={"sheets": []})
    mocked.add(responses.POST, f"{API}:batchUpdate", json={"replies": [
        {"addSheet": {"properties": {"sheetId": 21, "title": "syncd KPIs"}}}]})
    created = client(clock).add_sheets(["syncd KPIs"])
    assert created["syncd KPIs"].sheet_id == 21
    assert len([c for c in mocked.calls if c.request.url.endswith(":batchUpdate")]) == 2


def test_big_writes_are_split_under_the_recommended_payload() -> None:
    rows = [[f"{i:06d}", "x" * 40, i] for i in range(5000)]
    batches = payload_batches([("'Big'!A1", rows), ("'Small'!A1", [["a"]])], limit=150_000)
    ranges = [ref for batch in batches for ref, _ in batch]
    assert ranges == ["'Big'!A1", "'Big'!A2001", "'Big'!A4001", "'Small'!A1"]
    assert [row for batch in batches for ref, block in batch if ref.startswith("'Big'")
            for row in block] == rows, "every row once, in order"
    assert all(len(json.dumps([v for _, v in b])) < 150_000 for b in batches)
    assert len(payload_batches([("'Big'!A1", rows)])) == 1, "under 2 MB: one request"


def test_clear_is_one_batch_request(mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.POST, f"{API}/values:batchClear", json={"clearedRanges": []})
    client(clock).clear(["'T'!A5:C9", "'T'!D1:F4"])
    call = next(c for c in mocked.calls if "batchClear" in c.request.url)
    assert json.loads(call.request.body) == {"ranges": ["'T'!A5:C9", "'T'!D1:F4"]}


def test_refused_token_names_the_account(clock: FakeClock) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, TOKEN_URI, status=400, json={
            "error": "invalid_grant", "error_description": "Invalid JWT Signature."})
        with pytest.raises(AuthError, match=f"service account {EMAIL}: the token request"):
            client(clock).sheet_titles()


def test_missing_spreadsheet_is_fatal(mocked: responses.RequestsMock, clock: FakeClock) -> None:
    mocked.add(responses.GET, API, status=404, json=google_error(
        404, "NOT_FOUND", "Requested entity was not found."))
    with pytest.raises(FatalAPIError, match=f"spreadsheet {SHEET} not found"):
        client(clock).sheet_titles()


@pytest.mark.parametrize(("key", "problem"), [
    ("not json", "not a JSON service-account key"),
    ('{"type": "authorized_user"}', "expected a service-account key"),
    ('{"type": "service_account", "client_email": "a@b"}', "lacks private_key, token_uri"),
])
def test_bad_key_files_are_config_errors(key: str, problem: str, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match=problem):
        SheetsClient(base_url=BASE, spreadsheet_id=SHEET, credentials=key, sleep=clock.sleep,
                     clock=clock)


def test_the_quota_limiter_is_shared_per_service_account() -> None:
    first = shared_limiter("a@x.iam.gserviceaccount.com", 60)
    assert shared_limiter("A@x.iam.gserviceaccount.com", 60) is first
    assert shared_limiter("b@x.iam.gserviceaccount.com", 60) is not first
    assert first.limit == 60 and first.window == 60
    assert shared_limiter("a@x.iam.gserviceaccount.com", 30) is first
    assert first.limit == 30, "the lower configured rate wins for a shared account"


def test_the_limiter_keeps_under_60_per_minute(mocked: responses.RequestsMock,
                                               clock: FakeClock) -> None:
    mocked.add(responses.POST, f"{API}/values:batchClear", json={})
    sheets = client(clock, requests_per_minute=3)
    for _ in range(4):
        sheets.clear(["'T'!A1"])
    assert clock.sleeps and sum(clock.sleeps) >= 60, "the 4th request waited for the window"


def test_two_tenants_on_one_service_account_share_one_quota() -> None:
    crm = SheetsClient(base_url=BASE, spreadsheet_id=SHEET, credentials=KEY)
    report = SheetsClient(base_url=BASE, spreadsheet_id="2OtherSheetId0000", credentials=KEY)
    other_key, _ = make_key("other@acme-syncd.iam.gserviceaccount.com", TOKEN_URI)
    other = SheetsClient(base_url=BASE, spreadsheet_id=SHEET, credentials=other_key)
    assert crm.limiter is report.limiter
    assert other.limiter is not crm.limiter


def test_weather_at_the_token_endpoint_is_retried_without_google_auths_real_sleeps(
        clock: FakeClock) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, TOKEN_URI, status=200, body="<html>maintenance</html>",
                 content_type="text/html")
        mock.add(responses.POST, TOKEN_URI, status=503, json={"error": "unavailable"})
        mock.add(responses.POST, TOKEN_URI, status=200, body='{"access_token": "ya29.cu',
                 content_type="application/json")
        mock.add(responses.POST, TOKEN_URI, json={"access_token": "ya29.after-weather",
                                                  "expires_in": 3600, "token_type": "Bearer"})
        mock.add(responses.GET, API, json={"sheets": []})
        assert client(clock).sheet_titles() == {}
        assert len([c for c in mock.calls if c.request.url == TOKEN_URI]) == 4
        assert mock.calls[-1].request.headers["Authorization"] == "Bearer ya29.after-weather"
    assert len(clock.sleeps) == 3 and all(0 <= s <= 4 for s in clock.sleeps), \
        "three backoff waits, through the injected sleep"
