"""``syncd check --online``: the mapping against the live account (or the export file).

Every mapped pipeline, stage, loss reason, activity type and field must exist in the
account, with "did you mean" for near misses; CRM stages that nothing maps onto are
listed with their deal counts; and the mapping's outcome is previewed: deals per Sales
Book stage and the share of deals in unmapped stages. The account is read once through the
connector (``usage``), nothing is stored.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from syncd.config import Settings, TenantConfig
from syncd.errors import ConfigError, ConfigProblem, SourceMappingError, SyncdError
from syncd.fieldcheck import closest, field_problems
from syncd.i18n import Text, translator
from syncd.onboarding import Vocabulary, read_vocabulary
from syncd.onboarding.connect import tenant_account
from syncd.onboarding.matching import split_type
from syncd.plugins import ConnectorRegistry
from syncd.salesbook import read_yaml
from syncd.store.db import Database


@dataclass
class Preview:
    """What the mapping makes of the account's deals (open and closed)."""

    tenant: str
    deals: int = 0
    per_stage: Counter[str] = field(default_factory=Counter)  # Sales Book key -> deals
    unmapped: int = 0
    ignored: int = 0

    def line(self, lang: str = "en") -> str:
        t = translator(lang, "cli")
        share = self.unmapped / self.deals if self.deals else 0.0
        stages = ", ".join(f"{k} {n}" for k, n in self.per_stage.items())
        return t.ngettext(
            "{tenant}: {n} deal: {stages}; ignored {ignored}; in unmapped stages {unmapped} "
            "({share})",
            "{tenant}: {n} deals: {stages}; ignored {ignored}; in unmapped stages {unmapped} "
            "({share})", self.deals).format(
            tenant=self.tenant, n=self.deals, stages=stages or t.gettext("none mapped"),
            ignored=self.ignored, unmapped=self.unmapped, share=t.percent(share))


def _hint(name: str, known: list[str]) -> Text:
    near = closest(name, known)
    if near:
        return Text("did you mean {names}?", names=" / ".join(repr(n) for n in near))
    return Text("known: {names}", names=", ".join(known) or "-")


def kind_covers(mapped: str, crm_type: str) -> bool:
    """True when the mapping key ``mapped`` applies to the CRM's activity type key: the
    same key, or a prefix of it by whole ``:`` parts (Bitrix24's provider-aware keys
    ``kind:PROVIDER_ID:PROVIDER_TYPE_ID`` are matched by their longest mapped prefix, as
    ``syncd.mapping.activity_kind`` does)."""
    return crm_type == mapped or crm_type.startswith(mapped + ":")


def _names_problems(config: TenantConfig, found: Vocabulary, file: str,
                    ) -> list[ConfigProblem]:
    """Mapped loss reasons and activity types the account never uses (warnings: a
    catalogue text may simply not have been used yet)."""
    problems = []
    inspection, usage, mapping = found.inspection, found.usage, config.mapping
    reasons = list(inspection.loss_reasons) + list(usage.loss_reasons if usage else [])
    for reason in mapping.loss_reasons:
        if reason not in reasons:
            problems.append(ConfigProblem(
                file, f"mapping.loss_reasons.{reason}",
                Text("no lost deal and no loss-reason list of the account has this text; "
                     "{hint}", hint=_hint(reason, reasons)), severity="warning"))
    types = [split_type(t)[0] for t in inspection.activity_types]
    types += list(inspection.activity_kinds) + list(usage.activity_types if usage else [])
    for crm_type in mapping.activity_types:
        if not any(kind_covers(crm_type, t) for t in types):
            problems.append(ConfigProblem(
                file, f"mapping.activity_types.{crm_type}",
                Text("the account has no activity type with this key; {hint}",
                     hint=_hint(crm_type, types)), severity="warning"))
    return problems


