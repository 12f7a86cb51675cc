"""The incremental audit equals a full recomputation (issue 13, item 1).

Two tenants in one database hold the same CRM data: "inc" runs ordinary passes (only the
deals that changed or whose due time came are re-audited, karma only when its inputs
changed), "full" re-audits and re-scores every deal at every pass. After each pass of a
random history of changes, clock moves (across local midnights, past follow-up windows
and snooze ends, over activities stamped in the future) and mapping changes, both must
hold the same violations (open and resolved, with texts, details and times) and the same
karma ledgers.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import store
from syncd.config import Tenant, TenantConfig
from syncd.connector import ConnectionSettings, Connector, Inspection, PullContext
from syncd.plugins import make_plugin_manager
from syncd.records import Activity, Company, Deal, Page, Pipeline, Stage, StageChange
from syncd.salesbook import load_salesbook
from syncd.sync import PassOptions, PassSummary, run_pass

BOOK = load_salesbook(Path(__file__).resolve().parents[1] / "config/salesbooks/b2b-services-9.yaml")
#: 23:30 in Moscow: a few hours on is another local day.
START = datetime(2026, 3, 10, 20, 30, tzinfo=UTC)
STAGES = {f"s{i}": s.key for i, s in enumerate(BOOK.stages, 1)}
CRM_STAGES = [*STAGES, "s8", "sd"]  # s8: unmapped, sd: deferred
STAGE_NAMES = {**{k: f"Stage {k}" for k in STAGES}, "s8": "Limbo", "sd": "On hold"}
KINDS = ("call", "meeting", "email", "task", "note")
REASONS = ("Price", "competitor", "No budget", "whatever", "", None)


@dataclass
class CrmData:
    companies: dict[str, Company] = field(default_factory=dict)
    deals: dict[str, Deal] = field(default_factory=dict)
    activities: dict[str, Activity] = field(default_factory=dict)
    history: dict[str, StageChange] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)


class MemCRM(Connector):
    name = "memcrm"
    streams = ("pipelines", "stages", "companies", "deals", "activities", "stage_history")
    data: ClassVar[CrmData]

    def pull(self, stream: str, cursor: str | None, context: PullContext) -> Iterator[Page]:
        if stream == "pipelines":
            yield Page(stream, [Pipeline("p1", "Sales")], requests=1)
        elif stream == "stages":
            yield Page(stream, [Stage(k, "p1", name, i) for i, (k, name)
                                in enumerate(STAGE_NAMES.items())], requests=1)
        elif stream == "deals":
            yield Page(stream, list(self.data.deals.values()),
                       deleted_ids=sorted(self.data.deleted), requests=1)
        else:
            records = {"companies": self.data.companies, "activities": self.data.activities,
                       "stage_history": self.data.history}[stream]
            yield Page(stream, list(records.values()), requests=1)

    def inspect(self) -> Inspection:
        return Inspection()


def make_tenant(key: str, data: CrmData, variant: int) -> Tenant:
    connector = type(f"MemCRM_{key}", (MemCRM,), {"data": data})
    stages = {f"Stage {k}": v for k, v in STAGES.items()} | {"On hold": "deferred"}
    if variant % 2:  # a mapping change: one more CRM stage mapped, another renamed
        stages |= {"Limbo": "negotiation"}
    config = {
        "plugin": "memcrm", "salesbook": BOOK.key, "timezone": "Europe/Moscow",
        "language": "ru" if variant >= 2 else "en",
        "connection": {"base_url": "mem://"},
        "mapping": {
            "stages": {"Sales": stages},
            "loss_reasons": {"Price": "price", "No budget": "no_budget"},
            "activity_types": {k: k for k in KINDS},
            "fields": {"deal": {"lead_source": "Source", "estimate_link": "Estimate link",
                                "contract_number": "Contract", "profit": "Profit",
                                "is_tender": "Tender", "snooze_until": "Snooze until",
                                "snooze_reason": "Snooze reason"},
                       "company": {"segment": "Segment"}},
        },
        "writeback": {"enabled": False},
    }
    book = BOOK.model_copy(update={"karma": BOOK.karma.model_copy(update={
        "client": BOOK.karma.client.model_copy(update={"window_days": 20})})})
    return Tenant(key=key, file=Path(f"{key}.yaml"), config=TenantConfig.model_validate(config),
                  book=book, connector_class=connector,
                  settings=ConnectionSettings(base_url="mem://"), interval_minutes=15)


class World:
    """A CRM whose data changes at random, with a clock."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = START
        self.data = CrmData()
        self.serial = 0
        for n in range(4):
            self.data.companies[f"C{n}"] = Company(f"C{n}", f"Company {n}",
                                                   fields={"Segment": "smb" if n % 2 else "ent"})
        for _ in range(14):
            self.new_deal()

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def moment(self, days_back: float, days_ahead: float = 0.0) -> datetime:
        return self.now + timedelta(days=self.rng.uniform(-days_back, days_ahead))

    def new_deal(self) -> None:
        rng = self.rng
        deal_id = self.next_id("D")
        created = self.moment(60)
        self.data.deals[deal_id] = Deal(deal_id, f"Deal {deal_id}", "open", "p1",
                                        rng.choice(CRM_STAGES), created_at=created,
                                        company_id=rng.choice([*self.data.companies, None]),
                                        contact_ids=rng.choice([[], ["P1"]]))
        self.edit_deal(deal_id)
        for _ in range(rng.randint(0, 3)):
            self.new_activity(deal_id)
        for _ in range(rng.randint(0, 3)):
            self.new_transition(deal_id)

    def edit_deal(self, deal_id: str) -> None:
        rng, deal = self.rng, self.data.deals[deal_id]
        deal.status = rng.choice(["open", "open", "won", "lost"])
        deal.stage_id = rng.choice(CRM_STAGES)
        deal.won_at = deal.lost_at = deal.lost_reason = None
        if deal.status == "won":  # sometimes just won (follow-up window), or no time
            deal.won_at = rng.choice([self.moment(30), self.moment(2, 0.3), None])
        if deal.status == "lost":
            deal.lost_at = self.moment(20, 0.2)
            deal.lost_reason = rng.choice(REASONS)
        deal.value = float(rng.choice([0, 900, 1500]))
        fields: dict[str, Any] = {"Source": rng.choice(["ads", "", None]),
                                  "Estimate link": rng.choice(["http://x", None]),
                                  "Contract": rng.choice(["K-1", None]),
                                  "Profit": rng.choice([None, "120", "-40"]),
                                  "Tender": rng.choice(["yes", None])}
        if rng.random() < 0.3:
            fields["Snooze until"] = (self.now + timedelta(days=rng.randint(-1, 3))).date()
            fields["Snooze reason"] = rng.choice(["vacation", ""])
        deal.fields = {k: v for k, v in fields.items() if v is not None}

    def new_activity(self, deal_id: str | None = None) -> None:
        rng = self.rng
        activity_id = self.next_id("A")
        done = rng.random() < 0.6
        company = rng.choice([*self.data.companies, None])
        if deal_id is None:
            deal_id = rng.choice([*self.data.deals, None])
        self.data.activities[activity_id] = Activity(
            activity_id, rng.choice(KINDS), subject="x", done=done,
            done_at=self.moment(40, 0.2) if done else None,
            due_at=None if done else self.moment(5, 6), deal_id=deal_id, company_id=company,
            created_at=self.moment(45, 0.1))

    def new_transition(self, deal_id: str) -> None:
        change_id = self.next_id("H")
        self.data.history[change_id] = StageChange(
            change_id, deal_id, self.rng.choice([*CRM_STAGES, None]),
            self.rng.choice(CRM_STAGES), self.moment(50, 0.1))

    def change(self, count: int) -> None:
        """``count`` random changes, as a CRM's users would make them."""
        rng = self.rng
        for _ in range(count):
            live = sorted(set(self.data.deals) - self.data.deleted)
            op = rng.choice(["deal", "deal", "activity", "activity", "done", "history",
                             "new_deal", "delete", "company", "relink"])
            if op == "deal" and live:
                self.edit_deal(rng.choice(live))
            elif op == "activity":
                self.new_activity(rng.choice([*live, None]))
            elif op == "done" and self.data.activities:
                activity = self.data.activities[rng.choice(sorted(self.data.activities))]
                activity.done, activity.done_at = True, self.moment(1)
            elif op == "history" and live:
                self.new_transition(rng.choice(live))
            elif op == "new_deal":
                self.new_deal()
            elif op == "delete" and live:
                self.data.deleted.add(rng.choice(live))
            elif op == "company":
                company = self.data.companies[rng.choice(sorted(self.data.companies))]
                company.fields = {"Segment": rng.choice(["smb", "ent", "gov"])}
            elif op == "relink" and self.data.activities and live:
                activity = self.data.activities[rng.choice(sorted(self.data.activities))]
                activity.deal_id = rng.choice(live)


