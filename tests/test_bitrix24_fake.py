"""The fake Bitrix24 portal behaves like the documented API (so the e2e tests mean something),
and the connector copes with its faults over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from syncd_bitrix24 import Bitrix24Connector, Bitrix24Settings
from syncd_bitrix24.client import php_query
from syncd_fakes.bitrix24.sample import sample_dataset
from syncd_fakes.bitrix24.server import FakeBitrix24, Fault

from syncd.connector import PullContext


@pytest.fixture
def fake():
    with FakeBitrix24(sample_dataset(datetime.now(UTC)), burst=50, rate=50) as server:
        yield server


def call(fake: FakeBitrix24, method: str, body: dict[str, Any] | None = None,
         ) -> requests.Response:
    return requests.post(f"{fake.webhook_url}{method}.json", json=body or {}, timeout=10)


def test_the_leaky_bucket_refuses_with_503_above_the_burst() -> None:
    with FakeBitrix24(sample_dataset(datetime.now(UTC)), burst=5, rate=0.5) as fake:
        statuses = [call(fake, "crm.category.list", {"entityTypeId": 2}).status_code
                    for _ in range(8)]
        assert statuses[:5] == [200] * 5
        assert set(statuses[5:]) == {503}
        answer = call(fake, "crm.category.list", {"entityTypeId": 2})
        assert answer.json()["error"] == "QUERY_LIMIT_EXCEEDED"
        assert fake.limit_errors == 4


def test_legacy_lists_answer_strings_in_the_portal_offset(fake: FakeBitrix24) -> None:
    answer = call(fake, "crm.deal.list", {"start": -1, "order": {"ID": "ASC"}}).json()
    assert answer["total"] == 0 and "next" not in answer, "start=-1 counts nothing"
    row = answer["result"][0]
    assert row["ID"] == "1" and isinstance(row["OPPORTUNITY"], str)
    assert row["DATE_MODIFY"].endswith("+03:00")
    history = call(fake, "crm.stagehistory.list", {"entityTypeId": 2}).json()["result"]
    assert isinstance(history["items"][0]["ID"], int), "new-style methods are typed"
    paged = call(fake, "crm.activity.list", {"start": 0}).json()
    assert paged["total"] == fake.dataset.activities.count() > 50 and paged["next"] == 50


def test_a_misspelt_field_is_silently_ignored(fake: FakeBitrix24) -> None:
    before = dict(fake.record("deal", 3))
    answer = call(fake, "crm.deal.update", {"id": 3, "fields": {"UF_CRM_PROFTI": "5"}})
    assert answer.status_code == 200 and answer.json()["result"] is True
    after = fake.record("deal", 3)
    assert "UF_CRM_PROFTI" not in after and after["UF_CRM_PROFIT"] == before["UF_CRM_PROFIT"]


def test_batch_resolves_references_and_fails_inner_calls_under_http_200(
        fake: FakeBitrix24) -> None:
    first = "crm.activity.list?" + php_query({"filter": {">ID": 0}, "start": -1})
    chained = "crm.activity.list?" + php_query({"filter": {">ID": "$result[c0][49][ID]"},
                                               "start": -1})
    beyond = "crm.activity.list?" + php_query({"filter": {">ID": "$result[c1][49][ID]"},
                                              "start": -1})
    answer = call(fake, "batch", {"halt": 0, "cmd": {"c0": first, "c1": chained,
                                                     "c2": beyond}})
    assert answer.status_code == 200
    result = answer.json()["result"]
    total = fake.dataset.activities.count()
    assert 50 < total < 100
    assert [r["ID"] for r in result["result"]["c0"]] == [str(i) for i in range(1, 51)]
    assert [r["ID"] for r in result["result"]["c1"]] == [str(i) for i in range(51, total + 1)]
    assert result["result_error"]["c2"]["error"] == "ERROR_BATCH_REFERENCE", \
        "c1 has no 50th row to chain on"
    fake.faults = [Fault("inner", method="crm.deal.list")]
    deal_list = first.replace("activity", "deal")
    failed = call(fake, "batch", {"cmd": {"c0": deal_list}}).json()["result"]
    assert failed["result_error"]["c0"]["error"] == "INTERNAL_SERVER_ERROR"
    too_many = call(fake, "batch", {"cmd": {f"c{i}": first for i in range(51)}})
    assert too_many.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"


def test_oauth_refresh_tokens_are_single_use(fake: FakeBitrix24) -> None:
    seed = fake.issue_refresh_token()
    params = {"grant_type": "refresh_token", "refresh_token": seed,
              "client_id": fake.client_id, "client_secret": fake.client_secret}
    first = requests.post(fake.oauth_url, params=params, timeout=10)
    assert first.status_code == 200 and first.json()["refresh_token"] != seed
    again = requests.post(fake.oauth_url, params=params, timeout=10)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    token = first.json()["access_token"]
    url = f"{fake.base_url}/rest/user.get.json"
    assert requests.post(url, json={"auth": token}, timeout=10).status_code == 200
    fake.expire_tokens()
    expired = requests.post(url, json={"auth": token}, timeout=10)
    assert expired.status_code == 401 and expired.json()["error"] == "expired_token"
    wrong = requests.post(f"{fake.base_url}/rest/1/nope/user.get.json", timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"] == "NO_AUTH_FOUND"


@pytest.mark.parametrize("kind", ["503", "429", "html502", "reset", "inner"])
def test_the_connector_rides_out_faults(fake: FakeBitrix24, kind: str) -> None:
    settings = Bitrix24Settings(base_url=fake.base_url, webhook_url=fake.webhook_url,
                                bucket_rate=50)
    connector = Bitrix24Connector(settings, tenant="t")
    fake.faults = [Fault(kind, method="crm.deal.list")]
    records = [r for p in connector.pull("deals", None, PullContext()) for r in p.records]
    assert len(records) == fake.dataset.deals.count()
    assert fake.faults[0].seen >= 2, "the faulted request was repeated"
    connector.close()


def test_the_connector_never_trips_the_bucket(fake: FakeBitrix24) -> None:
    with FakeBitrix24(sample_dataset(datetime.now(UTC)), burst=8, rate=40) as tight:
        settings = Bitrix24Settings(base_url=tight.base_url, webhook_url=tight.webhook_url,
                                    bucket_burst=8, bucket_rate=40)
        connector = Bitrix24Connector(settings, tenant="t")
        for _ in range(3):
            for stream in connector.streams:
                list(connector.pull(stream, None, PullContext()))
        assert len(tight.requests) > 8 * 3
        assert tight.limit_errors == 0
        connector.close()
