"""Declarative streams: a plugin says *what* its streams are, the core does the reading.

In the spirit of singer-sdk's split between a ``Stream`` (what to read) and a paginator (how
a list pages), a connector declares its streams once -- a name, how its pages are read,
how a quarantined payload is read again -- and ``StreamConnector`` owns what every plugin
used to write by hand:

* dispatch: ``pull(stream, ...)`` looks the stream up (no if/elif on stream names);
* request accounting: each ``Page.requests`` is what that page cost on the connector's HTTP
  client (``requests_made``), measured here once instead of in every reader;
* stopping: after every page the core asks ``PullContext.stop_requested``;
* paging: ``paginate`` walks any list with a ``Paginator`` -- ``NextToken`` (Pipedrive v2
  ``next_cursor``), ``Offset`` (Pipedrive v1 ``start``/``limit``, Bitrix24 ``start``/
  ``next``), ``PageNumber`` (amoCRM ``page`` + ``_links.next``) -- and ``prefetched`` reads
  the next page while the current one is normalized (the rate limit, not our CPU, should
  bound a pull);
* incremental cursors: ``incremental`` turns pages of raw items into ``Page``s that carry a
  ``Watermark``: the highest replication value read *and* the ``(id, value)`` pairs read in
  the overlap window below it. The next pass asks from ``watermark - overlap`` as before
  (late commits in the CRM are still caught) but drops every item it already read in the
  same version, so a pass with nothing changed reads no record twice (issue 13 item 3:
  1,967 Pipedrive deals sharing the newest ``update_time`` were re-read every pass). A
  list read to its end also records ``through``, the moment that read began: the next
  read starts from ``through - overlap`` even when nothing newer than ``at`` appeared, so
  a quiet stream does not fetch again, every pass, whatever was stamped just before its
  newest record (our own write-back, a bulk import).

Retries and the rate limit stay in ``syncd.http`` (one policy for every request).
"""

from __future__ import annotations

import contextvars
import json
import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from syncd.connector import Connector, PullContext
from syncd.errors import BadPayloadError
from syncd.records import Page, Record
from syncd.values import parse_datetime

log = logging.getLogger(__name__)

#: A raw item's identity and version: ``(primary key, replication value)``; ``None`` for
#: an item that has neither (it is always read).
ItemKey = tuple[str, datetime]
KeyOf = Callable[[Any], ItemKey | None]
#: How far from the moment of the read a version's stamp must be for it to be remembered as
#: read: CRMs stamp changes to the second, so a record read in the second it changed may
#: change again with the same stamp (and the CRM's clock may differ from ours a little).
#: Versions stamped that close to the read are simply read again next time.
SETTLE = timedelta(minutes=1)
#: At most this many items are remembered in a cursor (the newest versions): a bulk import
#: that stamped a whole account within the overlap window must not make every page's
#: commit write a megabyte of cursor. Items beyond it are simply read again next pass.
MAX_SEEN = 5000


