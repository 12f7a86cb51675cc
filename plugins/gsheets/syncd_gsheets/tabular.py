"""The tabular reader: tabs of rows (a header row each) -> normalized ``syncd.records``.

One reader for a live Google spreadsheet and for a local CSV/XLSX export, so an export
audited before API access is granted gives the same result as the sheet later.

Rules of reading:

* the first non-empty row of a tab is its header; columns are found by header text
  (never by letter), so clients may reorder or add columns freely;
* rows may be ragged (Sheets drops trailing empty cells): missing cells are empty;
* a row that cannot be read (no id, a duplicate id, a date that is not a date, an unknown
  status) becomes a ``RowProblem`` naming the tab and the sheet's row number; the other rows
  go on. A tab without a required column fails the pass with an error naming the tab;
* pipelines, stages, users and activity types are derived from the values found, so the
  tenant's ``mapping.stages`` (pipeline name -> stage name -> Sales Book key) works as for
  any CRM. A stage's id is ``"<pipeline> / <stage>"``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from functools import partial
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from syncd.errors import BadPayloadError, SourceMappingError
from syncd.fieldcheck import closest
from syncd.i18n import Text
from syncd.records import (
    Activity,
    ActivityType,
    Company,
    Contact,
    Deal,
    DealStatus,
    FieldDef,
    FieldEntity,
    Pipeline,
    Stage,
    StageChange,
    User,
)
from syncd_gsheets import values as cell
from syncd_gsheets.settings import COLUMNS, TabularSettings

T = TypeVar("T")

log = logging.getLogger(__name__)
Grid = Sequence[Sequence[Any]]
#: Columns without which a tab cannot be read at all.
REQUIRED: dict[str, tuple[str, ...]] = {
    "deals": ("id",), "companies": ("id",), "contacts": ("id",),
    "activities": ("id", "type"), "stage_history": ("deal", "to_stage", "at"),
    "users": ("id",),
}
STATUS_WORDS: dict[str, DealStatus] = {"open": "open", "won": "won", "lost": "lost",
                                       "deleted": "deleted"}
FIELD_ENTITY: dict[str, FieldEntity] = {"deals": "deal", "companies": "company",
                                        "contacts": "contact", "activities": "activity"}


@dataclass(frozen=True)
class RowProblem:
    """A row that could not be read; ``row`` is the sheet's own row number (header = 1).
    A row skipped as a whole keeps its ``cells`` and ``ident`` (the core quarantines it)."""

    tab: str
    row: int
    problem: str
    cells: dict[str, Any] | None = field(default=None, compare=False)
    ident: str | None = None

    @property
    def skipped(self) -> bool:
        return self.cells is not None

    def __str__(self) -> str:
        return str(self.text)

    @property
    def text(self) -> Text:
        """The problem naming its tab and row; English as ``str()``, said in a tenant's
        language by the pass that stores it (docs/i18n.md)."""
        return Text("tab {tab!r} row {row}: {problem}", tab=self.tab, row=self.row,
                    problem=self.problem)


@dataclass
class Row:
    """One data row: standard columns by key, custom fields by header text."""

    number: int
    standard: dict[str, Any]
    extra: dict[str, Any]

    def get(self, key: str) -> Any:
        return self.standard.get(key)


@dataclass
class Tab:
    """A tab's header and data rows (``rows`` keep their sheet row numbers)."""

    title: str
    extra_headers: list[str]
    rows: list[Row]


