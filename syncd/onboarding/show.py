"""``syncd inspect --format table``: the vocabulary with its usage, for a person."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from rich.console import Console

from syncd.onboarding import Vocabulary


def print_vocabulary(out: Console, found: Vocabulary) -> None:
    usage = found.usage
    inspection = found.inspection
    if usage is not None:
        out.print(f"{usage.deals} deal(s), {usage.activities} activit(ies), "
                  f"{usage.companies} compan(ies)", highlight=False)
    out.print("[bold]stages[/] (deals, open)")
    for pipeline in inspection.pipelines:
        out.print(f"  {pipeline.get('name')} ({pipeline.get('id')})", highlight=False)
        for stage in pipeline.get("stages") or []:
            stage_id = (str(pipeline.get("name")), str(stage.get("name")))
            counts = (f"{usage.stages.get(stage_id, 0):>6} "
                      f"{usage.open_stages.get(stage_id, 0):>6}"
                      if usage else "")
            semantics = f" [{stage['semantics']}]" if stage.get("semantics") else ""
            out.print(f"    {counts}  {stage.get('name')}{semantics}", highlight=False)
    out.print("[bold]loss reasons[/] (lost deals)")
    reasons = list(dict.fromkeys([*inspection.loss_reasons,
                                  *(usage.loss_reasons if usage else [])]))
    for reason in reasons:
        count = f"{usage.loss_reasons.get(reason, 0):>6}" if usage else ""
        out.print(f"    {count}  {reason}", highlight=False)
    out.print("[bold]activity types[/] (activities)")
    types = list(dict.fromkeys([*inspection.activity_types,
                                *(usage.activity_types if usage else [])]))
    for label in types:
        key = label.split(" (", 1)[0]
        count = f"{usage.activity_types.get(key, 0):>6}" if usage else ""
        out.print(f"    {count}  {label}", highlight=False)
    for entity, names in inspection.fields.items():
        out.print(f"[bold]{entity} fields[/] (records with a value; values)")
        filled: Mapping[str, int] = usage.filled.get(entity, {}) if usage else {}
        values: Mapping[str, Counter[str]] = usage.values.get(entity, {}) if usage else {}
        for name in names:
            count = f"{filled.get(name, 0):>6}" if usage else ""
            shown = values.get(name)
            listed = ("  = " + ", ".join(f"{v} {n}" for v, n in shown.most_common(8))
                      if shown else "")
            out.print(f"    {count}  {name}{listed}", highlight=False)
    out.print("[bold]users[/] (deals owned)")
    for user in inspection.users:
        count = f"{usage.owners.get(str(user.get('id')), 0):>6}" if usage else ""
        out.print(f"    {count}  {user.get('name')} ({user.get('id')})", highlight=False)
