"""Local exports as tab grids: an ``.xlsx`` workbook, one ``.csv`` file, or a directory of them.

openpyxl opens workbooks read-only (streaming rows, constant memory) with cached formula
values (``data_only``), so a formula cell reads as what the client saw. CSV files are read
as text; the tabular reader parses numbers and dates from it. Nothing here needs network
access or credentials.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from syncd.errors import BadPayloadError, ConfigError, ConfigProblem

Grids = dict[str, list[list[Any]]]
SNIFF_BYTES = 64 * 1024


def read_path(path: Path, *, delimiter: str = "auto", encoding: str = "utf-8-sig") -> Grids:
    """``tab title -> rows`` of the export at ``path``.

    A workbook gives one grid per sheet; a CSV file one grid titled with its stem; a
    directory one grid per ``*.csv`` and every sheet of every ``*.xlsx`` in it."""
    if not path.exists():
        raise ConfigError(ConfigProblem(str(path), "connection.path", "no such file or directory"))
    if path.is_dir():
        grids: Grids = {}
        for child in sorted(path.iterdir()):
            if child.suffix.lower() in {".csv", ".xlsx", ".xlsm"} and not child.name.startswith(
                    ("~$", ".")):
                grids.update(read_path(child, delimiter=delimiter, encoding=encoding))
        return grids
    suffix = path.suffix.lower()
    if suffix in {".xlsx", ".xlsm"}:
        return read_workbook(path)
    if suffix in {".csv", ".txt"}:
        return {path.stem: read_csv(path, delimiter=delimiter, encoding=encoding)}
    message = f"{path}: not a .csv or .xlsx file (got {suffix or 'no extension'})"
    raise ConfigError(ConfigProblem(str(path), "connection.path", message))


def read_workbook(path: Path) -> Grids:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, OSError, KeyError, ValueError) as exc:
        message = f"{path}: cannot be read as an Excel workbook ({type(exc).__name__}: {exc})"
        raise BadPayloadError(message) from None
    try:
        return {sheet.title: [list(row) for row in sheet.iter_rows(values_only=True)]
                for sheet in book.worksheets}
    finally:
        book.close()


def read_csv(path: Path, *, delimiter: str = "auto", encoding: str = "utf-8-sig",
             ) -> list[list[Any]]:
    try:
        with path.open(encoding=encoding, newline="") as handle:
            sample = handle.read(SNIFF_BYTES)
            handle.seek(0)
            chosen = delimiter if delimiter != "auto" else _sniff(sample)
            return [list(row) for row in csv.reader(handle, delimiter=chosen)]
    except UnicodeDecodeError as exc:
        message = (f"{path}: not {encoding} text at byte {exc.start} (set "
                   "connection.encoding, e.g. cp1251 for an old Excel export)")
        raise BadPayloadError(message) from None


def _sniff(sample: str) -> str:
    first = sample.splitlines()[0] if sample else ""
    counts = {d: first.count(d) for d in (";", "\t", ",")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","
