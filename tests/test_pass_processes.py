"""`syncd run` with ``replica.worker_processes``: passes in worker processes (pass_pool.py).

Against the fake Pipedrive, as a user runs the daemon: passes run in processes other than
the replica's, their API answers reach the replica's metrics, a stop reaches a pass in a
worker (the page in flight committed, no new page), a worker renews its pass's lease
itself, and a worker killed mid-pass fails only that pass.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from support import demo_tenant, syncd_command, write_config
from syncd_fakes.http import Fault
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import store
from syncd.store import leases

TOKEN = "pd-processes-token-7c1d"


def _config(tmp_path: Path, db_url: str, tenants: dict[str, Any], **replica: Any) -> Path:
    config = write_config(tmp_path, db_url, tenants)
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    settings["replica"] = {"workers": 2, "worker_processes": True, "poll_seconds": 0.5,
                           **replica}
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


class LogReader:
    """The daemon's stderr, read line by line in a thread (waiting never blocks the test
    on a pipe the daemon stopped writing to)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append("<eof>")
            self.changed.notify_all()

    def wait_for(self, pattern: str, count: int = 1, timeout: float = 120) -> list[str]:
        found: list[str] = []
        with self.changed:
            ok = self.changed.wait_for(lambda: len(found := [
                line for line in self.lines if re.search(pattern, line)]) >= count
                or "<eof>" in self.lines, timeout=timeout)
        found = [line for line in self.lines if re.search(pattern, line)]
        assert ok and len(found) >= count, (f"no {count} line(s) matching {pattern!r}:\n"
                                            + "".join(self.lines))
        return found

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _start(config: Path) -> tuple[subprocess.Popen[str], LogReader]:
    env = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}
    process = subprocess.Popen(syncd_command(config, "run"), env=env, text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, LogReader(process)


def _stop(process: subprocess.Popen[str], reader: LogReader) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    reader.thread.join(timeout=10)
    return code


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux /proc; the tests run on Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


def _all_ended(pids: list[int], timeout: float = 30) -> bool:
    """Whether every process in ``pids`` has ended (a zombie has) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        running = []
        for pid in pids:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                running.append(pid)
        if not running or time.monotonic() > deadline:
            return not running
        threading.Event().wait(0.2)  # a bounded poll: nothing signals a process's end here


@pytest.mark.slow  # `syncd run` with worker processes: ~10 s of CPU each
def test_passes_run_in_worker_processes_and_report_to_the_replica(tmp_path: Path,
                                                                  db_url: str) -> None:
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN) as fake:
        tenants = {"northwind": demo_tenant(fake.base_url),
                   "southwind": demo_tenant(fake.base_url)}
        config = _config(tmp_path, db_url, tenants)
        process, reader = _start(config)
        try:
            reader.wait_for(r"2 worker\(s\) in 2 processes")
            ran = reader.wait_for(r"the pass ran in worker process \d+", count=2)
            reader.wait_for(r"tenant (northwind|southwind): pass ok", count=2)
        finally:
            code = _stop(process, reader)
        requests = len(fake.requests)

    assert code == 130, reader.text
    pids = {int(re.search(r"worker process (\d+)", line).group(1))  # type: ignore[union-attr]
            for line in ran}
    assert process.pid not in pids, "a pass ran in the replica's own process"
    assert TOKEN not in reader.text
    database = store.Database(db_url)
    with database.session() as session:
        runs = sorted((key, status) for key, status in session.execute(
            select(store.TenantRow.key, store.SyncRunRow.status).join(
                store.SyncRunRow, store.SyncRunRow.tenant_id == store.TenantRow.id)))
        held = [leases.current(session, key).holder for key in tenants]
    assert runs == [("northwind", "ok"), ("southwind", "ok")]
    assert held == [None, None], "every lease released"
    assert requests > 0


@pytest.mark.slow  # `syncd run` with worker processes: ~10 s of CPU each
def test_sigterm_reaches_a_pass_in_a_worker(tmp_path: Path, db_url: str) -> None:
    """The replica's stop reaches the worker: the page in flight is committed, no new
    page is asked for, the run is ``interrupted`` and the lease handed back."""
    fault = Fault("block", method="GET", path="/api/v2/deals")
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN, faults=[fault]) as fake:
        tenant = demo_tenant(fake.base_url)
        tenant["connection"]["include_archived"] = False
        config = _config(tmp_path, db_url, {"northwind": tenant}, workers=1)
        process, reader = _start(config)
        try:
            assert fault.reached.wait(timeout=120), "the pass never asked for deals"
            workers = _children(process.pid)
            process.send_signal(signal.SIGTERM)
            reader.wait_for("SIGTERM received")
            fault.release.set()  # the page in flight arrives after the stop request
            code = process.wait(timeout=120)
        finally:
            fault.release.set()
            if process.poll() is None:
                process.kill()
        activity_requests = [p for _, p, _, _ in fake.requests if p == "/api/v2/activities"]
        deals_in_crm = len(fake.deals.ids())

    assert code == 130, reader.text
    assert workers, "the replica started no worker process"
    assert activity_requests == [], "no new page is started after the stop request"
    database = store.Database(db_url)
    with database.session() as session:
        stored = session.scalars(select(store.DealRow.external_id)).all()
        status = session.scalar(select(store.SyncRunRow.status))
        lease = leases.current(session, "northwind")
    assert len(stored) == deals_in_crm, "the page in flight was committed"
    assert status == "interrupted"
    assert lease.holder is None and lease.acquired_at is None, "handed back, due at once"
    assert _all_ended(workers), "the worker processes ended with the replica"


@pytest.mark.slow  # `syncd run` with worker processes: ~10 s of CPU each
def test_a_worker_renews_its_pass_lease(tmp_path: Path, db_url: str) -> None:
    """A pass held up longer than the lease keeps it and ends ok, not fenced out: the
    worker's own guard, which refuses CRM calls past its last renewal, sees renewals."""
    fault = Fault("block", method="GET", path="/api/v2/deals")
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN, faults=[fault]) as fake:
        config = _config(tmp_path, db_url, {"northwind": demo_tenant(fake.base_url)},
                         workers=1, lease_seconds=4, heartbeat_seconds=0.5)
        process, reader = _start(config)
        database = store.Database(db_url)
        try:
            assert fault.reached.wait(timeout=120), "the pass never asked for deals"
            with database.session() as session:
                first = leases.current(session, "northwind")
            deadline = time.monotonic() + 60
            renewed = first
            while time.monotonic() < deadline:  # until the expiry has moved a lease on
                with database.session() as session:
                    renewed = leases.current(session, "northwind")
                if renewed.expires_at >= first.expires_at + (
                        first.expires_at - first.acquired_at):
                    break
                fault.finished.wait(0.2)  # never set here: a bounded poll interval
            fault.release.set()
            reader.wait_for("tenant northwind: pass ok")
        finally:
            fault.release.set()
            code = _stop(process, reader)

    assert renewed.holder == first.holder and renewed.fence == first.fence
    assert renewed.expires_at >= first.expires_at + (first.expires_at - first.acquired_at), \
        "the lease was renewed past a whole lease time while the page was held"
    assert "lease lost" not in reader.text
    assert code == 130, reader.text


