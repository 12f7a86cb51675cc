"""Fencing of CRM calls (issue 11, item 2): a pass whose lease ran out while it was stopped
makes no further CRM call when it resumes.

Unit tests drive ``LeaseGuard`` with an injected clock. The slow end-to-end test runs real
`syncd sync` processes against the fake Pipedrive: the fake holds the pass's Nth write
(a field PATCH or a task POST) and the test SIGSTOPs the process right there, lets the
write land, waits until the lease has expired in the database, lets a second process
take the tenant over and finish, and only then SIGCONTs the first. Repeated on SQLite and
PostgreSQL: no duplicate task, no CRM write from the resumed process, and a final pass
finds nothing to correct (no stale value was written over a newer one).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from support import demo_tenant, run_syncd, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive, Fault

from syncd import store
from syncd.lease import FencedDatabase, Heartbeat, Lease, LeaseGuard, LeaseLost, fence_crm_calls
from syncd.store import leases
from syncd.writeguard import write_guard

TOKEN = "pd-fencing-token-5d2e"
ENV = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}
LEASE_SECONDS = 3.0
#: Repetitions per database, alternating the stop between field writes and task creation.
REPETITIONS = 10


# --- the guard ------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _claimed(database: store.Database, holder: str = "a") -> Lease:
    with database.session() as session:
        leases.ensure_leases(session, ["t"])
        (claim,) = leases.claim_due(session, ["t"], holder, interval=timedelta(hours=1),
                                    ttl=timedelta(seconds=30), limit=1)
    return Lease("t", claim.fence, holder)


def test_the_guard_refuses_once_the_local_deadline_passed(database: store.Database) -> None:
    lease = _claimed(database)
    clock = Clock()
    lease.renewed_at, lease.ttl = clock.now, 30.0
    guard = LeaseGuard(FencedDatabase(database, lease), recheck=1e9, clock=clock)
    guard()  # fresh lease: allowed (and checked in the database once)
    clock.now += 30 - 2.1  # a stopped process wakes up just inside ttl minus the margin (2 s)
    guard()
    clock.now += 0.2
    with pytest.raises(LeaseLost, match="not renewed within the lease time"):
        guard()
    assert lease.lost.is_set() and guard.checks == 1, "decided locally, no database read"


def test_the_guard_notices_a_takeover_in_the_database(database: store.Database) -> None:
    lease = _claimed(database)
    clock = Clock()
    lease.renewed_at, lease.ttl = clock.now, 30.0
    guard = LeaseGuard(FencedDatabase(database, lease), recheck=0.5, clock=clock)
    guard()
    with database.session() as session:  # an operator expires it; another replica claims
        leases.expire(session, "a")
    with database.session() as session:
        assert leases.claim_one(session, "t", "b", ttl=timedelta(seconds=30)) is not None
    guard()  # within ``recheck`` of the last database read: trusted locally
    clock.now += 0.6
    with pytest.raises(LeaseLost, match="another replica took it over"):
        guard()
    assert guard.checks == 2 and lease.lost.is_set()
    clock.now += 0.6
    with pytest.raises(LeaseLost):  # lost stays lost without asking again
        guard()
    assert guard.checks == 2


def test_a_heartbeat_renewal_moves_the_deadline_from_when_it_started(
        database: store.Database) -> None:
    lease = _claimed(database)
    heartbeat = Heartbeat(database, timedelta(seconds=30), interval=1e9)
    claimed_at = lease.renewed_at
    heartbeat.add(lease)
    assert lease.ttl == 30.0 and lease.renewed_at == claimed_at, "add never stretches it"
    before = time.monotonic()
    heartbeat.beat()
    assert before <= lease.renewed_at <= time.monotonic()
    assert lease.deadline() == pytest.approx(lease.renewed_at + 30 - 2.0)


def test_fence_crm_calls_sets_the_write_guard_only_for_a_fenced_database(
        database: store.Database) -> None:
    with fence_crm_calls(database) as guard:
        assert guard is None and write_guard.get() is None
    fenced = FencedDatabase(database, _claimed(database))
    with fence_crm_calls(fenced) as guard:
        assert isinstance(guard, LeaseGuard) and write_guard.get() is guard
    assert write_guard.get() is None


# --- SIGSTOP past the lease, end to end ---------------------------------------------------------
def _config(tmp_path: Path, db_url: str, base_url: str) -> Path:
    path = write_config(tmp_path, db_url, {"northwind": demo_tenant(base_url)})
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["replica"] = {"lease_seconds": LEASE_SECONDS}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _add_leads(fake: FakePipedrive, rep: int, count: int = 3) -> None:
    """New open deals with no next step: new violations (field writes) and new tasks."""
    for number in range(count):
        fake.add("deals", {"title": f"Lead {rep}-{number}", "owner_id": 2, "person_id": 301,
                           "org_id": 101, "pipeline_id": 1, "stage_id": 1, "value": 1000,
                           "currency": "EUR", "status": "open", "custom_fields": {}})


def _wait_until_expired(database: store.Database, timeout: float = 60) -> None:
    """Until the database says the stopped pass's lease has run out (an observable event)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.session() as session:
            row = leases.current(session, "northwind")
            now = leases.db_now(session)
        expires = row.expires_at if row is not None else None
        if expires is not None and (expires if expires.tzinfo else
                                    expires.replace(tzinfo=UTC)) < now:
            return
        time.sleep(0.05)
    raise AssertionError("the stopped pass's lease never expired")


