"""Keep a tenant's report tabs up to date in a Google spreadsheet.

One publish, in the fewest requests the quota allows:

1. ``spreadsheets.get`` (tab titles); missing report tabs are created together in one
   ``spreadsheets.batchUpdate`` (``addSheet``).
   New tabs get a grid big enough for their table.
2. one ``values:batchGet`` of every report tab: what the sheet holds now.
3. tabs whose content differs from the new report are rewritten whole in one
   ``values:batchUpdate`` (RAW input; more only beyond Google's recommended 2 MB payload),
   after growing any grid too small for its new table (one ``updateSheetProperties``
   batch), then the part of the old content outside the new table (rows below, columns to
   the right) is cleared in one ``values:batchClear``. All are idempotent, so a retried
   request cannot duplicate anything.

Nothing is written when nothing changed: the comparison is against what the sheet really
holds (step 2), so a tab edited by hand is also put right, and no local state can drift
from the sheet. The tabs hold no pass timestamps for the same reason; the Summary tab's
"content changed" line is rewritten only together with a real change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests

from syncd.errors import FatalAPIError
from syncd.ratelimit import RateLimiter
from syncd_gsheets.client import SheetInfo, SheetsClient, a1, column_letter
from syncd_gsheets.report_tabs import Grid, render, titles
from syncd_gsheets.settings import ReportSinkOptions

log = logging.getLogger(__name__)
CHANGED_LABEL = "content changed at"


@dataclass
class PublishResult:
    created: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    requests: int = 0


def normalize(grid: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """A grid as Sheets returns it: trailing empty cells and rows dropped, whole floats as
    ints (so 3.0 written and 3 read back compare equal)."""
    rows: list[list[Any]] = []
    for row in grid:
        values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in row]
        while values and values[-1] in ("", None):
            values.pop()
        rows.append(values)
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _without_stamp(grid: list[list[Any]]) -> list[list[Any]]:
    return [row for row in grid if not (row and row[0] == CHANGED_LABEL)]


def _width(grid: Sequence[Sequence[Any]]) -> int:
    return max((len(r) for r in grid), default=0)


def _padded(grid: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows padded to one width with "" (blank cells inside the table are cleared too)."""
    width = _width(grid)
    return [list(r) + [""] * (width - len(r)) for r in grid]


def tail_ranges(title: str, old: Sequence[Sequence[Any]], new: Sequence[Sequence[Any]],
                ) -> list[str]:
    """A1 ranges of the old content outside the new table (stale rows and columns)."""
    ranges = []
    old_h, new_h = len(old), len(new)
    old_w, new_w = _width(old), _width(new)
    if old_h > new_h:
        ranges.append(a1(title, f"A{new_h + 1}", f"{column_letter(max(old_w, 1))}{old_h}"))
    if old_w > new_w and new_h:
        ranges.append(a1(title, f"{column_letter(new_w + 1)}1",
                         f"{column_letter(old_w)}{min(new_h, old_h)}"))
    return ranges


class SheetsReportSink:
    """Publishes one tenant's report to one spreadsheet."""

    def __init__(self, options: ReportSinkOptions, *, language: str = "en",
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 session: requests.Session | None = None,
                 limiter: RateLimiter | None = None) -> None:
        self.options = options
        self.language = options.language or language
        self.client = SheetsClient(
            base_url=options.base_url, spreadsheet_id=options.spreadsheet_id,
            credentials=options.credentials, requests_per_minute=options.requests_per_minute,
            timeout=options.timeout_seconds, where="reports.gsheets.credentials",
            session=session, limiter=limiter, sleep=sleep, clock=clock)
        self._now = now

    def publish(self, report: Mapping[str, Any]) -> PublishResult:
        result = PublishResult()
        names = titles(self.options.tab_prefix, self.language)
        grids = {names[key]: normalize(grid) for key, grid in
                 render(report, self.language).items()}
        grids[names["summary"]] = [*grids[names["summary"]], [], [CHANGED_LABEL, ""]]
        try:
            existing = self.client.sheets()
            missing = [t for t in grids if t not in existing]
            if missing:
                frozen = {names["violations"]: (1, 0), names["contact_matrix"]: (1, 2)}
                existing = {**existing, **self._create(missing, grids, frozen, result)}
            current = dict(zip(grids, self.client.batch_get([a1(t) for t in grids]),
                               strict=True))
            self._write_changes(grids, current, existing, names["summary"], result)
        finally:
            result.requests = self.client.requests_made
            self.client.close()
        return result

    def _create(self, missing: list[str], grids: Mapping[str, Grid],
                frozen: Mapping[str, tuple[int, int]],
                result: PublishResult) -> dict[str, SheetInfo]:
        sizes = {t: (len(grids[t]) + 1, _width(grids[t])) for t in missing}
        try:
            created = self.client.add_sheets(missing, sizes=sizes, frozen=frozen)
        except FatalAPIError as exc:
            # Another process may have created them between our get and our add: re-check.
            if exc.status != 400:
                raise
            created = self.client.sheets()
            if any(t not in created for t in missing):
                raise
        result.created = list(missing)
        return created

    def _write_changes(self, grids: dict[str, list[list[Any]]],
                       current: dict[str, list[list[Any]]], existing: Mapping[str, SheetInfo],
                       summary_title: str, result: PublishResult) -> None:
        changed = []
        for title, grid in grids.items():
            old = normalize(current.get(title) or [])
            if title == summary_title:
                same = normalize(_without_stamp(grid)) == normalize(_without_stamp(old))
            else:
                same = grid == old
            if same:
                result.unchanged.append(title)
            else:
                changed.append(title)
        if not changed:
            return
        stamp = [CHANGED_LABEL, self._now().astimezone(UTC).isoformat(timespec="seconds")]
        if summary_title not in changed:
            changed.append(summary_title)
            result.unchanged.remove(summary_title)
        grids[summary_title] = [*normalize(_without_stamp(grids[summary_title])), [], stamp]
        self._grow(changed, grids, existing)
        data: list[tuple[str, Grid]] = []
        tails: list[str] = []
        for title in changed:
            new = _padded(grids[title])
            if new:
                data.append((a1(title, "A1"), new))
            tails += tail_ranges(title, normalize(current.get(title) or []), new)
        self.client.write_values(data)
        result.written = changed
        if tails:
            self.client.clear(tails)
            result.cleared = tails

    def _grow(self, changed: list[str], grids: Mapping[str, Grid],
              existing: Mapping[str, SheetInfo]) -> None:
        """Enlarge the grids too small for their new table (values cannot be written
        outside a tab's grid); never shrinks one."""
        sizes = {}
        for title in changed:
            info = existing.get(title)
            rows, columns = len(grids[title]), _width(grids[title])
            if info is not None and (rows > info.rows or columns > info.columns):
                sizes[info.sheet_id] = (max(rows, info.rows), max(columns, info.columns))
        self.client.resize_sheets(sizes)
