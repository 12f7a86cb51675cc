"""Deals, their stage histories and activities as columns: the columnar engine's input.

One :class:`DealTable` holds a whole tenant as NumPy arrays (a few dozen bytes per deal,
transition and activity, where ``DealFacts`` objects cost about a kilobyte per deal), so
the audit (:mod:`syncd.audit.vector`) can judge every deal with array expressions.

Encodings (all fixed by the Sales Book the table is built against):

- times: int64 microseconds since 1970-01-01 UTC; ``NONE`` (int64 min) is "no time".
- stages: the book's stage index (0..S-1), ``S`` for ``deferred``, ``UNMAPPED`` (-1) for
  None and ``UNKNOWN`` (-2) for a key the book does not know.
- statuses: ``OPEN``, ``WON``, ``LOST``, ``OTHER`` (e.g. deleted: never audited).
- strings that repeat (CRM stages, loss reasons, activity kinds) are codes into a list of
  distinct values; ids are kept once each in a compact :class:`Strings` column.
- activities are grouped by deal (``act_offsets``), transitions too (``hist_offsets``);
  company activities (for ``won_no_followup``) are grouped by a *company group* that deals
  point at with ``company_group`` (-1: none) — a company, or the deal itself when built
  from ``DealFacts``, whose company activities are per deal.

Built from ``DealFacts`` by :meth:`DealTable.from_facts` (tests, small tenants) or column by
column by a loader or a benchmark generator (the ``DealTable`` constructor).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from syncd.audit.facts import DEFERRED, ActivityFact, DealFacts, Transition
from syncd.audit.rules import is_present
from syncd.salesbook import SalesBook

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I16 = npt.NDArray[np.int16]
I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

NONE = np.iinfo(np.int64).min
UNMAPPED, UNKNOWN = -1, -2
OPEN, WON, LOST, OTHER = 0, 1, 2, 3
STATUS_CODES = {"open": OPEN, "won": WON, "lost": LOST}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
LEAD_SOURCE_FIELD = "lead_source"
#: Deals per part (DealTable.parts): the engine's temporaries stay around 100 MB.
PART_SIZE = 200_000


def micros(moment: datetime | None) -> int:
    """``moment`` as int64 microseconds since the epoch (exact), ``NONE`` for None."""
    return NONE if moment is None else (moment - EPOCH) // MICROSECOND


def moment(value: int) -> datetime | None:
    """The UTC datetime of ``micros`` (None for ``NONE``)."""
    return None if value == NONE else EPOCH + timedelta(microseconds=int(value))


class Strings(Sequence[str]):
    """Many short strings in two arrays (UTF-8 bytes and offsets): ~10 bytes per id where a
    list of ``str`` costs ~60."""

    __slots__ = ("_data", "_offsets")

    def __init__(self, values: Iterable[str]) -> None:
        encoded = [v.encode() for v in values]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)),
                  out=self._offsets[1:])
        self._data = b"".join(encoded)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    # override: ids are read one index at a time, never sliced (Sequence also takes slices)
    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        offsets = self._offsets
        return self._data[offsets[index]:offsets[index + 1]].decode()

    def nbytes(self) -> int:
        return len(self._data) + self._offsets.nbytes


class Numbered(Sequence[str]):
    """Ids that are a prefix and the row number (``D0``, ``D1``...): no memory at all."""

    __slots__ = ("_count", "_prefix")

    def __init__(self, prefix: str, count: int) -> None:
        self._prefix, self._count = prefix, count

    def __len__(self) -> int:
        return self._count

    # override: ids are read one index at a time, never sliced (Sequence also takes slices)
    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not 0 <= index < self._count:
            raise IndexError(index)
        return f"{self._prefix}{index}"


class Codes:
    """Distinct values and their codes, in order of first appearance."""

    def __init__(self, values: Sequence[Any] = ()) -> None:
        self.values: list[Any] = []
        self.index: dict[Any, int] = {}
        for value in values:
            self.code(value)

    def code(self, value: Any) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.values)
            self.values.append(value)
        return found


def book_fields(book: SalesBook) -> list[str]:
    """The deal fields the rules read: ``lead_source`` and every action's evidence field."""
    names = [LEAD_SOURCE_FIELD]
    for action in book.actions.values():
        if action.evidence.field and action.evidence.field not in names:
            names.append(action.evidence.field)
    return names


