"""A batch rejected for one record is bisected, not replayed one record at a time.

Issue 11, item 8: amoCRM answered a PATCH of 50 records with one invalid id with 400 and
``validation-errors``; the writer then sent 50 single PATCHes. Now the batch is halved
until the bad record is alone: at most 2*ceil(log2(n)) extra requests.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from support import FakeClock
from syncd_amocrm import AmoCRMConnector
from syncd_amocrm.settings import AmoCRMSettings
from syncd_fakes.amocrm.sample import sample_dataset
from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM

from syncd.bisect import send_bisecting
from syncd.connector import FieldSpec, FieldWrite, TaskCreate
from syncd.errors import APIError, FatalAPIError, RetriableAPIError


class Rejected(Exception):
    pass


def _sender(bad: set[int], calls: list[list[int]]) -> Any:
    def send(batch: list[int]) -> list[str]:
        calls.append(batch)
        if bad & set(batch):
            raise Rejected(f"bad items in {batch}")
        return [f"ok {item}" for item in batch]
    return send


@pytest.mark.parametrize("size", [2, 7, 50, 64, 250])
def test_one_bad_item_costs_at_most_two_requests_per_halving(size: int) -> None:
    for bad in {0, size // 3, size - 1}:
        calls: list[list[int]] = []
        results = send_bisecting(list(range(size)), _sender({bad}, calls),
                                 rejected=lambda e: isinstance(e, Rejected),
                                 failed=lambda item, e: f"failed {item}")
        assert results == [f"failed {i}" if i == bad else f"ok {i}" for i in range(size)]
        assert len(calls) - 1 <= 2 * math.ceil(math.log2(size)), (size, bad, len(calls))
        sent_ok = sorted(i for batch in calls if bad not in batch for i in batch)
        assert sent_ok == [i for i in range(size) if i != bad], "each good item once"


def test_several_bad_items_each_fail_alone_and_other_errors_propagate() -> None:
    calls: list[list[int]] = []
    results = send_bisecting(list(range(40)), _sender({3, 4, 31}, calls),
                             rejected=lambda e: isinstance(e, Rejected),
                             failed=lambda item, e: f"failed {item}")
    assert [r for r in results if r.startswith("failed")] == ["failed 3", "failed 4",
                                                              "failed 31"]
    assert len(calls) < 40

    def outage(batch: list[int]) -> list[str]:
        raise RuntimeError("503")

    with pytest.raises(RuntimeError):
        send_bisecting([1, 2, 3], outage, rejected=lambda e: isinstance(e, Rejected),
                       failed=lambda item, e: "x")


@pytest.fixture
def fake():
    with FakeAmoCRM(sample_dataset(datetime.now(UTC)), rate_limit=1000) as server:
        yield server


def _connector(fake: FakeAmoCRM, **settings: Any) -> AmoCRMConnector:
    clock = FakeClock()
    return AmoCRMConnector(AmoCRMSettings(base_url=fake.base_url,
                                          long_lived_token=DEMO_LONG_LIVED_TOKEN,
                                          **settings),
                           tenant="acme", sleep=clock.sleep, clock=clock)


def _requests(fake: FakeAmoCRM, method: str, path: str) -> int:
    return sum(1 for r in fake.requests if r.method == method and r.path == path)


def test_amocrm_bisects_a_field_batch_with_one_invalid_id(fake: FakeAmoCRM) -> None:
    connector = _connector(fake, batch_size=50, reread_after_write=False)
    connector.ensure_fields([FieldSpec("company", "syncd karma", "number")])
    ids = sorted(fake.companies.rows)
    assert len(ids) >= 2
    # 50 writes: the sample's companies, written repeatedly (same value), and one bad id
    good = [ids[i % len(ids)] for i in range(49)]
    changes = [FieldWrite("company", str(cid), "syncd karma", 7.0) for cid in good]
    changes.insert(20, FieldWrite("company", "99999999", "syncd karma", 7.0))
    before = _requests(fake, "PATCH", "/api/v4/companies")
    results = connector.write_fields(changes)
    patches = _requests(fake, "PATCH", "/api/v4/companies") - before
    assert patches <= 1 + 2 * math.ceil(math.log2(50)), patches
    assert [r.ok for r in results] == [i != 20 for i in range(50)]
    error = results[20].error or ""
    assert "99999999" in error and "400" in error, "the bad record, alone, with the answer"
    assert all(float(fake.field_value("companies", cid, "syncd karma")) == 7.0
               for cid in set(good))


def test_amocrm_bisects_a_task_batch_and_creates_each_good_task_once(
        fake: FakeAmoCRM) -> None:
    connector = _connector(fake)
    leads = sorted(fake.leads.rows)[:15]
    tasks = [TaskCreate(deal_id=str(lead), owner_id=None, subject="Call the client",
                        note="no next step", marker=f"syncd:v1:t{n}",
                        due=datetime(2026, 12, 1, tzinfo=UTC).date())
             for n, lead in enumerate(leads)]
    tasks.insert(5, TaskCreate(deal_id="99999999", owner_id=None, subject="x", note="x",
                               marker="syncd:v1:bad", due=datetime(2026, 12, 1).date()))
    before = _requests(fake, "POST", "/api/v4/tasks")
    results = connector.create_tasks(tasks)
    posts = _requests(fake, "POST", "/api/v4/tasks") - before
    assert posts <= 1 + 2 * math.ceil(math.log2(len(tasks))), posts
    assert [r.ok for r in results] == [i != 5 for i in range(len(tasks))]
    assert "99999999" in (results[5].error or "")
    texts = [str(fake.record("tasks", int(r.crm_id or 0))["text"]) for r in results if r.ok]
    markers = [t.marker for i, t in enumerate(tasks) if i != 5]
    assert all(sum(marker + "]" in text for text in texts) == 1 for marker in markers)


def test_an_outage_during_a_batch_is_not_bisected() -> None:
    assert not isinstance(RetriableAPIError("503", status=503), FatalAPIError)
    from syncd.connector import is_item_failure  # what amoCRM's writer bisects on

    assert is_item_failure(FatalAPIError("bad", status=400))
    assert not is_item_failure(RetriableAPIError("503", status=503))
    assert not is_item_failure(APIError("x", status=None))
