"""A small CRM export (deals, companies, contacts, activities) as CSV files and as XLSX.

``python tests/data/sample_export.py`` regenerates ``tests/data/sample_export/*.csv`` and
``tests/data/sample_export.xlsx``; the tests write fresh copies into a temporary directory.
Both hold the same rows, in the shapes each format really has: CSV is all text (dates as
``DD.MM.YYYY`` or ISO, ``;`` separated as Excel writes it in many locales), XLSX has date
cells, number cells and a text cell for the id ``00123``.

What an audit must find (the tenant is ``SAMPLE_TENANT`` on Sales Book simple-product-5):
D-003 has no lead source (``no_lead_source``) and a loss reason from the catalogue;
``00123`` has no contact (``no_contact``); D-004 sits in an unmapped stage
(``unmapped_stage``); D-007 was lost for an unknown reason (``bad_loss_reason``);
D-002 was won by Beta LLC (client karma). Row 7 of the Deals tab (D-006) has a creation
date that is not a date: it is reported with its tab and row number and skipped.
"""

from __future__ import annotations

import csv
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

DEAL_HEADER = ["Deal ID", "Deal", "Status", "Pipeline", "Stage", "Owner", "Client", "Contact",
               "Amount", "Created", "Stage changed", "Won on", "Lost on", "Loss reason",
               "Source", "Offer link", "Invoice no."]
D = date
DEALS: list[list[Any]] = [
    ["D-001", "Laptops for Acme", "open", "Sales", "Contact", "anna@example.com", "Acme",
     "Ivan Petrov", 1200, D(2026, 10, 1), D(2026, 10, 1), None, None, None, "Website", None,
     None],
    ["D-002", "Office chairs", "won", "Sales", "Closing", "boris@example.com", "Beta LLC",
     "Olga Smirnova", 5000.5, D(2026, 9, 1), D(2026, 9, 15), D(2026, 9, 20), None, None,
     "Referral", "https://example.com/offer/2", "INV-7"],
    ["D-003", "Printer", "lost", "Sales", "Presentation", "anna@example.com", "Acme",
     "Ivan Petrov", 300, D(2026, 8, 1), D(2026, 8, 10), None, D(2026, 8, 20),
     "Price too high", None, "https://example.com/offer/3", None],
    ["D-004", "Old negotiation", "open", "Sales", "Negotiation (old)", "boris@example.com",
     "Beta LLC", "Olga Smirnova", 800, D(2026, 7, 1), D(2026, 7, 1), None, None, None,
     "Website", None, None],
    ["00123", "Monitors", "open", "Sales", "Needs discovery", "anna@example.com", "Gamma",
     None, 2500, D(2026, 10, 5), D(2026, 10, 6), None, None, None, "Exhibition", None, None],
    ["D-006", "Broken row", "open", "Sales", "Contact", "anna@example.com", "Acme", None,
     100, "someday", None, None, None, None, "Website", None, None],
    ["D-007", "Desks", "lost", "Sales", "Closing", "boris@example.com", "Gamma", None, 900,
     D(2026, 6, 1), D(2026, 6, 10), None, D(2026, 6, 20), "Moon phase", "Website", None, None],
]
COMPANY_HEADER = ["Company ID", "Name", "Segment", "Owner"]
COMPANIES: list[list[Any]] = [
    ["C-1", "Acme", "SMB", "anna@example.com"],
    ["C-2", "Beta LLC", "Enterprise", "boris@example.com"],
    ["C-3", "Gamma", "SMB", "anna@example.com"],
]
CONTACT_HEADER = ["Contact ID", "Name", "Company", "Phone"]
CONTACTS: list[list[Any]] = [
    ["P-1", "Ivan Petrov", "C-1", "+7 900 000-00-01"],
    ["P-2", "Olga Smirnova", "C-2", "+7 900 000-00-02"],
]
ACTIVITY_HEADER = ["ID", "Type", "Subject", "Done", "Date", "Deal ID", "Owner"]
ACTIVITIES: list[list[Any]] = [
    ["A-1", "call", "First call", "yes", datetime(2026, 10, 1, 14, 30), "D-001",
     "anna@example.com"],
    ["A-2", "meeting", "Demo", "no", D(2030, 1, 15), "D-001", "anna@example.com"],
    ["A-3", "call", "How are the chairs?", "yes", D(2026, 9, 22), "D-002",
     "boris@example.com"],
]
TABS = {"Deals": (DEAL_HEADER, DEALS), "Companies": (COMPANY_HEADER, COMPANIES),
        "Contacts": (CONTACT_HEADER, CONTACTS), "Activities": (ACTIVITY_HEADER, ACTIVITIES)}

#: The tenant file (without ``connection.path``) both exports are audited with.
SAMPLE_TENANT: dict[str, Any] = {
    "plugin": "spreadsheet",
    "salesbook": "simple-product-5",
    "timezone": "Europe/Moscow",
    "connection": {
        "timezone": "Europe/Moscow",
        "tabs": {
            "deals": {"columns": {"id": "Deal ID", "title": "Deal", "company": "Client",
                                  "value": "Amount", "created_at": "Created",
                                  "stage_changed_at": "Stage changed", "won_at": "Won on",
                                  "lost_at": "Lost on", "lost_reason": "Loss reason"}},
            "companies": {"columns": {"id": "Company ID"}},
            "contacts": {"columns": {"id": "Contact ID"}},
            "activities": {"columns": {"due": "Date", "deal": "Deal ID"}},
        },
    },
    "mapping": {
        "stages": {"Sales": {"Contact": "contact", "Needs discovery": "needs_discovery",
                             "Presentation": "presentation", "Objections": "objections",
                             "Closing": "closing"}},
        "fields": {"deal": {"lead_source": "Source", "estimate_link": "Offer link",
                            "invoice_number": "Invoice no."},
                   "company": {"segment": "Segment"}},
    },
    "writeback": {"enabled": False},
}
BAD_ROW = ("Deals", 7)


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d.%m.%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y")
    if isinstance(value, float):
        return str(value).replace(".", ",")  # a Russian-locale export
    return str(value)


def write_csv_dir(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for title, (header, rows) in TABS.items():
        with (directory / f"{title}.csv").open("w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f, delimiter=";")
            writer.writerow(header)
            for row in rows:
                values = [_csv_text(v) for v in row]
                while values and values[-1] == "":
                    values.pop()  # ragged, as many exporters write it
                writer.writerow(values)
    return directory


def write_xlsx(path: Path) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, (header, rows) in TABS.items():
        sheet = book.create_sheet(title)
        sheet.append(header)
        for row in rows:
            sheet.append(list(row))
    # The id 00123 is a text cell (Excel would otherwise show 123).
    for cell in book["Deals"]["A"]:
        cell.number_format = "@"
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    write_csv_dir(here / "sample_export")
    write_xlsx(here / "sample_export.xlsx")
    sys.stdout.write(f"wrote {here / 'sample_export'} and {here / 'sample_export.xlsx'}\n")
