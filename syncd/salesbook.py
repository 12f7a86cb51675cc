"""The Sales Book as data: stages, actions, passive statuses, loss reasons, karma weights.

A Sales Book is a YAML file (see ``config/salesbooks/`` and ``docs/salesbook.md``). It is
CRM-agnostic: activity types are *canonical kinds* (``call``, ``meeting``, ``email``,
``task``...) and fields are *canonical field keys* (``lead_source``, ``contract_number``...);
each tenant maps its CRM's types and fields onto them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from syncd.errors import ConfigError, ConfigProblem
from syncd.validation_text import validation_text

PASSIVE_STATUSES = ("won", "lost", "deferred")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Titled(_Strict):
    """A ``title`` in the Sales Book's own language, and ``titles`` in others
    (``titles: {ru: Бриф}``): what a reader of that language is shown."""

    title: str
    titles: dict[str, str] = Field(default_factory=dict)

    def title_in(self, language: str) -> str:
        return self.titles.get(language) or self.title


class Evidence(_Strict):
    """What proves an action was done: a done activity of one of ``activity_types`` linked
    to the deal, or a non-empty deal ``field`` (a canonical field key). Either suffices."""

    activity_types: tuple[str, ...] = ()
    field: str | None = None

    @property
    def is_empty(self) -> bool:
        return not self.activity_types and not self.field


class Action(_Titled):
    evidence: Evidence


class ActiveStage(_Titled):
    key: str
    max_days: int | None = Field(default=None, ge=1)
    optional: bool = False
    goal: str = ""
    actions: tuple[str, ...] = ()


class LossReason(_Titled):
    #: Where the reason may be given: active stage keys and/or ``deferred`` (a deal lost
    #: while deferred). None: at every active stage and at ``deferred``.
    stages: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EvidenceGap:
    """A Sales Book action whose evidence field the tenant's CRM does not have: proven by
    its activities only (``audited``), or, with no activity kinds, not audited at all."""

    key: str
    action: Action
    field: str
    audited: bool


class DeferredRules(_Strict):
    remind_every_days: int = Field(default=30, ge=1)
    reminder_activity_types: tuple[str, ...] = ("call", "email", "meeting", "task")


class WonRules(_Strict):
    followup_within_days: int = Field(default=14, ge=0)
    followup_activity_types: tuple[str, ...] = ("call", "email", "meeting", "task")


class LostRules(_Strict):
    reasons: dict[str, LossReason]


class Passive(_Strict):
    deferred: DeferredRules = DeferredRules()
    won: WonRules = WonRules()
    lost: LostRules


class ClientKarmaWeights(_Strict):
    revenue_weight: float = 0.001
    profit_weight: float = 0.01
    lost_tender_penalty: float = 50.0
    loss_tender_penalty: float = 100.0
    incident_penalty: float = 200.0
    window_days: int | None = Field(default=None, ge=1)  # None: all time


class EmployeeKarmaWeights(_Strict):
    won_deal: float = 10.0
    won_value: float = 0.0001
    upsale: float = 5.0
    loyal_client: float = 5.0
    forward_move: float = 1.0
    violation_penalty: float = 2.0
    #: Rule code -> how many ``violation_penalty`` one of its violations costs (default 1;
    #: a plugin's custom rule brings its own default, docs/plugins.md).
    rule_weights: dict[str, float] = Field(default_factory=dict)


class KarmaWeights(_Strict):
    client: ClientKarmaWeights = ClientKarmaWeights()
    employee: EmployeeKarmaWeights = EmployeeKarmaWeights()
    bonus_rate: float = 0.0


class KpiPlan(_Strict):
    """KPI targets and plans (docs/kpis.md): the "5 wins" a week, new clients and revenue
    a month (revenue drives the plan inversion: revenue -> deals -> leads)."""

    forward_moves_per_week: int = Field(default=5, ge=0)
    new_clients_per_month: int | None = Field(default=None, ge=0)
    revenue_per_month: float | None = Field(default=None, gt=0)


class SalesBook(_Titled):
    key: str
    language: str = "en"
    description: str = ""
    inactive_days: int = Field(default=14, ge=1)
    actions: dict[str, Action]
    stages: tuple[ActiveStage, ...] = Field(min_length=1)
    passive: Passive
    karma: KarmaWeights = KarmaWeights()
    kpis: KpiPlan = KpiPlan()
    _stage_index: dict[str, int] = PrivateAttr(default_factory=dict)
    _evidence_gaps: tuple[EvidenceGap, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _check_references(self) -> SalesBook:
        problems = self.reference_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def without_evidence_fields(self, absent: frozenset[str]) -> SalesBook:
        """This book for a CRM that lacks the deal fields ``absent``: they prove nothing; an
        action only they could prove is left out of its stages (not audited), its key kept
        in ``unaudited_actions``. The same book when nothing is absent."""
        touched = {key: a for key, a in self.actions.items() if a.evidence.field in absent}
        if not touched:
            return self
        actions = dict(self.actions)
        dropped = set()
        for key, action in touched.items():
            if action.evidence.activity_types:
                actions[key] = action.model_copy(update={"evidence": action.evidence.model_copy(
                    update={"field": None})})
            else:
                dropped.add(key)
                del actions[key]
        stages = tuple(stage.model_copy(update={"actions": tuple(
            a for a in stage.actions if a not in dropped)}) for stage in self.stages)
        book = self.model_copy(update={"actions": actions, "stages": stages})
        book._stage_index = {s.key: i for i, s in enumerate(stages)}
        book._evidence_gaps = tuple(EvidenceGap(key, action, str(action.evidence.field),
                                                audited=key not in dropped)
                                    for key, action in sorted(touched.items()))
        return book

    @property
    def evidence_gaps(self) -> tuple[EvidenceGap, ...]:
        """The actions whose evidence field the tenant's CRM lacks (``without_evidence_fields``)."""
        return self._evidence_gaps

    def reference_problems(self) -> list[str]:
        """Cross-references that pydantic cannot check field by field."""
        problems: list[str] = []
        keys = [s.key for s in self.stages]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            problems.append(f"stage keys must be unique, repeated: {', '.join(dupes)}")
        for reserved in PASSIVE_STATUSES:
            if reserved in keys:
                problems.append(f"stage key {reserved!r} is reserved for a passive status")
        for index, stage in enumerate(self.stages):
            for action_key in stage.actions:
                if action_key not in self.actions:
                    problems.append(
                        f"stages[{index}] ({stage.key}).actions: unknown action {action_key!r}"
                    )
        for key, action in self.actions.items():
            if action.evidence.is_empty:
                problems.append(
                    f"actions.{key}.evidence: no evidence (give activity_types or field)"
                )
        for key, reason in self.passive.lost.reasons.items():
            for stage_key in reason.stages or ():
                if stage_key not in keys and stage_key != "deferred":  # lost while deferred
                    problems.append(
                        f"passive.lost.reasons.{key}.stages: unknown stage {stage_key!r}"
                    )
        return problems

    # -- lookups used by the audit engine -------------------------------------------------
    def stage_index(self, key: str) -> int:
        return self._index()[key]

    def has_stage(self, key: str) -> bool:
        return key in self._index()

    def _index(self) -> dict[str, int]:
        # Read from pydantic's dict of private values: ``self._stage_index`` goes through
        # ``BaseModel.__getattr__`` (~5 µs), and rendering a pass's CRM texts looks stages up
        # hundreds of thousands of times (half a million in a 100k-deal daily pass).
        private = self.__pydantic_private__
        index: dict[str, int] = (private or {}).get("_stage_index") or {}
        if not index:
            index = {s.key: i for i, s in enumerate(self.stages)}
            self._stage_index = index
        return index

    def stage(self, key: str) -> ActiveStage:
        return self.stages[self.stage_index(key)]

    def canonical_fields(self) -> set[str]:
        """Canonical deal field keys the book's evidence refers to."""
        return {a.evidence.field for a in self.actions.values() if a.evidence.field}


