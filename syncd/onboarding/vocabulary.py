# ruff: noqa: RUF001, RUF002 - Russian words are the point of this module
"""What words mean: normalised text, Russian transliteration, and the synonyms (Russian and
English) of every Sales Book stage, loss reason, activity kind, canonical field and export
column that ``syncd init`` knows.

Pure data and pure functions: no I/O. The synonym lists are phrases as a consultant meets
them in Russian-speaking clients' CRMs (amoCRM/Bitrix24 defaults, Pipedrive templates) and
in their exports; each list is keyed by the Sales Book key it points to, so a new Sales Book
that reuses a key (``negotiation``, ``price``) is matched with no change here.
"""

from __future__ import annotations

import re

#: Russian -> Latin, after GOST 7.79-2000 system B / the passport style most people type
#: ("Бриф" -> "brif", "Смета" -> "smeta"); enough to compare a transliterated title.
_TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
    "з": "z", "и": "i", "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
    "я": "ya",
}
_NON_WORD = re.compile(r"[^\w]+|_+")


def normalise(text: str) -> str:
    """Case-folded words separated by one space; ``ё`` is ``е``; punctuation and ``_`` are
    spaces ("Closed - won" -> "closed won", "UC_PRICE" -> "uc price")."""
    text = str(text).casefold().replace("ё", "е").replace("№", " номер ")  # "№" is "number"
    return " ".join(_NON_WORD.sub(" ", text).split())


def transliterate(text: str) -> str:
    """The normalised text with Cyrillic letters spelled in Latin ones."""
    return "".join(_TRANSLIT.get(ch, ch) for ch in normalise(text))


def has_cyrillic(text: str) -> bool:
    return any("а" <= ch <= "я" or ch == "ё" for ch in str(text).casefold())


#: Sales Book stage keys (of every shipped Sales Book) -> phrases that name that stage.
STAGE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "briefing": ("briefing", "brief", "бриф", "брифинг", "discovery", "qualification",
                 "квалификация", "выявление потребностей", "первичная встреча",
                 "первичный контакт", "first contact", "initial contact"),
    "estimate": ("estimate", "estimation", "смета", "оценка", "расчет", "расчет стоимости",
                 "коммерческое предложение", "кп", "proposal", "quote"),
    "negotiation": ("negotiation", "negotiations", "awaiting decision", "decision",
                    "переговоры", "ожидание решения", "принятие решения", "согласование",
                    "принимают решение", "making decision",
                    "decision making"),
    "contract": ("contract", "contract signing", "договор", "подписание договора",
                 "заключение договора", "согласование договора", "contract sent"),
    "in_progress": ("in progress", "в работе", "выполнение", "исполнение", "реализация",
                    "производство", "delivery", "project", "проект"),
    "final_invoice": ("final invoice", "invoice", "счет", "закрывающие документы", "акты",
                      "финальный счет", "оплата", "payment"),
    "warranty": ("warranty", "гарантия", "гарантийное обслуживание", "support",
                 "поддержка", "сопровождение"),
    "deferred": ("deferred", "on hold", "hold", "postponed", "paused", "отложено",
                 "отложена", "отложенные", "отложенная сделка", "пауза", "заморожено",
                 "frozen", "later", "позже"),
    "contact": ("contact", "first contact", "new lead", "lead", "new", "первичный контакт",
                "контакт", "новый лид", "новая заявка", "заявка", "новая сделка"),
    "needs_discovery": ("needs discovery", "needs", "discovery", "qualification",
                        "выявление потребностей", "потребности", "квалификация"),
    "presentation": ("presentation", "demo", "презентация", "демонстрация", "демо"),
    "objections": ("objections", "objection handling", "возражения",
                   "работа с возражениями"),
    "closing": ("closing", "close", "invoice sent", "закрытие", "закрытие сделки",
                "счет выставлен", "выставлен счет", "оплата"),
    "inbound_acquisition": ("inbound", "inbound acquisition", "incoming", "new request",
                            "входящая заявка", "входящие заявки", "входящий лид",
                            "новая заявка", "заявка"),
    "outbound_acquisition": ("outbound", "outbound acquisition", "cold call", "cold calls",
                             "prospecting", "холодный звонок", "холодные звонки",
                             "исходящие", "прозвон"),
    "deal_discussion": ("deal discussion", "discussion", "negotiation", "proposal",
                        "обсуждение", "переговоры", "кп", "коммерческое предложение"),
    "deal_implementation": ("deal implementation", "implementation", "contract", "invoice",
                            "исполнение", "реализация", "в работе", "договор", "счет"),
    "client_development": ("client development", "account development", "upsell",
                           "up sell", "cross sell", "repeat sale", "развитие клиента",
                           "повторная продажа", "допродажа", "кросс продажа"),
}

