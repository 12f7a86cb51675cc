"""Bad records hurt only themselves: quarantine, characters PostgreSQL rejects, bounded
error texts, and per-item write failures retried with backoff (issue 11, items 4 and 5).

In-process tests over both databases; the end-to-end ones (CLI against the fake Pipedrive)
are in tests/test_badrecords_e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DataError, StatementError

from syncd import store
from syncd.badrecords import collecting, reject
from syncd.connector import Connector, FieldWrite, Inspection, PullContext, WriteResult
from syncd.records import Activity, Deal, Page
from syncd.secrets import register as register_secret
from syncd.store.sanitize import (
    MAX_ERROR_CHARS,
    bounded_error,
    clean_text,
    describe_error,
    encode_clean_json,
)
from syncd.sync import PassOptions, PassSummary, _pull
from syncd.writeback import WritebackResult, _apply_field_writes, _not_waiting

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _deal(external_id: str, **changes: Any) -> Deal:
    values: dict[str, Any] = {"title": f"Deal {external_id}", "status": "open",
                              "pipeline_id": "1", "stage_id": "1", "value": 100.0,
                              "raw": {"id": external_id}}
    values.update(changes)
    return Deal(external_id=external_id, **values)


def _tenant(database: store.Database) -> int:
    with database.session() as session:
        return store.ensure_tenant(session, "acme", "stub")


# --- characters PostgreSQL rejects ---------------------------------------------------------
def test_clean_text_replaces_nul_and_lone_surrogates_only() -> None:
    assert clean_text("Сделка\x00 №1") == "Сделка\ufffd №1"
    assert clean_text("a\ud800b") == "a\ufffdb"
    clean = "Ремонт офиса 😀"
    assert clean_text(clean) is clean
    text, data = encode_clean_json({"k\x00": ["x\x00", {"y": "\udc00"}], "n": 1})
    assert "\\u0000" not in text and data == text.encode("utf-8")
    assert "k\ufffd" in text and "x\ufffd" in text


def test_nul_in_title_body_and_payload_is_stored_on_both_databases(
        database: store.Database) -> None:
    tenant = _tenant(database)
    deal = _deal("7", title="Bad\x00title", raw={"id": 7, "title": "Bad\x00title",
                                                 "weird\x00key": "\ud83d"})
    note = Activity(external_id="70", type="call", subject="Call\x00", note="body\x00\x00end",
                    deal_id="7", raw={"note": "body\x00\x00end"})
    with database.session() as session:
        store.upsert_records(session, tenant, [deal, note], now=NOW)
    with database.session() as session:
        row = session.scalar(select(store.DealRow))
        activity = session.scalar(select(store.ActivityRow))
    assert row.title == "Bad\ufffdtitle"
    assert row.raw == {"id": 7, "title": "Bad\ufffdtitle", "weird\ufffdkey": "\ufffd"}
    assert activity.note == "body\ufffd\ufffdend" and activity.subject == "Call\ufffd"
    # the same record again is unchanged: the cleaned form hashes the same on every pass
    with database.session() as session:
        stats = store.upsert_records(session, tenant, [deal, note], now=NOW)
    assert stats.unchanged == 2 and stats.inserted == stats.updated == 0


# --- error texts -------------------------------------------------------------------------------
def test_describe_error_leaves_out_sql_and_parameters() -> None:
    params = {"title_m0": "x" * 11_000, "token": "abc"}
    exc = DataError("INSERT INTO deals (title) VALUES (%(title_m0)s)", params,
                    ValueError("A string literal cannot contain NUL (0x00) characters."))
    text = describe_error(exc)
    assert text == ("database error ValueError: A string literal cannot contain NUL (0x00) "
                    "characters.")
    bare = StatementError("boom", "SELECT 1", {"p": "secret-param"}, None)
    assert "secret-param" not in describe_error(bare)


def test_finish_run_stores_a_bounded_redacted_clean_error(database: store.Database) -> None:
    secret = "sk-live-0123456789abcdef"
    register_secret(secret)
    tenant = _tenant(database)
    with database.session() as session:
        run = store.start_run(session, tenant)
    error = f"token {secret} failed at \x00 " + "y" * 20_000
    with database.session() as session:
        store.finish_run(session, run, "failed", error=error,
                         counts={"problems": ["row\x00 3"]})
    with database.session() as session:
        row = session.get(store.SyncRunRow, run)
        tenant_row = session.get(store.TenantRow, tenant)
    assert row.status == "failed"
    assert len(row.error) <= MAX_ERROR_CHARS and "\x00" not in row.error
    assert secret not in row.error and tenant_row.last_error == row.error
    assert row.counts == {"problems": ["row\ufffd 3"]}
    assert bounded_error(None) is None


# --- quarantine through the pull -------------------------------------------------------------
class StubConnector(Connector):
    """Serves one ``deals`` page; a deal whose ``value`` is not a number is rejected
    unless ``lenient`` (the parser "fixed"); ``reread`` normalizes stored payloads."""

    name = "stub"
    streams = ("deals",)

    def __init__(self, payloads: list[dict[str, Any]]) -> None:
        self.payloads = payloads
        self.lenient = False
        self.pulled_once = False

    def _normalize(self, items: Sequence[dict[str, Any]]) -> list[Deal]:
        out = []
        for item in items:
            try:
                value = 0.0 if self.lenient and item["value"] == "abc" else float(item["value"])
            except ValueError as exc:
                if reject("deals", item, f"deal {item['id']}: cannot parse value: {exc}"):
                    continue
                raise
            out.append(_deal(str(item["id"]), title=item["title"], value=value, raw=item))
        return out

    def pull(self, stream: str, cursor: str | None, context: PullContext) -> Iterator[Page]:
        # the cursor moves past everything: a later pass lists nothing again
        items = [] if cursor else self.payloads
        yield Page("deals", self._normalize(items), cursor="done")

    def reread(self, stream: str, payloads: Sequence[Any]) -> Page | None:
        return Page("deals", self._normalize(payloads))

    def inspect(self) -> Inspection:
        return Inspection()


def _pass(database: store.Database, tenant: int, connector: Connector) -> PassSummary:
    summary = PassSummary(tenant="acme", plugin="stub", as_of=NOW.isoformat(), live=True)
    _pull(database, connector, tenant, PassOptions(), summary)
    return summary


def test_bad_value_is_quarantined_rest_stored_and_retried_until_it_goes_through(
        database: store.Database) -> None:
    tenant = _tenant(database)
    connector = StubConnector([
        {"id": 1, "title": "Good", "value": "10"},
        {"id": 2, "title": "Bad value", "value": "abc"},
        {"id": 3, "title": "Also\x00good", "value": "30"},
    ])
    first = _pass(database, tenant, connector)
    assert first.partial
    assert len(first.quarantined) == 1 and "deals 2" in first.quarantined[0]
    assert "cannot parse value" in first.quarantined[0]
    with database.session() as session:
        stored = sorted(session.scalars(select(store.DealRow.external_id)))
        held = store.quarantined(session, tenant)
        cursor = store.get_cursor(session, tenant, "deals")
    assert stored == ["1", "3"] and cursor == "done", "the page and its cursor committed"
    assert [(h.stream, h.external_id, h.stage, h.attempts) for h in held] == [
        ("deals", "2", "read", 1)]
    assert held[0].payload == {"id": 2, "title": "Bad value", "value": "abc"}
    first_seen = held[0].first_seen_at

    second = _pass(database, tenant, connector)  # still unreadable: retried, still held
    assert len(second.quarantined) == 1
    with database.session() as session:
        again = store.quarantined(session, tenant)
    assert again[0].attempts == 2 and again[0].first_seen_at == first_seen
    assert again[0].last_seen_at >= first_seen

    connector.lenient = True  # fixed: the cursor is past it, the stored payload is re-read
    third = _pass(database, tenant, connector)
    assert third.quarantined == [] and not third.partial
    with database.session() as session:
        assert store.quarantined(session, tenant) == []
        assert session.scalar(select(store.DealRow.title).where(
            store.DealRow.external_id == "2")) == "Bad value"


def test_record_the_database_refuses_is_quarantined_and_the_page_kept(
        database: store.Database) -> None:
    tenant = _tenant(database)
    page = Page("deals", [_deal("1"), _deal("2", value="abc", raw={"id": 2, "value": "abc"}),
                          _deal("3")], cursor="c1")
    with database.session() as session:
        stats, failures = store.upsert_page_isolating(session, tenant, page)
    assert stats.inserted == 2
    assert [(f.external_id, f.problem) for f in failures] == [
        ("2", "could not convert string to float: 'abc'")]
    with database.session() as session:
        assert sorted(session.scalars(select(store.DealRow.external_id))) == ["1", "3"]


def test_reject_without_a_pass_collecting_returns_false() -> None:
    assert reject("deals", {"id": 1}, "bad") is False
    with collecting() as found:
        assert reject("deals", {"ID": "5"}, "bad") is True
    assert [(b.external_id, b.problem) for b in found] == [("5", "bad")]


# --- write ledger backoff -------------------------------------------------------------------
def test_failed_items_back_off_exponentially_and_come_due(database: store.Database) -> None:
    tenant = _tenant(database)
    with database.session() as session:
        store.mark_pending(session, tenant, "task", "deal", "9", "syncd:v1", "Call back")
        store.mark_attempt(session, tenant, "task", "deal", "9", "syncd:v1")
        retry_at = store.mark_failed(session, tenant, "task", "deal", "9", "syncd:v1",
                                     "HTTP 422: due_date is invalid", now=NOW)
    assert retry_at == NOW + store.backoff(1)
    with database.session() as session:
        assert store.due_rows(session, tenant, "task", NOW) == []
        due = store.due_rows(session, tenant, "task", retry_at)
        assert [r.external_id for r in due] == ["9"] and due[0].attempts == 1
        store.mark_attempt(session, tenant, "task", "deal", "9", "syncd:v1")
        second = store.mark_failed(session, tenant, "task", "deal", "9", "syncd:v1",
                                   "HTTP 422", now=retry_at)
    assert second - retry_at == 2 * store.backoff(1)
    assert store.backoff(30) == timedelta(hours=24)
    with database.session() as session:
        store.mark_failed(session, tenant, "field", "deal", "9", "violations", "HTTP 404",
                          now=NOW)
        store.mark_failed(session, tenant, "field", "deal", "9", "violations", "HTTP 404",
                          now=NOW)
        row = store.failed_rows(session, tenant, "field")[0]
        assert row.attempts == 2 and row.next_attempt_at == NOW + store.backoff(2)
        store.mark_done(session, tenant, "field", "deal", "9", "violations", "x")
        done = store.get_ledger(session, tenant, "field")[("deal", "9", "violations")]
        assert done.attempts == 0 and done.next_attempt_at is None


# --- field writes the CRM rejects -------------------------------------------------------------
class MismatchConnector(StubConnector):
    """A portal that accepts every update but reads one value back different (Bitrix24)."""

    def __init__(self) -> None:
        super().__init__([])
        self.calls: list[list[str]] = []

    def write_fields(self, changes: Sequence[FieldWrite]) -> list[WriteResult]:
        self.calls.append([c.external_id for c in changes])
        return [WriteResult(ok=False, error=f"deal {c.external_id}: the portal accepted the "
                            "update but UF_CRM_X reads back ''; is the field name right?")
                if c.external_id == "2" else WriteResult(ok=True) for c in changes]


def test_field_write_that_reads_back_wrong_is_a_failure_backed_off(
        database: store.Database) -> None:
    tenant = _tenant(database)
    connector = MismatchConnector()
    writes = [FieldWrite("deal", "1", "syncd violations", "A"),
              FieldWrite("deal", "2", "syncd violations", "B")]
    result = WritebackResult()
    _apply_field_writes(database, connector, tenant, writes, result, lambda: False, NOW)
    assert result.fields_written == 1 and result.fields_failed == 1
    [failure] = result.failures
    assert failure.startswith("deal 2 field 'syncd violations': deal 2: the portal accepted")
    with database.session() as session:
        [row] = store.failed_rows(session, tenant, "field")
    assert row.next_attempt_at == NOW + store.backoff(1) and row.attempts == 1

    later = WritebackResult()  # within the backoff the same value is not written again
    assert _not_waiting(database, tenant, writes, NOW + timedelta(minutes=5), later) == \
        writes[:1]
    assert later.fields_waiting == 1 and "retry after" in later.failures[0]
    changed = [FieldWrite("deal", "2", "syncd violations", "C")]  # a new value: at once
    assert _not_waiting(database, tenant, changed, NOW, WritebackResult()) == changed
    due = _not_waiting(database, tenant, writes, NOW + store.backoff(1), WritebackResult())
    assert due == writes
