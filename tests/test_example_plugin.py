"""The example plugin of docs/plugins.md (docs/examples/syncd_tinycrm) against a tiny fake
TinyCRM on 127.0.0.1: what the walkthrough promises holds."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from syncd_fakes.http import FakeHandler, FakeHTTPServer

from syncd.connector import PullContext
from syncd.plugins import ConnectorRegistry
from syncd.records import Deal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))
from syncd_tinycrm import TinyConnector, TinySettings
from syncd_tinycrm import plugin as tiny_plugin

TOKEN = "tiny-token"
NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeTinyCRM(FakeHTTPServer):
    """TinyCRM as docs/plugins.md describes it: bearer token, ``{data, next_cursor}`` lists,
    deals filtered by ``updated_since`` (inclusive) and sorted by ``updated_at`` then id."""

    handler_class = FakeHandler
    page_size = 3

    def __init__(self) -> None:
        old = NOW - timedelta(days=2)
        self.tables: dict[str, list[dict[str, Any]]] = {
            "users": [{"id": 1, "name": "Anna", "email": "anna@example.com"}],
            "pipelines": [{"id": 10, "name": "Sales"}],
            "stages": [{"id": 100 + i, "pipeline_id": 10, "name": n, "position": i}
                       for i, n in enumerate(["Lead", "Offer", "Contract"])],
            "deals": [{"id": i, "title": f"Deal {i}", "status": "open", "pipeline_id": 10,
                       "stage_id": 100 + i % 3, "owner_id": 1, "value": "1 250,50",
                       "created_at": stamp(old), "updated_at": stamp(old)}
                      for i in range(1, 9)],  # eight deals sharing one update second
        }
        self.requests: list[str] = []
        self._bind()

    def edit(self, deal_id: int, **changes: Any) -> None:
        row = next(d for d in self.tables["deals"] if d["id"] == deal_id)
        # stamped when edited, by the clock the reader shares (as a CRM stamps an edit)
        row.update(changes, updated_at=stamp(datetime.now(UTC).replace(microsecond=0)))

    def handle(self, handler: FakeHandler, method: str) -> None:
        url = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append(url.path)
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            handler.reply(401, {"error": "invalid token"})
            return
        rows = list(self.tables.get(url.path.removeprefix("/v1/"), []))
        if "updated_since" in query:
            rows = [r for r in rows if r["updated_at"] >= query["updated_since"]]
        if query.get("sort") == "updated_at":
            rows.sort(key=lambda r: (r["updated_at"], r["id"]))
        start = int(query.get("cursor") or 0)
        size = min(int(query.get("limit") or 100), self.page_size)
        more = start + size < len(rows)
        handler.reply(200, {"data": rows[start:start + size],
                            "next_cursor": str(start + size) if more else None})


@pytest.fixture
def fake() -> Iterator[FakeTinyCRM]:
    with FakeTinyCRM() as server:
        yield server


def connector(fake: FakeTinyCRM) -> TinyConnector:
    settings = TinySettings(base_url=fake.base_url, api_token=TOKEN, rate_per_second=50)
    return TinyConnector(settings, tenant="acme")


def run_pass(fake: FakeTinyCRM, cursors: dict[str, str]) -> dict[str, list[Any]]:
    tiny = connector(fake)
    read: dict[str, list[Any]] = {}
    requests = 0
    for stream in tiny.streams:
        for page in tiny.pull(stream, cursors.get(stream), PullContext()):
            read.setdefault(stream, []).extend(page.records)
            requests += page.requests
            if page.cursor is not None:
                cursors[stream] = page.cursor
    assert requests == tiny.api.requests_made, "every request is counted on some page"
    tiny.close()
    return read


def test_the_hook_registers_the_connector() -> None:
    registry = ConnectorRegistry()
    tiny_plugin.syncd_register_connectors(registry)
    assert registry.get("tinycrm") is TinyConnector


def test_the_example_pulls_every_stream_normalized(fake: FakeTinyCRM) -> None:
    read = run_pass(fake, {})
    assert [u.name for u in read["users"]] == ["Anna"]
    assert [s.name for s in read["stages"]] == ["Lead", "Offer", "Contract"]
    deals = read["deals"]
    assert len(deals) == 8 and all(isinstance(d, Deal) for d in deals)
    assert deals[0].value == 1250.5, "values are read by syncd.values (Russian decimal comma)"
    assert fake.requests.count("/v1/deals") == 3, "8 deals at 3 per page"


def test_a_no_change_pass_reads_no_deal_twice_and_a_change_is_read(fake: FakeTinyCRM) -> None:
    cursors: dict[str, str] = {}
    run_pass(fake, cursors)
    assert run_pass(fake, cursors).get("deals", []) == []
    fake.edit(4, title="Renamed")
    assert [d.title for d in run_pass(fake, cursors)["deals"]] == ["Renamed"]


def test_the_token_never_appears_in_an_error(fake: FakeTinyCRM) -> None:
    settings = TinySettings(base_url=fake.base_url, api_token="wrong-secret-token")
    with pytest.raises(Exception, match="invalid token") as caught:
        list(TinyConnector(settings, tenant="acme").pull("users", None, PullContext()))
    assert "wrong-secret-token" not in str(caught.value)
