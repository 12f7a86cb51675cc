"""The core stream model (``syncd.streams``): compound cursors, paginators, read-ahead,
request accounting and dispatch. The plugins' own use of it is tested against their fakes
(tests/test_stream_cursors.py, tests/test_pipedrive_fake.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncd.connector import Inspection, PullContext
from syncd.records import Deal, Page
from syncd.store.cursors import newer_cursor
from syncd.streams import (
    MAX_SEEN,
    READ_AHEAD,
    SETTLE,
    NextToken,
    Offset,
    PageNumber,
    PagingError,
    Read,
    Stream,
    StreamConnector,
    Watermark,
    incremental,
    paginate,
    prefetched,
    version_key,
    watermark_at,
)

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
OVERLAP = timedelta(minutes=10)


def deal(item: dict[str, Any]) -> Deal:
    return Deal(external_id=str(item["id"]), title="", status="open", pipeline_id=None,
                stage_id=None, owner_id=None, updated_at=item["at"])


def parse(items: list[dict[str, Any]]) -> Page:
    return Page("deals", [deal(i) for i in items])


def key(item: dict[str, Any]) -> tuple[str, datetime]:
    return str(item["id"]), item["at"]


# --- the compound cursor -----------------------------------------------------------------
stamps = st.integers(min_value=0, max_value=3600).map(lambda s: T0 + timedelta(seconds=s))


@given(st.dictionaries(st.integers(min_value=1, max_value=10**9).map(str), stamps,
                       max_size=40), stamps)
def test_a_watermark_survives_its_text_keeping_exactly_the_overlap_window(
        seen: dict[str, datetime], at: datetime) -> None:
    mark = Watermark(seen=dict(seen))
    loaded = Watermark.load(mark.dump(at, OVERLAP))
    assert loaded.at == at
    assert loaded.seen == {i: s for i, s in seen.items() if s >= at - OVERLAP}
    for item, stamp in seen.items():
        assert loaded.fresh((item, stamp)) == (stamp < at - OVERLAP)
        assert loaded.fresh((item, stamp + timedelta(seconds=1)))  # a newer version


def test_legacy_and_unreadable_cursors_load() -> None:
    assert Watermark.load("2026-11-20T10:00:00Z").at == T0
    assert Watermark.load("1700000000", lambda t: datetime.fromtimestamp(int(t), UTC)).at \
        == datetime.fromtimestamp(1700000000, UTC)
    assert Watermark.load("{not json").at is None  # logged; the stream reads everything
    assert Watermark.load(None).at is None


def test_the_store_orders_compound_cursors_by_their_watermark() -> None:
    older = Watermark().dump(T0, OVERLAP)
    newer = Watermark().dump(T0 + timedelta(hours=1), OVERLAP)
    assert older and newer
    assert newer_cursor(newer, older) == newer, "a cursor never moves back"
    assert newer_cursor(older, newer) == newer
    assert newer_cursor("2026-11-20T11:00:00Z", older) == "2026-11-20T11:00:00Z"


# --- incremental lists ---------------------------------------------------------------------
def test_a_second_read_drops_what_the_first_read_in_the_same_version() -> None:
    same = T0 + timedelta(minutes=30)
    first = [[{"id": i, "at": same} for i in range(1, 4)], [{"id": 9, "at": same}]]
    pages = list(incremental("deals", first, parse, Watermark(), key, overlap=OVERLAP))
    assert [len(p.records) for p in pages] == [3, 1]
    cursor = pages[-1].cursor

    again = [[*first[0], {"id": 2, "at": same + timedelta(seconds=1)}], first[1]]
    mark = Watermark.load(cursor)
    pages = list(incremental("deals", again, parse, mark, key, overlap=OVERLAP))
    assert [r.external_id for p in pages for r in p.records] == ["2"]
    assert watermark_at(pages[-1].cursor) == "2026-11-20T10:30:01Z"


def test_versions_stamped_close_to_the_read_are_read_again() -> None:
    read_at = T0 + timedelta(hours=1)
    raw = [[{"id": 1, "at": T0}, {"id": 2, "at": read_at - timedelta(seconds=20)},
            {"id": 3, "at": read_at + timedelta(hours=5)}]]  # a clock far ahead: remembered
    pages = list(incremental("deals", raw, parse, Watermark(), key, overlap=timedelta(hours=9),
                             read_at=read_at))
    mark = Watermark.load(pages[-1].cursor)
    pages = list(incremental("deals", raw, parse, mark, key, overlap=timedelta(hours=2)))
    assert [r.external_id for p in pages for r in p.records] == ["2"]


def test_an_unordered_list_moves_the_cursor_once_capped_at_the_read_start() -> None:
    raw = [[{"id": 1, "at": T0 + timedelta(hours=2)}], [{"id": 2, "at": T0}]]
    start = T0 - timedelta(days=1)
    pages = list(incremental("deals", raw, parse, Watermark(at=start), key, overlap=OVERLAP,
                             ordered=False, cap=T0 + timedelta(hours=1)))
    assert [p.cursor for p in pages[:-1]] == [None]
    assert watermark_at(pages[-1].cursor) == "2026-11-20T11:00:00Z"


def test_a_list_that_breaks_its_order_holds_the_cursor_from_there() -> None:
    raw = [[{"id": 1, "at": T0}], [{"id": 2, "at": T0 + timedelta(hours=1)},
                                   {"id": 3, "at": T0 - timedelta(hours=1)}],
           [{"id": 4, "at": T0 + timedelta(hours=2)}]]
    pages = list(incremental("deals", raw, parse, Watermark(), key, overlap=OVERLAP))
    assert [watermark_at(p.cursor) for p in pages] == ["2026-11-20T10:00:00Z", None,
                                                       "2026-11-20T12:00:00Z"]


def test_a_complete_read_starts_the_next_one_from_its_own_start_less_the_overlap() -> None:
    """A quiet stream whose newest records are our own write-back burst: the next read
    does not fetch the burst again (issue 13 item 3), it starts from when this read began."""
    burst = [{"id": i, "at": T0 + timedelta(milliseconds=50 * i)} for i in range(1, 8001)]
    read_at = T0 + timedelta(hours=1)
    pages = list(incremental("deals", [burst[:4000], burst[4000:]], parse, Watermark(), key,
                             overlap=OVERLAP, read_at=read_at))
    assert [len(p.records) for p in pages] == [4000, 4000, 0]
    mark = Watermark.load(pages[-1].cursor)
    assert (mark.at, mark.through) == (burst[-1]["at"], read_at)
    assert mark.since(OVERLAP) == read_at - OVERLAP
    assert mark.seen == {}, "nothing the next read returns again needs remembering"
    # the read's start is by our clock: even with no overlap set, a margin for the CRM's
    assert mark.since(timedelta(0)) == read_at - SETTLE


def test_a_stop_commits_no_through_and_an_unordered_list_no_cursor() -> None:
    """``complete()`` false (the pages ended because the pass was asked to stop): the
    rows not reached may be older than what was read, so nothing claims they were."""
    raw = [[{"id": 2, "at": T0 + timedelta(hours=2)}], [{"id": 1, "at": T0}]]
    later = T0 + timedelta(hours=3)
    stopped = list(incremental("deals", raw[:1], parse, Watermark(), key, overlap=OVERLAP,
                               ordered=False, cap=later, read_at=later,
                               complete=lambda: False))
    assert [(len(p.records), p.cursor) for p in stopped] == [(1, None)]

    ordered = list(incremental("deals", raw[:1], parse, Watermark(), key, overlap=OVERLAP,
                               read_at=later, complete=lambda: False))
    assert len(ordered) == 1 and Watermark.load(ordered[0].cursor).through is None

    done = list(incremental("deals", raw, parse, Watermark(), key, overlap=OVERLAP,
                            ordered=False, cap=later, read_at=later))
    assert [p.cursor is None for p in done] == [True, False]
    assert Watermark.load(done[-1].cursor).through == later


def test_a_read_that_is_not_complete_keeps_the_through_it_started_from() -> None:
    earlier = T0 - timedelta(hours=1)
    mark = Watermark.load(Watermark(at=T0 - timedelta(days=1), through=earlier)
                          .dump(T0 - timedelta(days=1), OVERLAP))
    assert mark.since(OVERLAP) == earlier - OVERLAP
    pages = list(incremental("deals", [[{"id": 5, "at": T0}]], parse, mark, key,
                             overlap=OVERLAP, read_at=T0 + timedelta(hours=1),
                             complete=lambda: False))
    assert Watermark.load(pages[-1].cursor).through == earlier
    assert Watermark.load(pages[-1].cursor).at == T0


def test_prefetched_says_when_a_stop_cut_its_pages_short() -> None:
    stop = threading.Event()

    def pages() -> Iterator[int]:
        yield 1
        stop.set()
        yield 2
        yield 3

    cut = prefetched(pages(), stop=stop.is_set)
    got = list(cut)
    assert got[:1] == [1] and 3 not in got and cut.cut_short
    whole = prefetched(iter([1, 2]))
    assert list(whole) == [1, 2] and not whole.cut_short


def test_an_incremental_list_cut_short_by_a_stop_does_not_say_it_was_read_whole() -> None:
    stop = threading.Event()

    def raw() -> Iterator[list[dict[str, Any]]]:
        yield [{"id": 1, "at": T0}]
        stop.set()
        yield [{"id": 2, "at": T0 + timedelta(minutes=1)}]
        yield [{"id": 3, "at": T0 + timedelta(minutes=2)}]

    later = T0 + timedelta(hours=1)
    for ordered in (True, False):
        stop.clear()
        pages = list(incremental("deals", prefetched(raw(), stop=stop.is_set), parse,
                                 Watermark(), key, overlap=OVERLAP, ordered=ordered,
                                 cap=later, read_at=later))
        assert "3" not in [r.external_id for p in pages for r in p.records]
        assert all(Watermark.load(p.cursor).through is None for p in pages)
        if not ordered:
            assert all(p.cursor is None for p in pages)


# --- paging ----------------------------------------------------------------------------------
def serve(pages: dict[Any, dict[str, Any]], param: str) -> tuple[list[dict[str, Any]], Any]:
    sent: list[dict[str, Any]] = []

    def fetch(query: dict[str, Any]) -> dict[str, Any]:
        sent.append(dict(query))
        return pages[query.get(param)]
    return sent, fetch


def test_next_token_offset_and_page_number_paginators() -> None:
    sent, fetch = serve({None: {"items": [1, 2], "next": "b"}, "b": {"items": [3], "next": None}},
                        "cursor")
    assert list(paginate(fetch, lambda b: b["items"], NextToken(lambda b: b["next"]),
                         {"limit": 2})) == [[1, 2], [3]]
    assert sent == [{"limit": 2}, {"limit": 2, "cursor": "b"}]

    sent, fetch = serve({0: {"items": [1, 2]}, 2: {"items": [3]}}, "start")
    assert list(paginate(fetch, lambda b: b["items"], Offset(limit=2), {"start": 0})) == [
        [1, 2], [3]]

    sent, fetch = serve({1: {"items": [1], "more": True}, 2: {"items": [2], "more": False}},
                        "page")
    assert list(paginate(fetch, lambda b: b["items"], PageNumber(lambda b: b["more"]),
                         {"page": 1})) == [[1], [2]]


def test_an_offset_that_goes_back_is_a_paging_error_naming_the_list() -> None:
    _, fetch = serve({0: {"items": [1], "next": 0}}, "start")
    with pytest.raises(PagingError, match=r"acme /v1/deals: .*next offset is 0"):
        list(paginate(fetch, lambda b: b["items"], Offset(next_offset=lambda b: b["next"]),
                      {"start": 0}, where="acme /v1/deals"))


# --- read-ahead ------------------------------------------------------------------------------
def test_prefetched_keeps_order_and_raises_where_the_error_happened() -> None:
    def pages() -> Iterator[int]:
        yield 1
        yield 2
        message = "page 3 is broken"
        raise ValueError(message)

    got = []
    with pytest.raises(ValueError, match="page 3"):
        for page in prefetched(pages()):
            got.append(page)
    assert got == [1, 2]


def test_prefetched_fetches_nothing_ahead_once_asked_to_stop() -> None:
    fetched: list[int] = []

    def pages() -> Iterator[int]:
        for n in range(1, 10):
            fetched.append(n)
            yield n

    stop = threading.Event()
    for page in prefetched(pages(), stop=stop.is_set):
        stop.set()
        assert page == 1
        break
    assert len(fetched) <= 2, "at most the page already in flight"


def test_prefetched_runs_depth_pages_ahead_and_stops_at_a_page_boundary() -> None:
    """With ``depth`` pages of read-ahead the fetcher keeps going while the caller holds a
    page; once asked to stop it fetches nothing more (the caller stops at its page
    boundary; the pages fetched ahead are dropped, uncommitted, and the thread ends)."""
    depth = 4
    fetched: list[int] = []
    far_ahead = threading.Event()

    def pages() -> Iterator[int]:
        for n in range(1, 50):
            fetched.append(n)
            if n == depth + 1:
                far_ahead.set()
            yield n

    stop = threading.Event()
    got = []
    for page in prefetched(pages(), stop=stop.is_set, depth=depth):
        got.append(page)
        # While page 1 is held, the fetcher reads the depth pages after it.
        assert far_ahead.wait(timeout=10), f"only {len(fetched)} pages fetched ahead"
        stop.set()
        if stop.is_set():  # as StreamConnector._metered and the pass do after each page
            break
    assert got == [1]
    assert depth + 1 <= len(fetched) <= depth + 2, "queued pages and the one in flight"


def test_prefetched_hands_over_every_page_once_in_order_and_errors_after_them() -> None:
    def pages() -> Iterator[int]:
        yield from range(100)
        message = "page 100 is broken"
        raise ValueError(message)

    got: list[int] = []
    with pytest.raises(ValueError, match="page 100"):
        for page in prefetched(pages(), depth=8):
            got.append(page)
    assert got == list(range(100))


# --- dispatch and request accounting --------------------------------------------------------
class Counting(StreamConnector):
    """A connector whose "HTTP requests" are a per-thread counter."""

    name = "counting"
    streams = ("deals",)

    def __init__(self) -> None:
        self.local = threading.local()

    def request(self) -> None:
        self.local.n = getattr(self.local, "n", 0) + 1

    def requests_made(self) -> int:
        return int(getattr(self.local, "n", 0))

    def declare_streams(self) -> list[Stream]:
        return [Stream("deals", self.read, reread=lambda payloads: [deal(p) for p in payloads])]

    def read(self, read: Read) -> Iterator[Page]:
        def pages() -> Iterator[list[int]]:
            for n in (2, 1, 3):  # page n costs n requests, made by the read-ahead thread
                for _ in range(n):
                    self.request()
                yield [n]
        self.request()  # e.g. a field catalogue, in the caller's thread
        for items in read.prefetch(pages()):
            yield Page("deals", [], str(items[0]))

    def inspect(self) -> Inspection:
        return Inspection()


def test_each_page_counts_the_requests_it_took_in_whichever_thread() -> None:
    pages = list(Counting().pull("deals", None, PullContext()))
    assert [(p.cursor, p.requests) for p in pages] == [("2", 3), ("1", 1), ("3", 3)]


def test_a_long_read_ahead_counts_each_page_exactly() -> None:
    """More pages than ``READ_AHEAD``: every page arrives once, in order, with the requests
    it cost in the fetching thread (the caller's own request counted on the first)."""
    costs = [1 + n % 3 for n in range(3 * READ_AHEAD)]

    class Long(Counting):
        def read(self, read: Read) -> Iterator[Page]:
            def pages() -> Iterator[list[int]]:
                for n, cost in enumerate(costs):
                    for _ in range(cost):
                        self.request()
                    yield [n]
            self.request()
            for items in read.prefetch(pages()):
                yield Page("deals", [], str(items[0]))

    pages = list(Long().pull("deals", None, PullContext()))
    assert [p.cursor for p in pages] == [str(n) for n in range(len(costs))]
    assert [p.requests for p in pages] == [costs[0] + 1, *costs[1:]]


def test_unknown_streams_and_rereads_go_through_the_declarations() -> None:
    connector = Counting()
    with pytest.raises(ValueError, match="counting has no stream 'notes'"):
        connector.pull("notes", None, PullContext())
    page = connector.reread("deals", [{"id": 5, "at": T0}])
    assert page is not None and [r.external_id for r in page.records] == ["5"]
    assert connector.reread("users", []) is None


def test_version_key_reads_identity_and_version_or_gives_up() -> None:
    key_of = version_key("id", "at", lambda v: str(v) if v else None,
                         lambda v: datetime.fromisoformat(v) if v else None, prefix="task:")
    assert key_of({"id": 5, "at": "2026-11-20T10:00:00+00:00"}) == ("task:5", T0)
    assert key_of({"id": 5, "at": "yesterday"}) is None  # always read; the parser complains
    assert key_of({"id": None, "at": "2026-11-20T10:00:00+00:00"}) is None
    assert key_of(["not", "an", "object"]) is None


def test_a_cursor_remembers_at_most_the_newest_max_seen_items() -> None:
    many = {str(i): T0 + timedelta(seconds=i % 600) for i in range(MAX_SEEN + 700)}
    loaded = Watermark.load(Watermark(seen=dict(many)).dump(T0 + timedelta(minutes=10),
                                                            OVERLAP))
    assert len(loaded.seen) == MAX_SEEN
    assert min(loaded.seen.values()) >= min(sorted(many.values(), reverse=True)[:MAX_SEEN])


def test_pages_read_ahead_are_seen_by_the_callers_context() -> None:
    """The per-pass response observer (API calls and 429s per tenant) counts requests the
    read-ahead thread makes."""
    from syncd.http import response_observer

    seen: list[int] = []

    def pages() -> Iterator[int]:
        for n in range(3):
            observer = response_observer.get()
            assert observer is not None
            observer(200)
            yield n

    token = response_observer.set(seen.append)
    try:
        assert list(prefetched(pages())) == [0, 1, 2]
    finally:
        response_observer.reset(token)
    assert seen == [200, 200, 200]