@dataclass
class TabularData:
    """Everything read from one spreadsheet or export, per stream."""

    users: list[User] = field(default_factory=list)
    pipelines: list[Pipeline] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    fields: list[FieldDef] = field(default_factory=list)
    activity_types: list[ActivityType] = field(default_factory=list)
    companies: list[Company] = field(default_factory=list)
    contacts: list[Contact] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)
    activities: list[Activity] = field(default_factory=list)
    stage_history: list[StageChange] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    #: Entities whose tab was present and read (a missing tab deletes nothing).
    tabs_read: set[str] = field(default_factory=set)
    #: Ids of rows skipped as unreadable, per entity: still present, never "deleted".
    skipped_ids: dict[str, set[str]] = field(default_factory=dict)
    #: Entities with a skipped row whose id could not be read either.
    unknown_skips: set[str] = field(default_factory=set)

    def stream(self, name: str) -> list[Any]:
        return list(getattr(self, name))


def _header_key(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


def split_tab(title: str, grid: Grid, entity: str, settings: TabularSettings) -> Tab:
    """Find the header row and the columns of ``entity`` in one tab's grid."""
    rows = [list(r) for r in grid]
    start = next((i for i, r in enumerate(rows) if any(not cell.blank(v) for v in r)), None)
    if start is None:
        return Tab(title, [], [])
    header = [cell.text(v) for v in rows[start]]
    positions = {_header_key(h): i for i, h in reversed(list(enumerate(header))) if h}
    spec = settings.tab_mapping(entity)
    explicit = spec.columns if spec is not None else {}
    where: dict[str, int] = {}
    for key in COLUMNS[entity]:
        wanted = explicit.get(key)
        index = positions.get(_header_key(wanted or key))
        if index is None and wanted:
            near = closest(wanted, [h for h in header if h])
            hint = ("; did you mean " + " or ".join(repr(n) for n in near) + "?") if near else ""
            message = (f"tab {title!r}: no column {wanted!r} (mapped to {key}){hint}; the "
                       f"header row has: {', '.join(h for h in header if h)}")
            raise SourceMappingError(message, f"connection.tabs.{entity}.columns.{key}")
        if index is not None:
            where[key] = index
    missing = [k for k in REQUIRED[entity] if k not in where]
    if missing:
        message = (f"tab {title!r}: no {', '.join(missing)} column (map it under "
                   f"connection.tabs.{entity}.columns); the header row has: "
                   f"{', '.join(h for h in header if h)}")
        raise SourceMappingError(message, f"connection.tabs.{entity}.columns")
    used = set(where.values())
    extras: list[tuple[int, str]] = []
    seen = {_header_key(header[i]) for i in used}
    for i, h in enumerate(header):
        if not h or i in used:
            continue
        if _header_key(h) in seen:
            log.warning("tab %r: a second column headed %r is ignored (the first one is read)",
                        title, h)
            continue
        seen.add(_header_key(h))
        extras.append((i, h))
    parsed = []
    for offset, values in enumerate(rows[start + 1:], start=start + 2):
        if all(cell.blank(v) for v in values):
            continue
        padded = values + [None] * (len(header) - len(values))
        parsed.append(Row(
            number=offset,
            standard={k: padded[i] if i < len(padded) else None for k, i in where.items()},
            extra={h: padded[i] for i, h in extras},
        ))
    return Tab(title, [h for _, h in extras], parsed)


class _Refs:
    """Resolves references between tabs (a deal's company by id or by name)."""

    def __init__(self) -> None:
        self.by_id: dict[str, str] = {}
        self.by_name: dict[str, str] = {}

    def add(self, ident: str, name: str | None) -> None:
        self.by_id[ident.casefold()] = ident
        if name:
            self.by_name.setdefault(name.strip().casefold(), ident)

    def resolve(self, value: Any) -> str | None:
        text = cell.ident(value)
        if text is None:
            return None
        key = text.casefold()
        return self.by_id.get(key) or self.by_name.get(key) or text

    def __bool__(self) -> bool:
        return bool(self.by_id)


class TabularReader:
    """Turns tab grids into ``TabularData``; one instance per pass."""

    def __init__(self, settings: TabularSettings) -> None:
        self.settings = settings
        self.tz: tzinfo = ZoneInfo(settings.timezone)
        self.data = TabularData()
        self._users: dict[str, User] = {}
        self._user_refs = _Refs()
        self._companies = _Refs()
        self._contacts = _Refs()
        self._stages: dict[str, Stage] = {}
        self._pipelines: dict[str, Pipeline] = {}
        self._deal_pipeline: dict[str, str] = {}
        self._deal_company: dict[str, str | None] = {}

    # --- the one entry point --------------------------------------------------------------
    def read(self, grids: Mapping[str, Grid]) -> TabularData:
        """``grids``: tab title -> rows. Tabs not present are skipped (only deals is
        required)."""
        tabs: dict[str, Tab] = {}
        for entity in COLUMNS:
            title = self.settings.tab_title(entity)
            found = find_tab(title, grids)
            if found is not None:
                tabs[entity] = split_tab(found, grids[found], entity, self.settings)
            elif entity == "deals":
                known = ", ".join(repr(t) for t in grids) or "none"
                message = (f"no deals tab {title!r} (tabs found: {known}); set "
                           "connection.tabs.deals.tab to its title")
                raise BadPayloadError(message)
        for entity in ("users", "companies", "contacts", "deals", "activities",
                       "stage_history"):
            if entity in tabs:
                self._read_tab(entity, tabs[entity], getattr(self, f"_row_{entity}"))
                self.data.tabs_read.add(entity)
        self._derive_companies(tabs)
        self.data.users = list(self._users.values())
        self.data.pipelines = list(self._pipelines.values())
        self.data.stages = list(self._stages.values())
        self.data.fields = [
            FieldDef(entity=FIELD_ENTITY[e], key=h, name=h)
            for e, tab in tabs.items() if e in FIELD_ENTITY for h in tab.extra_headers
        ]
        kinds = dict.fromkeys(a.type for a in self.data.activities)
        self.data.activity_types = [ActivityType(key=k, name=k) for k in kinds]
        return self.data

    def _read_tab(self, entity: str, tab: Tab, read_row: Callable[[Tab, Row], Any]) -> None:
        seen: dict[str, int] = {}
        for row in tab.rows:
            try:
                record = read_row(tab, row)
            except (ValueError, TypeError) as exc:
                ident = self._remember_skip(entity, row)
                cells = {key: cell.plain(v) for key, v in {**row.standard, **row.extra}.items()
                         if not cell.blank(v)}
                self.data.problems.append(RowProblem(tab.title, row.number, _said(exc),
                                                     cells=cells, ident=ident))
                continue
            ident = getattr(record, "external_id", None)
            if ident is not None and ident in seen:
                self.data.problems.append(RowProblem(
                    tab.title, row.number, Text("duplicate id {ident!r} (first at row {first}"
                                                "); this row is skipped", ident=ident,
                                                first=seen[ident])))
                continue
            if ident is not None:
                seen[ident] = row.number
            self._keep(record)

    def _remember_skip(self, entity: str, row: Row) -> str | None:
        """A skipped row still exists: its record must not be taken for deleted. Returns
        its id (None when that cell is unreadable too)."""
        try:
            ident = cell.ident(row.get("id"))
        except (ValueError, TypeError):
            ident = None
        if ident is None:
            self.data.unknown_skips.add(entity)
        else:
            self.data.skipped_ids.setdefault(entity, set()).add(ident)
        return ident

    def _keep(self, record: Any) -> None:
        target = {User: None, Company: self.data.companies, Contact: self.data.contacts,
                  Deal: self.data.deals, Activity: self.data.activities,
                  StageChange: self.data.stage_history}[type(record)]
        if isinstance(record, User):
            self._users[record.external_id] = record
        elif target is not None:
            target.append(record)
            if isinstance(record, Company):
                self._companies.add(record.external_id, record.name)
            elif isinstance(record, Contact):
                self._contacts.add(record.external_id, record.name)
            elif isinstance(record, Deal):
                self._deal_pipeline[record.external_id] = record.pipeline_id or ""
                self._deal_company[record.external_id] = record.company_id

    # --- helpers ----------------------------------------------------------------------------
    def _id(self, row: Row, key: str = "id") -> str:
        value = cell.ident(row.get(key))
        if value is None:
            message = Text("no {key}", key=key)
            raise ValueError(message)
        return value

    def _at(self, row: Row, key: str) -> datetime | None:
        return _named(key, partial(cell.moment, tz=self.tz), row.get(key))

    def _fields(self, tab: Tab, row: Row, entity: str) -> dict[str, Any]:
        """Custom columns by header. Values of ``date_fields``/``number_fields`` columns are
        read as dates/numbers; one that cannot be read is a problem naming the tab, row,
        column and value, and only that field is left empty (the row is kept)."""
        spec = self.settings.tab_mapping(entity)
        dates = set(spec.date_fields) if spec is not None else set()
        numbers = set(spec.number_fields) if spec is not None else set()
        out: dict[str, Any] = {}
        for header, value in row.extra.items():
            if cell.blank(value) or header not in dates | numbers:
                out[header] = cell.plain(value)
                continue
            try:
                if header in dates:
                    parsed = cell.day(value)  # a non-blank cell: a date, or ValueError
                    out[header] = parsed.isoformat() if parsed is not None else None
                else:
                    out[header] = cell.number(value)
            except (ValueError, TypeError) as exc:
                out[header] = None
                self.data.problems.append(RowProblem(
                    tab.title, row.number, Text("{header}: {problem}; the field is left empty",
                                                header=header, problem=_said(exc))))
        return out

    def _owner(self, value: Any) -> str | None:
        """A user reference (id, name or e-mail); unknown ones become derived users."""
        text = cell.ident(value)
        if text is None:
            return None
        resolved = self._user_refs.resolve(text)
        if resolved is not None and resolved in self._users:
            return resolved
        user = User(external_id=text, name=text, email=text if "@" in text else None,
                    raw={"derived_from": "owner column"})
        self._users[text] = user
        self._user_refs.add(text, text)
        return text

    def _stage_id(self, pipeline: str, stage: str) -> str:
        pipe = self._pipelines.setdefault(pipeline, Pipeline(external_id=pipeline,
                                                             name=pipeline))
        stage_id = f"{pipe.name} / {stage}"
        if stage_id not in self._stages:
            order = sum(s.pipeline_id == pipeline for s in self._stages.values())
            self._stages[stage_id] = Stage(external_id=stage_id, pipeline_id=pipeline,
                                           name=stage, order=order)
        return stage_id

    # --- one reader per tab -----------------------------------------------------------------
    def _row_users(self, tab: Tab, row: Row) -> User:
        ident = self._id(row)
        name = cell.text(row.get("name")) or ident
        email = cell.text(row.get("email")) or None
        active = row.get("active")
        user = User(external_id=ident, name=name, email=email,
                    active=True if cell.blank(active) else cell.flag(active),
                    manager_id=cell.ident(row.get("manager")), raw=dict(row.standard))
        self._user_refs.add(ident, name)
        if email:
            self._user_refs.by_name.setdefault(email.casefold(), ident)
        return user

    def _row_companies(self, tab: Tab, row: Row) -> Company:
        deleted = row.get("deleted")
        return Company(
            external_id=self._id(row), name=cell.text(row.get("name")),
            owner_id=self._owner(row.get("owner")),
            created_at=self._at(row, "created_at"), updated_at=self._at(row, "updated_at"),
            deleted=False if cell.blank(deleted) else cell.flag(deleted),
            fields=self._fields(tab, row, "companies"), raw=_raw(row),
        )

    def _row_contacts(self, tab: Tab, row: Row) -> Contact:
        deleted = row.get("deleted")
        return Contact(
            external_id=self._id(row), name=cell.text(row.get("name")),
            company_id=self._companies.resolve(row.get("company")),
            owner_id=self._owner(row.get("owner")),
            created_at=self._at(row, "created_at"), updated_at=self._at(row, "updated_at"),
            deleted=False if cell.blank(deleted) else cell.flag(deleted),
            fields=self._fields(tab, row, "contacts"), raw=_raw(row),
        )

    def _stage_outcome(self, row: Row) -> Literal["won", "lost"] | None:
        """won/lost when the status cell is empty and the stage cell is an outcome
        (``connection.stage_status``)."""
        if cell.text(row.get("status")):
            return None
        outcomes = {k.strip().casefold(): v for k, v in self.settings.stage_status.items()}
        return outcomes.get(cell.text(row.get("stage")).strip().casefold())

    def _status(self, row: Row, won_at: datetime | None,
                lost_at: datetime | None) -> DealStatus:
        raw = cell.text(row.get("status"))
        if not raw:
            return self._stage_outcome(row) or ("won" if won_at else "lost" if lost_at
                                                else "open")
        key = raw.casefold()
        custom = {k.strip().casefold(): v for k, v in self.settings.status_values.items()}
        status = custom.get(key) or STATUS_WORDS.get(key)
        if status is None:
            known = ", ".join(sorted({*STATUS_WORDS, *self.settings.status_values}))
            message = Text("unknown status {raw!r} (known: {known}; map others under "
                           "connection.status_values)", raw=raw, known=known)
            raise ValueError(message)
        return status

    def _row_deals(self, tab: Tab, row: Row) -> Deal:
        ident = self._id(row)
        won_at, lost_at = self._at(row, "won_at"), self._at(row, "lost_at")
        status = self._status(row, won_at, lost_at)
        outcome = self._stage_outcome(row)
        if outcome is not None and (won_at if outcome == "won" else lost_at) is None:
            # the outcome is the stage: closed when the deal entered that stage
            closed = self._at(row, "stage_changed_at") or self._at(row, "updated_at")
            won_at, lost_at = (closed, lost_at) if outcome == "won" else (won_at, closed)
        pipeline = cell.text(row.get("pipeline")) or self.settings.default_pipeline
        stage = cell.text(row.get("stage"))
        contact = self._contacts.resolve(row.get("contact"))
        value = _named("value", cell.number, row.get("value"))
        return Deal(
            external_id=ident, title=cell.text(row.get("title")), status=status,
            pipeline_id=pipeline, stage_id=self._stage_id(pipeline, stage) if stage else None,
            owner_id=self._owner(row.get("owner")),
            company_id=self._companies.resolve(row.get("company")),
            contact_ids=[contact] if contact else [],
            value=value or 0.0, currency=cell.text(row.get("currency")) or None,
            created_at=self._at(row, "created_at"), updated_at=self._at(row, "updated_at"),
            stage_changed_at=self._at(row, "stage_changed_at"), won_at=won_at, lost_at=lost_at,
            lost_reason=cell.text(row.get("lost_reason")) or None,
            fields=self._fields(tab, row, "deals"), raw=_raw(row),
        )

    def _row_activities(self, tab: Tab, row: Row) -> Activity:
        kind = cell.text(row.get("type"))
        if not kind:
            message = Text("no {key}", key="type")
            raise ValueError(message)
        due_value = row.get("due")
        due_at, due_date = None, None
        if not cell.blank(due_value):
            due_date = _named("due", cell.day, due_value)
            if _has_time(due_value):
                due_at = self._at(row, "due")
        done = False if cell.blank(row.get("done")) else _named("done", cell.flag, row.get("done"))
        done_at = self._at(row, "done_at")
        if done and done_at is None and due_date is not None:
            done_at = due_at or cell.moment(due_date, self.tz)
        deal = cell.ident(row.get("deal"))
        company = self._companies.resolve(row.get("company"))
        if company is None and deal is not None:
            company = self._deal_company.get(deal)
        deleted = row.get("deleted")
        return Activity(
            external_id=self._id(row), type=kind, subject=cell.text(row.get("subject")),
            done=done, due_at=due_at, due_date=due_date, done_at=done_at if done else None,
            deal_id=deal, company_id=company,
            contact_id=self._contacts.resolve(row.get("contact")),
            owner_id=self._owner(row.get("owner")),
            created_at=self._at(row, "created_at"), updated_at=self._at(row, "updated_at"),
            deleted=False if cell.blank(deleted) else cell.flag(deleted),
            note=cell.text(row.get("note")), raw=_raw(row),
        )

    def _row_stage_history(self, tab: Tab, row: Row) -> StageChange:
        deal = self._id(row, "deal")
        at = self._at(row, "at")
        if at is None:
            message = Text("no at (the moment of the stage change)")
            raise ValueError(message)
        pipeline = (cell.text(row.get("pipeline")) or self._deal_pipeline.get(deal)
                    or self.settings.default_pipeline)
        to_stage = cell.text(row.get("to_stage"))
        if not to_stage:
            message = Text("no {key}", key="to_stage")
            raise ValueError(message)
        from_stage = cell.text(row.get("from_stage"))
        ident = cell.ident(row.get("id")) or _digest(deal, from_stage, to_stage, at.isoformat())
        return StageChange(
            external_id=ident, deal_id=deal,
            from_stage_id=self._stage_id(pipeline, from_stage) if from_stage else None,
            to_stage_id=self._stage_id(pipeline, to_stage), at=at, raw=_raw(row),
        )

    def _derive_companies(self, tabs: Mapping[str, Tab]) -> None:
        """Without a companies tab, the companies named by deals/contacts become records."""
        if "companies" in tabs:
            return
        seen: dict[str, None] = {}
        naming: list[Deal | Contact] = [*self.data.deals, *self.data.contacts]
        for record in naming:
            if record.company_id:
                seen.setdefault(record.company_id)
        self.data.companies = [Company(external_id=c, name=c, raw={"derived_from": "deals"})
                               for c in seen]


def _has_time(value: Any) -> bool:
    if isinstance(value, datetime):
        return bool(value.hour or value.minute or value.second)
    if isinstance(value, float):
        return not value.is_integer()
    if isinstance(value, str):
        return ":" in value
    return False


def _raw(row: Row) -> dict[str, Any]:
    """The row as JSON-able values (no row number: inserting a row above must not make
    every row below look changed)."""
    return {**{k: cell.plain(v) for k, v in row.standard.items()},
            **{k: cell.plain(v) for k, v in row.extra.items()}}


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def find_tab(title: str, titles: Iterable[str]) -> str | None:
    """The tab ``title`` names: itself, or the first one equal to it but for case and outer
    blanks ("Deals" also finds deals.csv's tab "deals" or a tab named "deals ")."""
    titles = list(titles)
    if title in titles:
        return title
    key = title.strip().casefold()
    return next((t for t in titles if t.strip().casefold() == key), None)


def read_tables(grids: Mapping[str, Grid], settings: TabularSettings) -> TabularData:
    return TabularReader(settings).read(grids)


def tab_titles(settings: TabularSettings) -> Iterable[str]:
    return [settings.tab_title(e) for e in COLUMNS]


def _said(exc: BaseException) -> str:
    """An exception's message, a ``Text`` kept as one (said later in a tenant's language)."""
    message = exc.args[0] if len(exc.args) == 1 else None
    return message if isinstance(message, Text) else str(exc)


def _named(key: str, read: Callable[[Any], T], value: Any) -> T:
    """``read(value)``; a value it cannot read is a problem naming its column key."""
    try:
        return read(value)
    except ValueError as exc:
        raise ValueError(Text("{key}: {problem}", key=key, problem=_said(exc))) from None