# --- the compound cursor ---------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Watermark:
    """An incremental stream's cursor: ``at`` (the highest replication value committed),
    ``through`` (when the last read that reached the list's end began, by our clock) and
    ``seen`` (id -> replication value of the items read at or after the next read's start).

    Stored as JSON ``{"at": "...Z", "through": "...Z", "seen": {"...Z": ["id", ...]}}``;
    a legacy cursor (a bare timestamp, or whatever ``legacy`` reads) loads with an empty
    ``seen`` and no ``through``.

    ``through`` is safe for the same reason the overlap is: a version stamped more than
    ``overlap`` before a read began was visible to that read (the overlap covers the CRM's
    commit delay and its clock's difference from ours), so a complete read saw it.
    """

    at: datetime | None = None
    seen: dict[str, datetime] = field(default_factory=dict)
    #: The highest value read so far in this pass (starts at ``at``).
    high: datetime | None = None
    through: datetime | None = None

    def __post_init__(self) -> None:
        if self.high is None:
            self.high = self.at

    @classmethod
    def load(cls, text: str | None,
             legacy: Callable[[str], datetime | None] | None = None) -> Watermark:
        if not text:
            return cls()
        text = text.strip()
        try:
            if text.startswith("{"):
                data = json.loads(text)
                at = parse_datetime(data.get("at"), UTC)
                through = parse_datetime(data.get("through"), UTC)
                seen = {str(item): stamp for value, ids in (data.get("seen") or {}).items()
                        if (stamp := parse_datetime(value, UTC)) is not None for item in ids}
                return cls(at if isinstance(at, datetime) else None, seen,
                           through=through if isinstance(through, datetime) else None)
            at = legacy(text) if legacy is not None else parse_datetime(text, UTC)
            return cls(at if isinstance(at, datetime) else None)
        except (TypeError, ValueError, AttributeError) as exc:
            log.warning("unreadable cursor %r (%s); reading everything", text[:80], exc)
            return cls()

    def since(self, overlap: timedelta) -> datetime | None:
        """Where the next read starts: the watermark less the overlap, or, if later, the
        start of the last complete read less the overlap (``SETTLE`` at least: that moment
        is by our clock, and the CRM's may differ a little even with no overlap set)."""
        return _start(self.at, self.through, overlap)

    def fresh(self, key: ItemKey | None) -> bool:
        """True unless this item was read before in this very version."""
        return key is None or self.seen.get(key[0]) != key[1]

    def note(self, key: ItemKey | None) -> None:
        if key is not None:
            self.seen[key[0]] = key[1]

    def note_all(self, keys: Iterable[ItemKey | None], read_at: datetime | None) -> None:
        """Remember these items as read, except versions stamped within ``SETTLE`` of
        ``read_at`` (the moment of the read)."""
        for key in keys:
            if key is not None and (read_at is None or abs(key[1] - read_at) >= SETTLE):
                self.seen[key[0]] = key[1]

    def capped(self, cap: datetime | None) -> datetime | None:
        """The highest value read, never later than ``cap`` nor earlier than ``at``."""
        if self.high is None or cap is None or self.high <= cap:
            return self.high
        return cap if self.at is None else max(cap, self.at)

    def prune(self, horizon: datetime) -> None:
        """Forget items the next read (from ``horizon``) will not return, and all but the
        ``MAX_SEEN`` newest."""
        kept = [(item, stamp) for item, stamp in self.seen.items() if stamp >= horizon]
        if len(kept) > MAX_SEEN:
            kept = sorted(kept, key=lambda pair: pair[1], reverse=True)[:MAX_SEEN]
        self.seen = dict(kept)

    def dump(self, at: datetime | None, overlap: timedelta) -> str | None:
        """The cursor text for watermark ``at``: only items the next read (from ``since``)
        would return again are kept in ``seen``, ``MAX_SEEN`` at most."""
        start = _start(at, self.through, overlap)
        if start is None:
            return None
        self.prune(start)
        grouped: dict[str, list[str]] = {}
        for item, stamp in self.seen.items():
            grouped.setdefault(_iso(stamp), []).append(item)
        text: dict[str, Any] = {"at": None if at is None else _iso(at)}
        if self.through is not None:
            text["through"] = _iso(self.through)
        text["seen"] = {k: sorted(v, key=_id_order) for k, v in sorted(grouped.items())}
        return json.dumps(text, separators=(",", ":"))


def _start(at: datetime | None, through: datetime | None,
           overlap: timedelta) -> datetime | None:
    """Where a read after watermark ``at`` and complete read ``through`` starts."""
    starts = [moment for moment in (at if at is None else at - overlap,
                                    through if through is None
                                    else through - max(overlap, SETTLE))
              if moment is not None]
    return max(starts) if starts else None


def watermark_at(cursor: str | None) -> str | None:
    """The watermark of a stored cursor as ISO text (for tests and displays)."""
    mark = Watermark.load(cursor)
    return _iso(mark.at) if mark.at is not None else None


def _id_order(value: str) -> tuple[int, str]:
    return (int(value), "") if value.isdigit() else (1 << 62, value)