@pytest.mark.slow  # `syncd run` with worker processes: ~10 s of CPU each
def test_a_killed_worker_fails_only_its_pass(tmp_path: Path, db_url: str) -> None:
    """A worker killed mid-pass (the kernel's OOM killer, say): that pass ends failed with
    a clear error, its lease is released, and the replica goes on running passes."""
    fault = Fault("block", method="GET", path="/api/v2/deals")
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN, faults=[fault]) as fake:
        tenants = {"northwind": demo_tenant(fake.base_url)}
        config = _config(tmp_path, db_url, tenants, workers=1)
        process, reader = _start(config)
        try:
            assert fault.reached.wait(timeout=120), "the pass never asked for deals"
            workers = _children(process.pid)
            assert workers
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
            reader.wait_for("the worker process running this pass died")
            fault.release.set()
            # a new tenant file: the replica (with a new pool) runs its pass
            (tmp_path / "tenants" / "eastwind.yaml").write_text(
                yaml.safe_dump(demo_tenant(fake.base_url)), encoding="utf-8")
            reader.wait_for("tenant eastwind: pass ok")
        finally:
            fault.release.set()
            code = _stop(process, reader)

    assert code == 130, reader.text
    database = store.Database(db_url)
    with database.session() as session:
        lease = leases.current(session, "northwind")
    assert lease.holder is None, "the dead pass's lease was released"


def test_a_tenant_that_does_not_pickle_runs_in_the_replica(caplog: Any) -> None:
    """A plugin rule whose check is a lambda cannot be sent to a worker: that tenant's
    passes run in the replica's own process, said once in the log."""
    from types import SimpleNamespace

    from syncd.pass_pool import PassPool

    pool = PassPool(2, _no_runner, None, lease_seconds=90, heartbeat_seconds=15)
    plain = SimpleNamespace(key="plain", rules=[])
    odd = SimpleNamespace(key="odd", rules=[lambda facts: []])
    with caplog.at_level("WARNING", logger="syncd.pass_pool"):
        assert pool.can_run(plain)
        assert not pool.can_run(odd)
        assert not pool.can_run(odd)
    said = [r.getMessage() for r in caplog.records if "odd" in r.getMessage()]
    assert len(said) == 1 and "replica's own process" in said[0]
    pool.close()  # never started: nothing to end


def _no_runner(setup: Any, stop_event: Any) -> None:
    raise AssertionError("no worker is started by this test")
