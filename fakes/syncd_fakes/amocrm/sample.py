"""Sample amoCRM accounts for the fake server: "Northwind Engineering", and a scaled one.

``sample_dataset(now)`` is the Northwind story of the Pipedrive sample (the same deals,
activities and stage paths, so every Sales Book rule fires) told the amoCRM way: leads in
pipelines whose closed leads sit in statuses 142/143, custom fields by numeric id with
``enum_id`` values and ``null`` when empty, the loss reason catalogue, tasks and call
notes, and an events log with ``lead_added`` / ``lead_status_changed``.
``scaled_dataset(leads=100_000)`` generates volume for the benchmark: its tables are
*virtual* (records built from their id on demand), so 100k leads cost an index, not RAM.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd_fakes.pipedrive import sample as northwind

WON, LOST = 142, 143
PIPELINE_IDS = {1: 3001, 2: 3002}  # Pipedrive pipeline id -> amoCRM pipeline id
STATUS0 = 40000  # amoCRM status id = STATUS0 + Pipedrive stage id
UNSORTED0 = 50000
#: task types: 1 and 2 are amoCRM's own; 3..5 are this account's custom ones.
TASK_TYPES = ((3, "Email"), (4, "Task"), (5, "Deadline"))
TASK_TYPE_OF = {"call": 1, "meeting": 2, "lunch": 2, "email": 3, "task": 4, "deadline": 5}
LOSS_REASONS = (*northwind.GOOD_LOSS_REASONS, "Other")
LOSS_REASON_IDS = {name: 7000 + i for i, name in enumerate(LOSS_REASONS, start=1)}

# custom field ids: leads 6xx, companies 7xx, contacts 8xx
LEAD_FIELDS = (
    (601, "Lead source", "select", northwind.LEAD_SOURCES),
    (602, "Profit", "numeric", None),
    (603, "Tender", "select", northwind.TENDER),
    (604, "Estimate link", "url", None),
    (605, "Contract number", "text", None),
    (606, "Snooze until", "date", None),
    (607, "Snooze reason", "text", None),
)
COMPANY_FIELDS = (
    (701, "Segment", "select", northwind.SEGMENTS),
    (702, "NPS", "numeric", None),
    (703, "Public incidents", "numeric", None),
)
CONTACT_FIELDS = (
    (801, "Phone", "multitext", None),
    (802, "Email", "multitext", None),
    (803, "Preferred channel", "text", None),
)


@dataclass
class Table:
    """Materialized ``rows`` by id, plus optional *virtual* ids ``1..size`` built on demand
    by ``factory`` (``stamp(id)`` = their ``updated_at``, cheap, for the sort index)."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    size: int = 0
    factory: Callable[[int], dict[str, Any]] | None = None
    stamp: Callable[[int], int] | None = None


@dataclass
class Dataset:
    name: str
    now: datetime
    users: list[dict[str, Any]]
    pipelines: list[dict[str, Any]]
    loss_reasons: list[dict[str, Any]]
    task_types: list[dict[str, Any]]
    custom_fields: dict[str, list[dict[str, Any]]]  # "leads" | "companies" | "contacts"
    leads: Table
    companies: Table
    contacts: Table
    tasks: Table
    notes: dict[str, Table]  # entity -> call notes
    #: Events sorted by (created_at, id); or built on demand from ``event_index``.
    events: list[dict[str, Any]] = field(default_factory=list)
    event_index: list[tuple[int, str]] = field(default_factory=list)
    event_factory: Callable[[str], dict[str, Any]] | None = None


