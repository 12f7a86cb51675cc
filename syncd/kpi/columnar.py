"""KPIs and the contact matrix over a :class:`~syncd.audit.columns.DealTable`: the same
results as :func:`syncd.kpi.compute_kpis`, counted with array expressions.

The reference accumulators (``Funnel``, ``ForwardMoves``, ``Accounts``, ``ContactMatrix``)
keep their state small (counters, histograms, per-company sums); here that state is filled
from columns in one go, and their own ``result`` methods turn it into the report's figures,
so both paths print the same thing. ``table_from_records`` builds a table from the records
``compute_kpis`` reads (tests, small tenants).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from syncd.audit.columns import (
    I64,
    LOST,
    NONE,
    OPEN,
    OTHER,
    PART_SIZE,
    UNMAPPED,
    WON,
    ActivityColumns,
    Codes,
    DealTable,
    give_back_memory,
    micros,
)
from syncd.audit.facts import DEFERRED
from syncd.engine_model import ActivityRecord, Clock, CompanyRecord, DealRecord
from syncd.kpi.account import NO_SOURCE, YEAR_SECONDS, Accounts, _Totals
from syncd.kpi.compute import DEFAULT_MONTHS, DEFAULT_WEEKS, KpiState
from syncd.kpi.funnel import DAY, STEPS_PER_DAY, ForwardMoves, Funnel
from syncd.kpi.matrix import CALL, VISIT, ContactMatrix, matrix_result, matrix_row
from syncd.salesbook import SalesBook

__all__ = ["MonthIndex", "table_from_records", "table_kpis"]

US = 1_000_000


class MonthIndex:
    """Local months of many moments at once (the table ``Clock.month`` bisects)."""

    def __init__(self, clock: Clock) -> None:
        starts, labels = clock.month_table()
        self.clock = clock
        self.starts = np.array([round(s * US) for s in starts], dtype=np.int64)
        self.labels = list(labels)

    def codes(self, moments: I64) -> npt.NDArray[np.intp]:
        """Index into ``labels`` of each moment (microseconds; never NONE)."""
        codes = np.searchsorted(self.starts, moments, side="right") - 1
        outside = (moments < self.starts[0]) | (moments >= self.starts[-1])
        for i in np.flatnonzero(outside):  # before 1990 or after 2070: ask zoneinfo
            label = self.clock.month(_datetime(int(moments[i])))
            if label not in self.labels:
                self.labels.append(label)
            codes[i] = self.labels.index(label)
        return codes


def _datetime(value: int) -> datetime:
    from syncd.audit.columns import moment

    found = moment(value)
    assert found is not None
    return found


def _need(table: DealTable) -> None:
    if not table.groups_are_companies or table.owner is None or table.value is None:
        raise ValueError("KPIs need a table of companies, owners and values "
                         "(table_from_records, or a loader that fills them)")


def table_kpis(table: DealTable, book: SalesBook, tz: ZoneInfo, now: datetime,
               companies: dict[str, CompanyRecord], names: dict[str, str], *,
               months: int = DEFAULT_MONTHS, weeks: int = DEFAULT_WEEKS,
               part_size: int = PART_SIZE) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kpis, contact_matrix)`` as ``compute_kpis`` gives them for the same deals and
    activities (the table's deal and company activities)."""
    _need(table)
    if table.stage_keys != [s.key for s in book.stages]:
        raise ValueError("the deal table was built against another Sales Book")
    state = KpiState(book, tz, now, months=months, weeks=weeks)
    assert table.company_id is not None
    cells = np.zeros(len(table.company_id) * len(state.matrix.months) * 3, dtype=np.int64)
    for _, part in table.parts(part_size):  # bounded temporaries: one part of the deals at a time
        _funnel(state.funnel, part)
        _moves(state.moves, part)
        cells += _matrix(state.matrix, part, _deal_company(part), part.activities, deals=True)
        give_back_memory()
    cells += _matrix(state.matrix, table, table.company_activities.owner(),
                     table.company_activities, deals=False)
    _accounts(state.accounts, table)
    give_back_memory()
    return state.kpis(companies, names), _matrix_result(state.matrix, table, cells, companies)


