"""The columnar audit: every built-in rule over a whole :class:`~syncd.audit.columns.DealTable`
at once, as NumPy array expressions; the same findings as :func:`syncd.audit.audit_deals`.

Why: the reference engine judges one ``DealFacts`` at a time (tens of microseconds per deal
in Python); a full recomputation of a million deals judges them column by column instead.
The semantics are those of :mod:`syncd.audit.rules` step for step (as of "now", the stage
walk, each rule's condition, snoozes, ``unmapped_stage``); a property test checks the two
engines agree on random deals (tests/test_audit_vector.py).

The result is a :class:`TableFindings`: one row per finding (deal row, rule, stage, action,
the transition it names), sorted as the reference engine yields them. Rows are cheap; the
:class:`~syncd.audit.facts.Finding` objects, with their explanation in the tenant's language
and their details, are rendered on demand (``findings()``) by the rules' own renderers.
Plugins' custom rules need ``DealFacts`` and are not run here (``audit_deals`` runs them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from syncd.audit.columns import (
    BOOL,
    I64,
    LEAD_SOURCE_FIELD,
    LOST,
    NONE,
    OPEN,
    OTHER,
    PART_SIZE,
    UNMAPPED,
    WON,
    ActivityColumns,
    DealTable,
    give_back_memory,
    micros,
    moment,
)
from syncd.audit.engine import EXAMPLE_DEALS, AuditStats, Suppressed, _run
from syncd.audit.facts import DEFERRED, DealFacts, Finding, Transition
from syncd.audit.rules import (
    RULES,
    SNOOZABLE,
    ActionSpec,
    AuditRun,
    Subject,
    _missing_action_findings,
    _skipped_finding,
    backward_move,
    bad_loss_reason,
    deferred_no_reminder_finding,
    inactive_finding,
    is_present,
    no_contact,
    no_lead_source_finding,
    no_next_step_finding,
    stalled,
    unmapped_stage,
    won_no_followup_finding,
)
from syncd.audit.timeline import LONG_AGO, UNKNOWN_CRM_STAGE, Move, StageWalk
from syncd.salesbook import SalesBook

__all__ = ["RULE_ORDER", "TableFindings", "audit_table"]

#: Rule codes in the order the reference engine runs them (``syncd.audit.rules.RULES``).
RULE_ORDER: tuple[str, ...] = tuple(rule.__name__ for rule in RULES)
(MISSING_ACTION, SKIPPED_STAGE, BACKWARD_MOVE, STALLED, INACTIVE, NO_NEXT_STEP, BAD_LOSS_REASON,
 NO_LEAD_SOURCE, NO_CONTACT, DEFERRED_NO_REMINDER, WON_NO_FOLLOWUP) = range(len(RULE_ORDER))
SNOOZABLE_CODES = tuple(RULE_ORDER.index(code) for code in sorted(SNOOZABLE))
#: bad_loss_reason problems, as the rule names them (0: none).
PROBLEMS = (None, "empty", "not_in_catalogue", "not_allowed_at_stage")
LONG_AGO_US = micros(LONG_AGO)
LATEST = np.iinfo(np.int64).max
WON_RANK = 1 << 40  # sorts the stage a deal was won in after every stage it left forward
MAX_STAGES = 62  # stage sets are bit masks in one uint64
#: DealFacts.status by the table's status code (0, 1, 2).
_STATUSES: tuple[Literal["open", "won", "lost"], ...] = ("open", "won", "lost")
Ints = npt.NDArray[np.integer[Any]]


@dataclass(slots=True)
class _Rows:
    """Finding rows of one rule, as columns."""

    deal: npt.NDArray[np.intp]
    rule: int
    sub: I64  # order of the rule's findings within a deal
    stage: I64  # stage code (the book's index, S for deferred, -1 none)
    action: I64  # index into TableFindings.actions, -1 none
    ref: I64  # a (kept) transition index, a time or a count: per rule, see the renderer


@dataclass(slots=True)
class _Sorted:
    """Finding rows in the reference engine's order, in compact columns."""

    deal: npt.NDArray[np.int32]
    rule: npt.NDArray[np.int8]
    stage: npt.NDArray[np.int16]
    action: npt.NDArray[np.int16]
    ref: I64

    @classmethod
    def of(cls, rows: list[_Rows]) -> _Sorted:
        parts = [r for r in rows if len(r.deal)]
        deal = _cat([r.deal for r in parts], np.int32)
        rule = _cat([np.full(len(r.deal), r.rule, dtype=np.int8) for r in parts], np.int8)
        order = np.lexsort((_cat([r.sub for r in parts], np.int64), rule, deal))
        return cls(deal[order], rule[order], _cat([r.stage for r in parts], np.int16)[order],
                   _cat([r.action for r in parts], np.int16)[order],
                   _cat([r.ref for r in parts], np.int64)[order])

    @classmethod
    def joined(cls, parts: list[_Sorted]) -> _Sorted:
        """Parts cover increasing deal rows: their concatenation stays sorted."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("deal", "rule", "stage", "action", "ref")))


class TableFindings:
    """The findings of one columnar run: rows (``deal``, ``rule``, ``stage``, ``action``,
    ``ref``) in the reference engine's order, a ``suppressed`` mask (snoozes), and the
    ``unmapped_stage`` rows. ``findings()`` renders them as :class:`Finding` objects."""

    def __init__(self, table: DealTable, run: AuditRun, rows: _Sorted, walk: _Walk,
                 view: _View, unmapped: list[tuple[str, list[str], int]],
                 counts: dict[str, int]) -> None:
        self.table, self.run, self.walk, self.view = table, run, walk, view
        self.deal, self.rule, self.stage = rows.deal, rows.rule, rows.stage
        self.action, self.ref = rows.action, rows.ref
        snoozed = view.snoozed[self.deal] if len(self.deal) else np.zeros(0, dtype=bool)
        self.suppressed = snoozed & np.isin(self.rule, SNOOZABLE_CODES)
        self.unmapped = unmapped
        self.counts = counts  # deals, not_created_yet, not_audited_status, unmapped
        self.actions: list[tuple[str, ActionSpec]] = [
            (stage, spec) for stage in table.stage_keys for spec in run.index.actions[stage]]

    def __len__(self) -> int:
        """Findings kept (snoozed ones excluded), ``unmapped_stage`` rows included."""
        return int(len(self.deal) - self.suppressed.sum()) + len(self.unmapped)

    def by_rule(self) -> Counter[str]:
        """Rule code -> findings kept (what ``AuditStats.findings`` counts)."""
        kept = np.bincount(self.rule[~self.suppressed], minlength=len(RULE_ORDER))
        found = Counter({code: int(n) for code, n in zip(RULE_ORDER, kept, strict=True) if n})
        if self.unmapped:
            found["unmapped_stage"] = len(self.unmapped)
        return found

    def findings(self) -> Iterator[Finding]:
        """Every kept finding, rendered, in the order ``audit_deals`` yields them."""
        for finding, _ in self._rendered(np.flatnonzero(~self.suppressed)):
            yield finding
        t = self.run.texts
        for crm_stage, examples, count in self.unmapped:
            yield unmapped_stage(crm_stage, examples, count, t)

    def finding_keys(self) -> Iterator[str]:
        """``Finding.key`` of every kept finding, in ``findings()``' order, without
        rendering them: a full pass compares these with the stored violations and renders
        only the new ones."""
        t, v, w = self.table, self.view, self.walk
        S = len(t.stage_keys)
        names = [*t.stage_keys, DEFERRED]
        actions = [spec.key for _, spec in self.actions]
        for i in np.flatnonzero(~self.suppressed).tolist():
            rule, row = int(self.rule[i]), int(self.deal[i])
            if rule in (MISSING_ACTION, SKIPPED_STAGE):
                stage = names[int(self.stage[i])]
            elif rule == BACKWARD_MOVE:
                stage = t.stage_name(int(t.hist_to[v.kept[int(self.ref[i])]])) or ""
            elif rule in (STALLED, INACTIVE, NO_NEXT_STEP):
                stage = t.stage_name(int(v.stage[row])) or ""
            elif rule == BAD_LOSS_REASON:
                position = int(w.position[row]) if 0 <= v.stage[row] <= S else -1
                stage = names[position] if position >= 0 else ""
            elif rule == DEFERRED_NO_REMINDER:
                stage = DEFERRED
            else:  # deal-level rules name no stage; won_no_followup's stays out of its key
                stage = ""
            action = actions[int(self.action[i])] if rule == MISSING_ACTION else ""
            yield f"{RULE_ORDER[rule]}|{t.deal_id[row]}|{stage}|{action}|"
        for crm_stage, _, _ in self.unmapped:
            yield f"unmapped_stage||||{crm_stage}"

    def stats(self) -> AuditStats:
        """The ``AuditStats`` the reference run fills (suppressed findings rendered)."""
        c = self.counts
        stats = AuditStats(deals=c["deals"], not_created_yet=c["not_created_yet"],
                           not_audited_status=c["not_audited_status"], unmapped=c["unmapped"])
        stats.findings = self.by_rule()
        until, reasons = self.table.snooze_until, self.table.snooze_reasons
        for finding, row in self._rendered(np.flatnonzero(self.suppressed)):
            stats.suppressed.append(Suppressed(
                finding, date.fromordinal(int(until[row])),
                reasons[row] if reasons is not None else None))
        return stats

    # -- rendering ------------------------------------------------------------------------------
    def _rendered(self, rows: npt.NDArray[np.intp]) -> Iterator[tuple[Finding, int]]:
        """(finding, deal row) of the given finding rows, one subject built per deal."""
        deal = self.deal
        subject: Subject | None = None
        current = -1
        for i in rows:
            row = int(deal[i])
            if row != current:
                current, subject = row, self._subject(row)
            assert subject is not None
            yield self._render(subject, int(i)), row

    def _subject(self, row: int) -> Subject:
        """The deal as the rules read it (no activities: the rows already say what they
        found), with its stage walk."""
        t, v, w = self.table, self.view, self.walk
        status = _STATUSES[int(v.status[row])]
        stage = int(v.stage[row])
        facts = DealFacts(
            deal_id=t.deal_id[row], title="", status=status,
            stage_key=t.stage_name(stage), crm_stage="", created_at=_at(t.created_at[row]),
            company_id=_company(t, row),
            won_at=moment(v.won_at[row]), lost_at=moment(v.lost_at[row]),
            lost_reason_raw=_code(t.reasons_raw, v.reason_raw[row]),
            lost_reason_key=_code(t.reason_keys, v.reason_key[row]),
            contact_count=int(t.contact_count[row]),
            history_derived=bool(t.history_derived[row]))
        mapped = 0 <= stage <= len(t.stage_keys)
        if not mapped:
            return Subject(facts, self.run, None)
        walk = StageWalk(entered_at=_at(w.entered[row]),
                         position=t.stage_name(int(w.position[row])),
                         last_move_at=moment(w.last_move[row]))
        return Subject(facts, self.run, walk)

    def _move(self, index: int) -> Move:
        t, v, w = self.table, self.view, self.walk
        return Move(t.stage_name(int(w.source[index])) or "",
                    t.stage_name(int(t.hist_to[v.kept[index]])) or "",
                    _at(t.hist_at[v.kept[index]]), t.hist_source[int(v.kept[index])])

    def _render(self, s: Subject, i: int) -> Finding:
        rule, ref = int(self.rule[i]), int(self.ref[i])
        t = self.table
        if rule == MISSING_ACTION:
            stage_key, action = self.actions[int(self.action[i])]
            if ref < 0:
                won_at = s.facts.won_at or self.run.cal.now
                exit_ = Transition(stage_key, "won", won_at)
            else:
                move = self._move(ref)
                exit_ = Transition(stage_key, move.to_key, move.at, move.source_id)
            return next(_missing_action_findings(s, stage_key, exit_, [action]))
        if rule == SKIPPED_STAGE:
            return _skipped_finding(s, t.stage_keys[int(self.stage[i])], self._move(ref))
        if rule == BACKWARD_MOVE:
            assert s.walk is not None
            s.walk.backward = [self._move(int(k)) for k in self.walk.backward_moves(ref)]
            return backward_move(s)[0]
        if rule == STALLED:
            return stalled(s)[0]
        if rule == INACTIVE:
            return inactive_finding(s, _at(ref))
        if rule == NO_NEXT_STEP:
            return no_next_step_finding(s, ref)
        if rule == BAD_LOSS_REASON:
            return bad_loss_reason(s)[0]
        if rule == NO_LEAD_SOURCE:
            return no_lead_source_finding(s)
        if rule == NO_CONTACT:
            return no_contact(s)[0]
        if rule == DEFERRED_NO_REMINDER:
            return deferred_no_reminder_finding(s)
        return won_no_followup_finding(s)


def _at(value: int | np.integer) -> datetime:
    found = moment(int(value))
    assert found is not None
    return found


def _company(t: DealTable, row: int) -> str | None:
    group = int(t.company_group[row])
    return None if group < 0 or t.company_id is None else t.company_id[group]


def _code(values: list[str], code: int | np.integer) -> str | None:
    return None if code < 0 else values[int(code)]


def _cat(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


# -- the deal as of "now" -------------------------------------------------------------------------
@dataclass(slots=True)
class _View:
    """The deals as they were at "now" (``as_of``), as columns."""

    live: BOOL  # audited: status open/won/lost and created by now
    status: npt.NDArray[np.int8]
    stage: npt.NDArray[np.int16]
    crm_stage: npt.NDArray[np.int32]
    won_at: I64
    lost_at: I64
    reason_raw: npt.NDArray[np.int32]
    reason_key: npt.NDArray[np.int32]
    kept: I64  # indexes of the transitions at or before now, grouped by deal
    kept_offsets: I64
    snoozed: BOOL


def _as_of(t: DealTable, now: int, today: int, unknown_crm: int) -> _View:
    status = t.status.copy()
    live = (status != OTHER) & (t.created_at <= now)
    won_later = (status == WON) & (t.won_at != NONE) & (t.won_at > now)
    lost_later = (status == LOST) & (t.lost_at != NONE) & (t.lost_at > now)
    status[won_later | lost_later] = OPEN
    won_at = np.where(won_later, NONE, t.won_at)
    lost_at = np.where(lost_later, NONE, t.lost_at)
    reason_raw = np.where(lost_later, -1, t.lost_reason_raw).astype(np.int32)
    reason_key = np.where(lost_later, -1, t.lost_reason_key).astype(np.int32)

    n = len(t)
    counts = np.diff(t.hist_offsets)
    keep = t.hist_at <= now
    kept = np.flatnonzero(keep)
    kept_counts = _segment_sum(keep, t.hist_offsets)
    kept_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(kept_counts, out=kept_offsets[1:])
    later = kept_counts < counts
    stage = t.stage.copy()
    crm_stage = t.crm_stage.copy()
    if later.any():
        rows = np.flatnonzero(later)
        has_kept = kept_counts[rows] > 0
        last_kept = kept[np.maximum(kept_offsets[rows + 1] - 1, 0)] if len(kept) else rows * 0
        dropped = np.flatnonzero(~keep)
        first_later = dropped[np.searchsorted(dropped, t.hist_offsets[rows])]
        stage[rows] = np.where(has_kept, t.hist_to[last_kept] if len(kept) else 0,
                               t.hist_from[first_later])
        crm_stage[rows] = np.where(stage[rows] == UNMAPPED, unknown_crm, crm_stage[rows])
    snoozed = (t.snooze_until > today) & t.snooze_reason
    return _View(live, status, stage, crm_stage, won_at, lost_at, reason_raw, reason_key,
                 kept, kept_offsets, snoozed)


@dataclass(slots=True)
class _Acts:
    """Activities as of "now": ``keep`` (created by now; notes written by now), ``done``
    (done by now) and ``done_at`` (None when done later)."""

    cols: ActivityColumns
    keep: BOOL
    done: BOOL
    done_at: I64


def _acts_as_of(a: ActivityColumns, now: int) -> _Acts:
    created_later = (a.created_at != NONE) & (a.created_at > now)
    done_later = (a.done_at != NONE) & (a.done_at > now)
    keep = ~created_later & ~(done_later & a.is_note)
    return _Acts(a, keep, a.done & ~done_later, np.where(done_later, NONE, a.done_at))


# -- the stage walk -------------------------------------------------------------------------------
@dataclass(slots=True)
class _Walk:
    """``StageWalk`` of every deal as columns; transition indexes are into ``_View.kept``."""

    entered: I64
    position: npt.NDArray[np.int16]
    last_move: I64
    left_last: npt.NDArray[np.int32]  # deal x stage: last forward exit, -1 none
    left_first: npt.NDArray[np.int32]  # deal x stage: first forward exit (dict order)
    skip: npt.NDArray[np.int32]  # deal x stage: the move that skipped it, -1 none
    source: npt.NDArray[np.int16]  # per kept transition: the stage it is judged to leave
    backward: BOOL  # per kept transition: a backward move
    backward_first: I64  # per deal: first backward move, -1 none
    offsets: I64  # the deals' kept transitions (_View.kept_offsets)

    def drop_decisions(self) -> None:
        """Free the deal x stage matrices once the rows are made (rendering needs none)."""
        empty = np.zeros((0, 0), dtype=np.int32)
        self.left_last = self.left_first = self.skip = empty

    def backward_moves(self, first: int) -> list[int]:
        """The backward moves of the deal whose first one is ``first``, in order."""
        end = int(self.offsets[np.searchsorted(self.offsets, first, side="right")])
        return [first + int(k) for k in np.flatnonzero(self.backward[first:end])]


def _walk(t: DealTable, v: _View, optional: list[bool]) -> _Walk:
    n, S = len(t), len(t.stage_keys)
    entered = t.created_at.copy()
    position = np.full(n, -1, dtype=np.int16)
    last_move = np.full(n, NONE, dtype=np.int64)
    visited = np.zeros(n, dtype=np.uint64)
    left_last = np.full((n, S), -1, dtype=np.int32)
    left_first = np.full((n, S), -1, dtype=np.int32)
    skip = np.full((n, S), -1, dtype=np.int32)
    m = len(v.kept)
    source_of = np.full(m, -1, dtype=np.int16)
    backward = np.zeros(m, dtype=bool)
    hist_from = t.hist_from[v.kept].astype(np.int64)
    hist_to = t.hist_to[v.kept].astype(np.int64)
    hist_at = t.hist_at[v.kept]
    counts = np.diff(v.kept_offsets)
    bits = np.left_shift(np.uint64(1), np.arange(S + 1, dtype=np.uint64))
    longest = int(counts.max()) if n else 0
    for k in range(longest):
        d = np.flatnonzero(counts > k)
        ti = v.kept_offsets[d] + k
        fr, to, at = hist_from[ti], hist_to[ti], hist_at[ti]
        entered[d] = np.where(to != fr, at, entered[d])
        last_move[d] = np.maximum(last_move[d], at)
        fr_active = (fr >= 0) & (fr < S)
        vis = visited[d] | np.where(fr_active, bits[np.clip(fr, 0, S)], np.uint64(0))
        source = np.where(fr_active, fr, np.where(fr == S, position[d], -1))
        to_active = (to >= 0) & (to < S)
        judged = to_active & (source >= 0)
        forward = judged & (to > source)
        back = judged & (to < source)
        source_of[ti] = source
        backward[ti[back]] = True
        fd, fs, ft = d[forward], source[forward], ti[forward].astype(np.int32)
        left_last[fd, fs] = ft
        first_unset = left_first[fd, fs] < 0
        left_first[fd[first_unset], fs[first_unset]] = ft[first_unset]
        for j in range(S):
            if optional[j]:
                continue
            jumped = (forward & (source < j) & (to > j)
                      & ((vis & bits[j]) == 0) & (skip[d, j] < 0))
            if jumped.any():
                skip[d[jumped], j] = ti[jumped]
        visited[d] = vis | np.where(to_active, bits[np.clip(to, 0, S)], np.uint64(0))
        position[d] = np.where(to_active, to, np.where((to == S) | (to == UNMAPPED), source, -1))
    active_now = (v.stage >= 0) & (v.stage < S)
    position = np.where(active_now, v.stage, position).astype(np.int16)
    first_back = np.full(n, -1, dtype=np.int64)
    flagged = np.flatnonzero(backward)
    if len(flagged):
        owners = np.searchsorted(v.kept_offsets, flagged, side="right") - 1
        unique, first = np.unique(owners, return_index=True)
        first_back[unique] = flagged[first]
    return _Walk(entered, position, last_move, left_last, left_first, skip, source_of,
                 backward, first_back, v.kept_offsets)


# -- segment reductions (activities and transitions are grouped by owner) -------------------------
def _segment(ufunc: np.ufunc, values: npt.NDArray[Any], offsets: I64,
             empty: object) -> npt.NDArray[Any]:
    counts = np.diff(offsets)
    out = np.full(len(counts), empty, dtype=values.dtype)
    filled = counts > 0
    if values.size:
        out[filled] = ufunc.reduceat(values, offsets[:-1][filled])
    return out


def _segment_sum(mask: BOOL, offsets: I64) -> I64:
    return _segment(np.add, mask.astype(np.int64), offsets, 0)


def _kind_mask(a: ActivityColumns, kinds: list[str], names: tuple[str, ...]) -> BOOL:
    codes = [kinds.index(name) for name in names if name in kinds]
    return np.isin(a.kind, codes) if codes else np.zeros(len(a), dtype=bool)


# -- the run --------------------------------------------------------------------------------------
def audit_table(table: DealTable, book: SalesBook, now: datetime, tz: ZoneInfo, *,
                language: str = "en", part_size: int = PART_SIZE) -> TableFindings:
    """Every built-in finding of every deal in ``table`` as of ``now`` (aware), like
    ``audit_deals(deals, book, now, tz, language=language)`` over the same deals."""
    run = _run(book, now, tz, language)
    if len(book.stages) > MAX_STAGES:
        raise ValueError(f"the columnar audit handles up to {MAX_STAGES} stages")
    if table.stage_keys != [s.key for s in book.stages]:
        raise ValueError("the deal table was built against another Sales Book")
    parts: list[_Part] = []
    kept_base = 0
    for start, part in table.parts(part_size):
        hist_base = int(table.hist_offsets[start])
        parts.append(_Audit(part, run, start, kept_base, hist_base).execute())
        kept_base += len(parts[-1].view.kept)
        give_back_memory()
    found = _merge(table, run, parts)
    del parts
    give_back_memory()
    return found


@dataclass(slots=True)
class _Part:
    """What one part of the table gave (rows and views with global indexes)."""

    rows: _Sorted
    view: _View
    walk: _Walk
    unmapped: list[tuple[str, list[str], int]]
    counts: dict[str, int]


def _merge(table: DealTable, run: AuditRun, parts: list[_Part]) -> TableFindings:
    views, walks = [p.view for p in parts], [p.walk for p in parts]
    kept_offsets = np.concatenate([*(v.kept_offsets[:-1] for v in views),
                                   [sum(len(v.kept) for v in views)]]).astype(np.int64)

    def cat(items: list[Any], name: str) -> npt.NDArray[Any]:
        return np.concatenate([getattr(x, name) for x in items])

    view = _View(**{name: cat(views, name) for name in (
        "live", "status", "stage", "crm_stage", "won_at", "lost_at", "reason_raw",
        "reason_key", "kept", "snoozed")}, kept_offsets=kept_offsets)
    empty = np.zeros((0, 0), dtype=np.int32)
    walk = _Walk(cat(walks, "entered"), cat(walks, "position"), cat(walks, "last_move"),
                 empty, empty, empty, cat(walks, "source"), cat(walks, "backward"),
                 cat(walks, "backward_first"), kept_offsets)
    unmapped: dict[str, tuple[list[str], int]] = {}
    for part in parts:
        for crm_stage, examples, count in part.unmapped:
            before, total = unmapped.get(crm_stage, ([], 0))
            unmapped[crm_stage] = ([*before, *examples][:EXAMPLE_DEALS], total + count)
    counts = {key: sum(p.counts[key] for p in parts) for key in parts[0].counts}
    return TableFindings(table, run, _Sorted.joined([p.rows for p in parts]), walk, view,
                         [(k, *unmapped[k]) for k in sorted(unmapped)], counts)


class _Audit:
    """One part of the table; ``base``: its first deal row, ``kept_base``: how many
    transitions the parts before kept, ``hist_base``: its first transition."""

    def __init__(self, table: DealTable, run: AuditRun, base: int = 0, kept_base: int = 0,
                 hist_base: int = 0) -> None:
        self.t, self.run = table, run
        self.base, self.kept_base, self.hist_base = base, kept_base, hist_base
        cal = run.cal
        self.now = micros(cal.now)
        self.S = len(table.stage_keys)
        self.crm_stages = [*table.crm_stages, UNKNOWN_CRM_STAGE]
        self.v = _as_of(table, self.now, cal.today.toordinal(), len(table.crm_stages))
        optional = [s.optional for s in run.index.book.stages]
        self.w = _walk(table, self.v, optional)
        self.acts = _acts_as_of(table.activities, self.now)
        self.company = _acts_as_of(table.company_activities, self.now)
        self.mapped = self.v.live & (self.v.stage >= 0) & (self.v.stage <= self.S)
        self.open = self.v.live & (self.v.status == OPEN)

    def execute(self) -> _Part:
        rows = [*self.missing_action(), *self.skipped_stage(), self.backward_move(),
                self.stalled(), self.inactive(), self.no_next_step(), self.bad_loss_reason(),
                self.no_lead_source(), self.no_contact(), self.deferred_no_reminder(),
                self.won_no_followup()]
        v, t = self.v, self.t
        self.w.drop_decisions()
        unmapped_deals = v.live & ~self.mapped
        counts = {"deals": len(t), "not_audited_status": int((t.status == OTHER).sum()),
                  "not_created_yet": int(((t.status != OTHER) & ~v.live).sum()),
                  "unmapped": int(unmapped_deals.sum())}
        return _Part(_Sorted.of(rows), self.globalised_view(), self.globalised_walk(),
                     self.unmapped(unmapped_deals), counts)

    def globalised_view(self) -> _View:
        """The view with transition indexes into the whole table's columns."""
        v = self.v
        v.kept = v.kept + self.hist_base
        v.kept_offsets = v.kept_offsets + self.kept_base
        return v

    def globalised_walk(self) -> _Walk:
        w = self.w
        w.backward_first = np.where(w.backward_first >= 0, w.backward_first + self.kept_base,
                                    -1)
        return w

    def rows(self, rule: int, mask: BOOL, *, sub: Ints | None = None,
             stage: Ints | None = None, action: int = -1, ref: Ints | None = None) -> _Rows:
        deal = np.flatnonzero(mask)
        size = len(deal)

        def pick(values: Ints | None, fill: int) -> I64:
            if values is None:
                return np.full(size, fill, dtype=np.int64)
            return np.asarray(values, dtype=np.int64)[deal]

        reference = pick(ref, -1)
        if rule in (MISSING_ACTION, SKIPPED_STAGE, BACKWARD_MOVE):  # kept transitions
            reference = np.where(reference >= 0, reference + self.kept_base, -1)
        return _Rows(deal + self.base, rule, pick(sub, 0), pick(stage, -1),
                     np.full(size, action, dtype=np.int64), reference)

    # -- rules ------------------------------------------------------------------------------------
    def first_done(self, kind: str) -> I64:
        """Per deal: the earliest done time of a ``kind`` activity (LATEST: none)."""
        a = self.acts
        cols = a.cols
        if kind not in self.t.kinds:
            return np.full(len(self.t), LATEST, dtype=np.int64)
        at = np.where(a.done_at != NONE, a.done_at,
                      np.where(cols.created_at != NONE, cols.created_at, LONG_AGO_US))
        useful = a.keep & a.done & ~cols.is_note & (cols.kind == self.t.kinds.index(kind))
        return _segment(np.minimum, np.where(useful, at, LATEST), cols.offsets, LATEST)

    def missing_action(self) -> list[_Rows]:
        t, v, w, S = self.t, self.v, self.w, self.S
        index = self.run.index
        first_done: dict[str, I64] = {}
        won_exit = self.mapped & (v.status == WON) & (w.position >= 0)
        won_at = np.where(v.won_at != NONE, v.won_at, self.now)
        here = np.where(w.position >= 0, w.position, S)  # S: "no position" passes all
        found: list[_Rows] = []
        action_code = 0
        hist_at = t.hist_at[v.kept] if len(v.kept) else np.zeros(0, dtype=np.int64)
        for s, stage_key in enumerate(t.stage_keys):
            left = self.mapped & (w.left_last[:, s] >= 0) & (s < here)
            won_here = won_exit & (w.position == s)
            exit_index = w.left_last[:, s].astype(np.int64)
            exit_at = np.where(left, hist_at[np.clip(exit_index, 0, None)] if len(hist_at)
                               else 0, won_at)
            passed = left | won_here
            rank = np.where(left, w.left_first[:, s].astype(np.int64), WON_RANK)
            ref = np.where(left, exit_index, -1)
            for number, action in enumerate(index.actions[stage_key]):
                evidence = np.zeros(len(t), dtype=bool)
                for kind in action.kinds:
                    if kind not in first_done:
                        first_done[kind] = self.first_done(kind)
                    evidence |= first_done[kind] <= exit_at
                if action.field is not None and action.field in t.fields:
                    evidence |= t.fields[action.field]
                found.append(self.rows(MISSING_ACTION, passed & ~evidence,
                                       sub=rank * 1024 + number, stage=np.full(len(t), s),
                                       action=action_code + number, ref=ref))
            action_code += len(index.actions[stage_key])
        return found

    def skipped_stage(self) -> list[_Rows]:
        w = self.w
        return [self.rows(SKIPPED_STAGE, self.mapped & (w.skip[:, j] >= 0),
                          sub=w.skip[:, j].astype(np.int64) * 64 + j,
                          stage=np.full(len(self.t), j), ref=w.skip[:, j])
                for j in range(self.S)]

    def backward_move(self) -> _Rows:
        return self.rows(BACKWARD_MOVE, self.mapped & (self.w.backward_first >= 0),
                         ref=self.w.backward_first)

    def stalled(self) -> _Rows:
        cutoff = np.full(self.S + 1, NONE, dtype=np.int64)
        for s, key in enumerate(self.t.stage_keys):
            if key in self.run.stalled_before:
                cutoff[s] = micros(self.run.stalled_before[key])
        stage = np.clip(self.v.stage, 0, self.S)
        return self.rows(STALLED, self.mapped & self.open & (self.w.entered < cutoff[stage]))

    def inactive(self) -> _Rows:
        t, a = self.t, self.acts
        cols, cutoff = a.cols, micros(self.run.inactive_before)
        candidates = (self.mapped & self.open & (self.v.stage != self.S)
                      & (t.created_at < cutoff))
        note_at = np.where(cols.created_at != NONE, cols.created_at, a.done_at)
        done_at = np.where(a.done_at != NONE, a.done_at, cols.created_at)
        touch = np.where(cols.is_note, note_at, np.where(a.done, done_at, NONE))
        touch = np.where(a.keep, touch, NONE)
        last = np.maximum(t.created_at, self.w.last_move)
        last = np.maximum(last, _segment(np.maximum, touch, cols.offsets, NONE))
        return self.rows(INACTIVE, candidates & (last < cutoff), ref=last)

    def no_next_step(self) -> _Rows:
        a = self.acts
        cols, today = a.cols, micros(self.run.today_start)
        planned = a.keep & ~a.done & ~cols.is_note & (cols.due_at != NONE)
        future = _segment_sum(planned & (cols.due_at >= today), cols.offsets) > 0
        overdue = _segment_sum(planned & (cols.due_at < today), cols.offsets)
        candidates = self.mapped & self.open & (self.v.stage != self.S)
        return self.rows(NO_NEXT_STEP, candidates & ~future, ref=overdue)

    def bad_loss_reason(self) -> _Rows:
        t, v, S = self.t, self.v, self.S
        reasons = self.run.index.reasons
        raw_present = np.array([is_present(r) for r in t.reasons_raw] + [False])
        known = np.array([key in reasons for key in t.reason_keys] + [False])
        limited = np.array([key in reasons and reasons[key] is not None
                            for key in t.reason_keys] + [False])
        allowed = np.zeros((len(t.reason_keys) + 1, S + 1), dtype=bool)
        for code, reason in enumerate(t.reason_keys):
            stages = reasons.get(reason)
            if stages is not None:
                for s, stage_key in enumerate([*t.stage_keys, DEFERRED]):
                    allowed[code, s] = stage_key in stages
        key = v.reason_key
        position = np.where(self.mapped, self.w.position, -1)
        problem = np.where(key < 0, np.where(raw_present[v.reason_raw], 2, 1),
                           np.where(~known[key], 2, 0))
        deferred_ok = limited[key] & (v.stage == S) & allowed[key, S]
        not_allowed = (limited[key] & (position >= 0)
                       & ~allowed[key, np.clip(position, 0, S)])
        problem = np.where((problem == 0) & ~deferred_ok & not_allowed, 3, problem)
        return self.rows(BAD_LOSS_REASON, self.v.live & (v.status == LOST) & (problem > 0),
                         ref=problem)

    def no_lead_source(self) -> _Rows:
        filled = self.t.fields.get(LEAD_SOURCE_FIELD)
        missing = ~filled if filled is not None else np.ones(len(self.t), dtype=bool)
        return self.rows(NO_LEAD_SOURCE, self.v.live & missing)

    def no_contact(self) -> _Rows:
        return self.rows(NO_CONTACT, self.v.live & (self.t.contact_count <= 0))

    def deferred_no_reminder(self) -> _Rows:
        a, run = self.acts, self.run
        cols = a.cols
        kind = _kind_mask(cols, self.t.kinds, run.index.reminder_kinds) & a.keep & ~cols.is_note
        at = np.where(a.done_at != NONE, a.done_at,
                      np.where(cols.created_at != NONE, cols.created_at, LONG_AGO_US))
        recent = a.done & (at >= micros(run.reminders_from))
        due = cols.due_at
        coming = (~a.done & (due != NONE) & (due >= micros(run.today_start))
                  & (due < micros(run.reminders_until)))
        reminded = _segment_sum(kind & (recent | coming), cols.offsets) > 0
        candidates = self.mapped & self.open & (self.v.stage == self.S)
        return self.rows(DEFERRED_NO_REMINDER, candidates & ~reminded)

    def won_no_followup(self) -> _Rows:
        v, run, t = self.v, self.run, self.t
        won_at = v.won_at
        candidates = (self.v.live & (v.status == WON) & (won_at != NONE)
                      & (won_at < micros(run.followup_before)))
        latest = self._latest_followup(self.acts)
        by_group = self._latest_followup(self.company)
        group = t.company_group
        company_latest = np.where(group >= 0, by_group[np.clip(group, 0, None)]
                                  if len(by_group) else NONE, NONE)
        followed = (np.maximum(latest, company_latest) >= won_at)
        return self.rows(WON_NO_FOLLOWUP, candidates & ~followed)

    def _latest_followup(self, a: _Acts) -> I64:
        """Per owner: the latest creation time of a follow-up activity (NONE: none)."""
        cols = a.cols
        created = np.where(cols.created_at != NONE, cols.created_at,
                           np.where(a.done_at != NONE, a.done_at, cols.due_at))
        useful = (_kind_mask(cols, self.t.kinds, self.run.index.followup_kinds) & a.keep
                  & ~cols.is_note & (created != NONE))
        return _segment(np.maximum, np.where(useful, created, NONE), cols.offsets, NONE)

    def unmapped(self, deals: BOOL) -> list[tuple[str, list[str], int]]:
        rows = np.flatnonzero(deals & ~self.t.stage_ignored)
        if not len(rows):
            return []
        codes = self.v.crm_stage[rows]
        counts = np.bincount(codes, minlength=len(self.crm_stages))
        found = []
        for code in np.flatnonzero(counts):
            examples = rows[codes == code][:EXAMPLE_DEALS]
            found.append((self.crm_stages[code], [self.t.deal_id[int(i)] for i in examples],
                          int(counts[code])))  # deal_id of a part counts from its first row
        return sorted(found, key=lambda x: x[0])

