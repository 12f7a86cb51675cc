"""The monthly contact matrix (seed 001): per client and calendar month, only facts.

A *call* is a done activity of canonical kind ``call``, a *visit* a done ``meeting``, a
*contract* a won deal, each in the month it happened (tenant timezone). The matrix spans
36 months back (the current month included) and 12 months forward, where the cells count
*planned* (not done) calls and visits due in that month. Cells are sparse: a month without
any fact has no cell.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from datetime import datetime
from typing import Any

from syncd.engine_model import ActivityRecord, Clock, CompanyRecord, DealRecord, shift_month

CALL, VISIT = "call", "meeting"
MONTHS_BACK, MONTHS_FORWARD = 36, 12


class ContactMatrix:
    """Counts per client in one flat array of (call, visit, contract) x month: about 600
    bytes per client whatever the activity volume, and a bisect per fact."""

    def __init__(self, clock: Clock, now: datetime, *, back: int = MONTHS_BACK,
                 forward: int = MONTHS_FORWARD) -> None:
        self.clock = clock
        self.current = clock.month(now)
        first = shift_month(self.current, -(back - 1))
        self.months = [shift_month(first, i) for i in range(back + forward)]
        self.current_index = back - 1
        self.bounds = [clock.month_start(m) for m in self.months]
        self.bounds.append(clock.month_start(shift_month(self.months[-1], 1)))
        self.cells: dict[str, array[int]] = {}  # 32-bit counts
        self._empty = array("i", bytes(array("i").itemsize * 3 * len(self.months)))

    def _index(self, moment: datetime) -> int:
        stamp = moment.timestamp()
        bounds = self.bounds
        if stamp < bounds[0] or stamp >= bounds[-1]:
            return -1
        return bisect_right(bounds, stamp) - 1

    def _count(self, company_id: str, index: int, slot: int, sign: int) -> None:
        row = self.cells.get(company_id)
        if row is None:
            row = self.cells[company_id] = array("i", self._empty)
        row[index * 3 + slot] += sign

    def add_activity(self, activity: ActivityRecord, sign: int = 1) -> None:
        kind, company_id, when = activity.kind, activity.company_id, activity.when
        if kind not in (CALL, VISIT) or not company_id or when is None:
            return
        stamp = when.timestamp()
        bounds = self.bounds
        if stamp < bounds[0] or stamp >= bounds[-1]:
            return
        index = bisect_right(bounds, stamp) - 1
        if activity.done:
            if index > self.current_index:
                return  # a done activity dated in the future is not a fact yet
        elif index <= self.current_index:
            return  # planned cells are forward months only
        row = self.cells.get(company_id)
        if row is None:
            row = self.cells[company_id] = array("i", self._empty)
        row[index * 3 + (kind == VISIT)] += sign

    def add_deal(self, deal: DealRecord, sign: int = 1) -> None:
        if deal.status != "won" or deal.won_at is None or not deal.company_id:
            return
        index = self._index(deal.won_at)
        if 0 <= index <= self.current_index:
            self._count(deal.company_id, index, 2, sign)

    def result(self, companies: dict[str, CompanyRecord]) -> dict[str, Any]:
        rows = []
        current = self.current_index
        for company_id, row in self.cells.items():
            values = row.tolist()
            calls, visits, contracts = values[0::3], values[1::3], values[2::3]
            used = [i for i, (c, v, k) in enumerate(zip(calls, visits, contracts, strict=True))
                    if c or v or k]
            if not used:
                continue
            months = self.months
            cells = {months[i]: {"call": calls[i], "visit": visits[i], "contract": contracts[i],
                                 "planned": i > current} for i in used}
            rows.append(matrix_row(company_id, companies.get(company_id),
                                   {"call": sum(calls[:current + 1]),
                                    "visit": sum(visits[:current + 1]),
                                    "contract": sum(contracts)}, cells))
        return matrix_result(self.months, self.current, rows)


def matrix_row(company_id: str, company: CompanyRecord | None, totals: dict[str, int],
               cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One client's row of the contact matrix (shared by the row and columnar engines)."""
    return {
        "company_id": company_id,
        "company": company.name if company else company_id,
        "segment": company.segment if company else None,
        "channel": company.channel if company else None,
        "sub_channel": company.sub_channel if company else None,
        "region": company.region if company else None,
        "totals": totals,
        "cells": cells,
    }


def matrix_result(months: list[str], current: str, rows: list[dict[str, Any]],
                  ) -> dict[str, Any]:
    """The contact matrix, its rows ordered by channel, sub-channel, region and client."""
    rows.sort(key=lambda r: (r["channel"] or "", r["sub_channel"] or "", r["region"] or "",
                             str(r["company"]).casefold(), r["company_id"]))
    return {"months": months, "current_month": current, "rows": rows}