def _segment_max(values: I64, offsets: I64, empty: int) -> I64:
    counts = np.diff(offsets)
    out = np.full(len(counts), empty, dtype=np.int64)
    filled = counts > 0
    if values.size:
        out[filled] = np.maximum.reduceat(values, offsets[:-1][filled])
    return out


def _funnel(f: Funnel, t: DealTable) -> None:
    """Every stay of every deal (``Funnel.add``), counted per stage."""
    S, n, m = len(t.stage_keys), len(t), len(t.hist_at)
    start = micros(f.start) if f.start is not None else np.iinfo(np.int64).min + 1
    end = micros(f.end)
    offsets = t.hist_offsets
    counts = np.diff(offsets)
    first = offsets[:-1]
    deal_of = np.repeat(np.arange(n), counts)
    index = np.arange(m)
    closed = (t.status == WON) | (t.status == LOST)
    # a closed deal's trailing moves into a closed status (to None) are not stays
    closing = (t.hist_to == UNMAPPED) & (t.hist_from != UNMAPPED) & closed[deal_of]
    last_kept = _segment_max(np.where(closing, -1, index), offsets, -1)
    kept = np.where(last_kept >= first, last_kept - first + 1, 0)
    stripped = kept < counts
    closing_at = np.where(stripped, t.hist_at[np.clip(first + kept, 0, max(m - 1, 0))]
                          if m else NONE, NONE)
    initial = np.where(counts > 0, t.hist_from[np.clip(first, 0, max(m - 1, 0))]
                       if m else UNMAPPED, t.stage).astype(np.int64)
    # stays that end with a kept transition
    keep = index <= last_kept[deal_of]
    position = index - first[deal_of]
    previous = np.clip(index - 1, 0, None)
    current = np.where(position == 0, initial[deal_of], t.hist_to[previous])
    since = np.where(position == 0, t.created_at[deal_of], t.hist_at[previous])
    to = t.hist_to.astype(np.int64)
    forward = (to >= 0) & (to < S) & (current >= 0) & (current < S) & (to > current)
    # the last stay: until the win or loss, or still open
    last = first + kept - 1
    final_stage = np.where(kept > 0, t.hist_to[np.clip(last, 0, None)] if m else 0, initial)
    final_since = np.where(kept > 0, t.hist_at[np.clip(last, 0, None)] if m else 0,
                           t.created_at)
    closed_at = np.where(t.status == WON, t.won_at, np.where(t.status == LOST, t.lost_at, NONE))
    final_left = np.where(closed, np.where(closed_at != NONE, closed_at, closing_at), NONE)
    # exit kinds: 0 other, 1 forward, 2 won, 3 lost, 4 open
    final_exit = np.where(t.status == WON, 2, np.where(t.status == LOST, 3, 4))
    deal = np.concatenate([deal_of[keep], np.arange(n)])
    stage = np.concatenate([current[keep], final_stage]).astype(np.int64)
    entered = np.concatenate([since[keep], final_since])
    left = np.concatenate([t.hist_at[keep], final_left])
    exit_kind = np.concatenate([np.where(forward[keep], 1, 0), final_exit])
    valid = ((stage >= 0) & (stage < S) & (entered != NONE) & (entered <= end)
             & (entered >= start))
    _count_stays(f, t, *(x[valid] for x in (deal, stage, entered, left, exit_kind)))