def version_key(id_field: str, stamp_field: str, read_id: Callable[[Any], str | None],
                read_stamp: Callable[[Any], datetime | None], prefix: str = "") -> KeyOf:
    """How a list's raw items name their identity and version for ``incremental``:
    ``(prefix + read_id(item[id_field]), read_stamp(item[stamp_field]))``, or None when
    either is missing or unreadable (the item is then always read, and the normalizer says
    what is wrong with it)."""
    def key(item: Any) -> ItemKey | None:
        if not isinstance(item, Mapping):
            return None
        try:
            item_id = read_id(item.get(id_field))
            stamp = read_stamp(item.get(stamp_field))
        except (TypeError, ValueError, OverflowError):
            return None
        if item_id is None or not isinstance(stamp, datetime):
            return None
        return f"{prefix}{item_id}", stamp
    return key


def incremental(name: str, raw_pages: Iterable[Sequence[Any]],
                parse: Callable[[list[Any]], Page], mark: Watermark, key: KeyOf, *,
                overlap: timedelta, ordered: bool | Callable[[], bool] = True,
                cap: datetime | None = None, commit: bool = True,
                read_at: datetime | None = None,
                complete: Callable[[], bool] | None = None,
                replication_key: str = "updated_at") -> Iterator[Page]:
    """Pages of an incremental list, each carrying the cursor it lets the stream reach.

    ``raw_pages`` are the API's pages of raw items; items ``mark`` already read in the same
    version are dropped before ``parse`` turns the rest into a ``Page`` (records, deleted
    ids, problems). ``ordered`` (a bool, or a callable asked per page): the list comes
    sorted ascending by the replication value, so every page may move the cursor;
    otherwise -- or from the first page whose values go backwards -- pages carry no cursor
    and the last one carries the highest value read, never later than ``cap`` (the moment
    the read started: a record changed behind our position is read next time).
    ``commit=False``: no page moves the cursor (a first list of several; ``mark.high``
    carries what it read into the next call). Versions stamped within ``SETTLE`` of
    ``read_at`` (when the read began) are not remembered as read: such a record may change
    again within the same second, keeping its stamp, so it is read again next time.

    When ``raw_pages`` ends, ``complete()`` says whether the list was read to its end
    (None: it was unless ``raw_pages`` is a ``Prefetched`` that a stop cut short -- pass
    ``complete`` when the pages come through a generator of your own). A complete,
    committing read records ``read_at`` as the cursor's ``through`` (``Watermark``), on
    its last page or, for a list whose pages all carried their cursor, on an empty page
    of its own. An unordered list cut short commits no cursor at all: the rows it did not
    reach may be older than what it read.
    """
    order = _Order(name, replication_key)
    held: Page | None = None
    for items in raw_pages:
        keys = [key(item) for item in items]
        fresh = [item for item, k in zip(items, keys, strict=True) if mark.fresh(k)]
        page = parse(fresh)
        order.follow(page, mark)
        in_order = order.ascending
        mark.note_all(keys, read_at)
        if len(mark.seen) > 2 * MAX_SEEN:  # an unordered list commits only at its end
            horizon = mark.capped(cap)
            if horizon is not None:
                mark.prune(horizon - overlap)
        if commit and in_order and (ordered() if callable(ordered) else ordered):
            if held is not None:
                yield held
                held = None
            page.cursor = mark.dump(mark.high, overlap)
            yield page
            continue
        if held is not None:
            yield held
        held = page
    finished = commit and (complete() if complete is not None
                           else not getattr(raw_pages, "cut_short", False))
    if finished and read_at is not None:
        mark.through = read_at if mark.through is None else max(mark.through, read_at)
    if held is not None:
        if finished:
            held.cursor = mark.dump(mark.capped(cap), overlap)
        yield held
    elif finished and read_at is not None:  # every page carried its cursor; one more says
        tail = parse([])                      # the list was read to its end
        tail.cursor = mark.dump(mark.high, overlap)
        yield tail


