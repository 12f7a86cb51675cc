"""Tenant leases: claiming, due times, fencing of a pass's commits, the SQLite guard."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from support import demo_tenant, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive, Fault

from syncd import store
from syncd.config import load_settings, load_tenant
from syncd.lease import FencedDatabase, Heartbeat, Lease, LeaseLost, ReplicaRefused, SqliteGuard
from syncd.plugins import make_plugin_manager
from syncd.store import leases
from syncd.store.models import TenantLeaseRow
from syncd.sync import PassOptions, run_pass

TTL = timedelta(seconds=30)
HOUR = timedelta(hours=1)
TOKEN = "pd-lease-token-7c1e"


def _claim(db: store.Database, keys: list[str], holder: str, limit: int = 10,
           interval: timedelta = HOUR) -> list[leases.Claim]:
    with db.session() as session:
        return leases.claim_due(session, keys, holder, interval=interval, ttl=TTL, limit=limit)


def _expire(db: store.Database, key: str) -> None:
    """What time does to a lease whose holder stopped renewing it."""
    with db.session() as session:
        session.execute(update(TenantLeaseRow).where(TenantLeaseRow.tenant_key == key)
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_a_due_tenant_is_claimed_once_and_is_not_due_again_until_its_interval(
        database: store.Database) -> None:
    with database.session() as session:
        leases.ensure_leases(session, ["a", "b", "c"])
        leases.ensure_leases(session, ["a"])  # idempotent
    first = _claim(database, ["a", "b", "c"], "r1", limit=2)
    assert [c.tenant_key for c in first] == ["a", "b"]
    assert all(c.fence == 1 for c in first)
    assert [c.tenant_key for c in _claim(database, ["a", "b", "c"], "r2")] == ["c"]
    assert _claim(database, ["a", "b", "c"], "r3") == [], "held leases are not claimable"

    with database.session() as session:
        assert leases.release(session, "a", "r1", 1)
        assert not leases.release(session, "b", "r2", 1), "only the holder releases"
    assert _claim(database, ["a"], "r2") == [], "released, but not due before its interval"
    assert [c.tenant_key for c in _claim(database, ["a"], "r2", interval=timedelta(0))] == ["a"]

    with database.session() as session:
        leases.request_sync(session, "c")  # a webhook while r2 runs c
        assert leases.release(session, "c", "r2", 1)
    again = _claim(database, ["c"], "r3")
    assert again == [leases.Claim("c", 2)], "a webhook makes a tenant due at once"


def test_an_expired_lease_is_taken_over_with_a_higher_fence(database: store.Database) -> None:
    with database.session() as session:
        leases.ensure_leases(session, ["a"])
    (claim,) = _claim(database, ["a"], "dead")
    _expire(database, "a")
    (takeover,) = _claim(database, ["a"], "alive")
    assert takeover.fence == claim.fence + 1
    with database.session() as session:
        assert not leases.renew(session, "a", "dead", claim.fence, ttl=TTL)
        assert leases.renew(session, "a", "alive", takeover.fence, ttl=TTL)
        assert not leases.holds(session, "a", "dead", claim.fence)
        assert leases.holds(session, "a", "alive", takeover.fence)


def test_a_claim_says_how_late_it_is_and_the_most_overdue_goes_first(
        database: store.Database) -> None:
    """``late_seconds``: claim time minus due time (last start + interval; a dead holder's
    lease expiry); None for a tenant asked for now. The daemon observes it as
    ``syncd_pass_start_lag_seconds``."""
    with database.session() as session:
        leases.ensure_leases(session, ["fresh", "late", "later", "dead"])
        leases.ensure_leases(session, ["asked"])
    now = datetime.now(UTC)
    started = {"fresh": now - timedelta(minutes=10), "late": now - timedelta(minutes=75),
               "later": now - timedelta(minutes=125), "dead": now - timedelta(minutes=2)}
    with database.session() as session:
        for key, at in started.items():
            session.execute(update(TenantLeaseRow).where(TenantLeaseRow.tenant_key == key)
                            .values(acquired_at=at))
        session.execute(update(TenantLeaseRow).where(TenantLeaseRow.tenant_key == "dead")
                        .values(holder="gone", expires_at=now - timedelta(seconds=40)))
    keys = ["fresh", "late", "later", "dead", "asked"]
    first = _claim(database, keys, "r1", limit=2)
    assert [c.tenant_key for c in first] == ["asked", "later"], \
        "asked-for-now first, then the longest overdue"
    late = {c.tenant_key: c.late_seconds for c in first + _claim(database, keys, "r1")}
    assert sorted(late) == ["asked", "dead", "late", "later"], "fresh is not due yet"
    assert late["asked"] is None, "no scheduled time to be late for"
    assert late["later"] == pytest.approx(65 * 60, abs=30)
    assert late["late"] == pytest.approx(15 * 60, abs=30)
    assert late["dead"] == pytest.approx(40, abs=30), "late since the dead holder's expiry"


def test_concurrent_claimers_never_get_the_same_tenant(database: store.Database) -> None:
    keys = [f"t{i:03d}" for i in range(60)]
    with database.session() as session:
        leases.ensure_leases(session, keys)
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def claimer(name: str) -> None:
        try:
            start.wait()
            mine: list[str] = []
            while True:
                claims = _claim(database, keys, name, limit=5)
                if not claims:
                    break
                mine += [c.tenant_key for c in claims]
            got[name] = mine
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    claimed = [key for mine in got.values() for key in mine]
    assert sorted(claimed) == keys, "every tenant claimed exactly once"


def _tenant(tmp_path: Path, db_url: str, base_url: str):
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant(base_url)})
    settings = load_settings(config)
    plugins = make_plugin_manager()
    return load_tenant(settings, "northwind", plugins.connectors), plugins


def test_a_pass_whose_lease_was_taken_over_cannot_commit(
        tmp_path: Path, database: store.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """The paused-replica case in one process: the deals page arrives after another replica
    took the tenant over; its commit is rejected and nothing of it is stored."""
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    fault = Fault("block", method="GET", path="/api/v2/deals")
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN, faults=[fault]) as fake:
        tenant, plugins = _tenant(tmp_path, str(database.url.render_as_string(False)),
                                  fake.base_url)
        with database.session() as session:
            leases.ensure_leases(session, ["northwind"])
        (claim,) = _claim(database, ["northwind"], "paused")
        lease = Lease("northwind", claim.fence, "paused")
        failure: list[BaseException] = []

        def stale_pass() -> None:
            try:
                run_pass(FencedDatabase(database, lease), plugins, tenant, PassOptions())
            except BaseException as exc:  # the expected LeaseLost, checked below
                failure.append(exc)

        thread = threading.Thread(target=stale_pass)
        thread.start()
        assert fault.reached.wait(60), "the pass never asked for deals"
        _expire(database, "northwind")
        (takeover,) = _claim(database, ["northwind"], "other")
        fault.release.set()
        thread.join(timeout=120)

    assert len(failure) == 1 and isinstance(failure[0], LeaseLost), failure
    assert "lease lost" in str(failure[0])
    assert lease.lost.is_set()
    with database.session() as session:
        deals = session.scalars(select(store.DealRow.external_id)).all()
        tenant_id = session.scalar(select(store.TenantRow.id))
        cursor = store.get_cursor(session, tenant_id, "deals")
        companies = session.scalars(select(store.CompanyRow.external_id)).all()
        holder = session.scalar(select(TenantLeaseRow.holder))
    assert companies, "pages before the takeover were committed (the lease was ours then)"
    assert deals == [] and cursor is None, "the page after the takeover was rejected"
    assert holder == "other" and takeover.fence == claim.fence + 1


def test_heartbeat_renews_and_notices_a_lost_lease(database: store.Database) -> None:
    with database.session() as session:
        leases.ensure_leases(session, ["a", "b"])
    claims = {c.tenant_key: c for c in _claim(database, ["a", "b"], "me")}
    kept, taken = (Lease(k, claims[k].fence, "me") for k in ("a", "b"))
    with database.session() as session:
        before = session.scalar(select(TenantLeaseRow.expires_at)
                                .where(TenantLeaseRow.tenant_key == "a"))
    _expire(database, "b")
    _claim(database, ["b"], "thief")
    heartbeat = Heartbeat(database, timedelta(minutes=10), interval=3600)
    heartbeat.add(kept)
    heartbeat.add(taken)
    heartbeat.beat()
    with database.session() as session:
        after = session.scalar(select(TenantLeaseRow.expires_at)
                               .where(TenantLeaseRow.tenant_key == "a"))
    assert after > before, "renewed"
    assert not kept.lost.is_set()
    assert taken.lost.is_set(), "a renewal that finds another holder marks the lease lost"


def test_a_pass_that_ends_during_a_beat_is_not_reported_lost(
        database: store.Database, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The beat renews its leases one by one; on a busy SQLite file a renewal waits
    seconds for the write lock. A pass that ends meanwhile (removed from the heartbeat,
    its row released) must not be logged as a lost lease when its turn comes (the
    capacity benchmark saw "lease lost (another replica took it over)" for such passes)."""
    with database.session() as session:
        leases.ensure_leases(session, ["a", "b"])
    claims = {c.tenant_key: c for c in _claim(database, ["a", "b"], "me")}
    first, ending = (Lease(k, claims[k].fence, "me") for k in ("a", "b"))
    heartbeat = Heartbeat(database, timedelta(minutes=10), interval=3600)
    heartbeat.add(first)
    heartbeat.add(ending)
    renew = leases.renew

    def renew_while_b_ends(session: object, key: str, *args: object, **kwargs: object) -> bool:
        if key == "a":  # while "a" is renewed, the pass of "b" ends and releases its row
            heartbeat.remove(ending)
            with database.session() as other:
                assert leases.release(other, "b", "me", ending.fence)
        return renew(session, key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(leases, "renew", renew_while_b_ends)
    with caplog.at_level("ERROR", logger="syncd.lease"):
        heartbeat.beat()
    assert not first.lost.is_set()
    assert not ending.lost.is_set(), "a pass that ended is not a lost lease"
    assert "lease lost" not in caplog.text
    # a lease still held whose row another replica took is still reported lost
    monkeypatch.undo()
    heartbeat.add(ending)
    _claim(database, ["b"], "thief", interval=timedelta(0))
    with caplog.at_level("ERROR", logger="syncd.lease"):
        heartbeat.beat()
    assert ending.lost.is_set()
    assert "lease lost (another replica took it over)" in caplog.text


def test_a_second_replica_on_sqlite_is_refused(tmp_path: Path) -> None:
    db = store.Database(tmp_path / "syncd.db")
    first = SqliteGuard(db).acquire()
    try:
        with pytest.raises(ReplicaRefused, match="SQLite supports one replica only"):
            SqliteGuard(store.Database(tmp_path / "syncd.db")).acquire()
    finally:
        first.release()
    SqliteGuard(db).acquire().release()  # free again once the first one stopped


def test_syncd_run_refuses_a_second_replica_on_the_same_sqlite_file(tmp_path: Path) -> None:
    import subprocess

    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN) as fake:
        url = f"sqlite:///{tmp_path / 'var' / 'syncd.db'}"
        config = write_config(tmp_path, url, {"northwind": demo_tenant(fake.base_url)})
        env = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}
        db = store.Database(url)
        guard = SqliteGuard(db).acquire()  # the "first replica"
        try:
            second = subprocess.run(syncd_command(config, "run"), env=env, text=True,
                                    capture_output=True, timeout=120, check=False)
        finally:
            guard.release()
    assert second.returncode == 2, second.stderr
    assert "SQLite supports one replica only" in second.stderr
    assert "use PostgreSQL" in second.stderr


