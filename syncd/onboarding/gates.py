# ruff: noqa: RUF001 - Russian text
"""The CRM's own gates against the Sales Book: ``syncd drift``, ``plan`` and ``apply``.

A CRM lets its admin configure some of what the Sales Book also defines: how long a deal
may sit in a stage before the CRM flags it (Pipedrive's "rotting"), the loss-reason
catalogue a lost deal must pick from (amoCRM), fields required at a stage. ``drift`` lists
where the CRM's settings differ from the Sales Book; ``plan`` is the part of it the
connector can change through the API; ``apply`` makes exactly those changes, records each
one with its value before and after (``gate_changes``) and can revert them from that
record. The plan is computed from the live settings every time, so a second ``apply``
finds nothing to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from syncd.config import Tenant
from syncd.connector import Connector, GateChange, Gates
from syncd.errors import ConfigError
from syncd.i18n import translator
from syncd.store import Database, GateChangeRow


@dataclass(frozen=True)
class Drift:
    """One difference. ``change`` is what would remove it; ``automatic`` says whether this
    connector can make that change, else ``manual`` says what to do by hand."""

    what: str
    change: GateChange | None = None
    automatic: bool = False
    manual: str = ""

    def as_dict(self) -> dict[str, Any]:
        change = self.change
        return {"what": self.what, "automatic": self.automatic, "manual": self.manual or None,
                "change": None if change is None else {
                    "kind": change.kind, "target": change.target, "label": change.label,
                    "before": change.before, "after": change.after}}


def _ru(tenant: Tenant) -> bool:
    return tenant.config.language == "ru"


def _rotting(tenant: Tenant, gates: Gates) -> list[Drift]:
    stages = {s.key: s for s in tenant.book.stages}
    mapping = tenant.config.mapping.stages
    found = []
    for gate in gates.stages:
        key = mapping.get(gate.pipeline, {}).get(gate.name)
        stage = stages.get(key or "")
        if stage is None or stage.max_days is None:
            continue
        if not gate.rotting_supported:
            continue  # the CRM has no such setting: nothing drifts
        if gate.rotting_days == stage.max_days:
            continue
        label = f"{gate.pipeline} / {gate.name}"
        before = "off" if gate.rotting_days is None else f"{gate.rotting_days} d"
        change = GateChange("stage_rotting", gate.id, label, gate.rotting_days, stage.max_days)
        found.append(Drift(
            (f"этап {label!r}: «сделка гниёт» через {before}, по Книге продаж "
             f"{stage.max_days} дн. (этап {stage.key})") if _ru(tenant) else
            (f"stage {label!r}: deals rot after {before}, the Sales Book allows "
             f"{stage.max_days} day(s) at {stage.key}"),
            change, "stage_rotting" in gates.writable))
    return found


def _semantics(tenant: Tenant, gates: Gates) -> list[Drift]:
    """A CRM stage that closes the deal (Bitrix24 S/F) mapped onto an active Sales Book
    stage: its deals would be audited as open work."""
    mapping = tenant.config.mapping.stages
    found = []
    for gate in gates.stages:
        key = mapping.get(gate.pipeline, {}).get(gate.name)
        if gate.semantics in {"S", "F"} and key and tenant.book.has_stage(key):
            label = f"{gate.pipeline} / {gate.name}"
            found.append(Drift(
                f"этап {label!r} в CRM закрывает сделку ({gate.semantics}), но сопоставлен "
                f"с рабочим этапом {key}" if _ru(tenant) else
                f"stage {label!r} closes the deal in the CRM ({gate.semantics}) but is "
                f"mapped onto the working stage {key}",
                manual=f"mapping.stages.{gate.pipeline}.{gate.name}: ignore"))
    return found


def _reasons(tenant: Tenant, gates: Gates) -> list[Drift]:
    if gates.loss_reasons is None:
        return [Drift(
            "список причин отказа не читается через API CRM: сверьте его с каталогом Книги "
            "продаж вручную" if _ru(tenant) else
            "the CRM's API does not list its loss reasons: compare them with the Sales "
            "Book's catalogue by hand",
            manual="CRM settings > loss reasons")]
    catalogue = tenant.book.passive.lost.reasons
    mapped = {text.strip().casefold(): key
              for text, key in tenant.config.mapping.loss_reasons.items()}
    covered: set[str] = set()
    found = []
    for crm_id, name in gates.loss_reasons.items():
        folded = name.strip().casefold()
        key = mapped.get(folded) or next(
            (k for k, r in catalogue.items() if folded in {k.casefold(), r.title.casefold()}),
            None)
        if key is not None:
            covered.add(key)
        elif folded not in mapped:  # mapped to null/ignore on purpose is no drift
            found.append(Drift(
                f"причина отказа CRM {name!r} (id {crm_id}) не из каталога Книги продаж: "
                "сопоставьте её в mapping.loss_reasons или удалите в CRM" if _ru(tenant) else
                f"CRM loss reason {name!r} (id {crm_id}) is not in the Sales Book catalogue: "
                "map it under mapping.loss_reasons or remove it in the CRM",
                manual="mapping.loss_reasons or CRM settings"))
    for key, reason in catalogue.items():
        if key in covered:
            continue
        change = GateChange("loss_reason_add", "", reason.title, None, reason.title)
        writable = "loss_reason_add" in gates.writable
        found.append(Drift(
            f"в CRM нет причины отказа {reason.title!r} ({key}) из каталога Книги продаж"
            if _ru(tenant) else
            f"the CRM has no loss reason {reason.title!r} ({key}) of the Sales Book catalogue",
            change, writable, "" if writable else "CRM settings > loss reasons"))
    return found


def _later_stages(tenant: Tenant, action_key: str) -> set[str]:
    """Sales Book stages after the first stage that asks for ``action_key``: a deal there
    must already carry the action's evidence."""
    keys = [s.key for s in tenant.book.stages]
    first = next((i for i, s in enumerate(tenant.book.stages) if action_key in s.actions),
                 None)
    return set() if first is None else set(keys[first + 1:])


