"""Properties of the tabular reader (Hypothesis): the shape of a grid never changes what is
read, and no cell value, however odd, escapes as anything but a row problem."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from syncd_gsheets.settings import SpreadsheetSettings
from syncd_gsheets.tabular import read_tables

from syncd.errors import BadPayloadError

SETTINGS = SpreadsheetSettings(path="/unused")
HEADER = ["ID", "Title", "Status", "Stage", "Owner", "Company", "Value", "Created at", "Note"]

cells = st.one_of(
    st.none(), st.just(""), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["open", "won", "lost", "01.10.2026", "2026-10-01T10:00", "00123",
                     "1 234,50", "yes", "да", "45000.5"]),
)
rows = st.lists(st.lists(cells, max_size=len(HEADER) + 2), max_size=12)


def api_trimmed(grid: list[list[Any]]) -> list[list[Any]]:
    """What the Sheets values API returns: trailing empty cells and rows dropped."""
    out = []
    for row in grid:
        values = list(row)
        while values and values[-1] in ("", None):
            values.pop()
        out.append(values)
    while out and not out[-1]:
        out.pop()
    return out


def padded(grid: list[list[Any]]) -> list[list[Any]]:
    width = max((len(r) for r in grid), default=0)
    return [list(r) + [""] * (width - len(r)) for r in grid] + [[""] * width] * 3


def outcome(grid: list[list[Any]]) -> Any:
    try:
        data = read_tables({"Deals": [HEADER, *grid]}, SETTINGS)
    except BadPayloadError as exc:
        return ("error", str(exc))
    return ([(d.external_id, d.title, d.status, d.stage_id, d.owner_id, d.company_id, d.value,
              d.created_at, d.fields) for d in data.deals],
            [(p.tab, p.row, p.problem) for p in data.problems])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows)
def test_trailing_blanks_never_change_what_is_read(grid: list[list[Any]]) -> None:
    full = padded(grid)
    assert outcome(api_trimmed(full)) == outcome(full)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows)
def test_any_cell_value_is_read_or_reported_never_raised(grid: list[list[Any]]) -> None:
    data = read_tables({"Deals": [HEADER, *grid]}, SETTINGS)
    data_rows = sum(1 for r in grid if any(v not in (None, "") and not (
        isinstance(v, str) and not v.strip()) for v in r))
    assert len(data.deals) + len(data.problems) == data_rows, "every row: a record or a problem"
    for problem in data.problems:
        assert problem.tab == "Deals" and 2 <= problem.row <= len(grid) + 1
