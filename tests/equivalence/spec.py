# ruff: noqa: RUF002 - the docstring quotes the spec's formula with its own signs
"""What ``salesbook-spec.md`` says the audit of the logical client must give, and how far a
source's outcome agrees with it.

The violation rows are the ones written by hand into each story (``dataset.Deal.expect``).
Karma follows the spec's formula on Sales Book ``b2b-services-9``'s weights:
``0.001 × Σ won value + 0.01 × Σ won profit − 50 × lost tenders − 100 × won tenders with
negative profit − 200 × public incidents``, for every company (0 when nothing applies),
over the deals closed by the audited moment;
a segment's karma is the mean over *all* its companies, with their count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import dataset as L
from .harness import Outcome, Row

REVENUE, PROFIT, LOST_TENDER, LOSS_TENDER, INCIDENT = 0.001, 0.01, 50, 100, 200
UNMAPPED = f"{L.PARTNERS} / {L.PARTNER_STAGE[1]}"


def expected_rows(deals: list[L.Deal]) -> list[Row]:
    rows: list[Row] = []
    for deal in deals:
        for rule, stage, action in deal.expect:
            rows.append((UNMAPPED, rule, None, None) if rule == "unmapped_stage"
                        else (deal.key, rule, stage, action))
    return rows


def expected_karma(deals: list[L.Deal]) -> dict[str, float]:
    karma = {c.key: -INCIDENT * c.incidents for c in L.COMPANIES}
    for deal in deals:
        if deal.closed is None or deal.closed > L.NOW:  # open as of the audited moment
            continue
        if deal.outcome == "won":
            karma[deal.company] += REVENUE * deal.value + PROFIT * (deal.profit or 0.0)
            if deal.tender and deal.profit is not None and deal.profit < 0:
                karma[deal.company] -= LOSS_TENDER
        elif deal.outcome == "lost" and deal.tender:
            karma[deal.company] -= LOST_TENDER
    return {k: round(v, 2) for k, v in karma.items()}


def expected_segments(deals: list[L.Deal]) -> dict[str, tuple[float, int]]:
    karma = expected_karma(deals)
    out: dict[str, tuple[float, int]] = {}
    for label, key in L.SEGMENTS.items():
        members = [c.key for c in L.COMPANIES if c.segment == label]
        out[key] = (round(sum(karma[m] for m in members) / len(members), 2), len(members))
    return out


def expected_funnel_closures(deals: list[L.Deal]) -> dict[tuple[str, ...], int]:
    """The funnel facts the spec fixes without any reading of ours: per active stage the
    deals "lost there" (lost while in it), and the deals that moved on from "Гарантия" (the
    last stage: only by being won), by the audited moment."""
    out: dict[tuple[str, ...], int] = {("funnel", s, "lost"): 0 for s in L.ACTIVE}
    out["funnel", "warranty", "moved_on"] = 0
    for deal in deals:
        if deal.closed is None or deal.closed > L.NOW or deal.pipeline != L.PIPELINE:
            continue
        if deal.outcome == "lost" and deal.stage in L.ACTIVE:
            out["funnel", deal.stage, "lost"] += 1
        if deal.outcome == "won" and deal.stage == "warranty":
            out["funnel", "warranty", "moved_on"] += 1
    return out


def matches(expected: Row, actual: Row) -> bool:
    return expected[:2] == actual[:2] and all(
        e == L.ANY or e == a for e, a in zip(expected[2:], actual[2:], strict=True))


@dataclass
class Agreement:
    """One source against the spec."""

    rows_found: int = 0
    rows_expected: int = 0
    missing: list[Row] = field(default_factory=list)  # expected, not reported
    false: list[Row] = field(default_factory=list)  # reported, not expected
    karma_ok: int = 0
    karma_total: int = 0
    karma_wrong: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    segments_ok: int = 0
    segments_total: int = 0
    segments_wrong: dict[str, tuple[tuple[float, int] | None, tuple[float, int]]] = field(
        default_factory=dict)
    funnel_ok: int = 0
    funnel_total: int = 0
    funnel_wrong: dict[tuple[str, ...], tuple[object, int]] = field(default_factory=dict)

    def line(self, source: str) -> str:
        return (f"{source:<10} rows {self.rows_found}/{self.rows_expected}"
                f" (+{len(self.false)} false), karma {self.karma_ok}/{self.karma_total},"
                f" segments {self.segments_ok}/{self.segments_total},"
                f" funnel closures {self.funnel_ok}/{self.funnel_total}")


def agreement(outcome: Outcome, deals: list[L.Deal]) -> Agreement:
    result = Agreement()
    expected = expected_rows(deals)
    result.rows_expected = len(expected)
    for row in expected:
        if any(matches(row, actual) for actual in outcome.violations):
            result.rows_found += 1
        else:
            result.missing.append(row)
    result.false = sorted((a for a in outcome.violations
                           if not any(matches(e, a) for e in expected)), key=str)
    karma = expected_karma(deals)
    result.karma_total = len(karma)
    for company, value in karma.items():
        got = outcome.karma.get(company)
        if got is not None and abs(got - value) <= 0.01:
            result.karma_ok += 1
        else:
            result.karma_wrong[company] = (got, value)
    segments = expected_segments(deals)
    result.segments_total = len(segments)
    for segment, value in segments.items():
        got = outcome.segments.get(segment)
        if got is not None and abs(got[0] - value[0]) <= 0.01 and got[1] == value[1]:
            result.segments_ok += 1
        else:
            result.segments_wrong[segment] = (got, value)
    funnel = expected_funnel_closures(deals)
    result.funnel_total = len(funnel)
    for key, count in funnel.items():
        if outcome.kpis.get(key) == count:
            result.funnel_ok += 1
        else:
            result.funnel_wrong[key] = (outcome.kpis.get(key), count)
    return result
