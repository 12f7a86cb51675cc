"""The gsheets connector in process against the local fake Sheets server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import FakeClock
from syncd_fakes.gsheets.server import FakeSheets
from syncd_gsheets.connector import GSheetsConnector
from syncd_gsheets.settings import GSheetsSettings

from syncd.connector import PullContext
from syncd.errors import AuthError, BadPayloadError

SHEET = "crm-sheet-000001"
EMAIL = "crm-reader@client.iam.gserviceaccount.com"
DEALS = [["№", "Title", "Stage", "Value", "Created at"],
         ["00123", "Windows", "Intro", 1200, 46296.604166666664],
         ["2", "Doors", "Intro"],
         ["3", "Roof", "Intro", "lots"]]


@pytest.fixture
def fake() -> Iterator[FakeSheets]:
    with FakeSheets() as server:
        yield server


def connector(fake: FakeSheets, **extra: Any) -> GSheetsConnector:
    settings = GSheetsSettings.model_validate({
        "spreadsheet_id": SHEET, "base_url": fake.base_url,
        "credentials": fake.service_account_key(EMAIL),
        "tabs": {"deals": {"tab": "Client's deals", "columns": {"id": "№"}}}, **extra})
    clock = FakeClock()
    return GSheetsConnector(settings, tenant="t", sleep=clock.sleep, clock=clock)


def pull_all(crm: GSheetsConnector) -> dict[str, list[Any]]:
    requests: list[int] = []
    context = PullContext(on_request=requests.append)
    pages = {stream: list(crm.pull(stream, None, context)) for stream in crm.streams}
    pages["_requests"] = [sum(requests)]  # type: ignore[list-item]
    return pages  # type: ignore[return-value]


def test_reads_every_tab_with_two_requests_exactly(fake: FakeSheets) -> None:
    fake.create(SHEET, {"Client's deals": DEALS}, shared_with=[EMAIL])
    pages = pull_all(connector(fake))
    assert pages["_requests"] == [2]
    assert [c[1] for c in fake.calls()] == ["get", "values:batchGet"]
    assert fake.scopes == ["https://www.googleapis.com/auth/spreadsheets.readonly"], (
        "a CRM sheet is only read: least privilege")
    query = fake.requests[1][2]
    assert query["ranges"] == ["'Client''s deals'"], "quoted, apostrophe doubled"
    deals = {d.external_id: d for p in pages["deals"] for d in p.records}
    assert sorted(deals) == ["00123", "2"]
    assert deals["00123"].value == 1200.0, "UNFORMATTED_VALUE: a number, not '1,200'"
    assert deals["00123"].created_at is not None
    assert deals["00123"].created_at.isoformat() == "2026-10-01T14:30:00+00:00"
    problems = [p for page in pages["deals"] for p in page.problems]
    assert problems == ["tab \"Client's deals\" row 4: value: cannot read 'lots' as a number"]
    assert problems[0].say("ru") == (  # said in a Russian tenant's language by the pass
        "лист \"Client's deals\", строка 4: value: не удалось прочитать 'lots': ожидается число")
    assert [s.external_id for p in pages["stages"] for s in p.records] == ["Pipeline / Intro"]


def test_not_shared_is_an_auth_error_naming_the_account(fake: FakeSheets) -> None:
    fake.create(SHEET, {"Client's deals": DEALS})
    with pytest.raises(AuthError, match=f"not shared with the service account {EMAIL}"):
        pull_all(connector(fake))


def test_a_missing_deals_tab_lists_the_tabs_found(fake: FakeSheets) -> None:
    fake.create(SHEET, {"Sheet1": [["x"]], "Лист2": []}, shared_with=[EMAIL])  # noqa: RUF001
    with pytest.raises(Exception, match=r"none of the mapped tabs \(tabs: 'Sheet1', 'Лист2'"):  # noqa: RUF001
        pull_all(connector(fake))
    fake.create(SHEET, {"Client's deals": [["Title"], ["x"]]}, shared_with=[EMAIL])
    with pytest.raises(BadPayloadError, match=r"no column '№' \(mapped to id\); the header "
                       "row has: Title"):
        pull_all(connector(fake))


def test_the_connector_is_read_only_with_advice(fake: FakeSheets) -> None:
    with pytest.raises(Exception, match=r"read-only: set writeback.enabled: false"):
        connector(fake).ensure_fields([])
