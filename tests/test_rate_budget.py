"""A CRM rate budget shared by every process on one database (issue 11, item 7).

The rules are pure functions of a row's state; the store makes each reservation one locked
read-modify-write (so concurrent reservers never lose one another's updates); limiters
wait for their reservation; connectors share one row per integration (a hash, never a
secret); and end to end, a sync and three inspects on one amoCRM integration at the
same time get no 429 from a fake that enforces amoCRM's 7 requests per second.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from support import FakeClock, write_config
from syncd_fakes.amocrm.sample import sample_dataset
from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM

from syncd import store
from syncd.config import load_settings, load_tenant
from syncd.leakybucket import LeakyBucket
from syncd.lease import LeaseLost
from syncd.plugins import make_plugin_manager
from syncd.ratelimit import RateLimiter, SharedBudget
from syncd.store.budget import (
    Bucket,
    BudgetStore,
    Window,
    budget_key,
    rule_for,
    sidecar_path,
)
from syncd.store.models import RateBudgetRow
from syncd.writeguard import write_guard

REPO = Path(__file__).resolve().parents[1]


# --- the rules ------------------------------------------------------------------------------
def test_window_allows_a_burst_then_one_per_expiry() -> None:
    rule, state = Window(limit=3, window=1.0, margin=0.1), {}
    assert [rule.reserve(state, 10.0) for _ in range(5)] == pytest.approx(
        [10.0, 10.0, 10.0, 11.1, 11.1])
    assert rule.reserve(state, 11.15) == pytest.approx(11.15), "old stamps aged out"
    assert len(state["stamps"]) == 3, "the state keeps only what the rule needs"


def test_a_send_that_left_late_counts_from_its_answer() -> None:
    """Two sends reserved at 10.0; one left at 10.5 (its thread woke late on a loaded
    machine): the server saw it at 10.5, so the window is full until 11.6, not 11.1."""
    rule = Window(limit=2, window=1.0, margin=0.1)
    late, on_time = {}, {}
    for state in (late, on_time):
        assert [rule.reserve(state, 10.0) for _ in range(2)] == [10.0, 10.0]
    rule.settle(late, 10.0, 10.5)
    rule.settle(on_time, 10.0, 10.01)
    assert [rule.reserve(late, 11.15) for _ in range(2)] == pytest.approx([11.15, 11.6])
    assert [rule.reserve(on_time, 11.15) for _ in range(2)] == pytest.approx([11.15, 11.15])
    rule.settle(late, 99.0, 100.0)  # a stamp already aged out: nothing to move
    # the state keeps every send still inside its span (10.5 is, until 11.6)
    assert (late["stamps"], late["answered"]) == (pytest.approx([11.15, 11.6]),
                                                  pytest.approx([10.5]))


def test_an_answered_send_counts_with_the_answered_margin_only() -> None:
    """The wide margin is for a reservation whose request may still leave late; once it
    is answered its stamp is the answer, and the window is the server's plus the local
    margin. Pipedrive's 20 per 2 s: the 21st send waits 2.1 s after the first answer, not
    2.2 s (the wide margin kept a long pull 5% under the limit)."""
    rule, state = Window(limit=2, window=2.0, margin=0.2, answered_margin=0.1), {}
    first, second = rule.reserve(state, 10.0), rule.reserve(state, 10.0)
    assert (first, second) == (10.0, 10.0)
    assert rule.reserve({**state}, 10.05) == pytest.approx(12.2), "unanswered: wide margin"
    rule.settle(state, first, 10.03)
    rule.settle(state, second, 10.04)
    assert state["answered"] == pytest.approx([10.03, 10.04])
    assert [rule.reserve(state, 10.05) for _ in range(2)] == pytest.approx([12.13, 12.14])
    # the two new reservations are unanswered: the next send waits for the wide margin
    assert rule.reserve(state, 12.15) == pytest.approx(14.33)
    assert len(state["stamps"]) == 3 and state["answered"] == [], "aged-out answers dropped"


def test_a_state_written_before_answered_stamps_counts_them_all_as_unanswered() -> None:
    rule = Window(limit=1, window=1.0, margin=0.2, answered_margin=0.05)
    assert rule.reserve({"stamps": [10.0]}, 10.5) == pytest.approx(11.2)


def test_window_honours_a_block_for_everyone() -> None:
    rule, state = Window(limit=5, window=1.0), {"blocked_until": 42.0}
    assert rule.reserve(state, 40.0) == 42.0


def test_bucket_is_bitrix24s_leaky_bucket() -> None:
    rule, state = Bucket(burst=3, rate=2.0), {}
    times = [rule.reserve(state, 0.0) for _ in range(5)]
    assert times == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0]), "3 at once, then 2/s"
    assert rule.reserve(state, 10.0) == 10.0, "drained meanwhile"
    rule.saturate(state, 20.0)
    assert rule.reserve(state, 20.0) == pytest.approx(20.5), "a 503 fills it"


def test_budget_key_is_a_hash_without_the_secret() -> None:
    key = budget_key("pipedrive", "https://x.pipedrive.com", "secret-token-123")
    assert len(key) == 64 and "secret" not in key
    assert key != budget_key("pipedrive", "https://x.pipedrive.com", "other-token")
    assert key == budget_key("pipedrive", "https://x.pipedrive.com", "secret-token-123")


# --- the store ------------------------------------------------------------------------------
def test_concurrent_reservations_never_overbook_the_window(db_url: str) -> None:
    """Three reservers with their own engines (as three processes would have): the merged
    schedule keeps every window of the rule, which a lost update would break."""
    setup = store.Database(db_url)
    setup.upgrade()
    setup.dispose()
    rule, key, per_thread = Window(limit=5, window=1.0, margin=0.1), "k" * 64, 40
    reserved: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def reserver() -> None:
        db = store.Database(db_url)
        budget = BudgetStore(db)
        try:
            for _ in range(per_thread):
                at = budget.reserve(key, rule)
                with lock:
                    reserved.append(at)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=reserver) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    times = sorted(reserved)
    assert len(times) == 3 * per_thread
    span = rule.window + rule.margin
    tight = [i for i in range(len(times) - rule.limit) if times[i + rule.limit] - times[i]
             < span - 1e-6]
    assert tight == [], "more than 5 sends reserved in one window"


def test_block_and_saturate_are_stored_for_every_process(database: store.Database) -> None:
    budget = BudgetStore(database)
    budget.block("a" * 64, 500.0)
    assert budget.reserve("a" * 64, Window(3, 1.0), lambda: 100.0) == 500.0
    budget.saturate("b" * 64, Bucket(4, 1.0), lambda: 100.0)
    assert budget.reserve("b" * 64, Bucket(4, 1.0), lambda: 100.0) == pytest.approx(101.0)
    assert set(budget.states(["a" * 64, "b" * 64])) == {"a" * 64, "b" * 64}


# --- the limiters -----------------------------------------------------------------------------
class Backend:
    """A shared budget that says "wait ``delay``" and records what it was told."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.blocked, self.saturated = delay, [], 0
        self.settled: list[tuple[float, float]] = []

    def reserve(self, key: str, rule: Any, clock: Any) -> float:
        return clock() + self.delay

    def block(self, key: str, until: float) -> None:
        self.blocked.append(until)

    def saturate(self, key: str, rule: Any, clock: Any) -> None:
        self.saturated += 1

    def settle(self, key: str, rule: Any, reserved: float, clock: Any) -> None:
        self.settled.append((reserved, clock()))