@dataclass
class _Order:
    """Whether an incremental list's records come in ascending replication order so far,
    and the highest value read (``Watermark.high``)."""

    name: str
    replication_key: str
    last: datetime | None = None
    ascending: bool = True

    def follow(self, page: Page, mark: Watermark) -> None:
        for record in page.records:
            stamp = getattr(record, self.replication_key, None)
            if not isinstance(stamp, datetime):
                continue
            if self.last is not None and stamp < self.last and self.ascending:
                self.ascending = False
                log.warning("%s: %s not ascending at record %s; the cursor moves only at "
                            "the end of the stream", self.name, self.replication_key,
                            getattr(record, "external_id", "?"))
            self.last = stamp if self.last is None else max(self.last, stamp)
            mark.high = stamp if mark.high is None else max(mark.high, stamp)


# --- paging --------------------------------------------------------------------------------
class Paginator(ABC):
    """How one list pages: the query of the next request after ``body`` (None: done)."""

    @abstractmethod
    def next(self, query: dict[str, Any], body: Any, items: Sequence[Any],
             ) -> dict[str, Any] | None:
        """The next request's query, or ``None`` after the last page."""


@dataclass
class NextToken(Paginator):
    """The answer names the next page by an opaque token (Pipedrive v2
    ``additional_data.next_cursor``), sent back as ``param``."""

    token: Callable[[Any], Any]
    param: str = "cursor"

    def next(self, query: dict[str, Any], body: Any, items: Sequence[Any],
             ) -> dict[str, Any] | None:
        token = self.token(body)
        return {**query, self.param: token} if token else None


class PagingError(BadPayloadError):
    """A list's paging information contradicts itself (e.g. an offset that goes back)."""


@dataclass
class Offset(Paginator):
    """Offset paging: ``param`` is the index of the first item (Pipedrive v1 ``start``,
    Bitrix24 ``start``). ``next_offset`` reads the next offset from the answer (None: no
    more); without it, a full page of ``limit`` items means "read on"."""

    param: str = "start"
    limit: int | None = None
    next_offset: Callable[[Any], Any] | None = None

    def next(self, query: dict[str, Any], body: Any, items: Sequence[Any],
             ) -> dict[str, Any] | None:
        current = int(query.get(self.param) or 0)
        if self.next_offset is not None:
            following = self.next_offset(body)
            if following is None:
                return None
        elif self.limit is not None and len(items) >= self.limit:
            following = current + len(items)
        else:
            return None
        if not isinstance(following, int) or following <= current:
            message = f"the answer says more items follow but the next offset is {following!r}"
            raise PagingError(message)
        return {**query, self.param: following}


@dataclass
class PageNumber(Paginator):
    """Numbered pages from 1 (amoCRM ``page``); ``has_more`` reads the answer."""

    has_more: Callable[[Any], bool]
    param: str = "page"

    def next(self, query: dict[str, Any], body: Any, items: Sequence[Any],
             ) -> dict[str, Any] | None:
        if not self.has_more(body):
            return None
        return {**query, self.param: int(query.get(self.param) or 1) + 1}


def paginate(fetch: Callable[[dict[str, Any]], Any], items: Callable[[Any], list[Any]],
             paginator: Paginator, query: Mapping[str, Any], *,
             where: str = "") -> Iterator[list[Any]]:
    """Every page of one list: ``fetch(query)`` gets an answer, ``items(answer)`` its items,
    ``paginator`` the next query. ``where`` names the list in a paging error."""
    current: dict[str, Any] | None = dict(query)
    while current is not None:
        body = fetch(current)
        found = items(body)
        yield found
        try:
            current = paginator.next(current, body, found)
        except PagingError as exc:
            raise PagingError(f"{where}: {exc}" if where else str(exc)) from None


