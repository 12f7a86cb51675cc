"""The fakes' weather: independent per-request faults, seeded, some applied after a write."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
from syncd_fakes.amocrm.sample import sample_dataset as amo_dataset
from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM
from syncd_fakes.http import WEATHER_KINDS, Weather
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
TOKEN = "pd-weather-test-token"


def test_every_request_is_drawn_independently_so_a_retry_can_fail_again() -> None:
    weather = Weather(0.5, seed=3)
    drawn = [weather.draw("GET", "/api/v2/deals", write=False) for _ in range(400)]
    failed = [f is not None for f in drawn]
    assert 150 < sum(failed) < 250
    assert any(a and b and c for a, b, c in zip(failed, failed[1:], failed[2:], strict=False)), \
        "the same request failed three times in a row"
    again = Weather(0.5, seed=3)
    assert [again.draw("GET", "/api/v2/deals", write=False) for _ in range(400)] == drawn
    assert {f.kind for f in drawn if f is not None} == set(WEATHER_KINDS)
    assert all(f.after for f in drawn if f is not None and f.kind == "truncated")
    assert not any(f.after for f in drawn if f is not None and f.kind == "502"), \
        "a read has nothing to apply"
    assert weather.requests == 400 and sum(weather.injected.values()) == sum(failed)


def test_weather_spares_what_it_is_told_to_and_rejects_unknown_kinds() -> None:
    weather = Weather(1.0, spare=lambda method, path: path.startswith("/oauth"))
    assert weather.draw("POST", "/oauth2/access_token", write=True) is None
    assert weather.draw("GET", "/api/v4/leads", write=False) is not None
    with pytest.raises(ValueError, match="unknown weather kinds"):
        Weather(0.2, kinds=("418",))


def test_a_502_after_the_write_landed_and_a_cut_body() -> None:
    weather = Weather(1.0, kinds=("502",), after_share=1.0)
    with FakePipedrive(sample_dataset(NOW), token=TOKEN, weather=weather) as fake:
        before = len(fake.activities.rows)
        deal = fake.deals.ids()[0]
        answer = requests.post(f"{fake.base_url}/api/v2/activities", headers={
            "x-api-token": TOKEN}, json={"subject": "Call", "type": "task", "deal_id": deal,
                                         "note": "[syncd:v1]"}, timeout=10)
        assert answer.status_code == 502 and "text/html" in answer.headers["Content-Type"]
        assert len(fake.activities.rows) == before + 1, "the write landed all the same"
        assert weather.landed_then_failed == 1
        weather.kinds = ("truncated",)
        cut = requests.get(f"{fake.base_url}/api/v2/deals", headers={"x-api-token": TOKEN},
                           timeout=10)
        assert cut.status_code == 200
        with pytest.raises(ValueError):
            json.loads(cut.content)
        assert cut.content.startswith(b'{"success":true')


def test_amocrm_maintenance_page_under_200_and_429_with_retry_after() -> None:
    weather = Weather(1.0, kinds=("html200",))
    with FakeAmoCRM(amo_dataset(NOW), weather=weather) as fake:
        headers = {"Authorization": f"Bearer {DEMO_LONG_LIVED_TOKEN}"}
        page = requests.get(f"{fake.base_url}/api/v4/leads", headers=headers, timeout=10)
        assert page.status_code == 200 and page.text.startswith("<!DOCTYPE html>")
        weather.kinds = ("429",)
        limited = requests.get(f"{fake.base_url}/api/v4/leads", headers=headers, timeout=10)
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
