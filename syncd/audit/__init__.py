"""The audit: deals mapped onto a Sales Book, checked rule by rule as of an explicit "now".

Public surface::

    from syncd.audit import audit_deal, audit_deals, as_of, AuditStats

Rules live in :mod:`syncd.audit.rules` (one function per rule code), the deal's timeline
(as-of truncation, calendar days, the history walk) in :mod:`syncd.audit.timeline`.
"""

from __future__ import annotations

from syncd.audit.engine import AuditStats, Suppressed, as_of, audit_deal, audit_deals
from syncd.audit.facts import DEFERRED, ActivityFact, DealFacts, Finding, Transition
from syncd.audit.rules import RULE_CODES, SEVERITY, SNOOZABLE

__all__ = [
    "DEFERRED",
    "RULE_CODES",
    "SEVERITY",
    "SNOOZABLE",
    "ActivityFact",
    "AuditStats",
    "DealFacts",
    "Finding",
    "Suppressed",
    "Transition",
    "as_of",
    "audit_deal",
    "audit_deals",
]
