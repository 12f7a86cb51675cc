"""Apply a tenant's mapping: CRM vocabulary -> Sales Book vocabulary.

``TenantMapper`` turns stored deal, activity and stage-change rows into the audit engine's
``DealFacts`` and the karma calculator's inputs. It is the only place that knows both the
CRM's names (pipelines, stages, loss-reason texts, field names, activity type keys) and the
Sales Book's keys.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from syncd.audit.facts import ActivityFact, DealFacts, Transition
from syncd.config import TenantConfig
from syncd.salesbook import SalesBook
from syncd.scoring.karma import KarmaCompany, KarmaDeal
from syncd.values import ValueProblem, parse_date, parse_number

log = logging.getLogger(__name__)

TRUTHY = {"yes", "y", "true", "1", "да", "on", "x"}
NOTE_TYPES = {"note"}
#: The marker syncd puts in the note of every task it creates (``writeback.marker_for``).
OWN_TASK_MARKER = re.compile(r"\bsyncd:v\d+\b")
#: Text every ``OWN_TASK_MARKER`` match contains.
OWN_TASK_LITERAL = "syncd:v"


def is_truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value or "").strip().lower() in TRUTHY


def to_float(value: Any, where: str = "") -> float | None:
    """A stored field value as a number (``syncd.values.parse_number``: any locale).
    An unreadable value is logged as a warning naming ``where`` and the value, never
    dropped silently; it counts as no value."""
    try:
        return parse_number(value)
    except ValueProblem as exc:
        log.warning("%s: %s; counted as empty", where or "a mapped field", exc)
        return None


def to_date(value: Any, where: str = "") -> date | None:
    """A stored field value as a date (``syncd.values.parse_date``: ISO, 31.12.2025,
    serials); unreadable values are logged like ``to_float``'s."""
    try:
        return parse_date(value)
    except ValueProblem as exc:
        log.warning("%s: %s; counted as empty", where or "a mapped field", exc)
        return None


def _text_or_none(value: Any) -> str | None:
    """A field as stripped text, None when empty (a blank reason is no reason)."""
    text = "" if value is None else str(value).strip()
    return text or None


def activity_kind(crm_type: str, kinds: Mapping[str, str]) -> str:
    """The canonical kind of a CRM activity type key under ``mapping.activity_types``.
    Provider-aware keys (``todo:REST_APP:PRESENTATION``: kind, provider, provider type)
    fall back to their shorter prefixes (``todo:REST_APP``, ``todo``); an unmapped key is
    its first part."""
    key = crm_type
    while key not in kinds:
        if ":" not in key:
            return key
        key = key.rsplit(":", 1)[0]
    return kinds[key]