def _count_stays(f: Funnel, t: DealTable, deal: I64, stage: I64, entered: I64, left: I64,
                 exit_kind: I64) -> None:
    """Stays inside the window -> entered, moved on, lost, open and days, per stage."""
    S = len(t.stage_keys)
    seen = np.zeros((len(t), S), dtype=bool)  # a deal counts once per stage entered
    seen[deal, stage] = True
    entered_count = seen.sum(axis=0)
    seen[:] = False
    moved = np.isin(exit_kind, (1, 2))
    seen[deal[moved], stage[moved]] = True
    moved_count = seen.sum(axis=0)
    del seen
    lost_count = np.bincount(stage[exit_kind == 3], minlength=S)
    open_count = np.bincount(stage[exit_kind == 4], minlength=S)
    timed = left != NONE
    seconds = np.maximum((left[timed] - entered[timed]) / US, 0.0)
    steps = np.rint(seconds / DAY * STEPS_PER_DAY).astype(np.int64)
    timed_stage = stage[timed]
    for s, stage_key in enumerate(t.stage_keys):
        c = f.counts[stage_key]
        c.entered += int(entered_count[s])
        c.moved_on += int(moved_count[s])
        c.lost += int(lost_count[s])
        c.open_now += int(open_count[s])
        values, numbers = _counted(steps[timed_stage == s])
        c.days.update(dict(zip(values.tolist(), numbers.tolist(), strict=True)))


def _counted(values: I64) -> tuple[I64, I64]:
    """Distinct values and how often each occurs (a bincount when the range is small:
    several times faster than sorting)."""
    if not len(values):
        return values, values
    low, high = int(values.min()), int(values.max())
    if high - low > 50_000_000:
        return np.unique(values, return_counts=True)
    counts = np.bincount(values - low)
    found = np.flatnonzero(counts)
    return found + low, counts[found]


def _moves(moves: ForwardMoves, t: DealTable) -> None:
    """Forward and backward moves per owner and ISO week (``ForwardMoves.add``)."""
    assert t.owner is not None and t.owners is not None
    if not moves.weeks:
        return
    S = len(t.stage_keys)
    counts = np.diff(t.hist_offsets)
    deal_of = np.repeat(np.arange(len(t)), counts)
    owner = t.owner[deal_of]
    starts = np.array([round(s * US) for s in moves.starts], dtype=np.int64)
    at = t.hist_at
    fr, to = t.hist_from.astype(np.int64), t.hist_to.astype(np.int64)
    useful = ((owner >= 0) & ~t.history_derived[deal_of] & (at >= starts[0])
              & (at < round(moves.end * US)) & (fr >= 0) & (fr < S) & (to >= 0) & (to < S)
              & (fr != to))
    week = np.searchsorted(starts, at[useful], side="right") - 1
    backward = (to[useful] < fr[useful]).astype(np.int64)
    key = (owner[useful].astype(np.int64) * len(starts) + week) * 2 + backward
    values, numbers = _counted(key)
    for value, number in zip(values.tolist(), numbers.tolist(), strict=True):
        owner_code, rest = divmod(value, len(starts) * 2)
        week_index, direction = divmod(rest, 2)
        name = t.owners[owner_code]
        if not name:
            continue
        cell = moves.moves[name].setdefault(moves.weeks[week_index], [0, 0])
        cell[direction] += number


