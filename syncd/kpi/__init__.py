"""KPIs per tenant and period: funnel, win rate, moves, account KPIs, the contact matrix.

Pure accumulators over CRM-free records (``syncd.engine_model``, shared with people karma);
``syncd.load`` (the pass's loader) builds those records from the store; ``syncd.kpi.benchmark``
compares canonical funnels across tenants without naming them. Semantics and choices:
docs/kpis.md.
"""

from __future__ import annotations

from syncd.engine_model import ActivityRecord, Clock, CompanyRecord, DealRecord, Stay, stays
from syncd.kpi.account import nps, plan_inversion
from syncd.kpi.compute import KpiState, Window, compute_kpis, window

__all__ = [
    "ActivityRecord",
    "Clock",
    "CompanyRecord",
    "DealRecord",
    "KpiState",
    "Stay",
    "Window",
    "compute_kpis",
    "nps",
    "plan_inversion",
    "stays",
    "window",
]