def _hold(db: store.Database, key: str, holder: str, minutes: float = 10) -> None:
    with db.session() as session:
        leases.ensure_leases(session, [key])
        session.execute(update(TenantLeaseRow).where(TenantLeaseRow.tenant_key == key).values(
            holder=holder, fence=TenantLeaseRow.fence + 1,
            acquired_at=datetime.now(UTC) - timedelta(hours=2),
            expires_at=datetime.now(UTC) + timedelta(minutes=minutes)))


def test_a_one_off_pass_respects_a_replicas_lease_and_takes_a_dead_ones(
        tmp_path: Path, database: store.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """`syncd sync` (Runner without a fenced db) takes the lease itself: refused while a
    live process holds it, at once when the holder was a process on this host that died."""
    import socket
    import subprocess
    import sys

    from syncd.daemon import Runner

    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN) as fake:
        tenant, plugins = _tenant(tmp_path, database.url.render_as_string(False),
                                  fake.base_url)
        settings = load_settings(tmp_path / "syncd.yaml")
        runner = Runner(settings, plugins, database)
        _hold(database, "northwind", "run:elsewhere:4242:abcdef")
        refused = runner.run_one_off(tenant)
        requests_while_refused = fake.requests_count

        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        dead = f"sync:{socket.gethostname()}:{gone.stdout.strip()}:0a0b0c"
        _hold(database, "northwind", dead)
        taken = runner.run_one_off(tenant)
        with database.session() as session:
            after_live = leases.current(session, "northwind")
        what_if = runner.run_one_off(tenant, PassOptions(as_of=datetime.now(UTC)))
        with database.session() as session:
            after_what_if = leases.current(session, "northwind")

    assert not refused.ok and "is being synced by run:elsewhere:4242:abcdef" in refused.error
    assert requests_while_refused == 0, "no CRM call without the lease"
    assert taken.ok, taken.error
    assert after_live.holder is None and after_live.fence == 3
    assert after_live.acquired_at > datetime.now(UTC) - timedelta(minutes=5)
    assert what_if.ok and after_what_if.acquired_at == after_live.acquired_at, \
        "a what-if pass leaves the schedule alone"


def test_a_heartbeat_that_cannot_reach_the_database_gives_the_lease_up_in_time() -> None:
    """Database unreachable: no renewal for half the lease means "assume it is lost" (the
    other replicas take over after the full lease), so the pass stops before they start."""
    import socket
    import time

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    away = store.Database(f"postgresql://postgres@127.0.0.1:{port}/gone?connect_timeout=2")
    heartbeat = Heartbeat(away, timedelta(seconds=60), interval=3600)
    fresh, stale = Lease("a", 1, "me"), Lease("b", 1, "me")
    heartbeat.add(fresh)
    heartbeat.add(stale)
    stale.renewed_at = time.monotonic() - 31  # last renewal more than half a lease ago
    heartbeat.beat()
    assert stale.lost.is_set()
    assert not fresh.lost.is_set(), "a single failed renewal within budget is not a loss"
