"""Karma totals over a :class:`~syncd.audit.columns.DealTable`: the same figures as the
ledgers (``client_totals(client_karma_lines(...))`` and ``employee_totals`` of a full
``PeopleLedger``), summed with array expressions for a full recomputation.

The ledgers stay the record of *why* (one line per source record, for ``syncd explain`` and
the incremental pass); these functions give the totals a full recomputation needs without
building a million line objects. Sums are floating-point sums in another order than the
ledgers' (equal to ~1e-9 relative).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from syncd.audit.columns import (
    I64,
    LOST,
    NONE,
    OPEN,
    PART_SIZE,
    WON,
    DealTable,
    give_back_memory,
    micros,
)
from syncd.engine_model import Clock, CompanyRecord
from syncd.kpi.columnar import MonthIndex
from syncd.salesbook import ClientKarmaWeights, SalesBook
from syncd.scoring.karma import KarmaCompany
from syncd.scoring.people import LOYAL_NPS, employee_weight

__all__ = ["ViolationColumns", "table_client_totals", "table_employee_totals"]

F64 = npt.NDArray[np.float64]


@dataclass(slots=True)
class ViolationColumns:
    """Violations of a table's deals: deal row, rule code (into ``rules``), opened at."""

    deal: npt.NDArray[np.integer]
    rule: npt.NDArray[np.integer]
    rules: Sequence[str]
    opened_at: I64


def _company_ok(t: DealTable) -> npt.NDArray[np.bool_]:
    if not t.groups_are_companies or t.company_id is None or t.value is None:
        raise ValueError("karma needs a table of companies and values (table_from_records, "
                         "or a loader that fills them)")
    named = np.array([bool(c) for c in t.company_id] + [False])
    return named[t.company_group]  # -1 (no company) reads the trailing False


def table_client_totals(t: DealTable, companies: Iterable[KarmaCompany],
                        weights: ClientKarmaWeights, now: datetime) -> dict[str, float]:
    """Company id -> client karma, as ``client_totals(client_karma_lines(...), weights)``
    (the table's ``profit``, ``is_tender`` and ``public_incident`` columns: absent ones
    count as no profit, no tender, no incident)."""
    has_company = _company_ok(t)
    assert t.value is not None and t.company_id is not None
    n, end = len(t), micros(now)
    since = micros(now - timedelta(days=weights.window_days)) if weights.window_days else None
    closed_at = np.where(t.status == WON, t.won_at, np.where(t.status == LOST, t.lost_at, NONE))
    closed = (t.status == WON) | (t.status == LOST)
    in_window = np.where(closed_at == NONE, since is None,
                         (closed_at <= end) & (closed_at >= (since if since is not None
                                                             else np.iinfo(np.int64).min)))
    alive = (t.created_at == NONE) | (t.created_at <= end)
    counted = alive & has_company & ((t.status == OPEN) | (closed & in_window))
    profit = t.profit if t.profit is not None else np.full(n, np.nan)
    tender = t.is_tender if t.is_tender is not None else np.zeros(n, dtype=bool)
    incident = t.public_incident if t.public_incident is not None else np.zeros(n, dtype=bool)
    won, lost = counted & (t.status == WON), counted & (t.status == LOST)
    has_profit = ~np.isnan(profit)
    amount = np.zeros(n)
    amount += np.where(won, weights.revenue_weight * t.value, 0.0)
    amount += np.where(won & has_profit, weights.profit_weight * np.nan_to_num(profit), 0.0)
    amount -= np.where(won & tender & has_profit & (np.nan_to_num(profit) < 0),
                       weights.loss_tender_penalty, 0.0)
    amount -= np.where(lost & tender, weights.lost_tender_penalty, 0.0)
    amount -= np.where(counted & incident, weights.incident_penalty, 0.0)
    lined = won | (lost & tender) | (counted & incident)
    groups = len(t.company_id)
    sums = np.bincount(t.company_group[lined], weights=amount[lined], minlength=groups)
    present = np.bincount(t.company_group[lined], minlength=groups) > 0
    totals = {str(t.company_id[int(g)]): float(sums[g]) for g in np.flatnonzero(present)}
    seen: set[str] = set()
    for company in companies:
        if company.public_incidents and company.company_id not in seen:
            seen.add(company.company_id)
            totals[company.company_id] = math.fsum((
                totals.get(company.company_id, 0.0),
                -weights.incident_penalty * company.public_incidents))
    return totals