class TenantMapper:
    """Maps one tenant's stored CRM rows onto its Sales Book."""

    def __init__(
        self, config: TenantConfig, book: SalesBook, stage_names: Mapping[str, tuple[str, str]],
    ) -> None:
        self.config = config
        self.book = book
        self.tz = ZoneInfo(config.timezone)
        self.stage_names = stage_names  # CRM stage id -> (pipeline name, stage name)
        mapping = config.mapping
        self._stage_keys = {
            (pipeline, stage): key
            for pipeline, stages in mapping.stages.items() for stage, key in stages.items()
            if key is not None
        }
        #: CRM stages and loss-reason texts the tenant file maps to null/ignore.
        self._ignored_stages = {
            (pipeline, stage)
            for pipeline, stages in mapping.stages.items() for stage, key in stages.items()
            if key is None
        }
        self._ignored_reasons = {text.strip().casefold()
                                 for text, key in mapping.loss_reasons.items() if key is None}
        self._reasons = self._reason_lookup(
            book, {t: k for t, k in mapping.loss_reasons.items() if k is not None})
        self._kinds = mapping.activity_types
        self._deal_fields = mapping.fields.deal
        self._company_fields = mapping.fields.company
        self._segments = {text.strip().casefold(): key for text, key in mapping.segments.items()}
        #: CRM ids of the tasks syncd created (the write-back ledger's ``crm_id``s).
        self.own_task_ids: frozenset[str] = frozenset()

    @staticmethod
    def _reason_lookup(book: SalesBook, mapped: Mapping[str, str]) -> dict[str, str]:
        lookup = {}
        for key, reason in book.passive.lost.reasons.items():
            lookup[key.casefold()] = key
            lookup[reason.title.casefold()] = key
        for text, key in mapped.items():
            lookup[text.strip().casefold()] = key
        return lookup

    # -- vocabulary ------------------------------------------------------------------------
    def crm_stage(self, stage_id: str | None) -> str:
        if stage_id is None:
            return "(no stage)"
        pipeline, stage = self.stage_names.get(stage_id, ("?", f"stage {stage_id}"))
        return f"{pipeline} / {stage}"

    def stage_key(self, stage_id: str | None) -> str | None:
        if stage_id is None or stage_id not in self.stage_names:
            return None
        return self._stage_keys.get(self.stage_names[stage_id])

    def loss_reason_key(self, text: str | None) -> str | None:
        if not text or not text.strip():
            return None
        return self._reasons.get(text.strip().casefold())

    def _is_ignored_stage(self, stage_id: str | None) -> bool:
        return stage_id is not None and self.stage_names.get(stage_id) in self._ignored_stages

    def ignored(self, deal: Any) -> bool:
        """True for a deal the tenant file leaves out of the audit and karma: open in a
        stage mapped to null/ignore, or lost with a reason mapped to null/ignore. A won or
        lost deal whose *closed* stage is ignored is still audited (at the stage it was
        closed from), so ignoring amoCRM's 142/143 or a Bitrix24 success stage is safe."""
        if deal.status == "open" and self._is_ignored_stage(deal.stage_id):
            return True
        reason = (deal.lost_reason or "").strip().casefold()
        return deal.status == "lost" and bool(reason) and reason in self._ignored_reasons

    def segment_key(self, value: Any) -> str | None:
        """The segment key of a CRM segment value (``mapping.segments``), None when empty."""
        text = _text_or_none(value)
        if text is None:
            return None
        return self._segments.get(text.casefold(), text)

    def kind(self, crm_type: str) -> str:
        """The canonical kind of a CRM activity type key (see ``activity_kind``)."""
        return activity_kind(crm_type, self._kinds)

    def deal_field(self, fields: Mapping[str, Any] | None, canonical: str) -> Any:
        name = self._deal_fields.get(canonical)
        return (fields or {}).get(name) if name else None

    def company_field(self, fields: Mapping[str, Any] | None, canonical: str) -> Any:
        name = self._company_fields.get(canonical)
        return (fields or {}).get(name) if name else None

    # -- audit facts -----------------------------------------------------------------------
    def is_own_task(self, row: Any) -> bool:
        """A task syncd created (by its CRM id in the write-back ledger, or by the marker in
        its note or subject): a reminder is not the work, so it is never evidence, touch or
        planned next step for any rule, nor a fact for KPIs."""
        if row.external_id in self.own_task_ids:
            return True
        return any(OWN_TASK_MARKER.search(text) for text in (
            getattr(row, "note", None), getattr(row, "subject", None))
            if text and OWN_TASK_LITERAL in text)  # the search only where it can match

    def counts(self, row: Any) -> bool:
        """An activity the audit and the KPIs may use: not deleted, not syncd's own task."""
        return not row.deleted and not self.is_own_task(row)

    def activity_fact(self, row: Any) -> ActivityFact:
        due_at = row.due_at
        if due_at is None and row.due_date is not None:
            due_at = datetime.combine(row.due_date, time(0), self.tz)
        kind = self.kind(row.type)
        return ActivityFact(
            id=row.external_id, kind=kind, done=bool(row.done), done_at=row.done_at,
            due_at=due_at, created_at=row.created_at, is_note=kind in NOTE_TYPES,
        )

    def activity_facts(self, rows: Iterable[Any]) -> list[ActivityFact]:
        """The facts of the activities among ``rows`` that count (``counts``)."""
        return [self.activity_fact(a) for a in rows if self.counts(a)]

    def deal_facts(
        self, deal: Any, activities: Iterable[Any], changes: Iterable[Any],
        company_facts: Iterable[ActivityFact] = (),
    ) -> DealFacts:
        """The audit facts of one stored deal. ``company_facts``: for a won deal, its
        company's activities as facts (``activity_facts``; a chunk's won deals of one
        company share them)."""
        stage_id = deal.stage_id
        stage_key = self.stage_key(stage_id)
        canonical = {key: self.deal_field(deal.fields, key) for key in self._deal_fields}
        changes = sorted(changes, key=lambda c: (c.at, c.external_id))
        if stage_key is None and deal.status in ("won", "lost"):
            stage_id, changes = self._stage_before_closing(stage_id, changes)
            stage_key = self.stage_key(stage_id)
        history = [
            Transition(self.stage_key(c.from_stage_id) if c.from_stage_id else None,
                       self.stage_key(c.to_stage_id), c.at, c.external_id)
            for c in changes
        ]
        derived = not history
        if derived:
            since = deal.stage_changed_at or deal.created_at
            history = [Transition(None, stage_key, since, "")]
        return DealFacts(
            deal_id=deal.external_id, title=deal.title or "", status=deal.status,
            stage_key=stage_key, crm_stage=self.crm_stage(stage_id),
            created_at=deal.created_at, owner_id=deal.owner_id, company_id=deal.company_id,
            value=float(deal.value or 0), won_at=deal.won_at, lost_at=deal.lost_at,
            lost_reason_raw=deal.lost_reason,
            lost_reason_key=self.loss_reason_key(deal.lost_reason),
            contact_count=len(deal.contact_ids or ()), fields=canonical,
            history=history, history_derived=derived,
            activities=self.activity_facts(activities),
            company_activities=list(company_facts),
            snooze_until=to_date(canonical.get("snooze_until")),
            snooze_reason=_text_or_none(canonical.get("snooze_reason")),
            stage_ignored=stage_key is None and self._is_ignored_stage(stage_id),
        )

    def _stage_before_closing(self, stage_id: str | None, changes: list[Any],
                              ) -> tuple[str | None, list[Any]]:
        """A won or lost deal sitting in a CRM "closed" status with no Sales Book stage
        (amoCRM's 142/143, a Bitrix24 success/failure stage) is audited at the stage it was
        closed from: the last move into a mapped stage, read from its history."""
        for index in range(len(changes) - 1, -1, -1):
            change = changes[index]
            if self.stage_key(change.to_stage_id) is not None:
                return change.to_stage_id, changes[: index + 1]
            if change.from_stage_id and self.stage_key(change.from_stage_id) is not None:
                return change.from_stage_id, changes[:index]
        return stage_id, changes

    # -- karma inputs ----------------------------------------------------------------------
    def karma_fields(self, fields: Mapping[str, Any] | None) -> dict[str, Any]:
        """The part of a deal's stored fields ``karma_deal`` reads (to keep a deal's karma
        input small until it is known to be needed)."""
        names = (self._deal_fields.get(key) for key in ("profit", "is_tender",
                                                        "public_incident"))
        return {name: (fields or {})[name] for name in names if name and name in (fields or {})}

    def karma_deal(self, deal: Any) -> KarmaDeal:
        return KarmaDeal(
            deal_id=deal.external_id, company_id=deal.company_id, owner_id=deal.owner_id,
            status=deal.status, value=float(deal.value or 0), won_at=deal.won_at,
            lost_at=deal.lost_at, profit=to_float(self.deal_field(deal.fields, "profit"),
                                                  f"deal {deal.external_id} profit"),
            is_tender=is_truthy(self.deal_field(deal.fields, "is_tender")),
            public_incident=is_truthy(self.deal_field(deal.fields, "public_incident")),
            created_at=deal.created_at,
        )

    def karma_company(self, company: Any) -> KarmaCompany:
        segment = self.segment_key(self.company_field(company.fields, "segment"))
        incidents = to_float(self.company_field(company.fields, "public_incidents"),
                             f"company {company.external_id} public_incidents") or 0.0
        return KarmaCompany(
            company_id=company.external_id, name=company.name or "", segment=segment,
            public_incidents=incidents,
        )