def _required(tenant: Tenant, gates: Gates) -> list[Drift]:
    """A field that evidences a Sales Book action should be required to enter every CRM
    stage mapped after the action's stage, where the CRM can say so (``deal_fields``)."""
    mapping = tenant.config.mapping.stages
    wanted: dict[str, set[str]] = {}
    found = []
    for action_key, action in tenant.book.actions.items():
        name = tenant.config.mapping.fields.deal.get(action.evidence.field or "")
        if not name:
            continue
        if name not in gates.deal_fields:
            found.append(Drift(
                f"действие {action_key!r} подтверждается полем {name!r}: сделайте его "
                "обязательным на следующих этапах в настройках воронки CRM" if _ru(tenant)
                else f"action {action_key!r} is evidenced by field {name!r}: make it required "
                "at the later stages in the CRM's pipeline settings",
                manual="CRM pipeline settings (no API)"))
            continue
        later = _later_stages(tenant, action_key)
        wanted.setdefault(name, set()).update(
            g.id for g in gates.stages if mapping.get(g.pipeline, {}).get(g.name) in later)
    for name, stage_ids in wanted.items():
        before = sorted(g.id for g in gates.stages if name in g.required_fields)
        after = sorted(set(before) | stage_ids)
        if after == before:
            continue
        count = len(after) - len(before)
        found.append(Drift(
            f"поле {name!r} не обязательно на {count} этапах CRM после этапа действия"
            if _ru(tenant) else
            f"field {name!r} is not required at {count} CRM stage(s) after its action's stage",
            GateChange("field_required", gates.deal_fields[name], name, before, after),
            "field_required" in gates.writable, "" if "field_required" in gates.writable
            else "CRM pipeline settings"))
    return found


def drift(tenant: Tenant, gates: Gates) -> list[Drift]:
    """Every difference between the CRM's gates and the Sales Book (pure)."""
    return (_rotting(tenant, gates) + _semantics(tenant, gates) + _reasons(tenant, gates)
            + _required(tenant, gates))


def read_drift(tenant: Tenant, connector: Connector) -> list[Drift]:
    """``drift`` of the live settings; a connector that cannot read them is an error."""
    try:
        gates = connector.read_gates()
    except NotImplementedError as exc:
        raise ConfigError(no_gates_text(tenant)) from exc
    return drift(tenant, gates)