def problems_from_validation(error: ValidationError, file: str, prefix: str = "") -> list[
    ConfigProblem
]:
    """Turn a pydantic error into problems naming file and dotted key."""
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if prefix:
            key = f"{prefix}.{key}" if key else prefix
        message = validation_text(dict(item))  # a Text: said in the reader's language
        problems.append(ConfigProblem(file=file, key=key, problem=message))
    return problems


def read_yaml(path: Path) -> dict[str, Any]:
    """Read one YAML mapping, turning every failure into a ConfigError naming the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(ConfigProblem(str(path), "", "file not found")) from None
    except UnicodeDecodeError as exc:
        problem = f"not a UTF-8 text file (byte {exc.start}); is it a YAML file?"
        raise ConfigError(ConfigProblem(str(path), "", problem)) from None
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror or type(exc).__name__}"
        raise ConfigError(ConfigProblem(str(path), "", problem)) from None
    except RecursionError:
        raise ConfigError(ConfigProblem(str(path), "", "nested too deeply")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = f"not valid YAML ({where}): {getattr(exc, 'problem', exc)}"
        raise ConfigError(ConfigProblem(str(path), "", problem)) from None
    if not isinstance(data, dict):
        raise ConfigError(ConfigProblem(str(path), "", "expected a mapping at the top level"))
    return data


def load_salesbook(path: Path) -> SalesBook:
    """Load and validate one Sales Book file; raises ConfigError naming file and key."""
    data = read_yaml(path)
    try:
        return SalesBook.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from_validation(exc, str(path))) from None
