"""Issue 13 item 3, per plugin against its fake: a pass with nothing changed reads no record
twice (the compound cursor of ``syncd.streams``), even when many records share the newest
modification second; a record changed since is read again. (Pipedrive: the same tests in
tests/test_pipedrive_fake.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support import FakeClock
from syncd_amocrm import AmoCRMConnector, AmoCRMSettings
from syncd_bitrix24 import Bitrix24Connector, Bitrix24Settings
from syncd_fakes.amocrm.sample import sample_dataset as amocrm_sample
from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM
from syncd_fakes.bitrix24.sample import sample_dataset as bitrix24_sample
from syncd_fakes.bitrix24.server import FakeBitrix24

from syncd.connector import Connector, PullContext
from syncd.streams import SETTLE, Watermark

INCREMENTAL = ("companies", "contacts", "deals", "activities", "stage_history")


def run_pass(connector: Connector, cursors: dict[str, str],
             requests: dict[str, int] | None = None) -> dict[str, list[str]]:
    """Every stream once, committed cursors in and out; the ids read per stream (and the
    requests each stream made, into ``requests``)."""
    read: dict[str, list[str]] = {}
    for stream in connector.streams:
        for page in connector.pull(stream, cursors.get(stream), PullContext()):
            read.setdefault(stream, []).extend(
                str(getattr(r, "external_id", "")) for r in page.records)
            if requests is not None:
                requests[stream] = requests.get(stream, 0) + page.requests
            if page.cursor is not None:
                cursors[stream] = page.cursor
    connector.close()
    return read


def starts_after(cursor: str, moment: datetime) -> bool:
    """The next read of this cursor starts after ``moment``."""
    since = Watermark.load(cursor).since(PullContext().overlap)
    return since is not None and since > moment


# --- amoCRM ---------------------------------------------------------------------------------
@pytest.fixture
def amocrm() -> Iterator[FakeAmoCRM]:
    # Everything in the sample is older than SETTLE, as in an account nobody touches.
    with FakeAmoCRM(amocrm_sample(datetime.now(UTC) - 2 * SETTLE), rate_limit=60) as fake:
        yield fake


def amocrm_connector(fake: FakeAmoCRM) -> AmoCRMConnector:
    # the limiter really paces (the fake enforces its limit); 50 rps keeps the test short
    return AmoCRMConnector(AmoCRMSettings(base_url=fake.base_url,
                                          long_lived_token=DEMO_LONG_LIVED_TOKEN, page_size=5,
                                          rate_limit=50), tenant="t")


def test_amocrm_a_no_change_pass_reads_no_record_twice(amocrm: FakeAmoCRM) -> None:
    cursors: dict[str, str] = {}
    first = run_pass(amocrm_connector(amocrm), cursors)
    assert all(first.get(s) for s in ("companies", "contacts", "deals", "activities"))

    again = run_pass(amocrm_connector(amocrm), cursors)
    assert {s: again.get(s, []) for s in INCREMENTAL} == {s: [] for s in INCREMENTAL}


def test_amocrm_leads_sharing_one_second_are_read_once_and_again_when_changed(
        amocrm: FakeAmoCRM) -> None:
    second = int((datetime.now(UTC) - 5 * SETTLE).timestamp())
    bulk = sorted(amocrm.leads.rows)[:12]
    for lead in bulk:
        amocrm.edit("leads", lead, at=second, name=f"Bulk {lead}")
    cursors: dict[str, str] = {}
    run_pass(amocrm_connector(amocrm), cursors)
    assert run_pass(amocrm_connector(amocrm), cursors).get("deals", []) == []

    amocrm.edit("leads", bulk[5], name="Changed again")
    assert run_pass(amocrm_connector(amocrm), cursors).get("deals", []) == [str(bulk[5])]


def test_amocrm_a_quiet_list_does_not_fetch_our_write_back_again(amocrm: FakeAmoCRM) -> None:
    """Thirty leads stamped half an hour ago (our write-back, say) and nothing since: the
    next pass starts from the first one's start less the overlap, not from the burst."""
    burst = datetime.now(UTC) - timedelta(minutes=30)
    for lead in sorted(amocrm.leads.rows)[:30]:
        amocrm.edit("leads", lead, at=int(burst.timestamp()), name=f"Written {lead}")
    cursors: dict[str, str] = {}
    run_pass(amocrm_connector(amocrm), cursors)
    assert starts_after(cursors["deals"], burst)

    requests: dict[str, int] = {}
    assert run_pass(amocrm_connector(amocrm), cursors, requests).get("deals", []) == []
    # one empty page of live leads, not the six pages of the burst (the deleted-leads
    # request yields no page when it finds none, so it is not counted here)
    assert requests["deals"] == 1


# --- Bitrix24 -------------------------------------------------------------------------------
@pytest.fixture
def bitrix24() -> Iterator[FakeBitrix24]:
    past = datetime.now(UTC) - 2 * SETTLE
    with FakeBitrix24(bitrix24_sample(past), burst=500, clock=lambda: past) as fake:
        yield fake


def bitrix24_connector(fake: FakeBitrix24, **settings: Any) -> Bitrix24Connector:
    clock = FakeClock()
    return Bitrix24Connector(Bitrix24Settings(base_url=fake.base_url,
                                              webhook_url=fake.webhook_url, **settings),
                             tenant="t", sleep=clock.sleep, clock=clock)


def test_bitrix24_a_no_change_pass_reads_no_record_twice(bitrix24: FakeBitrix24) -> None:
    cursors: dict[str, str] = {}
    first = run_pass(bitrix24_connector(bitrix24), cursors)
    assert all(first.get(s) for s in INCREMENTAL)

    again = run_pass(bitrix24_connector(bitrix24), cursors)
    assert {s: again.get(s, []) for s in INCREMENTAL} == {s: [] for s in INCREMENTAL}


def test_bitrix24_deals_sharing_one_second_are_read_once_and_again_when_changed(
        bitrix24: FakeBitrix24) -> None:
    second = datetime.now(UTC).replace(microsecond=0) - 5 * SETTLE
    bitrix24.clock = lambda: second
    bulk = sorted(bitrix24.dataset.deals.rows)[:12]
    for deal in bulk:
        bitrix24.edit("deal", deal, TITLE=f"Bulk {deal}")
    cursors: dict[str, str] = {}
    run_pass(bitrix24_connector(bitrix24), cursors)
    assert run_pass(bitrix24_connector(bitrix24), cursors).get("deals", []) == []

    bitrix24.clock = lambda: second + timedelta(seconds=30)
    bitrix24.edit("deal", bulk[5], TITLE="Changed again")
    assert run_pass(bitrix24_connector(bitrix24), cursors).get("deals", []) == [str(bulk[5])]


def test_bitrix24_a_quiet_list_does_not_fetch_our_write_back_again(
        bitrix24: FakeBitrix24) -> None:
    burst = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    bitrix24.clock = lambda: burst
    for deal in sorted(bitrix24.dataset.deals.rows)[:30]:
        bitrix24.edit("deal", deal, TITLE=f"Written {deal}")
    cursors: dict[str, str] = {}
    run_pass(bitrix24_connector(bitrix24), cursors)
    assert starts_after(cursors["deals"], burst)
    assert run_pass(bitrix24_connector(bitrix24), cursors).get("deals", []) == []