@dataclass(slots=True)
class ActivityColumns:
    """Activities grouped by an owner row (deal or company group): ``offsets[i]`` to
    ``offsets[i + 1]`` are owner ``i``'s, in their original order."""

    offsets: I64
    kind: I32  # code into DealTable.kinds
    done: BOOL
    is_note: BOOL
    done_at: I64
    due_at: I64
    created_at: I64

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def empty(cls, owners: int) -> ActivityColumns:
        none = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(owners + 1, dtype=np.int64), np.zeros(0, dtype=np.int32),
                   np.zeros(0, dtype=bool), np.zeros(0, dtype=bool), none, none, none)

    def part(self, start: int, stop: int) -> ActivityColumns:
        """The activities of owners ``start..stop`` (views)."""
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        return ActivityColumns(self.offsets[start:stop + 1] - first, self.kind[first:last],
                               self.done[first:last], self.is_note[first:last],
                               self.done_at[first:last], self.due_at[first:last],
                               self.created_at[first:last])

    def facts(self, owner: int, kinds: Sequence[str], prefix: str) -> list[ActivityFact]:
        """Owner ``owner``'s activities as ``ActivityFact`` (ids: prefix + position)."""
        return [ActivityFact(f"{prefix}{i}", kinds[int(self.kind[i])], bool(self.done[i]),
                             moment(int(self.done_at[i])), moment(int(self.due_at[i])),
                             moment(int(self.created_at[i])), bool(self.is_note[i]))
                for i in range(int(self.offsets[owner]), int(self.offsets[owner + 1]))]

    def owner(self) -> npt.NDArray[np.intp]:
        """The owner row of every activity."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


@dataclass(slots=True)
class DealTable:
    """A tenant's deals as columns (see the module docstring for the encodings)."""

    stage_keys: list[str]  # the book's active stage keys, in order (code = index)
    deal_id: Sequence[str]  # a list, Strings or Numbered
    status: I8
    stage: I16
    crm_stage: I32  # code into crm_stages
    crm_stages: list[str]
    stage_ignored: BOOL
    created_at: I64
    won_at: I64
    lost_at: I64
    lost_reason_raw: I32  # code into reasons_raw, -1: None
    reasons_raw: list[str]
    lost_reason_key: I32  # code into reason_keys, -1: None
    reason_keys: list[str]
    contact_count: I32
    fields: dict[str, BOOL]  # field name -> filled (is_present)
    history_derived: BOOL
    snooze_until: I32  # proleptic ordinal of the date, -1: none
    snooze_reason: BOOL  # a non-empty snooze reason
    snooze_reasons: list[str | None] | None  # the reasons themselves (explanations), or None
    hist_offsets: I64
    hist_from: I16
    hist_to: I16
    hist_at: I64
    hist_source: Sequence[str]
    kinds: list[str]  # activity kind codes
    activities: ActivityColumns
    company_group: I32  # row in company_activities, -1: none
    company_activities: ActivityColumns
    company_id: Sequence[str | None] | None = None  # per company group, for explanations
    #: what karma and KPIs read besides the audit's columns (None: not loaded)
    owner: I32 | None = None  # code into owners, -1: none
    owners: Sequence[str] | None = None
    value: F64 | None = None
    lead_source: I32 | None = None  # code into lead_sources, -1: none
    lead_sources: Sequence[str] | None = None
    profit: F64 | None = None  # NaN: no profit
    is_tender: BOOL | None = None
    public_incident: BOOL | None = None
    #: True when ``company_group`` is the deal's company (a code into ``company_id``) and
    #: company activities are grouped by company: what karma and KPIs need. ``from_facts``
    #: tables group per deal (audit only).
    groups_are_companies: bool = False

    def __len__(self) -> int:
        return len(self.status)

    def stage_code(self, key: str | None) -> int:
        if key is None:
            return UNMAPPED
        if key == DEFERRED:
            return len(self.stage_keys)
        try:
            return self.stage_keys.index(key)
        except ValueError:
            return UNKNOWN

    def stage_name(self, code: int) -> str | None:
        """The key of a stage code (None for ``UNMAPPED`` and ``UNKNOWN``: no rule names
        a stage the book does not know)."""
        if code == len(self.stage_keys):
            return DEFERRED
        if 0 <= code < len(self.stage_keys):
            return self.stage_keys[code]
        return None

    def parts(self, size: int = PART_SIZE) -> Iterator[tuple[int, DealTable]]:
        """``(first row, the table of rows first..first+size)``, covering every row: the
        engine works part by part so its temporaries stay bounded whatever the tenant."""
        for start in range(0, max(len(self), 1), size):
            yield start, self.part(start, min(start + size, len(self)))

    def part(self, start: int, stop: int) -> DealTable:
        """Rows ``start..stop`` (views, no copy of the columns; company activities shared)."""
        per_deal = {name: getattr(self, name)[start:stop] for name in _PER_DEAL
                    if getattr(self, name) is not None}
        first, last = int(self.hist_offsets[start]), int(self.hist_offsets[stop])
        return dataclasses.replace(
            self, **per_deal, deal_id=_Shifted(self.deal_id, start, stop),
            fields={name: values[start:stop] for name, values in self.fields.items()},
            snooze_reasons=None if self.snooze_reasons is None
            else self.snooze_reasons[start:stop],
            hist_offsets=self.hist_offsets[start:stop + 1] - first,
            hist_from=self.hist_from[first:last], hist_to=self.hist_to[first:last],
            hist_at=self.hist_at[first:last], hist_source=_Shifted(self.hist_source, first, last),
            activities=self.activities.part(start, stop))

    def facts(self, start: int = 0, stop: int | None = None) -> Iterator[DealFacts]:
        """Rows ``start..stop`` back as ``DealFacts`` (for the reference engine and custom
        rules; times in UTC, activity ids made up from their position, a filled field
        stands as ``"x"``, a snooze reason as ``"snoozed"`` unless the reasons are kept)."""
        stop = len(self) if stop is None else stop
        statuses = {OPEN: "open", WON: "won", LOST: "lost"}
        for row in range(start, stop):
            group = int(self.company_group[row])
            company = (self.company_id[group] if self.company_id is not None and group >= 0
                       else None)
            first, last = int(self.hist_offsets[row]), int(self.hist_offsets[row + 1])
            yield DealFacts(
                deal_id=self.deal_id[row], title=self.deal_id[row],
                # arg-type: an OTHER row (a deleted deal, never audited) reads back as
                # "deleted", outside DealFacts' open/won/lost
                status=statuses.get(int(self.status[row]), "deleted"),  # type: ignore[arg-type]
                stage_key=self._key(int(self.stage[row])),
                crm_stage=self.crm_stages[int(self.crm_stage[row])],
                created_at=_utc(int(self.created_at[row])), company_id=company,
                owner_id=(self.owners[int(self.owner[row])] if self.owner is not None
                          and self.owners is not None and self.owner[row] >= 0 else None),
                value=float(self.value[row]) if self.value is not None else 0.0,
                won_at=moment(int(self.won_at[row])), lost_at=moment(int(self.lost_at[row])),
                lost_reason_raw=_pick(self.reasons_raw, int(self.lost_reason_raw[row])),
                lost_reason_key=_pick(self.reason_keys, int(self.lost_reason_key[row])),
                contact_count=int(self.contact_count[row]),
                fields={name: "x" for name, filled in self.fields.items() if filled[row]},
                history=[Transition(self._key(int(self.hist_from[i])),
                                    self._key(int(self.hist_to[i])), _utc(int(self.hist_at[i])),
                                    self.hist_source[i]) for i in range(first, last)],
                history_derived=bool(self.history_derived[row]),
                activities=self.activities.facts(row, self.kinds, "a"),
                company_activities=(self.company_activities.facts(group, self.kinds, "c")
                                    if group >= 0 else []),
                snooze_until=(date.fromordinal(int(self.snooze_until[row]))
                              if self.snooze_until[row] >= 0 else None),
                snooze_reason=(self.snooze_reasons[row] if self.snooze_reasons is not None
                               else "snoozed" if self.snooze_reason[row] else None),
                stage_ignored=bool(self.stage_ignored[row]))

    def _key(self, code: int) -> str | None:
        return "(unknown stage)" if code == UNKNOWN else self.stage_name(code)

    @classmethod
    def from_facts(cls, deals: Iterable[DealFacts], book: SalesBook) -> DealTable:
        """The columns of ``deals`` (times rendered back in UTC by explanations)."""
        return _FactsBuilder(book).build(deals)


