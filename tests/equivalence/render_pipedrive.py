"""The logical client as a Pipedrive account (API v2 entities, v1 users/activity types/flows).

Shapes follow the Pipedrive API reference (https://developers.pipedrive.com/docs/api/v1 and
/v2): custom fields under ``custom_fields`` by 40-hex key, enum options as ints, monetary
fields as ``{value, currency}``, v2 times RFC 3339 ``Z``; a lost deal keeps the stage it
was lost from and a free-text ``lost_reason``; the deal's history is ``/v1/deals/{id}/flow``.
The server is the project's fake (``syncd_fakes.pipedrive.server``), fed this dataset.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd_fakes.pipedrive.sample import Dataset, Table, flow_row, v1_time, v2_time

from . import dataset as L
from .ids import IdMap

PIPELINES = {L.PIPELINE: 1, L.PARTNERS: 2}
STAGE_IDS = {key: i for i, key in enumerate(L.STAGES, start=1)}
STAGE_IDS[L.PARTNER_STAGE[0]] = 20
USER_IDS = {u.key: i for i, u in enumerate(L.USERS, start=1)}
SOURCES = {label: 11 + i for i, label in enumerate(L.LEAD_SOURCES)}
SEGMENTS = {label: 31 + i for i, label in enumerate(L.SEGMENTS)}
TENDER = {True: 21, False: 22}
#: Old wins the account has archived: Pipedrive lists them only under /api/v2/deals/archived
#: (https://developers.pipedrive.com/docs/api/v1/Deals#getArchivedDeals, since 2025-07-15).
ARCHIVED = {"D38"}


def key(name: str) -> str:
    return hashlib.sha1(f"volga:{name}".encode()).hexdigest()


DEAL_FIELDS = (("Источник", "enum", {v: k for k, v in SOURCES.items()}),
               ("Прибыль", "monetary", None), ("Тендер", "enum", {21: "Да", 22: "Нет"}),
               ("Ссылка на смету", "varchar", None), ("Номер договора", "varchar", None),
               ("Отложить до", "date", None), ("Причина отсрочки", "varchar", None))
ORG_FIELDS = (("Сегмент", "enum", {v: k for k, v in SEGMENTS.items()}),
              ("NPS", "double", None), ("Инциденты", "double", None))


def _defs(standard: tuple[str, ...], custom: tuple[tuple[str, str, Any], ...],
          ) -> list[dict[str, Any]]:
    defs = [{"field_code": code, "field_name": code.replace("_", " ").title(),
             "field_type": "varchar", "is_custom_field": False, "options": None,
             "is_optional_response_field": False, "subfields": None} for code in standard]
    for name, kind, options in custom:
        defs.append({"field_code": key(name), "field_name": name, "field_type": kind,
                     "is_custom_field": True, "is_optional_response_field": False,
                     "options": [{"id": i, "label": t} for i, t in options.items()]
                     if options else None,
                     "subfields": [{"field_code": "currency", "field_name": "Currency"}]
                     if kind == "monetary" else None})
    return defs


def render(deals: list[L.Deal]) -> tuple[Dataset, IdMap]:
    created = L.NOW - timedelta(days=700)
    ids = IdMap()
    data = Dataset(
        name="Волга Консалтинг: клиент", now=L.NOW.astimezone(UTC),
        users=[{"id": USER_IDS[u.key], "name": u.name, "email": u.email, "active_flag": True,
                "is_admin": 1 if u.key == "anna" else 0, "role_id": 1,
                "timezone_name": "Europe/Moscow", "default_currency": "RUB",
                "created": v1_time(created), "modified": v1_time(created)} for u in L.USERS],
        pipelines=[{"id": pid, "name": name, "order_nr": pid, "is_deleted": False,
                    "is_deal_probability_enabled": False, "add_time": v2_time(created),
                    "update_time": v2_time(created)} for name, pid in PIPELINES.items()],
        stages=[{"id": sid, "order_nr": sid, "name": L.STAGES.get(k, L.PARTNER_STAGE[1]),
                 "pipeline_id": 2 if k == L.PARTNER_STAGE[0] else 1, "is_deleted": False,
                 "deal_probability": 100, "is_deal_rot_enabled": False,
                 "days_to_rotten": None, "add_time": v2_time(created),
                 "update_time": v2_time(created)} for k, sid in STAGE_IDS.items()],
        activity_types=[{"id": i, "order_nr": i, "name": L.KIND_TITLES[k], "key_string": k,
                         "icon_key": k, "active_flag": True, "is_custom_flag": False,
                         "color": None, "add_time": v1_time(created),
                         "update_time": v1_time(created)}
                        for i, k in enumerate(L.KINDS, start=1)],
        deal_fields=_defs(("title", "value", "currency", "owner_id", "org_id", "person_id",
                           "pipeline_id", "stage_id", "status", "lost_reason", "add_time",
                           "won_time", "lost_time"), DEAL_FIELDS),
        organization_fields=_defs(("name", "owner_id", "add_time"), ORG_FIELDS),
        person_fields=_defs(("name", "org_id", "emails", "owner_id"), ()),
        organizations=Table(), persons=Table(), deals=Table(), activities=Table(),
    )
    for user in L.USERS:
        ids.add("user", USER_IDS[user.key], user.key)
    for n, company in enumerate(L.COMPANIES, start=201):
        ids.add("company", n, company.key)
        data.organizations.rows[n] = {
            "id": n, "name": company.name, "owner_id": USER_IDS[company.owner],
            "add_time": v2_time(created), "update_time": v2_time(created),
            "is_deleted": False, "visible_to": 3, "label_ids": [], "address": None,
            "custom_fields": {key("Сегмент"): SEGMENTS[company.segment],
                              key("NPS"): float(company.nps) if company.nps is not None
                              else None,
                              key("Инциденты"): float(company.incidents)
                              if company.incidents else None}}
    for contact, company in L.contacts(deals).items():
        person = 300 + int(contact[1:])
        org = ids.crm("company", company)
        data.persons.rows[person] = {
            "id": person, "name": L.contact_name(contact), "owner_id": 2, "org_id": int(org),
            "add_time": v2_time(created), "update_time": v2_time(created),
            "is_deleted": False, "visible_to": 3,
            "emails": [{"value": f"{contact.lower()}@client.example", "primary": True,
                        "label": "work"}], "phones": [], "custom_fields": {}}
    flow_id = 900_000
    for deal in deals:
        deal_id = 100 + int(deal.key[1:])
        ids.add("deal", deal_id, deal.key)
        data.deals.rows[deal_id] = _deal(deal_id, deal, ids)
        rows = [flow_row(flow_id, deal_id, key="add_time", old=None,
                         new=v1_time(deal.created), at=deal.created,
                         user=USER_IDS[deal.owner])]
        for (old, _), (new, at) in zip(deal.path, deal.path[1:], strict=False):
            flow_id += 1
            rows.append(flow_row(flow_id, deal_id, key="stage_id", old=str(STAGE_IDS[old]),
                                 new=str(STAGE_IDS[new]), at=at, user=USER_IDS[deal.owner],
                                 labels=(L.STAGES[old], L.STAGES[new])))
        if deal.closed is not None:
            flow_id += 1
            rows.append(flow_row(flow_id, deal_id, key="status", old="open",
                                 new=deal.outcome, at=deal.closed, user=USER_IDS[deal.owner]))
        flow_id += 1
        data.flows[deal_id] = rows
        for activity in deal.activities:
            activity_id = 5000 + int(activity.key[1:])
            data.activities.rows[activity_id] = _activity(activity_id, activity, deal_id, ids)
    return data, ids


def _deal(deal_id: int, deal: L.Deal, ids: IdMap) -> dict[str, Any]:
    closed = v2_time(deal.closed) if deal.closed else None
    person = 300 + int(deal.contact[1:]) if deal.contact else None
    fields = {
        key("Источник"): SOURCES[deal.lead_source] if deal.lead_source else None,
        key("Прибыль"): {"value": deal.profit, "currency": "RUB"}
        if deal.profit is not None else None,
        key("Тендер"): TENDER[deal.tender],
        key("Ссылка на смету"): deal.estimate_link,
        key("Номер договора"): deal.contract_number,
        key("Отложить до"): deal.snooze_until.isoformat() if deal.snooze_until else None,
        key("Причина отсрочки"): deal.snooze_reason,
    }
    return {
        "id": deal_id, "title": deal.title, "owner_id": USER_IDS[deal.owner],
        "person_id": person, "org_id": int(ids.crm("company", deal.company)),
        "pipeline_id": PIPELINES[deal.pipeline], "stage_id": STAGE_IDS[deal.stage],
        "value": deal.value, "currency": "RUB", "status": deal.outcome,
        "add_time": v2_time(deal.created), "update_time": v2_time(deal.updated),
        "stage_change_time": v2_time(deal.moved),
        "won_time": closed if deal.outcome == "won" else None,
        "lost_time": closed if deal.outcome == "lost" else None,
        "close_time": closed, "lost_reason": deal.reason if deal.outcome == "lost" else None,
        "probability": None, "visible_to": 3, "label_ids": [],
        "expected_close_date": None, "is_deleted": False,
        "is_archived": deal.key in ARCHIVED,
        "archive_time": v2_time(deal.closed + timedelta(days=90))
        if deal.key in ARCHIVED and deal.closed else None,
        "origin": "ManuallyCreated", "channel": None,
        "custom_fields": fields,
    }


def _activity(activity_id: int, activity: L.Activity, deal_id: int,
              ids: IdMap) -> dict[str, Any]:
    when: datetime = activity.at.astimezone(UTC)
    return {
        "id": activity_id, "subject": activity.subject, "type": activity.kind,
        "owner_id": USER_IDS[activity.owner], "deal_id": deal_id,
        "org_id": int(ids.crm("company", activity.company)), "person_id": None,
        "participants": [], "done": activity.done,
        "due_date": when.date().isoformat(), "due_time": when.strftime("%H:%M"),
        "duration": "00:30", "busy": True, "add_time": v2_time(activity.created),
        "update_time": v2_time(max(activity.created, activity.at) if activity.done
                               else activity.created),
        "marked_as_done_time": v2_time(activity.at) if activity.done else None,
        "note": activity.note, "is_deleted": False, "location": None,
        "public_description": None,
    }