_DONE = object()
#: Pages a stream's reader fetches ahead of the page being normalized and stored
#: (``Read.prefetch``). One was not enough: a page that takes longer to store than the
#: rate limit's interval (a deals page) left the fetching thread idle, and the rolling
#: window's capacity of that idle time was lost for good (Pipedrive's 20k-deal pull ran at
#: 1.24-1.33 x its rate-limit bound). With a few pages queued the fetcher keeps requesting
#: at the limit while the caller catches up on the cheap pages. A page is at most a few MB
#: of decoded JSON (500 items), so this bounds the read-ahead's memory to tens of MB.
READ_AHEAD = 8


class Prefetched(Iterator[Any]):
    """``pages`` with pages fetched ahead (``prefetched``); ``cut_short`` turns true when
    they ended because ``stop()`` was, not because ``pages`` did (``incremental`` reads it:
    only a list read to its end may say so in its cursor)."""

    def __init__(self, pages: Iterator[Any], **options: Any) -> None:
        self.cut_short = False
        self._pages = _read_ahead(pages, cut_short=self._cut, **options)

    def _cut(self) -> None:
        self.cut_short = True

    def __next__(self) -> Any:
        return next(self._pages)

    def close(self) -> None:
        """Stop the fetching thread (as dropping the iterator does)."""
        self._pages.close()


def prefetched(pages: Iterator[Any], *, meter: Callable[[], int] | None = None,
               stop: Callable[[], bool] = lambda: False,
               taken: Callable[[int], None] = lambda n: None, depth: int = 1,
               ) -> Prefetched:
    """``pages``, with up to ``depth`` pages fetched ahead by a thread while the caller
    works on the current one, so HTTP and the rate limiter's waits overlap our parsing
    (a pull is then bound by the rate limit, not by our CPU).

    ``meter`` (the client's per-thread request count) measures what each page cost in the
    fetching thread; ``taken(cost)`` is told when the caller takes that page, so request
    accounting stays per page and exact. No page is fetched ahead once ``stop()`` is true;
    the pages then end early, and the returned iterator's ``cut_short`` says so (to the
    caller the end of ``pages`` and a stop look alike otherwise). Errors reach the caller
    at the page where they happened; the thread ends when the caller stops early."""
    return Prefetched(pages, meter=meter, stop=stop, taken=taken, depth=depth)


def _fetch_all(iterator: Iterator[Any], meter: Callable[[], int] | None,
               stop: Callable[[], bool], cut_short: Callable[[], None],
               hand_over: Callable[[tuple[Any, int, BaseException | None]], bool]) -> bool:
    """Fetch and hand over pages until the end, or a stop (the first page is always
    fetched); False when the caller went away."""
    first = True
    while True:
        if not first and stop():
            cut_short()
            return True
        first = False
        before = meter() if meter is not None else 0
        try:
            page = next(iterator)
        except StopIteration:
            return True
        cost = meter() - before if meter is not None else 0
        if not hand_over((page, cost, None)):
            return False


def _read_ahead(pages: Iterator[Any], *, meter: Callable[[], int] | None,
                stop: Callable[[], bool], taken: Callable[[int], None], depth: int,
                cut_short: Callable[[], None]) -> Generator[Any, None, None]:
    """The generator behind ``Prefetched``."""
    ahead: queue.Queue[tuple[Any, int, BaseException | None]] = queue.Queue(
        maxsize=max(depth, 1))
    closed = threading.Event()

    def hand_over(item: tuple[Any, int, BaseException | None]) -> bool:
        while not closed.is_set():
            try:
                ahead.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def produce() -> None:
        try:
            if _fetch_all(iter(pages), meter, stop, cut_short, hand_over):
                hand_over((_DONE, 0, None))
        except BaseException as exc:  # handed to the caller, raised there
            hand_over((_DONE, 0, exc))

    # The fetching thread runs in a copy of the caller's context: per-pass context
    # variables (the response observer counting a tenant's API calls and 429s, the write
    # guard) see its requests as the caller's.
    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(produce,), name="syncd-prefetch",
                              daemon=True)
    worker.start()
    try:
        while True:
            page, cost, error = ahead.get()
            if page is _DONE:
                if error is not None:
                    raise error
                return
            taken(cost)
            yield page
    finally:
        closed.set()
        worker.join(timeout=30)