def _accounts(a: Accounts, t: DealTable) -> None:
    """Closed deals, lead sources, revenue and per-client contributions (``Accounts``)."""
    assert t.owner is not None and t.owners is not None and t.value is not None
    start, end, previous = micros(a.start), micros(a.end), micros(a.previous_start)
    status, value = t.status, t.value
    closed_at = np.where(status == WON, t.won_at, np.where(status == LOST, t.lost_at, NONE))
    in_window = (closed_at != NONE) & (closed_at >= start) & (closed_at <= end)
    owner_names = [*t.owners, ""]
    for status_code, label in ((WON, "won"), (LOST, "lost")):
        rows = in_window & (status == status_code)
        owners, numbers = _counted(t.owner[rows].astype(np.int64))
        for owner, number in zip(owners.tolist(), numbers.tolist(), strict=True):
            a.closed[(owner_names[owner] or "", label)] += number
    created = (t.created_at != NONE) & (t.created_at >= start) & (t.created_at <= end)
    sources = ([*t.lead_sources, ""] if t.lead_sources is not None else [""])
    lead = t.lead_source if t.lead_source is not None else np.full(len(t), -1, np.int32)
    for won in (False, True):
        rows = created & ((status == WON) == won)
        codes, numbers = _counted(lead[rows].astype(np.int64))
        for code, number in zip(codes.tolist(), numbers.tolist(), strict=True):
            cell = a.sources[sources[code] or NO_SOURCE]
            cell[0] += number
            cell[1] += number if won else 0
    wins = (status == WON) & (t.won_at != NONE) & (t.won_at <= end)
    inside = wins & (t.won_at >= start)
    a.won_in_window = int(inside.sum())
    a.won_value_in_window = math.fsum(value[inside].tolist())
    month_index = MonthIndex(a.clock)
    months = month_index.codes(t.won_at[inside])
    revenue = np.bincount(months, weights=value[inside], minlength=len(month_index.labels))
    for code in np.unique(months).tolist():
        a.revenue_by_month[month_index.labels[code]] += float(revenue[code])
    a.totals = _client_totals(t, wins & (t.company_group >= 0), start, end, previous,
                              month_index)
    a.dirty.clear()


def _client_totals(t: DealTable, wins: npt.NDArray[np.bool_], start: int, end: int,
                   previous: int, month_index: MonthIndex) -> _Totals:
    """``Accounts._contribution`` of every client, summed (``_Totals``)."""
    assert t.value is not None
    totals = _Totals()
    rows = np.flatnonzero(wins)
    if not len(rows):
        return totals
    company, at, value = t.company_group[rows], t.won_at[rows], t.value[rows]
    order = _win_order(t, rows)
    company, at, value = company[order], at[order], value[order]
    boundaries = np.flatnonzero(np.r_[True, company[1:] != company[:-1]])
    first_at, first_value = at[boundaries], value[boundaries]
    n_wins = np.diff(np.r_[boundaries, len(rows)])
    inside = (at >= start) & (at <= end)
    before = (at >= previous) & (at < start)
    any_inside = np.add.reduceat(inside.astype(np.int64), boundaries) > 0
    any_before = np.add.reduceat(before.astype(np.int64), boundaries) > 0
    first_inside = (first_at >= start) & (first_at <= end)
    years = np.maximum((end - first_at) / US / YEAR_SECONDS, 1.0)
    values = np.add.reduceat(value, boundaries)
    inside_count = np.add.reduceat(inside.astype(np.int64), boundaries)
    inside_value = np.add.reduceat(np.where(inside, value, 0.0), boundaries)
    upsales = inside_count - first_inside
    upsale_value = inside_value - np.where(first_inside, first_value, 0.0)
    new_months = month_index.codes(first_at[first_inside])
    for code, number in zip(*_counted(new_months.astype(np.int64)), strict=True):
        totals.new_by_month[month_index.labels[int(code)]] += int(number)
    totals.active_at_start = int(any_before.sum())
    totals.lost = int((any_before & ~any_inside).sum())
    totals.clients = len(boundaries)
    totals.repeat = int((n_wins >= 2).sum())
    totals.purchases = int(n_wins.sum())
    totals.value = math.fsum(values.tolist())
    totals.years = math.fsum(years.tolist())
    totals.per_year = math.fsum((n_wins / years).tolist())
    totals.upsales = int(upsales.sum())
    totals.upsale_value = math.fsum(upsale_value.tolist())
    return totals


