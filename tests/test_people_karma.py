"""Employee and manager karma: ledger lines per source record, weights applied afterwards,
incremental recomputation equal to a full one, teams from config or from the CRM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from syncd import store
from syncd.audit.facts import DEFERRED, Transition
from syncd.config import Team
from syncd.engine_model import CompanyRecord, DealRecord
from syncd.salesbook import EmployeeKarmaWeights, load_salesbook
from syncd.scoring.people import (
    KIND,
    PeopleLedger,
    Person,
    ViolationRecord,
    bonus,
    employee_amount,
    employee_lines,
    employee_totals,
    employee_weight,
    manager_karma,
    resolve_teams,
)

BOOK = load_salesbook(Path(__file__).resolve().parents[1] / "config/salesbooks/b2b-services-9.yaml")
TZ = ZoneInfo("Europe/Berlin")
W = EmployeeKarmaWeights(won_deal=10, won_value=0.001, upsale=5, loyal_client=7,
                         forward_move=1, violation_penalty=2)
T0 = datetime(2026, 3, 10, 12, tzinfo=UTC)


def deal(deal_id: str, status: str = "won", *, owner: str | None = "U1",
         company: str | None = "C1", value: float = 1000.0, won_days: int = 0,
         history: tuple[Transition, ...] = ()) -> DealRecord:
    won_at = T0 + timedelta(days=won_days) if status == "won" else None
    return DealRecord(deal_id=deal_id, owner_id=owner, company_id=company, status=status,
                      value=value, created_at=T0 - timedelta(days=60), won_at=won_at,
                      stage_key="warranty" if status == "won" else "briefing",
                      history=history, history_derived=not history)


def rows(lines) -> set[tuple[str, str, float, str, str, str]]:
    return {(x.subject_id, x.criterion, x.quantity, x.source_type, x.source_id, x.period)
            for x in lines}


def lines_of(deals, companies=(), violations=()):
    return employee_lines(deals, companies, violations, BOOK, TZ)


class TestCriteria:
    def test_won_deal_and_value_in_the_month_it_was_won(self) -> None:
        assert rows(lines_of([deal("D1", value=2500)])) == {
            ("U1", "won_deal", 1.0, "deal", "D1", "2026-03"),
            ("U1", "won_value", 2500.0, "deal", "D1", "2026-03"),
        }

    def test_month_is_local_to_the_tenant(self) -> None:
        late = DealRecord("D1", "U1", None, "won", 1.0, T0,
                          won_at=datetime(2026, 3, 31, 22, 30, tzinfo=UTC))  # 00:30 in Berlin
        assert {x.period for x in lines_of([late])} == {"2026-04"}

    def test_second_win_with_the_company_is_an_upsale_and_makes_it_loyal(self) -> None:
        lines = lines_of([deal("D2", won_days=40, owner="U2"), deal("D1")],
                         [CompanyRecord("C1", "Acme", owner_id="U3")])
        upsales = {x.source_id for x in lines if x.criterion == "upsale"}
        assert upsales == {"D2"}
        loyal = [x for x in lines if x.criterion == "loyal_client"]
        assert rows(loyal) == {("U3", "loyal_client", 1.0, "company", "C1", "2026-04")}

    def test_a_promoter_company_is_loyal_from_its_first_win(self) -> None:
        lines = lines_of([deal("D1")], [CompanyRecord("C1", "Acme", nps=9)])
        loyal = [x for x in lines if x.criterion == "loyal_client"]
        assert rows(loyal) == {("U1", "loyal_client", 1.0, "company", "C1", "2026-03")}

    def test_a_detractor_with_one_win_is_not_loyal(self) -> None:
        lines = lines_of([deal("D1")], [CompanyRecord("C1", "Acme", nps=8)])
        assert not [x for x in lines if x.criterion == "loyal_client"]

    def test_forward_moves_only(self) -> None:
        history = (Transition("briefing", "estimate", T0, "h1"),
                   Transition("estimate", "briefing", T0 + timedelta(days=1), "h2"),
                   Transition("briefing", "negotiation", T0 + timedelta(days=2), "h3"),
                   Transition("negotiation", DEFERRED, T0 + timedelta(days=3), "h4"))
        lines = lines_of([deal("D1", "open", history=history)])
        assert rows(lines) == {("U1", "forward_move", 1.0, "stage_change", "h1", "2026-03"),
                               ("U1", "forward_move", 1.0, "stage_change", "h3", "2026-03")}

    def test_violations_count_in_the_month_opened_for_the_deal_owner(self) -> None:
        violations = [ViolationRecord("17", "D1", "stalled", T0 + timedelta(days=30)),
                      ViolationRecord("18", None, "unmapped_stage", T0)]
        lines = lines_of([deal("D1", "open", owner="U9")], violations=violations)
        assert rows(lines) == {("U9", "violation", 1.0, "violation", "17", "2026-04")}

    def test_deals_without_owner_or_win_time_earn_nothing(self) -> None:
        no_time = DealRecord("D2", "U1", "C1", "won", 5.0, T0, won_at=None)
        assert lines_of([deal("D1", owner=None), no_time]) == []


class TestLedger:
    def test_the_same_record_passed_twice_counts_once(self) -> None:
        once = lines_of([deal("D1")])
        twice = lines_of([deal("D1"), deal("D1")])
        assert sorted(rows(once)) == sorted(rows(twice))
        assert len(twice) == len(rows(twice))

    def test_a_weight_change_recomputes_totals_from_the_same_lines(self) -> None:
        lines = lines_of([deal("D1", value=2000), deal("D2", won_days=1, value=1000)])
        before = employee_totals(lines, W)
        heavier = W.model_copy(update={"won_deal": 20.0})
        after = employee_totals(lines, heavier)
        # 2 wins + 3000 value + 1 upsale (+ loyal: two wins)
        assert before[("U1", "2026-03")] == pytest.approx(2 * 10 + 3 + 5 + 7)
        assert after[("U1", "2026-03")] == pytest.approx(2 * 20 + 3 + 5 + 7)

    def test_penalties_are_negative(self) -> None:
        assert employee_weight("violation", W) == -2
        line = lines_of([deal("D1", "open")], violations=[
            ViolationRecord("1", "D1", "inactive", T0)])[0]
        assert employee_amount(line, W) == -2

    def test_unknown_criterion_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="unknown employee karma criterion"):
            employee_weight("bribes", W)

    def test_incremental_update_equals_a_full_recomputation(self) -> None:
        history = (Transition("briefing", "estimate", T0, "h1"),)
        deals = [deal("D1"), deal("D2", won_days=3), deal("D3", company="C2"),
                 deal("D4", "open", history=history)]
        ledger = PeopleLedger(BOOK, TZ).load(deals, [CompanyRecord("C1", "A")], [])
        # D1 changes company and owner; D4 is won now; D3 is deleted
        changed = [deal("D1", company="C2", owner="U2"),
                   DealRecord("D4", "U1", "C1", "won", 50.0, T0, won_at=T0 + timedelta(days=9),
                              history=history)]
        old, new = ledger.update(changed, removed=["D3"])
        full = lines_of([changed[0], deals[1], changed[1]], [CompanyRecord("C1", "A")])
        assert rows(ledger.lines()) == rows(full)
        assert {x.source_id for x in old} >= {"D1", "D3"}
        assert ("U2", "won_deal", 1.0, "deal", "D1", "2026-03") in rows(new)

    def test_violations_follow_the_owner_and_can_change_alone(self) -> None:
        violations = [ViolationRecord("7", "D1", "stalled", T0),
                      ViolationRecord("8", "D1", "inactive", T0 + timedelta(days=40))]
        ledger = PeopleLedger(BOOK, TZ).load([deal("D1", "open")], [], violations)
        ledger.update([deal("D1", "open", owner="U2")])
        assert {(x.subject_id, x.source_id) for x in ledger.lines()} == {("U2", "7"),
                                                                         ("U2", "8")}
        old, new = ledger.update([], violations={"D1": [violations[0]]})
        assert {x.source_id for x in new} == {"7"}
        assert {x.source_id for x in old} == {"7", "8"}
        assert rows(ledger.lines()) == {("U2", "violation", 1.0, "violation", "7", "2026-03")}

    def test_an_update_touches_only_the_changed_units(self) -> None:
        deals = [deal(f"D{i}", company=f"C{i}") for i in range(100)]
        ledger = PeopleLedger(BOOK, TZ).load(deals, [], [])
        old, new = ledger.update([deal("D5", company="C5", value=9.0)])
        assert {x.source_id for x in old} == {"D5"}
        assert {x.source_id for x in new} == {"D5"}


class TestManagersAndBonus:
    USERS = [Person("1", "Anna Petrova", "anna@x.example"), Person("2", "Boris", None, "1"),
             Person("3", "Clara", "clara@x.example", "1"), Person("4", "Dmitry", None, None)]

    def test_teams_from_the_crm_managers(self) -> None:
        teams, problems = resolve_teams([], self.USERS)
        assert teams == {"1": ["2", "3"]} and problems == []

    def test_teams_from_config_by_name_email_or_id_win_over_the_crm(self) -> None:
        configured = [Team(manager="anna@x.example", members=["Boris", "4", "nobody"])]
        teams, problems = resolve_teams(configured, self.USERS)
        assert teams == {"1": ["2", "4"]}
        assert problems == ["mapping.teams: no CRM user matches 'nobody'"]

    def test_manager_karma_is_the_mean_of_the_whole_team(self) -> None:
        totals = {("2", "2026-03"): 30.0, ("3", "2026-03"): 10.0, ("2", "2026-04"): 8.0}
        result = {(m.manager_id, m.period): m for m in manager_karma(totals, {"1": ["2", "3"]})}
        assert result[("1", "2026-03")].karma == pytest.approx(20.0)
        assert result[("1", "2026-04")].karma == pytest.approx(4.0)  # Clara counts as 0
        assert dict(result[("1", "2026-04")].member_karma) == {"2": 8.0, "3": 0.0}

    def test_a_manager_without_a_team_has_no_karma(self) -> None:
        assert manager_karma({("2", "2026-03"): 5.0}, {"9": []}) == []

    def test_bonus_is_karma_times_rate_never_negative(self) -> None:
        assert bonus(123.456, 10) == 1234.56
        assert bonus(-50.0, 10) == 0.0


def test_sync_stores_the_employee_ledger_and_replaces_it(database: store.Database) -> None:
    """The pass's ledger write: lines land as kind "employee" with weight and amount, and a
    second write replaces them rather than adding (no double counting across runs)."""
    lines = lines_of([deal("D1", value=2000), deal("D2", won_days=1)])
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, "t1", "pipedrive")
        for _ in range(2):
            store.replace_karma_lines(
                session, tenant_id, KIND, lines,
                lambda x: (employee_weight(x.criterion, W), employee_amount(x, W)))
    with database.session() as session:
        stored = session.execute(select(store.KarmaLineRow).where(
            store.KarmaLineRow.kind == KIND)).scalars().all()
        assert len(stored) == len(lines)
        total = sum(r.amount for r in stored)
    assert total == pytest.approx(employee_totals(lines, W)[("U1", "2026-03")])


def test_the_report_reweights_stored_lines(database: store.Database) -> None:
    """Changing a weight in the Sales Book and re-running the report gives new totals from
    the very same stored lines (no new pass), and bonuses follow the rate."""
    from types import SimpleNamespace

    from syncd.report import people_section

    lines = lines_of([deal("D1", value=2000), deal("D2", won_days=1, value=1000)])
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, "t1", "pipedrive")
        store.replace_karma_lines(
            session, tenant_id, KIND, lines,
            lambda x: (employee_weight(x.criterion, W), employee_amount(x, W)))
    with database.session() as session:
        stored = store.karma_line_rows(session, tenant_id, KIND)

    def report_with(weights: EmployeeKarmaWeights, rate: float) -> dict:
        book = BOOK.model_copy(update={"karma": BOOK.karma.model_copy(
            update={"employee": weights, "bonus_rate": rate})})
        tenant = SimpleNamespace(book=book, config=SimpleNamespace(
            mapping=SimpleNamespace(teams=[])))
        users = [Person("U9", "Vera"), Person("U1", "Anna", manager_id="U9"),
                 Person("U2", "Boris", manager_id="U9")]
        return people_section(stored, users, tenant, ["2026-03"], "2026-04")

    before = report_with(W, 0.0)
    after = report_with(W.model_copy(update={"won_deal": 100.0}), 2.0)
    (one,) = before["employees"]
    (two,) = after["employees"]
    assert one["lines"] == two["lines"] == len(lines)
    assert two["karma"] - one["karma"] == pytest.approx(2 * (100 - 10))
    assert two["bonus"] == pytest.approx(round(two["karma"] * 2.0, 2))
    assert one["bonus_final"] is True
    (manager,) = after["managers"]
    assert manager["user_id"] == "U9" and manager["members"] == ["U1", "U2"]
    assert manager["karma"] == pytest.approx(two["karma"] / 2)  # Boris earned 0 in March
    assert after["teams_from"] == "crm"