def unix(value: datetime | str | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return int(value.astimezone(UTC).timestamp())


def status_of(stage: int) -> int:
    return STATUS0 + stage


def pipeline_of(stage: int) -> int:
    return PIPELINE_IDS[next(p for s, p, _ in northwind.STAGES if s == stage)]


def _definitions(fields: tuple[tuple[int, str, str, dict[int, str] | None], ...],
                 ) -> list[dict[str, Any]]:
    out = []
    for field_id, name, kind, options in fields:
        code = name.upper() if kind == "multitext" else None
        out.append({"id": field_id, "name": name, "type": kind, "code": code, "sort": field_id,
                    "is_api_only": False, "is_deletable": True, "enums": [
                        {"id": i, "value": label, "sort": i} for i, label in options.items()]
                    if options else None})
    return out


def _reference(now: datetime, name: str) -> Dataset:
    created = unix(now - timedelta(days=600))
    pipelines = []
    for pd_pipeline, pipeline_name in northwind.PIPELINES:
        pipeline_id = PIPELINE_IDS[pd_pipeline]
        statuses = [{"id": UNSORTED0 + pipeline_id, "name": "Incoming leads", "sort": 10,
                     "type": 1, "pipeline_id": pipeline_id, "is_editable": False}]
        statuses += [{"id": status_of(s), "name": n, "sort": 20 + 10 * s, "type": 0,
                      "pipeline_id": pipeline_id, "is_editable": True}
                     for s, p, n in northwind.STAGES if p == pd_pipeline]
        statuses += [{"id": WON, "name": "Closed - won", "sort": 10000, "type": 0,
                      "pipeline_id": pipeline_id, "is_editable": False},
                     {"id": LOST, "name": "Closed - lost", "sort": 11000, "type": 0,
                      "pipeline_id": pipeline_id, "is_editable": False}]
        pipelines.append({"id": pipeline_id, "name": pipeline_name, "sort": pd_pipeline,
                          "is_main": pd_pipeline == 1, "is_unsorted_on": True,
                          "is_archive": False, "account_id": 31337,
                          "_embedded": {"statuses": statuses}})
    return Dataset(
        name=name, now=now,
        users=[{"id": uid, "name": uname, "email": email, "lang": "en",
                "rights": {"is_active": True, "is_admin": admin}}
               for uid, uname, email, admin in northwind.USERS],
        pipelines=pipelines,
        loss_reasons=[{"id": LOSS_REASON_IDS[n], "name": n, "sort": i, "created_at": created,
                       "updated_at": created} for i, n in enumerate(LOSS_REASONS)],
        task_types=[{"id": i, "name": n, "color": None, "icon_id": None}
                    for i, n in TASK_TYPES],
        custom_fields={"leads": _definitions(LEAD_FIELDS),
                       "companies": _definitions(COMPANY_FIELDS),
                       "contacts": _definitions(CONTACT_FIELDS)},
        leads=Table(), companies=Table(), contacts=Table(), tasks=Table(),
        notes={"leads": Table(), "contacts": Table(), "companies": Table()},
    )


def cf(field_id: int, name: str, kind: str, values: list[Any] | None,
       options: dict[int, str] | None = None) -> dict[str, Any] | None:
    """One ``custom_fields_values`` item (None when there is no value)."""
    if not values:
        return None
    shaped = []
    for value in values:
        if options is not None:
            shaped.append({"value": options[value], "enum_id": value, "enum_code": None})
        elif kind == "multitext":
            shaped.append({"value": value, "enum_id": 1, "enum_code": "WORK"})
        else:
            shaped.append({"value": value})
    return {"field_id": field_id, "field_name": name, "field_code": None, "field_type": kind,
            "values": shaped}


def values_list(*items: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    present = [i for i in items if i is not None]
    return present or None  # amoCRM sends null, not [], for a record without values


def _option(options: dict[int, str], label: Any) -> int | None:
    return next((i for i, text in options.items() if text == label), None)


# --- the Northwind story, amoCRM-shaped ---------------------------------------------------
def sample_dataset(now: datetime, *, seed: int = 7, deals: int = 60) -> Dataset:
    """Northwind as an amoCRM account as of ``now`` (deterministic for a seed)."""
    source = northwind.sample_dataset(now, seed=seed, deals=deals)
    data = _reference(source.now, "Northwind Engineering (amoCRM)")
    rng = random.Random(seed)
    for org in source.organizations.rows.values():
        data.companies.rows[org["id"]] = _company(org)
    for person in source.persons.rows.values():
        data.contacts.rows[person["id"]] = _contact(person)
    for deal in source.deals.rows.values():
        data.leads.rows[deal["id"]] = _lead(deal)
    for activity in source.activities.rows.values():
        _activity(data, activity, rng)
    for deal_id, rows in source.flows.items():
        data.events.extend(_events(data.leads.rows[deal_id], rows))
    data.events.sort(key=lambda e: (e["created_at"], e["id"]))
    return data


def _company(org: dict[str, Any]) -> dict[str, Any]:
    custom = org.get("custom_fields") or {}
    k = northwind.K
    nps, incidents = custom.get(k["NPS"]), custom.get(k["Public incidents"])
    return {
        "id": org["id"], "name": org["name"], "responsible_user_id": org["owner_id"],
        "group_id": 0, "created_by": org["owner_id"], "updated_by": org["owner_id"],
        "created_at": unix(org["add_time"]), "updated_at": unix(org["update_time"]),
        "closest_task_at": None, "is_deleted": False, "account_id": 31337,
        "custom_fields_values": values_list(
            cf(701, "Segment", "select", [custom.get(k["Segment"])] if custom.get(
                k["Segment"]) else None, northwind.SEGMENTS),
            cf(702, "NPS", "numeric", [str(int(nps))] if nps is not None else None),
            cf(703, "Public incidents", "numeric",
               [str(int(incidents))] if incidents is not None else None)),
        "_embedded": {"tags": []},
    }


def _contact(person: dict[str, Any]) -> dict[str, Any]:
    emails = [e["value"] for e in person.get("emails") or ()]
    phones = [p["value"] for p in person.get("phones") or ()]
    channel = (person.get("custom_fields") or {}).get(northwind.K["Preferred channel"])
    org = person.get("org_id")
    return {
        "id": person["id"], "name": person["name"], "first_name": person.get("first_name", ""),
        "last_name": person.get("last_name", ""), "responsible_user_id": person["owner_id"],
        "created_at": unix(person["add_time"]), "updated_at": unix(person["update_time"]),
        "is_deleted": False, "account_id": 31337,
        "custom_fields_values": values_list(
            cf(801, "Phone", "multitext", phones), cf(802, "Email", "multitext", emails),
            cf(803, "Preferred channel", "text", [channel] if channel else None)),
        "_embedded": {"tags": [], "companies": [{"id": org}] if org else []},
    }


def _lead(deal: dict[str, Any]) -> dict[str, Any]:
    k = northwind.K
    custom = deal.get("custom_fields") or {}
    stage = int(deal["stage_id"])
    status = {"won": WON, "lost": LOST}.get(deal["status"], status_of(stage))
    closed = deal.get("won_time") or deal.get("lost_time")
    reason_id = None
    if deal["status"] == "lost" and deal.get("lost_reason"):
        reason = deal["lost_reason"]
        reason_id = LOSS_REASON_IDS.get(reason, LOSS_REASON_IDS["Other"])
    profit = custom.get(k["Profit"])
    snooze = custom.get(k["Snooze until"])

    def text(name: str) -> list[Any] | None:
        value = custom.get(k[name])
        return [value] if value else None

    embedded: dict[str, Any] = {"tags": [], "companies": [{"id": deal["org_id"]}]
                                if deal.get("org_id") else [],
                                "contacts": [{"id": deal["person_id"], "is_main": True}]
                                if deal.get("person_id") else []}
    return {
        "id": deal["id"], "name": deal["title"], "price": int(deal["value"]),
        "responsible_user_id": deal["owner_id"], "group_id": 0, "status_id": status,
        "pipeline_id": pipeline_of(stage), "loss_reason_id": reason_id,
        "created_by": deal["owner_id"], "updated_by": deal["owner_id"],
        "created_at": unix(deal["add_time"]), "updated_at": unix(deal["update_time"]),
        "closed_at": unix(closed), "closest_task_at": None, "is_deleted": False,
        "score": None, "account_id": 31337,
        "custom_fields_values": values_list(
            cf(601, "Lead source", "select", text("Lead source"), northwind.LEAD_SOURCES),
            cf(602, "Profit", "numeric", [profit["value"]] if profit else None),
            cf(603, "Tender", "select", text("Tender"), northwind.TENDER),
            cf(604, "Estimate link", "url", text("Estimate link")),
            cf(605, "Contract number", "text", text("Contract number")),
            cf(606, "Snooze until", "date", [unix(snooze + "T00:00:00+00:00")]
               if snooze else None),
            cf(607, "Snooze reason", "text", text("Snooze reason"))),
        "_embedded": embedded,
    }


def _activity(data: Dataset, activity: dict[str, Any], rng: random.Random) -> None:
    """A done call becomes a call note on its lead; everything else a task."""
    kind = activity["type"]
    due = f"{activity['due_date']}T{activity.get('due_time') or '00:00'}:00+00:00"
    if kind == "call" and activity.get("done"):
        at = unix(activity.get("marked_as_done_time") or due)
        data.notes["leads"].rows[activity["id"]] = {
            "id": activity["id"], "entity_id": activity["deal_id"],
            "created_by": activity["owner_id"], "updated_by": activity["owner_id"],
            "created_at": at, "updated_at": at, "responsible_user_id": activity["owner_id"],
            "group_id": 0, "note_type": rng.choice(("call_in", "call_out")),
            "params": {"uniq": f"call-{activity['id']}", "duration": 300,
                       "source": "Telephony", "link": "", "phone": "+49 30 5550000",
                       "result": activity.get("subject", "")},
            "account_id": 31337,
        }
        return
    text = activity["subject"]
    if activity.get("note"):
        text += "\n" + activity["note"]
    done_at = activity.get("marked_as_done_time")
    data.tasks.rows[activity["id"]] = {
        "id": activity["id"], "created_by": activity["owner_id"],
        "updated_by": activity["owner_id"], "created_at": unix(activity["add_time"]),
        "updated_at": unix(done_at or activity["update_time"]),
        "responsible_user_id": activity["owner_id"], "group_id": 0,
        "entity_id": activity["deal_id"], "entity_type": "leads",
        "is_completed": bool(activity.get("done")), "task_type_id": TASK_TYPE_OF.get(kind, 4),
        "text": text, "duration": 1800, "complete_till": unix(due),
        "result": {"text": "done"} if activity.get("done") else [], "account_id": 31337,
    }


def status_value(pipeline_id: int, status_id: int) -> list[dict[str, Any]]:
    return [{"lead_status": {"id": status_id, "pipeline_id": pipeline_id}}]


def event(event_id: str, kind: str, lead_id: int, at: int, user: int,
          before: list[Any], after: list[Any]) -> dict[str, Any]:
    return {"id": event_id, "type": kind, "entity_id": lead_id, "entity_type": "lead",
            "created_by": user, "created_at": at, "value_before": before,
            "value_after": after, "account_id": 31337,
            "_embedded": {"entity": {"id": lead_id}}}


def _events(lead: dict[str, Any], flow: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lead's Pipedrive flow as amoCRM events (status moves, then the close)."""
    pipeline = lead["pipeline_id"]
    out: list[dict[str, Any]] = []
    current: int | None = None
    for row in flow:
        data = row["data"]
        at = unix(data["log_time"].replace(" ", "T") + "+00:00") or 0
        user = data.get("user_id") or 1
        ident = f"01{lead['id']:08d}{data['id']:010d}"
        if data["field_key"] == "add_time":
            first = next((r["data"]["old_value"] for r in flow
                          if r["data"]["field_key"] == "stage_id"), None)
            status = status_of(int(first)) if first else (
                lead["status_id"] if lead["status_id"] not in (WON, LOST) else None)
            if status is None:
                status = status_of(int(next(s for s, p, _ in northwind.STAGES
                                            if PIPELINE_IDS[p] == pipeline)))
            current = status
            out.append(event(ident, "lead_added", lead["id"], at, user, [],
                             status_value(pipeline, status)))
        elif data["field_key"] == "stage_id":
            new = status_of(int(data["new_value"]))
            out.append(event(ident, "lead_status_changed", lead["id"], at, user,
                             status_value(pipeline, current or new),
                             status_value(pipeline, new)))
            current = new
        elif data["field_key"] == "status" and data["new_value"] in {"won", "lost"}:
            new = WON if data["new_value"] == "won" else LOST
            out.append(event(ident, "lead_status_changed", lead["id"], at, user,
                             status_value(pipeline, current or new),
                             status_value(pipeline, new)))
            current = new
    return out


# --- the scaled account (benchmark) ---------------------------------------------------------
def scaled_dataset(leads: int = 100_000, *, now: datetime | None = None,  # noqa: C901, PLR0915 - one generator per table, kept together
                   seed: int = 7) -> Dataset:
    """``leads`` leads, leads/4 companies, leads/2 contacts, leads/10 tasks and call notes,
    and 1.5 events per lead on average, generated on demand."""
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    data = _reference(now, f"Northwind Engineering (amoCRM, scaled, {leads} leads)")
    end = int(now.timestamp()) - 3600
    span = northwind.HISTORY_DAYS * 86400
    companies, contacts, small = max(1, leads // 4), max(1, leads // 2), max(1, leads // 10)
    mix = northwind._mix

    def stamp_for(salt: int) -> Callable[[int], int]:
        return lambda i: end - mix(i * 8 + salt + seed * 1_000_003) % span

    def rng_for(i: int, salt: int) -> random.Random:
        return random.Random(mix(i * 8 + salt + seed * 7_000_001))

    company_stamp, contact_stamp = stamp_for(1), stamp_for(2)
    lead_stamp, task_stamp, note_stamp = stamp_for(3), stamp_for(4), stamp_for(5)
    open_statuses = [status_of(s) for s in northwind.SEQUENCE]

    def company(i: int) -> dict[str, Any]:
        rng = rng_for(i, 1)
        segment = rng.choice(tuple(northwind.SEGMENTS))
        return {"id": i, "name": f"Company {i}", "responsible_user_id": rng.randint(1, 4),
                "created_at": company_stamp(i) - 86400 * rng.randint(0, 90),
                "updated_at": company_stamp(i), "is_deleted": False, "account_id": 31337,
                "custom_fields_values": values_list(
                    cf(701, "Segment", "select", [segment], northwind.SEGMENTS),
                    cf(702, "NPS", "numeric", [str(rng.choice((6, 8, 9, 10)))])
                    if rng.random() < 0.5 else None),
                "_embedded": {"tags": []}}

    def contact(i: int) -> dict[str, Any]:
        rng = rng_for(i, 2)
        return {"id": i, "name": f"{rng.choice(northwind.FIRST_NAMES)} "
                f"{rng.choice(northwind.LAST_NAMES)}", "responsible_user_id": rng.randint(2, 4),
                "created_at": contact_stamp(i) - 86400, "updated_at": contact_stamp(i),
                "is_deleted": False, "account_id": 31337,
                "custom_fields_values": values_list(
                    cf(802, "Email", "multitext", [f"p{i}@client.example"])),
                "_embedded": {"tags": [], "companies": [{"id": (i - 1) % companies + 1}]}}

    def lead_status(i: int) -> tuple[int, int, int]:
        """(first status, current status, created_at)."""
        rng = rng_for(i, 3)
        first = open_statuses[0]
        kind = rng.random()
        current = WON if kind < 0.15 else LOST if kind < 0.3 else rng.choice(open_statuses)
        return first, current, lead_stamp(i) - 86400 * rng.randint(1, 120)

    def lead(i: int) -> dict[str, Any]:
        rng = rng_for(i, 6)
        _, status, created = lead_status(i)
        updated = lead_stamp(i)
        closed = updated if status in (WON, LOST) else None
        return {"id": i, "name": f"Lead {i}: {northwind.PROJECTS[i % len(northwind.PROJECTS)]}",
                "price": rng.randrange(8_000, 180_000, 500), "responsible_user_id":
                rng.randint(1, 4), "status_id": status, "pipeline_id": PIPELINE_IDS[1],
                "loss_reason_id": LOSS_REASON_IDS[rng.choice(LOSS_REASONS)]
                if status == LOST else None, "created_at": created, "updated_at": updated,
                "closed_at": closed, "is_deleted": False, "account_id": 31337,
                "custom_fields_values": values_list(
                    cf(601, "Lead source", "select", [rng.choice((11, 12, 13, 14))],
                       northwind.LEAD_SOURCES) if rng.random() < 0.8 else None,
                    cf(602, "Profit", "numeric", [rng.randrange(1000, 30000)])
                    if status == WON else None),
                "_embedded": {"tags": [], "companies": [{"id": (i - 1) % companies + 1}],
                              "contacts": [{"id": (i - 1) % contacts + 1, "is_main": True}]}}

    def task(i: int) -> dict[str, Any]:
        rng = rng_for(i, 4)
        done = rng.random() < 0.7
        return {"id": i, "created_at": task_stamp(i) - 3600, "updated_at": task_stamp(i),
                "responsible_user_id": rng.randint(1, 4), "entity_id": (i - 1) % leads + 1,
                "entity_type": "leads", "is_completed": done,
                "task_type_id": rng.choice((1, 2, 3)), "text": f"Task {i}",
                "complete_till": task_stamp(i) + (0 if done else 86400 * rng.randint(1, 9)),
                "result": [], "account_id": 31337}

    def note(i: int) -> dict[str, Any]:
        rng = rng_for(i, 5)
        return {"id": i, "entity_id": (i * 7 - 1) % leads + 1, "created_at": note_stamp(i),
                "updated_at": note_stamp(i), "responsible_user_id": rng.randint(1, 4),
                "note_type": rng.choice(("call_in", "call_out")),
                "params": {"uniq": f"c{i}", "duration": 120, "phone": "+7 900 0000000"},
                "account_id": 31337}

    # Events: every lead was added; half of them moved (or closed) once since.
    index: list[tuple[int, str]] = []
    for i in range(1, leads + 1):
        first, current, created = lead_status(i)
        index.append((created, f"a{i}"))
        if current != first:
            index.append((lead_stamp(i), f"s{i}"))
    index.sort()

    def make_event(event_id: str) -> dict[str, Any]:
        i = int(event_id[1:])
        first, current, created = lead_status(i)
        pipeline = PIPELINE_IDS[1]
        if event_id[0] == "a":
            return event(event_id, "lead_added", i, created, 1, [],
                         status_value(pipeline, first))
        return event(event_id, "lead_status_changed", i, lead_stamp(i), 1,
                     status_value(pipeline, first), status_value(pipeline, current))

    data.companies = Table(size=companies, factory=company, stamp=company_stamp)
    data.contacts = Table(size=contacts, factory=contact, stamp=contact_stamp)
    data.leads = Table(size=leads, factory=lead, stamp=lead_stamp)
    data.tasks = Table(size=small, factory=task, stamp=task_stamp)
    data.notes["leads"] = Table(size=small, factory=note, stamp=note_stamp)
    data.event_index = index
    data.event_factory = make_event
    return data
