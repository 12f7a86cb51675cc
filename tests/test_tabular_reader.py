"""The tabular reader: exact cell values, header mapping, ragged rows, bad rows reported."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from syncd_gsheets import values
from syncd_gsheets.connector import MAX_PROBLEMS, SpreadsheetConnector
from syncd_gsheets.settings import SpreadsheetSettings
from syncd_gsheets.tabular import read_tables

from syncd.connector import PullContext
from syncd.errors import BadPayloadError


def settings(**extra: Any) -> SpreadsheetSettings:
    return SpreadsheetSettings.model_validate({"path": "/unused", **extra})


# --- cells -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("serial", "expected"), [
    (45000, datetime(2023, 3, 15)),
    (45000.5, datetime(2023, 3, 15, 12)),
    (46296.604166666664, datetime(2026, 10, 1, 14, 30)),  # 14:30, not 14:29:59.999
    (1, datetime(1899, 12, 31)),
])
def test_serial_numbers_convert_exactly(serial: float, expected: datetime) -> None:
    assert values.from_serial(serial) == expected


def test_serial_dates_are_in_the_configured_timezone() -> None:
    from zoneinfo import ZoneInfo
    moment = values.moment(46296.604166666664, ZoneInfo("Europe/Moscow"))
    assert moment == datetime(2026, 10, 1, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(("cell", "expected"), [
    ("00123", "00123"), (123, "123"), (123.0, "123"), (" D-7 ", "D-7"), ("", None),
    (None, None),
])
def test_ids_are_read_as_text_exactly(cell: Any, expected: str | None) -> None:
    assert values.ident(cell) == expected


@pytest.mark.parametrize("cell", ["nan", "inf", float("nan"), "12abc", True])
def test_unreadable_numbers_raise(cell: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        values.number(cell)


@pytest.mark.parametrize("cell", [1.5, True])
def test_unreadable_ids_raise(cell: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        values.ident(cell)


@pytest.mark.parametrize(("cell", "expected"), [
    ("1 234,50", 1234.5), ("1,234.50", 1234.5), (7, 7.0), ("5000,5", 5000.5), ("", None),
])
def test_numbers_from_any_locale(cell: Any, expected: float | None) -> None:
    assert values.number(cell) == expected


@pytest.mark.parametrize(("cell", "expected"), [
    ("01.10.2026", date(2026, 10, 1)), ("2026-10-01", date(2026, 10, 1)),
    (46296, date(2026, 10, 1)), (datetime(2026, 10, 1, 9), date(2026, 10, 1)),
])
def test_dates_in_every_shape(cell: Any, expected: date) -> None:
    assert values.day(cell) == expected


# --- tabs ------------------------------------------------------------------------------------
DEALS = [
    ["ID", "Title", "Status", "Stage", "Owner", "Company", "Value", "Created at", "Source"],
    ["1", "Alpha", "open", "Intro", "ann@x.io", "Acme", 100, 46296],
    [],  # an empty row in the middle is skipped, not an error
    [2, "Beta", "Выиграна", "Closing", "bob@x.io", "C-9", "1 500", 46296.5, "Web"],
    ["", "no id"],
    ["3", "Gamma", "maybe", "Intro"],
    ["1", "Alpha again"],
    ["4", "Delta", "open", "Intro", "", "", "", "soon"],
]
COMPANIES = [["ID", "Name", "Segment"], ["C-1", "Acme", "SMB"], ["C-9", "Nine"]]


def test_ragged_rows_mapped_by_header_with_bad_rows_reported_by_tab_and_row() -> None:
    data = read_tables({"Deals": DEALS, "Companies": COMPANIES},
                       settings(status_values={"выиграна": "won"}))
    deals = {d.external_id: d for d in data.deals}
    assert sorted(deals) == ["1", "2"]
    alpha, beta = deals["1"], deals["2"]
    assert alpha.company_id == "C-1", "a company named in a deal is resolved to its id"
    assert alpha.fields == {"Source": None}
    assert alpha.value == 100.0
    assert alpha.created_at == datetime(2026, 10, 1, tzinfo=UTC)
    assert beta.status == "won"
    assert beta.value == 1500.0
    assert beta.fields == {"Source": "Web"}
    assert beta.created_at == datetime(2026, 10, 1, 12, tzinfo=UTC)
    problems = [(p.tab, p.row, p.problem.split(":")[0]) for p in data.problems]
    assert problems == [
        ("Deals", 5, "no id"),
        ("Deals", 6, "unknown status 'maybe' (known"),
        ("Deals", 7, "duplicate id '1' (first at row 2); this row is skipped"),
        ("Deals", 8, "created_at"),
    ]
    assert str(data.problems[0]) == "tab 'Deals' row 5: no id"


def test_stages_pipelines_and_users_are_derived_for_the_stage_mapping() -> None:
    data = read_tables({"Deals": DEALS}, settings(default_pipeline="Sales",
                                                  status_values={"Выиграна": "won"}))
    assert [(p.external_id, p.name) for p in data.pipelines] == [("Sales", "Sales")]
    assert [(s.external_id, s.name, s.order) for s in data.stages] == [
        ("Sales / Intro", "Intro", 0), ("Sales / Closing", "Closing", 1)]
    assert {u.external_id: u.email for u in data.users} == {"ann@x.io": "ann@x.io",
                                                           "bob@x.io": "bob@x.io"}
    assert [c.external_id for c in data.companies] == ["Acme", "C-9"], (
        "without a companies tab the companies named by deals become records")


def test_explicit_column_mapping_and_missing_columns() -> None:
    grid = [["Сделка №", "Название", "Этап"], ["7", "Окна", "Встреча"]]
    mapped = settings(tabs={"deals": {"tab": "Сделки", "columns": {
        "id": "Сделка №", "title": "Название", "stage": "Этап"}}})
    data = read_tables({"Сделки": grid}, mapped)
    assert [(d.external_id, d.title, d.stage_id) for d in data.deals] == [
        ("7", "Окна", "Pipeline / Встреча")]

    wrong = settings(tabs={"deals": {"columns": {"id": "Deal number"}}})
    with pytest.raises(BadPayloadError, match="tab 'Deals': no column 'Deal number'"):
        read_tables({"Deals": [["ID"], ["1"]]}, wrong)
    with pytest.raises(BadPayloadError, match=r"no deals tab 'Deals'.*'Sheet1'"):
        read_tables({"Sheet1": [["ID"]]}, settings())
    with pytest.raises(BadPayloadError, match="tab 'Deals': no id column"):
        read_tables({"Deals": [["Name"], ["x"]]}, settings())


def test_unknown_column_keys_are_rejected_in_settings() -> None:
    with pytest.raises(ValueError, match="unknown column"):
        settings(tabs={"deals": {"columns": {"idd": "ID"}}})


def test_activities_dates_done_and_company_from_deal() -> None:
    activities = [
        ["ID", "Type", "Done", "Due", "Deal"],
        ["a1", "call", "да", 46296.604166666664, "1"],
        ["a2", "meeting", "", "2030-01-15", "1"],
        ["a3", "", "yes", "2030-01-15", "1"],
    ]
    data = read_tables({"Deals": DEALS[:2], "Companies": COMPANIES, "Activities": activities},
                       settings())
    by_id = {a.external_id: a for a in data.activities}
    call, meeting = by_id["a1"], by_id["a2"]
    assert call.done and call.due_date == date(2026, 10, 1)
    assert call.due_at == datetime(2026, 10, 1, 14, 30, tzinfo=UTC)
    assert call.done_at == call.due_at, "a done activity without done_at is done when due"
    assert call.company_id == "C-1", "the deal's company"
    assert not meeting.done and meeting.due_at is None and meeting.done_at is None
    assert [(p.tab, p.row) for p in data.problems] == [("Activities", 4)]
    assert [t.key for t in data.activity_types] == ["call", "meeting"]


def test_stage_history_tab() -> None:
    history = [["Deal", "From stage", "To stage", "At"],
               ["1", "", "Intro", 46290], ["1", "Intro", "Closing", 46295]]
    data = read_tables({"Deals": DEALS[:2], "Stage history": history}, settings())
    changes = data.stage_history
    assert [(c.deal_id, c.from_stage_id, c.to_stage_id) for c in changes] == [
        ("1", None, "Pipeline / Intro"), ("1", "Pipeline / Intro", "Pipeline / Closing")]
    again = read_tables({"Deals": DEALS[:2], "Stage history": history}, settings())
    assert [c.external_id for c in again.stage_history] == [c.external_id for c in changes], (
        "history ids are stable across passes")


# --- rows removed from the sheet -----------------------------------------------------------
def _pull(connector: Any, stream: str, cursor: str | None) -> tuple[list[str], str | None]:
    pages = list(connector.pull(stream, cursor, PullContext()))
    deleted = [i for p in pages for i in p.deleted_ids]
    return deleted, pages[-1].cursor


def test_rows_removed_from_a_tab_are_reported_deleted_on_the_next_pass(tmp_path: Any) -> None:
    path = tmp_path / "Deals.csv"
    path.write_text("ID,Title\n1,a\n2,b\n3,c\n", encoding="utf-8")
    config = settings(path=str(path))

    def pull(cursor: str | None) -> tuple[list[str], str | None]:
        return _pull(SpreadsheetConnector(config, tenant="t"), "deals", cursor)

    deleted, cursor = pull(None)
    assert deleted == [] and cursor is not None, "the first pass only remembers the ids"
    path.write_text("ID,Title\n1,a\n3,c\n", encoding="utf-8")
    deleted, cursor = pull(cursor)
    assert deleted == ["2"]
    path.write_text("ID,Title,Created at\n1,a,never\n3,c\n", encoding="utf-8")
    deleted, cursor = pull(cursor)
    assert deleted == [], "an unreadable row is skipped, not deleted"
    path.write_text("ID,Title\n,nameless\n", encoding="utf-8")
    deleted, cursor = pull(cursor)
    assert deleted == [], "a row without a readable id might be any record: delete nothing"
    deleted, _ = _pull(SpreadsheetConnector(config, tenant="t"), "companies", "ids1:garbage")
    assert deleted == [], "no companies tab: nothing deleted"


def test_a_broken_column_does_not_flood_the_summary(tmp_path: Any) -> None:
    path = tmp_path / "Deals.csv"
    rows = "".join(f"{i},x,not a date\n" for i in range(1, 201))
    path.write_text("ID,Title,Created at\n" + rows, encoding="utf-8")
    crm = SpreadsheetConnector(settings(path=str(path)), tenant="t")
    problems = [p for page in crm.pull("deals", None, PullContext()) for p in page.problems]
    assert len(problems) == MAX_PROBLEMS + 1
    assert problems[0].startswith("tab 'Deals' row 2: created_at")
    assert problems[-1] == f"tab 'Deals': {200 - MAX_PROBLEMS} more unreadable rows skipped"


def test_a_duplicate_header_reads_the_first_column() -> None:
    grid = [["ID", "Source", "Source", "id"], ["1", "Web", "Fair", "X"]]
    deal = read_tables({"Deals": grid}, settings()).deals[0]
    assert deal.external_id == "1"
    assert deal.fields == {"Source": "Web"}


def test_tab_titles_match_file_names_whatever_their_case(tmp_path: Any) -> None:
    (tmp_path / "deals.csv").write_text("ID;Title;Created at\n1;a\n2;b;never\n",
                                        encoding="utf-8")
    (tmp_path / "COMPANIES.csv").write_text("ID;Name\nC-1;Acme\n", encoding="utf-8")
    crm = SpreadsheetConnector(settings(path=str(tmp_path)), tenant="t")
    deals = list(crm.pull("deals", None, PullContext()))
    assert [d.external_id for p in deals for d in p.records] == ["1"]
    assert [p for page in deals for p in page.problems] == [
        "tab 'deals' row 3: created_at: cannot read 'never' as a date (YYYY-MM-DD, "
        "DD.MM.YYYY or ISO 8601)"]
    companies = [c.name for p in crm.pull("companies", None, PullContext()) for c in p.records]
    assert companies == ["Acme"]