class _FactsBuilder:
    def __init__(self, book: SalesBook) -> None:
        self.stage_keys = [s.key for s in book.stages]
        self.codes = {key: i for i, key in enumerate(self.stage_keys)}
        self.codes[DEFERRED] = len(self.stage_keys)
        self.fields = book_fields(book)
        self.crm_stages, self.reasons_raw, self.reason_keys = Codes(), Codes(), Codes()
        self.kinds = Codes()

    def stage(self, key: str | None) -> int:
        if key is None:
            return UNMAPPED
        return self.codes.get(key, UNKNOWN)

    def build(self, deals: Iterable[DealFacts]) -> DealTable:
        cols: dict[str, list[Any]] = {name: [] for name in (
            "deal_id", "status", "stage", "crm_stage", "stage_ignored", "created_at", "won_at",
            "lost_at", "raw", "key", "contacts", "derived", "snooze", "snooze_reason",
            "snooze_reasons", "company_id")}
        present: dict[str, list[bool]] = {name: [] for name in self.fields}
        hist: dict[str, list[Any]] = {"from": [], "to": [], "at": [], "source": []}
        hist_counts: list[int] = []
        acts: list[list[ActivityFact]] = []
        company_acts: list[list[ActivityFact]] = []
        for f in deals:
            cols["deal_id"].append(f.deal_id)
            cols["status"].append(STATUS_CODES.get(f.status, OTHER))
            cols["stage"].append(self.stage(f.stage_key))
            cols["crm_stage"].append(self.crm_stages.code(f.crm_stage))
            cols["stage_ignored"].append(f.stage_ignored)
            cols["created_at"].append(micros(f.created_at))
            cols["won_at"].append(micros(f.won_at))
            cols["lost_at"].append(micros(f.lost_at))
            cols["raw"].append(-1 if f.lost_reason_raw is None
                               else self.reasons_raw.code(f.lost_reason_raw))
            cols["key"].append(-1 if f.lost_reason_key is None
                               else self.reason_keys.code(f.lost_reason_key))
            cols["contacts"].append(f.contact_count)
            cols["derived"].append(f.history_derived)
            cols["snooze"].append(-1 if f.snooze_until is None else f.snooze_until.toordinal())
            cols["snooze_reason"].append(is_present(f.snooze_reason))
            cols["snooze_reasons"].append(f.snooze_reason)
            cols["company_id"].append(f.company_id)
            for name in self.fields:
                present[name].append(is_present(f.fields.get(name)))
            for t in f.history:
                hist["from"].append(self.stage(t.from_key))
                hist["to"].append(self.stage(t.to_key))
                hist["at"].append(micros(t.at))
                hist["source"].append(t.source_id)
            hist_counts.append(len(f.history))
            acts.append(f.activities)
            company_acts.append(f.company_activities)
        n = len(cols["deal_id"])
        return DealTable(
            stage_keys=self.stage_keys, deal_id=cols["deal_id"],
            status=np.array(cols["status"], dtype=np.int8),
            stage=np.array(cols["stage"], dtype=np.int16),
            crm_stage=np.array(cols["crm_stage"], dtype=np.int32),
            crm_stages=self.crm_stages.values,
            stage_ignored=np.array(cols["stage_ignored"], dtype=bool),
            created_at=np.array(cols["created_at"], dtype=np.int64),
            won_at=np.array(cols["won_at"], dtype=np.int64),
            lost_at=np.array(cols["lost_at"], dtype=np.int64),
            lost_reason_raw=np.array(cols["raw"], dtype=np.int32),
            reasons_raw=self.reasons_raw.values,
            lost_reason_key=np.array(cols["key"], dtype=np.int32),
            reason_keys=self.reason_keys.values,
            contact_count=np.array(cols["contacts"], dtype=np.int32),
            fields={name: np.array(values, dtype=bool) for name, values in present.items()},
            history_derived=np.array(cols["derived"], dtype=bool),
            snooze_until=np.array(cols["snooze"], dtype=np.int32),
            snooze_reason=np.array(cols["snooze_reason"], dtype=bool),
            snooze_reasons=cols["snooze_reasons"],
            hist_offsets=_offsets(hist_counts),
            hist_from=np.array(hist["from"], dtype=np.int16),
            hist_to=np.array(hist["to"], dtype=np.int16),
            hist_at=np.array(hist["at"], dtype=np.int64),
            hist_source=hist["source"], kinds=self.kinds.values,
            activities=self.activity_columns(acts),
            company_group=np.arange(n, dtype=np.int32),
            company_activities=self.activity_columns(company_acts),
            company_id=cols["company_id"],
        )

    def activity_columns(self, groups: list[list[ActivityFact]]) -> ActivityColumns:
        flat = [a for group in groups for a in group]
        return ActivityColumns(
            offsets=_offsets([len(group) for group in groups]),
            kind=np.array([self.kinds.code(a.kind) for a in flat], dtype=np.int32),
            done=np.array([a.done for a in flat], dtype=bool),
            is_note=np.array([a.is_note for a in flat], dtype=bool),
            done_at=np.array([micros(a.done_at) for a in flat], dtype=np.int64),
            due_at=np.array([micros(a.due_at) for a in flat], dtype=np.int64),
            created_at=np.array([micros(a.created_at) for a in flat], dtype=np.int64),
        )