def _shared_limiter() -> tuple[FakeClock, RateLimiter, Backend]:
    """A limiter of 5 per second whose shared budget makes every send wait 0.25 s."""
    clock = FakeClock()
    limiter = RateLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    backend = Backend(delay=0.25)
    limiter.shared = SharedBudget(backend, "k", Window(5, 1.0), clock=clock)
    return clock, limiter, backend


def test_a_limiter_waits_for_its_shared_reservation() -> None:
    clock, limiter, backend = _shared_limiter()
    slot = limiter.acquire()
    assert clock.sleeps == [0.25] and slot.at == clock.now, "stamped when it may go"
    limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"})
    assert backend.blocked == [pytest.approx(clock.now + 2.05)], "every process pauses"
    limiter.observe({"x-ratelimit-limit": "9"})
    assert limiter.shared is not None and limiter.shared.rule.limit == 9


def test_an_answered_request_settles_its_shared_reservation() -> None:
    clock, limiter, backend = _shared_limiter()
    slot = limiter.acquire()
    reserved = clock.now
    clock.now += 0.4  # the request's round trip
    limiter.release(slot)
    assert backend.settled == [(reserved, clock.now)]
    limiter.release(slot)
    assert len(backend.settled) == 1, "settled once"


def test_settle_moves_the_stored_stamp(database: store.Database) -> None:
    budget, rule, key = BudgetStore(database), Window(2, 1.0, 0.1), "s" * 64
    first = budget.reserve(key, rule, lambda: 100.0)
    budget.reserve(key, rule, lambda: 100.0)
    budget.settle(key, rule, first, lambda: 100.5)
    state = budget.states([key])[key]
    assert (state["stamps"], state["answered"]) == (pytest.approx([100.0]),
                                                    pytest.approx([100.5]))
    assert budget.reserve(key, rule, lambda: 101.15) == pytest.approx(101.15)
    assert budget.reserve(key, rule, lambda: 101.15) == pytest.approx(101.6)


def test_a_failing_shared_budget_falls_back_to_the_local_one() -> None:
    class Broken(Backend):
        def reserve(self, key: str, rule: Any, clock: Any) -> float:
            raise OSError("database is gone")

    clock = FakeClock()
    limiter = RateLimiter(5, 1.0, clock=clock, sleep=clock.sleep)
    limiter.shared = SharedBudget(Broken(), "k", Window(5, 1.0), clock=clock)
    limiter.acquire()
    assert clock.sleeps == []