def _win_order(t: DealTable, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """Wins sorted by (company, won_at, deal id, value), as ``Accounts`` keeps them: the
    deal id only breaks ties, so only tied wins are compared as text."""
    assert t.value is not None
    company, at = t.company_group[rows], t.won_at[rows]
    order = np.lexsort((at, company))
    same = (company[order][1:] == company[order][:-1]) & (at[order][1:] == at[order][:-1])
    if same.any():
        order = order.copy()
        value = t.value
        ties = np.flatnonzero(np.r_[False, same] | np.r_[same, False])
        runs = np.split(ties, np.flatnonzero(np.diff(ties) != 1) + 1)
        for run in runs:
            members = order[run]
            ranked = sorted(members.tolist(), key=lambda i: (
                int(company[i]), int(at[i]), t.deal_id[int(rows[i])], float(value[rows[i]])))
            order[run] = ranked
    return order


def _matrix(matrix: ContactMatrix, t: DealTable, company: npt.NDArray[np.integer],
            acts: ActivityColumns, *, deals: bool) -> I64:
    """Calls and visits of ``acts`` (whose companies are ``company``), and the contracts
    of the table's deals when ``deals``, counted per client x month x kind (the cells of
    ``ContactMatrix``)."""
    assert t.company_id is not None
    bounds = np.array([round(b * US) for b in matrix.bounds], dtype=np.int64)
    months = len(matrix.months)
    current = matrix.current_index
    kinds = t.kinds
    call = kinds.index(CALL) if CALL in kinds else -1
    visit = kinds.index(VISIT) if VISIT in kinds else -1
    when = np.where(acts.done, acts.done_at, acts.due_at)
    index = np.searchsorted(bounds, when, side="right") - 1
    useful = (((acts.kind == call) | (acts.kind == visit)) & (company >= 0)
              & (when != NONE) & (when >= bounds[0]) & (when < bounds[-1])
              & np.where(acts.done, index <= current, index > current))
    slot = (acts.kind[useful] == visit).astype(np.int64)
    keys = [(company[useful].astype(np.int64) * months + index[useful]) * 3 + slot]
    del when, index, useful, slot
    if deals:
        won = ((t.status == WON) & (t.won_at != NONE) & (t.company_group >= 0)
               & (t.won_at >= bounds[0]) & (t.won_at < bounds[-1]))
        index = np.searchsorted(bounds, t.won_at[won], side="right") - 1
        contract = index <= current
        keys.append((t.company_group[won][contract].astype(np.int64) * months
                     + index[contract]) * 3 + 2)
    return np.bincount(np.concatenate(keys), minlength=len(t.company_id) * months * 3)


def _matrix_result(matrix: ContactMatrix, t: DealTable, cells: I64,
                   companies: dict[str, CompanyRecord]) -> dict[str, Any]:
    """``ContactMatrix.result`` of the counted cells (company x month x call/visit/contract),
    reading only the months each client has facts in."""
    assert t.company_id is not None
    months, current = matrix.months, matrix.current_index
    counts: npt.NDArray[np.int64] = cells.reshape(len(t.company_id), len(months), 3)
    used = (counts != 0).sum(axis=2) > 0  # client x month: any fact
    calls = counts[:, :current + 1, 0].sum(axis=1)
    visits = counts[:, :current + 1, 1].sum(axis=1)
    contracts = counts[:, :, 2].sum(axis=1)
    rows = []
    for code in np.flatnonzero(used.sum(axis=1) > 0).tolist():
        company_id = t.company_id[code]
        if not company_id:
            continue
        months_used = np.flatnonzero(used[code]).tolist()
        values = counts[code, months_used].tolist()
        rows.append(matrix_row(
            company_id, companies.get(company_id),
            {"call": int(calls[code]), "visit": int(visits[code]),
             "contract": int(contracts[code])},
            {months[i]: {"call": c, "visit": v, "contract": k, "planned": i > current}
             for i, (c, v, k) in zip(months_used, values, strict=True)}))
    return matrix_result(months, matrix.current, rows)


def _deal_company(t: DealTable) -> npt.NDArray[np.int32]:
    """The company of each deal activity (its deal's)."""
    return t.company_group[t.activities.owner()]


# -- building a table from the records compute_kpis reads -------------------------------------
def table_from_records(deals: Sequence[DealRecord], activities: Iterable[ActivityRecord],
                       book: SalesBook) -> DealTable:
    """A KPI and karma table of ``deals`` (company activities: ``activities``, by company)."""
    keys = [s.key for s in book.stages]
    stage_codes = {key: i for i, key in enumerate(keys)} | {DEFERRED: len(keys)}
    companies, owners, sources, reasons = Codes(), Codes(), Codes(), Codes()

    def code(key: str | None) -> int:
        return -1 if key is None else stage_codes.get(key, -2)

    def coded(codes: Codes, value: str | None) -> int:
        return -1 if not value else codes.code(value)

    hist = [(code(x.from_key), code(x.to_key), micros(x.at), x.source_id)
            for d in deals for x in d.history]
    counts = [len(d.history) for d in deals]
    offsets = np.zeros(len(deals) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = len(deals)
    company = np.array([coded(companies, d.company_id) for d in deals], dtype=np.int32)
    acts = sorted(((coded(companies, a.company_id), a) for a in activities),
                  key=lambda x: x[0])
    acts = [(c, a) for c, a in acts if c >= 0]
    kinds = Codes()
    group_counts = np.bincount(np.array([c for c, _ in acts], dtype=np.int64),
                               minlength=len(companies.values))
    group_offsets = np.zeros(len(companies.values) + 1, dtype=np.int64)
    np.cumsum(group_counts, out=group_offsets[1:])
    company_acts = ActivityColumns(
        offsets=group_offsets,
        kind=np.array([kinds.code(a.kind) for _, a in acts], dtype=np.int32),
        done=np.array([a.done for _, a in acts], dtype=bool),
        is_note=np.zeros(len(acts), dtype=bool),
        done_at=np.array([micros(a.when) if a.done else NONE for _, a in acts], dtype=np.int64),
        due_at=np.array([NONE if a.done else micros(a.when) for _, a in acts], dtype=np.int64),
        created_at=np.full(len(acts), NONE, dtype=np.int64))
    status = {"open": OPEN, "won": WON, "lost": LOST}
    return DealTable(
        stage_keys=keys, deal_id=[d.deal_id for d in deals],
        status=np.array([status.get(d.status, OTHER) for d in deals], dtype=np.int8),
        stage=np.array([code(d.stage_key) for d in deals], dtype=np.int16),
        crm_stage=np.zeros(n, dtype=np.int32), crm_stages=[""],
        stage_ignored=np.zeros(n, dtype=bool),
        created_at=np.array([micros(d.created_at) for d in deals], dtype=np.int64),
        won_at=np.array([micros(d.won_at) for d in deals], dtype=np.int64),
        lost_at=np.array([micros(d.lost_at) for d in deals], dtype=np.int64),
        lost_reason_raw=np.full(n, -1, dtype=np.int32), reasons_raw=[],
        lost_reason_key=np.full(n, -1, dtype=np.int32), reason_keys=reasons.values,
        contact_count=np.zeros(n, dtype=np.int32), fields={},
        history_derived=np.array([d.history_derived for d in deals], dtype=bool),
        snooze_until=np.full(n, -1, dtype=np.int32), snooze_reason=np.zeros(n, dtype=bool),
        snooze_reasons=None, hist_offsets=offsets,
        hist_from=np.array([h[0] for h in hist], dtype=np.int16),
        hist_to=np.array([h[1] for h in hist], dtype=np.int16),
        hist_at=np.array([h[2] for h in hist], dtype=np.int64),
        hist_source=[h[3] for h in hist], kinds=kinds.values,
        activities=ActivityColumns.empty(n), company_group=company,
        company_activities=company_acts, company_id=companies.values,
        owner=np.array([coded(owners, d.owner_id) for d in deals], dtype=np.int32),
        owners=owners.values, value=np.array([d.value for d in deals], dtype=np.float64),
        lead_source=np.array([coded(sources, d.lead_source) for d in deals], dtype=np.int32),
        lead_sources=sources.values, groups_are_companies=True)
