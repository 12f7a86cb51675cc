"""Audit fidelity through the store (issue 12 items 1, 2, 6, 8; issue 11 item 6).

Every test here stores records the way a pass does (``run_pass`` with an in-process CRM
that serves them and accepts write-back), then reads the result back from the database:
the pass summary, the stored violations and ledgers, the report, and what was written to
the CRM.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from syncd import store
from syncd.config import Tenant, TenantConfig
from syncd.connector import (
    ConnectionSettings,
    Connector,
    FieldSpec,
    FieldWrite,
    Inspection,
    PullContext,
    TaskCreate,
    WriteResult,
)
from syncd.plugins import make_plugin_manager
from syncd.records import Activity, Company, Deal, Page, Pipeline, Stage
from syncd.report import build_report
from syncd.salesbook import load_salesbook
from syncd.sync import PassOptions, run_pass
from syncd.writeback import marker_for

BOOK = load_salesbook(Path(__file__).resolve().parents[1] / "config/salesbooks/b2b-services-9.yaml")
NOW = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@dataclass
class CrmData:
    """What the in-process CRM holds; write-back changes it as a real CRM would."""

    companies: list[Company] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    field_writes: list[FieldWrite] = field(default_factory=list)
    tasks: list[TaskCreate] = field(default_factory=list)


class MemCRM(Connector):
    """A CRM kept in memory: serves ``data`` and applies writes and tasks to it."""

    name = "memcrm"
    streams = ("pipelines", "stages", "companies", "deals", "activities")
    data: ClassVar[CrmData]

    def pull(self, stream: str, cursor: str | None, context: PullContext) -> Iterator[Page]:
        records: Sequence[Any] = {
            "pipelines": [Pipeline("p1", "Sales")],
            "stages": [Stage("s1", "p1", "Briefing", 1), Stage("s2", "p1", "Estimate", 2),
                       Stage("s9", "p1", "Won", 9)],
            "companies": self.data.companies,
            "deals": self.data.deals,
            "activities": self.data.activities,
        }[stream]
        yield Page(stream=stream, records=list(records), requests=1)

    def inspect(self) -> Inspection:
        return Inspection()

    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        return None

    def write_field(self, change: FieldWrite) -> WriteResult:
        self.data.field_writes.append(change)
        records = self.data.companies if change.entity == "company" else self.data.deals
        for record in records:
            if record.external_id == change.external_id:
                record.fields[change.field_name] = change.value
        return WriteResult(ok=True)

    def find_task(self, task: TaskCreate) -> str | None:
        return next((a.external_id for a in self.data.activities if task.marker in a.note),
                    None)

    def create_task(self, task: TaskCreate) -> WriteResult:
        """Like a CRM: the task becomes a planned activity of the deal, with the marker in
        its note and the type syncd asked for."""
        self.data.tasks.append(task)
        task_id = f"T{len(self.data.tasks)}"
        self.data.activities.append(Activity(
            task_id, getattr(task, "task_type", None) or "task", subject=task.subject, done=False,
            due_at=datetime.combine(task.due, datetime.min.time(), UTC), deal_id=task.deal_id,
            owner_id=task.owner_id, created_at=NOW, note=f"{task.note}\n[{task.marker}]"))
        return WriteResult(ok=True, crm_id=task_id)


def make_tenant(data: CrmData, **overrides: Any) -> Tenant:
    connector = type("MemCRMForTest", (MemCRM,), {"data": data})
    config = {
        "plugin": "memcrm", "salesbook": BOOK.key, "timezone": "UTC",
        "connection": {"base_url": "mem://"},
        "mapping": {
            "stages": {"Sales": {"Briefing": "briefing", "Estimate": "estimate"}},
            "activity_types": {"call": "call", "meeting": "meeting", "task": "task"},
            "fields": {"deal": {"lead_source": "Source", "estimate_link": "Estimate link",
                                "contract_number": "Contract", "profit": "Profit",
                                "snooze_until": "Snooze until",
                                "snooze_reason": "Snooze reason"},
                       "company": {"segment": "Segment"}},
        },
        "writeback": {"enabled": True, "create_tasks": True, "task_rules": ["no_next_step"]},
    }
    for key, value in overrides.items():
        config[key] = value if not isinstance(value, dict) else {**config.get(key, {}),
                                                                   **value}
    return Tenant(key="acme", file=Path("acme.yaml"), config=TenantConfig.model_validate(config),
                  book=BOOK, connector_class=connector,
                  settings=ConnectionSettings(base_url="mem://"), interval_minutes=60)


def sync(database: store.Database, tenant: Tenant, *, at: datetime = NOW,
         as_of: datetime | None = None) -> Any:
    plugins = make_plugin_manager(load_entrypoints=False)
    return run_pass(database, plugins, tenant,
                    PassOptions(as_of=as_of, clock=lambda: at, full=True))


def open_rules(database: store.Database, deal_id: str) -> set[str]:
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, "acme", "memcrm")
        return {v.rule for v in store.open_violations(session, tenant_id)
                if v.deal_external_id == deal_id}


def briefing_deal(deal_id: str, *, days: float = 30, **fields: Any) -> Deal:
    return Deal(deal_id, f"Deal {deal_id}", "open", "p1", "s1", owner_id="u1",
                contact_ids=["p1"], created_at=ago(days), stage_changed_at=ago(days),
                fields={"Source": "Web", **fields})


# -- 12.1 snooze ----------------------------------------------------------------------------


def test_a_snooze_date_without_a_reason_is_no_snooze(database: store.Database) -> None:
    """Spec: a snooze is a future date *with* a non-empty reason. A date alone (or a blank
    reason) hides nothing; a date with a reason hides stalled, inactive and no_next_step."""
    later = (NOW + timedelta(days=10)).date().isoformat()
    data = CrmData(deals=[
        briefing_deal("D1", **{"Snooze until": later}),
        briefing_deal("D2", **{"Snooze until": later, "Snooze reason": "   "}),
        briefing_deal("D3", **{"Snooze until": later, "Snooze reason": "Client on holiday"}),
    ])
    sync(database, make_tenant(data))
    neglect = {"stalled", "inactive", "no_next_step"}
    assert open_rules(database, "D1") >= neglect
    assert open_rules(database, "D2") >= neglect
    assert open_rules(database, "D3") & neglect == set()


# -- 11.6 syncd's own tasks -----------------------------------------------------------------


def test_a_pass_after_task_creation_keeps_no_next_step_open(database: store.Database) -> None:
    """The tasks syncd creates for "no next step" are planned activities of the deal in the
    CRM, but a reminder is not the work: the next pass keeps the violations open."""
    data = CrmData(deals=[briefing_deal(f"D{i}") for i in range(1, 6)])
    tenant = make_tenant(data)
    sync(database, tenant)  # the baseline: violations opened, no tasks (no flood)
    data.deals.append(briefing_deal("D6"))
    sync(database, tenant, at=NOW + timedelta(hours=1))  # D6 is new: one task queued, created
    assert [t.deal_id for t in data.tasks] == ["D6"]
    (created,) = [a for a in data.activities if a.external_id == "T1"]
    created.note = created.subject = ""  # found by its CRM id in the ledger alone
    # every deal gets a syncd task, including ones only findable by their marker (typed as
    # a call, as amoCRM's hard-coded type 1 was mapped)
    for deal in data.deals[:5]:
        data.activities.append(Activity(
            f"X{deal.external_id}", "call", done=False, due_at=NOW + timedelta(days=30),
            deal_id=deal.external_id, company_id="C1", created_at=NOW,
            note=f"Fix it\n\n[{marker_for(999)}]"))
    summary = sync(database, tenant, at=NOW + timedelta(hours=2))
    assert summary.violations_resolved == 0
    for deal in data.deals:
        assert "no_next_step" in open_rules(database, deal.external_id), deal.external_id
    # a call a person plans resolves it, and only it is a planned call in the contact matrix
    data.activities.append(Activity("H1", "call", done=False, due_at=NOW + timedelta(days=30),
                                    deal_id="D1", company_id="C1", created_at=NOW))
    sync(database, tenant, at=NOW + timedelta(hours=3))
    assert "no_next_step" not in open_rules(database, "D1")
    assert "no_next_step" in open_rules(database, "D2")
    report = build_report(database, tenant, clock=NOW + timedelta(hours=3))
    (row,) = report["contact_matrix"]["rows"]
    assert row["cells"]["2026-06"]["call"] == 1


def test_a_task_intent_without_its_text_is_never_sent(database: store.Database) -> None:
    """A task row whose text is missing (NULL desired_value: a damaged or hand-edited
    ledger) must not reach the CRM as a task called "None"; it is reported as failed."""
    data = CrmData(deals=[briefing_deal("D1")])
    tenant = make_tenant(data)
    sync(database, tenant)
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, "acme", "memcrm")
        store.mark_pending(session, tenant_id, "task", "deal", "D1", marker_for(4242), None)
    summary = sync(database, tenant, at=NOW + timedelta(hours=1))
    assert all(t.marker != marker_for(4242) for t in data.tasks)
    assert not any("None" in (t.subject or "") or "None" in (t.note or "")
                   for t in data.tasks)
    assert summary.writes["tasks_failed"] == 1
    assert any(marker_for(4242) in line and "no task text" in line
               for line in summary.write_failures)
    with database.session() as session:
        (row,) = [r for r in store.failed_rows(session, tenant_id)
                  if r.field == marker_for(4242)]
        assert row.status == "failed"


def test_tasks_are_created_with_the_configured_type(database: store.Database) -> None:
    data = CrmData(deals=[briefing_deal("D1")])
    tenant = make_tenant(data, writeback={"task_type": "todo"},
                         mapping={"activity_types": {"call": "call", "todo": "task"}})
    sync(database, tenant)
    data.deals.append(briefing_deal("D2"))
    sync(database, tenant, at=NOW + timedelta(hours=1))
    assert [t.task_type for t in data.tasks] == ["todo"]
    # the default: the CRM type the mapping maps to "task"
    assert make_tenant(data).config.writeback.effective_task_type(
        {"task_1": "call", "task_4": "task"}) == "task_4"


def test_amocrm_task_type_keys_become_task_type_ids() -> None:
    """amoCRM's standard types are 1 (follow-up/call) and 2 (meeting) (api-notes A8); a
    configured key ``task_<id>`` or a bare id is sent as ``task_type_id``."""
    from syncd_amocrm.writer import task_type_id

    assert task_type_id("task_4") == 4
    assert task_type_id("7") == 7
    assert task_type_id(None) == 1


def test_check_rejects_a_task_type_mapped_to_a_call() -> None:
    from syncd.config import mapping_problems

    tenant = make_tenant(CrmData(), writeback={"task_type": "task_1"},
                         mapping={"activity_types": {"task_1": "call"}})
    problems = mapping_problems(tenant.config, BOOK, "acme.yaml")
    assert [(p.key, p.severity) for p in problems if p.key == "writeback.task_type"] == [
        ("writeback.task_type", "error")]


# -- 12.2 segment karma ---------------------------------------------------------------------


def won_deal(deal_id: str, company: str, value: float, won_days_ago: float,
             **fields: Any) -> Deal:
    return Deal(deal_id, f"Deal {deal_id}", "won", "p1", "s9", owner_id="u1",
                company_id=company, contact_ids=["p1"], value=value,
                created_at=ago(won_days_ago + 20), stage_changed_at=ago(won_days_ago),
                won_at=ago(won_days_ago), fields={"Source": "Web", **fields})


def segment_data() -> CrmData:
    """Three banks, their segment written three ways in the CRM: one with a win, one with
    a lost deal only, one with no deal at all; and a retailer with a win."""
    return CrmData(
        companies=[Company("C1", "Bank One", fields={"Segment": "Банки"}),
                   Company("C2", "Bank Two", fields={"Segment": "BANKING"}),
                   Company("C3", "Bank Three", fields={"Segment": " banks "}),
                   Company("C4", "Shop", fields={"Segment": "Retail"})],
        deals=[won_deal("W1", "C1", 900.0, 10),
               Deal("L1", "Lost", "lost", "p1", "s1", owner_id="u1", company_id="C2",
                    contact_ids=["p"], created_at=ago(40), lost_at=ago(5),
                    lost_reason="Too expensive", fields={"Source": "Web"}),
               won_deal("W4", "C4", 300.0, 10)])


def test_segment_means_are_over_every_company_of_the_segment(database: store.Database) -> None:
    data = segment_data()
    tenant = make_tenant(data, mapping={"segments": {"Банки": "banks", "BANKING": "banks"}})
    summary = sync(database, tenant)
    report = build_report(database, tenant, clock=NOW)
    segments = {s["segment"]: (s["mean_karma"], s["companies"]) for s in report["segments"]}
    weight = BOOK.karma.client.revenue_weight
    assert segments == {"banks": (pytest.approx(900.0 * weight / 3, abs=0.01), 3),
                        "Retail": (pytest.approx(300.0 * weight), 1)}
    karma = {row["company_id"]: (row["karma"], row["segment"]) for row in report["client_karma"]}
    assert karma["C2"] == (0.0, "banks") and karma["C3"] == (0.0, "banks")  # shown as 0
    assert summary.companies_with_karma == 2
    # the CRM's karma field shows 0 for them too (written, not skipped)
    written = {(w.external_id, w.value) for w in data.field_writes if w.entity == "company"}
    assert {("C2", 0.0), ("C3", 0.0)} <= written
    assert ("C1", round(900.0 * weight, 2)) in written


# -- 12.6 as of a moment --------------------------------------------------------------------


def test_report_as_of_computes_karma_and_people_then(database: store.Database) -> None:
    """C4's only win is 10 days ago: as of 15 days ago it has no karma; the report, the
    segments, the people karma and the KPIs all say so, and nothing is stored."""
    data = segment_data()
    tenant = make_tenant(data, mapping={"segments": {"Банки": "banks", "BANKING": "banks"}})
    sync(database, tenant)
    then = ago(15)
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, "acme", "memcrm")
        stored_before = store.karma_totals(session, tenant_id, "client")
    past = build_report(database, tenant, as_of=then, clock=NOW)
    karma = {row["company_id"]: row["karma"] for row in past["client_karma"]}
    assert karma == {"C1": 0.0, "C2": 0.0, "C3": 0.0, "C4": 0.0}
    assert {s["segment"]: s["mean_karma"] for s in past["segments"]} == {"banks": 0.0,
                                                                         "Retail": 0.0}
    assert all(e["criteria"].get("won_deal", 0) == 0 for e in past["people"]["employees"])
    assert past["kpis"]["period"]["to"] == then.isoformat()
    assert sum(past["kpis"]["revenue_by_month"].values()) == 0
    assert past["kpis"]["new_clients"]["total"] == 0
    today = build_report(database, tenant, clock=NOW)
    assert sum(today["kpis"]["revenue_by_month"].values()) == pytest.approx(1200.0)
    assert today["kpis"]["new_clients"]["total"] == 2
    assert {row["company_id"]: row["karma"] for row in today["client_karma"]}["C4"] > 0
    assert any(e["criteria"].get("won_deal", 0) > 0 for e in today["people"]["employees"])
    with database.session() as session:
        assert store.karma_totals(session, tenant_id, "client") == stored_before


def test_a_what_if_pass_scores_karma_as_of_then_without_storing(
        database: store.Database) -> None:
    data = segment_data()
    tenant = make_tenant(data)
    what_if = sync(database, tenant, as_of=ago(7))
    assert not what_if.live
    assert what_if.companies_with_karma == 2  # both wins (10 days ago) were before then
    assert sync(database, tenant, as_of=ago(15)).companies_with_karma == 0
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, "acme", "memcrm")
        assert store.karma_totals(session, tenant_id, "client") == {}
    assert data.field_writes == []


# -- 12.8 texts -----------------------------------------------------------------------------


def test_every_rule_has_its_texts_in_both_languages() -> None:
    """Every message an explanation or a CRM text can use exists in English and Russian."""
    from syncd.audit.rules import RULE_CODES
    from syncd.audit.texts import MESSAGES, RULE_MESSAGES, Texts
    from syncd.render import PHRASES, RULE_ORDER, RULE_TITLES

    assert set(RULE_MESSAGES) == set(RULE_CODES) == set(RULE_ORDER)
    russian = Texts("ru")
    values = dict.fromkeys(("stage", "to_stage", "from_stage", "day", "action", "gap", "kinds",
                            "field", "more", "count", "days", "limit", "today", "reason",
                            "allowed", "crm_stage"), "x")
    for rule in RULE_CODES:
        for key in RULE_MESSAGES[rule]:
            assert MESSAGES.get(key), key
            assert has_cyrillic(russian.say(key, **values)), key
        assert PHRASES.get(rule) and RULE_TITLES.get(rule), rule


def has_cyrillic(text: str) -> bool:
    return any("\u0430" <= ch <= "\u044f" for ch in text.lower())


def texts_data() -> CrmData:
    return CrmData(companies=[Company("C1", "Bank One")], deals=[
        won_deal("W1", "C1", 500.0, 40),  # no follow-up since: won_no_followup
        Deal("L1", "Lost", "lost", "p1", "s1", owner_id="u1", company_id="C1",
             contact_ids=["p"], created_at=ago(40), lost_at=ago(5),
             lost_reason="Went quiet", fields={"Source": "Web"}),  # not in the catalogue
        briefing_deal("O1"),
    ])


@pytest.mark.parametrize("language", ["en", "ru"])
def test_report_and_crm_texts_follow_the_tenant_language(database: store.Database,
                                                         language: str) -> None:
    data = texts_data()
    tenant = make_tenant(data, language=language)
    sync(database, tenant)
    report = build_report(database, tenant, clock=NOW)
    rows = {(v["rule"], v["deal_id"]): v for v in report["violations"]}
    won = rows[("won_no_followup", "W1")]
    assert won["stage_key"] == "won"
    assert "follow-up followup" not in won["explanation"]
    lost = rows[("bad_loss_reason", "L1")]
    assert "Went quiet" in lost["explanation"]
    cyrillic = {v["rule"]: has_cyrillic(v["explanation"])
                for v in report["violations"]}
    assert set(cyrillic.values()) == {language == "ru"}, cyrillic
    deal_texts = {w.external_id: w.value for w in data.field_writes if w.entity == "deal"}
    assert "Went quiet" in deal_texts["L1"]
    assert "«—»" not in deal_texts["L1"] and "“—”" not in deal_texts["L1"]
    crm_cyrillic = {has_cyrillic(str(text))
                    for text in deal_texts.values() if text}
    assert crm_cyrillic == {language == "ru"}
    what_if = build_report(database, tenant, as_of=NOW - timedelta(hours=1), clock=NOW)
    assert {v["stage_key"] for v in what_if["violations"]
            if v["rule"] == "won_no_followup"} == {"won"}
    assert all(has_cyrillic(v["explanation"]) == (language == "ru")
               for v in what_if["violations"])


def test_won_no_followup_keeps_its_identity_with_its_new_stage() -> None:
    """Rows opened before the rule carried a stage must not be reopened (and re-tasked)."""
    from syncd.audit.facts import Finding

    old = Finding("won_no_followup", "W1", "warning", "x")
    new = Finding("won_no_followup", "W1", "warning", "x", stage_key="won")
    assert old.key == new.key


def test_check_warns_when_tasks_would_get_the_plugins_default_type() -> None:
    """create_tasks with neither writeback.task_type nor a type mapped to 'task': syncd
    would fall back to the plugin's default (amoCRM: 1, often mapped to a call)."""
    from syncd.config import mapping_problems

    tenant = make_tenant(CrmData(), writeback={"create_tasks": True},
                         mapping={"activity_types": {"task_1": "call"}})
    problems = [p for p in mapping_problems(tenant.config, BOOK, "acme.yaml")
                if p.key == "writeback.task_type"]
    assert [p.severity for p in problems] == ["warning"]
    assert "task_1" in problems[0].problem
    mapped = make_tenant(CrmData(), writeback={"create_tasks": True},
                         mapping={"activity_types": {"task_1": "call", "task_4": "task"}})
    assert not [p for p in mapping_problems(mapped.config, BOOK, "acme.yaml")
                if p.key == "writeback.task_type"]
