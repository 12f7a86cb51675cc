"""The logical client as an amoCRM account (API v4).

Shapes follow amoCRM's reference (https://www.amocrm.ru/developers/content/crm_platform/
leads-api, .../events-and-notes, .../custom-fields, .../tasks-api): a closed lead sits in
status 142 ("Успешно реализовано") or 143 ("Закрыто и не реализовано") of its pipeline, a lost
lead points at the loss reason catalogue by ``loss_reason_id`` (null when none was given),
custom fields are ``custom_fields_values`` (``null`` without values; select values carry
``enum_id``; numeric values are text; dates are Unix seconds), done calls are call notes
(``call_in``/``call_out``) and everything else is a task (type 1 "Связаться", 2 "Встреча",
and this account's custom types); the history is the events log (``lead_added``,
``lead_status_changed``). The server is the project's fake (``syncd_fakes.amocrm.server``).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from syncd_fakes.amocrm.sample import (
    Dataset,
    Table,
    cf,
    event,
    status_value,
    unix,
    values_list,
)

from . import dataset as L
from .ids import IdMap

WON, LOST = 142, 143
PIPELINES = {L.PIPELINE: 3001, L.PARTNERS: 3002}
STATUS = {key: 40000 + i for i, key in enumerate(L.STAGES, start=1)}
STATUS[L.PARTNER_STAGE[0]] = 40100
USER_IDS = {u.key: 7_000_000 + i for i, u in enumerate(L.USERS, start=1)}
#: task types: 1 and 2 are amoCRM's own; 3 and 4 this account's custom ones.
TASK_TYPES = ((3, "Письмо"), (4, "Задача"))
TASK_TYPE_OF = {"call": 1, "meeting": 2, "email": 3, "task": 4}
REASONS = (*L.LOSS_REASONS, L.UNKNOWN_REASON)
REASON_IDS = {name: 9100 + i for i, name in enumerate(REASONS, start=1)}
SOURCES = {900 + i: label for i, label in enumerate(L.LEAD_SOURCES, start=1)}
TENDER = {911: "Да", 912: "Нет"}
SEGMENTS = {920 + i: label for i, label in enumerate(L.SEGMENTS, start=1)}
LEAD_FIELDS = ((601, "Источник", "select", SOURCES), (602, "Прибыль", "numeric", None),
               (603, "Тендер", "select", TENDER), (604, "Ссылка на смету", "url", None),
               (605, "Номер договора", "text", None), (606, "Отложить до", "date", None),
               (607, "Причина отсрочки", "text", None))
COMPANY_FIELDS = ((701, "Сегмент", "select", SEGMENTS), (702, "NPS", "numeric", None),
                  (703, "Инциденты", "numeric", None))


def _definitions(fields: tuple[tuple[int, str, str, dict[int, str] | None], ...],
                 ) -> list[dict[str, Any]]:
    return [{"id": fid, "name": name, "type": kind, "code": None, "sort": fid,
             "is_api_only": False, "is_deletable": True,
             "enums": [{"id": i, "value": v, "sort": i} for i, v in options.items()]
             if options else None} for fid, name, kind, options in fields]


def _option(options: dict[int, str], label: str) -> int:
    return next(i for i, text in options.items() if text == label)


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def render(deals: list[L.Deal]) -> tuple[Dataset, IdMap]:
    ids = IdMap()
    created = unix(L.NOW - timedelta(days=700))
    pipelines = []
    for name, pipeline_id in PIPELINES.items():
        keys = [k for k in STATUS if (k == L.PARTNER_STAGE[0]) == (name == L.PARTNERS)]
        statuses = [{"id": 50000 + pipeline_id, "name": "Неразобранное", "sort": 10, "type": 1,
                     "pipeline_id": pipeline_id, "is_editable": False}]
        statuses += [{"id": STATUS[k], "name": L.STAGES.get(k, L.PARTNER_STAGE[1]),
                      "sort": 20 + 10 * n, "type": 0, "pipeline_id": pipeline_id,
                      "is_editable": True} for n, k in enumerate(keys)]
        statuses += [{"id": WON, "name": "Успешно реализовано", "sort": 10000, "type": 0,
                      "pipeline_id": pipeline_id, "is_editable": False},
                     {"id": LOST, "name": "Закрыто и не реализовано", "sort": 11000,
                      "type": 0, "pipeline_id": pipeline_id, "is_editable": False}]
        pipelines.append({"id": pipeline_id, "name": name, "sort": pipeline_id,
                          "is_main": name == L.PIPELINE, "is_unsorted_on": True,
                          "is_archive": False, "account_id": 31337,
                          "_embedded": {"statuses": statuses}})
    data = Dataset(
        name="Волга Консалтинг: клиент (amoCRM)", now=L.NOW.astimezone(UTC),
        users=[{"id": USER_IDS[u.key], "name": u.name, "email": u.email, "lang": "ru",
                "rights": {"is_active": True, "is_admin": u.key == "anna"}} for u in L.USERS],
        pipelines=pipelines,
        loss_reasons=[{"id": REASON_IDS[n], "name": n, "sort": i, "created_at": created,
                       "updated_at": created} for i, n in enumerate(REASONS)],
        task_types=[{"id": i, "name": n, "color": None, "icon_id": None}
                    for i, n in TASK_TYPES],
        custom_fields={"leads": _definitions(LEAD_FIELDS),
                       "companies": _definitions(COMPANY_FIELDS), "contacts": []},
        leads=Table(), companies=Table(), contacts=Table(), tasks=Table(),
        notes={"leads": Table(), "contacts": Table(), "companies": Table()},
    )
    for user in L.USERS:
        ids.add("user", USER_IDS[user.key], user.key)
    for n, company in enumerate(L.COMPANIES, start=1):
        company_id = 20_000_000 + n
        ids.add("company", company_id, company.key)
        data.companies.rows[company_id] = {
            "id": company_id, "name": company.name,
            "responsible_user_id": USER_IDS[company.owner], "group_id": 0,
            "created_by": 0, "updated_by": 0, "created_at": created, "updated_at": created,
            "closest_task_at": None, "is_deleted": False, "account_id": 31337,
            "custom_fields_values": values_list(
                cf(701, "Сегмент", "select", [_option(SEGMENTS, company.segment)], SEGMENTS),
                cf(702, "NPS", "numeric", [str(company.nps)] if company.nps is not None
                   else None),
                cf(703, "Инциденты", "numeric", [str(company.incidents)]
                   if company.incidents else None)),
            "_embedded": {"tags": []}}
    for contact, company in L.contacts(deals).items():
        contact_id = 30_000_000 + int(contact[1:])
        data.contacts.rows[contact_id] = {
            "id": contact_id, "name": L.contact_name(contact), "first_name": "",
            "last_name": "", "responsible_user_id": USER_IDS["boris"], "created_at": created,
            "updated_at": created, "is_deleted": False, "account_id": 31337,
            "custom_fields_values": None,
            "_embedded": {"tags": [], "companies": [{"id": int(ids.crm("company", company))}]}}
    for deal in deals:
        lead_id = 10_000_000 + int(deal.key[1:])
        ids.add("deal", lead_id, deal.key)
        lead = _lead(lead_id, deal, ids)
        data.leads.rows[lead_id] = lead
        data.events.extend(_events(lead, deal))
        for activity in deal.activities:
            _activity(data, activity, lead_id)
    data.events.sort(key=lambda e: (e["created_at"], e["id"]))
    return data, ids


def _lead(lead_id: int, deal: L.Deal, ids: IdMap) -> dict[str, Any]:
    status = {"won": WON, "lost": LOST}.get(deal.outcome, STATUS[deal.stage])
    reason_id = REASON_IDS[deal.reason] if deal.outcome == "lost" and deal.reason else None
    snooze = (unix(datetime.combine(deal.snooze_until, time(), tzinfo=L.TZ))
              if deal.snooze_until else None)
    return {
        "id": lead_id, "name": deal.title, "price": int(deal.value),
        "responsible_user_id": USER_IDS[deal.owner], "group_id": 0, "status_id": status,
        "pipeline_id": PIPELINES[deal.pipeline], "loss_reason_id": reason_id,
        "created_by": USER_IDS[deal.owner], "updated_by": USER_IDS[deal.owner],
        "created_at": unix(deal.created), "updated_at": unix(deal.updated),
        "closed_at": unix(deal.closed), "closest_task_at": None, "is_deleted": False,
        "score": None, "account_id": 31337,
        "custom_fields_values": values_list(
            cf(601, "Источник", "select", [_option(SOURCES, deal.lead_source)]
               if deal.lead_source else None, SOURCES),
            cf(602, "Прибыль", "numeric", [_number(deal.profit)]
               if deal.profit is not None else None),
            cf(603, "Тендер", "select", [911 if deal.tender else 912], TENDER),
            cf(604, "Ссылка на смету", "url", [deal.estimate_link]
               if deal.estimate_link else None),
            cf(605, "Номер договора", "text", [deal.contract_number]
               if deal.contract_number else None),
            cf(606, "Отложить до", "date", [snooze] if snooze else None),
            cf(607, "Причина отсрочки", "text", [deal.snooze_reason]
               if deal.snooze_reason else None)),
        "_embedded": {"tags": [], "companies": [{"id": int(ids.crm("company", deal.company))}],
                      "contacts": [{"id": 30_000_000 + int(deal.contact[1:]), "is_main": True}]
                      if deal.contact else []},
    }


def _events(lead: dict[str, Any], deal: L.Deal) -> list[dict[str, Any]]:
    pipeline = lead["pipeline_id"]
    user = lead["responsible_user_id"]
    moves: list[tuple[int, datetime]] = [(STATUS[s], at) for s, at in deal.path]
    if deal.closed is not None:
        moves.append((WON if deal.outcome == "won" else LOST, deal.closed))
    out = []
    for n, (status, at) in enumerate(moves):
        ident = f"01{lead['id']:010d}{n:04d}"
        if n == 0:
            out.append(event(ident, "lead_added", lead["id"], unix(at) or 0, user, [],
                             status_value(pipeline, status)))
        else:
            out.append(event(ident, "lead_status_changed", lead["id"], unix(at) or 0, user,
                             status_value(pipeline, moves[n - 1][0]),
                             status_value(pipeline, status)))
    return out


def _activity(data: Dataset, activity: L.Activity, lead_id: int) -> None:
    """A done call is a call note on its lead; everything else a task."""
    activity_id = 40_000_000 + int(activity.key[1:])
    owner = USER_IDS[activity.owner]
    if activity.kind == "call" and activity.done:
        at = unix(activity.at)
        data.notes["leads"].rows[activity_id] = {
            "id": activity_id, "entity_id": lead_id, "created_by": owner,
            "updated_by": owner, "created_at": at, "updated_at": at,
            "responsible_user_id": owner, "group_id": 0,
            "note_type": "call_out" if int(activity.key[1:]) % 2 else "call_in",
            "params": {"uniq": f"call-{activity.key}", "duration": 300, "source": "Телефония",
                       "link": "", "phone": "+7 495 5550000", "result": activity.subject},
            "account_id": 31337}
        return
    text = activity.subject + (f"\n{activity.note}" if activity.note else "")
    data.tasks.rows[activity_id] = {
        "id": activity_id, "created_by": owner, "updated_by": owner,
        "created_at": unix(activity.created),
        "updated_at": unix(activity.at if activity.done else activity.created),
        "responsible_user_id": owner, "group_id": 0, "entity_id": lead_id,
        "entity_type": "leads", "is_completed": activity.done,
        "task_type_id": TASK_TYPE_OF[activity.kind], "text": text, "duration": 1800,
        "complete_till": unix(activity.at),
        "result": {"text": "Выполнено"} if activity.done else [], "account_id": 31337}