def table_employee_totals(t: DealTable, companies: Mapping[str, CompanyRecord],
                          violations: ViolationColumns | None, book: SalesBook,
                          tz: ZoneInfo, *, part_size: int = PART_SIZE,
                          ) -> dict[tuple[str, str], float]:
    """``(user id, "YYYY-MM") -> karma``, as ``employee_totals`` of a ``PeopleLedger``
    loaded with the same deals, companies and violations."""
    has_company = _company_ok(t)
    assert t.owner is not None and t.owners is not None and t.value is not None
    assert t.company_id is not None
    weights = book.karma.employee
    months = MonthIndex(Clock(tz))
    sums: dict[tuple[int, int], float] = {}

    def add(user: npt.NDArray[np.integer], moment: I64, amount: F64) -> None:
        """Sum amounts per (user, month) as they come: no line is kept."""
        if not len(user):
            return
        period = months.codes(moment)
        width = int(period.max()) + 1
        key = user.astype(np.int64) * width + period
        present = np.flatnonzero(np.bincount(key))
        totals = np.bincount(key, weights=amount)[present]
        for k, v in zip(present.tolist(), totals.tolist(), strict=True):
            pair = divmod(k, width)
            sums[pair] = sums.get(pair, 0.0) + v

    owner = t.owner
    has_owner = owner >= 0
    # forward moves, one part of the deals at a time (bounded temporaries)
    S = len(t.stage_keys)
    for _, part in t.parts(part_size):
        assert part.owner is not None
        deal_of = np.repeat(np.arange(len(part)), np.diff(part.hist_offsets))
        fr, to = part.hist_from, part.hist_to
        moves = ((part.owner[deal_of] >= 0) & ~part.history_derived[deal_of] & (fr >= 0)
                 & (fr < S) & (to >= 0) & (to < S) & (to > fr))
        add(part.owner[deal_of[moves]], part.hist_at[moves],
            np.full(int(moves.sum()), employee_weight("forward_move", weights)))
    # wins: won deal, won value, up-sale (a company's wins after its first)
    won = (t.status == WON) & (t.won_at != NONE)
    position = _win_positions(t, np.flatnonzero(won & has_company))
    paid = won & has_owner
    add(owner[paid], t.won_at[paid], np.full(int(paid.sum()),
                                             employee_weight("won_deal", weights)))
    valued = paid & (t.value != 0)
    add(owner[valued], t.won_at[valued], employee_weight("won_value", weights) * t.value[valued])
    upsale = paid & (position > 0)
    add(owner[upsale], t.won_at[upsale], np.full(int(upsale.sum()),
                                                 employee_weight("upsale", weights)))
    # loyal clients
    names = list(t.owners)
    loyal_user, loyal_at = _loyal(t, won & has_company, position, companies, names)
    add(loyal_user, loyal_at, np.full(len(loyal_user), employee_weight("loyal_client", weights)))
    # violations on the deals' owners
    if violations is not None and len(violations.deal):
        rule_weight = np.array([float(book.karma.employee.rule_weights.get(r, 1.0))
                                for r in violations.rules])
        penalty = employee_weight("violation", weights)
        for start in range(0, len(violations.deal), PART_SIZE):
            rows = np.asarray(violations.deal[start:start + PART_SIZE])
            useful = has_owner[rows]
            add(owner[rows[useful]], violations.opened_at[start:start + PART_SIZE][useful],
                penalty * rule_weight[violations.rule[start:start + PART_SIZE][useful]])
    give_back_memory()
    return {(names[user], months.labels[period]): value
            for (user, period), value in sums.items()}


def _win_positions(t: DealTable, rows: npt.NDArray[np.intp]) -> I64:
    """Per deal: its rank among its company's wins by (won_at, deal id); -1 elsewhere."""
    position = np.full(len(t), -1, dtype=np.int64)
    if not len(rows):
        return position
    company, at = t.company_group[rows], t.won_at[rows]
    order = np.lexsort((at, company))
    same = (company[order][1:] == company[order][:-1]) & (at[order][1:] == at[order][:-1])
    if same.any():  # equal times: the deal id decides, as text
        ties = np.flatnonzero(np.r_[False, same] | np.r_[same, False])
        for run in np.split(ties, np.flatnonzero(np.diff(ties) != 1) + 1):
            order[run] = sorted(order[run].tolist(), key=lambda i: (
                int(company[i]), int(at[i]), t.deal_id[int(rows[i])]))
    sorted_company = company[order]
    starts = np.flatnonzero(np.r_[True, sorted_company[1:] != sorted_company[:-1]])
    first_of = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    position[rows[order]] = np.arange(len(order)) - first_of
    return position


def _loyal(t: DealTable, wins: npt.NDArray[np.bool_], position: I64,
           companies: Mapping[str, CompanyRecord], names: list[str],
           ) -> tuple[npt.NDArray[np.int64], I64]:
    """(user code into ``names``, moment) of each loyal-client line: a company's second
    win, or its first when its NPS makes it a promoter; to the company's owner, else that
    deal's. A company owner who owns no deal is appended to ``names``."""
    assert t.owner is not None and t.company_id is not None
    count = np.r_[np.bincount(t.company_group[wins], minlength=len(t.company_id)), 0]
    promoter = np.array([
        (c := companies.get(str(cid))) is not None and c.nps is not None and c.nps >= LOYAL_NPS
        for cid in t.company_id] + [False])
    group = t.company_group
    qualifying = wins & (((position == 1)) | ((position == 0) & (count[group] == 1)
                                             & promoter[group]))
    rows = np.flatnonzero(qualifying)
    owner_codes = {name: i for i, name in enumerate(names)}
    users, moments = [], []
    for row in rows.tolist():
        company = companies.get(str(t.company_id[int(group[row])]))
        user = company.owner_id if company and company.owner_id else None
        code = owner_codes.get(user, -2) if user else int(t.owner[row])
        if user and code == -2:  # the company's owner owns no deal here: name them
            code = owner_codes[user] = len(names)
            names.append(user)
        if code >= 0:
            users.append(code)
            moments.append(int(t.won_at[row]))
    return np.array(users, dtype=np.int64), np.array(moments, dtype=np.int64)
