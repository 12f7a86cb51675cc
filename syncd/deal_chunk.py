"""One chunk of stored deals with everything a pass's stages read of them (issue 16, item 5).

The deal's shapes, top to bottom:

1. *Stored*: the deals table's row (``store.DealView``) with the deal's activities, its
   stage changes and, for a won deal, its company's activities. A ``DealChunk`` holds
   them for up to ``audit_pass.CHUNK`` deals, read in one transaction; ``syncd.deal_walk``
   reads each deal once per pass.
2. *Projected* in memory from that one read, through the tenant's mapping, never re-read:

   - ``DealFacts`` (``syncd.audit.facts``, by ``TenantMapper.deal_facts``): what the audit
     judges (canonical fields, history, activities);
   - ``DealRecord`` (``syncd.engine_model``, by ``syncd.load.deal_record``): what KPIs and
     employee karma count (canonical stage and history, no activities);
   - ``KarmaDeal`` (``syncd.scoring.karma``, by ``TenantMapper.karma_deal``): what client
     karma weighs (value, profit, tender and incident flags).

The activities are read only for the deals the audit judges in this pass; karma needs the
row and the stage changes alone.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from syncd import store
from syncd.audit.facts import DealFacts
from syncd.engine_model import DealRecord
from syncd.load import deal_record
from syncd.mapping import TenantMapper
from syncd.scoring.karma import KarmaDeal


class KarmaRow(NamedTuple):
    """What ``TenantMapper.karma_deal`` reads of a deal row, its fields cut down to the
    karma's: kept for a deal whose client karma may be needed later in the pass."""

    external_id: str
    company_id: str | None
    owner_id: str | None
    status: str
    value: float | None
    won_at: Any
    lost_at: Any
    created_at: Any
    fields: dict[str, Any]


@dataclass
class DealChunk:
    """Stored deals (live rows, in row-id order) with their activities and stage changes."""

    rows: Sequence[Any]
    #: The rows the audit judges in this pass (all of ``rows``, or some).
    audited: Sequence[Any] = ()
    activities: dict[str, list[Any]] = field(default_factory=dict)
    changes: dict[str, list[Any]] = field(default_factory=dict)
    company_activities: dict[str, list[Any]] = field(default_factory=dict)

    def facts(self, mapper: TenantMapper) -> Iterator[DealFacts]:
        """Audit facts of the audited rows (deals the tenant file ignores left out)."""
        company_facts: dict[str, list[Any]] = {}  # a company's won deals share them
        for deal in self.audited:
            if mapper.ignored(deal):
                continue
            shared = None
            if deal.status == "won" and deal.company_id:
                shared = company_facts.get(deal.company_id)
                if shared is None:
                    shared = company_facts[deal.company_id] = mapper.activity_facts(
                        self.company_activities.get(deal.company_id, ()))
            yield mapper.deal_facts(
                deal, self.activities.get(deal.external_id, ()),
                self.changes.get(deal.external_id, ()), shared or ())

    def records(self, mapper: TenantMapper) -> list[tuple[int, DealRecord]]:
        """``(row id, KPI record)`` of every row (ignored deals too, as KPIs count them)."""
        return [(row.id, deal_record(row, self.changes.get(row.external_id, ()), mapper))
                for row in self.rows]

    def karma_deals(self, mapper: TenantMapper) -> list[KarmaDeal]:
        """Client-karma inputs of the rows the tenant file does not ignore."""
        return [mapper.karma_deal(row) for row in self.rows if not mapper.ignored(row)]

    def karma_rows(self, mapper: TenantMapper) -> list[KarmaRow]:
        """``karma_deals``' inputs, unparsed (a mapped field parsed, and maybe warned
        about, only for a deal whose karma is computed)."""
        return [KarmaRow(row.external_id, row.company_id, row.owner_id, row.status, row.value,
                         row.won_at, row.lost_at, row.created_at,
                         mapper.karma_fields(row.fields))
                for row in self.rows if not mapper.ignored(row)]


def read_chunk(session: Session, tenant_id: int, rows: Sequence[Any],
               audited: Collection[str] | None = None) -> DealChunk:
    """The stage changes of ``rows`` and, for those whose CRM id is in ``audited`` (None:
    all of them), their activities and their won deals' company activities."""
    judged = list(rows) if audited is None else [r for r in rows if r.external_id in audited]
    changes = store.stage_changes_for_deals(session, tenant_id, [r.external_id for r in rows])
    activities = store.activities_for_deals(session, tenant_id,
                                            [r.external_id for r in judged])
    won_companies = {d.company_id for d in judged if d.status == "won" and d.company_id}
    company_activities = store.activities_for_companies(session, tenant_id, won_companies)
    return DealChunk(rows, judged, activities, changes, company_activities)
