"""The gsheets plugin for syncd: Google Sheets (and local CSV/XLSX exports) as a client's
CRM, and Google Sheets as the report everyone reads. See docs/gsheets.md."""

from syncd_gsheets.connector import GSheetsConnector, SpreadsheetConnector

__all__ = ["GSheetsConnector", "SpreadsheetConnector"]
