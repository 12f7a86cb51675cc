"""Scoring: karma ledgers (client karma now; employee and manager karma later)."""

from __future__ import annotations

from syncd.scoring.karma import (
    KarmaCompany,
    KarmaDeal,
    KarmaLine,
    SegmentKarma,
    client_karma_lines,
    client_totals,
    line_amount,
    line_weight,
    segment_karma,
)

__all__ = [
    "KarmaCompany",
    "KarmaDeal",
    "KarmaLine",
    "SegmentKarma",
    "client_karma_lines",
    "client_totals",
    "line_amount",
    "line_weight",
    "segment_karma",
]
