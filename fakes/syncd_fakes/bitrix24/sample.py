"""Sample Bitrix24 portals for the fake server: "Volga Print" and a scaled one.

``sample_dataset(now)`` is a small, deterministic B2B-services portal whose deals exercise
the Sales Book's rules (``config/tenants/bitrix24.yaml.example`` maps its vocabulary).
``scaled_dataset(deals)`` has the same vocabulary and generated volume for the benchmark:
its tables are *virtual* (rows built from their id on demand).

Payloads are shaped like the real API: legacy lists with every scalar a string and
datetimes in the portal's offset (+03:00 here); ``crm.category.list`` and
``crm.stagehistory.list`` typed.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

PORTAL_TZ = timezone(timedelta(hours=3))

USERS = ((1, "Anna", "Petrova", 1), (2, "Boris", "Ivanov", 1), (3, "Clara", "Smirnova", 1),
         (4, "Dmitry", "Orlov", 2))
DEPARTMENTS = ((1, "Sales", None, 1), (2, "Key accounts", 1, 4))  # id, name, parent, head
CATEGORIES = ((0, "Projects"), (1, "Partners"))
#: (STATUS_ID, category, name, semantics None/S/F), in pipeline order.
STATUSES = (
    ("NEW", 0, "Briefing", None), ("PREPARATION", 0, "Estimate", None),
    ("PREPAYMENT_INVOICE", 0, "Awaiting decision", None),
    ("EXECUTING", 0, "Contract signing", None), ("UC_DEFER", 0, "Deferred", None),
    ("UC_WORK", 0, "In progress", None), ("FINAL_INVOICE", 0, "Final invoice", None),
    ("UC_WARRANTY", 0, "Warranty", None), ("WON", 0, "Deal won", "S"),
    ("LOSE", 0, "Deal failed", "F"), ("UC_PRICE", 0, "Too expensive", "F"),
    ("UC_COMPETITOR", 0, "Chose competitor", "F"), ("APOLOGY", 0, "Analysis of failure", "F"),
    ("C1:NEW", 1, "Intro", None), ("C1:WON", 1, "Partner won", "S"),
    ("C1:LOSE", 1, "Partner lost", "F"),
)
SEMANTIC = {s[0]: (s[3] or "P") for s in STATUSES}
PROCESS = ("NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "UC_WORK",
           "FINAL_INVOICE", "UC_WARRANTY")
LEAD_SOURCES = {"41": "Website", "42": "Referral", "43": "Cold call", "44": "Exhibition"}
LOSS_REASONS = {"51": "No budget", "52": "No response", "53": "Bad timing"}
SEGMENTS = {"61": "Banks", "62": "Retail", "63": "Manufacturing"}


def _items(options: dict[str, str]) -> list[dict[str, str]]:
    return [{"ID": k, "VALUE": v} for k, v in options.items()]


def _uf(label: str, kind: str, options: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "isRequired": False, "isReadOnly": False,
                            "isMultiple": False, "title": label, "formLabel": label,
                            "listLabel": label, "filterLabel": label}
    if options:
        spec["items"] = _items(options)
    return spec


def _std(title: str, kind: str = "string") -> dict[str, Any]:
    return {"type": kind, "isRequired": False, "isReadOnly": False, "isMultiple": False,
            "title": title}


def field_descriptions() -> dict[str, dict[str, dict[str, Any]]]:
    """``crm.{entity}.fields`` of the sample portal."""
    common = {"ID": _std("ID", "integer"), "ASSIGNED_BY_ID": _std("Responsible", "user"),
              "DATE_CREATE": _std("Created", "datetime"),
              "DATE_MODIFY": _std("Modified", "datetime")}
    return {
        "deal": {**common, "TITLE": _std("Name"), "STAGE_ID": _std("Stage", "crm_status"),
                 "CATEGORY_ID": _std("Pipeline", "crm_category"),
                 "OPPORTUNITY": _std("Amount", "double"), "SOURCE_ID": _std("Source"),
                 "CLOSEDATE": _std("Expected close date", "date"),
                 "UF_CRM_LEAD_SRC": _uf("Lead source", "enumeration", LEAD_SOURCES),
                 "UF_CRM_PROFIT": _uf("Profit", "double"),
                 "UF_CRM_TENDER": _uf("Tender", "boolean"),
                 "UF_CRM_LOSS": _uf("Loss reason", "enumeration", LOSS_REASONS),
                 "UF_CRM_SNOOZE": _uf("Snooze until", "date"),
                 "UF_CRM_ESTIMATE": _uf("Estimate link", "url"),
                 "UF_CRM_CONTRACT": _uf("Contract number", "string")},
        "company": {**common, "TITLE": _std("Company name"),
                    "UF_CRM_SEGMENT": _uf("Segment", "enumeration", SEGMENTS),
                    "UF_CRM_INCIDENTS": _uf("Public incidents", "integer")},
        "contact": {**common, "NAME": _std("First name"), "LAST_NAME": _std("Last name"),
                    "COMPANY_ID": _std("Company", "crm_company"), "POST": _std("Position")},
    }


@functools.lru_cache(maxsize=1 << 15)
def portal_time(value: datetime) -> str:
    """How the portal writes a datetime: ISO 8601 in its own offset. Cached: a scaled
    portal's rows are built on demand for every request, and their times repeat (an
    activity's start, deadline and update), so a benchmark measures the client rather
    than this formatting."""
    return value.astimezone(PORTAL_TZ).isoformat(timespec="seconds")


@dataclass
class Table:
    """Rows by id: stored ones plus, when ``factory`` is set, ids 1..size built on demand."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    size: int = 0
    factory: Callable[[int], dict[str, Any]] | None = None
    #: For virtual tables: the ids of rows owned by a deal (history, activities).
    by_owner: Callable[[int], list[int]] | None = None

    def get(self, row_id: int) -> dict[str, Any] | None:
        row = self.rows.get(row_id)
        if row is None and self.factory is not None and 1 <= row_id <= self.size:
            row = self.factory(row_id)
        return row

    def ids_after(self, after: int) -> Any:
        if self.factory is not None:
            yield from range(max(after + 1, 1), self.size + 1)
            yield from sorted(i for i in self.rows if i > max(after, self.size))
        else:
            yield from sorted(i for i in self.rows if i > after)

    def count(self) -> int:
        extra = sum(1 for i in self.rows if i > self.size) if self.factory else len(self.rows)
        return (self.size if self.factory else 0) + extra

    def next_id(self) -> int:
        return max([self.size, *self.rows, 0]) + 1

    def put(self, row: dict[str, Any]) -> None:
        self.rows[int(row["ID"])] = row


