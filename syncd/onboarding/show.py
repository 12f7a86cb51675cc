"""``syncd inspect --format table``: the vocabulary with its usage, for a person, in the
reader's language (``--lang``, else the tenant file's ``language``; docs/i18n.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from rich.console import Console
from rich.markup import escape

from syncd.i18n import N_, translator
from syncd.onboarding import Vocabulary

#: The heading of each entity's fields (any other entity: "{entity} fields").
FIELD_HEADINGS = {"deal": N_("deal fields"), "company": N_("company fields"),
                  "contact": N_("contact fields"), "activity": N_("activity fields")}


def _heading(out: Console, title: str, counted: str) -> None:
    out.print(f"[bold]{escape(title)}[/] {escape(counted)}", highlight=False)


def print_vocabulary(out: Console, found: Vocabulary, lang: str = "en") -> None:
    t = translator(lang, "cli")
    usage = found.usage
    inspection = found.inspection
    if usage is not None:
        out.print(t.gettext("deals: {deals}, activities: {activities}, companies: {companies}")
                  .format(deals=usage.deals, activities=usage.activities,
                          companies=usage.companies), highlight=False)
    _heading(out, t.gettext("stages"), t.gettext("(deals, open)"))
    for pipeline in inspection.pipelines:
        out.print(f"  {pipeline.get('name')} ({pipeline.get('id')})", highlight=False)
        for stage in pipeline.get("stages") or []:
            stage_id = (str(pipeline.get("name")), str(stage.get("name")))
            counts = (f"{usage.stages.get(stage_id, 0):>6} "
                      f"{usage.open_stages.get(stage_id, 0):>6}"
                      if usage else "")
            semantics = f" [{stage['semantics']}]" if stage.get("semantics") else ""
            out.print(f"    {counts}  {stage.get('name')}{escape(semantics)}", highlight=False)
    _heading(out, t.gettext("loss reasons"), t.gettext("(lost deals)"))
    reasons = list(dict.fromkeys([*inspection.loss_reasons,
                                  *(usage.loss_reasons if usage else [])]))
    for reason in reasons:
        count = f"{usage.loss_reasons.get(reason, 0):>6}" if usage else ""
        out.print(f"    {count}  {reason}", highlight=False)
    _heading(out, t.gettext("activity types"), t.gettext("(activities)"))
    types = list(dict.fromkeys([*inspection.activity_types,
                                *(usage.activity_types if usage else [])]))
    for label in types:
        key = label.split(" (", 1)[0]
        count = f"{usage.activity_types.get(key, 0):>6}" if usage else ""
        out.print(f"    {count}  {label}", highlight=False)
    for entity, names in inspection.fields.items():
        title = (t.gettext(FIELD_HEADINGS[entity]) if entity in FIELD_HEADINGS
                 else t.gettext("{entity} fields").format(entity=entity))
        _heading(out, title,
                 t.gettext("(records with a value; values)"))
        filled: Mapping[str, int] = usage.filled.get(entity, {}) if usage else {}
        values: Mapping[str, Counter[str]] = usage.values.get(entity, {}) if usage else {}
        for name in names:
            count = f"{filled.get(name, 0):>6}" if usage else ""
            shown = values.get(name)
            listed = ("  = " + ", ".join(f"{v} {n}" for v, n in shown.most_common(8))
                      if shown else "")
            out.print(f"    {count}  {name}{listed}", highlight=False)
    _heading(out, t.gettext("users"), t.gettext("(deals owned)"))
    for user in inspection.users:
        count = f"{usage.owners.get(str(user.get('id')), 0):>6}" if usage else ""
        out.print(f"    {count}  {user.get('name')} ({user.get('id')})", highlight=False)
