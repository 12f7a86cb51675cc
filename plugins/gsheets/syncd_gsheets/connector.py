"""The two tabular connectors: ``gsheets`` (a live Google spreadsheet) and ``spreadsheet``
(a local CSV/XLSX export). Both read everything once per pass through ``TabularReader``.

Incremental pulls: a sheet has no change feed and rows carry no reliable "updated" stamp,
so every pass re-reads the whole spreadsheet (two requests: ``spreadsheets.get`` for the
tab titles, one ``values:batchGet`` for every tab) and the store's content hashes make
unchanged rows free. Rows that cannot be read come back as ``Page.problems`` (tab and row
number) and are logged; the other rows are stored. The cursor of an entity stream is the
set of ids its tab held, so a row removed from the sheet is marked deleted in the store on
the next pass (and restored if it comes back).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import requests

from syncd.badrecords import reject
from syncd.clientconnector import ClientConnector
from syncd.connector import (
    STANDARD_STREAMS,
    ConnectionSettings,
    FieldSpec,
    Inspection,
)
from syncd.errors import SyncdError
from syncd.i18n import Text
from syncd.records import Page
from syncd.store.budget import budget_key
from syncd.streams import Read, Stream, StreamConnector
from syncd_gsheets.auth import READONLY_SCOPES
from syncd_gsheets.client import SheetsClient, a1
from syncd_gsheets.files import read_path
from syncd_gsheets.settings import (
    COLUMNS,
    GSheetsSettings,
    SpreadsheetSettings,
    TabularSettings,
)
from syncd_gsheets.tabular import (
    FIELD_ENTITY,
    Grid,
    RowProblem,
    TabularData,
    find_tab,
    read_tables,
    tab_titles,
)

log = logging.getLogger(__name__)
#: Records per Page (one store transaction each).
PAGE_SIZE = 1000
#: Unreadable rows listed per tab (and logged per pass); the rest are counted.
MAX_PROBLEMS = 50


def capped(problems: Sequence[str], tab: str | None) -> list[str]:
    """At most ``MAX_PROBLEMS`` row problems, then one line counting the others (a broken
    column must not flood the log and the run record with a line per row)."""
    if len(problems) <= MAX_PROBLEMS:
        return list(problems)
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], Text("tab {tab!r}: {more} more unreadable rows skipped",
                                           tab=tab, more=more)]


class TabularConnector(StreamConnector):
    """Reads all tabs once per pass (on the first ``pull``) and serves every stream."""

    complete_vocabulary = False  # stages and reasons are what the rows use

    streams: ClassVar[tuple[str, ...]] = STANDARD_STREAMS
    settings: TabularSettings

    def __init__(self, settings: TabularSettings, *, tenant: str) -> None:
        super().__init__(settings, tenant=tenant)
        self._data: TabularData | None = None
        self.problems: list[str] = []

    def load_grids(self) -> Mapping[str, Grid]:
        """``tab title -> rows`` of every tab this tenant maps (and any others)."""
        raise NotImplementedError

    def data(self) -> TabularData:
        if self._data is None:
            self._data = read_tables(self.load_grids(), self.settings)
            self.problems = [str(p) for p in self._data.problems]
            for problem in self.problems[:MAX_PROBLEMS]:
                log.warning("tenant %s: %s", self.tenant, problem)
            if len(self.problems) > MAX_PROBLEMS:
                log.warning("tenant %s: %d more unreadable rows skipped", self.tenant,
                            len(self.problems) - MAX_PROBLEMS)
        return self._data

    def declare_streams(self) -> list[Stream]:
        """Every stream is served from the one read of all tabs (``data``)."""
        return [Stream(name, partial(self._read, name)) for name in self.streams]

    def _read(self, stream: str, read: Read) -> Iterator[Page]:
        data = self.data()
        records = data.stream(stream)
        title = self.settings.tab_title(stream) if stream in COLUMNS else None
        key = title.strip().casefold() if title else None
        problems = capped([p.text for p in data.problems
                           if p.tab.strip().casefold() == key
                           and not (p.skipped and _quarantine(stream, p))], title)
        deleted: tuple[str, ...] = ()
        new_cursor: str | None = None
        if stream in DELETABLE:
            deleted, new_cursor = removed_rows(stream, records, data, read.cursor)
        chunks = [records[i:i + PAGE_SIZE] for i in range(0, len(records), PAGE_SIZE)] or [[]]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            yield Page(stream, chunk, new_cursor if last else None,
                       deleted_ids=deleted if last else (),
                       problems=problems if index == 0 else [])

    def inspect(self) -> Inspection:
        data = self.data()
        stages: dict[str, list[str]] = {}
        for stage in data.stages:
            stages.setdefault(stage.pipeline_id, []).append(stage.name)
        return Inspection(
            pipelines=[{"id": p.external_id, "name": p.name,
                        "stages": [{"id": f"{p.name} / {s}", "name": s}
                                   for s in stages.get(p.external_id, [])]}
                       for p in data.pipelines],
            loss_reasons=sorted({d.lost_reason for d in data.deals if d.lost_reason}),
            fields=_field_names(data),
            activity_types=[t.key for t in data.activity_types],
            users=[{"id": u.external_id, "name": u.name, "email": u.email}
                   for u in data.users],
        )

    def ensure_fields(self, specs: Sequence[FieldSpec]) -> None:
        message = (f"the {self.name} connector is read-only: set writeback.enabled: false in "
                   f"the tenant file (reports go to Google Sheets through reports: gsheets:)")
        raise SyncdError(message)


def _quarantine(stream: str, problem: RowProblem) -> bool:
    """Hand a skipped row to the core's quarantine (with its tab, row and cells), as any
    connector does with a record it cannot read; False outside a pass (then it stays a
    listed row problem)."""
    payload = {"tab": problem.tab, "row": problem.row, "cells": problem.cells}
    return reject(stream, payload, problem.text, external_id=problem.ident)


#: Streams whose rows removed from the sheet are marked deleted in the store.
DELETABLE = frozenset({"companies", "contacts", "deals", "activities", "stage_history"})
_CURSOR_PREFIX = "ids1:"


def encode_ids(ids: set[str]) -> str:
    """The ids a tab held, as a compact cursor (sorted, JSON, zlib, base64)."""
    packed = zlib.compress(json.dumps(sorted(ids), ensure_ascii=False).encode(), 9)
    return _CURSOR_PREFIX + base64.b64encode(packed).decode()


def decode_ids(cursor: str | None) -> set[str] | None:
    """The ids of a cursor written by ``encode_ids``; None when absent or unreadable."""
    if not cursor or not cursor.startswith(_CURSOR_PREFIX):
        return None
    try:
        ids = json.loads(zlib.decompress(base64.b64decode(cursor[len(_CURSOR_PREFIX):])))
    except (ValueError, zlib.error):
        log.warning("unreadable id cursor ignored (no deletions this pass)")
        return None
    return {str(i) for i in ids} if isinstance(ids, list) else None


def removed_rows(stream: str, records: Sequence[Any], data: TabularData,
                 cursor: str | None) -> tuple[tuple[str, ...], str | None]:
    """``(ids removed from the tab since the last pass, the new cursor)``.

    The cursor holds the ids the tab had. Conservative by design: a tab that is missing
    deletes nothing (cursor unchanged); a skipped row's id counts as present; a skipped
    row without a readable id (or a full pass, which has no cursor) deletes nothing."""
    if stream not in data.tabs_read:
        return (), None
    present = {r.external_id for r in records} | data.skipped_ids.get(stream, set())
    previous = decode_ids(cursor)
    if previous is None:
        return (), encode_ids(present)
    if stream in data.unknown_skips:
        return (), encode_ids(present | previous)
    return tuple(sorted(previous - present)), encode_ids(present)


def _field_names(data: TabularData) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for definition in data.fields:
        names.setdefault(definition.entity, []).append(definition.name)
    return names


class GSheetsConnector(ClientConnector[SheetsClient], TabularConnector):
    """A Google spreadsheet as a client's CRM (read with a service account); the core's
    ``ClientConnector`` counts its requests and closes its client."""

    name: ClassVar[str] = "gsheets"
    settings_model: ClassVar[type[GSheetsSettings]] = GSheetsSettings
    settings: GSheetsSettings

    @classmethod
    def deal_url(cls, settings: ConnectionSettings, deal_id: str) -> str | None:
        """The spreadsheet itself (a row has no address of its own that survives sorting)."""
        sheet = getattr(settings, "spreadsheet_id", None)
        return f"https://docs.google.com/spreadsheets/d/{sheet}/edit" if sheet else None

    def __init__(self, settings: GSheetsSettings, *, tenant: str,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None) -> None:
        super().__init__(settings, tenant=tenant)
        self.client = SheetsClient(
            base_url=settings.base_url, spreadsheet_id=settings.spreadsheet_id,
            credentials=settings.credentials, requests_per_minute=settings.requests_per_minute,
            timeout=settings.timeout_seconds, where="connection.credentials",
            scopes=READONLY_SCOPES,  # a CRM sheet is only read: least privilege
            sleep=sleep, clock=clock, session=session)

    def load_grids(self) -> Mapping[str, Grid]:
        existing = self.client.sheet_titles()
        found = (find_tab(t, existing) for t in dict.fromkeys(tab_titles(self.settings)))
        wanted = [t for t in found if t is not None]
        grids = dict(zip(wanted, self.client.batch_get([a1(t) for t in wanted]), strict=True))
        if not grids:
            known = ", ".join(repr(t) for t in existing) or "none"
            message = (f"spreadsheet {self.settings.spreadsheet_id} has none of the mapped tabs "
                       f"(tabs: {known}); set connection.tabs.<entity>.tab")
            raise SyncdError(message)
        return grids

    def rate_budgets(self) -> list[tuple[Any, str]]:
        """The Sheets quota is per service account: one budget for every process."""
        return [(self.client.limiter, budget_key("gsheets", self.client.account.email))]


class SpreadsheetConnector(TabularConnector):
    """A local CSV/XLSX export of a client's CRM: audited with no credentials at all."""

    name: ClassVar[str] = "spreadsheet"
    settings_model: ClassVar[type[SpreadsheetSettings]] = SpreadsheetSettings
    settings: SpreadsheetSettings

    def requests_made(self) -> int:
        return 0  # a local file

    def offline_fields(self) -> dict[str, list[str]]:
        """``entity -> custom-field names`` (header texts) of every tab in the export, for
        ``syncd check`` (syncd.fieldcheck): a local file is readable offline."""
        data = self.data()
        names: dict[str, list[str]] = {FIELD_ENTITY[tab]: [] for tab in data.tabs_read
                                       if tab in FIELD_ENTITY}
        for entity, found in _field_names(data).items():
            names.setdefault(entity, []).extend(found)
        return names

    def load_grids(self) -> Mapping[str, Grid]:
        path = Path(self.settings.path).expanduser()
        return read_path(path, delimiter=self.settings.delimiter,
                         encoding=self.settings.encoding)