# --- declarations --------------------------------------------------------------------------
@dataclass
class Read:
    """One stream's read in one pass: what a stream's reader is given."""

    stream: str
    cursor: str | None
    context: PullContext
    #: This thread's request count on the connector's client (``StreamConnector``).
    meter: Callable[[], int] = lambda: 0
    #: Requests of pages fetched ahead by another thread, taken since the last page.
    delivered: int = 0
    #: The lists read through ``prefetch`` in this read.
    lists: list[Prefetched] = field(default_factory=list)

    def prefetch(self, pages: Iterator[Any]) -> Prefetched:
        """``pages`` fetched up to ``READ_AHEAD`` ahead (``prefetched``), counted on the
        page that used them, and not fetched ahead once the pass is asked to stop (pages
        already fetched then are dropped uncommitted: the cursor moves only with a stored
        page, so the next pass reads them again; ``complete()`` turns false)."""
        pages = prefetched(pages, meter=self.meter, stop=self.context.stop_requested,
                           taken=self._take, depth=READ_AHEAD)
        self.lists.append(pages)
        return pages

    def complete(self) -> bool:
        """False once a list read through ``prefetch`` stopped before its end."""
        return not any(pages.cut_short for pages in self.lists)

    def _take(self, cost: int) -> None:
        self.delivered += cost

    @property
    def full(self) -> bool:
        return self.context.full

    def watermark(self, legacy: Callable[[str], datetime | None] | None = None) -> Watermark:
        """The stream's compound cursor (empty on a full pass)."""
        return Watermark() if self.full else Watermark.load(self.cursor, legacy)


@dataclass(frozen=True)
class Stream:
    """One declared stream: ``read`` yields its pages (``Page.requests`` is filled in by
    the core); ``reread`` normalizes quarantined payloads again (None: not possible)."""

    name: str
    read: Callable[[Read], Iterable[Page]]
    reread: Callable[[Sequence[Mapping[str, Any]]], Sequence[Record]] | None = None


class StreamConnector(Connector):
    """A ``Connector`` whose ``pull``/``reread`` come from ``declare_streams``.

    Subclasses implement ``declare_streams`` (their streams, in pull order) and
    ``requests_made`` (the HTTP requests made so far, from their ``ApiClient``)."""

    #: The stream names in pull order; ``declare_streams`` must declare each.
    streams: ClassVar[tuple[str, ...]]

    @abstractmethod
    def declare_streams(self) -> Sequence[Stream]:
        """This connector's streams."""

    @abstractmethod
    def requests_made(self) -> int:
        """HTTP requests made so far by this connector *in the calling thread*
        (``ApiClient.requests_here``): pages read ahead are counted by ``Read.prefetch``."""

    def on_requests(self, callback: Callable[[int], None]) -> None:
        """Route request notifications to ``callback`` (progress display)."""

    def _declared(self) -> dict[str, Stream]:
        cached: dict[str, Stream] | None = self.__dict__.get("_syncd_streams")
        if cached is None:
            cached = {s.name: s for s in self.declare_streams()}
            self.__dict__["_syncd_streams"] = cached
        return cached

    def pull(self, stream: str, cursor: str | None, context: PullContext) -> Iterator[Page]:
        declared = self._declared().get(stream)
        if declared is None:
            message = f"{self.name} has no stream {stream!r}"
            raise ValueError(message)
        self.on_requests(context.on_request)
        return self._metered(declared, Read(stream, cursor, context, self.requests_made))

    def _metered(self, declared: Stream, read: Read) -> Iterator[Page]:
        before = self.requests_made()
        for page in declared.read(read):
            now = self.requests_made()
            page.requests = now - before + read.delivered
            before, read.delivered = now, 0
            yield page
            if read.context.stop_requested():
                return

    def reread(self, stream: str, payloads: Sequence[Mapping[str, Any]]) -> Page | None:
        declared = self._declared().get(stream)
        if declared is None or declared.reread is None:
            return None
        return Page(stream, list(declared.reread(payloads)))
