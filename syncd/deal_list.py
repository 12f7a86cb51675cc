"""The deals behind the numbers: every open violation as a row a sales head can act on.

Each row names the deal (linked to its card in the client's CRM through the connector's
``deal_url``), its owner and the owner's team, the pipeline, the rule by its title, the
stage by its title, since when, and the explanation. ``Filters`` reads and writes the
query string (``?owner=7&rule=stalled&period=2026-11&sort=since``), so every number on
the dashboard can link to exactly the rows it counts, and a filtered list is a link too.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.render import problem_since, rule_title
from syncd.store.models import DealRow, PipelineRow

if TYPE_CHECKING:
    from syncd.config import Tenant
    from syncd.salesbook import SalesBook

#: Columns a list can be sorted by (``?sort=``), each with ``?dir=asc|desc``.
SORTS = ("since", "deal", "owner", "team", "pipeline", "rule", "stage")
#: Rows on one page of the list (``?page=``); the counts always cover every row.
PAGE_SIZE = 500


@dataclass(frozen=True)
class Filters:
    """What the list shows. Empty fields filter nothing; ``period`` is a month
    (``YYYY-MM``) or a day range ``since``..``until`` (``YYYY-MM-DD``), on the day the
    violation's problem began (``render.problem_since``: in the stage since, no touch since,
    ...; else the day a pass first saw it), as the digests date it."""

    owner: str = ""
    team: str = ""
    pipeline: str = ""
    rule: str = ""
    stage: str = ""
    period: str = ""
    since: str = ""
    until: str = ""
    sort: str = "since"
    dir: str = "asc"
    page: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> Filters:
        """From a query string; unknown values of ``sort``/``dir`` fall back to the default,
        malformed dates are dropped (a hand-edited link still shows a list)."""
        values = {f.name: str(args.get(f.name) or "").strip()[:200] for f in fields(cls)}
        if values["sort"] not in SORTS:
            values["sort"] = "since"
        if values["dir"] not in ("asc", "desc"):
            values["dir"] = "asc"
        for key in ("since", "until"):
            if values[key] and _day(values[key]) is None:
                values[key] = ""
        if values["period"] and _month(values["period"]) is None:
            values["period"] = ""
        if not values["page"].isdigit() or int(values["page"]) < 2:
            values["page"] = ""
        return cls(**values)

    def page_of(self, rows: list[Row]) -> tuple[list[Row], int, int]:
        """(this page's rows, page number, pages) of ``rows`` (a page past the end: the last)."""
        pages = max(1, -(-len(rows) // PAGE_SIZE))
        number = min(int(self.page or 1), pages)
        return rows[(number - 1) * PAGE_SIZE:number * PAGE_SIZE], number, pages

    def query(self, **changes: str) -> str:
        """This filter set (with ``changes``) as a query string: only what is set."""
        merged = replace(self, **changes)
        defaults = Filters()
        pairs = [(f.name, getattr(merged, f.name)) for f in fields(merged)
                 if getattr(merged, f.name) and getattr(merged, f.name) != getattr(defaults,
                                                                                   f.name)]
        return urlencode(pairs)

    def active(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in
                ("owner", "team", "pipeline", "rule", "stage", "period", "since", "until")
                if getattr(self, name)}

    def window(self) -> tuple[date | None, date | None]:
        """The days a violation's opening must fall in (inclusive)."""
        start, end = _day(self.since), _day(self.until)
        month = _month(self.period)
        if month is not None:
            first = month
            last = date(first.year + first.month // 12, first.month % 12 + 1, 1)
            start = max(filter(None, (start, first)))
            end = min(filter(None, (end, date.fromordinal(last.toordinal() - 1))))
        return start, end


@dataclass(slots=True)
class Row:
    deal_id: str
    deal_title: str
    deal_url: str | None
    owner_id: str
    owner: str
    team_id: str
    team: str
    pipeline_id: str
    pipeline: str
    rule: str
    rule_title: str
    stage_key: str
    stage: str
    stage_order: int
    since: date | None
    explanation: str


@dataclass
class Directory:
    """Names and links the rows need, read once per list from the store and config."""

    users: dict[str, str]
    teams: dict[str, str]  # member id -> manager id (a manager is in their own team)
    pipelines: dict[str, str]  # id -> name
    deal_pipelines: dict[str, str]  # deal id -> pipeline id
    deal_url: Any  # (deal_id) -> str | None


def directory(session: Session, tenant: Tenant, tenant_id: int,
              deal_ids: Iterable[str] | None = None) -> Directory:
    """Owner names, teams, pipelines and the CRM link maker for ``tenant``; the pipelines of
    the deals ``deal_ids`` (None: of every deal, read in one query)."""
    from syncd import load as kpi_load
    from syncd.scoring import people as people_karma

    users = kpi_load.people(session, tenant_id)
    managed, _ = people_karma.resolve_teams(tenant.config.mapping.teams, users)
    teams = {member: manager for manager, members in managed.items() for member in members}
    teams.update({manager: manager for manager in managed})
    deal_pipelines: dict[str, str] = {}
    if deal_ids is None:
        deal_pipelines.update({
            row.external_id: row.pipeline_external_id or "" for row in session.execute(
                select(DealRow.external_id, DealRow.pipeline_external_id).where(
                    DealRow.tenant_id == tenant_id))})
    wanted = sorted(set(deal_ids or ()))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start:start + 500]
        deal_pipelines.update({
            row.external_id: row.pipeline_external_id or "" for row in session.execute(
                select(DealRow.external_id, DealRow.pipeline_external_id).where(
                    DealRow.tenant_id == tenant_id, DealRow.external_id.in_(chunk)))})
    pipelines = {row.external_id: row.name for row in session.execute(
        select(PipelineRow.external_id, PipelineRow.name).where(
            PipelineRow.tenant_id == tenant_id))}
    connector, settings = tenant.connector_class, tenant.settings

    def deal_url(deal_id: str) -> str | None:
        try:
            return connector.deal_url(settings, deal_id)
        except Exception:  # a plugin's bug must not take the list down
            return None

    return Directory({u.user_id: u.name for u in users}, teams, pipelines, deal_pipelines,
                     deal_url)


def rows(violations: Iterable[Mapping[str, Any]], where: Directory, book: SalesBook,
         language: str, stage_titles: Mapping[str, str] | None = None) -> list[Row]:
    """One row per open violation of the report (``report["violations"]``), each with its
    link to the deal's card. A report in another language than the tenant's carries each
    violation's ``summary`` in it: that is shown instead of the stored explanation (written
    in the tenant's language)."""
    return list(iter_rows(violations, where, book, language, stage_titles, links=True))


def iter_rows(violations: Iterable[Mapping[str, Any]], where: Directory, book: SalesBook,
              language: str, stage_titles: Mapping[str, str] | None = None, *,
              links: bool = False) -> Iterator[Row]:
    """``rows`` one at a time; ``links=False`` leaves ``deal_url`` empty (``listing`` adds
    the links of the rows it shows)."""
    order = {stage.key: index for index, stage in enumerate(book.stages)}
    titles = dict(stage_titles or {})
    stages: dict[str, Any] = {}
    rule_titles: dict[str, str] = {}
    urls: dict[str, str | None] = {}
    for v in violations:
        deal_id = str(v.get("deal_id") or "")
        owner = str(v.get("owner_id") or "")
        team = where.teams.get(owner, "")
        pipeline = where.deal_pipelines.get(deal_id, "")
        stage_key = str(v.get("stage_key") or "")
        if stage_key not in stages:
            stages[stage_key] = (book.stage(stage_key) if stage_key and book.has_stage(stage_key)
                                 else None)
        stage = stages[stage_key]
        rule = str(v["rule"])
        if rule not in rule_titles:
            rule_titles[rule] = rule_title(rule, language)
        if links and deal_id and deal_id not in urls:
            urls[deal_id] = where.deal_url(deal_id)
        yield Row(
            deal_id=deal_id, deal_title=str(v.get("deal_title") or deal_id),
            deal_url=urls.get(deal_id),
            owner_id=owner, owner=where.users.get(owner, owner),
            team_id=team, team=where.users.get(team, team),
            pipeline_id=pipeline, pipeline=where.pipelines.get(pipeline, pipeline),
            rule=rule, rule_title=rule_titles[rule],
            stage_key=stage_key,
            stage=(stage.title_in(language) if stage else titles.get(stage_key)
                   or str(v.get("crm_stage") or stage_key)),
            stage_order=order.get(stage_key, len(order)),
            since=_day_of(problem_since(v)),
            explanation=str(v.get("summary") or v.get("explanation") or ""))


def _keeps(filters: Filters) -> Callable[[Row], bool]:
    start, end = filters.window()

    def keeps(r: Row) -> bool:
        return ((not filters.owner or r.owner_id == filters.owner)
                and (not filters.team or r.team_id == filters.team)
                and (not filters.pipeline or r.pipeline_id == filters.pipeline)
                and (not filters.rule or r.rule == filters.rule)
                and (not filters.stage or r.stage_key == filters.stage)
                and (start is None or (r.since is not None and r.since >= start))
                and (end is None or (r.since is not None and r.since <= end)))

    return keeps


#: The order of each ``?sort=`` (ties keep the report's order).
_SORT_KEYS: dict[str, Callable[[Row], Any]] = {
    "since": lambda r: (r.since or date.max, r.deal_title.casefold()),
    "deal": lambda r: (r.deal_title.casefold(), r.deal_id),
    "owner": lambda r: (r.owner.casefold(), r.since or date.max),
    "team": lambda r: (r.team.casefold(), r.owner.casefold()),
    "pipeline": lambda r: (r.pipeline.casefold(), r.stage_order),
    "rule": lambda r: (r.rule_title.casefold(), r.since or date.max),
    "stage": lambda r: (r.stage_order, r.stage.casefold(), r.since or date.max),
}


def select_rows(all_rows: Iterable[Row], filters: Filters) -> list[Row]:
    """The rows ``filters`` keeps, in its order."""
    keeps = _keeps(filters)
    return sorted((r for r in all_rows if keeps(r)), key=_SORT_KEYS[filters.sort],
                  reverse=filters.dir == "desc")


@dataclass
class Listing:
    """One page of the list and the counts over every row, from one pass over the rows."""

    rows: list[Row]  # this page's rows, in the list's order, with their links
    page: int
    pages: int
    shown: int  # rows the filters keep
    total: int  # every row
    deals: int  # distinct deals among the rows kept
    choices: dict[str, list[tuple[str, str]]]


def listing(all_rows: Iterable[Row], filters: Filters, where: Directory) -> Listing:
    """``select_rows`` + ``Filters.page_of`` + ``choices`` in one pass over ``all_rows``,
    keeping only the rows up to the page asked for (``heapq``: the same rows in the same
    order as sorting them all), so a tenant's whole list is never in memory."""
    keeps = _keeps(filters)
    counted = {"total": 0, "shown": 0}
    deals: set[str] = set()
    seen = _Choices()

    def kept() -> Iterator[Row]:
        for r in all_rows:
            counted["total"] += 1
            seen.add(r)
            if keeps(r):
                counted["shown"] += 1
                if r.deal_id:
                    deals.add(r.deal_id)
                yield r

    wanted = int(filters.page or 1) * PAGE_SIZE
    pick = heapq.nlargest if filters.dir == "desc" else heapq.nsmallest
    top = pick(wanted, kept(), key=_SORT_KEYS[filters.sort])
    pages = max(1, -(-counted["shown"] // PAGE_SIZE))
    number = min(int(filters.page or 1), pages)
    page = top[(number - 1) * PAGE_SIZE:number * PAGE_SIZE]
    urls: dict[str, str | None] = {}
    for r in page:
        if r.deal_id and r.deal_id not in urls:
            urls[r.deal_id] = where.deal_url(r.deal_id)
        r.deal_url = urls.get(r.deal_id)
    return Listing(page, number, pages, counted["shown"], counted["total"], len(deals),
                   seen.choices())


class _Choices:
    """The values each filter can take, gathered row by row."""

    def __init__(self) -> None:
        self.found: dict[str, dict[str, str]] = {k: {} for k in ("owner", "team", "pipeline",
                                                                 "rule", "stage")}
        self.order: dict[str, int] = {}

    def add(self, r: Row) -> None:
        if r.owner_id:
            self.found["owner"][r.owner_id] = r.owner
        if r.team_id:
            self.found["team"][r.team_id] = r.team
        if r.pipeline_id:
            self.found["pipeline"][r.pipeline_id] = r.pipeline
        self.found["rule"][r.rule] = r.rule_title
        if r.stage_key:
            self.found["stage"][r.stage_key] = r.stage
            self.order[r.stage_key] = r.stage_order

    def choices(self) -> dict[str, list[tuple[str, str]]]:
        out = {k: sorted(v.items(), key=lambda item: item[1].casefold())
               for k, v in self.found.items()}
        out["stage"] = sorted(self.found["stage"].items(), key=lambda item: self.order[item[0]])
        return out


def choices(all_rows: Iterable[Row]) -> dict[str, list[tuple[str, str]]]:
    """The values each filter can take (value, label), from the rows themselves."""
    seen = _Choices()
    for r in all_rows:
        seen.add(r)
    return seen.choices()


def _day_of(moment: datetime | None) -> date | None:
    return moment.date() if moment is not None else None


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _month(text: str) -> date | None:
    try:
        return date.fromisoformat(f"{text}-01") if len(text) == 7 else None
    except ValueError:
        return None


__all__ = ["SORTS", "Directory", "Filters", "Listing", "Row", "choices", "directory",
           "iter_rows", "listing", "rows", "select_rows"]