def sync(db: store.Database, tenant: Tenant, now: datetime, *, full: bool) -> PassSummary:
    plugins = make_plugin_manager(load_entrypoints=False)
    return run_pass(db, plugins, tenant, PassOptions(clock=lambda: now, full=full))


def snapshot(db: store.Database, key: str) -> dict[str, Any]:
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, key, "memcrm")
        violations = session.execute(store.ViolationRow.__table__.select().where(
            store.ViolationRow.tenant_id == tenant_id)).all()
        opened = sorted((v.key, v.severity, v.explanation, json.dumps(v.details, sort_keys=True),
                         v.opened_at) for v in violations if v.resolved_at is None)
        resolved = sorted((v.key, v.opened_at, v.resolved_at) for v in violations
                          if v.resolved_at is not None)
        lines = session.execute(store.KarmaLineRow.__table__.select().where(
            store.KarmaLineRow.tenant_id == tenant_id)).all()
        karma = sorted((r.kind, r.subject_type, r.subject_id, r.criterion, r.quantity,
                        r.weight, r.amount, r.source_type, r.source_id, r.period)
                       for r in lines)
    return {"open": opened, "resolved": resolved, "karma": karma}


Step = tuple[int, int, int]  # (changes, hours forward, mapping variant)


def run_history(db: store.Database, seed: int, steps: Sequence[Step]) -> list[str]:
    world = World(seed)
    suffix = uuid.uuid4().hex[:8]
    inc_key, full_key = f"inc{suffix}", f"full{suffix}"
    modes: list[str] = []
    variant = 0
    for changes, hours, new_variant in [(0, 0, 0), *steps]:
        world.change(changes)
        world.now += timedelta(hours=hours)
        variant = new_variant if new_variant >= 0 else variant
        inc = sync(db, make_tenant(inc_key, world.data, variant), world.now, full=False)
        sync(db, make_tenant(full_key, world.data, variant), world.now, full=True)
        modes.append(f"{inc.audit['mode']}:{inc.audit['deals_audited']}:{inc.audit['karma']}")
        assert snapshot(db, inc_key) == snapshot(db, full_key), (seed, steps, modes)
    return modes


