# ruff: noqa: RUF001 - Russian text
"""What a drafted tenant file says to the consultant, in English and Russian (the tenant's
``language``). The evidence texts of the guesses stay as the matcher wrote them."""

from __future__ import annotations

#: The marker of an undecided line (``syncd check`` finds it; see ``todos.py``).
TODO = "TODO(syncd init)"

#: What the drafted file says, in the tenant's language (evidence texts stay as matched).
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "header": "Tenant {tenant}: drafted by `syncd init` on {day} from the {plugin} "
                  "account{source}.",
        "how": "Each mapping line says why it was chosen (evidence, confidence 0..1) and "
               "what else it could be.",
        "todo": "Lines marked " + TODO + " need a decision; `syncd check` lists them. See "
                "docs/onboarding.md.",
        "stages": "CRM pipeline -> CRM stage -> Sales Book stage ({targets}).",
        "no_pipelines": "the account lists no pipelines: map them by hand",
        "pipeline": "pipeline {id}, {n} stage(s)",
        "deals": "{total} deal(s), {open} open; ",
        "stage_todo": "{counts}map to a Sales Book stage, deferred or ignore; {hint}",
        "best": "best guess {target} ({confidence})",
        "reasons": "CRM loss reason -> catalogue key ({catalogue}).",
        "lost": "{n} lost deal(s); ",
        "reason_todo": "{used}map to a catalogue reason or ignore (unmapped, its deals are "
                       "reported as bad_loss_reason); {hint}",
        "kinds": "CRM activity type -> canonical kind ({kinds}); an unlisted type keeps its "
                 "own key.",
        "activities": "{n} activit(ies); ",
        "same_kind": "already a canonical kind",
        "kind_todo": "{used}{label}: which kind is it? {hint}",
        "fields": "Sales Book field key -> the CRM's field name (exact, case included).",
        "filled": "filled on {n} record(s); ",
        "values": "values",
        "field_todo": "the Sales Book needs this field as evidence; name the CRM field that "
                      "holds it ({hint}), or write null if the CRM has none (the report then "
                      "says which action is not audited)",
        "closest": "closest: {name} ({confidence})",
        "no_similar": "no field with a similar name",
        "alternatives": "; or: {names}",
        "optional": "not found ({why}; optional)",
        "no_teams": "Teams (optional, for manager karma): the CRM reports no manager "
                    "hierarchy.",
        "users": "Users: {users}",
        "writeback": "review the mapping and the first report before writing into the "
                     "client's CRM",
        "timezone_todo": "the client's timezone was not given: {timezone} assumed; day "
                         "limits count in it (an IANA name such as Europe/Moscow)",
    },
    "ru": {
        "header": "Клиент {tenant}: черновик `syncd init` от {day} по аккаунту {plugin}"
                  "{source}.",
        "how": "У каждой строки сопоставления указано, почему она выбрана (признаки, "
               "уверенность 0..1), и другие варианты.",
        "todo": "Строки с пометкой " + TODO + " требуют решения; `syncd check` их "
                "перечисляет. См. docs/onboarding.md.",
        "stages": "Воронка CRM -> этап CRM -> этап Sales Book ({targets}).",
        "no_pipelines": "в аккаунте нет воронок: сопоставьте вручную",
        "pipeline": "воронка {id}, этапов: {n}",
        "deals": "сделок: {total}, открытых: {open}; ",
        "stage_todo": "{counts}сопоставьте с этапом Sales Book, deferred или ignore; {hint}",
        "best": "лучший вариант {target} ({confidence})",
        "reasons": "Причина отказа CRM -> ключ каталога ({catalogue}).",
        "lost": "проигранных сделок: {n}; ",
        "reason_todo": "{used}сопоставьте с причиной из каталога или ignore (без "
                       "сопоставления сделки попадут в bad_loss_reason); {hint}",
        "kinds": "Тип дела CRM -> канонический вид ({kinds}); тип без строки остаётся "
                 "со своим ключом.",
        "activities": "дел: {n}; ",
        "same_kind": "уже канонический вид",
        "kind_todo": "{used}{label}: какой это вид? {hint}",
        "fields": "Ключ поля Sales Book -> название поля в CRM (точно, с учётом регистра).",
        "filled": "заполнено в записях: {n}; ",
        "values": "значения",
        "field_todo": "Книга продаж проверяет действие по этому полю; укажите поле CRM, в "
                      "котором оно хранится ({hint}), или null, если такого поля в CRM нет "
                      "(отчёт тогда скажет, какое действие не проверяется)",
        "closest": "ближайшее: {name} ({confidence})",
        "no_similar": "похожих полей нет",
        "alternatives": "; или: {names}",
        "optional": "не найдено ({why}; необязательное)",
        "no_teams": "Команды (необязательно, для кармы руководителя): CRM не сообщает "
                    "иерархию.",
        "users": "Пользователи: {users}",
        "writeback": "проверьте сопоставление и первый отчёт, прежде чем писать в CRM "
                     "клиента",
        "timezone_todo": "часовой пояс клиента не указан: принят {timezone}; по нему "
                         "считаются сроки в днях (имя IANA, например Europe/Moscow)",
    },
}

