"""The audit engine's input and output: deals already mapped onto the Sales Book.

The core builds one ``DealFacts`` per deal from the store and the tenant's mapping (CRM
stage -> canonical stage key, CRM activity type -> canonical kind, CRM loss reason ->
catalogue key, CRM fields -> canonical fields). The engine never sees CRM vocabulary
except ``crm_stage`` (kept to report unmapped stages) and never reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

Severity = Literal["error", "warning"]

#: Sentinel canonical key of a deal sitting in a CRM stage mapped to the passive "deferred".
DEFERRED = "deferred"
#: Rules whose stage is implied by the rule itself and kept out of ``Finding.key``.
STAGE_OUT_OF_KEY = frozenset({"won_no_followup"})


@dataclass(slots=True, frozen=True)
class ActivityFact:
    id: str
    kind: str  # canonical kind ("call", "meeting", "email", "task", ...) or the CRM key
    done: bool
    done_at: datetime | None = None
    due_at: datetime | None = None  # for planned activities; date-only dues at 00:00 tenant tz
    created_at: datetime | None = None
    is_note: bool = False  # a note counts as a touch, never as evidence of an action


@dataclass(slots=True, frozen=True)
class Transition:
    """A stage change in canonical terms. ``from_key``/``to_key`` are active stage keys,
    ``DEFERRED``, or ``None`` when the CRM stage is unmapped (or unknown, for from_key)."""

    from_key: str | None
    to_key: str | None
    at: datetime
    source_id: str = ""  # the CRM history entry id, for explanations and ledgers


@dataclass(slots=True)
class DealFacts:
    deal_id: str  # the CRM's own deal id
    title: str
    status: Literal["open", "won", "lost"]
    stage_key: str | None  # current canonical stage (active key or DEFERRED); None: unmapped
    crm_stage: str  # e.g. "Sales / Proposal made" (pipeline / stage), for unmapped reporting
    created_at: datetime
    owner_id: str | None = None
    company_id: str | None = None
    value: float = 0.0
    won_at: datetime | None = None
    lost_at: datetime | None = None
    lost_reason_raw: str | None = None  # as written in the CRM
    lost_reason_key: str | None = None  # catalogue key after mapping; None: not mappable
    contact_count: int = 0
    fields: dict[str, Any] = field(default_factory=dict)  # canonical field key -> value
    history: list[Transition] = field(default_factory=list)  # oldest first
    history_derived: bool = False  # True: the CRM gave no history; built from current stage
    activities: list[ActivityFact] = field(default_factory=list)  # linked to the deal
    company_activities: list[ActivityFact] = field(default_factory=list)  # of its company
    snooze_until: date | None = None
    snooze_reason: str | None = None
    #: The tenant file maps the deal's CRM stage to null/ignore (a closed deal whose stage
    #: before closing is unknown): not reported as ``unmapped_stage``.
    stage_ignored: bool = False


@dataclass(slots=True, frozen=True)
class Finding:
    """One violation found by one run. ``key`` identifies it across runs (lifecycle)."""

    rule: str
    deal_id: str | None  # None for per-CRM-stage rows (unmapped_stage)
    severity: Severity
    explanation: str  # one human sentence in the tenant's language (syncd.audit.texts)
    stage_key: str | None = None
    action_key: str | None = None
    crm_stage: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # JSON-able specifics (dates...)

    @property
    def key(self) -> str:
        """Stable identity across runs: rule + deal + stage + action (+ crm stage).

        ``won_no_followup``'s stage is always ``won`` and stays out of the key, so the rows
        opened before it carried a stage keep their identity (no reopening, no new task)."""
        stage = "" if self.rule in STAGE_OUT_OF_KEY else self.stage_key or ""
        parts = (self.rule, self.deal_id or "", stage, self.action_key or "",
                 self.crm_stage or "" if self.deal_id is None else "")
        return "|".join(parts)