@dataclass
class Dataset:
    name: str
    users: list[dict[str, Any]]
    departments: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    statuses: list[dict[str, Any]]
    fields: dict[str, dict[str, dict[str, Any]]]
    deals: Table
    companies: Table
    contacts: Table
    activities: Table
    history: Table  # crm.stagehistory.list rows (typed)


def _reference() -> dict[str, Any]:
    users = [{"ID": str(i), "ACTIVE": True, "NAME": first, "LAST_NAME": last,
              "EMAIL": f"{first.lower()}@volgaprint.example", "UF_DEPARTMENT": [dept]}
             for i, first, last, dept in USERS]
    departments = [{"ID": str(i), "NAME": name, "SORT": "500",
                    **({"PARENT": str(parent)} if parent else {}), "UF_HEAD": str(head)}
                   for i, name, parent, head in DEPARTMENTS]
    categories = [{"id": i, "name": n, "sort": 100 * (i + 1), "entityTypeId": 2,
                   "isDefault": "Y" if i == 0 else "N"} for i, n in CATEGORIES]
    statuses = []
    for sort, (status_id, category, name, semantics) in enumerate(STATUSES):
        entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
        statuses.append({"ID": str(100 + sort), "ENTITY_ID": entity, "STATUS_ID": status_id,
                         "NAME": name, "NAME_INIT": name, "SORT": str(10 * (sort + 1)),
                         "SYSTEM": "N", "CATEGORY_ID": str(category), "COLOR": "#39A8EF",
                         "SEMANTICS": semantics,
                         "EXTRA": {"SEMANTICS": {None: "process", "S": "success",
                                                 "F": "failure"}[semantics],
                                   "COLOR": "#39A8EF"}})
    return {"users": users, "departments": departments, "categories": categories,
            "statuses": statuses, "fields": field_descriptions()}