def no_gates_text(tenant: Tenant) -> str:
    """Why ``drift``/``plan``/``apply`` do not apply to this tenant (exit 2, docs/cli.md)."""
    t = translator(tenant.config.language, "cli")
    if not tenant.connector_class.complete_vocabulary:  # an export or a sheet: records only
        return t.gettext(
            "tenant {tenant} is read from an export or a sheet ({plugin}): it holds deals, "
            "not the CRM's own settings (stage rotting days, the loss-reason list, required "
            "fields), so there are no CRM gates to compare with the Sales Book and nothing "
            "to change. Connect the client's CRM through its API (pipedrive, amocrm, "
            "bitrix24) to use drift, plan and apply; until then set those settings by hand "
            "(docs/onboarding.md, 'Make the CRM enforce the Sales Book')."
        ).format(tenant=tenant.key, plugin=tenant.config.plugin)
    return t.gettext(
        "tenant {tenant}: the {plugin} connector does not read the CRM's own settings, so "
        "drift, plan and apply do not apply to it (docs/onboarding.md, 'Make the CRM enforce "
        "the Sales Book')."
    ).format(tenant=tenant.key, plugin=tenant.config.plugin)


def plan(drifts: Sequence[Drift]) -> list[GateChange]:
    """The changes this connector can make to remove the drift, in order."""
    return [d.change for d in drifts if d.automatic and d.change is not None]


def apply(db: Database, tenant: Tenant, connector: Connector, changes: Sequence[GateChange],
          now: datetime | None = None) -> list[GateChangeRow]:
    """Make ``changes`` one by one, recording each as soon as the CRM accepted it (a
    failure stops there: what was made is recorded and can be reverted)."""
    when = now or datetime.now(UTC)
    rows = []
    for change in changes:
        made = connector.apply_gate(change)
        with db.session() as session:
            row = GateChangeRow(tenant_key=tenant.key, plugin=tenant.config.plugin,
                                kind=made.kind, target=made.target, label=made.label,
                                before=made.before, after=made.after, applied_at=when)
            session.add(row)
            session.flush()
            session.expunge(row)
        rows.append(row)
    return rows


def recorded(db: Database, tenant_key: str) -> list[GateChangeRow]:
    with db.session() as session:
        rows = list(session.scalars(select(GateChangeRow).where(
            GateChangeRow.tenant_key == tenant_key).order_by(GateChangeRow.id)))
        session.expunge_all()
    return rows


def to_revert(db: Database, tenant_key: str, change_id: int | None) -> list[GateChangeRow]:
    """The recorded changes ``--revert ID`` (that one) or ``--last`` (every change of the
    last ``apply`` not yet reverted) names, newest first."""
    rows = [r for r in recorded(db, tenant_key) if r.reverted_at is None]
    if change_id is not None:
        rows = [r for r in rows if r.id == change_id]
        if not rows:
            message = (f"tenant {tenant_key}: no applied, unreverted gate change {change_id} "
                       "(see `syncd apply --list`)")
            raise ConfigError(message)
    elif rows:
        last = max(r.applied_at for r in rows)
        rows = [r for r in rows if r.applied_at == last]
    return sorted(rows, key=lambda r: r.id, reverse=True)


def inverse(row: GateChangeRow) -> GateChange:
    change = GateChange(row.kind, row.target, row.label, row.before, row.after)
    if row.kind in {"stage_rotting", "field_required"}:
        return replace(change, before=row.after, after=row.before)
    if row.kind == "loss_reason_add":
        return GateChange("loss_reason_delete", row.target, row.label, row.after, None)
    message = f"gate change {row.id} ({row.kind}) cannot be reverted automatically"
    raise ConfigError(message)


def revert(db: Database, connector: Connector, rows: Sequence[GateChangeRow],
           now: datetime | None = None) -> list[GateChange]:
    """Undo ``rows`` in the CRM and mark each reverted as soon as the CRM accepted it."""
    when = now or datetime.now(UTC)
    done = []
    for row in rows:
        change = inverse(row)
        connector.apply_gate(change)
        with db.session() as session:
            stored = session.get(GateChangeRow, row.id)
            if stored is not None:
                stored.reverted_at = when
        done.append(change)
    return done
