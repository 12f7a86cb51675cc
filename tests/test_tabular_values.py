# ruff: noqa: RUF001
"""Custom number and date columns of a sheet or export: read in any locale by the shared
reader (syncd.values); an unreadable one is a problem naming tab, row, column and value,
and the row is kept."""

from __future__ import annotations

from pathlib import Path

from syncd_gsheets.connector import SpreadsheetConnector
from syncd_gsheets.settings import SpreadsheetSettings

from syncd.connector import PullContext
from syncd.mapping import to_float

NBSP = "\u00a0"


def export(tmp_path: Path, rows: list[str]) -> SpreadsheetConnector:
    (tmp_path / "deals.csv").write_text("\n".join(["ID;Title;Прибыль;Отложить до", *rows]),
                                        encoding="utf-8")
    settings = SpreadsheetSettings.model_validate({"path": str(tmp_path), "tabs": {"deals": {
        "number_fields": ["Прибыль"], "date_fields": ["Отложить до"]}}})
    return SpreadsheetConnector(settings, tenant="acme")


def test_a_profit_with_no_break_spaces_is_a_number(tmp_path: Path) -> None:
    crm = export(tmp_path, [f"1;Alpha;106{NBSP}000,00;31.12.2026",
                            "2;Beta;1 234,50 руб.;2026-12-31"])
    pages = list(crm.pull("deals", None, PullContext()))
    deals = {d.external_id: d for p in pages for d in p.records}
    assert deals["1"].fields == {"Прибыль": 106000.0, "Отложить до": "2026-12-31"}
    assert deals["2"].fields == {"Прибыль": 1234.5, "Отложить до": "2026-12-31"}
    assert not [p for page in pages for p in page.problems]


def test_an_unreadable_custom_value_is_reported_and_the_row_kept(tmp_path: Path) -> None:
    crm = export(tmp_path, ["1;Alpha;много;someday"])
    pages = list(crm.pull("deals", None, PullContext()))
    deals = [d for p in pages for d in p.records]
    assert [(d.external_id, d.fields) for d in deals] == [
        ("1", {"Прибыль": None, "Отложить до": None})]
    problems = [p for page in pages for p in page.problems]
    assert len(problems) == 2
    assert problems[0].startswith("tab 'deals' row 2: Прибыль: cannot read 'много'")
    assert "Отложить до" in problems[1] and "'someday'" in problems[1]


def test_an_unlisted_column_keeps_its_text_and_the_mapping_reads_it(tmp_path: Path) -> None:
    (tmp_path / "deals.csv").write_text(f"ID;Profit\n1;106{NBSP}000,00\n", encoding="utf-8")
    crm = SpreadsheetConnector(SpreadsheetSettings.model_validate({"path": str(tmp_path)}),
                               tenant="acme")
    deal = next(d for p in crm.pull("deals", None, PullContext()) for d in p.records)
    assert deal.fields["Profit"] == f"106{NBSP}000,00"
    assert to_float(deal.fields["Profit"]) == 106000.0, "profit no longer vanishes from karma"