def deal_row(deal_id: int, *, title: str, stage: str, owner: int, company: int | None,
             contact: int | None, amount: float, created: datetime, modified: datetime,
             moved: datetime, uf: dict[str, Any] | None = None) -> dict[str, Any]:
    semantic = SEMANTIC[stage]
    category = "1" if stage.startswith("C1:") else "0"
    row = {
        "ID": str(deal_id), "TITLE": title, "TYPE_ID": "SALE", "CATEGORY_ID": category,
        "STAGE_ID": stage, "STAGE_SEMANTIC_ID": semantic, "IS_NEW": "N",
        "PROBABILITY": None, "CURRENCY_ID": "RUB", "OPPORTUNITY": f"{amount:.2f}",
        "IS_MANUAL_OPPORTUNITY": "N", "TAX_VALUE": "0.00",
        "COMPANY_ID": str(company or 0), "CONTACT_ID": str(contact) if contact else None,
        "BEGINDATE": portal_time(created), "CLOSEDATE": portal_time(created + timedelta(
            days=30)), "OPENED": "Y", "CLOSED": "N" if semantic == "P" else "Y",
        "ASSIGNED_BY_ID": str(owner), "CREATED_BY_ID": str(owner), "MODIFY_BY_ID": str(owner),
        "MOVED_BY_ID": str(owner), "DATE_CREATE": portal_time(created),
        "DATE_MODIFY": portal_time(modified), "MOVED_TIME": portal_time(moved),
        "SOURCE_ID": "WEB", "LAST_ACTIVITY_TIME": portal_time(modified),
        "UF_CRM_LEAD_SRC": "", "UF_CRM_PROFIT": "", "UF_CRM_TENDER": "0", "UF_CRM_LOSS": "",
        "UF_CRM_SNOOZE": "", "UF_CRM_ESTIMATE": "", "UF_CRM_CONTRACT": "",
    }
    row.update(uf or {})
    return row


def company_row(company_id: int, title: str, owner: int, created: datetime,
                segment: str = "") -> dict[str, Any]:
    return {"ID": str(company_id), "TITLE": title, "COMPANY_TYPE": "CUSTOMER",
            "INDUSTRY": "IT", "REVENUE": "", "CURRENCY_ID": "RUB",
            "ASSIGNED_BY_ID": str(owner), "CREATED_BY_ID": str(owner),
            "DATE_CREATE": portal_time(created), "DATE_MODIFY": portal_time(created),
            "UF_CRM_SEGMENT": segment, "UF_CRM_INCIDENTS": "0"}


def contact_row(contact_id: int, company: int | None, owner: int,
                created: datetime) -> dict[str, Any]:
    return {"ID": str(contact_id), "NAME": f"Contact{contact_id}", "SECOND_NAME": None,
            "LAST_NAME": f"Person{contact_id}", "POST": "Manager",
            "COMPANY_ID": str(company or 0), "ASSIGNED_BY_ID": str(owner),
            "DATE_CREATE": portal_time(created), "DATE_MODIFY": portal_time(created),
            "SOURCE_ID": "WEB", "HAS_EMAIL": "Y", "HAS_PHONE": "N",
            "EMAIL": [{"ID": str(contact_id), "VALUE_TYPE": "WORK",
                       "VALUE": f"c{contact_id}@client.example", "TYPE_ID": "EMAIL"}]}


#: kind -> (TYPE_ID, PROVIDER_ID, PROVIDER_TYPE_ID) as ``crm.activity.list`` answers them.
#: Calls: TYPE_ID "2", VOXIMPLANT_CALL / CALL (the response example of
#: https://apidocs.bitrix24.com/api-reference/crm/timeline/activities/activity-base/crm-activity-list.html);
#: universal to-dos: TYPE_ID "6", CRM_TODO / TODO (.../activities/todo/index.html). Activities
#: of apps are TYPE_ID "6" (provider-managed), PROVIDER_ID REST_APP, and PROVIDER_TYPE_ID the
#: TYPE_ID the app registered with crm.activity.type.add ("when creating an activity this is
#: PROVIDER_TYPE_ID": .../activities/types/crm-activity-type-add.html).
ACTIVITY_SHAPES: dict[str, tuple[str, str, str]] = {
    "meeting": ("1", "CRM_MEETING", "MEETING"), "call": ("2", "VOXIMPLANT_CALL", "CALL"),
    "task": ("3", "TASKS_TASK", "TASK"), "email": ("4", "CRM_EMAIL", "EMAIL"),
    "todo": ("6", "CRM_TODO", "TODO"),
    "presentation": ("6", "REST_APP", "PRESENTATION"),
    "reminder": ("6", "REST_APP", "REMINDER"), "followup": ("6", "REST_APP", "FOLLOWUP"),
}