#: Stage or status names that say the deal is closed: won, or lost (failure).
WON_WORDS = ("won", "closed won", "deal won", "success", "successful", "успешно",
             "успешно реализовано", "сделка успешна", "выиграна", "выиграно", "оплачено",
             "сделка заключена")
LOST_WORDS = ("lost", "closed lost", "deal lost", "failed", "deal failed", "failure",
              "закрыто и не реализовано", "не реализовано", "сделка провалена", "провал",
              "проиграна", "проиграно", "отказ", "анализ причины провала",
              "analysis of failure")

#: Stage names of a CRM's inbox of unsorted requests (amoCRM's "Неразобранное" status):
#: not a sales stage, a lead there has not been taken into work yet.
INBOX_WORDS = ("incoming leads", "unsorted", "неразобранное", "входящие лиды")

#: Loss-reason catalogue keys -> phrases a CRM uses for that reason.
REASON_SYNONYMS: dict[str, tuple[str, ...]] = {
    "price": ("price", "price too high", "too expensive", "expensive", "high price",
              "дорого", "высокая цена", "цена", "не устроила цена", "дорогая"),
    "competitor": ("competitor", "chose competitor", "chose a competitor",
                   "went to competitor", "конкурент", "ушел к конкурентам",
                   "выбрали конкурента", "купили у конкурента"),
    "no_budget": ("no budget", "budget", "нет бюджета", "бюджет", "нет денег"),
    "no_need": ("no need", "no real need", "not interested", "нет потребности",
                "нет необходимости", "не актуально", "неактуально", "не интересно"),
    "no_response": ("no response", "no answer", "stopped responding", "ghosted",
                    "client stopped responding", "не отвечает", "пропал", "нет ответа",
                    "перестал отвечать", "не выходит на связь"),
    "timing": ("timing", "bad timing", "not now", "later", "не сейчас", "позже",
               "не время", "сроки", "отложили"),
    "not_decision_maker": ("no access to the decision maker", "not decision maker",
                           "no decision maker", "нет выхода на лпр", "не лпр", "лпр"),
    "delivery_failed": ("could not deliver", "delivery failed", "no stock", "out of stock",
                        "не смогли поставить", "нет в наличии", "логистика"),
    "client_closed": ("client closed", "company closed", "merged", "компания закрылась",
                      "ликвидирована", "закрылись"),
}
#: Loss reasons that say "not a real deal": left out of the audit (``ignore``).
IGNORE_REASON_WORDS = ("duplicate", "дубль", "дубликат", "spam", "спам", "test", "тест",
                       "ошибка", "mistake", "created by mistake")

#: Canonical activity kinds -> words found in CRM activity type keys and names.
KIND_SYNONYMS: dict[str, tuple[str, ...]] = {
    "call": ("call", "calls", "phone", "звонок", "звонки", "call in", "call out", "follow up",
             "связаться", "voximplant", "telephony", "телефония", "calling"),
    "meeting": ("meeting", "встреча", "lunch", "обед", "visit", "визит", "demo", "event",
                "calendar event", "calendar", "событие", "презентация"),
    "email": ("email", "e mail", "mail", "письмо", "почта", "эл почта"),
    "task": ("task", "задача", "deadline", "срок", "todo", "to do", "дело", "reminder",
             "напоминание"),
    "note": ("note", "заметка", "comment", "комментарий", "примечание"),
}
#: Bitrix24 ``TYPE_ID`` numbers (crm.enum.activitytype): 1 meeting, 2 call, 3 task, 4 email.
BITRIX_TYPE_IDS = {"1": "meeting", "2": "call", "3": "task", "4": "email"}

