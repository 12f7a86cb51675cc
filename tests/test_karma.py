"""Client karma: one ledger line per criterion and source, weights applied afterwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncd.salesbook import ClientKarmaWeights
from syncd.scoring.karma import (
    KarmaCompany,
    KarmaDeal,
    KarmaLine,
    SegmentKarma,
    client_karma_lines,
    client_totals,
    line_amount,
    line_weight,
    segment_karma,
)

NOW = datetime(2024, 6, 15, 12, tzinfo=UTC)
W = ClientKarmaWeights(revenue_weight=0.001, profit_weight=0.01, lost_tender_penalty=50,
                       loss_tender_penalty=100, incident_penalty=200)


def kdeal(deal_id: str, status: str = "won", *, company: str | None = "C1",
          value: float = 0.0, profit: float | None = None, tender: bool = False,
          incident: bool = False, days_ago: int = 10) -> KarmaDeal:
    when = NOW - timedelta(days=days_ago)
    return KarmaDeal(deal_id=deal_id, company_id=company, owner_id="U1", status=status,
                     value=value, won_at=when if status == "won" else None,
                     lost_at=when if status == "lost" else None, profit=profit,
                     is_tender=tender, public_incident=incident)


def company(cid: str, segment: str | None = None, incidents: float = 0) -> KarmaCompany:
    return KarmaCompany(company_id=cid, name=cid.lower(), segment=segment,
                        public_incidents=incidents)


def lines_for(*deals: KarmaDeal, companies: tuple[KarmaCompany, ...] = (),
              weights: ClientKarmaWeights = W) -> list[KarmaLine]:
    return client_karma_lines(list(deals), list(companies), weights, NOW)


def as_rows(lines: list[KarmaLine]) -> set[tuple[str, str, float, str, str]]:
    return {(line.subject_id, line.criterion, line.quantity, line.source_type, line.source_id)
            for line in lines}


class TestCriteria:
    def test_revenue_and_profit_of_a_won_deal(self) -> None:
        lines = lines_for(kdeal("D1", value=100_000, profit=20_000))
        assert as_rows(lines) == {("C1", "revenue", 100_000, "deal", "D1"),
                                  ("C1", "profit", 20_000, "deal", "D1")}
        assert client_totals(lines, W) == {"C1": pytest.approx(100 + 200)}

    def test_missing_profit_adds_no_line(self) -> None:
        lines = lines_for(kdeal("D1", value=5, profit=None))
        assert {line.criterion for line in lines} == {"revenue"}

    def test_a_lost_tender_is_a_penalty_and_a_lost_plain_deal_is_nothing(self) -> None:
        lines = lines_for(kdeal("D1", "lost", tender=True, value=1e6),
                          kdeal("D2", "lost", value=1e6))
        assert as_rows(lines) == {("C1", "lost_tender", 1.0, "deal", "D1")}
        assert client_totals(lines, W)["C1"] == pytest.approx(-50)

    def test_a_won_tender_at_a_loss_is_a_penalty(self) -> None:
        lines = lines_for(kdeal("D1", tender=True, value=1000, profit=-300))
        assert {line.criterion for line in lines} == {"revenue", "profit", "loss_tender"}
        assert client_totals(lines, W)["C1"] == pytest.approx(1 - 3 - 100)

    def test_a_profitable_won_tender_is_not_penalised(self) -> None:
        lines = lines_for(kdeal("D1", tender=True, value=1000, profit=0))
        assert "loss_tender" not in {line.criterion for line in lines}

    def test_incidents_from_deals_and_from_the_company_record(self) -> None:
        lines = lines_for(kdeal("D1", "open", incident=True),
                          companies=(company("C1", incidents=2),))
        assert as_rows(lines) == {("C1", "incident", 1.0, "deal", "D1"),
                                  ("C1", "incident", 2, "company", "C1")}
        assert client_totals(lines, W)["C1"] == pytest.approx(-600)

    def test_open_deals_earn_nothing_but_incidents(self) -> None:
        assert lines_for(kdeal("D1", "open", value=1e6, profit=1e5, tender=True)) == []

    def test_deals_without_a_company_have_no_client(self) -> None:
        assert lines_for(kdeal("D1", company=None, value=100)) == []


class TestLedger:
    def test_the_same_source_is_never_counted_twice(self) -> None:
        twice = kdeal("D1", value=100, profit=10, incident=True)
        lines = lines_for(twice, twice, companies=(company("C1", incidents=1),) * 2)
        assert len(lines) == 4
        assert len({(line.criterion, line.source_type, line.source_id) for line in lines}) == 4

    def test_a_weight_change_recomputes_totals_from_the_same_lines(self) -> None:
        lines = lines_for(kdeal("D1", value=100_000, profit=10_000),
                          kdeal("D2", "lost", tender=True))
        heavier = W.model_copy(update={"lost_tender_penalty": 500.0, "revenue_weight": 0.01})
        assert lines_for(kdeal("D1", value=100_000, profit=10_000),
                         kdeal("D2", "lost", tender=True), weights=heavier) == lines
        assert client_totals(lines, W)["C1"] == pytest.approx(100 + 100 - 50)
        assert client_totals(lines, heavier)["C1"] == pytest.approx(1000 + 100 - 500)

    def test_line_amount_is_signed_weight_times_quantity(self) -> None:
        line = KarmaLine("company", "C1", "incident", 3, "company", "C1")
        assert line_weight(line, W) == -200
        assert line_amount(line, W) == -600

    def test_an_unknown_criterion_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="unknown client karma criterion"):
            line_amount(KarmaLine("user", "U1", "won_deal", 1, "deal", "D1"), W)

    def test_totals_are_per_company_and_ignore_other_subjects(self) -> None:
        lines = [*lines_for(kdeal("D1", value=1000), kdeal("D2", company="C2", value=3000)),
                 KarmaLine("user", "U1", "revenue", 1e9, "deal", "D1")]
        assert client_totals(lines, W) == {"C1": pytest.approx(1), "C2": pytest.approx(3)}


class TestWindow:
    def test_window_limits_deals_by_won_and_lost_time(self) -> None:
        windowed = W.model_copy(update={"window_days": 30})
        deals = (kdeal("new", value=1000, days_ago=30), kdeal("old", value=1000, days_ago=31),
                 kdeal("lost-old", "lost", tender=True, days_ago=40))
        assert {line.source_id for line in lines_for(*deals, weights=windowed)} == {"new"}
        assert {line.source_id for line in lines_for(*deals)} == {"new", "old", "lost-old"}

    def test_deals_closed_after_now_do_not_count(self) -> None:
        assert lines_for(kdeal("future", value=1000, days_ago=-1)) == []


class TestSegments:
    def test_mean_and_count_per_segment(self) -> None:
        totals = {"B1": 100.0, "B2": -50.0, "S1": 30.0, "X1": 7.0}
        companies = [company("B1", "banks"), company("B2", "banks"), company("S1", "state"),
                     company("X1"), company("B9", "banks")]  # B9: no karma line: counts as 0
        assert segment_karma(totals, companies) == [
            SegmentKarma("(none)", 7.0, 1), SegmentKarma("banks", 50.0 / 3, 3),
            SegmentKarma("state", 30.0, 1)]

    def test_a_company_listed_twice_counts_once(self) -> None:
        result = segment_karma({"B1": 10.0}, [company("B1", "banks")] * 2)
        assert result == [SegmentKarma("banks", 10.0, 1)]
