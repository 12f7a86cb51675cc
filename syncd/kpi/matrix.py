"""The monthly contact matrix (seed 001): per client and calendar month, only facts.

A *call* is a done activity of canonical kind ``call``, a *visit* a done ``meeting``, a
*contract* a won deal, each in the month it happened (tenant timezone). The matrix spans
36 months back (the current month included) and 12 months forward, where the cells count
*planned* (not done) calls and visits due in that month. Cells are sparse: a month without
any fact has no cell.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from syncd.kpi.model import ActivityRecord, Clock, CompanyRecord, DealRecord, shift_month

CALL, VISIT = "call", "meeting"
MONTHS_BACK, MONTHS_FORWARD = 36, 12


class ContactMatrix:
    def __init__(self, clock: Clock, now: datetime, *, back: int = MONTHS_BACK,
                 forward: int = MONTHS_FORWARD) -> None:
        self.clock = clock
        self.current = clock.month(now)
        self.first = shift_month(self.current, -(back - 1))
        self.last = shift_month(self.current, forward)
        self.months = [shift_month(self.first, i) for i in range(back + forward)]
        self.cells: dict[str, dict[str, list[int]]] = {}

    def _cell(self, company_id: str, month: str) -> list[int]:
        row = self.cells.get(company_id)
        if row is None:
            row = self.cells[company_id] = {}
        cell = row.get(month)
        if cell is None:
            cell = row[month] = [0, 0, 0]
        return cell

    def add_activity(self, activity: ActivityRecord) -> None:
        kind = activity.kind
        if kind not in (CALL, VISIT) or not activity.company_id or activity.when is None:
            return
        month = self.clock.month(activity.when)
        if month < self.first or month > self.last:
            return
        if activity.done:
            if month > self.current:
                return  # a done activity dated in the future is not a fact yet
        elif month <= self.current:
            return  # planned cells are forward months only
        self._cell(activity.company_id, month)[0 if kind == CALL else 1] += 1

    def add_deal(self, deal: DealRecord) -> None:
        if deal.status != "won" or deal.won_at is None or not deal.company_id:
            return
        month = self.clock.month(deal.won_at)
        if self.first <= month <= self.current:
            self._cell(deal.company_id, month)[2] += 1

    def result(self, companies: dict[str, CompanyRecord]) -> dict[str, Any]:
        rows = []
        for company_id, months in self.cells.items():
            company = companies.get(company_id)
            cells = {month: {"call": c[0], "visit": c[1], "contract": c[2],
                             "planned": month > self.current}
                     for month, c in sorted(months.items())}
            rows.append({
                "company_id": company_id,
                "company": company.name if company else company_id,
                "segment": company.segment if company else None,
                "channel": company.channel if company else None,
                "sub_channel": company.sub_channel if company else None,
                "region": company.region if company else None,
                "totals": {"call": sum(c[0] for m, c in months.items() if m <= self.current),
                           "visit": sum(c[1] for m, c in months.items() if m <= self.current),
                           "contract": sum(c[2] for c in months.values())},
                "cells": cells,
            })
        rows.sort(key=lambda r: (r["channel"] or "", r["sub_channel"] or "", r["region"] or "",
                                 str(r["company"]).casefold(), r["company_id"]))
        return {"months": self.months, "current_month": self.current, "rows": rows}