#: Canonical field keys -> (phrases, expected types). Types are the CRM's own type names
#: folded into number/date/enum/text (see ``matching.type_family``).
FIELD_SYNONYMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lead_source": (("lead source", "source", "источник", "источник лида",
                     "источник сделки", "источник заявки", "откуда узнал", "канал привлечения",
                     "utm source"), ("enum", "text")),
    "profit": (("profit", "margin", "gross profit", "прибыль", "маржа", "маржинальность"),
               ("number",)),
    "is_tender": (("tender", "is tender", "тендер", "тендерная сделка"),
                  ("enum", "text", "number")),
    "public_incident": (("public incident", "incident", "публичный инцидент", "инцидент"),
                        ("enum", "text", "number")),
    "snooze_until": (("snooze until", "remind on", "postponed until", "отложено до",
                      "отложить до", "дата напоминания", "вернуться"), ("date",)),
    "snooze_reason": (("snooze reason", "postpone reason", "причина отсрочки",
                       "причина откладывания"), ("text", "enum")),
    "estimate_link": (("estimate link", "estimate", "offer link", "proposal link", "offer",
                       "смета", "ссылка на смету", "ссылка на кп", "кп",
                       "коммерческое предложение"), ("text",)),
    "contract_number": (("contract number", "contract no", "contract", "номер договора",
                         "договор", "договор номер"), ("text", "number")),
    "invoice_number": (("invoice number", "invoice no", "invoice", "номер счета", "счет",
                        "счет номер"), ("text", "number")),
    "segment": (("segment", "сегмент", "industry", "отрасль", "тип клиента", "category",
                 "категория клиента"), ("enum", "text")),
    "nps": (("nps", "net promoter score", "индекс лояльности"), ("number", "enum")),
    "public_incidents": (("public incidents", "incidents", "публичные инциденты",
                          "инциденты"), ("number",)),
    "channel": (("channel", "sales channel", "канал", "канал продаж"), ("enum", "text")),
    "sub_channel": (("sub channel", "subchannel", "подканал"), ("enum", "text")),
    "region": (("region", "регион", "область", "territory"), ("enum", "text")),
}

#: Export tabs -> standard columns -> header phrases (syncd_gsheets.settings.COLUMNS).
TAB_SYNONYMS: dict[str, tuple[str, ...]] = {
    "deals": ("deals", "deal", "сделки", "сделка", "leads", "лиды"),
    "companies": ("companies", "company", "organizations", "компании", "организации"),
    "contacts": ("contacts", "persons", "people", "контакты"),
    "activities": ("activities", "tasks", "дела", "задачи", "активности"),
    "stage_history": ("stage history", "история этапов", "история"),
    "users": ("users", "managers", "пользователи", "сотрудники", "менеджеры"),
}
COLUMN_SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "deals": {
        "id": ("id", "deal id", "id сделки", "ид", "номер сделки", "номер"),
        "title": ("deal", "title", "name", "deal name", "название", "сделка",
                  "название сделки"),
        "status": ("status", "статус", "состояние"),
        "pipeline": ("pipeline", "funnel", "воронка", "направление"),
        "stage": ("stage", "этап", "стадия", "этап сделки"),
        "owner": ("owner", "responsible", "manager", "ответственный", "менеджер"),
        "company": ("client", "company", "organization", "компания", "клиент",
                    "организация"),
        "contact": ("contact", "contact person", "контакт", "контактное лицо"),
        "value": ("amount", "value", "sum", "budget", "сумма", "бюджет"),
        "currency": ("currency", "валюта"),
        "created_at": ("created", "created at", "date created", "дата создания", "создана"),
        "updated_at": ("updated", "updated at", "modified", "дата изменения", "изменена"),
        "stage_changed_at": ("stage changed", "stage changed at", "дата смены этапа",
                             "этап изменен", "изменение этапа", "смена этапа"),
        "won_at": ("won on", "won at", "won", "won date", "дата выигрыша",
                   "дата успешного закрытия"),
        "lost_at": ("lost on", "lost at", "lost date", "дата проигрыша", "дата отказа"),
        "lost_reason": ("loss reason", "lost reason", "reason", "причина отказа",
                        "причина проигрыша", "причина провала"),
    },
    "companies": {
        "id": ("id", "company id", "id компании", "ид"),
        "name": ("name", "company", "название", "компания", "наименование"),
        "owner": ("owner", "responsible", "ответственный", "менеджер"),
        "created_at": ("created", "дата создания"),
    },
    "contacts": {
        "id": ("id", "contact id", "id контакта", "ид"),
        "name": ("name", "full name", "имя", "фио", "контакт"),
        "company": ("company", "client", "organization", "компания", "организация"),
        "owner": ("owner", "responsible", "ответственный"),
    },
    "activities": {
        "id": ("id", "activity id", "ид", "номер"),
        "type": ("type", "kind", "тип", "вид"),
        "subject": ("subject", "title", "тема", "название", "описание"),
        "done": ("done", "completed", "выполнено", "завершено", "выполнена"),
        "due": ("date", "due", "due date", "срок", "дата", "крайний срок"),
        "done_at": ("done at", "completed at", "дата выполнения"),
        "deal": ("deal id", "deal", "сделка", "id сделки"),
        "company": ("company", "company id", "компания"),
        "contact": ("contact", "contact id", "контакт"),
        "owner": ("owner", "responsible", "ответственный"),
    },
}