def _stop(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until every thread of it is stopped: ``kill`` returns
    before a multi-threaded process has stopped, and a held answer released too early is
    read by a thread still running (then its next request goes out late, as a request
    already past its lease check does in production)."""
    os.kill(pid, signal.SIGSTOP)
    tasks = Path(f"/proc/{pid}/task")

    def stopped() -> bool:
        states = []
        for task in tasks.iterdir():
            with contextlib.suppress(FileNotFoundError):  # a thread that just ended
                states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        return bool(states) and all(state in {"T", "t"} for state in states)

    deadline = time.monotonic() + 30
    while not stopped():
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.005)


def _markers(fake: FakePipedrive) -> Counter:
    markers: Counter = Counter()
    for activity_id in fake.activities.ids():
        note = fake.record("activities", activity_id).get("note") or ""
        for token in note.split("[")[1:]:
            if token.startswith("syncd:v"):
                markers[token.split("]")[0]] += 1
    return markers


def _stale_fields(fake: FakePipedrive, database: store.Database) -> list[str]:
    """Fields whose CRM value differs from the last value syncd confirmed writing: what a
    late write from a stopped pass would leave behind."""
    codes = {(kind, d["field_name"]): d["field_code"]
             for kind, entity in (("organizationFields", "company"), ("dealFields", "deal"))
             for d in fake.field_defs[kind]}
    with database.session() as session:
        rows = session.scalars(select(store.WritebackRow).where(
            store.WritebackRow.kind == "field", store.WritebackRow.status == "done")).all()
    stale = []
    for row in rows:
        kind, entity = (("organizationFields", "organizations") if row.entity == "company"
                        else ("dealFields", "deals"))
        value = fake.record(entity, int(row.external_id))["custom_fields"].get(
            codes[(kind, row.field)])
        written = row.written_value or ""
        if row.entity == "company":
            same = value is not None and abs(float(value) - float(written)) < 0.005
        else:
            same = (value or "") == written
        if not same:
            stale.append(f"{row.entity} {row.external_id} {row.field}: CRM {value!r}, "
                         f"syncd wrote {written!r}")
    return stale


def _stop_resume_once(config: Path, database: store.Database, fake: FakePipedrive,
                      fault: Fault) -> dict[str, object]:
    """One repetition: A is stopped on the faulted write, B takes over, A resumes."""
    fake.faults = [fault]
    first = subprocess.Popen(syncd_command(config, "sync"), env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert fault.reached.wait(timeout=180), "the pass never reached the faulted write"
        _stop(first.pid)
        fault.release.set()  # the held write lands while its sender is stopped
        assert fault.finished.wait(timeout=30)
        fake.faults = None
        _wait_until_expired(database)
        takeover = run_syncd(config, "sync", "--format", "json", env=ENV)
        assert takeover.returncode == 0, takeover.stderr
        writes_before_resume = len(fake.writes)
        first.send_signal(signal.SIGCONT)
        _, stderr = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGCONT)
            first.kill()
    return {"late_writes": fake.writes[writes_before_resume:], "first_code": first.returncode,
            "first_stderr": stderr, "takeover": json.loads(takeover.stdout)[0]}


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_stopped_pass_makes_no_crm_call_after_a_takeover(
        tmp_path: Path, db_url: str) -> None:
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=200) as fake:
        config = _config(tmp_path, db_url, fake.base_url)
        baseline = run_syncd(config, "sync", env=ENV)
        assert baseline.returncode == 0, baseline.stderr
        database = store.Database(db_url)
        try:
            outcomes = []
            for rep in range(REPETITIONS):
                _add_leads(fake, rep)
                phase = "fields" if rep % 2 == 0 else "tasks"
                fault = (Fault("block", method="PATCH", nth=2) if phase == "fields" else
                         Fault("block", method="POST", path="/api/v2/activities", nth=2))
                outcome = _stop_resume_once(config, database, fake, fault)
                assert outcome["late_writes"] == [], \
                    f"rep {rep} ({phase}): the resumed pass wrote to the CRM"
                assert outcome["first_code"] != 0
                assert "lease lost" in str(outcome["first_stderr"])
                assert _stale_fields(fake, database) == [], f"rep {rep} ({phase})"
                outcomes.append(outcome)
            with database.session() as session:
                statuses = Counter(session.scalars(select(store.SyncRunRow.status)))
        finally:
            database.dispose()
        markers = _markers(fake)

    assert len(outcomes) == REPETITIONS
    assert len(markers) >= REPETITIONS * 3, "every new lead got its task"
    assert max(markers.values()) == 1, f"duplicate tasks: {markers}"
    assert statuses["lease_lost"] == REPETITIONS, statuses
    assert statuses["running"] == 0, "every stopped pass recorded how it ended"
    for rep, outcome in enumerate(outcomes):
        writes = outcome["takeover"]["summary"]["writes"]  # type: ignore[index]
        if rep % 2:  # tasks: the one posted while A was stopped is found, not posted again
            assert writes["tasks_recovered"] >= 1 and writes["tasks_created"] >= 1, writes
        else:  # fields: the takeover finished the writes A had planned
            assert writes["fields_written"] >= 1, writes


# --- three `syncd run` replicas (PostgreSQL) ---------------------------------------------------
def _holder_pid(database: store.Database) -> tuple[int, int]:
    with database.session() as session:
        row = leases.current(session, "northwind")
    return int(row.holder.split(":")[-2]), row.fence


def _wait_for(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def _runs(database: store.Database, status: str) -> int:
    with database.session() as session:
        return len(session.scalars(select(store.SyncRunRow.id).where(
            store.SyncRunRow.status == status)).all())


def _released_after(database: store.Database, fence: int) -> bool:
    with database.session() as session:
        row = leases.current(session, "northwind")
    return row.fence > fence and row.holder is None


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_stopped_replica_makes_no_crm_call_after_another_took_over(
        tmp_path: Path, db_url: str) -> None:
    """Three `syncd run` replicas; each repetition makes the tenant due, SIGSTOPs whichever
    replica claimed it on its 2nd write, and SIGCONTs it after another replica finished."""
    if not db_url.startswith("postgresql"):
        pytest.skip("several replicas need PostgreSQL (SQLite: the one-off test above)")
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=200) as fake:
        config = _config(tmp_path, db_url, fake.base_url)
        settings = yaml.safe_load(config.read_text(encoding="utf-8"))
        settings["replica"].update(poll_seconds=0.2, workers=1)
        settings.update(http={"enabled": False}, interval_minutes=600)
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        database = store.Database(db_url)
        database.upgrade()
        logs = [tmp_path / f"replica-{n}.log" for n in range(3)]
        replicas = []
        for log in logs:
            with log.open("w") as handle:  # the child keeps its own descriptor
                replicas.append(subprocess.Popen(syncd_command(config, "run"), env=ENV,
                                                 stdout=subprocess.DEVNULL, stderr=handle))
        log_of = {replica.pid: log for replica, log in zip(replicas, logs, strict=True)}
        late: dict[int, list[Any]] = {}
        stopped: dict[int, int] = {}
        try:
            _wait_for(lambda: _runs(database, "ok") >= 1, "the baseline pass finished")
            for rep in range(REPETITIONS):
                _add_leads(fake, rep)
                fault = (Fault("block", method="PATCH", nth=2) if rep % 2 == 0 else
                         Fault("block", method="POST", path="/api/v2/activities", nth=2))
                fake.faults = [fault]
                with database.session() as session:
                    leases.request_sync(session, "northwind")
                assert fault.reached.wait(timeout=180), f"rep {rep}: no pass reached it"
                pid, fence = _holder_pid(database)
                _stop(pid)
                stopped[rep] = pid
                fault.release.set()
                assert fault.finished.wait(timeout=30)
                fake.faults = None
                _wait_for(lambda f=fence: _released_after(database, f),
                          f"rep {rep}: another replica took over and finished")
                writes_before = len(fake.writes)
                lost_before = _runs(database, "lease_lost")
                os.kill(pid, signal.SIGCONT)
                _wait_for(lambda n=lost_before: _runs(database, "lease_lost") > n,
                          f"rep {rep}: the resumed replica recorded its lost lease")
                late[rep] = fake.writes[writes_before:]
                assert _stale_fields(fake, database) == [], f"rep {rep}"
            statuses = {status: _runs(database, status) for status in ("running", "failed")}
        finally:
            for replica in replicas:
                replica.send_signal(signal.SIGCONT)
                replica.terminate()
            for replica in replicas:
                try:
                    replica.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    replica.kill()
            database.dispose()
        markers = _markers(fake)

    wrote = {rep: writes for rep, writes in late.items() if writes}
    assert wrote == {}, "a resumed replica wrote to the CRM:\n" + "\n".join(
        log_of[stopped[rep]].read_text(encoding="utf-8")[-3000:] for rep in wrote)
    assert len(markers) >= REPETITIONS * 3 and max(markers.values()) == 1, markers
    assert statuses == {"running": 0, "failed": 0}