def compare(config: TenantConfig, found: Vocabulary, file: str, tenant: str, *,
            check_fields: bool = True, complete: bool = True,
            ) -> tuple[list[ConfigProblem], Preview]:
    """Problems of ``config``'s mapping against ``found``, and the preview (pure).
    ``check_fields`` False leaves the field names to ``fieldcheck.offline_problems``;
    ``complete`` False (an export: only the stages its deals use are known) makes a mapped
    stage or pipeline it lacks a warning."""
    missing = "error" if complete else "warning"
    problems: list[ConfigProblem] = []
    inspection, usage = found.inspection, found.usage
    stages = {str(p.get("name")): [str(s.get("name")) for s in p.get("stages") or []]
              for p in inspection.pipelines}
    mapping = config.mapping
    for pipeline, targets in mapping.stages.items():
        if pipeline not in stages:
            problems.append(ConfigProblem(file, f"mapping.stages.{pipeline}",
                                          Text("the account has no pipeline {pipeline!r}; {hint}",
                                               pipeline=pipeline,
                                               hint=_hint(pipeline, list(stages))), missing))
            continue
        for stage in targets:
            if stage not in stages[pipeline]:
                problems.append(ConfigProblem(
                    file, f"mapping.stages.{pipeline}.{stage}",
                    Text("pipeline {pipeline!r} has no stage {stage!r}; {hint}",
                         pipeline=pipeline, stage=stage, hint=_hint(stage, stages[pipeline])),
                    missing))
    preview = Preview(tenant)
    for pipeline, names in stages.items():
        for stage in names:
            count = usage.stage_count(pipeline, stage) if usage else 0
            mapped = mapping.stages.get(pipeline, {})
            if stage not in mapped:
                preview.unmapped += count
                problems.append(ConfigProblem(
                    file, f"mapping.stages.{pipeline}",
                    Text("CRM stage {stage!r} ({count} deal(s)) is mapped onto nothing: its "
                         "open deals are reported as unmapped_stage", stage=stage, count=count),
                    severity="warning"))
            elif mapped[stage] is None:
                preview.ignored += count
            else:
                preview.per_stage[mapped[stage] or ""] += count
            preview.deals += count
    problems += _names_problems(config, found, file)
    if check_fields:
        problems += field_problems(config, inspection.fields, file,
                                   source=f"the {config.plugin} account")
    return problems, preview


def online_problems(settings: Settings, registry: ConnectorRegistry,
                    database: Database | None = None, *, local_only: bool = False,
                    ) -> tuple[list[ConfigProblem], list[Preview]]:
    """``compare`` for every tenant whose file is a valid tenant (others are reported by
    the plain check); a tenant whose account cannot be read is an error naming it.
    ``local_only`` (the plain ``syncd check``): only tenants read from a local export (a
    connector with ``offline_fields``), whose file is opened without any network; one that
    cannot be read is left to ``fieldcheck.offline_problems`` (a warning)."""
    problems: list[ConfigProblem] = []
    previews: list[Preview] = []
    for key, path in settings.tenant_files().items():
        try:
            config = TenantConfig.model_validate(read_yaml(Path(path)))
        except (ConfigError, ValidationError):
            continue
        try:
            account = tenant_account(settings, key, registry)
            if local_only and not hasattr(account.connector_class, "offline_fields"):
                continue
            found = read_vocabulary(account.connector(settings, database))
        except ConfigError as exc:
            if not local_only:
                problems.extend(exc.problems)
            continue
        except SourceMappingError as exc:  # an export's: fieldcheck.offline_problems says it
            if not hasattr(account.connector_class, "offline_fields"):
                problems.append(ConfigProblem(str(path), exc.key, str(exc)))
            continue
        except (SyncdError, OSError, ValueError) as exc:
            if local_only:
                continue
            problems.append(ConfigProblem(str(path), "connection",
                                          f"the account cannot be read: {exc}"))
            continue
        found_problems, preview = compare(
            config, found, str(path), key, check_fields=not local_only,
            complete=account.connector_class.complete_vocabulary)
        problems.extend(found_problems)
        previews.append(preview)
    return problems, previews
