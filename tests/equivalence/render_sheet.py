# ruff: noqa: RUF001 - Russian client data: Cyrillic letters are the point
"""The logical client as the Google spreadsheet a small client keeps instead of a CRM, and
that sheet's exports: CSV (Russian locale, as Excel/Sheets write it) and XLSX.

One tab per entity, Russian headers, e-mails for managers, company names in the deals'
"Клиент" column, a "История этапов" tab for the stage history (docs/gsheets.md). Cells
hold what each format really holds:

* Sheets API (``valueRenderOption=UNFORMATTED_VALUE``, ``dateTimeRenderOption=SERIAL_NUMBER``,
  https://developers.google.com/sheets/api/reference/rest/v4/DateTimeRenderOption): numbers
  as numbers, dates and datetimes as serial numbers (days since 1899-12-30), text as text;
* CSV (``;``-separated, UTF-8 with BOM): everything is text — ``30.11.2026 12:00``,
  amounts with a no-break space between thousands and a decimal comma (``1 250 000,50``);
* XLSX: date cells, number cells, text cells (openpyxl).
"""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path
from typing import Any

from . import dataset as L
from .ids import IdMap

STATUS = {"open": "В работе", "won": "Выиграна", "lost": "Проиграна"}
DEALS = ["№", "Сделка", "Статус", "Воронка", "Этап", "Менеджер", "Клиент", "Контакт", "Сумма",
         "Создана", "Этап изменён", "Дата выигрыша", "Дата проигрыша", "Причина отказа",
         "Источник", "Прибыль", "Тендер", "Ссылка на смету", "Номер договора", "Отложить до",
         "Причина отсрочки"]
COMPANIES = ["ИНН", "Название", "Менеджер", "Сегмент", "NPS", "Инциденты"]
CONTACTS = ["№", "ФИО", "Клиент"]
ACTIVITIES = ["№", "Тип", "Тема", "Выполнено", "Дата", "Создана", "Сделка", "Клиент",
              "Менеджер", "Комментарий"]
HISTORY = ["№", "Сделка", "Воронка", "Из этапа", "В этап", "Дата"]
USERS = ["№", "Имя", "Почта"]
TAB_TITLES = {"deals": "Сделки", "companies": "Клиенты", "contacts": "Контакты",
              "activities": "Контакты с клиентами", "stage_history": "История этапов",
              "users": "Сотрудники"}
SERIAL_EPOCH = datetime(1899, 12, 30)


def _local(value: datetime | None) -> datetime | None:
    """A sheet's datetimes carry no timezone: the tenant's wall clock."""
    return value.astimezone(L.TZ).replace(tzinfo=None) if value is not None else None


def deal_id(deal: L.Deal) -> str:
    return f"СД-{int(deal.key[1:]):04d}"


def inn(company: L.Company) -> str:
    return f"77010000{int(company.key[1:]):02d}"


