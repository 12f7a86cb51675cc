"""The logical client as a Bitrix24 portal (REST, legacy ``crm.*`` lists).

Shapes follow the Bitrix24 REST reference (https://apidocs.bitrix24.com/api-reference/crm/
deals/crm-deal-list.html, .../crm/status/crm-status-list.html, .../crm/timeline/activities/
activity-base/crm-activity-list.html, .../crm/stagehistory/index.html): every scalar of a
legacy list is a string, datetimes carry the portal's offset (+03:00); a closed deal sits in
a success (``S``) or failure (``F``) stage of its category, a failure stage may be named
after a reason ("Дорого"), and the "Причина отказа" enumeration field holds a reason when
the manager gave one (empty otherwise); ``crm.stagehistory.list`` gives the moves.

Activities are what a real portal holds: telephony calls (TYPE_ID 2, PROVIDER_ID
VOXIMPLANT_CALL), meetings (1, CRM_MEETING), e-mails (4, CRM_EMAIL), universal to-dos
(6, CRM_TODO) — and activities created by a REST app (TYPE_ID 6, PROVIDER_ID REST_APP) whose
PROVIDER_TYPE_ID says what they are: PRESENTATION (a meeting with the client), REMINDER
(a reminder task), FOLLOWUP (a follow-up call) — "PROVIDER_ID ... для специального типа
значение должно быть равно 'REST_APP'; PROVIDER_TYPE_ID ... разработчик может указывать
произвольные идентификаторы типа" (https://dev.1c-bitrix.ru/rest_help/crm/rest_activity/
application_embedding/activity_application.php). The server is
``syncd_fakes.bitrix24.server``.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from syncd_fakes.bitrix24.sample import Dataset, Table, portal_time

from . import dataset as L
from .ids import IdMap

STATUS_IDS = {"briefing": "NEW", "estimate": "PREPARATION", "negotiation": "PREPAYMENT_INVOICE",
              "contract": "EXECUTING", "deferred": "UC_DEFER", "in_progress": "UC_WORK",
              "final_invoice": "FINAL_INVOICE", "warranty": "UC_WARRANTY",
              L.PARTNER_STAGE[0]: "C1:NEW"}
#: (STATUS_ID, category, name, semantics), in pipeline order.
STATUSES = (*((STATUS_IDS[k], 0, title, None) for k, title in L.STAGES.items()),
            ("WON", 0, "Сделка успешна", "S"), ("LOSE", 0, "Сделка провалена", "F"),
            ("UC_PRICE", 0, "Дорого", "F"),
            ("C1:NEW", 1, L.PARTNER_STAGE[1], None), ("C1:WON", 1, "Партнёр подписан", "S"),
            ("C1:LOSE", 1, "Партнёр отказался", "F"))
SEMANTIC = {s[0]: (s[3] or "P") for s in STATUSES}
USER_IDS = {u.key: i for i, u in enumerate(L.USERS, start=1)}
SOURCES = {str(41 + i): label for i, label in enumerate(L.LEAD_SOURCES)}
REASONS = {str(51 + i): label for i, label in enumerate((*L.LOSS_REASONS, L.UNKNOWN_REASON))}
#: The portal's segment list speaks English codes ("BANKING"), the other CRMs Russian words:
#: ``mapping.segments`` maps both onto the same segment keys.
SEGMENT_CODES = {"Банки": "BANKING", "Розница": "RETAIL", "Госсектор": "PUBLIC SECTOR",
                 "Производство": "MANUFACTURING", "Логистика": "LOGISTICS"}
SEGMENTS = {str(61 + i): SEGMENT_CODES[label] for i, label in enumerate(L.SEGMENTS)}
#: A lost deal whose manager left "Причина отказа" empty and dropped it into the failure
#: stage named "Дорого": the reason field is empty, so the deal has no reason (issue 12.4).
REASON_BY_STAGE = {"D42": "UC_PRICE"}
#: kind -> (TYPE_ID, PROVIDER_ID, PROVIDER_TYPE_ID) of the CRM's own activities.
OWN = {"call": ("2", "VOXIMPLANT_CALL", "CALL"), "meeting": ("1", "CRM_MEETING", "MEETING"),
       "email": ("4", "CRM_EMAIL", "EMAIL"), "task": ("6", "CRM_TODO", "TODO")}
APP = {"presentation": "PRESENTATION", "reminder": "REMINDER", "followup": "FOLLOWUP"}


def _uf(label: str, kind: str, options: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "isRequired": False, "isReadOnly": False,
                            "isMultiple": False, "title": label, "formLabel": label,
                            "listLabel": label, "filterLabel": label}
    if options:
        spec["items"] = [{"ID": k, "VALUE": v} for k, v in options.items()]
    return spec


def _std(title: str, kind: str = "string") -> dict[str, Any]:
    return {"type": kind, "isRequired": False, "isReadOnly": False, "isMultiple": False,
            "title": title}


def fields() -> dict[str, dict[str, dict[str, Any]]]:
    common = {"ID": _std("ID", "integer"), "ASSIGNED_BY_ID": _std("Ответственный", "user"),
              "DATE_CREATE": _std("Дата создания", "datetime"),
              "DATE_MODIFY": _std("Дата изменения", "datetime")}
    return {
        "deal": {**common, "TITLE": _std("Название"), "STAGE_ID": _std("Стадия", "crm_status"),
                 "CATEGORY_ID": _std("Воронка", "crm_category"),
                 "OPPORTUNITY": _std("Сумма", "double"),
                 "UF_CRM_LEAD_SRC": _uf("Источник", "enumeration", SOURCES),
                 "UF_CRM_PROFIT": _uf("Прибыль", "double"),
                 "UF_CRM_TENDER": _uf("Тендер", "boolean"),
                 "UF_CRM_LOSS": _uf("Причина отказа", "enumeration", REASONS),
                 "UF_CRM_SNOOZE": _uf("Отложить до", "date"),
                 "UF_CRM_SNOOZE_WHY": _uf("Причина отсрочки", "string"),
                 "UF_CRM_ESTIMATE": _uf("Ссылка на смету", "url"),
                 "UF_CRM_CONTRACT": _uf("Номер договора", "string")},
        "company": {**common, "TITLE": _std("Название компании"),
                    "UF_CRM_SEGMENT": _uf("Сегмент", "enumeration", SEGMENTS),
                    "UF_CRM_NPS": _uf("NPS", "double"),
                    "UF_CRM_INCIDENTS": _uf("Инциденты", "integer")},
        "contact": {**common, "NAME": _std("Имя"), "LAST_NAME": _std("Фамилия"),
                    "COMPANY_ID": _std("Компания", "crm_company")},
    }


def _key(options: dict[str, str], label: str) -> str:
    return next(k for k, v in options.items() if v == label)


def render(deals: list[L.Deal]) -> tuple[Dataset, IdMap]:
    ids = IdMap()
    created = L.NOW - timedelta(days=700)
    users = [{"ID": str(USER_IDS[u.key]), "ACTIVE": True, "NAME": u.first,
              "LAST_NAME": u.last, "EMAIL": u.email, "UF_DEPARTMENT": [1]} for u in L.USERS]
    departments = [{"ID": "1", "NAME": "Отдел продаж", "SORT": "500", "UF_HEAD": "1"}]
    categories = [{"id": 0, "name": L.PIPELINE, "sort": 100, "entityTypeId": 2,
                   "isDefault": "Y"},
                  {"id": 1, "name": L.PARTNERS, "sort": 200, "entityTypeId": 2,
                   "isDefault": "N"}]
    statuses = []
    for sort, (status_id, category, name, semantics) in enumerate(STATUSES):
        statuses.append({
            "ID": str(100 + sort), "ENTITY_ID": "DEAL_STAGE" if category == 0
            else f"DEAL_STAGE_{category}", "STATUS_ID": status_id, "NAME": name,
            "NAME_INIT": name, "SORT": str(10 * (sort + 1)), "SYSTEM": "N",
            "CATEGORY_ID": str(category), "COLOR": "#39A8EF", "SEMANTICS": semantics,
            "EXTRA": {"SEMANTICS": {None: "process", "S": "success", "F": "failure"}[semantics],
                      "COLOR": "#39A8EF"}})
    data = Dataset("Волга Консалтинг: клиент (Bitrix24)", users, departments, categories,
                   statuses, fields(), Table(), Table(), Table(), Table(), Table())
    for user in L.USERS:
        ids.add("user", USER_IDS[user.key], user.key)
    for n, company in enumerate(L.COMPANIES, start=1):
        ids.add("company", n, company.key)
        data.companies.put({
            "ID": str(n), "TITLE": company.name, "COMPANY_TYPE": "CUSTOMER",
            "INDUSTRY": "OTHER", "CURRENCY_ID": "RUB",
            "ASSIGNED_BY_ID": str(USER_IDS[company.owner]), "CREATED_BY_ID": "1",
            "DATE_CREATE": portal_time(created), "DATE_MODIFY": portal_time(created),
            "UF_CRM_SEGMENT": _key(SEGMENTS, SEGMENT_CODES[company.segment]),
            "UF_CRM_NPS": str(company.nps) if company.nps is not None else "",
            "UF_CRM_INCIDENTS": str(company.incidents) if company.incidents else ""})
    for contact, company in L.contacts(deals).items():
        first, last = L.contact_name(contact).split()
        contact_id = int(contact[1:])
        data.contacts.put({
            "ID": str(contact_id), "NAME": first, "SECOND_NAME": None, "LAST_NAME": last,
            "POST": "Директор", "COMPANY_ID": ids.crm("company", company),
            "ASSIGNED_BY_ID": "2", "DATE_CREATE": portal_time(created),
            "DATE_MODIFY": portal_time(created), "SOURCE_ID": "WEB", "HAS_EMAIL": "Y",
            "HAS_PHONE": "N"})
    history_id = 1
    for deal in deals:
        deal_id = int(deal.key[1:])
        ids.add("deal", deal_id, deal.key)
        final = _final_stage(deal)
        data.deals.put(_deal(deal_id, deal, final, ids))
        steps = [(STATUS_IDS[s], at) for s, at in deal.path]
        if deal.closed is not None:
            steps.append((final, deal.closed))
        for n, (stage, at) in enumerate(steps):
            semantic = SEMANTIC[stage]
            data.history.put({"ID": history_id, "TYPE_ID": 1 if n == 0 else
                              (2 if semantic == "P" else 3), "OWNER_ID": deal_id,
                              "CREATED_TIME": portal_time(at),
                              "CATEGORY_ID": 1 if stage.startswith("C1:") else 0,
                              "STAGE_SEMANTIC_ID": semantic, "STAGE_ID": stage})
            history_id += 1
        for activity in deal.activities:
            data.activities.put(_activity(activity, deal_id))
    return data, ids


def _final_stage(deal: L.Deal) -> str:
    if deal.outcome == "won":
        return "WON"
    if deal.outcome == "lost":
        return REASON_BY_STAGE.get(deal.key, "LOSE")
    return STATUS_IDS[deal.stage]


def _deal(deal_id: int, deal: L.Deal, final: str, ids: IdMap) -> dict[str, Any]:
    semantic = SEMANTIC[final]
    moved = deal.closed or deal.moved
    owner = str(USER_IDS[deal.owner])
    reason = ""
    if deal.outcome == "lost" and deal.reason and deal.key not in REASON_BY_STAGE:
        reason = _key(REASONS, deal.reason)
    snooze = (portal_time(datetime.combine(deal.snooze_until, time(), tzinfo=L.TZ))
              if deal.snooze_until else "")
    return {
        "ID": str(deal_id), "TITLE": deal.title, "TYPE_ID": "SALE",
        "CATEGORY_ID": "1" if final.startswith("C1:") else "0", "STAGE_ID": final,
        "STAGE_SEMANTIC_ID": semantic, "IS_NEW": "N", "PROBABILITY": None,
        "CURRENCY_ID": "RUB", "OPPORTUNITY": f"{deal.value:.2f}", "IS_MANUAL_OPPORTUNITY": "N",
        "TAX_VALUE": "0.00", "COMPANY_ID": ids.crm("company", deal.company),
        "CONTACT_ID": str(int(deal.contact[1:])) if deal.contact else None,
        "BEGINDATE": portal_time(deal.created), "CLOSEDATE": portal_time(moved),
        "OPENED": "Y", "CLOSED": "N" if semantic == "P" else "Y", "ASSIGNED_BY_ID": owner,
        "CREATED_BY_ID": owner, "MODIFY_BY_ID": owner, "MOVED_BY_ID": owner,
        "DATE_CREATE": portal_time(deal.created), "DATE_MODIFY": portal_time(deal.updated),
        "MOVED_TIME": portal_time(moved), "SOURCE_ID": "WEB",
        "LAST_ACTIVITY_TIME": portal_time(deal.updated),
        "UF_CRM_LEAD_SRC": _key(SOURCES, deal.lead_source) if deal.lead_source else "",
        "UF_CRM_PROFIT": f"{deal.profit:.2f}" if deal.profit is not None else "",
        "UF_CRM_TENDER": "1" if deal.tender else "0", "UF_CRM_LOSS": reason,
        "UF_CRM_SNOOZE": snooze, "UF_CRM_SNOOZE_WHY": deal.snooze_reason or "",
        "UF_CRM_ESTIMATE": deal.estimate_link or "",
        "UF_CRM_CONTRACT": deal.contract_number or "",
    }


def _activity(activity: L.Activity, deal_id: int) -> dict[str, Any]:
    type_id, provider, provider_type = OWN[activity.kind]
    if activity.app:
        type_id, provider, provider_type = "6", "REST_APP", APP[activity.app]
    owner = str(USER_IDS[activity.owner])
    return {
        "ID": str(int(activity.key[1:])), "OWNER_ID": str(deal_id), "OWNER_TYPE_ID": "2",
        "TYPE_ID": type_id, "PROVIDER_ID": provider, "PROVIDER_TYPE_ID": provider_type,
        "SUBJECT": activity.subject, "COMPLETED": "Y" if activity.done else "N",
        "STATUS": "2" if activity.done else "1", "RESPONSIBLE_ID": owner,
        "AUTHOR_ID": owner, "PRIORITY": "2", "DIRECTION": "2",
        "START_TIME": portal_time(activity.at), "END_TIME": portal_time(activity.at),
        "DEADLINE": portal_time(activity.at), "CREATED": portal_time(activity.created),
        "LAST_UPDATED": portal_time(activity.at if activity.done else activity.created),
        "DESCRIPTION": activity.note, "DESCRIPTION_TYPE": "1",
    }
