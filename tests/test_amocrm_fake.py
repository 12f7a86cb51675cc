"""The fake amoCRM follows the documented behaviour the connector is tested against."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from syncd_fakes.amocrm.sample import WON, sample_dataset
from syncd_fakes.amocrm.server import (
    CLIENT_ID,
    CLIENT_SECRET,
    DEMO_LONG_LIVED_TOKEN,
    REDIRECT_URI,
    FakeAmoCRM,
)

AUTH = {"Authorization": f"Bearer {DEMO_LONG_LIVED_TOKEN}"}


@pytest.fixture(scope="module")
def fake():
    with FakeAmoCRM(sample_dataset(datetime(2026, 11, 23, tzinfo=UTC)), rate_limit=1000) as f:
        yield f


def grant(fake: FakeAmoCRM, **body: str) -> requests.Response:
    return requests.post(f"{fake.base_url}/oauth2/access_token", timeout=10, json={
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT_URI,
        **body})


def test_refresh_tokens_work_once_and_access_tokens_expire(fake: FakeAmoCRM) -> None:
    first = grant(fake, grant_type="authorization_code", code=fake.issue_code()).json()
    again = grant(fake, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert again.status_code == 200 and again.json()["refresh_token"] != first["refresh_token"]
    reused = grant(fake, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused.status_code == 401 and reused.json()["hint"] == "Token has been revoked"
    token = {"Authorization": f"Bearer {again.json()['access_token']}"}
    assert requests.get(f"{fake.base_url}/api/v4/users", headers=token,
                        timeout=10).status_code == 200
    fake.expire_access_tokens()
    assert requests.get(f"{fake.base_url}/api/v4/users", headers=token,
                        timeout=10).status_code == 401
    assert fake.chain_alive()


def test_lists_are_hal_with_204_when_empty_and_null_custom_fields(fake: FakeAmoCRM) -> None:
    page = requests.get(f"{fake.base_url}/api/v4/leads", headers=AUTH, timeout=10,
                        params={"limit": 250, "with": "contacts,loss_reason"}).json()
    leads = page["_embedded"]["leads"]
    assert "next" not in page["_links"]
    assert any(lead["custom_fields_values"] is None for lead in leads), "null, not []"
    assert all(lead["custom_fields_values"] != [] for lead in leads)
    won = [lead for lead in leads if lead["status_id"] == WON]
    assert {lead["pipeline_id"] for lead in won} == {3001}
    empty = requests.get(f"{fake.base_url}/api/v4/leads", headers=AUTH, timeout=10,
                         params={"filter[updated_at][from]": 4_000_000_000})
    assert (empty.status_code, empty.content) == (204, b"")


def test_a_batch_patch_with_one_bad_item_applies_nothing(fake: FakeAmoCRM) -> None:
    lead = next(iter(fake.leads.rows))
    before = fake.record("leads", lead)
    answer = requests.patch(f"{fake.base_url}/api/v4/leads", headers=AUTH, timeout=10, json=[
        {"id": lead, "custom_fields_values": [{"field_id": 602, "values": [{"value": 5}]}]},
        {"id": 99_999_999, "custom_fields_values": []}])
    assert answer.status_code == 400 and answer.json()["validation-errors"]
    assert fake.record("leads", lead) == before


def test_over_the_rate_limit_429_then_the_html_ban() -> None:
    with FakeAmoCRM(sample_dataset(datetime(2026, 11, 23, tzinfo=UTC)), rate_limit=2,
                    window=60, ban_after=3) as fake:
        statuses = [requests.get(f"{fake.base_url}/api/v4/account", headers=AUTH,
                                 timeout=10).status_code for _ in range(6)]
        assert statuses == [200, 200, 429, 429, 429, 403]
        last = requests.get(f"{fake.base_url}/api/v4/account", headers=AUTH, timeout=10)
        assert last.headers["Content-Type"] == "text/html" and b"403 Forbidden" in last.content