def tabs(deals: list[L.Deal]) -> tuple[dict[str, tuple[list[str], list[list[Any]]]], IdMap]:
    """Tab title -> (header, rows) with Python values (str, float, int, date, datetime)."""
    ids = IdMap()
    for user in L.USERS:
        ids.add("user", user.key, user.key)  # the "Сотрудники" tab's "№"
    for company in L.COMPANIES:
        ids.add("company", inn(company), company.key)
    names = {c.key: c.name for c in L.COMPANIES}
    emails = {u.key: u.email for u in L.USERS}
    deal_rows, activity_rows, history_rows = [], [], []
    for deal in deals:
        ids.add("deal", deal_id(deal), deal.key)
        won = deal.closed if deal.outcome == "won" else None
        lost = deal.closed if deal.outcome == "lost" else None
        deal_rows.append([
            deal_id(deal), deal.title, STATUS[deal.outcome], deal.pipeline, deal.stage_title,
            emails[deal.owner], names[deal.company],
            deal.contact, deal.value,
            _local(deal.created), _local(deal.moved), _local(won), _local(lost),
            deal.reason if deal.outcome == "lost" else None, deal.lead_source, deal.profit,
            "да" if deal.tender else "нет", deal.estimate_link, deal.contract_number,
            deal.snooze_until, deal.snooze_reason])
        titles = [L.STAGES.get(s, L.PARTNER_STAGE[1]) for s, _ in deal.path]
        for n, (_, at) in enumerate(deal.path):  # the first row: created into its stage
            history_rows.append([f"{deal_id(deal)}/{n + 1}", deal_id(deal), deal.pipeline,
                                 titles[n - 1] if n else None, titles[n], _local(at)])
        for activity in deal.activities:
            activity_rows.append([
                activity.key, L.KIND_TITLES[activity.kind], activity.subject,
                "да" if activity.done else "нет", _local(activity.at), _local(activity.created),
                deal_id(deal), names[deal.company], emails[activity.owner], activity.note or None])
    company_rows = [[inn(c), c.name, emails[c.owner], c.segment, c.nps,
                     c.incidents or None] for c in L.COMPANIES]
    contact_rows = [[key, L.contact_name(key), names[company]]
                    for key, company in L.contacts(deals).items()]
    user_rows = [[u.key, u.name, u.email] for u in L.USERS]
    return {TAB_TITLES["deals"]: (DEALS, deal_rows),
            TAB_TITLES["companies"]: (COMPANIES, company_rows),
            TAB_TITLES["contacts"]: (CONTACTS, contact_rows),
            TAB_TITLES["activities"]: (ACTIVITIES, activity_rows),
            TAB_TITLES["stage_history"]: (HISTORY, history_rows),
            TAB_TITLES["users"]: (USERS, user_rows)}, ids


# --- the three formats ----------------------------------------------------------------------
def sheets_cell(value: Any) -> Any:
    """A cell as ``values:batchGet`` returns it unformatted (dates as serial numbers)."""
    if isinstance(value, datetime):
        delta = value - SERIAL_EPOCH
        return delta.days + delta.seconds / 86400
    if isinstance(value, date):
        return (value - SERIAL_EPOCH.date()).days
    return "" if value is None else value


def typed_text(value: float) -> str:
    """An amount typed into a text-formatted cell by a Russian user: ``1 250 000,50``."""
    return f"{value:,.2f}".replace(",", " ").replace(".", ",")


def sheets_tabs(deals: list[L.Deal]) -> tuple[dict[str, list[list[Any]]], IdMap]:
    """The tabs as the Sheets API returns them; in every third deal row the amounts were
    typed as text (a text cell comes back as the string the user typed)."""
    data, ids = tabs(deals)
    header, rows = data[TAB_TITLES["deals"]]
    amounts = [header.index("Сумма"), header.index("Прибыль")]
    for row in rows:
        if int(row[0][3:]) % 3 == 0:
            for column in amounts:
                if isinstance(row[column], float):
                    row[column] = typed_text(row[column])
    return {title: [header, *[[sheets_cell(v) for v in row] for row in rows]]
            for title, (header, rows) in data.items()}, ids


NBSP = "\u00a0"


def csv_text(value: Any) -> str:
    """How a Russian-locale export writes a cell."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%d.%m.%Y %H:%M")
    if isinstance(value, date):
        return value.strftime("%d.%m.%Y")
    if isinstance(value, float):
        whole, frac = f"{abs(value):,.2f}".split(".")
        return ("-" if value < 0 else "") + whole.replace(",", NBSP) + "," + frac
    return str(value)


def write_csv(deals: list[L.Deal], directory: Path) -> IdMap:
    data, ids = tabs(deals)
    directory.mkdir(parents=True, exist_ok=True)
    for title, (header, rows) in data.items():
        with (directory / f"{title}.csv").open("w", encoding="utf-8-sig", newline="") as f:
            writer = csv.writer(f, delimiter=";")
            writer.writerow(header)
            writer.writerows([csv_text(v) for v in row] for row in rows)
    return ids


def write_xlsx(deals: list[L.Deal], path: Path) -> IdMap:
    from openpyxl import Workbook

    data, ids = tabs(deals)
    book = Workbook()
    book.remove(book.active)
    for title, (header, rows) in data.items():
        sheet = book.create_sheet(title)
        sheet.append(header)
        for row in rows:
            sheet.append(list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return ids
