"""KPIs: funnel, forward moves, account KPIs, plan inversion, contact matrix, benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from syncd.audit.facts import DEFERRED, Transition
from syncd.engine_model import (
    ActivityRecord,
    Clock,
    CompanyRecord,
    DealRecord,
    iso_weeks_back,
    shift_month,
    stays,
)
from syncd.kpi import compute_kpis, nps, plan_inversion, window
from syncd.kpi.account import Accounts
from syncd.kpi.benchmark import benchmark, peer_label
from syncd.kpi.funnel import ForwardMoves, Funnel
from syncd.kpi.matrix import ContactMatrix
from syncd.salesbook import KpiPlan, load_salesbook

BOOK = load_salesbook(Path(__file__).resolve().parents[1] / "config/salesbooks/b2b-services-9.yaml")
TZ = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC)
DAY = timedelta(days=1)


def t(days_ago: float) -> datetime:
    return NOW - timedelta(days=days_ago)


def hist(*steps: tuple[str | None, str | None, float]) -> tuple[Transition, ...]:
    return tuple(Transition(a, b, t(d), f"h{i}") for i, (a, b, d) in enumerate(steps))


def deal(deal_id: str, status: str = "open", *, history: tuple[Transition, ...] = (),
         created: float = 100, closed: float | None = None, company: str | None = "C1",
         owner: str = "U1", value: float = 1000.0, source: str | None = "Website",
         stage: str | None = "briefing") -> DealRecord:
    won_at = t(closed) if status == "won" and closed is not None else None
    lost_at = t(closed) if status == "lost" and closed is not None else None
    return DealRecord(deal_id, owner, company, status, value, t(created), won_at, lost_at,
                      stage, source, history, not history)


class TestPlanInversion:
    def test_the_seed_example_is_150_deals_and_500_leads(self) -> None:
        result = plan_inversion(135_000, 900, 0.30)
        assert result["deals_needed"] == 150
        assert result["leads_needed"] == 500  # 150 / 0.3 in binary floats is 500.00000000000006

    def test_rounds_up_to_whole_deals_and_leads(self) -> None:
        result = plan_inversion(100_000, 900, 0.25)
        assert (result["deals_needed"], result["leads_needed"]) == (112, 448)

    @pytest.mark.parametrize("args", [(0, 900, 0.3), (1000, 0, 0.3), (1000, 900, 0),
                                      (1000, 900, 1.5)])
    def test_rejects_meaningless_inputs(self, args: tuple[float, float, float]) -> None:
        with pytest.raises(ValueError, match="plan inversion needs"):
            plan_inversion(*args)


class TestStaysAndFunnel:
    ORDER = {s.key: i for i, s in enumerate(BOOK.stages)}

    def test_stays_walk_the_history_from_creation(self) -> None:
        d = deal("D1", "won", history=hist(("briefing", "estimate", 90),
                                           ("estimate", "negotiation", 80)), closed=70,
                 stage="negotiation")
        walked = [(s.stage, s.exit) for s in stays(d, self.ORDER)]
        assert walked == [("briefing", "forward"), ("estimate", "forward"),
                          ("negotiation", "won")]

    def test_funnel_counts_entries_moves_losses_and_days(self) -> None:
        deals = [
            deal("D1", "won", history=hist(("briefing", "estimate", 90)), created=100,
                 closed=70, stage="estimate"),
            deal("D2", "lost", history=hist(("briefing", "estimate", 96)), created=100,
                 closed=90, stage="estimate"),
            deal("D3", history=hist(("briefing", "estimate", 60), ("estimate", "briefing", 50)),
                 created=64),
            deal("D4", history=hist(("briefing", DEFERRED, 30)), created=34),
        ]
        funnel = Funnel(BOOK, t(365), NOW)
        for d in deals:
            funnel.add(d)
        rows = {r["stage"]: r for r in funnel.result()}
        briefing, estimate = rows["briefing"], rows["estimate"]
        assert (briefing["entered"], briefing["moved_on"], briefing["lost"]) == (4, 3, 0)
        assert briefing["open_now"] == 1  # D3 is back in briefing
        assert briefing["conversion"] == 0.75
        assert briefing["median_days"] == 4.0  # stays of 10, 4, 4, 4 days
        assert (estimate["entered"], estimate["moved_on"], estimate["lost"]) == (3, 1, 1)
        assert estimate["mean_days"] == pytest.approx((20 + 6 + 10) / 3, abs=0.05)
        assert [r["stage"] for r in funnel.result()] == [s.key for s in BOOK.stages]

    def test_funnel_window_excludes_older_entries(self) -> None:
        funnel = Funnel(BOOK, t(30), NOW)
        funnel.add(deal("D1", history=hist(("briefing", "estimate", 40)), created=50))
        rows = {r["stage"]: r for r in funnel.result()}
        assert rows["briefing"]["entered"] == 0 and rows["estimate"]["entered"] == 0


class TestForwardMoves:
    def test_net_moves_per_owner_and_iso_week_against_the_target(self) -> None:
        weeks = iso_weeks_back(NOW, TZ, 2)
        moves = ForwardMoves(BOOK, TZ, weeks, target=2)
        # NOW is a Monday: 0.1 days ago is this ISO week, 3 days ago the week before
        moves.add(deal("D1", history=hist(("briefing", "estimate", 0.1),
                                          ("estimate", "contract", 0.1),
                                          ("contract", "estimate", 0.1),
                                          ("estimate", "briefing", 3),
                                          ("briefing", "estimate", 300))))
        moves.add(deal("D2", owner="U2", history=hist(("briefing", "estimate", 0.2),
                                                      ("estimate", "negotiation", 0.2))))
        result = moves.result({"U1": "Anna"})
        owners = {o["owner_id"]: o for o in result["owners"]}
        this_week = weeks[-1]
        assert owners["U1"]["weeks"][this_week] == {"forward": 2, "backward": 1, "net": 1}
        assert owners["U1"]["weeks"][weeks[0]] == {"forward": 0, "backward": 1, "net": -1}
        assert owners["U1"]["name"] == "Anna"
        assert owners["U2"]["weeks_on_target"] == 1
        assert owners["U1"]["weeks_on_target"] == 0


class TestAccounts:
    def make(self, deals: list[DealRecord]) -> dict:
        span = window(NOW, TZ, 12)
        accounts = Accounts(Clock(TZ), span.start, NOW, span.previous_start, span.months)
        for d in deals:
            accounts.add(d)
        companies = {"C1": CompanyRecord("C1", "A", nps=10), "C2": CompanyRecord("C2", "B", nps=3),
                     "C3": CompanyRecord("C3", "C", nps=8), "C4": CompanyRecord("C4", "D")}
        return accounts.result(companies, KpiPlan(new_clients_per_month=1,
                                                  revenue_per_month=2000), {"U1": "Anna"})

    def test_account_kpis(self) -> None:
        result = self.make([
            deal("D1", "won", company="C1", closed=500, created=520, value=1000),  # earlier client
            deal("D2", "won", company="C1", closed=30, created=40, value=3000),  # up-sale
            deal("D3", "won", company="C2", closed=400, created=420, value=500),  # churned
            deal("D4", "won", company="C3", closed=10, created=20, value=2000, source="Referral"),
            deal("D5", "lost", company="C4", closed=5, created=20, source="Referral"),
            deal("D6", "open", company="C4", created=3, source=None),
        ])
        assert result["win_rate"]["won"] == 2 and result["win_rate"]["lost"] == 1
        assert result["win_rate"]["rate"] == pytest.approx(2 / 3, abs=1e-4)
        assert result["new_clients"]["total"] == 1  # C3; C1's first win is older
        assert result["new_clients"]["plan"] == 12
        sources = {s["source"]: s for s in result["lead_sources"]}
        assert sources["Referral"] == {"source": "Referral", "deals": 2, "won": 1,
                                       "conversion": 0.5}
        assert sources["(none)"]["deals"] == 1
        assert result["churn"] == {"clients_at_start": 2, "lost": 1, "rate": 0.5}
        assert result["repeat_clients"] == {"clients": 3, "repeat": 1, "share": 0.3333}
        assert result["upsale_revenue"] == {"deals": 1, "revenue": 3000.0}
        assert result["nps"]["nps"] == pytest.approx(0.0)  # a promoter, a detractor, a passive
        clv = result["clv"]
        assert clv["average_purchase"] == pytest.approx(6500 / 4)
        years = [500 / 365.25, 400 / 365.25, 1.0]  # C3's 10 days count as one year
        per_year = (2 / years[0] + 1 / years[1] + 1 / years[2]) / 3
        assert clv["clv"] == pytest.approx(6500 / 4 * per_year * sum(years) / 3, abs=0.01)
        inversion = result["plan_inversion"]
        assert inversion["average_won_value"] == pytest.approx(2500.0)
        assert inversion["deals_needed"] == 1

    def test_nps_formula(self) -> None:
        assert nps([10, 9, 9, 8, 7, 6, 0, 3, 10, 10])["nps"] == pytest.approx(20.0)
        assert nps([])["nps"] is None


class TestContactMatrix:
    def test_facts_by_month_36_back_12_forward_sparse(self) -> None:
        clock = Clock(TZ)
        matrix = ContactMatrix(clock, NOW)
        assert len(matrix.months) == 48
        assert matrix.months[35] == "2026-06" and matrix.months[0] == "2023-07"
        assert matrix.months[-1] == "2027-06"
        acts = [
            ActivityRecord("a1", "call", True, t(40), "C1", None, None),
            ActivityRecord("a2", "call", True, t(41), "C1", None, None),
            ActivityRecord("a3", "meeting", True, t(40), "C1", None, None),
            ActivityRecord("a4", "email", True, t(40), "C1", None, None),  # not a fact kind
            ActivityRecord("a5", "meeting", False, NOW + 40 * DAY, "C1", None, None),
            ActivityRecord("a6", "call", False, t(40), "C1", None, None),  # overdue, not a fact
            ActivityRecord("a7", "call", True, t(2000), "C1", None, None),  # too old
            ActivityRecord("a8", "call", True, t(10), None, None, None),  # no company
        ]
        for a in acts:
            matrix.add_activity(a)
        matrix.add_deal(deal("D1", "won", closed=40, company="C1"))
        result = matrix.result({"C1": CompanyRecord("C1", "Acme", region="North")})
        (row,) = result["rows"]
        assert row["company"] == "Acme" and row["region"] == "North"
        may = shift_month("2026-06", -1)
        assert row["cells"][may] == {"call": 2, "visit": 1, "contract": 1, "planned": False}
        assert row["cells"]["2026-07"] == {"call": 0, "visit": 1, "contract": 0, "planned": True}
        assert set(row["cells"]) == {may, "2026-07"}
        assert row["totals"] == {"call": 2, "visit": 1, "contract": 1}


class TestBenchmark:
    def test_other_tenants_are_anonymised_and_only_same_book_compared(self) -> None:
        def funnel(book: str, conv: float) -> dict:
            return {"salesbook": book, "deals": 10, "funnel": [
                {"stage": "briefing", "title": "Briefing", "conversion": conv}]}

        funnels = {"acme": funnel("b2b", 0.5), "globex": funnel("b2b", 0.7),
                   "initech": funnel("b2b", 0.9), "umbrella": funnel("retail", 0.1)}
        result = benchmark("acme", funnels)
        text = repr(result)
        assert "globex" not in text and "initech" not in text and "umbrella" not in text
        assert result["tenants"] == 3
        assert result["stages"][0]["you"] == 0.5
        assert result["stages"][0]["peers"] == {"median": 0.8, "min": 0.7, "max": 0.9, "count": 2}
        assert {p["tenant"] for p in result["peers"]} == {"Peer A", "Peer B"}
        assert peer_label(27) == "Peer B1"


def test_compute_kpis_in_one_pass() -> None:
    deals = [deal("D1", "won", history=hist(("briefing", "estimate", 20)), closed=10,
                  created=30, stage="estimate"),
             deal("D2", "lost", closed=5, created=30)]
    acts = [ActivityRecord("a1", "call", True, t(3), "C1", "D1", "U1")]
    seen: list[str] = []
    kpis, matrix = compute_kpis(BOOK, TZ, NOW, deals, acts, {}, {},
                                on_deal=lambda d: seen.append(d.deal_id))
    assert seen == ["D1", "D2"]
    assert kpis["win_rate"]["rate"] == 0.5
    assert kpis["forward_moves"]["target"] == BOOK.kpis.forward_moves_per_week
    assert kpis["period"]["months"][-1] == "2026-06" and len(kpis["period"]["months"]) == 12
    assert matrix["rows"][0]["cells"]["2026-06"]["call"] == 1


def test_clock_months_are_local() -> None:
    clock = Clock(ZoneInfo("Asia/Kolkata"))  # +05:30: the half-hour matters
    assert clock.month(datetime(2026, 1, 31, 18, 29, tzinfo=UTC)) == "2026-01"
    assert clock.month(datetime(2026, 1, 31, 18, 30, tzinfo=UTC)) == "2026-02"


def test_updating_a_deal_equals_counting_from_scratch() -> None:
    from syncd.kpi import KpiState

    before = [deal("D1", history=hist(("briefing", "estimate", 20)), created=30,
                   stage="estimate"),
              deal("D2", "won", company="C2", closed=50, created=60, stage="briefing"),
              deal("D3", "lost", closed=5, created=40)]
    after = [before[0], deal("D2", "won", company="C3", closed=12, created=60,
                             history=hist(("briefing", "estimate", 40)), stage="estimate"),
             deal("D3", "won", closed=4, created=40, value=7.0)]
    names, companies = {"U1": "Anna"}, {"C1": CompanyRecord("C1", "A", nps=10)}
    incremental = KpiState(BOOK, TZ, NOW)
    for d in before:
        incremental.add_deal(d)
    for old, new in zip(before, after, strict=True):
        if old != new:
            incremental.update_deal(old, new)
    full = KpiState(BOOK, TZ, NOW)
    for d in after:
        full.add_deal(d)
    assert incremental.kpis(companies, names) == full.kpis(companies, names)
    assert incremental.contact_matrix(companies) == full.contact_matrix(companies)


def test_a_move_into_a_closed_status_closes_the_deal_at_the_stage_it_left() -> None:
    # amoCRM 142/143 and Bitrix24 WON/LOSE have no Sales Book stage: the move's to_key is None.
    with_move = [
        deal("L", "lost", history=hist(("briefing", "estimate", 20), ("estimate", None, 10)),
             created=30, closed=10, stage=None),
        deal("W", "won", history=hist(("negotiation", "warranty", 20), ("warranty", None, 5)),
             created=30, closed=5, stage=None),
    ]
    without_move = [
        deal("L", "lost", history=hist(("briefing", "estimate", 20)), created=30, closed=10,
             stage="estimate"),
        deal("W", "won", history=hist(("negotiation", "warranty", 20)), created=30, closed=5,
             stage="warranty"),
    ]
    results = []
    for deals in (with_move, without_move):
        funnel = Funnel(BOOK, t(365), NOW)
        for d in deals:
            funnel.add(d)
        results.append({r["stage"]: r for r in funnel.result()})
    assert results[0] == results[1]
    rows = results[0]
    assert (rows["estimate"]["lost"], rows["estimate"]["moved_on"]) == (1, 0)
    assert (rows["warranty"]["moved_on"], rows["warranty"]["lost"]) == (1, 0)
    assert rows["estimate"]["mean_days"] == 10.0


def test_days_in_stage_median_and_mean_match_the_exact_values() -> None:
    import statistics

    stays_days = [0.5, 2.25, 3.0, 10.75, 41.0, 7.5]
    deals = []
    for i, days in enumerate(stays_days):
        entered = 100 + i
        deals.append(deal(f"D{i}", history=hist(("briefing", "estimate", entered - days)),
                          created=entered, stage="estimate"))
    funnel = Funnel(BOOK, t(365), NOW)
    for d in deals:
        funnel.add(d)
    briefing = funnel.result()[0]
    assert briefing["median_days"] == round(statistics.median(stays_days), 1)
    assert briefing["mean_days"] == round(statistics.fmean(stays_days), 1)