def test_a_lease_lost_while_waiting_sends_nothing_and_frees_the_slot() -> None:
    clock = FakeClock()
    bucket = LeakyBucket(5, 1.0, clock=clock, sleep=clock.sleep)
    backend = Backend(delay=3.0)
    bucket.shared = SharedBudget(backend, "k", Bucket(5, 1.0), clock=clock)

    def guard() -> None:
        raise LeaseLost("lease lost while waiting")

    token = write_guard.set(guard)
    try:
        with pytest.raises(LeaseLost):
            bucket.acquire()
    finally:
        write_guard.reset(token)
    assert bucket._in_flight == 0, "the refused request is not left counted in flight"
    bucket.saturate()
    assert backend.saturated == 1


def test_a_lease_lost_during_a_local_wait_sends_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1, 1.0, clock=clock, sleep=clock.sleep)
    limiter.release(limiter.acquire())
    calls = []

    def guard() -> None:
        calls.append(clock.now)
        raise LeaseLost("lease lost while waiting")

    token = write_guard.set(guard)
    try:
        with pytest.raises(LeaseLost):
            limiter.acquire()
    finally:
        write_guard.reset(token)
    assert clock.sleeps and calls == [clock.now], "checked after the wait, before a slot"
    assert len(limiter._slots) == 1, "no slot taken for the refused request"


def test_shared_rules_are_wider_than_the_local_ones() -> None:
    assert rule_for(RateLimiter(7, 1.0)) == Window(7, 1.0, 0.1, 0.05)
    assert rule_for(LeakyBucket(50, 2.0)) == Bucket(50, 2.0, 1.0)


def test_a_connector_made_with_a_database_shares_its_budget(
        tmp_path: Path, database: store.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    token = "amo-secret-token-for-budget-test"
    monkeypatch.setenv("AMO_TOKEN", token)
    config = write_config(tmp_path, database.url.render_as_string(False),
                          {"a": _amo_tenant("http://127.0.0.1:9")})
    tenant = load_tenant(load_settings(config), "a", make_plugin_manager().connectors)
    connector = tenant.make_connector(database)
    shared = connector.client.limiter.shared
    assert shared is not None and shared.rule == Window(7, 1.0, 0.1, 0.05)
    assert shared.key == budget_key("amocrm", "http://127.0.0.1:9", token)
    assert shared.delay() == 0.0
    states = BudgetStore(database).states([shared.key])
    assert list(states) == [shared.key] and len(states[shared.key]["stamps"]) == 1
    if database.dialect == "sqlite":  # beside the database file, never inside it
        sidecar = sidecar_path(database)
        stored = b"".join(path.read_bytes() for path in sidecar.parent.glob(sidecar.name + "*"))
        with database.session() as session:
            assert session.scalars(select(RateBudgetRow.key)).all() == []
    else:
        with database.session() as session:
            stored = json.dumps([tuple(row) for row in session.execute(
                select(RateBudgetRow.key, RateBudgetRow.state))]).encode()
    assert shared.key.encode() in stored and token.encode() not in stored, "no secret kept"


# --- end to end: two processes on one amoCRM integration ---------------------------------------
def _amo_tenant(base_url: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "config" / "tenants" / "amocrm.yaml.example")
                          .read_text(encoding="utf-8"))
    data["connection"] = {"base_url": base_url, "rate_limit": 7,
                          "long_lived_token": {"$env": "AMO_TOKEN"}}
    return data


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_sync_and_inspects_on_one_integration_get_no_429(
        tmp_path: Path, db_url: str) -> None:
    """amoCRM allows 7 requests/s per integration (kommo.com/developers/content/api/
    recommendations; the fake enforces it over a rolling second). A sync and three inspects
    of two tenants on the same integration, in four processes at once (without the shared
    budget the same run got 429s). One pass only: two concurrent passes on one SQLite file
    are not what this test is about."""
    env = {**os.environ, "AMO_TOKEN": DEMO_LONG_LIVED_TOKEN}
    with FakeAmoCRM(sample_dataset(datetime.now(UTC)), rate_limit=7, window=1.0) as fake:
        config = write_config(tmp_path, db_url, {"a": _amo_tenant(fake.base_url),
                                                 "b": _amo_tenant(fake.base_url)})
        migrate = store.Database(db_url)
        migrate.upgrade()  # so the three processes do not queue on the migration lock
        migrate.dispose()
        commands = [["sync", "a"], ["inspect", "a"], ["inspect", "b"], ["inspect", "a"]]
        processes = [subprocess.Popen([*_syncd(config), *args], env=env, cwd=REPO,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True) for args in commands]
        errors = [process.communicate(timeout=600)[1] for process in processes]
        codes = [process.returncode for process in processes]
        total = len(fake.requests)
    assert codes == [0, 0, 0, 0], errors
    assert fake.rate_limited_count == 0, "the processes kept one budget between them"
    assert total > 60, "enough traffic that separate budgets would have collided"


def _syncd(config: Path) -> list[str]:
    import sys
    return [sys.executable, "-m", "syncd.cli", "--config", str(config)]
