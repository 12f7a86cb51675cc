"""KPIs and karma over a DealTable (syncd.kpi.columnar, syncd.scoring.columnar) equal the
reference accumulators and ledgers on random tenants.

Deals are drawn around every window edge (this and the previous KPI window, the forward
move weeks, the contact matrix's months back and forward), with histories through
deferred, unmapped and unknown stages, trailing moves into a closed status, wins tied at
the same moment in one company, owners and companies missing, NPS promoters. Figures must
be equal (floating-point sums up to 1e-9 relative: the order of additions differs).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.audit.columns import micros
from syncd.audit.facts import DEFERRED, Transition
from syncd.kpi import ActivityRecord, CompanyRecord, DealRecord, compute_kpis
from syncd.kpi.columnar import table_from_records, table_kpis
from syncd.salesbook import load_salesbook
from syncd.scoring.columnar import ViolationColumns, table_client_totals, table_employee_totals
from syncd.scoring.karma import KarmaCompany, KarmaDeal, client_karma_lines, client_totals
from syncd.scoring.people import (
    PeopleLedger,
    Person,
    ViolationRecord,
    employee_totals,
    manager_karma,
    resolve_teams,
)

BOOK = load_salesbook(Path(__file__).resolve().parents[1] / "config/salesbooks/b2b-services-9.yaml")
TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 29, 10, 0, tzinfo=UTC)  # Berlin's DST day: weeks and months shift
KEYS = [s.key for s in BOOK.stages]
RULES = ("stalled", "inactive", "missing_action")


def tenant(seed: int, size: int) -> tuple[list[DealRecord], list[ActivityRecord],
                                          dict[str, CompanyRecord]]:
    rng = random.Random(seed)
    days = (0, 1, 6, 7, 8, 29, 30, 31, 200, 364, 365, 366, 700, 730, 731, 1095, 1100)

    def moment() -> datetime:
        day = rng.choice(days) if rng.random() < 0.5 else rng.uniform(-400, 1200)
        return NOW - timedelta(days=day, hours=rng.choice((0, 0.5, 1, 11, 23)))

    stages = [*KEYS, DEFERRED, None, "ghost"]
    deals = []
    for n in range(size):
        created = moment() if rng.random() < 0.95 else None
        at = created or NOW - timedelta(days=500)
        history = []
        for k in range(rng.choice((0, 0, 1, 2, 3, 5))):
            at = at + timedelta(days=rng.choice((0, 1, 3, 9, 40)))
            history.append(Transition(rng.choice(stages), rng.choice(stages), at,
                                      rng.choice(("", f"h{n}.{k}"))))
        status = rng.choice(("open", "won", "won", "lost"))
        closed = rng.choice((moment(), at, None)) if status != "open" else None
        if status != "open" and rng.random() < 0.3:
            history.append(Transition(rng.choice(KEYS), None, at, f"c{n}"))
        deals.append(DealRecord(
            deal_id=f"D{n}", owner_id=rng.choice(("U1", "U2", "U3", None)),
            company_id=rng.choice(("C1", "C2", "C3", "C4", None, "")), status=status,
            value=float(rng.choice((0, 100, 250, 1000))), created_at=created,
            won_at=closed if status == "won" else None,
            lost_at=closed if status == "lost" else None, stage_key=rng.choice(stages),
            lead_source=rng.choice(("Web", "Referral", None, "")),
            history=tuple(history), history_derived=not history or rng.random() < 0.1))
    acts = [ActivityRecord(f"a{n}", rng.choice(("call", "meeting", "email")),
                           rng.random() < 0.7, rng.choice((moment(), None, NOW + timedelta(
                               days=rng.uniform(0, 400)))),
                           rng.choice(("C1", "C2", "C5", None)), None, None)
            for n in range(size * 2)]
    companies = {c: CompanyRecord(c, f"Company {c}", rng.choice(("U1", "U4", None)),
                                  segment=rng.choice(("smb", None)),
                                  nps=rng.choice((None, 3.0, 9.0, 10.0)),
                                  region=rng.choice(("North", None)))
                 for c in ("C1", "C2", "C3", "C5")}
    return deals, acts, companies


def assert_close(got: Any, expected: Any, where: str = "") -> None:
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), where
        for key in expected:
            assert_close(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            assert_close(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), where
    else:
        assert got == expected, where


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 40), st.sampled_from((1, 7, 200_000)))
def test_kpis_equal_the_reference(seed: int, size: int, part_size: int) -> None:
    deals, acts, companies = tenant(seed, size)
    names = {"U1": "Anna", "U2": "Boris"}
    expected = compute_kpis(BOOK, TZ, NOW, deals, acts, companies, names)
    table = table_from_records(deals, acts, BOOK)
    got = table_kpis(table, BOOK, TZ, NOW, companies, names, part_size=part_size)
    assert_close(got, expected)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 40), st.sampled_from((1, 7, 200_000)))
def test_employee_and_manager_karma_equal_the_ledger(seed: int, size: int,
                                                     part_size: int) -> None:
    deals, _, companies = tenant(seed, size)
    rng = random.Random(seed)
    violations = [ViolationRecord(f"v{i}", rng.choice(deals).deal_id, rng.choice(RULES),
                                  NOW - timedelta(days=rng.uniform(0, 90)))
                  for i in range(size)]
    employee = BOOK.karma.employee.model_copy(
        update={"rule_weights": {"stalled": 0.5, "inactive": 3.0}})
    book = BOOK.model_copy(update={"karma": BOOK.karma.model_copy(
        update={"employee": employee})})
    ledger = PeopleLedger(book, TZ).load(deals, companies.values(), violations)
    expected = employee_totals(ledger.lines(), book.karma.employee)
    table = table_from_records(deals, [], book)
    rows = {d.deal_id: i for i, d in enumerate(deals)}
    columns = ViolationColumns(
        deal=np.array([rows[v.deal_id] for v in violations], dtype=np.int64),
        rule=np.array([RULES.index(v.rule) for v in violations], dtype=np.int64),
        rules=RULES, opened_at=np.array([micros(v.opened_at) for v in violations],
                                        dtype=np.int64))
    got = table_employee_totals(table, companies, columns, book, TZ, part_size=part_size)
    assert_close(got, expected)
    teams, _ = resolve_teams([], [Person("U2", "B", None, "U1"), Person("U3", "C", None, "U1")])
    managers, reference = manager_karma(got, teams), manager_karma(expected, teams)
    assert [(m.manager_id, m.period) for m in managers] == [
        (m.manager_id, m.period) for m in reference]
    assert_close([m.karma for m in managers], [m.karma for m in reference])


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 40), st.sampled_from((None, 30, 365)))
def test_client_karma_equals_the_ledger(seed: int, size: int, window: int | None) -> None:
    deals, _, companies = tenant(seed, size)
    rng = random.Random(seed)
    profit = [rng.choice((None, -50.0, 0.0, 120.0)) for _ in deals]
    tender = [rng.random() < 0.4 for _ in deals]
    incident = [rng.random() < 0.2 for _ in deals]
    weights = BOOK.karma.client.model_copy(update={"window_days": window})
    karma_deals = [KarmaDeal(d.deal_id, d.company_id, d.owner_id, d.status, d.value, d.won_at,
                             d.lost_at, profit[i], tender[i], incident[i], d.created_at)
                   for i, d in enumerate(deals)]
    karma_companies = [KarmaCompany(c.company_id, c.name, c.segment,
                                    rng.choice((0.0, 0.0, 2.0))) for c in companies.values()]
    expected = client_totals(client_karma_lines(karma_deals, karma_companies, weights, NOW),
                             weights)
    table = table_from_records(deals, [], BOOK)
    table.profit = np.array([np.nan if p is None else p for p in profit])
    table.is_tender, table.public_incident = np.array(tender), np.array(incident)
    got = table_client_totals(table, karma_companies, weights, NOW)
    assert_close(got, expected)
