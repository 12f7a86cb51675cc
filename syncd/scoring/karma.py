"""Client karma as a ledger: one line per (criterion, source record), weights applied later.

A line says *who* (subject), *for what* (criterion), *how much of it* (quantity) and *from
which record* (source). Amounts are never stored in a line: ``line_amount`` multiplies the
quantity by the Sales Book's signed weight, so changing a weight and re-running gives new
totals from the very same lines. Employee karma will add ``subject_type="user"`` lines
with its own criteria; the line shape stays the same.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from syncd.salesbook import ClientKarmaWeights

COMPANY = "company"
DEAL = "deal"
NO_SEGMENT = "(none)"

#: Client criterion -> (weight attribute of ClientKarmaWeights, sign).
CLIENT_CRITERIA: dict[str, tuple[str, int]] = {
    "revenue": ("revenue_weight", +1),
    "profit": ("profit_weight", +1),
    "lost_tender": ("lost_tender_penalty", -1),
    "loss_tender": ("loss_tender_penalty", -1),
    "incident": ("incident_penalty", -1),
}


@dataclass(frozen=True, slots=True)
class KarmaDeal:
    deal_id: str
    company_id: str | None
    owner_id: str | None
    status: str
    value: float
    won_at: datetime | None
    lost_at: datetime | None
    profit: float | None
    is_tender: bool
    public_incident: bool
    created_at: datetime | None = None  # a deal created after "now" does not exist yet


@dataclass(frozen=True, slots=True)
class KarmaCompany:
    company_id: str
    name: str
    segment: str | None
    public_incidents: float  # count from a mapped company field, 0 if none


@dataclass(frozen=True, slots=True)
class KarmaLine:
    subject_type: str
    subject_id: str
    criterion: str
    quantity: float
    source_type: str
    source_id: str
    period: str = ""


@dataclass(frozen=True, slots=True)
class SegmentKarma:
    segment: str
    mean: float
    count: int


def client_karma_lines(deals: Iterable[KarmaDeal], companies: Iterable[KarmaCompany],
                       weights: ClientKarmaWeights, now: datetime) -> list[KarmaLine]:
    """Every client-karma line, each pointing at the deal or company that caused it.

    A source record counts once per criterion even if it is passed twice."""
    since = now - timedelta(days=weights.window_days) if weights.window_days else None
    lines: list[KarmaLine] = []
    seen: set[tuple[str, str, str]] = set()
    candidates = [*_deal_lines(deals, since, now), *_company_lines(companies)]
    for line in candidates:
        identity = (line.criterion, line.source_type, line.source_id)
        if identity not in seen:
            seen.add(identity)
            lines.append(line)
    return lines


def _deal_lines(deals: Iterable[KarmaDeal], since: datetime | None,
                now: datetime) -> Iterator[KarmaLine]:
    for deal in deals:
        if deal.company_id and _in_window(deal, since, now):
            for criterion, quantity in _deal_criteria(deal):
                yield KarmaLine(COMPANY, deal.company_id, criterion, quantity, DEAL, deal.deal_id)


def _in_window(deal: KarmaDeal, since: datetime | None, now: datetime) -> bool:
    """Won/lost deals count by their won/lost time, never after ``now`` (with a window, an
    unknown time is outside it); open deals are current, so inside any window. A deal
    created after ``now`` does not exist yet."""
    if deal.created_at is not None and deal.created_at > now:
        return False
    if deal.status == "open":
        return True
    if deal.status not in ("won", "lost"):
        return False
    closed_at = deal.won_at if deal.status == "won" else deal.lost_at
    if closed_at is None:
        return since is None
    return closed_at <= now and (since is None or closed_at >= since)


def _deal_criteria(deal: KarmaDeal) -> Iterator[tuple[str, float]]:
    if deal.status == "won":
        yield "revenue", deal.value
        if deal.profit is not None:
            yield "profit", deal.profit
        if deal.is_tender and deal.profit is not None and deal.profit < 0:
            yield "loss_tender", 1.0
    if deal.status == "lost" and deal.is_tender:
        yield "lost_tender", 1.0
    if deal.public_incident:
        yield "incident", 1.0


def _company_lines(companies: Iterable[KarmaCompany]) -> Iterator[KarmaLine]:
    for company in companies:
        if company.public_incidents:
            yield KarmaLine(COMPANY, company.company_id, "incident", company.public_incidents,
                            COMPANY, company.company_id)


def line_weight(line: KarmaLine, weights: ClientKarmaWeights) -> float:
    """The signed weight of a line's criterion (penalties are negative)."""
    try:
        attribute, sign = CLIENT_CRITERIA[line.criterion]
    except KeyError:
        raise ValueError(f"unknown client karma criterion {line.criterion!r}") from None
    return sign * getattr(weights, attribute)


def line_amount(line: KarmaLine, weights: ClientKarmaWeights) -> float:
    """The karma a line is worth under ``weights``: signed weight x quantity."""
    return line_weight(line, weights) * line.quantity


def client_totals(lines: Iterable[KarmaLine], weights: ClientKarmaWeights) -> dict[str, float]:
    """Company id -> client karma (the sum of its lines' amounts)."""
    amounts: dict[str, list[float]] = defaultdict(list)
    for line in lines:
        if line.subject_type == COMPANY:
            amounts[line.subject_id].append(line_amount(line, weights))
    return {company: math.fsum(values) for company, values in amounts.items()}


def segment_karma(totals: dict[str, float],
                  companies: Iterable[KarmaCompany]) -> list[SegmentKarma]:
    """Mean client karma per segment over *every* company in it (a company with no ledger
    line, e.g. one with open or lost deals only or no deals at all, counts as 0), with the
    count; companies without a segment form ``(none)``. Sorted by segment."""
    by_segment: dict[str, list[float]] = defaultdict(list)
    seen: set[str] = set()
    for company in companies:
        if company.company_id not in seen:
            seen.add(company.company_id)
            by_segment[company.segment or NO_SEGMENT].append(
                totals.get(company.company_id, 0.0))
    return [SegmentKarma(segment, math.fsum(values) / len(values), len(values))
            for segment, values in sorted(by_segment.items())]