STEPS = st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0, 0, 1, 5, 13, 30, 80, 400]),
                           st.sampled_from([-1, -1, -1, -1, 0, 1, 2, 3])),
                 min_size=1, max_size=6)


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), steps=STEPS)
def test_incremental_passes_equal_full_recomputation(database: store.Database, seed: int,
                                                     steps: list[Step]) -> None:
    run_history(database, seed, steps)


def test_a_pass_with_nothing_new_audits_nothing(database: store.Database) -> None:
    """Not vacuous: with no change and no boundary passed, nothing is re-audited and karma
    is left alone; a local midnight makes the open deals due; a mapping change is full."""
    modes = run_history(database, 7, [(0, 0, -1), (0, 5, -1), (3, 0, -1), (0, 0, 1)])
    assert modes[0].startswith("full:")
    assert modes[1] == "incremental:0:unchanged"
    assert modes[2].startswith("incremental:") and not modes[2].startswith("incremental:0:")
    assert modes[3].startswith("incremental:") and modes[3] != "incremental:0:unchanged"
    assert modes[4].startswith("full:")


def test_an_activity_moved_to_another_deal_re_audits_both(database: store.Database) -> None:
    """The deal an activity left changes too, though only the activity row was written."""
    world = World(1)
    world.data = CrmData(companies={"C1": Company("C1", "C1")})
    for deal_id in ("DA", "DB"):
        world.data.deals[deal_id] = Deal(deal_id, deal_id, "open", "p1", "s1",
                                         created_at=START - timedelta(days=2),
                                         contact_ids=["P1"], fields={"Source": "ads"})
    world.data.activities["X"] = Activity("X", "call", due_at=START + timedelta(hours=1),
                                          deal_id="DA", created_at=START - timedelta(days=1))
    suffix = uuid.uuid4().hex[:8]
    for key, full in ((f"inc{suffix}", False), (f"full{suffix}", True)):
        sync(database, make_tenant(key, world.data, 0), START, full=full)
    assert not any(k.startswith("no_next_step|DA|")
                   for k, *_ in snapshot(database, f"inc{suffix}")["open"])
    world.data.activities["X"].deal_id = "DB"
    for key, full in ((f"inc{suffix}", False), (f"full{suffix}", True)):
        sync(database, make_tenant(key, world.data, 0), START + timedelta(minutes=1),
             full=full)
    inc, full_ = snapshot(database, f"inc{suffix}"), snapshot(database, f"full{suffix}")
    assert any(k.startswith("no_next_step|DA|") for k, *_ in inc["open"])
    assert inc == full_