def activity_row(activity_id: int, *, deal: int, kind: str, done: bool, when: datetime,
                 owner: int, subject: str = "", description: str = "",
                 created: datetime | None = None) -> dict[str, Any]:
    type_id, provider, provider_type = ACTIVITY_SHAPES[kind]
    created = created or when - timedelta(days=1)
    return {"ID": str(activity_id), "OWNER_ID": str(deal), "OWNER_TYPE_ID": "2",
            "TYPE_ID": type_id, "PROVIDER_ID": provider, "PROVIDER_TYPE_ID": provider_type,
            "SUBJECT": subject or kind.title(), "COMPLETED": "Y" if done else "N",
            "STATUS": "2" if done else "1", "RESPONSIBLE_ID": str(owner),
            "AUTHOR_ID": str(owner), "PRIORITY": "2", "DIRECTION": "2",
            "START_TIME": portal_time(when), "END_TIME": portal_time(when + timedelta(
                minutes=30)), "DEADLINE": portal_time(when), "CREATED": portal_time(created),
            "LAST_UPDATED": portal_time(when if done else created),
            "DESCRIPTION": description, "DESCRIPTION_TYPE": "1"}


def history_row(row_id: int, deal: int, stage: str, at: datetime, *,
                created: bool = False) -> dict[str, Any]:
    semantic = SEMANTIC[stage]
    return {"ID": row_id, "TYPE_ID": 1 if created else (2 if semantic == "P" else 3),
            "OWNER_ID": deal, "CREATED_TIME": portal_time(at),
            "CATEGORY_ID": 1 if stage.startswith("C1:") else 0,
            "STAGE_SEMANTIC_ID": semantic, "STAGE_ID": stage}


def _story(deal_id: int, rnd: random.Random) -> list[str]:
    """The stages a sample deal went through, in order."""
    story = deal_id % 8
    if deal_id % 12 == 0:
        return ["C1:NEW"]
    if story in (0, 1):  # won
        return [*PROCESS[: 3 + deal_id % 4], "WON"]
    if story == 2:  # lost in a reason stage, or the generic one with the UF reason
        return [*PROCESS[: 2 + deal_id % 2], rnd.choice(
            ["UC_PRICE", "UC_COMPETITOR", "LOSE", "LOSE", "APOLOGY"])]
    if story == 3:
        return ["NEW", "UC_DEFER"]
    return list(PROCESS[: 1 + deal_id % 5])


def _story_fields(deal_id: int, path: list[str], rnd: random.Random) -> dict[str, Any]:
    uf: dict[str, Any] = {}
    if deal_id % 3:
        uf["UF_CRM_LEAD_SRC"] = rnd.choice(list(LEAD_SOURCES))
    if "PREPAYMENT_INVOICE" in path and deal_id % 5:
        uf["UF_CRM_ESTIMATE"] = f"https://docs.example/estimate/{deal_id}"
    if "UC_WORK" in path and deal_id % 7:
        uf["UF_CRM_CONTRACT"] = f"VP-{deal_id:04d}"
    if path[-1] == "WON":
        uf["UF_CRM_PROFIT"] = f"{rnd.randint(10, 90) * 1000}.00"
    if path[-1] == "LOSE" and deal_id % 2:
        uf["UF_CRM_LOSS"] = rnd.choice(list(LOSS_REASONS))
    return uf


def _app_activities(deal_id: int, path: list[str], moved: datetime, now: datetime,
                    ) -> list[tuple[str, bool, datetime]]:
    """Activities a sales app created (REST_APP): a presentation done on the way for some
    deals, and a follow-up planned after some wins (no randomness: the stories above keep
    their draws)."""
    found: list[tuple[str, bool, datetime]] = []
    if deal_id % 5 == 1 and len(path) > 2:
        found.append(("presentation", True, min(moved, now) - timedelta(days=1)))
    if SEMANTIC[path[-1]] == "S" and deal_id % 3 == 0:
        found.append(("followup", False, now + timedelta(days=5)))
    return found