_PER_DEAL = ("status", "stage", "crm_stage", "stage_ignored", "created_at", "won_at", "lost_at",
             "lost_reason_raw", "lost_reason_key", "contact_count", "history_derived",
             "snooze_until", "snooze_reason", "company_group", "owner", "value", "lead_source",
             "profit", "is_tender", "public_incident")


class _Shifted(Sequence[str]):
    """Items ``start..stop`` of a string column, without copying them."""

    __slots__ = ("_start", "_stop", "_values")

    def __init__(self, values: Sequence[str], start: int, stop: int) -> None:
        self._values, self._start, self._stop = values, start, stop

    def __len__(self) -> int:
        return self._stop - self._start

    # override: read one index at a time, never sliced (Sequence also takes slices)
    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._values[self._start + index]


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(
            ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc: nothing to give back this way
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Hand the heap's free pages back to the system after a phase of large arrays.

    glibc raises its mmap threshold after large frees, so the next arrays of the same size
    come from the heap, and the holes they leave keep the process's RSS at the phase's
    peak; a daemon that recomputes a tenant and then idles for minutes should not. No-op
    where the C library is not glibc."""
    if _TRIM is not None:
        _TRIM(0)


def _utc(value: int) -> datetime:
    found = moment(value)
    if found is None:
        raise ValueError("a deal's creation or a transition has no time")
    return found


def _pick(values: Sequence[str], code: int) -> str | None:
    return None if code < 0 else values[code]


def _offsets(counts: Sequence[int]) -> I64:
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(np.asarray(counts, dtype=np.int64), out=offsets[1:])
    return offsets

