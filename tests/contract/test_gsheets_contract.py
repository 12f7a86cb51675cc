"""Google Sheets contract: documented ``ValueRange`` / ``BatchGetValuesResponse`` bodies
through our client and tabular reader.

``gsheets/values_get_sample.json`` is the "Read a single range" response of the official
samples page https://developers.google.com/workspace/sheets/api/samples/reading (default
FORMATTED_VALUE rendering: locale text such as "$20.50" and "3/1/2016").
``gsheets/values_batchGet_unformatted.json`` is the same sheet as syncd requests it
(``values:batchGet`` with UNFORMATTED_VALUE and SERIAL_NUMBER), shaped as the reference
https://developers.google.com/workspace/sheets/api/reference/rest/v4/spreadsheets.values/batchGet
and ``ValueRange`` document it: trailing empty cells omitted (ragged rows), no ``values`` key
at all for an empty range, dates as serial days since 1899-12-30.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import responses
from syncd_fakes.gsheets.server import make_key
from syncd_gsheets.client import SheetsClient
from syncd_gsheets.settings import SpreadsheetSettings
from syncd_gsheets.tabular import read_tables

HERE = Path(__file__).parent / "gsheets"
BASE = "https://sheets.test"
TOKEN_URI = "https://oauth2.test/token"
SHEET = "1AbCdEfGhIjKlMnOp"
KEY, _PUBLIC = make_key("contract@syncd-test.iam.gserviceaccount.com", TOKEN_URI)


def load(name: str) -> Any:
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))


SETTINGS = SpreadsheetSettings(path="x", tabs={"deals": {"columns": {
    "id": "Item", "value": "Cost", "created_at": "Ship Date"}}})


@responses.activate
def test_batch_get_returns_ragged_rows_and_an_empty_range_as_no_rows() -> None:
    body = load("values_batchGet_unformatted")
    responses.add(responses.POST, TOKEN_URI, json={"access_token": "ya29.contract",
                                                   "expires_in": 3600, "token_type": "Bearer"})
    responses.add(responses.GET, f"{BASE}/v4/spreadsheets/{SHEET}/values:batchGet", json=body)
    client = SheetsClient(base_url=BASE, spreadsheet_id=SHEET, credentials=KEY,
                          sleep=lambda s: None, clock=lambda: 0.0)
    deals, companies = client.batch_get(["'Deals'", "'Companies'"])
    assert deals == body["valueRanges"][0]["values"]
    assert deals[-1] == ["Totals"], "trailing empty cells are omitted"
    assert companies == [], "an empty range has no values key at all"


def test_unformatted_numbers_and_serial_dates_are_read_exactly() -> None:
    grid = load("values_batchGet_unformatted")["valueRanges"][0]["values"]
    data = read_tables({"Deals": grid}, SETTINGS)
    assert data.problems == []
    deals = {d.external_id: d for d in data.deals}
    assert list(deals) == ["Wheel", "Door", "Engine", "Totals"]
    assert deals["Wheel"].value == 20.5
    assert deals["Wheel"].created_at == datetime(2016, 3, 1, tzinfo=UTC), "serial 42430"
    assert deals["Engine"].created_at == datetime(2016, 3, 20, 13, 30, tzinfo=UTC), \
        "the fraction is the time of day"
    assert deals["Wheel"].fields == {"Stocked": 4}, "an unmapped header is a custom field"
    assert deals["Totals"].value == 0.0 and deals["Totals"].created_at is None, \
        "a ragged row's missing cells are empty"
    assert [f.name for f in data.fields] == ["Stocked"]


def test_formatted_locale_text_is_read_or_reported_never_dropped() -> None:
    """The default rendering (what a person sees) is why syncd asks for UNFORMATTED values;
    if such text does arrive, every row is either read or reported with its row number."""
    grid = load("values_get_sample")["values"]
    data = read_tables({"Deals": grid}, SETTINGS)
    read = {d.external_id for d in data.deals}
    reported = {p.row for p in data.problems}
    assert len(read) + len(reported) == 4, (read, data.problems)
    for problem in data.problems:
        assert problem.tab == "Deals" and 2 <= problem.row <= 5
    for deal in data.deals:
        assert deal.value in (20.5, 15.0, 100.0, 135.5), "never '$20.50' read as 2050"