def sample_dataset(now: datetime, deals: int = 48) -> Dataset:
    """The "Volga Print" portal as of ``now``: a story per deal, deterministic."""
    rnd = random.Random(24)
    ref = _reference()
    companies = Table()
    contacts = Table()
    deal_table = Table()
    activities = Table()
    history = Table()
    start = now - timedelta(days=200)
    for company_id in range(1, 13):
        companies.put(company_row(company_id, f"Client {company_id} LLC", 1 + company_id % 4,
                                  start, rnd.choice(["", *SEGMENTS])))
    for contact_id in range(1, 25):
        contacts.put(contact_row(contact_id, 1 + contact_id % 12, 1 + contact_id % 4, start))
    next_activity = 1
    next_history = 1
    for deal_id in range(1, deals + 1):
        owner = 1 + deal_id % 4
        created = start + timedelta(days=deal_id * 3, hours=deal_id % 7)
        path = _story(deal_id, rnd)
        moved = created
        stamps = []
        for step, stage in enumerate(path):
            at = created + timedelta(days=4 * step, minutes=deal_id)
            at = min(at, now - timedelta(hours=1))
            stamps.append(at)
            history.put(history_row(next_history, deal_id, stage, at, created=step == 0))
            next_history += 1
            moved = at
        uf = _story_fields(deal_id, path, rnd)
        company = 1 + deal_id % 12 if deal_id % 10 else None
        contact = 1 + deal_id % 24 if deal_id % 9 else None
        deal_table.put(deal_row(deal_id, title=f"Print order #{deal_id}", stage=path[-1],
                                owner=owner, company=company, contact=contact,
                                amount=rnd.randint(50, 900) * 1000.0, created=created,
                                modified=moved, moved=moved, uf=uf))
        for at in stamps[:-1]:  # some work done on the way
            if rnd.random() < 0.7:
                activities.put(activity_row(next_activity, deal=deal_id, owner=owner,
                                            kind=rnd.choice(["call", "meeting", "email"]),
                                            done=True, when=at + timedelta(hours=2)))
                next_activity += 1
        if SEMANTIC[path[-1]] == "P" and deal_id % 4:
            activities.put(activity_row(next_activity, deal=deal_id, owner=owner,
                                        kind=rnd.choice(["call", "meeting", "todo"]),
                                        done=False, when=now + timedelta(days=2 + deal_id % 5)))
            next_activity += 1
        for kind, done, when in _app_activities(deal_id, path, moved, now):
            activities.put(activity_row(next_activity, deal=deal_id, owner=owner, kind=kind,
                                        done=done, when=when))
            next_activity += 1
    return Dataset("Volga Print", ref["users"], ref["departments"], ref["categories"],
                   ref["statuses"], ref["fields"], deal_table, companies, contacts, activities,
                   history)


def scaled_dataset(deals: int = 100_000, *, now: datetime | None = None) -> Dataset:
    """Generated volume: companies = deals/4, contacts = deals/2, activities = 3 per deal,
    stage history = 2 rows per deal (created, then moved). Rows are built on demand."""
    now = now or datetime.now(UTC)
    ref = _reference()
    base = now - timedelta(days=400)
    n_companies, n_contacts = max(1, deals // 4), max(1, deals // 2)

    def stage_of(deal_id: int) -> str:
        return ("WON", "LOSE", "NEW", "PREPARATION", "UC_WORK")[deal_id % 5]

    def created_of(deal_id: int) -> datetime:
        return base + timedelta(seconds=deal_id * 300 % (300 * 86400))

    def deal(deal_id: int) -> dict[str, Any]:
        created = created_of(deal_id)
        moved = created + timedelta(days=3)
        return deal_row(deal_id, title=f"Deal {deal_id}", stage=stage_of(deal_id),
                        owner=1 + deal_id % 4, company=1 + deal_id % n_companies,
                        contact=1 + deal_id % n_contacts, amount=1000.0 + deal_id % 997,
                        created=created, modified=moved, moved=moved,
                        uf={"UF_CRM_LEAD_SRC": "41"} if deal_id % 2 else None)

    def company(company_id: int) -> dict[str, Any]:
        return company_row(company_id, f"Company {company_id}", 1 + company_id % 4, base,
                           "62")

    def contact(contact_id: int) -> dict[str, Any]:
        return contact_row(contact_id, 1 + contact_id % n_companies, 1 + contact_id % 4, base)

    def activity(activity_id: int) -> dict[str, Any]:
        deal_id = (activity_id - 1) // 3 + 1
        kind = ("call", "meeting", "email")[activity_id % 3]
        return activity_row(activity_id, deal=deal_id, kind=kind, done=activity_id % 3 != 1,
                            when=created_of(deal_id) + timedelta(days=1), owner=1 + deal_id % 4)

    def history(row_id: int) -> dict[str, Any]:
        deal_id = (row_id + 1) // 2
        created = created_of(deal_id)
        if row_id % 2:
            return history_row(row_id, deal_id, "NEW", created, created=True)
        stage = stage_of(deal_id)
        return history_row(row_id, deal_id, "PREPARATION" if stage == "NEW" else stage,
                           created + timedelta(days=3))

    return Dataset(
        f"scaled {deals}", ref["users"], ref["departments"], ref["categories"],
        ref["statuses"], ref["fields"],
        Table(size=deals, factory=deal), Table(size=n_companies, factory=company),
        Table(size=n_contacts, factory=contact),
        Table(size=3 * deals, factory=activity,
              by_owner=lambda d: [3 * d - 2, 3 * d - 1, 3 * d]),
        Table(size=2 * deals, factory=history, by_owner=lambda d: [2 * d - 1, 2 * d]),
    )
