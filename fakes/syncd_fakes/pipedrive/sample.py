"""Sample Pipedrive accounts for the fake server: "Northwind Engineering", and a scaled one.

``sample_dataset(now)`` is a small, realistic, deterministic B2B-services client whose
deals exercise every rule of the Sales Book (the demo tenant config maps exactly this
vocabulary). ``scaled_dataset(deals=100_000)`` is the same account with generated volume for
the benchmark: its entity tables are *virtual* (records are built from their id on demand),
so 100k deals cost an index of timestamps, not gigabytes of dicts.

Payloads are shaped like the real API: v2 (RFC 3339 ``Z`` timestamps, ``custom_fields``
by hash key, option ids as ints) for entities, pipelines, stages and field definitions;
v1 for users, activity types and deal flows (``YYYY-MM-DD HH:MM:SS`` UTC, string values).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# --- the vocabulary (the demo tenant and its Sales Book are written against it) ----------
USERS = (
    (1, "Anna Petrova", "anna@northwind.example", True),  # the sales manager (admin)
    (2, "Boris Ivanov", "boris@northwind.example", False),
    (3, "Clara Smirnova", "clara@northwind.example", False),
    (4, "Dmitry Orlov", "dmitry@northwind.example", False),
)
PIPELINES = ((1, "Projects"), (2, "Partners"))
#: (stage id, pipeline id, name), in pipeline order.
STAGES = (
    (1, 1, "Briefing"),
    (2, 1, "Estimate"),
    (3, 1, "Awaiting decision"),
    (4, 1, "Contract signing"),
    (5, 1, "Deferred"),
    (6, 1, "In progress"),
    (7, 1, "Final invoice"),
    (8, 1, "Warranty"),
    (9, 2, "Intro"),  # left unmapped by the demo tenant on purpose
)
STAGE_NAMES = {stage_id: name for stage_id, _, name in STAGES}
ACTIVITY_TYPES = (
    (1, "Call", "call"),
    (2, "Meeting", "meeting"),
    (3, "Task", "task"),
    (4, "Email", "email"),
    (5, "Deadline", "deadline"),
    (6, "Lunch", "lunch"),
)
LEAD_SOURCES = {11: "Website", 12: "Referral", 13: "Cold call", 14: "Exhibition"}
TENDER = {21: "Yes", 22: "No"}
SEGMENTS = {31: "Banks", 32: "Retail", 33: "State companies", 34: "Manufacturing"}
GOOD_LOSS_REASONS = ("Too expensive", "Chose competitor", "No budget", "No response",
                     "Bad timing")
BAD_LOSS_REASONS = ("", None, "dunno")


def field_key(name: str) -> str:
    """The 40-hex key of a custom field (stable, like a real account's)."""
    return hashlib.sha1(f"northwind:{name}".encode()).hexdigest()  # noqa: S324 - not security


#: (name, type, options) of the custom deal fields.
DEAL_CUSTOM_FIELDS = (
    ("Lead source", "enum", LEAD_SOURCES),
    ("Profit", "monetary", None),
    ("Tender", "enum", TENDER),
    ("Estimate link", "varchar", None),
    ("Contract number", "varchar", None),
    ("Snooze until", "date", None),
    ("Snooze reason", "varchar", None),
)
ORGANIZATION_CUSTOM_FIELDS = (
    ("Segment", "enum", SEGMENTS),
    ("NPS", "double", None),
    ("Public incidents", "double", None),
)
PERSON_CUSTOM_FIELDS = (("Preferred channel", "varchar", None),)
DEAL_STANDARD_FIELDS = (
    ("title", "Title", "varchar"), ("value", "Value", "double"),
    ("currency", "Currency", "varchar"), ("owner_id", "Owner", "user"),
    ("org_id", "Organization", "org"), ("person_id", "Contact person", "people"),
    ("pipeline_id", "Pipeline", "int"), ("stage_id", "Stage", "stage"),
    ("status", "Status", "status"), ("lost_reason", "Lost reason", "varchar"),
    ("expected_close_date", "Expected close date", "date"),
    ("probability", "Probability", "double"), ("add_time", "Deal created", "date"),
    ("update_time", "Update time", "date"), ("won_time", "Won time", "date"),
    ("lost_time", "Lost time", "date"),
)
ORGANIZATION_STANDARD_FIELDS = (
    ("name", "Name", "varchar"), ("owner_id", "Owner", "user"),
    ("address", "Address", "address"), ("add_time", "Organization created", "date"),
)
PERSON_STANDARD_FIELDS = (
    ("name", "Name", "varchar"), ("org_id", "Organization", "org"),
    ("emails", "Email", "varchar"), ("phones", "Phone", "phone"),
    ("owner_id", "Owner", "user"),
)
K = {name: field_key(name) for name, _, _ in
     DEAL_CUSTOM_FIELDS + ORGANIZATION_CUSTOM_FIELDS + PERSON_CUSTOM_FIELDS}

ORGANIZATIONS = (
    ("Baltic Savings Bank", 31), ("Volga Retail Group", 32), ("Northern Railways JSC", 33),
    ("Ural Steelworks", 34), ("Meridian Credit Union", 31), ("GreenMart Stores", 32),
    ("City Water Utility", 33), ("Kama Tractor Plant", 34), ("Harbor Trust Bank", 31),
    ("FreshLine Supermarkets", 32), ("Regional Transport Authority", 33),
    ("Polar Plastics", 34), ("Sever Investment Bank", 31), ("Urban Outfit Retail", 32),
    ("State Archive Service", 33), ("Delta Cable Works", 34), ("Amber Capital Bank", 31),
    ("HomeStyle Hypermarkets", 32), ("Municipal Energy Company", 33),
    ("Orion Machine Tools", 34),
)
#: Organizations of deals that must not share their company with other deals.
OWN_ORGANIZATIONS = (("Kirov Glassworks", 34), ("Pioneer Savings Bank", 31),
                     ("Coastal Logistics Hub", 32), ("Federal Survey Office", 33))
FIRST_NAMES = ("Elena", "Igor", "Maria", "Pavel", "Olga", "Sergey", "Natalia", "Viktor",
               "Irina", "Alexei", "Tatiana", "Mikhail", "Svetlana", "Roman", "Yulia", "Oleg")
LAST_NAMES = ("Kuznetsova", "Volkov", "Sokolova", "Lebedev", "Morozova", "Novikov",
              "Fedorova", "Popov", "Egorova", "Vasiliev", "Pavlova", "Semenov")
PROJECTS = ("Office fit-out", "HVAC retrofit", "Data center cooling", "Warehouse automation",
            "Fire safety audit", "Energy efficiency study", "Network cabling",
            "Facility maintenance contract", "Lighting upgrade", "Access control system")
SNOOZE_REASONS = ("Client budget freeze until next quarter",
                  "Waiting for the client's board meeting")


# --- the dataset shape ----------------------------------------------------------------------
@dataclass
class Table:
    """One entity's records: materialized ``rows`` by id, plus optional *virtual* ids
    ``1..size`` built on demand by ``factory`` (with ``stamp(id)`` = their update time in
    epoch seconds, cheap to compute, for the server's sort index)."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    size: int = 0
    factory: Callable[[int], dict[str, Any]] | None = None
    stamp: Callable[[int], int] | None = None

    def __len__(self) -> int:
        virtual = sum(1 for i in self.rows if not 1 <= i <= self.size)
        return self.size + virtual if self.factory else len(self.rows)


@dataclass
class Dataset:
    name: str
    now: datetime
    users: list[dict[str, Any]]
    pipelines: list[dict[str, Any]]
    stages: list[dict[str, Any]]
    activity_types: list[dict[str, Any]]
    deal_fields: list[dict[str, Any]]
    organization_fields: list[dict[str, Any]]
    person_fields: list[dict[str, Any]]
    organizations: Table
    persons: Table
    deals: Table
    activities: Table
    #: deal id -> v1 flow rows, oldest first (the server answers newest first).
    flows: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    flow_factory: Callable[[int], list[dict[str, Any]]] | None = None


def v2_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _field_defs(standard: tuple[tuple[str, str, str], ...],
                custom: tuple[tuple[str, str, dict[int, str] | None], ...],
                ) -> list[dict[str, Any]]:
    defs: list[dict[str, Any]] = [
        {"field_code": code, "field_name": name, "field_type": kind, "is_custom_field": False,
         "options": None, "is_optional_response_field": False, "subfields": None}
        for code, name, kind in standard
    ]
    for name, kind, options in custom:
        defs.append({
            "field_code": K[name], "field_name": name, "field_type": kind,
            "is_custom_field": True, "is_optional_response_field": False,
            "options": [{"id": i, "label": label} for i, label in options.items()]
            if options else None,
            "subfields": [{"field_code": "currency", "field_name": "Currency"}]
            if kind == "monetary" else None,
        })
    return defs


def _reference(now: datetime, name: str) -> Dataset:
    """The account's reference data, identical in the sample and the scaled dataset."""
    created = now - timedelta(days=600)
    return Dataset(
        name=name,
        now=now,
        users=[{"id": uid, "name": uname, "email": email, "active_flag": True,
                "is_admin": 1 if admin else 0, "role_id": 1 if admin else 2,
                "timezone_name": "Europe/Berlin", "default_currency": "EUR",
                "created": v1_time(created), "modified": v1_time(created)}
               for uid, uname, email, admin in USERS],
        pipelines=[{"id": pid, "name": pname, "order_nr": pid, "is_deleted": False,
                    "is_deal_probability_enabled": False, "add_time": v2_time(created),
                    "update_time": v2_time(created)} for pid, pname in PIPELINES],
        stages=[{"id": sid, "order_nr": sid if pid == 1 else 1, "name": sname,
                 "pipeline_id": pid, "is_deleted": False, "deal_probability": 100,
                 "is_deal_rot_enabled": False, "days_to_rotten": None,
                 "add_time": v2_time(created), "update_time": v2_time(created)}
                for sid, pid, sname in STAGES],
        activity_types=[{"id": tid, "order_nr": tid, "name": tname, "key_string": key,
                         "icon_key": key, "active_flag": True, "is_custom_flag": False,
                         "color": None, "add_time": v1_time(created),
                         "update_time": v1_time(created)} for tid, tname, key in ACTIVITY_TYPES],
        deal_fields=_field_defs(DEAL_STANDARD_FIELDS, DEAL_CUSTOM_FIELDS),
        organization_fields=_field_defs(ORGANIZATION_STANDARD_FIELDS,
                                        ORGANIZATION_CUSTOM_FIELDS),
        person_fields=_field_defs(PERSON_STANDARD_FIELDS, PERSON_CUSTOM_FIELDS),
        organizations=Table(), persons=Table(), deals=Table(), activities=Table(),
    )


# --- deal scenarios -------------------------------------------------------------------------
SEQUENCE = (1, 2, 3, 4, 6, 7, 8)  # the forward path through "Projects" (Deferred aside)
DEFERRED_PATH = (1, 2, 3, 5)


def to(stage: int) -> tuple[int, ...]:
    """The regular path from Briefing up to ``stage``."""
    return SEQUENCE[: SEQUENCE.index(stage) + 1]


@dataclass(frozen=True)
class Plan:
    """One deal's story. ``missing`` leaves evidence out: briefing, estimate_link, decision,
    contract_number, kickoff, invoice, warranty, lead_source, person, followup, reminder."""

    status: str = "open"
    path: tuple[int, ...] = (1,)
    in_stage: tuple[int, int] = (1, 6)  # days in the last stage (before closing, if closed)
    closed: tuple[int, int] = (0, 0)  # days since won/lost
    planned: bool = True  # an open deal with a planned next activity
    missing: frozenset[str] = frozenset()
    reason: str | None = None
    tender: bool = False
    margin: float | None = 0.2  # profit / value for won deals (None: profit not recorded)
    snooze: int | None = None  # "Snooze until" this many days ahead
    stale: bool = False  # nothing done since shortly after entering the current stage
    own_org: bool = False  # the only deal of its organization (no other deal's activities)


#: Per stage: (activity type choices, subject, earliest, latest share of the stay, the
#: ``Plan.missing`` key that leaves it out).
EVIDENCE: dict[int, tuple[tuple[tuple[str, ...], str, float, float, str], ...]] = {
    1: ((("call",), "Intro call: scope and budget", 0.05, 0.3, "-"),
        (("meeting", "meeting", "lunch"), "Briefing meeting", 0.3, 0.8, "briefing")),
    2: ((("email",), "Estimate sent", 0.5, 0.9, "-"),),
    3: ((("call", "email"), "Follow-up on the estimate", 0.2, 0.7, "decision"),),
    4: ((("meeting",), "Contract review with legal", 0.2, 0.6, "-"),
        (("deadline",), "Contract signature deadline", 0.6, 0.9, "-")),
    6: ((("meeting",), "Kickoff meeting", 0.02, 0.2, "kickoff"),),
    7: ((("email", "task"), "Final invoice sent", 0.1, 0.5, "invoice"),),
    8: ((("call",), "Warranty check-in call", 0.1, 0.6, "warranty"),),
    9: ((("call",), "Partner intro call", 0.1, 0.5, "-"),),
}


def _m(*keys: str) -> frozenset[str]:
    return frozenset(keys)


PLANS: tuple[Plan, ...] = (
    # open, compliant, one per active stage
    Plan(path=to(1)), Plan(path=to(2)), Plan(path=to(3)), Plan(path=to(4)),
    Plan(path=to(6)), Plan(path=to(7)), Plan(path=to(8)),
    # neglect: stalled for weeks, no next step, snoozed
    Plan(path=to(2), in_stage=(40, 50), planned=False, stale=True),
    Plan(path=to(3), in_stage=(55, 70), stale=True),
    Plan(path=to(1), planned=False),
    Plan(path=to(4), planned=False),
    Plan(path=to(3), in_stage=(45, 55), planned=False, stale=True, snooze=20),
    Plan(path=to(2), in_stage=(25, 30), planned=False, stale=True, snooze=9),
    # missing data and broken conveyor
    Plan(path=to(1), missing=_m("lead_source")),
    Plan(path=to(2), missing=_m("person")),
    Plan(path=(1, 3)),  # jumped over Estimate
    Plan(path=(1, 2, 3, 4, 3)),  # moved back from Contract signing
    Plan(path=(1, 2, 4), missing=_m("estimate_link")),  # jumped Awaiting decision
    Plan(path=to(6), missing=_m("kickoff")),
    Plan(path=to(7), missing=_m("invoice")),
    Plan(path=to(8), missing=_m("warranty")),
    Plan(path=to(3), missing=_m("estimate_link")),
    Plan(path=to(6), missing=_m("contract_number")),
    # deferred: reminded, and forgotten
    Plan(path=DEFERRED_PATH, in_stage=(30, 60)),
    Plan(path=DEFERRED_PATH, in_stage=(60, 90)),
    Plan(path=DEFERRED_PATH, in_stage=(50, 80), planned=False, missing=_m("reminder")),
    Plan(path=DEFERRED_PATH, in_stage=(90, 120), planned=False, missing=_m("reminder")),
    # won: most with a follow-up task after the win
    Plan("won", to(8), in_stage=(20, 40), closed=(10, 40)),
    Plan("won", to(8), in_stage=(20, 40), closed=(30, 80)),
    Plan("won", to(8), in_stage=(15, 30), closed=(60, 120), margin=0.3),
    Plan("won", to(8), in_stage=(20, 60), closed=(90, 160)),
    Plan("won", to(8), in_stage=(20, 40), closed=(150, 220), margin=0.12),
    Plan("won", to(8), in_stage=(20, 40), closed=(200, 300)),
    Plan("won", to(8), in_stage=(20, 40), closed=(250, 350), margin=None),
    Plan("won", to(8), in_stage=(20, 40), closed=(300, 400), margin=0.25),
    Plan("won", to(8), in_stage=(20, 40), closed=(30, 90), missing=_m("followup"),
         own_org=True),
    Plan("won", to(8), in_stage=(20, 40), closed=(100, 200), missing=_m("followup"),
         own_org=True),
    Plan("won", to(8), in_stage=(20, 40), closed=(60, 120), tender=True, margin=-0.08),
    Plan("won", to(8), in_stage=(20, 40), closed=(150, 250), tender=True, margin=0.15),
    # lost: good reasons, bad reasons, tenders
    Plan("lost", to(2), in_stage=(5, 20), closed=(10, 40), reason="Too expensive"),
    Plan("lost", to(3), in_stage=(5, 20), closed=(20, 80), reason="Chose competitor"),
    Plan("lost", to(1), in_stage=(3, 10), closed=(5, 30), reason="No budget"),
    Plan("lost", to(3), in_stage=(10, 30), closed=(30, 120), reason="No response"),
    Plan("lost", to(4), in_stage=(5, 20), closed=(40, 200), reason="Bad timing"),
    Plan("lost", to(2), in_stage=(5, 20), closed=(10, 60), reason=""),
    Plan("lost", to(3), in_stage=(5, 20), closed=(15, 90), reason=None),
    Plan("lost", to(1), in_stage=(3, 10), closed=(5, 50), reason="dunno"),
    Plan("lost", to(3), in_stage=(10, 30), closed=(60, 300), reason="Chose competitor",
         tender=True),
    Plan("lost", to(4), in_stage=(5, 20), closed=(90, 400), reason="Too expensive",
         tender=True),
    Plan("lost", to(2), in_stage=(5, 20), closed=(100, 350), reason="No response",
         tender=True),
    Plan("lost", DEFERRED_PATH, in_stage=(40, 90), closed=(10, 100), reason="Bad timing"),
    # the "Partners" pipeline (unmapped in the demo tenant)
    Plan(path=(9,)), Plan(path=(9,), in_stage=(10, 20)), Plan(path=(9,), planned=False),
    # more of the everyday mix
    Plan(path=to(1)),
    Plan(path=to(2), missing=_m("person", "lead_source")),
    Plan("won", to(8), in_stage=(20, 40), closed=(350, 450), missing=_m("lead_source")),
    Plan("lost", to(3), in_stage=(10, 30), closed=(200, 450), reason="Chose competitor"),
    Plan(path=to(6)),
    Plan(path=to(3)),
)

ORG_ID0, PERSON_ID0, DEAL_ID0, ACTIVITY_ID0, FLOW_ID0 = 100, 300, 1000, 20000, 900000
HISTORY_DAYS = 540  # about 18 months


class _SampleBuilder:
    """Builds the Northwind sample deterministically from a seed and ``now``."""

    def __init__(self, now: datetime, seed: int) -> None:
        self.now = now.astimezone(UTC).replace(microsecond=0)
        self.rng = random.Random(seed)
        self.data = _reference(self.now, "Northwind Engineering")
        self.org_people: dict[int, list[int]] = {}
        self.next_activity = ACTIVITY_ID0 + 1
        self.next_flow = FLOW_ID0 + 1

    # -- companies and people ---------------------------------------------------------------
    def organizations(self, count: int) -> None:
        self.shared_orgs = count
        for index in range(count):
            name, segment = ORGANIZATIONS[index % len(ORGANIZATIONS)]
            if index >= len(ORGANIZATIONS):
                name = f"{name} #{index // len(ORGANIZATIONS) + 1}"
            self._organization(index, name, segment)

    def own_organization(self) -> int:
        """A fresh organization for one deal only."""
        index = len(self.data.organizations.rows)
        extra = index - self.shared_orgs
        name, segment = OWN_ORGANIZATIONS[extra % len(OWN_ORGANIZATIONS)]
        if extra >= len(OWN_ORGANIZATIONS):
            name = f"{name} #{extra // len(OWN_ORGANIZATIONS) + 1}"
        return self._organization(index, name, segment)

    def _organization(self, index: int, name: str, segment: int) -> int:
        rng = self.rng
        org_id = ORG_ID0 + index + 1
        created = self.now - timedelta(days=rng.randint(HISTORY_DAYS, HISTORY_DAYS + 60))
        updated = self.now - timedelta(days=rng.randint(1, 200), hours=rng.randint(0, 23))
        nps = rng.choice((None, 3.0, 6.0, 7.0, 8.0, 9.0, 9.0, 10.0))
        incidents: float | None = None
        if index == 1:
            incidents = 1.0  # Volga Retail Group: a problem that went public
        elif rng.random() < 0.3:
            incidents = 0.0
        self.data.organizations.rows[org_id] = {
            "id": org_id, "name": name, "owner_id": rng.choice((1, 2, 3, 4)),
            "add_time": v2_time(created), "update_time": v2_time(updated),
            "is_deleted": False, "visible_to": 3, "label_ids": [],
            "address": {"value": f"{rng.randint(1, 99)} Industrial Ave, Berlin",
                        "country": "Germany", "locality": "Berlin"},
            "custom_fields": {K["Segment"]: segment, K["NPS"]: nps,
                              K["Public incidents"]: incidents},
        }
        people = 1 if index % 2 else 2
        for _ in range(people):
            self._person(org_id, created)
        return org_id

    def _person(self, org_id: int | None, created: datetime) -> int:
        rng = self.rng
        person_id = PERSON_ID0 + len(self.data.persons.rows) + 1
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        added = created + timedelta(days=rng.randint(0, 30))
        email = f"{first.lower()}.{last.lower()}@client{org_id or 0}.example"
        self.data.persons.rows[person_id] = {
            "id": person_id, "name": f"{first} {last}", "first_name": first, "last_name": last,
            "owner_id": rng.choice((2, 3, 4)), "org_id": org_id,
            "add_time": v2_time(added), "update_time": v2_time(added + timedelta(days=2)),
            "is_deleted": False, "visible_to": 3,
            "emails": [{"value": email, "primary": True, "label": "work"}],
            "phones": [{"value": f"+49 30 {rng.randint(1000000, 9999999)}", "primary": True,
                        "label": "work"}],
            "custom_fields": {K["Preferred channel"]: rng.choice(("email", "phone", None))},
        }
        if org_id is not None:
            self.org_people.setdefault(org_id, []).append(person_id)
        return person_id

    # -- deals ----------------------------------------------------------------------------------
    def deal(self, index: int, plan: Plan) -> None:
        rng = self.rng
        deal_id = DEAL_ID0 + index + 1
        org_id = (self.own_organization() if plan.own_org
                  else ORG_ID0 + 1 + (index * 7) % self.shared_orgs)
        people = self.org_people.get(org_id, [])
        person = None if "person" in plan.missing or not people else rng.choice(people)
        owner = rng.choice((2, 3, 4, 2, 3, 4, 1))
        value = float(rng.randrange(8_000, 180_000, 500))
        end = self.now - timedelta(days=rng.randint(*plan.closed), hours=rng.randint(1, 8)) \
            if plan.status != "open" else self.now
        entries = self._entries(plan, end)
        created = entries[0]
        events: list[datetime] = [*entries]
        acts: list[dict[str, Any]] = []
        ctx = {"deal": deal_id, "org": org_id, "person": person, "owner": owner}
        for position, stage in enumerate(plan.path):
            start = entries[position]
            stop = entries[position + 1] if position + 1 < len(plan.path) else end
            current = position == len(plan.path) - 1
            acts += self._evidence(stage, start, stop, plan, ctx, current=current)
        if plan.status == "open" and plan.planned:
            kind = rng.choice(("call", "meeting", "email", "task"))
            acts.append(self._activity(ctx, kind, f"Next step: {kind}", planned=True,
                                       when=self.now + timedelta(days=rng.randint(1, 10))))
        won_at = end if plan.status == "won" else None
        lost_at = end if plan.status == "lost" else None
        if won_at is not None and "followup" not in plan.missing:
            due = won_at + timedelta(days=rng.randint(14, 30))
            acts.append(self._activity(ctx, "task", "Follow-up: support and licence renewal",
                                       when=due, created=won_at + timedelta(days=1),
                                       planned=due > self.now))
        self.data.activities.rows.update((a["id"], a) for a in acts)
        events += [_parse(a["update_time"]) for a in acts]
        if plan.status != "open":
            events.append(end)
        updated = min(max(events), self.now)
        fields = self._deal_fields(deal_id, plan, value, entries, end)
        stage_changed = entries[-1] if len(entries) > 1 else None
        self.data.deals.rows[deal_id] = {
            "id": deal_id,
            "title": f"{self.data.organizations.rows[org_id]['name']}: "
                     f"{PROJECTS[index % len(PROJECTS)]}",
            "owner_id": owner, "person_id": person, "org_id": org_id,
            "pipeline_id": 2 if plan.path[-1] == 9 else 1, "stage_id": plan.path[-1],
            "value": value, "currency": "EUR", "status": plan.status,
            "add_time": v2_time(created), "update_time": v2_time(updated),
            "stage_change_time": v2_time(stage_changed) if stage_changed else None,
            "won_time": v2_time(won_at) if won_at else None,
            "lost_time": v2_time(lost_at) if lost_at else None,
            "close_time": v2_time(end) if plan.status != "open" else None,
            "lost_reason": plan.reason if plan.status == "lost" else None,
            "probability": None, "visible_to": 3, "label_ids": [],
            "expected_close_date": (end + timedelta(days=30)).date().isoformat()
            if plan.status == "open" else None,
            "is_deleted": False, "is_archived": False, "archive_time": None,
            "origin": "ManuallyCreated", "channel": None,
            "custom_fields": fields,
        }
        self.data.flows[deal_id] = self._flow(deal_id, plan, entries, end, owner)

    def _entries(self, plan: Plan, end: datetime) -> list[datetime]:
        """When the deal entered each stage of its path (the first one: creation)."""
        rng = self.rng
        last = end - timedelta(days=rng.randint(*plan.in_stage), hours=rng.randint(0, 6))
        steps = [timedelta(days=rng.randint(4, 20), hours=rng.randint(0, 9))
                 for _ in plan.path[:-1]]
        created = last - sum(steps, timedelta()) - timedelta(hours=rng.randint(1, 5))
        floor = self.now - timedelta(days=HISTORY_DAYS)
        if created < floor:  # squeeze old stories into the 18 months
            scale = (last - floor) / max(last - created, timedelta(seconds=1))
            steps = [s * scale for s in steps]
            created = floor
        entries = [created]
        for step in steps[:-1]:
            entries.append(entries[-1] + step)
        if len(plan.path) > 1:
            entries.append(last)
        return [e.replace(microsecond=0) for e in entries]

    def _evidence(self, stage: int, start: datetime, stop: datetime, plan: Plan,
                  ctx: dict[str, Any], *, current: bool) -> list[dict[str, Any]]:
        """The activities done while the deal sat in ``stage`` (``start``..``stop``)."""
        rng = self.rng
        missing = plan.missing
        stale = current and plan.stale

        def at(low: float, high: float) -> datetime:
            span = (stop - start) * (0.15 if stale else 1.0)
            return start + span * rng.uniform(low, high)

        out: list[dict[str, Any]] = []
        if stage == 5:
            out += self._reminders(start, stop, plan, ctx)
        for kinds, subject, low, high, skip in EVIDENCE.get(stage, ()):
            if skip not in missing:
                out.append(self._activity(ctx, rng.choice(kinds), subject, when=at(low, high)))
        if current and plan.status == "open" and not plan.stale and stage != 5:
            when = self.now - timedelta(days=rng.randint(0, 2), hours=rng.randint(1, 6))
            out.append(self._activity(ctx, rng.choice(("call", "email")),
                                      "Status update with the client", when=max(when, start)))
        return out

    def _reminders(self, start: datetime, stop: datetime, plan: Plan,
                   ctx: dict[str, Any]) -> list[dict[str, Any]]:
        rng = self.rng
        out = [self._activity(ctx, "call", "Client asked to pause the project",
                              when=start + timedelta(hours=rng.randint(2, 30)))]
        if "reminder" in plan.missing or plan.status != "open":
            return out
        when = start + timedelta(days=21)
        while when < stop:
            out.append(self._activity(ctx, "call", "Reminder call: any news on the project?",
                                      when=when))
            when += timedelta(days=rng.randint(18, 24))
        out.append(self._activity(ctx, "task", "Remind the client about the project",
                                  when=self.now + timedelta(days=rng.randint(3, 14)),
                                  planned=True))
        return out

    def _activity(self, ctx: dict[str, Any], kind: str, subject: str, *, when: datetime,
                  planned: bool = False, created: datetime | None = None) -> dict[str, Any]:
        rng = self.rng
        activity_id = self.next_activity
        self.next_activity += 1
        when = min(when, self.now) if not planned else when
        when = when.replace(second=0, microsecond=0)
        if created is None and planned:  # planned some days ago
            created = self.now - timedelta(days=rng.randint(1, 5), hours=rng.randint(1, 9))
        added = created or (when - timedelta(days=rng.randint(0, 3), hours=rng.randint(1, 5)))
        added = min(added, self.now).replace(microsecond=0)
        done = not planned
        updated = max(added, when) if done else added
        person = ctx["person"]
        return {
            "id": activity_id, "subject": subject, "type": kind, "owner_id": ctx["owner"],
            "deal_id": ctx["deal"], "org_id": ctx["org"], "person_id": person,
            "participants": [{"person_id": person, "primary": True}] if person else [],
            "done": done, "due_date": when.date().isoformat(),
            "due_time": when.strftime("%H:%M"), "duration": "00:30",
            "busy": True, "add_time": v2_time(added), "update_time": v2_time(updated),
            "marked_as_done_time": v2_time(when) if done else None,
            "note": "" if rng.random() < 0.5 else f"<p>{subject}: notes from the call.</p>",
            "is_deleted": False, "location": None, "public_description": None,
        }

    def _deal_fields(self, deal_id: int, plan: Plan, value: float, entries: list[datetime],
                     end: datetime) -> dict[str, Any]:
        rng = self.rng
        path, status = plan.path, plan.status
        year = entries[0].year
        fields: dict[str, Any] = dict.fromkeys(K[n] for n, _, _ in DEAL_CUSTOM_FIELDS)
        if "lead_source" not in plan.missing:
            fields[K["Lead source"]] = rng.choice(tuple(LEAD_SOURCES))
        fields[K["Tender"]] = 21 if plan.tender else rng.choice((22, None, None))
        past_estimate = 2 in path[:-1] or (path[-1] == 2 and rng.random() < 0.5)
        if past_estimate and "estimate_link" not in plan.missing:
            fields[K["Estimate link"]] = (
                f"https://docs.northwind.example/estimates/E-{year}-{deal_id}")
        past_contract = 4 in path[:-1] or status == "won"
        if past_contract and "contract_number" not in plan.missing:
            fields[K["Contract number"]] = f"NW-{year}-{deal_id}"
        if status == "won" and plan.margin is not None:
            fields[K["Profit"]] = {"value": round(value * plan.margin, 2), "currency": "EUR"}
        elif status == "open" and path[-1] in {6, 7, 8}:
            fields[K["Profit"]] = {"value": round(value * 0.2, 2), "currency": "EUR"}
        if plan.snooze is not None:
            fields[K["Snooze until"]] = (self.now + timedelta(days=plan.snooze)).date().isoformat()
            fields[K["Snooze reason"]] = rng.choice(SNOOZE_REASONS)
        return fields

    def _flow(self, deal_id: int, plan: Plan, entries: list[datetime], end: datetime,
              owner: int) -> list[dict[str, Any]]:
        rows = [self._flow_row(deal_id, key="add_time", old=None, new=v1_time(entries[0]),
                               at=entries[0], user=owner)]
        for previous, stage, at in zip(plan.path, plan.path[1:], entries[1:], strict=False):
            rows.append(self._flow_row(deal_id, key="stage_id", old=str(previous),
                                       new=str(stage), at=at, user=owner,
                                       labels=(STAGE_NAMES[previous], STAGE_NAMES[stage])))
        if plan.status != "open":
            rows.append(self._flow_row(deal_id, key="status", old="open", new=plan.status,
                                       at=end, user=owner))
        return rows

    def _flow_row(self, deal_id: int, **row: Any) -> dict[str, Any]:
        row_id = self.next_flow
        self.next_flow += 1
        return flow_row(row_id, deal_id, **row)


def flow_row(row_id: int, deal_id: int, *, key: str, old: str | None, new: str | None,
             at: datetime, user: int,
             labels: tuple[str | None, str | None] = (None, None)) -> dict[str, Any]:
    """One v1 flow row (``object: dealChange``) as Pipedrive shapes it."""
    extra = None
    if any(labels):
        extra = {"old_value_formatted": labels[0], "new_value_formatted": labels[1]}
    return {
        "object": "dealChange",
        "timestamp": v1_time(at),
        "data": {
            "id": row_id, "item_id": deal_id, "user_id": user, "field_key": key,
            "old_value": old, "new_value": new, "is_bulk_update_flag": None,
            "log_time": v1_time(at), "change_source": "app",
            "change_source_user_agent": None, "additional_data": extra,
        },
    }


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def sample_dataset(now: datetime, *, seed: int = 7, deals: int = 60) -> Dataset:
    """The "Northwind Engineering" account as of ``now`` (deterministic for a seed)."""
    builder = _SampleBuilder(now, seed)
    builder.organizations(max(4, min(len(ORGANIZATIONS), deals // 3) if deals <= 60
                              else deals // 3))
    for index in range(deals):
        builder.deal(index, PLANS[index % len(PLANS)])
    return builder.data


# --- the scaled account (benchmark) ---------------------------------------------------------
def _mix(value: int) -> int:
    """splitmix64: a cheap, well-spread hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


def scaled_dataset(deals: int = 100_000, *, now: datetime | None = None,
                   seed: int = 7) -> Dataset:
    """Northwind with ``deals`` deals, ~deals/4 organizations, ~deals/2 persons and
    ~3 x deals activities, generated on demand (nothing is built up front but an index)."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    data = _reference(now, f"Northwind Engineering (scaled, {deals} deals)")
    end = int(now.timestamp()) - 3600
    span = HISTORY_DAYS * 86400
    orgs, persons, activities = max(1, deals // 4), max(1, deals // 2), 3 * deals

    def stamp_for(salt: int) -> Callable[[int], int]:
        return lambda i: end - _mix(i * 8 + salt + seed * 1_000_003) % span

    def rng_for(i: int, salt: int) -> random.Random:
        return random.Random(_mix(i * 8 + salt + seed * 7_000_001))

    org_stamp, person_stamp = stamp_for(1), stamp_for(2)
    deal_stamp, activity_stamp = stamp_for(3), stamp_for(4)

    def org(i: int) -> dict[str, Any]:
        rng = rng_for(i, 1)
        updated = org_stamp(i)
        base = ORGANIZATIONS[i % len(ORGANIZATIONS)]
        return {
            "id": i, "name": f"{base[0]} {i}", "owner_id": rng.randint(1, 4),
            "add_time": _epoch(updated - rng.randint(0, 90) * 86400),
            "update_time": _epoch(updated), "is_deleted": False, "visible_to": 3,
            "custom_fields": {K["Segment"]: base[1], K["NPS"]: rng.choice((None, 6, 8, 9, 10)),
                              K["Public incidents"]: None},
        }

    def person(i: int) -> dict[str, Any]:
        rng = rng_for(i, 2)
        updated = person_stamp(i)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        return {
            "id": i, "name": f"{first} {last}", "owner_id": rng.randint(2, 4),
            "org_id": (i - 1) % orgs + 1, "add_time": _epoch(updated - 86400),
            "update_time": _epoch(updated), "is_deleted": False,
            "emails": [{"value": f"p{i}@client.example", "primary": True, "label": "work"}],
            "phones": [], "custom_fields": {K["Preferred channel"]: None},
        }

    def deal(i: int) -> dict[str, Any]:
        rng = rng_for(i, 3)
        updated = deal_stamp(i)
        status = rng.choice(("open", "open", "open", "won", "lost"))
        stage = rng.choice(SEQUENCE)
        added = updated - rng.randint(1, 120) * 86400
        closed = _epoch(updated) if status != "open" else None
        value = float(rng.randrange(8_000, 180_000, 500))
        return {
            "id": i, "title": f"Deal {i}: {PROJECTS[i % len(PROJECTS)]}",
            "owner_id": rng.randint(1, 4), "person_id": (i - 1) % persons + 1,
            "org_id": (i - 1) % orgs + 1, "pipeline_id": 1, "stage_id": stage,
            "value": value, "currency": "EUR", "status": status,
            "add_time": _epoch(added), "update_time": _epoch(updated),
            "stage_change_time": _epoch(max(added, updated - rng.randint(0, 30) * 86400)),
            "won_time": closed if status == "won" else None,
            "lost_time": closed if status == "lost" else None,
            "lost_reason": rng.choice(GOOD_LOSS_REASONS) if status == "lost" else None,
            "is_deleted": False, "is_archived": False, "visible_to": 3, "label_ids": [],
            "custom_fields": {
                K["Lead source"]: rng.choice((11, 12, 13, 14, None)),
                K["Profit"]: {"value": round(value * 0.2, 2), "currency": "EUR"}
                if status == "won" else None,
                K["Tender"]: rng.choice((21, 22, None, None)),
                K["Estimate link"]: None, K["Contract number"]: None,
                K["Snooze until"]: None, K["Snooze reason"]: None,
            },
        }

    def activity(i: int) -> dict[str, Any]:
        rng = rng_for(i, 4)
        updated = activity_stamp(i)
        deal_id = (i - 1) % deals + 1
        done = rng.random() < 0.8
        due = updated if done else updated + rng.randint(1, 20) * 86400
        kind = rng.choice(("call", "meeting", "task", "email", "deadline", "lunch"))
        due_text = _epoch(due)
        return {
            "id": i, "subject": f"{kind.title()} #{i}", "type": kind,
            "owner_id": rng.randint(1, 4), "deal_id": deal_id,
            "org_id": (deal_id - 1) % orgs + 1, "person_id": (deal_id - 1) % persons + 1,
            "done": done, "due_date": due_text[:10], "due_time": due_text[11:16],
            "add_time": _epoch(updated - 3600), "update_time": _epoch(updated),
            "marked_as_done_time": _epoch(updated) if done else None,
            "note": "", "is_deleted": False,
        }

    def flow(i: int) -> list[dict[str, Any]]:
        record = deal(i)
        added = _parse(record["add_time"])
        rows = [flow_row(i * 4, i, key="add_time", old=None, new=v1_time(added), at=added,
                         user=1)]
        if record["stage_id"] != 1 and record["stage_change_time"]:
            changed = _parse(record["stage_change_time"])
            rows.append(flow_row(i * 4 + 1, i, key="stage_id", old="1",
                                 new=str(record["stage_id"]), at=changed, user=1))
        return rows

    data.organizations = Table(size=orgs, factory=org, stamp=org_stamp)
    data.persons = Table(size=persons, factory=person, stamp=person_stamp)
    data.deals = Table(size=deals, factory=deal, stamp=deal_stamp)
    data.activities = Table(size=activities, factory=activity, stamp=activity_stamp)
    data.flow_factory = flow
    return data


def _epoch(seconds: int) -> str:
    return v2_time(datetime.fromtimestamp(seconds, UTC))
